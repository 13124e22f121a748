/* fuzz_records.c - libFuzzer driver for the store records' validation (src/schema.c) on arbitrary bytes.
 *
 * The admin API and the seed import run a schema_*_normalise on every
 * record a caller sends. The first byte picks the table (provider, route,
 * router, key, tenant, budget, or a route's provider preferences alone);
 * the rest is parsed with cJSON, as they do. Besides the sanitizers'
 * findings it checks: a refusal says why in err, within its capacity; a
 * record that validates validates again after printing and parsing it
 * back, and comes out the same (normalising is idempotent: a stored record
 * read back and written again does not change). The same bytes, cut at a
 * NUL, go to schema_time_parse: a time read is within 1970-9999 and reads
 * back the same from schema_time_iso's text. Seeds are in corpus/records. */
#include "schema.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                        \
    do {                                                                                                \
        if (!(c))                                                                                       \
            abort();                                                                                    \
    } while (0)

typedef int (*normalise_fn)(cJSON *, char *, size_t);

static int prefs(cJSON *p, char *err, size_t errlen)
{
    return schema_prefs_check(p, err, errlen);
}

static const normalise_fn tables[] = {
    schema_provider_normalise, schema_route_normalise, schema_router_normalise, schema_key_normalise,
    schema_tenant_normalise,   schema_budget_normalise, prefs,
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

static void record(normalise_fn norm, const char *json, size_t len, size_t errlen)
{
    cJSON *r = cJSON_ParseWithLength(json, len), *again;
    char *err = malloc(errlen), err2[512], *text;
    CHECK(err != NULL);
    err[0] = '\0';
    if (r == NULL) {
        free(err);
        return;
    }
    if (norm(r, err, errlen) != 0) {
        CHECK(memchr(err, '\0', errlen) != NULL && (errlen == 1 || err[0] != '\0'));
    } else {
        CHECK((text = cJSON_PrintUnformatted(r)) != NULL);
        again = cJSON_Parse(text);
        CHECK(again != NULL);
        if (norm(again, err2, sizeof(err2)) != 0) {
            fprintf(stderr, "fuzz_records: %s\nrefused once normalised: %s\n", text, err2);
            abort();
        }
        if (!cJSON_Compare(r, again, 1)) {
            char *t2 = cJSON_PrintUnformatted(again);
            fprintf(stderr, "fuzz_records: normalising twice changed\n%s\ninto\n%s\n", text, t2 ? t2 : "?");
            abort();
        }
        cJSON_Delete(again);
        free(text);
    }
    cJSON_Delete(r);
    free(err);
}

static void times(const char *b, size_t size)
{
    char *s = malloc(size + 1), iso[32];
    int64_t t = -1, t2 = -1;
    CHECK(s != NULL);
    memcpy(s, b, size);
    s[size] = '\0';
    if (schema_time_parse(s, &t) == 0) {
        CHECK(t >= 0 && t <= SCHEMA_TIME_MAX);
        schema_time_iso(t, iso);
        CHECK(schema_time_parse(iso, &t2) == 0 && t2 == t);
    }
    (void)schema_is_uuid(s);
    (void)schema_is_glob(s);
    (void)schema_endpoint_parse(s);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    record(tables[data[0] % NTABLES], (const char *)data + 1, size - 1, 1 + (size_t)(data[0] >> 3) * 9);
    times((const char *)data + 1, size - 1);
    return 0;
}
