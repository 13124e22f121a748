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

#endif
