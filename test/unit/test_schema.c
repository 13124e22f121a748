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
    DONE();
}
