/* etcd.h - a cluster's store of record (SPEC 10): etcd v3 through its HTTP/JSON gateway, mirrored into the local store. */
#ifndef TURNOUT_ETCD_H
#define TURNOUT_ETCD_H

#include "config.h"
#include "store.h"

#include <stdint.h>

typedef struct etcd etcd_t;

/* Makes etcd (cfg->cluster_etcd, under cfg->cluster_prefix) the store of
 * record behind S: from here on S's writes are committed there (store.h).
 * Nothing is sent yet. Returns NULL with a message in err. */
etcd_t *etcd_open(const config_t *cfg, store_t *s, char *err, size_t errlen);

/* Brings the mirror up to etcd's current revision with a full snapshot,
 * unless it has it already. Returns 0, or -1 with a message in err. */
int etcd_sync(etcd_t *e, char *err, size_t errlen);

/* Starts the thread (turnout-etcd) that keeps the mirror current through a
 * watch, reconnecting by itself; 0 or -1. */
int etcd_start(etcd_t *e);

/* Stops that thread (within about a second) and frees E; the store is
 * left without a remote. NULL is ignored. */
void etcd_close(etcd_t *e);

/* For /metrics and /readyz; any thread. */
typedef struct etcd_status {
    int64_t revision;            /* the mirror's */
    int connected;               /* the watch is up */
    double behind_s;             /* 0 while connected, else how long it has been down */
    uint64_t errors;             /* failed calls and watch drops */
} etcd_status_t;
void etcd_status(etcd_t *e, etcd_status_t *st);

/* The watch stream's framing, apart for the fuzzer: feeds LEN bytes of the
 * stream into LINE (growing it, up to LINE_MAX_BYTES), calling FN for each
 * complete newline-terminated message; stops with FN's non-zero return,
 * or -1 when a message is too long. Returns 0 otherwise. */
#define ETCD_LINE_MAX_BYTES (64u << 20)
typedef struct etcd_line {
    char *buf;
    size_t len, cap;
} etcd_line_t;
int etcd_feed(etcd_line_t *line, const char *data, size_t len, int (*fn)(const char *msg, size_t n, void *arg),
              void *arg);

/* Decodes one watch message of a watch over PREFIX "records/": calls PUT
 * for each event after revision AFTER (json NULL for a delete; a key that
 * is not a record's is skipped) and sets *REV to the highest event
 * revision seen, *COMPACTED to the compact revision of a cancelled watch
 * (else 0) and *CREATED when the message confirms the watch. Returns 0,
 * or -1 for a message that is not one (or PUT's failure). */
typedef int (*etcd_put_fn)(store_table_t t, const char *id, const char *json, size_t len, void *arg);
int etcd_decode_watch(const char *msg, size_t n, const char *prefix, int64_t after, etcd_put_fn put, void *arg,
                      int64_t *rev, int64_t *compacted, int *created);

#endif
