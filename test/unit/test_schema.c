/* test_schema.c - record validation: defaults filled, bad fields named. */
#include "../../src/schema.c"
#include "unit.h"

static int provider(const char *json, char *err)
{
    cJSON *p = cJSON_Parse(json);
    int rc = schema_provider_normalise(p, err, 256);
    cJSON_Delete(p);
    return rc;
}

static int prefs(const char *json, char *err)
{
    cJSON *p = cJSON_Parse(json);
    int rc = schema_prefs_check(p, err, 256);
    cJSON_Delete(p);
    return rc;
}

static int route(const char *json, char *err)
{
    cJSON *r = cJSON_Parse(json);
    int rc = schema_route_normalise(r, err, 256);
    cJSON_Delete(r);
    return rc;
}

/* Normalises budget JSON; 0 when valid, else -1 with err starting with the field FIELD. */
static int budget(const char *json, char *err)
{
    cJSON *b = cJSON_Parse(json);
    int rc = schema_budget_normalise(b, err, 256);
    cJSON_Delete(b);
    return rc;
}

/* 1 when normalising JSON with FN fails naming FIELD first in its message. */
static int fails_on(int (*fn)(cJSON *, char *, size_t), const char *json, const char *field)
{
    char err[256];
    size_t n = strlen(field);
    cJSON *rec = cJSON_Parse(json);
    int rc = fn(rec, err, sizeof(err));
    cJSON_Delete(rec);
    return rc < 0 && strncmp(err, field, n) == 0 && strncmp(err + n, ": ", 2) == 0;
}

static int64_t when(const char *s)
{
    int64_t t;
    return schema_time_parse(s, &t) == 0 ? t : -1;
}

static int budget_err(const char *json, const char *field)
{
    char err[256];
    size_t n = strlen(field);
    return budget(json, err) < 0 && strncmp(err, field, n) == 0 && strncmp(err + n, ": ", 2) == 0;
}

int main(void)
{
    char err[256], id[37];
    cJSON *r = cJSON_Parse("{\"name\":\"fast\",\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}");
    CHECK(schema_route_normalise(r, err, sizeof(err)) == 0);
    CHECK_STR(cJSON_GetObjectItem(r, "endpoint")->valuestring, "chat");
    CHECK_STR(cJSON_GetObjectItem(r, "strategy")->valuestring, "fallback");
    CHECK_STR(cJSON_GetObjectItem(r, "scope")->valuestring, "global");
    CHECK(strlen(cJSON_GetObjectItem(r, "id")->valuestring) == 36);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "targets"), 0), "order")->valueint == 0);
    cJSON_Delete(r);

    CHECK(route("{\"targets\":[]}", err) < 0 && strstr(err, "name") != NULL);
    CHECK(route("{\"name\":\"x\",\"targets\":[]}", err) < 0 && strstr(err, "targets") != NULL);
    CHECK(route("{\"name\":\"x\",\"nope\":1,\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}", err) < 0 &&
          strstr(err, "nope") != NULL);
    CHECK(route("{\"name\":\"x\",\"endpoint\":\"chatty\",\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}", err) < 0 &&
          strstr(err, "endpoint") != NULL);
    CHECK(route("{\"name\":\"x\",\"retry\":{\"max_429_retries\":11},\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}", err) < 0 &&
          strstr(err, "retry.max_429_retries") != NULL);
    CHECK(route("{\"name\":\"x\",\"max_in_flight\":0,\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}", err) < 0 &&
          strstr(err, "max_in_flight") != NULL);
    CHECK(route("{\"name\":\"x\",\"timeouts\":{\"total_s\":3601},\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}", err) < 0 &&
          strstr(err, "timeouts.total_s") != NULL);
    CHECK(route("{\"name\":\"x\",\"targets\":[{\"provider\":\"p\"}]}", err) < 0 && strstr(err, "targets[0].model") != NULL);

    cJSON *p = cJSON_Parse("{\"name\":\"mock\",\"base_url\":\"http://h:1/v1/\",\"models\":[{\"name\":\"m\"}]}");
    CHECK(schema_provider_normalise(p, err, sizeof(err)) == 0);
    CHECK_STR(cJSON_GetObjectItem(p, "base_url")->valuestring, "http://h:1/v1");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "models"), 0), "bare_alias")));
    cJSON_Delete(p);
    p = cJSON_Parse("{\"name\":\"bad name\",\"base_url\":\"http://h\"}");
    CHECK(schema_provider_normalise(p, err, sizeof(err)) < 0 && strstr(err, "name") != NULL);
    cJSON_Delete(p);
    p = cJSON_Parse("{\"name\":\"x\",\"base_url\":\"ftp://h\"}");
    CHECK(schema_provider_normalise(p, err, sizeof(err)) < 0 && strstr(err, "base_url") != NULL);
    cJSON_Delete(p);

    /* placement and model fields the preferences read */
#define PROV(extra) "{\"name\":\"x\",\"base_url\":\"http://h\"" extra "}"
    CHECK(provider(PROV(",\"region\":\"DE\",\"retention_days\":0"), err) == 0);
    CHECK(provider(PROV(",\"region\":[\"DE\",\"FR\"]"), err) == 0);
    CHECK(provider(PROV(",\"region\":[]"), err) < 0 && strncmp(err, "region:", 7) == 0);
    CHECK(provider(PROV(",\"region\":5"), err) < 0 && strncmp(err, "region:", 7) == 0);
    CHECK(provider(PROV(",\"region\":[\"DE\",\"\"]"), err) < 0 && strncmp(err, "region:", 7) == 0);
    CHECK(provider(PROV(",\"retention_days\":-1"), err) < 0 && strncmp(err, "retention_days:", 15) == 0);
    CHECK(provider(PROV(",\"retention_days\":1.5"), err) < 0 && strncmp(err, "retention_days:", 15) == 0);
    CHECK(provider(PROV(",\"models\":[{\"name\":\"m\",\"supported_parameters\":[\"tools\"],\"quantization\":\"fp8\"}]"),
                   err) == 0);
    CHECK(provider(PROV(",\"models\":[{\"name\":\"m\",\"supported_parameters\":\"tools\"}]"), err) < 0 &&
          strncmp(err, "models[0].supported_parameters:", 31) == 0);
    CHECK(provider(PROV(",\"models\":[{\"name\":\"m\",\"supported_parameters\":[1]}]"), err) < 0 &&
          strncmp(err, "models[0].supported_parameters:", 31) == 0);
    CHECK(provider(PROV(",\"models\":[{\"name\":\"m\",\"quantization\":\"q4\"}]"), err) < 0 &&
          strncmp(err, "models[0].quantization:", 23) == 0);
    CHECK(prefs("{\"require_parameters\":true,\"quantizations\":[\"int4\",\"unknown\"],\"max_retention_days\":30,"
                "\"data_residency\":[\"eu\",\"CH\"]}", err) == 0);
    CHECK(prefs("{\"require_parameters\":1}", err) < 0 && strncmp(err, "provider.require_parameters:", 28) == 0);
    CHECK(prefs("{\"quantizations\":[\"fp7\"]}", err) < 0 && strncmp(err, "provider.quantizations:", 23) == 0);
    CHECK(prefs("{\"quantizations\":\"fp8\"}", err) < 0 && strncmp(err, "provider.quantizations:", 23) == 0);
    CHECK(prefs("{\"max_retention_days\":-1}", err) < 0 && strncmp(err, "provider.max_retention_days:", 28) == 0);
    CHECK(prefs("{\"data_residency\":[5]}", err) < 0 && strncmp(err, "provider.data_residency:", 24) == 0);
    CHECK(prefs("[]", err) < 0 && strncmp(err, "provider:", 9) == 0);

    schema_uuid(id);
    CHECK(strlen(id) == 36 && id[14] == '4' && id[8] == '-');
    CHECK(schema_endpoint_parse("audio_transcription") == EP_AUDIO_TRANSCRIPTION);
    CHECK(schema_endpoint_parse("x") == -1);
    /* budgets: defaults written in, every scope shape, limits */
    cJSON *b = cJSON_Parse("{\"name\":\"monthly\",\"scope\":\"global\",\"limit_usd\":5,\"description\":null}");
    CHECK(schema_budget_normalise(b, err, sizeof(err)) == 0);
    CHECK_STR(cJSON_GetObjectItem(b, "window")->valuestring, "total");
    CHECK_STR(cJSON_GetObjectItem(b, "action_on_exhaust")->valuestring, "block");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(b, "enabled")));
    CHECK(cJSON_GetObjectItem(b, "description") == NULL);      /* null is absent, not stored */
    CHECK(schema_is_uuid(cJSON_GetObjectItem(b, "id")->valuestring));
    cJSON_Delete(b);
    CHECK(budget("{\"name\":\"b\",\"scope\":{\"target\":{\"route\":\"r\",\"provider\":\"p\",\"model\":\"m/x\"}},"
                 "\"limit_tokens\":1000000000000000,\"window\":\"1M\",\"action_on_exhaust\":\"alert\"}", err) == 0);
    CHECK(budget("{\"name\":\"b\",\"scope\":{\"tenant\":\"acme\"},\"limit_requests\":1}", err) == 0);
    CHECK(budget_err("{\"scope\":\"global\",\"limit_usd\":1}", "name"));
    CHECK(budget_err("{\"name\":\"b\",\"limit_usd\":1}", "scope"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"tenant:acme\",\"limit_usd\":1}", "scope"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":{},\"limit_usd\":1}", "scope"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":{\"key\":\"k\",\"route\":\"r\"},\"limit_usd\":1}", "scope"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":{\"router\":\"r\"},\"limit_usd\":1}", "scope.router"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":{\"key\":\"\"},\"limit_usd\":1}", "scope.key"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":{\"provider\":\"a b\"},\"limit_usd\":1}", "scope.provider"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":{\"target\":{\"route\":\"r\",\"provider\":\"p\"}},\"limit_usd\":1}",
                     "scope.target.model"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":{\"target\":{\"route\":\"r\",\"provider\":\"p\",\"model\":\"m\","
                     "\"x\":1}},\"limit_usd\":1}", "scope.target.x"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\"}", "limit_usd"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\",\"limit_usd\":0}", "limit_usd"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\",\"limit_tokens\":1.5}", "limit_tokens"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\",\"limit_requests\":1000000000001}", "limit_requests"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\",\"limit_usd\":1,\"window\":\"1y\"}", "window"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\",\"limit_usd\":1,\"action_on_exhaust\":\"warn\"}",
                     "action_on_exhaust"));
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\",\"limit_usd\":1,\"spent_usd\":0}", "spent_usd"));
    /* a provider model's cached_input_price */
    CHECK(provider("{\"name\":\"p\",\"base_url\":\"http://h\",\"models\":[{\"name\":\"m\",\"cached_input_price\":0.1}]}",
                   err) == 0);
    CHECK(provider("{\"name\":\"p\",\"base_url\":\"http://h\",\"models\":[{\"name\":\"m\",\"cached_input_price\":-1}]}",
                   err) < 0 && strstr(err, "models[0].cached_input_price") != NULL);
    /* keys' and tenants' rate limits (SPEC 8): ranges, null is none */
#define KEY(extra) "{\"secret_hash\":\"" "abababababababababababababababababababababababababababababababab" "\"" extra "}"
    cJSON *k = cJSON_Parse(KEY(",\"rpm\":10000000,\"tpm\":10000000000,\"max_in_flight\":100000"));
    CHECK(schema_key_normalise(k, err, sizeof(err)) == 0);
    CHECK(cJSON_GetObjectItem(k, "tpm")->valuedouble == 1e10);
    cJSON_Delete(k);
    k = cJSON_Parse(KEY(",\"rpm\":null,\"tpm\":null,\"max_in_flight\":null"));
    CHECK(schema_key_normalise(k, err, sizeof(err)) == 0 && cJSON_GetObjectItem(k, "rpm") == NULL &&
          cJSON_GetObjectItem(k, "tpm") == NULL && cJSON_GetObjectItem(k, "max_in_flight") == NULL);
    cJSON_Delete(k);
    CHECK(fails_on(schema_key_normalise, KEY(",\"rpm\":0"), "rpm"));
    CHECK(fails_on(schema_key_normalise, KEY(",\"rpm\":10000001"), "rpm"));
    CHECK(fails_on(schema_key_normalise, KEY(",\"rpm\":1.5"), "rpm"));
    CHECK(fails_on(schema_key_normalise, KEY(",\"tpm\":10000000001"), "tpm"));
    CHECK(fails_on(schema_key_normalise, KEY(",\"tpm\":\"5\""), "tpm"));
    CHECK(fails_on(schema_key_normalise, KEY(",\"max_in_flight\":100001"), "max_in_flight"));
    CHECK(fails_on(schema_key_normalise, KEY(",\"max_in_flight\":0"), "max_in_flight"));
    cJSON *t = cJSON_Parse("{\"name\":\"acme\",\"rpm\":60,\"description\":null,\"tpm\":null}");
    CHECK(schema_tenant_normalise(t, err, sizeof(err)) == 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t, "enabled")) && schema_is_uuid(cJSON_GetObjectItem(t, "id")->valuestring));
    CHECK(cJSON_GetObjectItem(t, "description") == NULL && cJSON_GetObjectItem(t, "tpm") == NULL);
    CHECK(cJSON_GetObjectItem(t, "created_at") != NULL && cJSON_GetObjectItem(t, "updated_at") != NULL);
    cJSON_Delete(t);
    CHECK(fails_on(schema_tenant_normalise, "{\"rpm\":1}", "name"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":null}", "name"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"a b\"}", "name"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"\"}", "name"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"t\",\"rpm\":0}", "rpm"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"t\",\"tpm\":1e11}", "tpm"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"t\",\"max_in_flight\":2.5}", "max_in_flight"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"t\",\"enabled\":1}", "enabled"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"t\",\"tenant\":\"t\"}", "tenant"));
    CHECK(fails_on(schema_tenant_normalise, "{\"name\":\"t\",\"id\":\"x\"}", "id"));
    CHECK(fails_on(schema_tenant_normalise, "[]", "tenant"));

    /* times for /v1/usage: RFC 3339 UTC or with an offset, a date, epoch seconds */
    CHECK(when("2026-12-01T00:00:00Z") == 1796083200);
    CHECK(when("2026-12-01t00:00:00z") == 1796083200);
    CHECK(when("2026-12-01T01:30:00.123456Z") == 1796083200 + 5400);
    CHECK(when("2026-12-01T01:30:00+01:30") == 1796083200);
    CHECK(when("2026-12-01T01:30:00 01:30") == 1796083200);     /* a '+' a query string decoded */
    CHECK(when("2026-11-30T22:00:00-02:00") == 1796083200);
    CHECK(when("2026-12-01") == 1796083200);
    CHECK(when("2024-02-29") == 1709164800);
    CHECK(when("1796083200") == 1796083200 && when("0") == 0 && when("253402300799") == 253402300799LL);
    CHECK(when("1970-01-01T00:00:00Z") == 0 && when("9999-12-31T23:59:59Z") == 253402300799LL);
    static const char *const bad[] = {
        "", "-1", "253402300800", "2026-12-01T00:00:00", "2026-13-01", "2026-02-29", "2023-02-29T00:00:00Z",
        "2026-12-32", "2026-12-01T24:00:00Z", "2026-12-01T00:60:00Z", "2026-12-01T00:00:61Z", "1969-12-31",
        "2026-12-01T00:00Z", "2026-12-01T00:00:00.Z", "2026-12-01T00:00:00+1", "2026-12-01T00:00:00+01",
        "2026-12-01T00:00:00+01:0", "2026-12-01T00:00:00Zx", "2026-12-01x", "12.5", "1e9", "now", "2026-1-1",
        "1970-01-01T00:00:00+00:01", NULL,
    };
    for (int i = 0; bad[i]; i++) {
        int64_t v;
        if (schema_time_parse(bad[i], &v) == 0) {
            fprintf(stderr, "accepted %s\n", bad[i]);
            CHECK(0);
        }
    }
    char iso[32];
    schema_time_iso(1796083200 + 3661, iso);
    CHECK_STR(iso, "2026-12-01T01:01:01Z");

    /* [tls-fuzz] what fuzz_records found (its corpus keeps each input) */
    /* an integer field past a long long's range is out of bounds, not converted
     * (records/provider-huge-int: undefined behaviour) */
    CHECK(provider(PROV(",\"max_in_flight\":1e300"), err) < 0 && strncmp(err, "max_in_flight: must be between", 30) == 0);
    CHECK(provider(PROV(",\"max_in_flight\":-1e300"), err) < 0 && strncmp(err, "max_in_flight:", 14) == 0);
    CHECK(budget_err("{\"name\":\"b\",\"scope\":\"global\",\"limit_tokens\":1e19}", "limit_tokens"));
    CHECK(provider(PROV(",\"max_in_flight\":1.5"), err) < 0 && strstr(err, "an integer") != NULL);
    /* base_url: "https://" alone names no host (it was stored as "https:/", which
     * no longer validated), and every trailing slash goes, so a normalised record
     * normalises to itself (records/provider-slash-only, provider-double-slash) */
    CHECK(provider("{\"name\":\"p\",\"base_url\":\"https://\"}", err) < 0 && strncmp(err, "base_url:", 9) == 0);
    CHECK(provider("{\"name\":\"p\",\"base_url\":\"http:///\"}", err) < 0 && strncmp(err, "base_url:", 9) == 0);
    p = cJSON_Parse("{\"name\":\"p\",\"base_url\":\"http://h//\"}");
    CHECK(schema_provider_normalise(p, err, sizeof(err)) == 0);
    CHECK_STR(cJSON_GetObjectItem(p, "base_url")->valuestring, "http://h");
    cJSON_Delete(p);
    /* a field given twice is refused: cJSON reads the first, other readers the
     * last, and dropping one null left the other (records/key-dup-null) */
    CHECK(fails_on(schema_key_normalise, KEY(",\"rpm\":null,\"rpm\":null"), "rpm"));
    CHECK(fails_on(schema_key_normalise, KEY(",\"enabled\":true,\"enabled\":false"), "enabled"));
    CHECK(provider(PROV(",\"models\":[{\"name\":\"m\",\"name\":\"n\"}]"), err) < 0 &&
          strncmp(err, "models[0].name: given more than once", 36) == 0);
    /* and in the objects whose names are the caller's: a budget target's
     * parts (records/budget-target-dup), a provider's headers in any case,
     * a target's model_map */
    CHECK(budget_err("{\"name\":\"t\",\"scope\":{\"target\":{\"route\":\"r\",\"provider\":\"p\",\"model\":\" \","
                     "\"model\":\"\"}},\"limit_tokens\":5}", "scope.target.model"));
    CHECK(provider(PROV(",\"headers\":{\"X-A\":\"1\",\"B\":\"2\",\"x-a\":\"3\"}"), err) < 0 &&
          strcasecmp(err, "headers.x-a: given more than once") == 0);
    CHECK(provider(PROV(",\"headers\":{\"X-A\":\"1\",\"X-B\":\"2\"}"), err) == 0);
    CHECK(route("{\"name\":\"x\",\"targets\":[{\"provider\":\"p\",\"model\":\"m\",\"model_map\":{\"a*\":\"m\",\"a*\":\"n\"}}]}",
                err) < 0 && strcmp(err, "targets[0].model_map.a*: given more than once") == 0);
    DONE();
}
