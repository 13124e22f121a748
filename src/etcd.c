/* etcd.c - a cluster's store of record (SPEC 10): etcd v3 through its HTTP/JSON gateway, mirrored into the local store.
 *
 * In etcd, under the prefix (cluster.prefix, "/turnout/"):
 *   records/TABLE/ID   a record's JSON, as the store keeps it (secrets too:
 *                      etcd is where the nodes get their provider keys)
 *   serial             rewritten by every write: the write's guard
 * A write (store.h's remote) is one transaction whose compare says that
 * serial has not changed since the revision the writing node's mirror is
 * at; so every write was checked, by store.c's own code, against the whole
 * store as it then was: two nodes creating the same route name at once
 * give one 201 and one 409, and a provider cannot lose its last route's
 * reference to a concurrent delete. A write that loses the race is checked
 * again once the mirror has caught up.
 *
 * Every node mirrors records/ into its LMDB: a full snapshot (paged, at
 * one revision) when it has none or etcd compacted past its revision, then
 * a watch from the revision after the mirror's, on this module's own
 * thread (turnout-etcd) with blocking libcurl: the workers never talk to
 * etcd and never wait for it; they read LMDB as on a single node. When etcd
 * cannot be reached the mirror stays as it is and keeps serving; admin
 * writes answer 503; the watch retries with back-off and resumes from the
 * mirror's revision. */
#include "etcd.h"
#include "etcdwire.h"
#include "log.h"
#include "smallmem.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENDPOINTS 16
#define PAGE 5000                       /* records per snapshot page (etcd counts to the range's end for each) */
#define CALL_TIMEOUT_MS 3000            /* a transaction or a snapshot page (the admin thread waits that long at most) */
#define CONNECT_TIMEOUT_MS 1000
#define MAX_BODY (64u << 20)

struct etcd {
    store_t *store;
    char prefix[128], records[160], serial[160];
    char *endpoints[MAX_ENDPOINTS];
    int nendpoints;
    _Atomic int current;                /* the endpoint that answered last */
    CURL *caller;                       /* the admin thread's (or the command line's) */
    pthread_t thread;
    int started;
    _Atomic int stop;
    _Atomic int connected;
    _Atomic int64_t down_since_ms;      /* when the watch last went down, or the module began */
    _Atomic uint64_t errors;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- calls --- */

/* An answer's body, read whole (up to MAX_BODY) into an etcd_line_t. */
static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return etcdwire_append(arg, p, size * n, MAX_BODY) == 0 ? size * n : 0;
}

static void setup(CURL *h, const char *url, const char *payload, long timeout_ms)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 2L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
}

/* POSTs REQ to PATH, trying each endpoint from the one that answered last.
 * Returns etcd's answer, or NULL with the reason in err and *REFUSED set:
 * 1 when etcd answered with an error (not worth another endpoint), 2 when
 * its answer was over MAX_BODY. */
static cJSON *call(etcd_t *e, CURL *h, const char *path, const cJSON *req, char *err, size_t errlen, int *refused)
{
    char *payload = cJSON_PrintUnformatted(req), url[1200];
    int first = atomic_load(&e->current);
    cJSON *resp = NULL;
    *refused = 0;
    if (payload == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < e->nendpoints && resp == NULL && !*refused; i++) {
        int at = (first + i) % e->nendpoints;
        etcd_line_t b = { 0 };
        long status = 0;
        CURLcode rc;
        snprintf(url, sizeof(url), "%s%s", e->endpoints[at], path);
        setup(h, url, payload, CALL_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_WRITE_ERROR) {
            snprintf(err, errlen, "etcd %s: an answer over %u MiB", e->endpoints[at], MAX_BODY >> 20);
            *refused = 2;
        } else if (rc != CURLE_OK) {
            snprintf(err, errlen, "etcd %s: %s", e->endpoints[at], curl_easy_strerror(rc));
        } else if (status != 200) {
            cJSON *eb = b.buf != NULL ? cJSON_Parse(b.buf) : NULL;
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(eb, "message");
            if (!cJSON_IsString(m))
                m = cJSON_GetObjectItemCaseSensitive(eb, "error");
            snprintf(err, errlen, "etcd %s answered %ld: %s", e->endpoints[at], status,
                     cJSON_IsString(m) ? m->valuestring : "(no message)");
            cJSON_Delete(eb);
            *refused = status >= 400 && status < 500;
        } else if ((resp = b.buf != NULL ? cJSON_Parse(b.buf) : NULL) == NULL) {
            snprintf(err, errlen, "etcd %s: an answer that is not JSON", e->endpoints[at]);
        } else {
            atomic_store(&e->current, at);
        }
        free(b.buf);
    }
    if (resp == NULL)
        atomic_fetch_add(&e->errors, 1);
    free(payload);
    return resp;
}

/* --- writes (store.h's remote) --- */

static int add_op(cJSON *ops, const char *kind, cJSON *body)
{
    cJSON *op = cJSON_CreateObject();
    if (op == NULL || body == NULL) {
        cJSON_Delete(op);
        cJSON_Delete(body);
        return -1;
    }
    cJSON_AddItemToObject(op, kind, body);
    cJSON_AddItemToArray(ops, op);
    return 0;
}

static cJSON *kv(const char *key, const char *value, size_t vlen)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || etcdwire_add_b64(o, "key", key, strlen(key)) < 0 ||
        (value != NULL && etcdwire_add_b64(o, "value", value, vlen) < 0)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* One transaction: the changes V[0..N) of a plan, guarded by serial's
 * revision (below AFTER + 1 when LESS, else equal to AFTER). Returns 0 with
 * *REV the revision made, 1 when serial is elsewhere (*REV: where), -1
 * unreachable, -2 refused (err says why). */
static int txn(etcd_t *e, const store_change_t *v, int n, int64_t after, int less, int64_t *rev, char *err,
               size_t errlen)
{
    cJSON *req = cJSON_CreateObject(), *cmp = cJSON_AddArrayToObject(req, "compare"), *c = cJSON_CreateObject();
    cJSON *ok = cJSON_AddArrayToObject(req, "success"), *fail = cJSON_AddArrayToObject(req, "failure"), *resp;
    char key[400], mod[32], stamp[32];
    int bad = c == NULL || etcdwire_add_b64(c, "key", e->serial, strlen(e->serial)) < 0, refused, rc = -1;

    snprintf(mod, sizeof(mod), "%lld", (long long)(less ? after + 1 : after));
    cJSON_AddStringToObject(c, "target", "MOD");
    cJSON_AddStringToObject(c, "result", less ? "LESS" : "EQUAL");
    cJSON_AddStringToObject(c, "mod_revision", mod);
    cJSON_AddItemToArray(cmp, c);
    snprintf(stamp, sizeof(stamp), "%lld", (long long)time(NULL));
    bad |= add_op(ok, "request_put", kv(e->serial, stamp, strlen(stamp)));
    for (int i = 0; i < n && !bad; i++) {
        snprintf(key, sizeof(key), "%s%s/%s", e->records, store_table_name(v[i].t), v[i].id);
        bad |= add_op(ok, v[i].json != NULL ? "request_put" : "request_delete_range", kv(key, v[i].json, v[i].len));
    }
    bad |= add_op(fail, "request_range", kv(e->serial, NULL, 0));
    if (bad) {
        snprintf(err, errlen, "out of memory");
        cJSON_Delete(req);
        return -1;
    }
    if ((resp = call(e, e->caller, "/v3/kv/txn", req, err, errlen, &refused)) != NULL) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "succeeded"))) {
            *rev = etcdwire_revision(resp);
            rc = 0;
        } else {
            /* responses[0].response_range.kvs[0].mod_revision: where serial is now */
            const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "responses"), 0);
            r = cJSON_GetObjectItemCaseSensitive(r, "response_range");
            *rev = etcdwire_num(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "kvs"), 0), "mod_revision");
            if (*rev <= after)
                *rev = etcdwire_revision(resp);
            rc = 1;
        }
    } else if (refused != 0) {
        rc = -2;
    } else {
        char why[400];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "the store of record cannot be reached (%s); this node serves from its mirror, "
                              "but writes wait until etcd answers", why);
    }
    cJSON_Delete(resp);
    cJSON_Delete(req);
    return rc;
}

/* The remote's commit. A plan within etcd's default limits (128
 * operations, 1.5 MiB a request) is one transaction. A bigger one (an
 * import) is several, each guarded by the revision the one before made,
 * so that nothing else is written in between: the first is checked as any
 * write; should another write come between two of them, the import stops
 * there (refused, saying how far it got: importing again completes it, an
 * import replacing what it names). */
#define TXN_OPS 120
#define TXN_BYTES (1u << 20)

static int commit(void *arg, const store_plan_t *plan, int64_t *rev, char *err, size_t errlen)
{
    etcd_t *e = arg;
    int64_t at = plan->revision;
    int done = 0, rc = 0;
    while (done < plan->n) {
        int n = 0;
        size_t bytes = 0;
        while (done + n < plan->n && n < TXN_OPS && (n == 0 || bytes + plan->v[done + n].len < TXN_BYTES))
            bytes += plan->v[done + n++].len + 200;
        rc = txn(e, plan->v + done, n, at, done == 0, &at, err, errlen);
        if (rc != 0 && done > 0) {
            char why[300];
            snprintf(why, sizeof(why), "%s", rc == 1 ? "another write came in between" : err);
            snprintf(err, errlen, "the import was written in part (%d of %d records): %s; import it again to "
                                  "complete it", done, plan->n, why);
            return -2;
        }
        if (rc != 0) {
            *rev = at;
            return rc;
        }
        done += n;
    }
    *rev = at;
    return 0;
}

/* --- the mirror --- */

static int mirror_put(store_table_t t, const char *id, const char *json, size_t len, void *arg)
{
    return store_mirror_put(arg, t, id, json, len);
}

/* A full snapshot of records/ at one revision, paged, into a mirror
 * emptied first; nothing happens when the mirror has that revision. */
static int snapshot(etcd_t *e, CURL *h, char *err, size_t errlen)
{
    store_mirror_t *m = NULL;
    int64_t rev = 0;
    char *from = strdup(e->records);
    size_t flen = strlen(e->records);
    int more = 1, refused, rc = -1, stepwise = 0, page = PAGE;

    while (more && from != NULL) {
        cJSON *req = cJSON_CreateObject(), *resp, *kvo;
        char *last = NULL;
        size_t llen = 0;
        char revs[32];
        if (req == NULL || etcdwire_add_b64(req, "key", from, flen) < 0 || etcdwire_add_range_end(req, e->records) < 0) {
            cJSON_Delete(req);
            snprintf(err, errlen, "out of memory");
            break;
        }
        cJSON_AddNumberToObject(req, "limit", page);
        if (rev > 0) {
            snprintf(revs, sizeof(revs), "%lld", (long long)rev);
            cJSON_AddStringToObject(req, "revision", revs);
        }
        resp = call(e, h, "/v3/kv/range", req, err, errlen, &refused);
        cJSON_Delete(req);
        if (resp == NULL && refused == 2 && page > 1) {
            page = page > 4 ? page / 4 : 1;   /* records this big: fewer a page, the same page again */
            continue;
        }
        if (resp == NULL)
            break;
        if (rev == 0) {                  /* the first page: its revision is the snapshot's */
            rev = etcdwire_revision(resp);
            if ((m = store_mirror_begin(e->store, 1)) == NULL) {
                snprintf(err, errlen, "the mirror could not be written");
                cJSON_Delete(resp);
                break;
            }
            if (store_mirror_applied(m) >= rev) {        /* up to date already */
                cJSON_Delete(resp);
                store_mirror_abort(m);
                m = NULL;
                rc = 0;
                break;
            }
            /* a mirror that has nothing (no revision yet) serves nothing:
             * it takes the pages one transaction each, which keeps LMDB's
             * dirty pages (kept for reuse until the store closes) to a
             * page's worth; its revision is written with the last */
            stepwise = store_mirror_applied(m) == 0;
        } else if (m == NULL && (m = store_mirror_begin(e->store, 0)) == NULL) {
            snprintf(err, errlen, "the mirror could not be written");
            cJSON_Delete(resp);
            break;
        }
        cJSON_ArrayForEach(kvo, cJSON_GetObjectItemCaseSensitive(resp, "kvs")) {
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(kvo, "key");
            if (etcdwire_put_kv(kvo, 0, e->records, mirror_put, m) < 0) {
                snprintf(err, errlen, "a record of etcd's could not be mirrored");
                more = -1;
                break;
            }
            free(last);
            last = cJSON_IsString(k) ? etcdwire_unb64(k->valuestring, &llen) : NULL;
        }
        if (more >= 0)
            more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "more")) && last != NULL;
        cJSON_Delete(resp);
        free(from);
        from = NULL;
        if (more > 0 && (from = malloc(llen + 1)) != NULL) {     /* the next page: just after the last key */
            memcpy(from, last, llen);
            from[llen] = '\0';
            flen = llen + 1;
        }
        free(last);
        if (more < 0)
            break;
        if (more > 0 && stepwise) {
            if (store_mirror_commit(m, 0) < 0) {
                m = NULL;
                snprintf(err, errlen, "the mirror could not be written");
                break;
            }
            m = NULL;
        }
        if (more == 0) {
            rc = store_mirror_commit(m, rev);
            m = NULL;
            if (rc < 0)
                snprintf(err, errlen, "the mirror could not be written");
            else
                tlog(LOG_INFO, "etcd: mirrored a snapshot of %s at revision %lld", e->prefix, (long long)rev);
            smallmem_release_heap();     /* the pages' JSON, parsed and freed, back to the system */
        }
    }
    store_mirror_abort(m);
    free(from);
    return rc;
}

int etcd_sync(etcd_t *e, char *err, size_t errlen)
{
    int rc = snapshot(e, e->caller, err, errlen);
    if (rc == 0)
        atomic_store(&e->connected, 1);   /* etcd answered: up, until the watch says otherwise */
    return rc;
}

/* The remote's catch_up: the watch brings the mirror to REV, normally
 * within milliseconds; without a watch (the command line), or when it
 * does not, a snapshot does. */
static int catch_up(void *arg, int64_t rev, char *err, size_t errlen)
{
    etcd_t *e = arg;
    for (int i = 0; e->started && i < 400; i++) {
        if (store_mirror_revision(e->store) >= rev)
            return 0;
        usleep(5000);
    }
    return snapshot(e, e->caller, err, errlen);
}

/* --- the watch --- */

typedef struct watch {
    etcd_t *e;
    etcd_line_t line;
    int resync;                        /* etcd compacted past the mirror */
    int at;                            /* the endpoint watched */
    CURL *probe;                       /* the liveness probe's (on_progress) */
    int64_t last_probe_ms;
    int hung;                          /* the probe got no answer */
} watch_t;

static int on_message(const char *msg, size_t n, void *arg)
{
    watch_t *w = arg;
    etcd_t *e = w->e;
    store_mirror_t *m = store_mirror_begin(e->store, 0);
    int64_t rev, compacted;
    int created, rc;
    if (m == NULL)
        return -1;
    rc = etcdwire_decode_watch(msg, n, e->records, store_mirror_applied(m), mirror_put, m, &rev, &compacted, &created);
    if (rc == 0 && rev > 0)
        rc = store_mirror_commit(m, rev);
    else
        store_mirror_abort(m);
    if (rc < 0) {
        tlog(LOG_WARN, "etcd: a watch message could not be applied; reconnecting from the mirror's revision");
        return -1;
    }
    if (compacted > 0) {
        tlog(LOG_WARN, "etcd: compacted to revision %lld, past the mirror's; taking a full snapshot",
             (long long)compacted);
        w->resync = 1;
        return 1;
    }
    if (created) {
        atomic_store(&e->connected, 1);
        tlog(LOG_INFO, "etcd: watching %s from revision %lld", e->prefix,
             (long long)store_mirror_revision(e->store) + 1);
    }
    return 0;
}

static size_t on_watch_bytes(char *p, size_t size, size_t n, void *arg)
{
    watch_t *w = arg;
    return etcdwire_feed(&w->line, p, size * n, on_message, w) == 0 ? size * n : 0;
}

/* A watch on which nothing comes is either quiet or cut off without a
 * close (a hung etcd, a partition that drops packets): every PROBE_MS the
 * watch's thread asks etcd for serial, with a short limit, and gives the
 * watch up when it gets no answer. */
#define PROBE_MS 3000
#define PROBE_TIMEOUT_MS 2000

static int alive(watch_t *w)
{
    etcd_t *e = w->e;
    cJSON *req = cJSON_CreateObject();
    char url[1200], *payload;
    etcd_line_t b = { 0 };
    long status = 0;
    int ok = 0;
    if (req == NULL || etcdwire_add_b64(req, "key", e->serial, strlen(e->serial)) < 0 ||
        (payload = cJSON_PrintUnformatted(req)) == NULL) {
        cJSON_Delete(req);
        return 1;                         /* out of memory: no verdict */
    }
    cJSON_Delete(req);
    if (w->probe == NULL)
        w->probe = curl_easy_init();
    if (w->probe != NULL) {
        snprintf(url, sizeof(url), "%s/v3/kv/range", e->endpoints[w->at]);
        setup(w->probe, url, payload, PROBE_TIMEOUT_MS);
        curl_easy_setopt(w->probe, CURLOPT_CONNECTTIMEOUT_MS, (long)PROBE_TIMEOUT_MS);
        curl_easy_setopt(w->probe, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(w->probe, CURLOPT_WRITEDATA, &b);
        ok = curl_easy_perform(w->probe) == CURLE_OK &&
             curl_easy_getinfo(w->probe, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200;
    } else {
        ok = 1;
    }
    free(b.buf);
    free(payload);
    return ok;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    watch_t *w = arg;
    int64_t now = now_ms();
    (void)a, (void)b, (void)c, (void)d;
    if (atomic_load(&w->e->stop))
        return 1;
    if (now - w->last_probe_ms >= PROBE_MS) {
        w->last_probe_ms = now;
        if (!alive(w)) {
            w->hung = 1;
            return 1;
        }
    }
    return 0;
}

static void went_down(etcd_t *e, const char *why)
{
    if (atomic_exchange(&e->connected, 0)) {
        atomic_store(&e->down_since_ms, now_ms());
        tlog(LOG_WARN, "etcd: the watch dropped (%s); serving from the mirror at revision %lld", why,
             (long long)store_mirror_revision(e->store));
    }
    atomic_fetch_add(&e->errors, 1);
}

/* One watch from the mirror's revision, until it ends; returns 1 when a
 * snapshot is needed. */
static int watch_once(etcd_t *e, CURL *h)
{
    watch_t w = { e, { NULL, 0, 0 }, 0, 0, NULL, now_ms(), 0 };
    cJSON *req = cJSON_CreateObject(), *cr = cJSON_AddObjectToObject(req, "create_request");
    char from[32], url[1200], *payload;
    int at = w.at = atomic_load(&e->current);
    CURLcode rc;

    snprintf(from, sizeof(from), "%lld", (long long)store_mirror_revision(e->store) + 1);
    if (cr == NULL || etcdwire_add_b64(cr, "key", e->records, strlen(e->records)) < 0 || etcdwire_add_range_end(cr, e->records) < 0 ||
        cJSON_AddStringToObject(cr, "start_revision", from) == NULL || (payload = cJSON_PrintUnformatted(req)) == NULL) {
        cJSON_Delete(req);
        return 0;
    }
    cJSON_Delete(req);
    snprintf(url, sizeof(url), "%s/v3/watch", e->endpoints[at]);
    setup(h, url, payload, 0);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_watch_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &w);
    rc = curl_easy_perform(h);
    free(payload);
    free(w.line.buf);
    if (w.probe != NULL)
        curl_easy_cleanup(w.probe);
    if (!atomic_load(&e->stop)) {
        went_down(e, w.resync ? "compacted" : w.hung ? "etcd does not answer"
                     : rc == CURLE_OK ? "closed by etcd" : curl_easy_strerror(rc));
        if (rc != CURLE_OK && !w.resync)
            atomic_store(&e->current, (at + 1) % e->nendpoints);   /* the next endpoint, next time */
    }
    return w.resync;
}

static void *watch_main(void *arg)
{
    etcd_t *e = arg;
    CURL *h = curl_easy_init();
    char err[512];
    int backoff_ms = 100, resync = store_mirror_revision(e->store) == 0;
    pthread_setname_np(pthread_self(), "turnout-etcd");
    while (h != NULL && !atomic_load(&e->stop)) {
        if (resync) {
            if (snapshot(e, h, err, sizeof(err)) < 0) {
                went_down(e, err);
                goto wait;
            }
            resync = 0;
        }
        int64_t before = store_mirror_revision(e->store);
        resync = watch_once(e, h);
        if (store_mirror_revision(e->store) > before || resync)
            backoff_ms = 100;                  /* it worked for a while: try again soon */
    wait:
        for (int i = 0; i < backoff_ms / 50 && !atomic_load(&e->stop); i++)
            usleep(50000);
        backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
    }
    curl_easy_cleanup(h);
    return NULL;
}

static int is_up(void *arg)
{
    return atomic_load(&((etcd_t *)arg)->connected);
}

/* --- life --- */

etcd_t *etcd_open(const config_t *cfg, store_t *s, char *err, size_t errlen)
{
    etcd_t *e = calloc(1, sizeof(*e));
    char list[sizeof(cfg->cluster_etcd)], *save = NULL;
    if (e == NULL || (e->caller = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(e);
        return NULL;
    }
    e->store = s;
    atomic_store(&e->down_since_ms, now_ms());
    snprintf(e->prefix, sizeof(e->prefix), "%s", cfg->cluster_prefix);
    snprintf(e->records, sizeof(e->records), "%srecords/", cfg->cluster_prefix);
    snprintf(e->serial, sizeof(e->serial), "%sserial", cfg->cluster_prefix);
    snprintf(list, sizeof(list), "%s", cfg->cluster_etcd);
    for (char *p = strtok_r(list, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(p);
        while (n > 0 && p[n - 1] == '/')
            p[--n] = '\0';
        if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0) {
            snprintf(err, errlen, "cluster.etcd: \"%s\" is not an http:// or https:// URL", p);
            etcd_close(e);
            return NULL;
        }
        if (e->nendpoints == MAX_ENDPOINTS) {
            snprintf(err, errlen, "cluster.etcd: at most %d endpoints", MAX_ENDPOINTS);
            etcd_close(e);
            return NULL;
        }
        if ((e->endpoints[e->nendpoints++] = strdup(p)) == NULL) {
            snprintf(err, errlen, "out of memory");
            etcd_close(e);
            return NULL;
        }
    }
    store_set_remote(s, &(store_remote_t){ commit, catch_up, is_up, e });
    return e;
}

int etcd_start(etcd_t *e)
{
    if (pthread_create(&e->thread, NULL, watch_main, e) != 0)
        return -1;
    e->started = 1;
    return 0;
}

void etcd_close(etcd_t *e)
{
    if (e == NULL)
        return;
    atomic_store(&e->stop, 1);
    if (e->started)
        pthread_join(e->thread, NULL);
    store_set_remote(e->store, NULL);
    for (int i = 0; i < e->nendpoints; i++)
        free(e->endpoints[i]);
    curl_easy_cleanup(e->caller);
    free(e);
}

void etcd_status(etcd_t *e, etcd_status_t *st)
{
    int64_t since = atomic_load(&e->down_since_ms);
    st->revision = store_mirror_revision(e->store);
    st->connected = atomic_load(&e->connected);
    st->behind_s = st->connected ? 0 : (double)(now_ms() - since) / 1000.0;
    st->errors = atomic_load(&e->errors);
}
