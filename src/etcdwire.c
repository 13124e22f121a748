/* etcdwire.c - etcd v3's JSON gateway on the wire: base64 keys and values, its 64-bit numbers, and the watch stream's framing and messages (etcd.c makes the calls). */
#include "etcdwire.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* --- base64, as the gateway carries keys and values --- */

char *etcdwire_b64(const char *s, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* Decodes S into a new NUL-terminated buffer; *N its length. NULL when S
 * is not base64. */
char *etcdwire_unb64(const char *s, size_t *n)
{
    size_t len = strlen(s);
    char *out;
    int got;
    if (len % 4 != 0 || (out = malloc(len / 4 * 3 + 1)) == NULL)
        return NULL;
    if ((got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len)) < 0) {
        free(out);
        return NULL;
    }
    if (len > 0 && s[len - 1] == '=')
        got--;
    if (len > 1 && s[len - 2] == '=')
        got--;
    out[got] = '\0';
    *n = (size_t)got;
    return out;
}

int etcdwire_add_b64(cJSON *obj, const char *name, const char *s, size_t n)
{
    char *v = etcdwire_b64(s, n);
    int ok = v != NULL && cJSON_AddStringToObject(obj, name, v) != NULL;
    free(v);
    return ok ? 0 : -1;
}

/* The end of the range of keys beginning with P: P with its last byte + 1. */
int etcdwire_add_range_end(cJSON *obj, const char *p)
{
    char end[200];
    size_t n = strlen(p);
    if (n == 0 || n >= sizeof(end))
        return -1;
    memcpy(end, p, n);
    end[n - 1]++;
    return etcdwire_add_b64(obj, "range_end", end, n);
}

/* etcd's 64-bit numbers are JSON strings; a JSON number is taken too, and
 * one outside int64_t's range is 0, like an absent one (converting it would
 * be undefined behaviour: fuzz_etcd_watch found a revision of 3.6e115). */
int64_t etcdwire_num(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsString(v))
        return strtoll(v->valuestring, NULL, 10);
    if (cJSON_IsNumber(v) && v->valuedouble >= -0x1p63 && v->valuedouble < 0x1p63)
        return (int64_t)v->valuedouble;
    return 0;
}

int64_t etcdwire_revision(const cJSON *resp)
{
    return etcdwire_num(cJSON_GetObjectItemCaseSensitive(resp, "header"), "revision");
}

/* Splits KEY (under PREFIX) into table and id; -1 for any other key. */
static int record_of(const char *key, size_t n, const char *prefix, store_table_t *t, char id[40])
{
    size_t plen = strlen(prefix);
    const char *slash;
    int tbl;
    if (n <= plen || memcmp(key, prefix, plen) != 0 || (slash = memchr(key + plen, '/', n - plen)) == NULL ||
        (tbl = store_table_of(key + plen, (size_t)(slash - key - plen))) < 0)
        return -1;
    n -= (size_t)(slash + 1 - key);
    if (n == 0 || n >= 40 || memchr(slash + 1, '\0', n) != NULL)
        return -1;
    memcpy(id, slash + 1, n);
    id[n] = '\0';
    *t = (store_table_t)tbl;
    return 0;
}

/* One key-value of etcd's: the record's change handed to PUT. 1 when it
 * is not a record's (skipped), -1 on PUT's failure or a malformed one. */
int etcdwire_put_kv(const cJSON *kvo, int deleted, const char *prefix, etcd_put_fn put, void *arg)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(kvo, "key"), *v = cJSON_GetObjectItemCaseSensitive(kvo, "value");
    char *key, *val = NULL, id[40];
    size_t klen, vlen = 0;
    store_table_t t;
    int rc = 1;
    if (!cJSON_IsString(k) || (key = etcdwire_unb64(k->valuestring, &klen)) == NULL)
        return -1;
    if (record_of(key, klen, prefix, &t, id) == 0) {
        if (!deleted && (!cJSON_IsString(v) || (val = etcdwire_unb64(v->valuestring, &vlen)) == NULL))
            rc = -1;
        else
            rc = put(t, id, deleted ? NULL : val, vlen, arg) < 0 ? -1 : 0;
    }
    free(key);
    free(val);
    return rc;
}

int etcdwire_decode_watch(const char *msg, size_t n, const char *prefix, int64_t after, etcd_put_fn put,
                          void *arg, int64_t *rev, int64_t *compacted, int *created)
{
    cJSON *root = cJSON_ParseWithLength(msg, n);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result"), *ev;
    int rc = 0;
    *rev = 0;
    *compacted = 0;
    *created = 0;
    if (!cJSON_IsObject(res)) {
        cJSON_Delete(root);
        return -1;
    }
    *created = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "created"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "canceled"))) {
        *compacted = etcdwire_num(res, "compact_revision");
        cJSON_Delete(root);
        return *compacted > 0 ? 0 : -1;
    }
    cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(res, "events")) {
        const cJSON *kvo = cJSON_GetObjectItemCaseSensitive(ev, "kv"), *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
        int64_t at = etcdwire_num(kvo, "mod_revision");
        if (at <= 0) {
            rc = -1;
            break;
        }
        if (at <= after)
            continue;                   /* the mirror has it (its own write, applied at once) */
        if (etcdwire_put_kv(kvo, cJSON_IsString(type) && strcmp(type->valuestring, "DELETE") == 0, prefix, put, arg) < 0) {
            rc = -1;
            break;
        }
        if (at > *rev)
            *rev = at;
    }
    cJSON_Delete(root);
    return rc;
}

int etcdwire_append(etcd_line_t *line, const char *p, size_t n, size_t max)
{
    if (line->len + n + 1 > line->cap) {
        size_t cap = line->cap ? line->cap : 4096;
        char *nb;
        while (cap < line->len + n + 1)
            cap *= 2;
        if (cap > max || (nb = realloc(line->buf, cap)) == NULL)
            return -1;
        line->buf = nb;
        line->cap = cap;
    }
    memcpy(line->buf + line->len, p, n);
    line->len += n;
    line->buf[line->len] = '\0';
    return 0;
}

int etcdwire_feed(etcd_line_t *line, const char *data, size_t len, int (*fn)(const char *msg, size_t n, void *arg),
                  void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl != NULL ? (size_t)(nl - data) : len;
        if (etcdwire_append(line, data, take, ETCD_LINE_MAX_BYTES) < 0)
            return -1;
        if (nl == NULL)
            return 0;
        data = nl + 1;
        len -= take + 1;
        if (line->len > 0) {
            int rc = fn(line->buf, line->len, arg);
            line->len = 0;
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}
