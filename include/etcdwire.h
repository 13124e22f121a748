/* etcdwire.h - etcd v3's JSON gateway on the wire: base64 keys and values, its 64-bit numbers, and the watch stream's framing and messages. */
#ifndef TURNOUT_ETCDWIRE_H
#define TURNOUT_ETCDWIRE_H

#include "store.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* S (N bytes) in base64, a new string; NULL when out of memory. */
char *etcdwire_b64(const char *s, size_t n);
/* Base64 S decoded into a new NUL-terminated buffer, *N its length; NULL
 * when S is not base64 (or out of memory). */
char *etcdwire_unb64(const char *s, size_t *n);
/* Adds S (N bytes) to OBJ as member NAME, in base64; 0 or -1. */
int etcdwire_add_b64(cJSON *obj, const char *name, const char *s, size_t n);
/* Adds "range_end" to OBJ: the end of the keys beginning with P; 0 or -1. */
int etcdwire_add_range_end(cJSON *obj, const char *p);
/* Member NAME of OBJ as etcd writes a 64-bit number (a JSON string); 0 when absent. */
int64_t etcdwire_num(const cJSON *obj, const char *name);
/* An answer's header.revision. */
int64_t etcdwire_revision(const cJSON *resp);

/* A record's change as the mirror takes it: table, id, text (NULL: deleted). */
typedef int (*etcd_put_fn)(store_table_t t, const char *id, const char *json, size_t len, void *arg);
/* One key-value of etcd's (KVO), under PREFIX "records/": the record's
 * change handed to PUT (DELETED: a deletion). 1 when the key is not a
 * record's (skipped), -1 for a malformed one or PUT's failure, else 0. */
int etcdwire_put_kv(const cJSON *kvo, int deleted, const char *prefix, etcd_put_fn put, void *arg);

/* The watch stream's framing: feeds LEN bytes of the
 * stream into LINE (growing it, up to LINE_MAX_BYTES), calling FN for each
 * complete newline-terminated message; stops with FN's non-zero return,
 * or -1 when a message is too long. Returns 0 otherwise. */
#define ETCD_LINE_MAX_BYTES (64u << 20)
typedef struct etcd_line {
    char *buf;
    size_t len, cap;
} etcd_line_t;
int etcdwire_feed(etcd_line_t *line, const char *data, size_t len, int (*fn)(const char *msg, size_t n, void *arg),
                  void *arg);
/* Appends N bytes at P to LINE, NUL-terminated, doubling it as needed up
 * to MAX bytes (also what an answer's body is read into); -1 past MAX or
 * out of memory, LINE unchanged. */
int etcdwire_append(etcd_line_t *line, const char *p, size_t n, size_t max);

/* Decodes one watch message of a watch over PREFIX "records/": calls PUT
 * for each event after revision AFTER (json NULL for a delete; a key that
 * is not a record's is skipped) and sets *REV to the highest event
 * revision seen, *COMPACTED to the compact revision of a cancelled watch
 * (else 0) and *CREATED when the message confirms the watch. Returns 0,
 * or -1 for a message that is not one (or PUT's failure). */
int etcdwire_decode_watch(const char *msg, size_t n, const char *prefix, int64_t after, etcd_put_fn put,
                          void *arg, int64_t *rev, int64_t *compacted, int *created);

#endif
