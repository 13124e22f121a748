/* shared.c - counters a cluster's nodes share on Redis (SPEC 10): budget and rate-limit reservations, places in flight, upstreams' not-before times.
 *
 * With cluster.redis set, what a budget or rate limit counts lives in
 * Redis, so that a limit holds across every node, not per node. Each
 * worker has its own connection (hiredis, on the worker's event loop via
 * its libevent adapter; commands are pipelined, nothing ever blocks), and
 * a reservation is one EVALSHA of the reserve script below: every counter
 * that applies is checked, then all are taken, or none. A request that no
 * budget or limit applies to never calls Redis.
 *
 * In Redis, under cluster.prefix:
 *   NAME:TAG   a hash per ledger entry (NAME: "b:ID", "k:ID", "t:TENANT")
 *              and window (TAG, ledger.c's): u (nano-USD), t (tokens), r
 *              (requests), spent and reserved; it expires with its window
 *   NAME:f     a sorted set of the requests in flight, scored by when the
 *              place lapses should its node die holding it
 *   rid:RID    one per reservation made (RID: node, worker, sequence),
 *              until it is settled: a settle applies only while it is
 *              there, so a reservation is settled once. A settle that
 *              finds none leaves "0" there instead (for as long as a place
 *              in flight lasts), and a reservation that finds that takes
 *              nothing: so one whose answer never came can be given back
 *              safely whichever reaches Redis first, the reservation (a
 *              hung Redis reads it once it wakes) or its giving back
 *   nodes      a sorted set of the live nodes, scored by their last beat
 *   defer      the channel on which a node tells the others that an
 *              upstream answered 429 with a Retry-After
 *
 * A call that gets no answer within CALL_TIMEOUT_MS drops the connection
 * (every call on it fails, and the caller falls back on
 * cluster.redis_failure), and it is made again in the background. A
 * reservation that failed so may still have been made (a hung Redis reads
 * it once it wakes): once connected again, it is given back by its RID. */
#include "shared.h"
#include "health.h"
#include "log.h"
#include "tally.h"
#include "worker.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 500
#define RECONNECT_MS 500
#define BEAT_MS 1000
#define NODE_TTL_MS 5000

static const char reserve_lua[] =
    "if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return {2} end\n"
    "local n = (#KEYS - 1) / 2\n"
    "local now = tonumber(ARGV[1])\n"
    "for i = 1, n do\n"
    "  local b = 3 + (i - 1) * 8\n"
    "  local held = redis.call('HMGET', KEYS[2*i-1], 'u', 't', 'r')\n"
    "  for c = 1, 3 do\n"
    "    local lim = tonumber(ARGV[b + c])\n"
    "    if lim >= 0 then\n"
    "      local v = tonumber(held[c]) or 0\n"
    "      if v >= lim or v + tonumber(ARGV[b + 3 + c]) > lim then return {0, i, c - 1} end\n"
    "    end\n"
    "  end\n"
    "  local fl = tonumber(ARGV[b + 8])\n"
    "  if fl >= 0 then\n"
    "    redis.call('ZREMRANGEBYSCORE', KEYS[2*i], '-inf', now)\n"
    "    if redis.call('ZCARD', KEYS[2*i]) >= fl then return {0, i, 3} end\n"
    "  end\n"
    "end\n"
    "local out, f = {1}, {'u', 't', 'r'}\n"
    "for i = 1, n do\n"
    "  local b = 3 + (i - 1) * 8\n"
    "  for c = 1, 3 do out[#out + 1] = redis.call('HINCRBY', KEYS[2*i-1], f[c], ARGV[b + 3 + c]) end\n"
    "  if tonumber(ARGV[b + 7]) > 0 then redis.call('EXPIRE', KEYS[2*i-1], ARGV[b + 7]) end\n"
    "  if tonumber(ARGV[b + 8]) >= 0 then\n"
    "    redis.call('ZADD', KEYS[2*i], now + tonumber(ARGV[3]), ARGV[2])\n"
    "    redis.call('PEXPIRE', KEYS[2*i], ARGV[3])\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[#KEYS], '1', 'PX', ARGV[3])\n"
    "return out\n";

static const char settle_lua[] =
    "local v = redis.call('GET', KEYS[#KEYS])\n"
    "if v == false then redis.call('SET', KEYS[#KEYS], '0', 'PX', ARGV[2]) return 0 end\n"
    "if v == '0' then return 0 end\n"
    "redis.call('DEL', KEYS[#KEYS])\n"
    "local f = {'u', 't', 'r'}\n"
    "for i = 1, (#KEYS - 1) / 2 do\n"
    "  local b = 2 + (i - 1) * 4\n"
    "  if redis.call('EXISTS', KEYS[2*i-1]) == 1 then\n"
    "    for c = 1, 3 do\n"
    "      if ARGV[b + c] ~= '0' then redis.call('HINCRBY', KEYS[2*i-1], f[c], ARGV[b + c]) end\n"
    "    end\n"
    "  end\n"
    "  if ARGV[b + 4] == '1' then redis.call('ZREM', KEYS[2*i], ARGV[1]) end\n"
    "end\n"
    "return 1\n";

/* The command of one script call: EVALSHA SHA NKEYS KEYS... ARGS...
 * (one per worker, in shared_t, reused: hiredis copies what it sends) */
typedef struct cmd {
    int argc;
    const char *argv[8 + SHARED_MAX_TAKES * 10];
    size_t len[8 + SHARED_MAX_TAKES * 10];
    char text[SHARED_MAX_TAKES * 10 + 8][256];
    int ntext;
} cmd_t;

struct shared_call {
    shared_t *s;
    shared_done_fn done;              /* NULL once forgotten */
    void *arg;
    int64_t sent_us;                  /* monotonic */
    int n;
    shared_take_t t[SHARED_MAX_TAKES];   /* what to give back, should it be forgotten or fail */
    char rid[SHARED_RID];
    struct shared_call *prev, *next;  /* the connection's calls, oldest first */
};

struct shared {
    worker_t *w;
    char host[200];
    int port;
    char prefix[128];
    char node[64];                    /* this node's name in "nodes" */
    redisAsyncContext *ac, *sub;      /* commands; worker 0's subscription */
    int ready;                        /* connected, both scripts loaded */
    int loading;
    char sha_reserve[48], sha_settle[48];
    shared_call_t *oldest, *newest;
    shared_call_t *undo;              /* failed reservations to give back once connected */
    int nundo;
    uint64_t seq;                     /* of reservations: their RIDs */
    cmd_t *cmd;                       /* the command being put together */
    struct event *tick;               /* timeouts, reconnection, the beat */
    int64_t next_connect_ms, next_beat_ms;
};

static _Atomic int live_nodes = 1;
static _Atomic uint64_t rtt_ewma_us, call_errors;
static _Atomic int zero_up;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int shared_nodes(void)
{
    int n = atomic_load_explicit(&live_nodes, memory_order_relaxed);
    return n > 0 ? n : 1;
}

void shared_figures(double *rtt_us, uint64_t *errors, int *up)
{
    *rtt_us = (double)atomic_load(&rtt_ewma_us);
    *errors = atomic_load(&call_errors);
    *up = atomic_load(&zero_up);
}

static void observe_rtt(int64_t us)
{
    uint64_t old = atomic_load_explicit(&rtt_ewma_us, memory_order_relaxed);
    uint64_t v = old == 0 ? (uint64_t)us : (old * 7 + (uint64_t)us) / 8;
    atomic_store_explicit(&rtt_ewma_us, v, memory_order_relaxed);
}

/* --- the connection --- */

static void unlink_call(shared_t *s, shared_call_t *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->oldest = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        s->newest = c->prev;
}

/* The command connection is gone (S->ac already NULL or about to be). */
static void lost(shared_t *s)
{
    if (s->ready && s->w->id == 0) {
        if (strcmp(s->w->cfg->cluster_redis_failure, "closed") == 0)
            tlog(LOG_WARN, "redis %s:%d: connection lost; requests with a budget or rate limit get 429 until it "
                 "is back (cluster.redis_failure closed)", s->host, s->port);
        else
            tlog(LOG_WARN, "redis %s:%d: connection lost; this node enforces 1/%d of every budget and rate limit "
                 "on its own until it is back (cluster.redis_failure local)", s->host, s->port, shared_nodes());
    }
    s->ac = NULL;
    s->ready = 0;
    s->loading = 0;
    if (s->w->id == 0)
        atomic_store(&zero_up, 0);
    s->next_connect_ms = mono_ms() + RECONNECT_MS;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    shared_t *s = ac->data;
    (void)status;
    if (s == NULL)
        return;
    if (ac == s->ac)
        lost(s);
    else if (ac == s->sub)
        s->sub = NULL;
    s->next_connect_ms = mono_ms() + RECONNECT_MS;
}

static void undo_failed(shared_t *s);

static void on_loaded(redisAsyncContext *ac, void *reply, void *privdata)
{
    shared_t *s = ac->data;
    redisReply *rep = reply;
    char *sha = privdata;
    if (s == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_STRING || rep->len >= 48) {
        tlog(LOG_ERROR, "redis %s:%d: SCRIPT LOAD failed: %s", s->host, s->port,
             rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        redisAsyncDisconnect(ac);
        return;
    }
    memcpy(sha, rep->str, rep->len);
    sha[rep->len] = '\0';
    if (--s->loading == 0) {
        s->ready = 1;
        undo_failed(s);
        if (s->w->id == 0) {
            atomic_store(&zero_up, 1);
            tlog(LOG_INFO, "redis %s:%d: connected; budgets and rate limits are shared", s->host, s->port);
        }
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    shared_t *s = ac->data;
    if (s != NULL && ac == s->sub && status != REDIS_OK)
        s->sub = NULL;                  /* freed by hiredis after this callback */
    if (s == NULL || ac != s->ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        s->ac = NULL;
        s->next_connect_ms = mono_ms() + RECONNECT_MS;
        return;
    }
    s->loading = 2;
    redisAsyncCommand(s->ac, on_loaded, s->sha_reserve, "SCRIPT LOAD %s", reserve_lua);
    redisAsyncCommand(s->ac, on_loaded, s->sha_settle, "SCRIPT LOAD %s", settle_lua);
}

static void on_defer_message(redisAsyncContext *ac, void *reply, void *privdata);

static redisAsyncContext *dial(shared_t *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (ac == NULL)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    redisLibeventAttach(ac, s->w->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_now(shared_t *s)
{
    s->next_connect_ms = mono_ms() + RECONNECT_MS;
    if (s->ac == NULL)
        s->ac = dial(s);
    if (s->w->id == 0 && s->sub == NULL && (s->sub = dial(s)) != NULL) {
        char channel[200];
        snprintf(channel, sizeof(channel), "%sdefer", s->prefix);
        redisAsyncCommand(s->sub, on_defer_message, NULL, "SUBSCRIBE %s", channel);
    }
}

/* --- the beat and the live-node count (worker 0) --- */

static void on_count(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    (void)ac, (void)privdata;
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 &&
        atomic_exchange(&live_nodes, (int)rep->integer) != (int)rep->integer)
        tlog(LOG_INFO, "redis: %lld node%s alive", rep->integer, rep->integer == 1 ? "" : "s");
}

static void beat(shared_t *s)
{
    char key[200], score[32], old[32];
    int64_t now = wall_ms();
    snprintf(key, sizeof(key), "%snodes", s->prefix);
    snprintf(score, sizeof(score), "%lld", (long long)now);
    snprintf(old, sizeof(old), "%lld", (long long)(now - NODE_TTL_MS));
    redisAsyncCommand(s->ac, NULL, NULL, "ZADD %s %s %s", key, score, s->node);
    redisAsyncCommand(s->ac, NULL, NULL, "ZREMRANGEBYSCORE %s -inf %s", key, old);
    redisAsyncCommand(s->ac, on_count, NULL, "ZCARD %s", key);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    shared_t *s = arg;
    int64_t now = mono_ms();
    (void)fd, (void)what;
    if (s->ac != NULL && s->oldest != NULL && now - s->oldest->sent_us / 1000 > CALL_TIMEOUT_MS) {
        redisAsyncContext *ac = s->ac;
        tlog(LOG_WARN, "redis %s:%d: no answer in %d ms; reconnecting", s->host, s->port, CALL_TIMEOUT_MS);
        /* dropped now, not once the replies are in (redisAsyncDisconnect
         * would wait for them): every call on it fails at once, on_reserved
         * with NULL, and on_disconnect runs */
        lost(s);                          /* (s->ac is NULL before hiredis calls on_disconnect) */
        redisAsyncFree(ac);
    }
    if ((s->ac == NULL || (s->w->id == 0 && s->sub == NULL)) && now >= s->next_connect_ms)
        connect_now(s);
    if (s->w->id == 0 && s->ready && now >= s->next_beat_ms) {
        s->next_beat_ms = now + BEAT_MS;
        beat(s);
    }
}

shared_t *shared_new(worker_t *w, const config_t *cfg)
{
    shared_t *s;
    const char *colon = strrchr(cfg->cluster_redis, ':');
    struct timeval every = { 0, 100000 };
    char host[256];
    if (cfg->cluster_redis[0] == '\0' || colon == NULL || (s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    s->w = w;
    snprintf(s->host, sizeof(s->host), "%.*s", (int)(colon - cfg->cluster_redis), cfg->cluster_redis);
    s->port = atoi(colon + 1);
    snprintf(s->prefix, sizeof(s->prefix), "%s", cfg->cluster_prefix);
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "node");
    host[sizeof(host) - 1] = '\0';
    snprintf(s->node, sizeof(s->node), "%.40s:%d/%d", host, cfg->listen_port, (int)getpid());
    if ((s->cmd = malloc(sizeof(*s->cmd))) == NULL ||
        (s->tick = event_new(w->base, -1, EV_PERSIST, on_tick, s)) == NULL || event_add(s->tick, &every) != 0) {
        shared_free(s);
        return NULL;
    }
    connect_now(s);
    return s;
}

void shared_free(shared_t *s)
{
    if (s == NULL)
        return;
    if (s->tick != NULL)
        event_free(s->tick);
    for (shared_call_t *c = s->oldest; c != NULL; c = c->next)
        c->done = NULL;                 /* their requests are gone */
    /* pending calls fail (their callbacks run now, with NULL); what the
     * last requests settled is written first, as far as the socket takes
     * it (the loop has stopped turning) */
    if (s->ac != NULL) {
        redisAsyncContext *ac = s->ac;
        redisAsyncHandleWrite(ac);
        s->ac = NULL;
        redisAsyncFree(ac);
    }
    if (s->sub != NULL) {
        redisAsyncContext *sub = s->sub;
        s->sub = NULL;
        redisAsyncFree(sub);
    }
    while (s->undo != NULL) {             /* (not connected: left to lapse with their windows) */
        shared_call_t *c = s->undo;
        s->undo = c->next;
        free(c);
    }
    free(s->cmd);
    free(s);
}

/* --- reservations --- */

static size_t entry_key(const shared_t *s, const shared_take_t *t, int flight, char *buf, size_t cap)
{
    int n = flight ? snprintf(buf, cap, "%s%s:f", s->prefix, ledger_name(t->e))
                   : snprintf(buf, cap, "%s%s:%lld", s->prefix, ledger_name(t->e), (long long)t->tag);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}


static void arg(cmd_t *c, const char *s)
{
    c->argv[c->argc] = s;
    c->len[c->argc++] = strlen(s);
}

static void argf(cmd_t *c, const char *fmt, long long v)
{
    char *t = c->text[c->ntext++];
    snprintf(t, 256, fmt, v);
    arg(c, t);
}

/* The keys of a script call: each take's hash and in-flight set, then the
 * reservation's RID key. */
static int add_keys(const shared_t *s, cmd_t *c, const shared_take_t *t, int n, const char *rid)
{
    char *r = c->text[c->ntext++];
    argf(c, "%lld", 2LL * n + 1);
    for (int i = 0; i < n; i++) {
        char *h = c->text[c->ntext++], *f = c->text[c->ntext++];
        if (entry_key(s, &t[i], 0, h, 256) == 0 || entry_key(s, &t[i], 1, f, 256) == 0)
            return -1;
        arg(c, h);
        arg(c, f);
    }
    snprintf(r, 256, "%srid:%s", s->prefix, rid);
    arg(c, r);
    return 0;
}

static void send_settle(shared_t *s, const shared_take_t *t, const int64_t (*delta)[LEDGER__N], int n,
                        const char *rid)
{
    cmd_t *c = s->cmd;
    if (s->ac == NULL || !s->ready || n <= 0)
        return;
    c->argc = c->ntext = 0;
    arg(c, "EVALSHA");
    arg(c, s->sha_settle);
    if (add_keys(s, c, t, n, rid) == 0) {
        arg(c, rid);
        argf(c, "%lld", (long long)(s->w->cfg->total_timeout_s + 60) * 1000);
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < LEDGER__N; k++)
                argf(c, "%lld", (long long)delta[i][k]);
            arg(c, t[i].flight >= 0 ? "1" : "0");
        }
        redisAsyncCommandArgv(s->ac, NULL, NULL, c->argc, c->argv, c->len);
    }
}

void shared_settle(shared_t *s, const shared_take_t *t, const int64_t (*delta)[LEDGER__N], int n, const char *rid)
{
    if (s != NULL)
        send_settle(s, t, delta, n, rid);
}

/* Gives back all that call C reserved (or would have: by its RID). */
static void give_back(shared_t *s, const shared_call_t *c)
{
    int64_t back[SHARED_MAX_TAKES][LEDGER__N];
    for (int i = 0; i < c->n; i++)
        for (int k = 0; k < LEDGER__N; k++)
            back[i][k] = -c->t[i].amt[k];
    send_settle(s, c->t, (const int64_t(*)[LEDGER__N])back, c->n, c->rid);
}

/* Once connected again: the reservations whose answers never came. */
static void undo_failed(shared_t *s)
{
    while (s->undo != NULL && s->ready) {
        shared_call_t *c = s->undo;
        s->undo = c->next;
        s->nundo--;
        give_back(s, c);
        free(c);
    }
}

#define MAX_UNDO 4096

static void on_reserved(redisAsyncContext *ac, void *reply, void *privdata)
{
    shared_call_t *c = privdata;
    shared_t *s = c->s;
    redisReply *rep = reply;
    shared_answer_t a;
    (void)ac;
    unlink_call(s, c);
    memset(&a, 0, sizeof(a));
    a.result = SHARED_FAILED;
    snprintf(a.rid, sizeof(a.rid), "%s", c->rid);
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        if (rep->element[0]->integer == 1 && rep->elements == 1 + (size_t)c->n * LEDGER__N) {
            a.result = SHARED_OK;
            for (int i = 0; i < c->n; i++)
                for (int k = 0; k < LEDGER__N; k++)
                    a.after[i][k] = rep->element[1 + i * LEDGER__N + k]->integer;
        } else if (rep->element[0]->integer == 0 && rep->elements == 3) {
            a.result = SHARED_OVER;
            a.item = (int)rep->element[1]->integer - 1;
            a.counter = (int)rep->element[2]->integer;
        }
    }
    if (a.result == SHARED_FAILED) {
        atomic_fetch_add(&call_errors, 1);
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
            tlog(LOG_WARN, "redis %s:%d: the reserve script failed: %s", s->host, s->port, rep->str);
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 && s->ac != NULL)
            redisAsyncDisconnect(s->ac);   /* the scripts are loaded again with the connection */
    } else {
        observe_rtt(mono_us() - c->sent_us);
    }
    if (c->done != NULL)
        c->done(c->arg, &a);
    else if (a.result == SHARED_OK)       /* forgotten: what it took goes back */
        give_back(s, c);
    if (rep == NULL && s->nundo < MAX_UNDO) {
        /* no answer (the connection dropped): it may have been made all the
         * same; given back by its RID once connected (a no-op if not) */
        c->next = s->undo;
        s->undo = c;
        s->nundo++;
        return;
    }
    free(c);
}

shared_call_t *shared_reserve(shared_t *s, const shared_take_t *t, int n, shared_done_fn done, void *arg_)
{
    shared_call_t *call;
    cmd_t *c;
    if (s == NULL || s->ac == NULL || !s->ready || n <= 0 || n > SHARED_MAX_TAKES ||
        (call = malloc(sizeof(*call))) == NULL)
        return NULL;
    c = s->cmd;
    c->argc = c->ntext = 0;
    call->s = s;
    call->done = done;
    call->arg = arg_;
    call->n = n;
    call->prev = call->next = NULL;
    memcpy(call->t, t, (size_t)n * sizeof(*t));
    snprintf(call->rid, sizeof(call->rid), "%s|%d|%llu", s->node, s->w->id, (unsigned long long)++s->seq);
    arg(c, "EVALSHA");
    arg(c, s->sha_reserve);
    if (add_keys(s, c, t, n, call->rid) < 0) {
        free(call);
        return NULL;
    }
    argf(c, "%lld", (long long)wall_ms());
    arg(c, call->rid);
    argf(c, "%lld", (long long)(s->w->cfg->total_timeout_s + 60) * 1000);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < LEDGER__N; k++)
            argf(c, "%lld", (long long)t[i].limit[k]);
        for (int k = 0; k < LEDGER__N; k++)
            argf(c, "%lld", (long long)t[i].amt[k]);
        argf(c, "%lld", (long long)t[i].ttl_s);
        argf(c, "%lld", (long long)t[i].flight);
    }
    if (redisAsyncCommandArgv(s->ac, on_reserved, call, c->argc, c->argv, c->len) != REDIS_OK) {
        free(call);
        return NULL;
    }
    call->sent_us = mono_us();
    call->prev = s->newest;
    if (s->newest != NULL)
        s->newest->next = call;
    else
        s->oldest = call;
    s->newest = call;
    return call;
}

void shared_forget(shared_call_t *c)
{
    if (c != NULL)
        c->done = NULL;
}

/* --- not-before times --- */

void shared_defer(shared_t *s, const char *slot, int64_t until_ms)
{
    char channel[200], msg[800];
    if (s == NULL || s->ac == NULL || !s->ready)
        return;
    snprintf(channel, sizeof(channel), "%sdefer", s->prefix);
    snprintf(msg, sizeof(msg), "%lld %s", (long long)(wall_ms() + (until_ms - health_now())), slot);
    redisAsyncCommand(s->ac, NULL, NULL, "PUBLISH %s %s", channel, msg);
}

/* A message on the defer channel: ["message", channel, "UNTIL_WALL_MS SLOT"] */
static void on_defer_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply, *m;
    char *end;
    long long until;
    tally_t *t;
    (void)ac, (void)privdata;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING || strcmp(rep->element[0]->str, "message") != 0)
        return;
    m = rep->element[2];
    if (m->type != REDIS_REPLY_STRING || (until = strtoll(m->str, &end, 10)) <= 0 || *end != ' ' ||
        strncmp(end + 1, "up:", 3) != 0 || (t = tally_get(end + 1)) == NULL)
        return;
    int64_t mono = health_now() + (until - wall_ms()), nb = atomic_load(&t->not_before_ms);
    while (nb < mono && !atomic_compare_exchange_weak(&t->not_before_ms, &nb, mono))
        ;
}

/* --- the admin thread's reads --- */

static char admin_host[200], admin_prefix[128];
static int admin_port;
static redisContext *admin_ctx;

void shared_configure(const config_t *cfg)
{
    const char *colon = strrchr(cfg->cluster_redis, ':');
    if (colon == NULL)
        return;
    snprintf(admin_host, sizeof(admin_host), "%.*s", (int)(colon - cfg->cluster_redis), cfg->cluster_redis);
    admin_port = atoi(colon + 1);
    snprintf(admin_prefix, sizeof(admin_prefix), "%s", cfg->cluster_prefix);
}

int shared_counts(const char *name, int64_t tag, int64_t out[LEDGER__N])
{
    struct timeval limit = { 0, 200000 };
    char key[400];
    redisReply *rep;
    int rc = -1;
    if (admin_port == 0)
        return -1;
    if (admin_ctx == NULL) {
        if ((admin_ctx = redisConnectWithTimeout(admin_host, admin_port, limit)) == NULL)
            return -1;
        if (admin_ctx->err || redisSetTimeout(admin_ctx, limit) != REDIS_OK) {
            redisFree(admin_ctx);
            admin_ctx = NULL;
            return -1;
        }
    }
    snprintf(key, sizeof(key), "%s%s:%lld", admin_prefix, name, (long long)tag);
    rep = redisCommand(admin_ctx, "HMGET %s u t r", key);
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == LEDGER__N) {
        for (int i = 0; i < LEDGER__N; i++)
            out[i] = rep->element[i]->type == REDIS_REPLY_STRING ? strtoll(rep->element[i]->str, NULL, 10) : 0;
        rc = 0;
    }
    if (rep != NULL)
        freeReplyObject(rep);
    if (rc < 0 || admin_ctx->err) {     /* a broken connection is made again next time */
        redisFree(admin_ctx);
        admin_ctx = NULL;
    }
    return rc;
}
