/* test_dialect.c - turnout's own errors in each client's shape, and each dialect's stream terminator. */
#include "../../src/dialect/dialect.c"
#include "unit.h"

#include <cjson/cJSON.h>

static cJSON *error_json(dialect_t d, int status, const char *code)
{
    struct evbuffer *b = evbuffer_new();
    cJSON *j;
    dialect_error_body(d, status, "invalid_request_error", code, "null", "\"the model 'x' does not exist\"",
                       ",\"attempts\":[]", b);
    j = cJSON_ParseWithLength((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
    evbuffer_free(b);
    return j;
}

int main(void)
{
    cJSON *j = error_json(DIALECT_OPENAI, 404, "model_not_found"), *e;
    e = cJSON_GetObjectItem(j, "error");
    CHECK(e != NULL && strcmp(cJSON_GetObjectItem(e, "code")->valuestring, "model_not_found") == 0);
    CHECK(cJSON_IsArray(cJSON_GetObjectItem(e, "attempts")) && cJSON_IsNull(cJSON_GetObjectItem(e, "param")));
    cJSON_Delete(j);
    j = error_json(DIALECT_ANTHROPIC, 404, "model_not_found");
    e = cJSON_GetObjectItem(j, "error");
    CHECK(strcmp(cJSON_GetObjectItem(j, "type")->valuestring, "error") == 0);
    CHECK(e != NULL && strcmp(cJSON_GetObjectItem(e, "type")->valuestring, "not_found_error") == 0);
    CHECK_STR(cJSON_GetObjectItem(e, "message")->valuestring, "model_not_found: the model 'x' does not exist");
    cJSON_Delete(j);
    static const struct { int status; const char *type; } types[] = {
        { 400, "invalid_request_error" }, { 401, "authentication_error" }, { 403, "permission_error" },
        { 413, "request_too_large" }, { 429, "rate_limit_error" }, { 502, "api_error" }, { 503, "overloaded_error" },
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        j = error_json(DIALECT_ANTHROPIC, types[i].status, "c");
        CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "type")->valuestring, types[i].type);
        cJSON_Delete(j);
    }

    CHECK(dialect_stream_ended(DIALECT_OPENAI, "data: x\n\ndata: [DONE]\n\n", 23));
    CHECK(dialect_stream_ended(DIALECT_OPENAI, "data:[DONE]", 11));
    CHECK(dialect_stream_ended(DIALECT_OPENAI, "data: [DONE]\r\n", 14));
    CHECK(!dialect_stream_ended(DIALECT_OPENAI, "data: [DONE]x\n\n", 15));
    CHECK(!dialect_stream_ended(DIALECT_OPENAI, "data: [DONE]\n\ndata: more\n\n", 26));
    CHECK(!dialect_stream_ended(DIALECT_OPENAI, "", 0));
    {
        static const char stop[] = "event: message_delta\ndata: {}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        CHECK(dialect_stream_ended(DIALECT_ANTHROPIC, stop, sizeof(stop) - 1));
        CHECK(!dialect_stream_ended(DIALECT_ANTHROPIC, stop, 32));
        CHECK(!dialect_stream_ended(DIALECT_ANTHROPIC, "data: [DONE]\n\n", 14));
    }
    CHECK(dialect_of_protocol("anthropic") == DIALECT_ANTHROPIC && dialect_of_protocol("azure") == DIALECT_OPENAI);
    CHECK(dialect_between(DIALECT_OPENAI, DIALECT_OPENAI) == NULL);
    DONE();
}
