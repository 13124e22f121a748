/* test_anthropic_to_openai.c - an Anthropic client on an OpenAI upstream: requests, answers, streams and errors. */
#include "../../src/dialect/anthropic_to_openai.c"
#include "unit.h"

static const dialect_ops_t *ops = &dialect_anthropic_to_openai;

/* The bytes of B as a NUL-terminated string (caller frees); B is drained. */
static char *drain(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* Translates request BODY; *OUT gets the result (caller frees). */
static int req(const char *body, char **out, dialect_req_info_t *info, dialect_err_t *err)
{
    dialect_req_opts_t o = {.model = "gpt-4o", .default_max_tokens = 4096};
    struct evbuffer *b = evbuffer_new();
    int rc;
    memset(err, 0, sizeof(*err));
    rc = ops->request(body, strlen(body), &o, b, info, err);
    *out = drain(b);
    evbuffer_free(b);
    return rc;
}

/* Whether BODY translates to exactly WANT (printing the difference when not). */
static int req_is(const char *body, const char *want)
{
    dialect_req_info_t info;
    dialect_err_t err;
    char *got;
    int rc = req(body, &got, &info, &err), ok = rc == 0 && strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "  request %s\n  got  %s (%d %s)\n  want %s\n", body, got, rc, rc ? err.message : "", want);
    free(got);
    return ok;
}

/* Whether BODY is refused with CODE naming PARAM (and nothing is written). */
static int req_fails(const char *body, const char *code, const char *param)
{
    dialect_req_info_t info;
    dialect_err_t err;
    char *got;
    int rc = req(body, &got, &info, &err);
    int ok = rc == -1 && got[0] == '\0' && err.code != NULL && strcmp(err.code, code) == 0 && strcmp(err.param, param) == 0;
    if (!ok)
        fprintf(stderr, "  request %s\n  got %d %s param=%s (%s)\n  want %s %s\n", body, rc, err.code ? err.code : "-",
                err.param, got, code, param);
    free(got);
    return ok;
}

#define MSG(x) "{\"model\":\"claude-x\",\"max_tokens\":64,\"messages\":[" x "]"
#define USER_HI "{\"role\":\"user\",\"content\":\"Hi\"}"

static void test_request(void)
{
    dialect_req_info_t info;
    dialect_err_t err;
    char *got;

    /* every scalar mapping, and a stream asks for usage */
    CHECK(req("{\"model\":\"claude-x\",\"max_tokens\":100,\"system\":\"Be brief.\",\"messages\":[" USER_HI "],"
              "\"temperature\":0.5,\"top_p\":0.9,\"stop_sequences\":[\"END\",\"STOP\"],\"metadata\":{\"user_id\":\"u1\"},"
              "\"stream\":true}",
              &got, &info, &err) == 0);
    CHECK_STR(got, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                   "{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":100,\"stop\":[\"END\",\"STOP\"],"
                   "\"temperature\":0.5,\"top_p\":0.9,\"user\":\"u1\",\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true}}");
    CHECK(info.stream == 1 && info.include_usage == 0);
    free(got);
    CHECK(req(MSG(USER_HI) ",\"stream\":false}", &got, &info, &err) == 0 && info.stream == 0);
    CHECK_STR(got, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64}");
    free(got);

    /* system blocks: one is a string, two are parts; cache_control is dropped; "" is no system */
    CHECK(req_is(MSG(USER_HI) ",\"system\":[{\"type\":\"text\",\"text\":\"S\",\"cache_control\":{\"type\":\"ephemeral\"}}]}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                 "{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64}"));
    CHECK(req_is(MSG(USER_HI) ",\"system\":[{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"B\"}]}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"A\"},"
                 "{\"type\":\"text\",\"text\":\"B\"}]},{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64}"));
    CHECK(req_is(MSG(USER_HI) ",\"system\":\"\"}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64}"));

    /* user blocks: one text block is a string; text and images are parts */
    CHECK(req_is(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"only\"}]}") "}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"only\"}],\"max_tokens\":64}"));
    CHECK(req_is(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What?\"},"
                     "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBO\"}},"
                     "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://x.test/a.jpg\"},"
                     "\"cache_control\":{\"type\":\"ephemeral\"}}]}") "}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What?\"},"
                 "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\"}},"
                 "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x.test/a.jpg\"}}]}],\"max_tokens\":64}"));

    /* a tool round trip: tool_use -> tool_calls; tool_result -> tool messages before the user's text */
    CHECK(req_is(MSG(USER_HI ","
                     "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Checking.\"},"
                     "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}},"
                     "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"now\",\"input\":{}}]},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"thanks\"},"
                     "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"18C\"},"
                     "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_2\",\"is_error\":true,"
                     "\"content\":[{\"type\":\"text\",\"text\":\"clock\"},{\"type\":\"text\",\"text\":\"broken\"}]}]},"
                     "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_3\",\"name\":\"now\",\"input\":{}}]},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_3\","
                     "\"cache_control\":{\"type\":\"ephemeral\"}}]}") "}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
                 "{\"role\":\"assistant\",\"content\":\"Checking.\",\"tool_calls\":["
                 "{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
                 "{\"id\":\"toolu_2\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},"
                 "{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\",\"content\":\"18C\"},"
                 "{\"role\":\"tool\",\"tool_call_id\":\"toolu_2\",\"content\":[{\"type\":\"text\",\"text\":\"clock\"},"
                 "{\"type\":\"text\",\"text\":\"broken\"}]},"
                 "{\"role\":\"user\",\"content\":\"thanks\"},"
                 "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"toolu_3\",\"type\":\"function\","
                 "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},"
                 "{\"role\":\"tool\",\"tool_call_id\":\"toolu_3\",\"content\":\"\"}],\"max_tokens\":64}"));
    /* assistant text blocks; a string assistant message */
    CHECK(req_is(MSG(USER_HI ",{\"role\":\"assistant\",\"content\":\"Yo\"}," USER_HI) "}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
                 "{\"role\":\"assistant\",\"content\":\"Yo\"},{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64}"));

    /* tools and each tool_choice */
#define TOOLS ",\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":\"object\"}," \
              "\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"custom\",\"name\":\"now\",\"strict\":true," \
              "\"input_schema\":{\"type\":\"object\",\"properties\":{}}}]"
#define OTOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\"," \
               "\"parameters\":{\"type\":\"object\"}}},{\"type\":\"function\",\"function\":{\"name\":\"now\"," \
               "\"parameters\":{\"type\":\"object\",\"properties\":{}},\"strict\":true}}]"
#define OHEAD "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64,"
    CHECK(req_is(MSG(USER_HI) TOOLS "}", OHEAD OTOOLS "}"));
    CHECK(req_is(MSG(USER_HI) TOOLS ",\"tool_choice\":{\"type\":\"auto\"}}", OHEAD OTOOLS ",\"tool_choice\":\"auto\"}"));
    CHECK(req_is(MSG(USER_HI) TOOLS ",\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true}}",
                 OHEAD OTOOLS ",\"tool_choice\":\"required\",\"parallel_tool_calls\":false}"));
    CHECK(req_is(MSG(USER_HI) TOOLS ",\"tool_choice\":{\"type\":\"tool\",\"name\":\"now\"}}",
                 OHEAD OTOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"now\"}}}"));
    CHECK(req_is(MSG(USER_HI) TOOLS ",\"tool_choice\":{\"type\":\"none\"}}", OHEAD OTOOLS ",\"tool_choice\":\"none\"}"));
    CHECK(req_is(MSG(USER_HI) ",\"tools\":[],\"tool_choice\":{\"type\":\"auto\"}}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64}"));
    CHECK(req_fails(MSG(USER_HI) ",\"tool_choice\":{\"type\":\"any\"}}", "invalid_request", "tool_choice"));
    CHECK(req_fails(MSG(USER_HI) TOOLS ",\"tool_choice\":{\"type\":\"tool\"}}", "invalid_request", "tool_choice.name"));
    CHECK(req_fails(MSG(USER_HI) TOOLS ",\"tool_choice\":{\"type\":\"some\"}}", "invalid_request", "tool_choice.type"));

    /* dropped because they change nothing: null fields, thinking disabled, service_tier auto, top-level cache_control */
    CHECK(req_is(MSG(USER_HI) ",\"top_k\":null,\"thinking\":{\"type\":\"disabled\"},\"service_tier\":\"auto\","
                              "\"cache_control\":{\"type\":\"ephemeral\"},\"temperature\":null}",
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":64}"));

    /* refused, naming the field */
    CHECK(req_fails(MSG(USER_HI) ",\"top_k\":5}", "unsupported_parameter", "top_k"));
    CHECK(req_fails(MSG(USER_HI) ",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}}", "unsupported_parameter",
                    "thinking"));
    CHECK(req_fails(MSG(USER_HI) ",\"service_tier\":\"standard_only\"}", "unsupported_parameter", "service_tier"));
    CHECK(req_fails(MSG(USER_HI) ",\"container\":\"c1\"}", "unsupported_parameter", "container"));
    CHECK(req_fails(MSG(USER_HI) ",\"mcp_servers\":[{\"type\":\"url\"}]}", "unsupported_parameter", "mcp_servers"));
    CHECK(req_fails(MSG(USER_HI) ",\"frobnicate\":1}", "unsupported_parameter", "frobnicate"));
    CHECK(req_fails(MSG(USER_HI) ",\"metadata\":{\"user_id\":\"u\",\"team\":\"t\"}}", "unsupported_parameter",
                    "metadata.team"));
    CHECK(req_fails(MSG(USER_HI) ",\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]}",
                    "unsupported_parameter", "tools[0].type"));
    CHECK(req_fails(MSG(USER_HI) ",\"tools\":[{\"name\":\"a\",\"input_schema\":{},\"input_examples\":[]}]}",
                    "unsupported_parameter", "tools[0].input_examples"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{}}]}") "}",
                    "unsupported_parameter", "messages[0].content[0].type"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"citations\":[{}]}]}") "}",
                    "unsupported_parameter", "messages[0].content[0].citations"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}") "}",
                    "unsupported_parameter", "messages[0].content[0].source.type"));
    CHECK(req_fails(MSG(USER_HI ",{\"role\":\"assistant\",\"content\":\"x\"},"
                        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":["
                        "{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"u\"}}]}]}") "}",
                    "unsupported_parameter", "messages[2].content[0].content[1].type"));
    CHECK(req_fails(MSG(USER_HI ",{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\","
                        "\"signature\":\"s\"}]}," USER_HI) "}",
                    "unsupported_parameter", "messages[1].content[0].type"));
    CHECK(req_fails(MSG(USER_HI ",{\"role\":\"assistant\",\"content\":\"The answer is\"}") "}", "unsupported_parameter",
                    "messages[1].role"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":\"Hi\",\"name\":\"bob\"}") "}", "unsupported_parameter",
                    "messages[0].name"));

    /* not a Messages request */
    CHECK(req_fails("{\"model\":\"m\",\"messages\":[" USER_HI "]}", "invalid_request", "max_tokens"));
    CHECK(req_fails("{\"model\":\"m\",\"max_tokens\":0,\"messages\":[" USER_HI "]}", "invalid_request", "max_tokens"));
    CHECK(req_fails("{\"model\":\"m\",\"max_tokens\":1.5,\"messages\":[" USER_HI "]}", "invalid_request", "max_tokens"));
    CHECK(req_fails("{\"model\":\"m\",\"max_tokens\":\"9\",\"messages\":[" USER_HI "]}", "invalid_request", "max_tokens"));
    CHECK(req_fails("{\"model\":\"m\",\"max_tokens\":9,\"messages\":{}}", "invalid_request", "messages"));
    CHECK(req_fails("{\"model\":\"m\",\"max_tokens\":9,\"messages\":[]}", "invalid_request", "messages"));
    CHECK(req_fails("{\"max_tokens\":9,\"messages\":[" USER_HI "]}", "invalid_request", "model"));
    CHECK(req_fails("[1]", "invalid_request", ""));
    CHECK(req_fails(MSG("{\"role\":\"system\",\"content\":\"x\"}") "}", "invalid_request", "messages[0].role"));
    CHECK(req_fails(MSG("{\"content\":\"x\"}") "}", "invalid_request", "messages[0].role"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":5}") "}", "invalid_request", "messages[0].content"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[]}") "}", "invalid_request", "messages[0].content"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}") "}", "invalid_request",
                    "messages[0].content[0].text"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}") "}", "invalid_request",
                    "messages[0].content[0].type"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\",\"input\":{}}]}") "}",
                    "invalid_request", "messages[0].content[0].type"));
    CHECK(req_fails(MSG(USER_HI ",{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\","
                        "\"input\":[]}]}," USER_HI) "}",
                    "invalid_request", "messages[1].content[0].input"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\"}]}") "}", "invalid_request",
                    "messages[0].content[0].tool_use_id"));
    CHECK(req_fails(MSG("{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\","
                        "\"media_type\":\"image/png;x\",\"data\":\"A\"}}]}") "}",
                    "invalid_request", "messages[0].content[0].source.media_type"));
    CHECK(req_fails(MSG(USER_HI) ",\"stop_sequences\":[1]}", "invalid_request", "stop_sequences"));
    CHECK(req_fails(MSG(USER_HI) ",\"temperature\":\"hot\"}", "invalid_request", "temperature"));
    CHECK(req_fails(MSG(USER_HI) ",\"stream\":1}", "invalid_request", "stream"));
    CHECK(req_fails(MSG(USER_HI) ",\"system\":[{\"type\":\"image\"}]}", "invalid_request", "system[0].type"));

    /* the message names the field for people */
    CHECK(req(MSG(USER_HI) ",\"top_k\":5}", &got, &info, &err) == -1 && strncmp(err.message, "top_k: ", 7) == 0);
    free(got);
}

/* Translates answer BODY; returns rc, *OUT the result. */
static int ans(const char *body, char **out, dialect_usage_t *u)
{
    struct evbuffer *b = evbuffer_new();
    int rc = ops->answer(body, strlen(body), "claude-x", b, u);
    *out = drain(b);
    evbuffer_free(b);
    return rc;
}

static int ans_is(const char *body, const char *want)
{
    dialect_usage_t u;
    char *got;
    int rc = ans(body, &got, &u), ok = rc == 0 && strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "  answer %s\n  got  %s (%d)\n  want %s\n", body, got, rc, want);
    free(got);
    return ok;
}

static int ans_fails(const char *body)
{
    dialect_usage_t u = {7, 7, 7};
    char *got;
    int ok = ans(body, &got, &u) == -1 && got[0] == '\0' && u.prompt == 7;
    if (!ok)
        fprintf(stderr, "  answer accepted: %s -> %s\n", body, got);
    free(got);
    return ok;
}

#define CMPL(msg, fr) "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o\"," \
    "\"choices\":[{\"index\":0,\"message\":" msg ",\"logprobs\":null,\"finish_reason\":\"" fr "\"}]"
#define AHEAD "{\"id\":\"msg_chatcmpl-1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":"

static void test_answer(void)
{
    dialect_usage_t u;
    char *got;

    /* text and two tool calls, with cached tokens */
    CHECK(ans(CMPL("{\"role\":\"assistant\",\"content\":\"Let me look.\",\"refusal\":null,\"tool_calls\":["
                   "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
                   "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"\"}}]}",
                   "tool_calls") ",\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":30,\"total_tokens\":130,"
                   "\"prompt_tokens_details\":{\"cached_tokens\":64}}}",
              &got, &u) == 0);
    CHECK_STR(got, AHEAD "[{\"type\":\"text\",\"text\":\"Let me look.\"},"
                   "{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}},"
                   "{\"type\":\"tool_use\",\"id\":\"call_b\",\"name\":\"now\",\"input\":{}}],"
                   "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
                   "\"usage\":{\"input_tokens\":36,\"output_tokens\":30,\"cache_read_input_tokens\":64}}");
    CHECK(u.prompt == 100 && u.completion == 30 && u.cached == 64);
    free(got);

    /* each finish_reason; no usage: zeros out, -1 in the counts */
    CHECK(ans(CMPL("{\"role\":\"assistant\",\"content\":\"Hi\"}", "stop") "}", &got, &u) == 0);
    CHECK_STR(got, AHEAD "[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
                   "\"usage\":{\"input_tokens\":0,\"output_tokens\":0,\"cache_read_input_tokens\":0}}");
    CHECK(u.prompt == -1 && u.completion == -1 && u.cached == -1);
    free(got);
#define USAGE ",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}"
#define ATAIL "\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"cache_read_input_tokens\":0}}"
    CHECK(ans_is(CMPL("{\"role\":\"assistant\",\"content\":\"Hi\"}", "length") USAGE,
                 AHEAD "[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"max_tokens\"," ATAIL));
    CHECK(ans_is(CMPL("{\"role\":\"assistant\",\"content\":null}", "content_filter") USAGE,
                 AHEAD "[],\"stop_reason\":\"refusal\"," ATAIL));
    CHECK(ans_is(CMPL("{\"role\":\"assistant\",\"content\":\"\"}", "stop") USAGE,
                 AHEAD "[],\"stop_reason\":\"end_turn\"," ATAIL));
    /* "stop" with tool calls is a tool_use, or the client would not run them */
    CHECK(ans_is(CMPL("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                      "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}", "stop") USAGE,
                 AHEAD "[{\"type\":\"tool_use\",\"id\":\"c\",\"name\":\"f\",\"input\":{}}],\"stop_reason\":\"tool_use\"," ATAIL));
    /* a refusal is the text */
    CHECK(ans_is(CMPL("{\"role\":\"assistant\",\"content\":null,\"refusal\":\"I can't.\"}", "stop") USAGE,
                 AHEAD "[{\"type\":\"text\",\"text\":\"I can't.\"}],\"stop_reason\":\"refusal\"," ATAIL));
    /* the id keeps only safe characters */
    CHECK(ans_is("{\"id\":\"chat/1 \\\"x\\\"\",\"choices\":[{\"message\":{\"content\":\"k\"},\"finish_reason\":\"stop\"}]}",
                 "{\"id\":\"msg_chat_1__x_\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":"
                 "[{\"type\":\"text\",\"text\":\"k\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
                 "\"usage\":{\"input_tokens\":0,\"output_tokens\":0,\"cache_read_input_tokens\":0}}"));

    /* not usable answers */
    CHECK(ans_fails(CMPL("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                         "\"function\":{\"name\":\"f\",\"arguments\":\"[1,2]\"}}]}", "tool_calls") "}"));
    CHECK(ans_fails(CMPL("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                         "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}", "tool_calls") "}"));
    CHECK(ans_fails(CMPL("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\","
                         "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}", "tool_calls") "}"));
    CHECK(ans_fails(CMPL("{\"role\":\"assistant\",\"content\":\"x\"}", "eos") "}"));
    CHECK(ans_fails(CMPL("{\"role\":\"assistant\",\"content\":[1]}", "stop") "}"));
    CHECK(ans_fails("{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[]}"));
    CHECK(ans_fails("{\"id\":\"x\",\"object\":\"list\",\"data\":[]}"));
    CHECK(ans_fails("{\"id\":\"x\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"a\",\"finish_reason\":\"stop\"}]}"));
    CHECK(ans_fails("{\"error\":{\"message\":\"no\"}}"));
    CHECK(ans_fails("{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]"));
    CHECK(ans_fails(""));
}

/* A stream under test: its state, what it wrote, the usage it reported. */
typedef struct {
    dialect_stream_t *s;
    struct evbuffer *out;
    dialect_usage_t usage;
} st_t;

static void st_open(st_t *t)
{
    dialect_req_info_t info = {.stream = 1};
    t->s = ops->stream_new("claude-x", &info);
    t->out = evbuffer_new();
    t->usage.prompt = t->usage.completion = t->usage.cached = -1;
}

static int feed(st_t *t, const char *ev)
{
    return ops->stream_event(t->s, ev, strlen(ev), t->out, &t->usage);
}

/* Whether what the stream wrote since the last call is exactly WANT. */
static int wrote(st_t *t, const char *want)
{
    char *got = drain(t->out);
    int ok = strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "  stream wrote\n%s\n  want\n%s\n", got, want);
    free(got);
    return ok;
}

static void st_close(st_t *t)
{
    ops->stream_free(t->s);
    evbuffer_free(t->out);
}

#define CH(body) "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\"," body "}\n\n"
#define DELTA(d) CH("\"choices\":[{\"index\":0,\"delta\":" d ",\"logprobs\":null,\"finish_reason\":null}],\"usage\":null")
#define EV(name, data) "event: " name "\ndata: " data "\n\n"
#define MSTART EV("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_chatcmpl-9x\",\"type\":\"message\"," \
    "\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null," \
    "\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}")
#define BSTOP(i) EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":" #i "}")
#define TSTART(i) EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":" #i \
    ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
#define TDELTA(i, t) EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":" #i \
    ",\"delta\":{\"type\":\"text_delta\",\"text\":\"" t "\"}}")
#define USTART(i, id, name) EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":" #i \
    ",\"content_block\":{\"type\":\"tool_use\",\"id\":\"" id "\",\"name\":\"" name "\",\"input\":{}}}")
#define JDELTA(i, j) EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":" #i \
    ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"" j "\"}}")
#define MSTOP EV("message_stop", "{\"type\":\"message_stop\"}")

static void test_stream(void)
{
    st_t t;

    /* text, then two tool calls in pieces, finish_reason, the usage chunk, [DONE] */
    st_open(&t);
    CHECK(t.s != NULL);
    CHECK(feed(&t, DELTA("{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}")) == 0);
    CHECK(wrote(&t, MSTART));
    CHECK(feed(&t, DELTA("{\"content\":\"Hel\"}")) == 0);
    CHECK(wrote(&t, TSTART(0) TDELTA(0, "Hel")));
    CHECK(feed(&t, ": keep-alive\n\n") == 0);
    CHECK(wrote(&t, ""));
    /* CR LF line ends read the same */
    CHECK(feed(&t, "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                   "\"delta\":{\"content\":\"lo \\\"you\\\"\"},\"finish_reason\":null}]}\r\n\r\n") == 0);
    CHECK(wrote(&t, TDELTA(0, "lo \\\"you\\\"")));
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\","
                         "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}")) == 0);
    CHECK(wrote(&t, BSTOP(0) USTART(1, "call_a", "get_weather")));
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}")) == 0);
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}")) == 0);
    CHECK(wrote(&t, JDELTA(1, "{\\\"city\\\":") JDELTA(1, "\\\"Paris\\\"}")));
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\","
                         "\"function\":{\"name\":\"get_time\",\"arguments\":\"{\\\"tz\\\"\"}}]}")) == 0);
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\":\\\"CET\\\"}\"}}]}")) == 0);
    CHECK(wrote(&t, BSTOP(1) USTART(2, "call_b", "get_time") JDELTA(2, "{\\\"tz\\\"") JDELTA(2, ":\\\"CET\\\"}")));
    CHECK(feed(&t, CH("\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
                      "\"usage\":null")) == 0);
    CHECK(wrote(&t, BSTOP(2)));
    CHECK(t.usage.prompt == -1);
    CHECK(feed(&t, CH("\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":20,\"total_tokens\":70,"
                      "\"prompt_tokens_details\":{\"cached_tokens\":10}}")) == 0);
    CHECK(wrote(&t, ""));
    CHECK(t.usage.prompt == 50 && t.usage.completion == 20 && t.usage.cached == 10);
    CHECK(feed(&t, "data: [DONE]\n\n") == 1);
    CHECK(wrote(&t, EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
                                        "\"stop_sequence\":null},\"usage\":{\"input_tokens\":40,"
                                        "\"cache_read_input_tokens\":10,\"output_tokens\":20}}") MSTOP));
    CHECK(feed(&t, DELTA("{\"content\":\"late\"}")) == 0);   /* nothing after the end */
    CHECK(wrote(&t, ""));
    st_close(&t);

    /* the same stream in one go: the whole event sequence */
    st_open(&t);
    static const char *const seq[] = {
        DELTA("{\"role\":\"assistant\",\"content\":\"\"}"),
        DELTA("{\"content\":\"Hi\"}"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}"),
        DELTA("{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"\"}}]}"),
        DELTA("{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{}\"}}]}"),
        CH("\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]"),
        CH("\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}"),
    };
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++)
        CHECK(feed(&t, seq[i]) == 0);
    CHECK(feed(&t, "data:[DONE]\n\n") == 1);
    CHECK(wrote(&t, MSTART TSTART(0) TDELTA(0, "Hi") BSTOP(0) USTART(1, "call_a", "f") JDELTA(1, "{}") BSTOP(1)
                    USTART(2, "call_b", "g") JDELTA(2, "{}") BSTOP(2)
                    EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
                                        "\"stop_sequence\":null},\"usage\":{\"input_tokens\":9,\"output_tokens\":4}}") MSTOP));
    CHECK(t.usage.prompt == 9 && t.usage.completion == 4 && t.usage.cached == -1);
    st_close(&t);

    /* Azure: a filter chunk with no choices and no id first; length; no usage chunk */
    st_open(&t);
    CHECK(feed(&t, "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\","
                   "\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n") == 0);
    CHECK(wrote(&t, ""));
    CHECK(feed(&t, CH("\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"},\"finish_reason\":\"length\"}]")) == 0);
    CHECK(wrote(&t, MSTART TSTART(0) TDELTA(0, "A") BSTOP(0)));
    CHECK(feed(&t, "data: [DONE]\n\n") == 1);
    CHECK(wrote(&t, EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\","
                                        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":0}}") MSTOP));
    CHECK(t.usage.prompt == -1 && t.usage.completion == -1);
    st_close(&t);

    /* text after a tool call opens a new text block; a refusal delta ends as refusal */
    st_open(&t);
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}")) == 0);
    CHECK(feed(&t, DELTA("{\"refusal\":\"No.\"}")) == 0);
    CHECK(feed(&t, CH("\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]")) == 0);
    CHECK(feed(&t, "data: [DONE]\n\n") == 1);
    CHECK(wrote(&t, MSTART USTART(0, "c", "f") JDELTA(0, "{}") BSTOP(0) TSTART(1) TDELTA(1, "No.") BSTOP(1)
                    EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"refusal\","
                                        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":0}}") MSTOP));
    st_close(&t);

    /* malformed events: -1, nothing written, and the stream goes on as if they never came */
    st_open(&t);
    CHECK(feed(&t, DELTA("{\"content\":\"A\"}")) == 0);
    CHECK(wrote(&t, MSTART TSTART(0) TDELTA(0, "A")));
    static const char *const bad[] = {
        "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"B\"}\n\n",           /* not JSON */
        "data: hello\n\n",
        "data: {\"foo\":1}\n\n",                                                          /* not a chunk */
        "data: [1,2]\n\n",
        "data: {\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[]}\n\n",
        "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
        "event: error\ndata: {\"id\":\"x\",\"choices\":[]}\n\n",
        CH("\"choices\":[{\"index\":1,\"delta\":{\"content\":\"B\"}}]"),                  /* a second choice */
        CH("\"choices\":[{\"index\":0,\"delta\":{\"content\":\"B\"},\"finish_reason\":\"eos\"}]"),
        CH("\"choices\":{}"),
        CH("\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":{}}}]"),
        /* a new call must name itself */
        DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"arguments\":\"{}\"}}]}"),
        /* text first, then a malformed tool: the text delta is not written either */
        CH("\"choices\":[{\"index\":0,\"delta\":{\"content\":\"B\",\"tool_calls\":[{\"index\":-1}]}}]"),
        "data: [DONE]\n\n",                                                               /* no finish_reason: cut */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = feed(&t, bad[i]);
        CHECK(rc == -1);
        if (rc != -1)
            fprintf(stderr, "  accepted: %s", bad[i]);
        CHECK(wrote(&t, ""));
    }
    CHECK(feed(&t, DELTA("{\"content\":\"B\"}")) == 0);
    CHECK(wrote(&t, TDELTA(0, "B")));
    /* a call that goes back to a closed block */
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"c0\",\"function\":{\"name\":\"f\"}}]}")) == 0);
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":1,\"id\":\"c1\",\"function\":{\"name\":\"g\"}}]}")) == 0);
    CHECK(wrote(&t, BSTOP(0) USTART(1, "c0", "f") BSTOP(1) USTART(2, "c1", "g")));
    CHECK(feed(&t, DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}")) == -1);
    CHECK(wrote(&t, ""));
    st_close(&t);

    /* a [DONE] before any chunk named the message is malformed too */
    st_open(&t);
    CHECK(feed(&t, "data: [DONE]\n\n") == -1);
    CHECK(wrote(&t, ""));
    st_close(&t);
    ops->stream_free(NULL);
}

static int err_is(int status, const char *body, const char *want)
{
    struct evbuffer *b = evbuffer_new();
    char *got;
    int ok;
    ops->error(status, body, body != NULL ? strlen(body) : 0, b);
    got = drain(b);
    evbuffer_free(b);
    ok = strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "  error %d %s\n  got  %s\n  want %s\n", status, body ? body : "(null)", got, want);
    free(got);
    return ok;
}

#define AERR(t, m) "{\"type\":\"error\",\"error\":{\"type\":\"" t "\",\"message\":\"" m "\"}}"

static void test_error(void)
{
    const char *oe = "{\"error\":{\"message\":\"Bad things\",\"type\":\"invalid_request_error\",\"param\":\"x\",\"code\":\"bad_x\"}}";
    const char *plain = "{\"error\":{\"message\":\"Nope\",\"type\":\"t\",\"param\":null,\"code\":null}}";

    CHECK(err_is(400, oe, AERR("invalid_request_error", "Bad things (bad_x)")));
    CHECK(err_is(422, plain, AERR("invalid_request_error", "Nope")));
    CHECK(err_is(401, plain, AERR("authentication_error", "Nope")));
    CHECK(err_is(403, plain, AERR("permission_error", "Nope")));
    CHECK(err_is(404, plain, AERR("not_found_error", "Nope")));
    CHECK(err_is(413, plain, AERR("request_too_large", "Nope")));
    CHECK(err_is(429, "{\"error\":{\"message\":\"Slow down\",\"code\":\"rate_limit_exceeded\"}}",
                 AERR("rate_limit_error", "Slow down (rate_limit_exceeded)")));
    CHECK(err_is(503, plain, AERR("overloaded_error", "Nope")));
    CHECK(err_is(529, plain, AERR("overloaded_error", "Nope")));
    CHECK(err_is(500, plain, AERR("api_error", "Nope")));
    CHECK(err_is(502, "{\"error\":{\"message\":\"gw\",\"code\":502}}", AERR("api_error", "gw (502)")));
    CHECK(err_is(409, plain, AERR("invalid_request_error", "Nope")));
    /* other shapes: a string error, nothing usable, not JSON at all */
    CHECK(err_is(400, "{\"error\":\"plain words\"}", AERR("invalid_request_error", "plain words")));
    CHECK(err_is(500, "{\"detail\":\"x\"}", AERR("api_error", "the upstream answered HTTP 500")));
    CHECK(err_is(502, "<html>Bad Gateway</html>", AERR("api_error", "the upstream answered HTTP 502")));
    CHECK(err_is(503, NULL, AERR("overloaded_error", "the upstream answered HTTP 503")));
    /* quotes escaped, invalid UTF-8 replaced */
    CHECK(err_is(400, "{\"error\":{\"message\":\"say \\\"hi\\\" \xff\"}}",
                 AERR("invalid_request_error", "say \\\"hi\\\" \xef\xbf\xbd")));
}

/* Allocation failures: cJSON's allocations fail after LEFT more (-1: never). */
static long left = -1;

static void *failing_malloc(size_t n)
{
    if (left == 0)
        return NULL;
    if (left > 0)
        left--;
    return malloc(n);
}

static void test_oom(void)
{
    static const char *const body =
        "{\"model\":\"m\",\"max_tokens\":9,\"system\":[{\"type\":\"text\",\"text\":\"S\"},{\"type\":\"text\",\"text\":\"T\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\","
        "\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AA\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"b\"},{\"type\":\"tool_use\",\"id\":\"t\","
        "\"name\":\"f\",\"input\":{\"x\":1}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
        "\"tool_use_id\":\"t\",\"content\":[{\"type\":\"text\",\"text\":\"r\"},{\"type\":\"text\",\"text\":\"s\"}]},"
        "{\"type\":\"text\",\"text\":\"c\"}]}],\"tools\":[{\"name\":\"f\",\"description\":\"d\",\"strict\":true,"
        "\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"f\","
        "\"disable_parallel_tool_use\":true},\"stop_sequences\":[\"x\"],\"temperature\":1,\"metadata\":{\"user_id\":\"u\"},"
        "\"stream\":true}";
    static const char *const answer =
        CMPL("{\"role\":\"assistant\",\"content\":\"Hi\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
             "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":[1]}\"}}]}", "tool_calls")
        ",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}";
    static const char *const events[] = {
        DELTA("{\"role\":\"assistant\",\"content\":\"Hi\"}"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"}\"}}]}"),
        CH("\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]"),
        CH("\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}"),
        "data: [DONE]\n\n",
    };
    cJSON_Hooks hooks = {failing_malloc, free};
    dialect_req_info_t info;
    dialect_err_t err;
    dialect_usage_t u;
    char *want_req, *want_ans, *want_stream, *got;
    st_t t;
    int fails = 0, all_oom = 1;

    /* what each gives with memory to spare */
    CHECK(req(body, &want_req, &info, &err) == 0);
    CHECK(ans(answer, &want_ans, &u) == 0);
    st_open(&t);
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        feed(&t, events[i]);
    want_stream = drain(t.out);
    st_close(&t);

    cJSON_InitHooks(&hooks);
    /* the request: out_of_memory until it has enough, then the same body */
    for (long k = 0;; k++) {
        int rc;
        left = k;
        rc = req(body, &got, &info, &err);
        left = -1;
        if (rc == 0) {
            CHECK_STR(got, want_req);
            free(got);
            break;
        }
        fails++;
        all_oom &= err.code != NULL && strcmp(err.code, "out_of_memory") == 0 && got[0] == '\0';
        free(got);
    }
    CHECK(fails > 20 && all_oom);
    /* the answer: -1 until it has enough */
    fails = 0;
    for (long k = 0;; k++) {
        int rc;
        left = k;
        rc = ans(answer, &got, &u);
        left = -1;
        if (rc == 0) {
            CHECK_STR(got, want_ans);
            free(got);
            break;
        }
        fails++;
        all_oom &= got[0] == '\0';
        free(got);
    }
    CHECK(fails > 10 && all_oom);
    /* the stream: an event that fails leaves no trace, so feeding it again
     * with memory to spare gives the same stream */
    for (long k = 0; k < 40; k++) {
        int retried = 0;
        st_open(&t);
        for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
            left = k;
            if (feed(&t, events[i]) < 0) {
                left = -1;
                retried++;
                CHECK(feed(&t, events[i]) >= 0);
            }
            left = -1;
        }
        got = drain(t.out);
        CHECK_STR(got, want_stream);
        CHECK(k >= 20 || retried > 0);
        free(got);
        st_close(&t);
    }
    /* the error answer is always an Anthropic error */
    for (long k = 0; k < 12; k++) {
        struct evbuffer *b = evbuffer_new();
        left = k;
        ops->error(429, "{\"error\":{\"message\":\"m\"}}", 25, b);
        left = -1;
        got = drain(b);
        CHECK(strncmp(got, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"", 53) == 0);
        free(got);
        evbuffer_free(b);
    }
    cJSON_InitHooks(NULL);
    free(want_req);
    free(want_ans);
    free(want_stream);
}

/* Found by test/fuzz/fuzz_dialect.c: bytes that are no UTF-8 in an
 * upstream's answer, stream or tool arguments never reach the client's JSON. */
static void test_invalid_utf8_upstream(void)
{
    static const char answer[] = "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                                 "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t\","
                                 "\"type\":\"function\",\"function\":{\"name\":\"\xe3" "f\",\"arguments\":\"{}\"}}]},"
                                 "\"finish_reason\":\"tool_calls\"}]}";
    static const char lone[] = "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                               "\"message\":{\"role\":\"assistant\",\"content\":\"a\\udc00\"},\"finish_reason\":\"stop\"}]}";
    struct evbuffer *out = evbuffer_new();
    dialect_usage_t u;
    CHECK(dialect_anthropic_to_openai.answer(answer, sizeof(answer) - 1, "m", out, &u) == -1);
    CHECK(dialect_anthropic_to_openai.answer(lone, sizeof(lone) - 1, "m", out, &u) == -1);
    CHECK(evbuffer_get_length(out) == 0);
    evbuffer_free(out);
}

int main(void)
{
    test_invalid_utf8_upstream();
    test_request();
    test_answer();
    test_stream();
    test_error();
    test_oom();
    DONE();
}
