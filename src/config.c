/* config.c - config file parsing through a declarative option table (name, type, default, bounds). */
#include "config.h"
#include "tls.h"
#include "fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { OPT_INT, OPT_BOOL, OPT_STR, OPT_LISTEN, OPT_LIST } opt_type_t;

/* One option: its dotted JSON path, where it lands in config_t, its default
 * and bounds. Every key of the config file must appear here; anything else is
 * rejected by name, so a typo never silently falls back to a default. */
typedef struct option {
    const char *name;
    opt_type_t type;
    size_t off;
    size_t size;       /* for strings: buffer size; for ints: 4 or 8 */
    int64_t def_int;
    const char *def_str;
    int64_t min, max;
    int is_path;       /* relative to the config file's directory */
} option_t;

#define OFF(f) offsetof(config_t, f), sizeof(((config_t *)0)->f)

static const option_t options[] = {
    { "listen",                 OPT_LISTEN, OFF(listen_host), 0, "127.0.0.1:8080", 0, 0, 0 },
    { "workers",                OPT_INT,  OFF(workers), 0, NULL, 0, 256, 0 },
    { "data_dir",               OPT_STR,  OFF(data_dir), 0, "data", 0, 0, 1 },
    { "require_key",            OPT_BOOL, OFF(require_key), 1, NULL, 0, 1, 0 },
    { "admin.listen",           OPT_STR,  OFF(admin_listen), 0, "127.0.0.1:8081", 0, 0, 0 },
    { "admin.key_env",          OPT_STR,  OFF(admin_key_env), 0, "TURNOUT_ADMIN_KEY", 0, 0, 0 },
    { "limits.max_body_bytes",  OPT_INT,  OFF(max_body_bytes), 10485760, NULL, 1, (int64_t)1 << 32, 0 },
    { "limits.max_header_bytes", OPT_INT, OFF(max_header_bytes), 65536, NULL, 1024, 1048576, 0 },
    { "limits.max_headers",     OPT_INT,  OFF(max_headers), 100, NULL, 1, 10000, 0 },
    { "limits.header_timeout_s", OPT_INT, OFF(header_timeout_s), 10, NULL, 1, 3600, 0 },
    { "limits.idle_timeout_s",  OPT_INT,  OFF(idle_timeout_s), 60, NULL, 1, 86400, 0 },
    { "limits.send_timeout_s",  OPT_INT,  OFF(send_timeout_s), 60, NULL, 1, 86400, 0 },
    { "limits.max_connections", OPT_INT,  OFF(max_connections), 4096, NULL, 1, 1000000, 0 },
    { "limits.shutdown_grace_s", OPT_INT, OFF(shutdown_grace_s), 30, NULL, 0, 3600, 0 },
    { "upstream.connect_ms",    OPT_INT,  OFF(connect_timeout_ms), 5000, NULL, 1, 600000, 0 },
    { "upstream.first_byte_s",  OPT_INT,  OFF(first_byte_timeout_s), 120, NULL, 1, 1800, 0 },
    { "upstream.idle_s",        OPT_INT,  OFF(idle_gap_s), 60, NULL, 1, 3600, 0 },
    { "upstream.total_s",       OPT_INT,  OFF(total_timeout_s), 600, NULL, 1, 3600, 0 },
    { "upstream.cooldown_after", OPT_INT, OFF(cooldown_after), 5, NULL, 1, 1000, 0 },
    { "upstream.cooldown_s",    OPT_INT,  OFF(cooldown_s), 30, NULL, 1, 3600, 0 },
    { "upstream.client",        OPT_STR,  OFF(upstream_client), 0, "native", 0, 0, 0 },
    { "store.map_size_mb",      OPT_INT,  OFF(map_size_mb), 1024, NULL, 1, 1048576, 0 },
    { "log.level",              OPT_STR,  OFF(log_level), 0, "info", 0, 0, 0 },
    { "log.access",             OPT_STR,  OFF(log_access), 0, "stdout", 0, 0, 0 },
    { "log.error",              OPT_STR,  OFF(log_error), 0, "stderr", 0, 0, 0 },
    { "seed",                   OPT_STR,  OFF(seed), 0, "", 0, 0, 1 },
    { "usage.retention_days",   OPT_INT,  OFF(usage_retention_days), 90, NULL, 1, 36500, 0 },
    { "budgets.default_output_tokens", OPT_INT, OFF(default_output_tokens), 256, NULL, 1, 10000000, 0 },
    { "tls.cert",               OPT_STR,  OFF(tls_cert), 0, "", 0, 0, 1 },
    { "tls.key",                OPT_STR,  OFF(tls_key), 0, "", 0, 0, 1 },
    { "admin.tls.cert",         OPT_STR,  OFF(admin_tls_cert), 0, "", 0, 0, 1 },
    { "admin.tls.key",          OPT_STR,  OFF(admin_tls_key), 0, "", 0, 0, 1 },
    { "cluster.etcd",           OPT_LIST, OFF(cluster_etcd), 0, "", 0, 0, 0 },
    { "cluster.prefix",         OPT_STR,  OFF(cluster_prefix), 0, "/turnout/", 0, 0, 0 },
    { "cluster.redis",          OPT_STR,  OFF(cluster_redis), 0, "", 0, 0, 0 },
    { "cluster.redis_failure",  OPT_STR,  OFF(cluster_redis_failure), 0, "local", 0, 0, 0 },
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* The sections that group options; a section key must hold an object. */
static const char *const sections[] = { "admin", "limits", "upstream", "store", "log", "usage", "budgets", "tls",
                                        "cluster" };

static void set_int(config_t *c, const option_t *o, int64_t v)
{
    char *p = (char *)c + o->off;
    if (o->size == sizeof(int64_t))
        memcpy(p, &v, sizeof(int64_t));
    else {
        int iv = (int)v;
        memcpy(p, &iv, sizeof(int));
    }
}

static int set_listen(config_t *c, const char *v, char *err, size_t errlen, const char *name)
{
    const char *colon = strrchr(v, ':');
    char *end;
    long port;
    if (colon == NULL || colon == v || (size_t)(colon - v) >= sizeof(c->listen_host)) {
        snprintf(err, errlen, "%s: expected \"HOST:PORT\", got \"%s\"", name, v);
        return -1;
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || errno != 0 || port < 0 || port > 65535 || end == colon + 1) {
        snprintf(err, errlen, "%s: port must be 0-65535, got \"%s\"", name, colon + 1);
        return -1;
    }
    memcpy(c->listen_host, v, (size_t)(colon - v));
    c->listen_host[colon - v] = '\0';
    c->listen_port = (int)port;
    return 0;
}

void config_defaults(config_t *c)
{
    char err[64];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_t *o = &options[i];
        if (o->type == OPT_LISTEN)
            (void)set_listen(c, o->def_str, err, sizeof(err), o->name);
        else if (o->type == OPT_STR || o->type == OPT_LIST)
            snprintf((char *)c + o->off, o->size, "%s", o->def_str);
        else
            set_int(c, o, o->def_int);
    }
}

static const option_t *find_option(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

static int is_section(const char *name)
{
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (strcmp(sections[i], name) == 0)
            return 1;
    return 0;
}

static int apply(config_t *c, const option_t *o, const cJSON *v, const char *dir,
                 char *err, size_t errlen)
{
    switch (o->type) {
    case OPT_BOOL:
        if (!cJSON_IsBool(v)) {
            snprintf(err, errlen, "%s: expected true or false", o->name);
            return -1;
        }
        set_int(c, o, cJSON_IsTrue(v));
        return 0;
    case OPT_INT: {
        double d = v->valuedouble;
        /* a double past int64_t's range (or NaN) does not convert: refused before it is */
        if (cJSON_IsNumber(v) && !(d > -9.2e18 && d < 9.2e18)) {
            snprintf(err, errlen, "%s: %g is out of range %lld-%lld", o->name, d, (long long)o->min,
                     (long long)o->max);
            return -1;
        }
        if (!cJSON_IsNumber(v) || d != (double)(int64_t)d) {
            snprintf(err, errlen, "%s: expected an integer", o->name);
            return -1;
        }
        if ((int64_t)d < o->min || (int64_t)d > o->max) {
            snprintf(err, errlen, "%s: %lld is out of range %lld-%lld", o->name,
                     (long long)d, (long long)o->min, (long long)o->max);
            return -1;
        }
        set_int(c, o, (int64_t)d);
        return 0;
    }
    case OPT_LISTEN:
        if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "%s: expected a string \"HOST:PORT\"", o->name);
            return -1;
        }
        return set_listen(c, v->valuestring, err, errlen, o->name);
    case OPT_LIST: {              /* an array of strings, kept comma-separated */
        char *dst = (char *)c + o->off;
        size_t n = 0;
        const cJSON *e;
        if (!cJSON_IsArray(v)) {
            snprintf(err, errlen, "%s: expected an array of strings", o->name);
            return -1;
        }
        cJSON_ArrayForEach(e, v) {
            size_t len;
            if (!cJSON_IsString(e) || (len = strlen(e->valuestring)) == 0 || strchr(e->valuestring, ',') != NULL) {
                snprintf(err, errlen, "%s: expected an array of non-empty strings without commas", o->name);
                return -1;
            }
            if (n + len + 2 > o->size) {
                snprintf(err, errlen, "%s: too long (max %zu bytes in all)", o->name, o->size - 1);
                return -1;
            }
            n += (size_t)snprintf(dst + n, o->size - n, "%s%s", n > 0 ? "," : "", e->valuestring);
        }
        dst[n] = '\0';
        return 0;
    }
    case OPT_STR: {
        char *dst = (char *)c + o->off;
        int n;
        if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "%s: expected a string", o->name);
            return -1;
        }
        if (o->is_path && v->valuestring[0] != '/' && v->valuestring[0] != '\0')
            n = snprintf(dst, o->size, "%s/%s", dir, v->valuestring);
        else
            n = snprintf(dst, o->size, "%s", v->valuestring);
        if (n < 0 || (size_t)n >= o->size) {
            snprintf(err, errlen, "%s: value too long (max %zu bytes)", o->name, o->size - 1);
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

/* Sets option NAME (section.key) from V; an unknown name is an error. */
static int set_option(config_t *c, const char *name, const cJSON *v, const char *dir, char *err, size_t errlen)
{
    const option_t *o = find_option(name);
    if (o == NULL) {
        snprintf(err, errlen, "%s: unknown config key", name);
        return -1;
    }
    return apply(c, o, v, dir, err, errlen);
}

/* Whether V is one of the NULL-terminated ALLOWED; if not, says so in err. */
static int one_of(const char *name, const char *v, const char *const *allowed, char *err, size_t errlen)
{
    size_t len = 0;
    for (const char *const *a = allowed; *a != NULL; a++)
        if (strcmp(v, *a) == 0)
            return 0;
    len += (size_t)snprintf(err, errlen, "%s: must be one of", name);
    for (const char *const *a = allowed; *a != NULL && len < errlen; a++)
        len += (size_t)snprintf(err + len, errlen - len, "%s %s", a == allowed ? "" : ",", *a);
    if (len < errlen)
        snprintf(err + len, errlen - len, " (got \"%s\")", v);
    return -1;
}

static int check_enums(const config_t *c, char *err, size_t errlen)
{
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
    static const char *const clients[] = { "native", "curl", NULL };
    static const char *const failure[] = { "local", "closed", NULL };
    if (one_of("log.level", c->log_level, levels, err, errlen) < 0 ||
        one_of("cluster.redis_failure", c->cluster_redis_failure, failure, err, errlen) < 0)
        return -1;
    if (c->cluster_prefix[0] != '/') {
        snprintf(err, errlen, "cluster.prefix: must start with \"/\" (got \"%s\")", c->cluster_prefix);
        return -1;
    }
    return one_of("upstream.client", c->upstream_client, clients, err, errlen);
}

int config_load(const char *file, config_t *c, char *err, size_t errlen)
{
    char dir[PATH_MAX], name[128];
    const char *slash;
    size_t len = 0;
    char *text;
    cJSON *root;
    const cJSON *k, *sk;
    int rc = -1;

    config_defaults(c);
    text = file_read(file, &len);
    if (text == NULL) {
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return -1;
    }
    slash = strrchr(file, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);

    root = cJSON_ParseWithLength(text, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object (error near byte %ld)", file,
                 root == NULL ? (long)(cJSON_GetErrorPtr() - text) : 0L);
        goto out;
    }
    cJSON_ArrayForEach(k, root) {
        if (is_section(k->string)) {
            if (!cJSON_IsObject(k)) {
                snprintf(err, errlen, "%s: expected an object", k->string);
                goto out;
            }
            cJSON_ArrayForEach(sk, k) {
                const cJSON *ssk;
                snprintf(name, sizeof(name), "%s.%s", k->string, sk->string);
                if (strcmp(name, "admin.tls") == 0 && cJSON_IsObject(sk)) {   /* the one nested section */
                    cJSON_ArrayForEach(ssk, sk) {
                        snprintf(name, sizeof(name), "admin.tls.%s", ssk->string);
                        if (set_option(c, name, ssk, dir, err, errlen) < 0)
                            goto out;
                    }
                } else if (set_option(c, name, sk, dir, err, errlen) < 0) {
                    goto out;
                }
            }
            continue;
        }
        if (set_option(c, k->string, k, dir, err, errlen) < 0)
            goto out;
    }
    if (check_enums(c, err, errlen) < 0)
        goto out;
    if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0')) {
        snprintf(err, errlen, "tls: cert and key go together (one is missing)");
        goto out;
    }
    if ((c->admin_tls_cert[0] == '\0') != (c->admin_tls_key[0] == '\0')) {
        snprintf(err, errlen, "admin.tls: cert and key go together (one is missing)");
        goto out;
    }
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n > 0 ? (int)(n > 256 ? 256 : n) : 1;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

int config_prepare(config_t *c, char *err, size_t errlen)
{
    char why[900];
    c->tls_ctx = c->admin_tls_ctx = NULL;
    if (c->tls_cert[0] != '\0' && (c->tls_ctx = tls_ctx_new(c->tls_cert, c->tls_key, err, errlen)) == NULL)
        return -1;
    if (c->admin_tls_cert[0] != '\0' &&
        (c->admin_tls_ctx = tls_ctx_new(c->admin_tls_cert, c->admin_tls_key, why, sizeof(why))) == NULL) {
        snprintf(err, errlen, "admin.%s", why);
        config_release(c);
        return -1;
    }
    return 0;
}

void config_release(config_t *c)
{
    tls_ctx_free(c->tls_ctx);
    tls_ctx_free(c->admin_tls_ctx);
    c->tls_ctx = c->admin_tls_ctx = NULL;
}
