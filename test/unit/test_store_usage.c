/* test_store_usage.c - the store's usage rollups (add, report, prune) and persisted spend, on a store in a temp dir.
 *
 * Unlike most unit tests this one does not include its module: store.o is
 * linked as the Makefile builds it (its rule leaves out only a module named
 * like the test), and what is tested here is the public API. The raw rows
 * are checked with LMDB itself once the store is closed. */
#include "schema.h"
#include "store.h"
#include "unit.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define H 3600
#define T0 1796083200LL            /* 2026-12-01T00:00:00Z */

static store_usage_t row(int64_t hour, const char *key, const char *tenant, const char *route, const char *provider,
                         const char *model, int64_t req, int64_t pt, int64_t ct, int64_t nusd)
{
    store_usage_t u;
    memset(&u, 0, sizeof(u));
    u.hour = hour;
    snprintf(u.key_id, sizeof(u.key_id), "%s", key);
    snprintf(u.tenant, sizeof(u.tenant), "%s", tenant);
    snprintf(u.route, sizeof(u.route), "%s", route);
    snprintf(u.provider, sizeof(u.provider), "%s", provider);
    snprintf(u.model, sizeof(u.model), "%s", model);
    u.requests = req;
    u.prompt_tokens = pt;
    u.completion_tokens = ct;
    u.cost_nusd = nusd;
    return u;
}

/* The report as compact JSON text (freed by the caller), or NULL. */
static char *report(store_t *s, int64_t from, int64_t to, unsigned mask, int day, const char *tenant)
{
    cJSON *r = store_usage_report(s, from, to, mask, day, tenant);
    char *text = r != NULL ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    return text;
}

/* 1 when the report equals WANT (compact JSON); prints both otherwise. */
static int report_is(store_t *s, int64_t from, int64_t to, unsigned mask, int day, const char *tenant,
                     const char *want)
{
    char *got = report(s, from, to, mask, day, tenant);
    int ok = got != NULL && strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "report:\n  got  %s\n  want %s\n", got ? got : "(null)", want);
    free(got);
    return ok;
}

/* What store_each_spend hands out, gathered. */
typedef struct spends {
    int n;
    store_spend_t v[8];
} spends_t;

static void on_spend(const store_spend_t *v, void *arg)
{
    spends_t *s = arg;
    if (s->n < 8)
        s->v[s->n] = *v;
    s->n++;
}

static const store_spend_t *spend_named(const spends_t *s, const char *name)
{
    for (int i = 0; i < s->n && i < 8; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return &s->v[i];
    return NULL;
}

static void rm_store(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

/* The number of rows in the usage table of the closed store in DIR, and
 * whether the first key is the hour FIRST_HOUR in 8 big-endian bytes
 * followed by FIRST_REST (REST_LEN bytes). */
static long raw_rows(const char *dir, int64_t first_hour, const char *first_rest, size_t rest_len, int *first_ok)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    MDB_cursor *c;
    MDB_val k, v;
    long n = -1;
    *first_ok = 0;
    if (mdb_env_create(&env) != 0)
        return -1;
    mdb_env_set_maxdbs(env, 32);
    if (mdb_env_open(env, dir, MDB_RDONLY, 0640) == 0 && mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_dbi_open(txn, "usage", 0, &dbi) == 0 && mdb_stat(txn, dbi, &st) == 0) {
            n = (long)st.ms_entries;
            if (mdb_cursor_open(txn, dbi, &c) == 0) {
                if (mdb_cursor_get(c, &k, &v, MDB_FIRST) == 0 && k.mv_size == 8 + rest_len && v.mv_size == 32) {
                    unsigned char be[8];
                    for (int i = 0; i < 8; i++)
                        be[i] = (unsigned char)((uint64_t)first_hour >> (56 - 8 * i));
                    *first_ok = memcmp(k.mv_data, be, 8) == 0 &&
                                memcmp((char *)k.mv_data + 8, first_rest, rest_len) == 0;
                }
                mdb_cursor_close(c);
            }
        }
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return n;
}

int main(void)
{
    char dir[] = "/tmp/test_store_usage.XXXXXX", err[256];
    store_t *s;
    int first_ok;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    s = store_open(dir, 64, err, sizeof(err));
    CHECK(s != NULL);
    if (s == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    /* --- rollups: add, sum into existing rows, several hours --- */
    CHECK(report_is(s, T0, T0 + 24 * H, 0, 0, NULL, "[]"));          /* nothing yet: no bucket at all */
    store_usage_t a[] = {
        row(T0, "k1", "acme", "r1", "p1", "m1", 1, 10, 5, 1500),
        row(T0 + 1800, "k1", "acme", "r1", "p1", "m1", 2, 20, 10, 3000),     /* same hour: rounded, summed */
        row(T0, "k2", "globex", "r1", "p1", "m2", 1, 100, 50, 1000000001),
        row(T0 + H, "k1", "acme", "r2", "p2", "m1", 4, 40, 20, 999999999),
        row(T0 + 25 * H, "", "", "", "p1", "m1", 1, 1, 1, 7),                 /* the next day; no key, tenant, route */
    };
    CHECK(store_add_usage(s, a, 5) == 0);
    store_usage_t b[] = { row(T0, "k1", "acme", "r1", "p1", "m1", 10, 100, 50, 5) };    /* a later call sums too */
    CHECK(store_add_usage(s, b, 1) == 0);
    CHECK(store_add_usage(s, NULL, 0) == 0);
    store_usage_t early = row(-H, "k9", "", "", "", "", 1, 1, 1, 1);            /* before 1970: skipped */
    CHECK(store_add_usage(s, &early, 1) == 0);

    /* totals per hour; the hour from falls in counts; an hour starting at to does not */
    CHECK(report_is(s, T0 + 1200, T0 + 2 * H, 0, 0, NULL,
                    "[{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-01T01:00:00Z\",\"requests\":14,"
                    "\"prompt_tokens\":230,\"completion_tokens\":115,\"cost_usd\":1.000004506},"
                    "{\"start\":\"2026-12-01T01:00:00Z\",\"end\":\"2026-12-01T02:00:00Z\",\"requests\":4,"
                    "\"prompt_tokens\":40,\"completion_tokens\":20,\"cost_usd\":0.999999999}]"));
    CHECK(report_is(s, T0, T0 + H, 0, 0, NULL,
                    "[{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-01T01:00:00Z\",\"requests\":14,"
                    "\"prompt_tokens\":230,\"completion_tokens\":115,\"cost_usd\":1.000004506}]"));
    CHECK(report_is(s, T0 + H, T0 + H + 1, 0, 0, NULL,
                    "[{\"start\":\"2026-12-01T01:00:00Z\",\"end\":\"2026-12-01T02:00:00Z\",\"requests\":4,"
                    "\"prompt_tokens\":40,\"completion_tokens\":20,\"cost_usd\":0.999999999}]"));
    CHECK(report_is(s, T0 + 2 * H, T0 + 25 * H, 0, 0, NULL, "[]"));     /* empty hours between: nothing */
    CHECK(report_is(s, T0 + H, T0 + H, 0, 0, NULL, "[]"));              /* from == to */

    /* grouped: sorted by start, then key, tenant, route, provider, model; "" is null */
    CHECK(report_is(s, T0, T0 + 2 * H, 1 | 16, 0, NULL,
                    "[{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-01T01:00:00Z\",\"key_id\":\"k1\","
                    "\"model\":\"m1\",\"requests\":13,\"prompt_tokens\":130,\"completion_tokens\":65,"
                    "\"cost_usd\":0.000004505},"
                    "{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-01T01:00:00Z\",\"key_id\":\"k2\","
                    "\"model\":\"m2\",\"requests\":1,\"prompt_tokens\":100,\"completion_tokens\":50,"
                    "\"cost_usd\":1.000000001},"
                    "{\"start\":\"2026-12-01T01:00:00Z\",\"end\":\"2026-12-01T02:00:00Z\",\"key_id\":\"k1\","
                    "\"model\":\"m1\",\"requests\":4,\"prompt_tokens\":40,\"completion_tokens\":20,"
                    "\"cost_usd\":0.999999999}]"));
    /* by day: two UTC days; the first day's rows summed per provider */
    CHECK(report_is(s, T0, T0 + 48 * H, 8, 1, NULL,
                    "[{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-02T00:00:00Z\",\"provider\":\"p1\","
                    "\"requests\":14,\"prompt_tokens\":230,\"completion_tokens\":115,\"cost_usd\":1.000004506},"
                    "{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-02T00:00:00Z\",\"provider\":\"p2\","
                    "\"requests\":4,\"prompt_tokens\":40,\"completion_tokens\":20,\"cost_usd\":0.999999999},"
                    "{\"start\":\"2026-12-02T00:00:00Z\",\"end\":\"2026-12-03T00:00:00Z\",\"provider\":\"p1\","
                    "\"requests\":1,\"prompt_tokens\":1,\"completion_tokens\":1,\"cost_usd\":0.000000007}]"));
    CHECK(report_is(s, T0 + 24 * H, T0 + 48 * H, 1 | 2 | 4, 1, NULL,
                    "[{\"start\":\"2026-12-02T00:00:00Z\",\"end\":\"2026-12-03T00:00:00Z\",\"key_id\":null,"
                    "\"tenant\":null,\"route\":null,\"requests\":1,\"prompt_tokens\":1,\"completion_tokens\":1,"
                    "\"cost_usd\":0.000000007}]"));
    /* every field, one tenant's rows only */
    CHECK(report_is(s, T0, T0 + 48 * H, 31, 1, "globex",
                    "[{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-02T00:00:00Z\",\"key_id\":\"k2\","
                    "\"tenant\":\"globex\",\"route\":\"r1\",\"provider\":\"p1\",\"model\":\"m2\",\"requests\":1,"
                    "\"prompt_tokens\":100,\"completion_tokens\":50,\"cost_usd\":1.000000001}]"));
    CHECK(report_is(s, T0, T0 + 48 * H, 2, 1, "acme",
                    "[{\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-12-02T00:00:00Z\",\"tenant\":\"acme\","
                    "\"requests\":17,\"prompt_tokens\":170,\"completion_tokens\":85,\"cost_usd\":1.000004504}]"));
    CHECK(report_is(s, T0, T0 + 48 * H, 0, 0, "acm", "[]"));          /* a prefix is another tenant */
    CHECK(report_is(s, T0, T0 + 48 * H, 0, 1, "", "[{\"start\":\"2026-12-02T00:00:00Z\",\"end\":"
                    "\"2026-12-03T00:00:00Z\",\"requests\":1,\"prompt_tokens\":1,\"completion_tokens\":1,"
                    "\"cost_usd\":0.000000007}]"));                  /* "": the rows of no tenant */

    /* exact big numbers: past 2^53, and a negative cost (a refund) prints its sign */
    store_usage_t big[] = { row(T0 + 30 * 24 * H, "k", "t", "r", "p", "m", 9007199254740993LL, 0, 0,
                                123456789012345678LL),
                            row(T0 + 31 * 24 * H, "k", "t", "r", "p", "m", 1, 0, 0, -1500000001) };
    CHECK(store_add_usage(s, big, 2) == 0);
    CHECK(report_is(s, T0 + 30 * 24 * H, T0 + 32 * 24 * H, 0, 1, NULL,
                    "[{\"start\":\"2026-12-31T00:00:00Z\",\"end\":\"2027-01-01T00:00:00Z\",\"requests\":"
                    "9007199254740993,\"prompt_tokens\":0,\"completion_tokens\":0,\"cost_usd\":123456789.012345678},"
                    "{\"start\":\"2027-01-01T00:00:00Z\",\"end\":\"2027-01-02T00:00:00Z\",\"requests\":1,"
                    "\"prompt_tokens\":0,\"completion_tokens\":0,\"cost_usd\":-1.500000001}]"));

    /* a row whose strings exceed LMDB's key is kept, route and model cut to fit: 496 bytes are left for
     * both, 248 each, and each cut goes back to a character boundary (an é at 247-248, a € at 246-248) */
    store_usage_t lng = row(T0 + 40 * 24 * H, "k", "t", "", "p", "", 1, 2, 3, 4);
    memset(lng.route, 'r', 590);
    memcpy(lng.route + 247, "\xc3\xa9", 2);
    memset(lng.model, 'm', 598);
    memcpy(lng.model + 246, "\xe2\x82\xac", 3);
    CHECK(store_add_usage(s, &lng, 1) == 0);
    CHECK(store_add_usage(s, &lng, 1) == 0);
    {
        cJSON *r = store_usage_report(s, T0 + 40 * 24 * H, T0 + 41 * 24 * H, 4 | 16, 0, NULL);
        cJSON *one = cJSON_GetArrayItem(r, 0);
        const char *rt = cJSON_GetStringValue(cJSON_GetObjectItem(one, "route"));
        const char *md = cJSON_GetStringValue(cJSON_GetObjectItem(one, "model"));
        CHECK(cJSON_GetArraySize(r) == 1);
        CHECK(rt != NULL && strlen(rt) == 247 && strncmp(rt, lng.route, 247) == 0);
        CHECK(md != NULL && strlen(md) == 246 && strncmp(md, lng.model, 246) == 0);
        CHECK(cJSON_IsRaw(cJSON_GetObjectItem(one, "requests")));     /* numbers are printed, not doubles */
        CHECK_STR(cJSON_GetObjectItem(one, "requests")->valuestring, "2");
        cJSON_Delete(r);
    }

    /* --- prune: hours before BEFORE go --- */
    CHECK(store_prune_usage(s, T0) == 0);
    CHECK(store_prune_usage(s, T0 + H) == 2);                       /* hour T0: k1's and k2's rows */
    CHECK(report_is(s, T0, T0 + H, 0, 0, NULL, "[]"));
    CHECK(store_prune_usage(s, T0 + H) == 0);
    CHECK(store_prune_usage(s, T0 + 25 * H + 1) == 2);              /* T0+1h and T0+25h */
    CHECK(report_is(s, T0, T0 + 48 * H, 0, 0, NULL, "[]"));
    CHECK(report_is(s, T0, T0 + 50 * 24 * H, 0, 1, NULL,
                    "[{\"start\":\"2026-12-31T00:00:00Z\",\"end\":\"2027-01-01T00:00:00Z\",\"requests\":"
                    "9007199254740993,\"prompt_tokens\":0,\"completion_tokens\":0,\"cost_usd\":123456789.012345678},"
                    "{\"start\":\"2027-01-01T00:00:00Z\",\"end\":\"2027-01-02T00:00:00Z\",\"requests\":1,"
                    "\"prompt_tokens\":0,\"completion_tokens\":0,\"cost_usd\":-1.500000001},"
                    "{\"start\":\"2027-01-10T00:00:00Z\",\"end\":\"2027-01-11T00:00:00Z\",\"requests\":2,"
                    "\"prompt_tokens\":4,\"completion_tokens\":6,\"cost_usd\":0.000000008}]"));

    /* --- a report too big to answer --- */
    {
        int n = STORE_USAGE_REPORT_MAX + 1, ok = 1;
        store_usage_t *many = calloc(1000, sizeof(*many));
        for (int i = 0; i < n; i += 1000) {
            int m = n - i < 1000 ? n - i : 1000;
            for (int j = 0; j < m; j++) {
                many[j] = row(T0 + 60 * 24 * H + ((i + j) % 2) * H, "", "t", "", "p", "m", 1, 0, 0, 0);
                snprintf(many[j].key_id, sizeof(many[j].key_id), "k%06d", i + j);
            }
            ok &= store_add_usage(s, many, m) == 0;
        }
        CHECK(ok);
        free(many);
        errno = 0;
        CHECK(store_usage_report(s, T0 + 60 * 24 * H, T0 + 61 * 24 * H, 1, 0, NULL) == NULL && errno == E2BIG);
        char *r = report(s, T0 + 60 * 24 * H, T0 + 61 * 24 * H, 0, 1, NULL);   /* ungrouped it is one row */
        CHECK(r != NULL && strstr(r, "\"requests\":100001,") != NULL);
        free(r);
        /* in several transactions; the three older rows go too */
        CHECK(store_prune_usage(s, T0 + 60 * 24 * H + 2 * H) == n + 3);
        CHECK(report_is(s, 0, T0 + 365 * 24 * H, 0, 1, NULL, "[]"));
    }

    /* --- spend: put (replacing), each, delete --- */
    store_spend_t sp[3];
    memset(sp, 0, sizeof(sp));
    snprintf(sp[0].name, sizeof(sp[0].name), "b:%s", "11111111-1111-4111-8111-111111111111");
    snprintf(sp[1].name, sizeof(sp[1].name), "k:%s", "22222222-2222-4222-8222-222222222222");
    snprintf(sp[2].name, sizeof(sp[2].name), "t:acme");
    for (int i = 0; i < 3; i++)
        for (int c = 0; c < 3; c++) {
            sp[i].tag[c] = 1000 * (i + 1) + c;
            sp[i].spent[c] = -5 + 1000000000000LL * i + c;
        }
    spends_t got = { 0 };
    store_each_spend(s, on_spend, &got);
    CHECK(got.n == 0);
    CHECK(store_put_spend(s, sp, 3) == 0);
    CHECK(store_put_spend(s, sp, 0) == 0);
    sp[2].spent[1] = 424242;                         /* a later write replaces the name's record */
    sp[2].tag[0] = INT64_MAX;
    CHECK(store_put_spend(s, &sp[2], 1) == 0);
    store_each_spend(s, on_spend, &got);
    CHECK(got.n == 3);
    for (int i = 0; i < 3; i++) {
        const store_spend_t *g = spend_named(&got, sp[i].name);
        CHECK(g != NULL && memcmp(g->tag, sp[i].tag, sizeof(g->tag)) == 0 &&
              memcmp(g->spent, sp[i].spent, sizeof(g->spent)) == 0);
    }
    CHECK(store_delete_spend(s, "t:acme") == 0);
    CHECK(store_delete_spend(s, "t:nobody") == 0);   /* absent: nothing to do */
    got.n = 0;
    store_each_spend(s, on_spend, &got);
    CHECK(got.n == 2 && spend_named(&got, "t:acme") == NULL);

    /* deleting a budget or a key deletes its spend in the same transaction; a tenant record's stays */
    {
        cJSON *bud = cJSON_Parse("{\"id\":\"11111111-1111-4111-8111-111111111111\",\"name\":\"b\","
                                 "\"scope\":\"global\",\"limit_usd\":1}");
        cJSON *key = cJSON_Parse("{\"id\":\"22222222-2222-4222-8222-222222222222\",\"tenant\":\"acme\","
                                 "\"secret_hash\":\"abababababababababababababababababababababababababababababababab\"}");
        cJSON *ten = cJSON_Parse("{\"id\":\"33333333-3333-4333-8333-333333333333\",\"name\":\"acme\",\"rpm\":5}");
        CHECK(schema_budget_normalise(bud, err, sizeof(err)) == 0 && schema_key_normalise(key, err, sizeof(err)) == 0 &&
              schema_tenant_normalise(ten, err, sizeof(err)) == 0);
        CHECK(store_put(s, STORE_BUDGETS, bud, NULL, err, sizeof(err)) == STORE_CREATED);
        CHECK(store_put(s, STORE_KEYS, key, NULL, err, sizeof(err)) == STORE_CREATED);
        CHECK(store_put(s, STORE_TENANTS, ten, NULL, err, sizeof(err)) == STORE_CREATED);
        CHECK(store_put_spend(s, &sp[2], 1) == 0);
        store_reader_t *rd = store_reader_new(s);
        store_hold_t *hold;
        const cJSON *t = store_get_tenant(rd, "acme", &hold);
        CHECK(t != NULL && cJSON_GetObjectItem(t, "rpm")->valuedouble == 5);
        store_release(hold);
        CHECK(store_get_tenant(rd, "globex", &hold) == NULL && hold == NULL);
        /* the reader keeps its parsed records across this process's commits of the spend totals (and the
         * usage journal, the same path): the same record, the same generation. A record written, or any
         * commit by another process, starts a new generation. */
        {
            const cJSON *again;
            size_t gen;
            pid_t child;
            int status = -1;
            t = store_get_tenant(rd, "acme", &hold);
            gen = store_hold_generation(hold);
            store_release(hold);
            CHECK(gen != 0);
            CHECK(store_put_spend(s, &sp[2], 1) == 0 && store_put_spend(s, &sp[2], 1) == 0);
            again = store_get_tenant(rd, "acme", &hold);
            CHECK(again == t && store_hold_generation(hold) == gen);
            store_release(hold);
            cJSON *other = cJSON_Parse("{\"id\":\"44444444-4444-4444-8444-444444444444\",\"name\":\"globex\"}");
            CHECK(schema_tenant_normalise(other, err, sizeof(err)) == 0);
            CHECK(store_put(s, STORE_TENANTS, other, NULL, err, sizeof(err)) == STORE_CREATED);
            cJSON_Delete(other);
            again = store_get_tenant(rd, "acme", &hold);
            CHECK(again != NULL && store_hold_generation(hold) > gen);
            gen = store_hold_generation(hold);
            store_release(hold);
            CHECK(store_put_spend(s, &sp[2], 1) == 0);
            again = store_get_tenant(rd, "acme", &hold);
            CHECK(store_hold_generation(hold) == gen);
            store_release(hold);
            fflush(NULL);
            if ((child = fork()) == 0) {      /* another process: a store of its own on the same files */
                store_t *s2 = store_open(dir, 64, err, sizeof(err));
                _exit(s2 != NULL && store_put_spend(s2, &sp[2], 1) == 0 ? 0 : 1);
            }
            CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
            again = store_get_tenant(rd, "acme", &hold);
            CHECK(again != NULL && store_hold_generation(hold) > gen);
            store_release(hold);
            CHECK(store_delete(s, STORE_TENANTS, "44444444-4444-4444-8444-444444444444", err, sizeof(err)) ==
                  STORE_OK);

            /* a key's last_used_at is written when the stored one is older than STALE, and the reader keeps
             * its generation across that write too */
            {
                const char ids[1][37] = { "22222222-2222-4222-8222-222222222222" };
                cJSON *k;
                again = store_get_tenant(rd, "acme", &hold);
                gen = store_hold_generation(hold);
                store_release(hold);
                store_touch_keys(s, ids, 1, "2026-12-01T10:00:00Z", "2026-12-01T09:59:00Z");  /* none yet */
                k = store_find(s, STORE_KEYS, ids[0]);
                CHECK_STR(schema_str(k, "last_used_at", ""), "2026-12-01T10:00:00Z");
                cJSON_Delete(k);
                store_touch_keys(s, ids, 1, "2026-12-01T10:00:30Z", "2026-12-01T09:59:30Z");  /* recent: kept */
                k = store_find(s, STORE_KEYS, ids[0]);
                CHECK_STR(schema_str(k, "last_used_at", ""), "2026-12-01T10:00:00Z");
                cJSON_Delete(k);
                store_touch_keys(s, ids, 1, "2026-12-01T10:01:10Z", "2026-12-01T10:00:10Z");  /* stale: written */
                k = store_find(s, STORE_KEYS, ids[0]);
                CHECK_STR(schema_str(k, "last_used_at", ""), "2026-12-01T10:01:10Z");
                cJSON_Delete(k);
                again = store_get_tenant(rd, "acme", &hold);
                CHECK(again != NULL && store_hold_generation(hold) == gen);
                store_release(hold);
            }
        }
        store_reader_free(rd);
        CHECK(store_delete(s, STORE_BUDGETS, "11111111-1111-4111-8111-111111111111", err, sizeof(err)) == STORE_OK);
        got.n = 0;
        store_each_spend(s, on_spend, &got);
        CHECK(got.n == 2 && spend_named(&got, sp[0].name) == NULL && spend_named(&got, sp[1].name) != NULL);
        CHECK(store_delete(s, STORE_KEYS, "22222222-2222-4222-8222-222222222222", err, sizeof(err)) == STORE_OK);
        CHECK(store_delete(s, STORE_TENANTS, "33333333-3333-4333-8333-333333333333", err, sizeof(err)) == STORE_OK);
        got.n = 0;
        store_each_spend(s, on_spend, &got);
        CHECK(got.n == 1 && spend_named(&got, "t:acme") != NULL);
        cJSON_Delete(bud);
        cJSON_Delete(key);
        cJSON_Delete(ten);
    }

    /* --- the rows as stored: hour big-endian, then the strings NUL-separated, survive a reopen --- */
    store_usage_t one = row(T0 + 100 * 24 * H + 7, "kk", "tt", "rr", "pp", "mm", 1, 1, 1, 1);
    CHECK(store_add_usage(s, &one, 1) == 0);
    store_close(s);
    CHECK(raw_rows(dir, T0 + 100 * 24 * H, "kk\0tt\0rr\0pp\0mm", 14, &first_ok) == 1 && first_ok);
    s = store_open(dir, 64, err, sizeof(err));
    CHECK(s != NULL);
    if (s != NULL) {
        got.n = 0;
        store_each_spend(s, on_spend, &got);
        CHECK(got.n == 1);
        CHECK(store_prune_usage(s, T0 + 100 * 24 * H) == 0);       /* its hour starts at BEFORE: kept */
        CHECK(store_prune_usage(s, T0 + 100 * 24 * H + 1) == 1);
        store_close(s);
        CHECK(raw_rows(dir, 0, "", 0, &first_ok) == 0);
    }
    rm_store(dir);
    DONE();
}
