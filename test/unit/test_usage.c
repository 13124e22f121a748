/* test_usage.c - counts read from answers and stream events of both dialects, any bytes safely, and their cost to the nano-dollar. */
#include "../../src/usage.c"
#include "unit.h"

static dialect_usage_t none(void)
{
    dialect_usage_t u = { -1, -1, -1 };
    return u;
}

static int answer(const char *s, dialect_usage_t *u)
{
    return usage_from_answer(s, strlen(s), u);
}

static int event(const char *s, dialect_usage_t *u, int *only)
{
    return usage_from_event(s, strlen(s), u, only);
}

int main(void)
{
    dialect_usage_t u;
    int only;
    char buf[64];
    const char *s;

    /* OpenAI: the top-level usage only, after anything else */
    u = none();
    CHECK(answer(" {\"choices\":[{\"message\":{\"content\":\"\\\"usage\\\": {\\\"prompt_tokens\\\": 9}\"}}],"
                 "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":4}}}", &u) == 1);
    CHECK(u.prompt == 12 && u.completion == 5 && u.cached == 4);
    u = none();                                  /* embeddings: prompt only */
    CHECK(answer("{\"data\":[{\"embedding\":[0.1,-2e-3]}],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3}}", &u) == 1);
    CHECK(u.prompt == 3 && u.completion == -1 && u.cached == -1);
    /* Anthropic: cached and cache-writing tokens are prompt tokens too */
    u = none();
    CHECK(answer("{\"type\":\"message\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":30,"
                 "\"cache_creation_input_tokens\":5,\"output_tokens\":7}}", &u) == 1);
    CHECK(u.prompt == 45 && u.completion == 7 && u.cached == 30);
    /* none, null, not JSON, cut short, negative, too long: nothing, never a read past the end */
    static const char *const no[] = { "", "{}", "{\"usage\":null}", "[{\"usage\":{\"prompt_tokens\":1}}]", "nope",
                                      "{\"usage\":{\"prompt_tokens\":-4}}", "{\"usage\":{\"prompt_tokens\":1234567890123456}}",
                                      "{\"usage\":{\"prompt_tokens\":", "{\"usage\":{\"prompt_tokens\"", "{\"usage\"" };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        u = none();
        CHECK(answer(no[i], &u) == 0 && u.prompt == -1 && u.completion == -1);
    }
    u = none();
    s = "{\"usage\":{\"prompt_tokens\":77,\"completion_tokens\":3}}";
    for (size_t n = 0; n < strlen(s); n++)       /* every prefix is safe */
        usage_from_answer(s, n, &u);
    CHECK(u.prompt == -1 || u.prompt == 77);

    /* stream events: OpenAI's usage chunk, Anthropic's start and delta */
    u = none();
    CHECK(event("data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n", &u, &only) == 0 && !only);
    CHECK(event("data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
                &u, &only) == 1 && only && u.prompt == 3 && u.completion == 4);
    u = none();                                  /* a chunk with both: counted, not the usage-only one */
    CHECK(event("data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":3}}\r\n\r\n", &u, &only) == 1 && !only);
    u = none();
    CHECK(event("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,"
                "\"cache_read_input_tokens\":2,\"output_tokens\":1}}}\n\n", &u, &only) == 1 && !only);
    CHECK(u.prompt == 22 && u.cached == 2 && u.completion == 1);
    CHECK(event("event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n", &u,
                NULL) == 1);
    CHECK(u.prompt == 22 && u.completion == 15);
    CHECK(event(": keep-alive\n\n", &u, &only) == 0 && event("data: [DONE]\n\n", &u, &only) == 0);

    /* finding the usage objects among events */
    s = "data: {\"usage\":null}\n\ndata: {\"usage\" : {\"a\":1}}\n\n";
    CHECK(usage_find(s, strlen(s), 0) == 29);
    CHECK(usage_find(s, strlen(s), 30) == strlen(s) && usage_find(s, 20, 0) == 20);

    /* cost: USD per 1M tokens, in nano-USD */
    usage_prices_t p = { 2.5, 10, -1 };
    u.prompt = 1000, u.completion = 200, u.cached = -1;
    CHECK(usage_cost_nusd(&u, &p) == 2500000 + 2000000);
    u.cached = 400;                              /* the cached ones at the input price when it has none of its own */
    CHECK(usage_cost_nusd(&u, &p) == 4500000);
    p.cached = 1.25;
    CHECK(usage_cost_nusd(&u, &p) == 600 * 2500 + 400 * 1250 + 200 * 10000);
    p.input = 0.075, p.output = -1, p.cached = -1, u.cached = -1;
    CHECK(usage_cost_nusd(&u, &p) == 75000);     /* unpriced output costs nothing */
    u.prompt = -1, u.completion = -1;
    CHECK(usage_cost_nusd(&u, &p) == 0);
    /* [tls-fuzz] counts an upstream claims, at prices a provider may have:
     * never past what an int64_t holds (llround's answer was negative, a
     * refund), at most $1e9 (fuzz corpus usage/huge-counts) */
    u = none();
    CHECK(answer("{\"usage\":{\"prompt_tokens\":999999999999999,\"completion_tokens\":999999999999999}}", &u) == 1);
    p = (usage_prices_t){ 10, 30, -1 };
    CHECK(usage_cost_nusd(&u, &p) == 1000000000000000000LL);
    p = (usage_prices_t){ 1e9, 1e9, 1e9 };
    u.prompt = u.completion = u.cached = INT64_MAX;
    CHECK(usage_cost_nusd(&u, &p) == 1000000000000000000LL);
    p = (usage_prices_t){ 1e9, 0, -1 };
    u.prompt = 999999, u.completion = 0, u.cached = 0;
    CHECK(usage_cost_nusd(&u, &p) == 999999000000000000LL);   /* under the cap: exact */
    usage_format_usd(4500000, buf, sizeof(buf));
    CHECK_STR(buf, "0.004500000");
    usage_format_usd(12000000001LL, buf, sizeof(buf));
    CHECK_STR(buf, "12.000000001");
    DONE();
}
