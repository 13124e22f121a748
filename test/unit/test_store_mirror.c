/* test_store_mirror.c - the store as a cluster's mirror: writes checked here and handed to a store of record (a fake one), the retry when it moved on, and changes applied from it (store_mirror_*).
 *
 * Like test_store_usage.c this links store.o as built and tests the public
 * API, on a store in a temp dir. The fake remote keeps the plans it is
 * given and answers as a test step sets it to: committed at the next
 * revision, "changed since" (after which its catch_up applies what another
 * node would have written), unreachable, or refused. */
#include "schema.h"
#include "store.h"
#include "unit.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fake {
    store_t *s;
    int64_t revision;             /* the store of record's */
    int answer;                   /* what the next commit answers: 0, 1, -1, -2 */
    int commits, catch_ups;
    store_plan_t last;            /* the last plan committed (copies) */
    /* what "another node" wrote, applied by catch_up */
    store_table_t other_t;
    const char *other_id, *other_json;
} fake_t;

static void keep_plan(fake_t *f, const store_plan_t *p)
{
    for (int i = 0; i < f->last.n; i++)
        free(f->last.v[i].json);
    free(f->last.v);
    f->last = *p;
    f->last.v = calloc((size_t)p->n, sizeof(*p->v));
    for (int i = 0; i < p->n; i++) {
        f->last.v[i] = p->v[i];
        f->last.v[i].json = p->v[i].json != NULL ? strdup(p->v[i].json) : NULL;
    }
}

static int commit(void *arg, const store_plan_t *plan, int64_t *rev, char *err, size_t errlen)
{
    fake_t *f = arg;
    int answer = f->answer;
    f->commits++;
    f->answer = 0;
    if (answer == -1 || answer == -2) {
        snprintf(err, errlen, answer == -1 ? "unreachable" : "refused");
        return answer;
    }
    if (answer == 1 || plan->revision != f->revision) {   /* the guard: changed since the plan's revision */
        *rev = f->revision + (answer == 1);
        if (answer == 1)
            f->revision++;
        return 1;
    }
    keep_plan(f, plan);
    *rev = ++f->revision;
    return 0;
}

static int catch_up(void *arg, int64_t rev, char *err, size_t errlen)
{
    fake_t *f = arg;
    store_mirror_t *m = store_mirror_begin(f->s, 0);
    (void)err, (void)errlen;
    f->catch_ups++;
    if (m == NULL)
        return -1;
    if (f->other_id != NULL &&
        store_mirror_put(m, f->other_t, f->other_id, f->other_json, strlen(f->other_json)) < 0) {
        store_mirror_abort(m);
        return -1;
    }
    f->other_id = NULL;
    return store_mirror_commit(m, rev);
}

static cJSON *provider(const char *name)
{
    char err[256];
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", name);
    cJSON_AddStringToObject(p, "base_url", "http://127.0.0.1:9/v1");
    if (schema_provider_normalise(p, err, sizeof(err)) < 0)
        fprintf(stderr, "provider: %s\n", err);
    return p;
}

/* A route to TARGET ("PROVIDER/MODEL"); EXPANDED: with its targets
 * written out, as a record stored by another node has them. */
static cJSON *route(const char *name, const char *target, int expanded)
{
    char err[256];
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "name", name);
    if (expanded) {
        cJSON *t = cJSON_CreateObject(), *ts = cJSON_AddArrayToObject(r, "targets");
        const char *slash = strchr(target, '/');
        char prov[64];
        snprintf(prov, sizeof(prov), "%.*s", (int)(slash - target), target);
        cJSON_AddStringToObject(t, "provider", prov);
        cJSON_AddStringToObject(t, "model", slash + 1);
        cJSON_AddItemToArray(ts, t);
    } else {
        cJSON_AddStringToObject(r, "primary_model", target);
    }
    if (schema_route_normalise(r, err, sizeof(err)) < 0)
        fprintf(stderr, "route: %s\n", err);
    return r;
}

int main(void)
{
    char dir[] = "/tmp/test_store_mirror.XXXXXX", err[256];
    fake_t f;
    store_t *s;
    cJSON *p, *r, *found;
    char pid[40], rid[40];

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if ((s = store_open(dir, 64, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    memset(&f, 0, sizeof(f));
    f.s = s;
    store_set_remote(s, &(store_remote_t){ commit, catch_up, NULL, &f });
    CHECK(store_mirror_revision(s) == 0);

    /* --- a create: checked here, committed there, applied here at once --- */
    p = provider("mock");
    snprintf(pid, sizeof(pid), "%s", schema_str(p, "id", ""));
    CHECK(store_put(s, STORE_PROVIDERS, p, NULL, err, sizeof(err)) == STORE_CREATED);
    CHECK(f.commits == 1 && f.last.n == 1 && f.last.revision == 0);
    CHECK(f.last.v[0].t == STORE_PROVIDERS && strcmp(f.last.v[0].id, pid) == 0 && f.last.v[0].json != NULL);
    CHECK(store_mirror_revision(s) == 1);
    CHECK((found = store_find(s, STORE_PROVIDERS, pid)) != NULL);
    cJSON_Delete(found);
    cJSON_Delete(p);

    /* --- a check that fails here never reaches the store of record --- */
    r = route("r1", "nosuch/m1", 0);
    CHECK(store_put(s, STORE_ROUTES, r, NULL, err, sizeof(err)) == STORE_INVALID);
    CHECK(f.commits == 1);
    cJSON_Delete(r);

    /* --- the store of record moved on: another node created r1 meanwhile;
     * the write is checked again against the caught-up mirror: 409 --- */
    r = route("r1", "mock/m1", 1);
    {
        char *other = cJSON_PrintUnformatted(r);
        cJSON *mine = route("r1", "mock/m2", 0);
        f.answer = 1;
        f.other_t = STORE_ROUTES;
        f.other_id = schema_str(r, "id", "");
        f.other_json = other;
        CHECK(store_put(s, STORE_ROUTES, mine, NULL, err, sizeof(err)) == STORE_CONFLICT);
        CHECK(strstr(err, "already exists") != NULL);
        CHECK(f.catch_ups == 1 && f.commits == 2);
        CHECK(store_mirror_revision(s) == 2);
        CHECK((found = store_find_route(s, "global", "", "r1")) != NULL);
        CHECK(found != NULL && strcmp(schema_str(found, "id", ""), schema_str(r, "id", "")) == 0);
        cJSON_Delete(found);
        cJSON_Delete(mine);
        free(other);
    }
    snprintf(rid, sizeof(rid), "%s", schema_str(r, "id", ""));
    cJSON_Delete(r);

    /* --- a delete checked against the mirror: the provider is in use --- */
    CHECK(store_delete(s, STORE_PROVIDERS, pid, err, sizeof(err)) == STORE_CONFLICT);
    CHECK(f.commits == 2);
    CHECK(store_delete(s, STORE_ROUTES, rid, err, sizeof(err)) == STORE_OK);
    CHECK(f.commits == 3 && f.last.n == 1 && f.last.v[0].json == NULL && strcmp(f.last.v[0].id, rid) == 0);
    CHECK((found = store_find_route(s, "global", "", "r1")) == NULL);

    /* --- unreachable: 503; refused: 400; nothing changes here --- */
    f.answer = -1;
    r = route("r2", "mock/m1", 0);
    CHECK(store_put(s, STORE_ROUTES, r, NULL, err, sizeof(err)) == STORE_UNAVAILABLE);
    CHECK((found = store_find_route(s, "global", "", "r2")) == NULL);
    f.answer = -2;
    CHECK(store_put(s, STORE_ROUTES, r, NULL, err, sizeof(err)) == STORE_INVALID);
    CHECK((found = store_find_route(s, "global", "", "r2")) == NULL);
    cJSON_Delete(r);

    /* --- the watch: a change at or below the revision applied is its own
     * write (skipped by the caller); a rename moves the name --- */
    {
        store_mirror_t *m = store_mirror_begin(s, 0);
        cJSON *ren = provider("renamed");
        char *text;
        CHECK(m != NULL && store_mirror_applied(m) == f.revision);
        cJSON_ReplaceItemInObject(ren, "id", cJSON_CreateString(pid));
        text = cJSON_PrintUnformatted(ren);
        CHECK(store_mirror_put(m, STORE_PROVIDERS, pid, text, strlen(text)) == 0);
        CHECK(store_mirror_commit(m, f.revision + 5) == 0);
        CHECK(store_mirror_revision(s) == f.revision + 5);
        CHECK((found = store_find(s, STORE_PROVIDERS, pid)) != NULL);
        CHECK(found != NULL && strcmp(schema_str(found, "name", ""), "renamed") == 0);
        cJSON_Delete(found);
        free(text);
        cJSON_Delete(ren);
    }

    /* --- a record not of its id (a foreign write under the prefix) is left out --- */
    {
        store_mirror_t *m = store_mirror_begin(s, 0);
        const char *bad = "{\"id\":\"not-this-one\",\"name\":\"x\"}";
        CHECK(store_mirror_put(m, STORE_PROVIDERS, "11111111-1111-4111-8111-111111111111", bad, strlen(bad)) == 0);
        CHECK(store_mirror_commit(m, 100) == 0);
        CHECK((found = store_find(s, STORE_PROVIDERS, "not-this-one")) == NULL);
    }

    /* --- a full snapshot empties what it does not bring --- */
    {
        store_mirror_t *m = store_mirror_begin(s, 1);
        cJSON *q = provider("only");
        char *text = cJSON_PrintUnformatted(q);
        CHECK(store_mirror_put(m, STORE_PROVIDERS, schema_str(q, "id", ""), text, strlen(text)) == 0);
        CHECK(store_mirror_commit(m, 200) == 0);
        CHECK((found = store_find(s, STORE_PROVIDERS, pid)) == NULL);
        CHECK((found = store_find(s, STORE_PROVIDERS, schema_str(q, "id", ""))) != NULL);
        cJSON_Delete(found);
        CHECK(store_mirror_revision(s) == 200);
        free(text);
        cJSON_Delete(q);
    }

    /* --- an import: one plan of every record (past the index's growth),
     * each once; the same import again changes nothing, so sends nothing --- */
    {
        char seed[sizeof(dir) + 16], *text;
        cJSON *doc = cJSON_CreateObject(), *ps = cJSON_AddArrayToObject(doc, "providers");
        FILE *fp;
        int commits;
        for (int i = 0; i < 40; i++) {
            char name[32];
            cJSON *q = cJSON_CreateObject();
            snprintf(name, sizeof(name), "p%02d", i);
            cJSON_AddStringToObject(q, "name", name);
            cJSON_AddStringToObject(q, "base_url", "http://127.0.0.1:9/v1");
            cJSON_AddItemToArray(ps, q);
        }
        snprintf(seed, sizeof(seed), "%s/seed.json", dir);
        text = cJSON_PrintUnformatted(doc);
        CHECK((fp = fopen(seed, "w")) != NULL && fputs(text, fp) >= 0 && fclose(fp) == 0);
        f.revision = store_mirror_revision(s);      /* the fake's guard, where the mirror is */
        CHECK(store_import_seed(s, seed, err, sizeof(err)) == 0);
        CHECK(f.last.n == 40);
        for (int i = 1; i < f.last.n; i++)
            CHECK(strcmp(f.last.v[i].id, f.last.v[0].id) != 0 && f.last.v[i].json != NULL);
        commits = f.commits;
        {
            cJSON *exp = store_export(s);
            char *again = cJSON_PrintUnformatted(exp);
            CHECK((fp = fopen(seed, "w")) != NULL && fputs(again, fp) >= 0 && fclose(fp) == 0);
            free(again);
            cJSON_Delete(exp);
        }
        CHECK(store_import_seed(s, seed, err, sizeof(err)) == 0);
        CHECK(f.commits == commits);                /* an export imported: nothing to commit */
        free(text);
        cJSON_Delete(doc);
    }

    for (int i = 0; i < f.last.n; i++)
        free(f.last.v[i].json);
    free(f.last.v);
    store_set_remote(s, NULL);
    store_close(s);
    {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    DONE();
}
