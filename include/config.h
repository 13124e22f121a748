/* config.h - the gateway's JSON config file, read through one declarative option table. */
#ifndef TURNOUT_CONFIG_H
#define TURNOUT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Parsed, immutable once built. Paths are absolute or relative to the
 * process's working directory (config-relative paths are resolved at load). */
typedef struct config {
    char listen_host[64];       /* "127.0.0.1" */
    int  listen_port;
    int  workers;               /* 0 = one per core (resolved at load) */
    char data_dir[1024];        /* LMDB environment directory */
    int  require_key;           /* data plane needs a bearer key */
    char admin_listen[128];     /* "host:port" of the admin listener */
    char admin_key_env[128];    /* env var holding the bootstrap admin key */
    int64_t max_body_bytes;
    int64_t max_header_bytes;
    int  max_headers;
    int  header_timeout_s;      /* request's first byte -> end of its headers */
    int  idle_timeout_s;        /* keep-alive idle, and the gap between body reads */
    int  send_timeout_s;        /* a client that takes no reply bytes for this long is dropped */
    int  max_connections;       /* client connections per worker */
    int  connect_timeout_ms;    /* default upstream connect timeout */
    int  first_byte_timeout_s;  /* default upstream first-byte timeout */
    int  idle_gap_s;            /* longest silence inside an upstream response */
    int  total_timeout_s;       /* default upstream total timeout */
    int  cooldown_after;        /* failures in a row that cool an upstream down */
    int  cooldown_s;            /* how long it cools before its probe */
    char upstream_client[8];    /* "native": our HTTP/1.1 client for http:// upstreams; "curl": libcurl for all */
    int  shutdown_grace_s;
    int64_t map_size_mb;        /* LMDB map size */
    char log_level[16];         /* debug | info | warn | error */
    char log_access[1024];      /* "stdout", "stderr", "off" or a file path */
    char log_error[1024];       /* "stderr" or a file path */
    char seed[1024];            /* seed file, "" = none */
    int  usage_retention_days;  /* hourly usage rollups older than this are deleted */
    int  default_output_tokens; /* output tokens a budget reservation assumes when a request sets no limit */
    char tls_cert[1024];        /* the data listener's certificate chain (PEM), "" = plain HTTP */
    char tls_key[1024];         /* and its private key */
    char admin_tls_cert[1024];  /* the admin listener's, "" = plain HTTP */
    char admin_tls_key[1024];
    char cluster_etcd[1024];    /* etcd endpoints ("http://host:port"), comma-separated; "" = a single node */
    char cluster_prefix[128];   /* where the store's records live in etcd */
    char cluster_redis[256];    /* "host:port" of the Redis with the shared counters; "" = counters are local */
    char cluster_redis_failure[8];  /* "local" | "closed": what a node does while Redis is unreachable */
    /* made from the files above when the config is loaded (tls.c), owned
     * by this config: config_release gives them up */
    struct ssl_ctx_st *tls_ctx, *admin_tls_ctx;
} config_t;

/* Loads and validates FILE into *out. On failure returns -1 and writes one
 * clear message naming the offending key into err. */
int config_load(const char *file, config_t *out, char *err, size_t errlen);

/* Fills *out with every option's default. */
void config_defaults(config_t *out);

/* What a loaded config makes of its files: the listeners' TLS contexts.
 * Returns 0, or -1 with a message in err (a certificate or key that does
 * not load). */
int config_prepare(config_t *c, char *err, size_t errlen);

/* Gives up what config_prepare made (the struct itself is the caller's). */
void config_release(config_t *c);

#endif
