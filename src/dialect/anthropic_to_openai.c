/* anthropic_to_openai.c - an Anthropic Messages client (POST /v1/messages) on an OpenAI Chat Completions upstream.
 *
 * Decisions (SPEC 7, "Anthropic in"; dialect.h: a field the other side
 * cannot express is refused, never dropped, unless dropping it cannot
 * change the answer):
 *
 * Request, accepted and mapped:
 *   model                    -> the target's model (opts->model); must be a string
 *   max_tokens (required)    -> max_tokens (an integer >= 1)
 *   system (string | text blocks) -> a first "system" message
 *   messages (non-empty; user | assistant):
 *     text                   -> a text part; a message of one text block becomes a string
 *     image (base64 | url)   -> an image_url part (a data: URL for base64)
 *     user tool_result       -> a "tool" message (tool_call_id, its text), placed
 *                               before the rest of that user message
 *     assistant tool_use     -> tool_calls (arguments = input printed as JSON)
 *   tools (custom ones)      -> function tools (parameters = input_schema; strict kept)
 *   tool_choice              -> auto/any/tool/none -> "auto"/"required"/{function}/"none";
 *                               disable_parallel_tool_use: true -> parallel_tool_calls: false.
 *                               With no tools, auto and none mean what no tool_choice means
 *                               and are left out (OpenAI refuses a tool_choice without tools).
 *   stop_sequences -> stop (none: left out); temperature and top_p as they
 *   are (Anthropic's 0..1 lies inside OpenAI's ranges; the upstream judges);
 *   metadata.user_id -> user; stream: true -> stream plus
 *   stream_options.include_usage, so the final message_delta can carry usage
 *   (the usage chunk is consumed here, never relayed).
 * Accepted and dropped, because the answer is the same without them:
 *   cache_control anywhere (a prompt-caching hint: OpenAI caches prefixes on
 *   its own and has no field for it; only cost and latency differ),
 *   thinking {type: "disabled"}, service_tier "auto" (each is what leaving
 *   it out means), and any optional field whose value is null (not given).
 *   A tool_result's is_error flag has no OpenAI field; its text is kept as is
 *   (that text is what tells the model what went wrong).
 * Refused (unsupported_parameter, naming the field): top_k; thinking
 *   enabled (or any type but disabled); service_tier other than auto;
 *   container, mcp_servers and every other top-level or block field this
 *   file does not know; document, thinking, search_result and server-tool
 *   blocks; images inside a tool_result (an OpenAI tool message holds text
 *   only) and in assistant messages; image sources other than base64/url;
 *   server tools (a tool whose type is not "custom"); a final assistant
 *   message (Anthropic continues it as a prefill; Chat Completions would
 *   answer it afresh instead).
 * Invalid (invalid_request, naming the field): a body that is not a
 *   Messages request: no or bad max_tokens, messages not a non-empty array,
 *   a role other than user/assistant, a block without its required fields,
 *   tool_use in a user message, tool_result in an assistant one.
 *   Running out of memory reports code "out_of_memory" (see dialect.h).
 *
 * Answer: id "msg_" + the completion's id (characters outside [A-Za-z0-9_-]
 *   become '_'); text block, then one tool_use per tool call (arguments must
 *   parse to an object; "" is a call without arguments, {}); finish_reason
 *   stop/length/tool_calls/content_filter (and legacy function_call) map to
 *   end_turn/max_tokens/tool_use/refusal, anything else is not an answer;
 *   "stop" with tool calls is reported as tool_use (an Anthropic client runs
 *   tools only on tool_use). A message.refusal becomes the text and
 *   stop_reason refusal. OpenAI does not say which stop sequence matched, so
 *   stop_sequence is always null.
 *
 * Stream: chunks with no choices and no usage (Azure's prompt_filter_results
 *   chunk) produce nothing; message_start goes out before the first event
 *   that needs it, with the first non-empty chunk id. A [DONE] before any
 *   finish_reason is a cut stream (-1), not an end_turn. Events after [DONE]
 *   and comment-only events are ignored. A tool call whose index goes back
 *   to a closed one is malformed (Anthropic cannot reopen a block). */
#include "dialect.h"

#include "jscan.h"
#include "sse.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

/* Fills ERR: CODE, the field PFMT names, and "field: WHY" for people. Returns -1. */
__attribute__((format(printf, 4, 5))) static int fail(dialect_err_t *err, const char *code, const char *why,
                                                      const char *pfmt, ...)
{
    va_list ap;
    va_start(ap, pfmt);
    vsnprintf(err->param, sizeof(err->param), pfmt, ap);
    va_end(ap);
    err->code = code;
    if (err->param[0] != '\0')
        snprintf(err->message, sizeof(err->message), "%s: %s", err->param, why);
    else
        snprintf(err->message, sizeof(err->message), "%s", why);
    return -1;
}

static int oom(dialect_err_t *err)
{
    err->code = "out_of_memory";
    err->param[0] = '\0';
    snprintf(err->message, sizeof(err->message), "out of memory translating the request");
    return -1;
}

/* A path such as "messages[2].content[0]" for the fields under it. */
__attribute__((format(printf, 3, 4))) static void path(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

/* Adds ITEM (which may be NULL: a failed allocation) to object O or, with
 * K NULL, array O; ITEM is freed when it cannot be added. */
static int add(cJSON *o, const char *k, cJSON *item)
{
    if (item == NULL)
        return -1;
    if (!(k != NULL ? cJSON_AddItemToObject(o, k, item) : cJSON_AddItemToArray(o, item))) {
        cJSON_Delete(item);
        return -1;
    }
    return 0;
}

/* A new object added to PARENT under K (K NULL: PARENT is an array), owned
 * by PARENT; NULL when PARENT is NULL or memory ran out. */
static cJSON *obj_in(cJSON *parent, const char *k)
{
    cJSON *o;
    if (parent == NULL || (o = cJSON_CreateObject()) == NULL)
        return NULL;
    return add(parent, k, o) == 0 ? o : NULL;
}

static int add_str(cJSON *o, const char *k, const char *v)
{
    return add(o, k, cJSON_CreateString(v));
}

static int add_num(cJSON *o, const char *k, double v)
{
    return add(o, k, cJSON_CreateNumber(v));
}

/* A field that is missing or null is not given. */
static const cJSON *given(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return v == NULL || cJSON_IsNull(v) ? NULL : v;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Refuses the first given field of O (at AT) that is not in ALLOWED
 * (NULL-terminated). */
static int known_fields(const cJSON *o, const char *const *allowed, const char *at, dialect_err_t *err)
{
    for (const cJSON *f = o->child; f != NULL; f = f->next) {
        int ok = 0;
        for (size_t i = 0; !ok && allowed[i] != NULL; i++)
            ok = strcmp(f->string, allowed[i]) == 0;
        if (!ok && !cJSON_IsNull(f))
            return fail(err, "unsupported_parameter", "not supported with an OpenAI upstream", "%s.%s", at,
                        f->string);
    }
    return 0;
}

/* "msg_" + SRC with each byte outside [A-Za-z0-9_-] as '_', cut to fit CAP. */
static void message_id(const char *src, char *dst, size_t cap)
{
    size_t n = 0;
    const char *p = "msg_";
    while (*p != '\0' && n + 1 < cap)
        dst[n++] = *p++;
    for (; *src != '\0' && n + 1 < cap; src++) {
        char c = *src;
        int safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        dst[n++] = safe ? c : '_';
    }
    dst[n] = '\0';
}

/* Whether V is a JSON number holding a whole count in [LO, 2^53]. */
static int whole(const cJSON *v, double lo)
{
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= 9007199254740992.0 &&
           (double)(int64_t)v->valuedouble == v->valuedouble;
}

/* ------------------------------------------------------------------ request */

/* A text part for text block B (at AT). */
static int text_part(const cJSON *b, const char *at, cJSON **part, dialect_err_t *err)
{
    static const char *const fields[] = {"type", "text", "cache_control", NULL};
    const char *text = str_of(b, "text");
    if (known_fields(b, fields, at, err) < 0)
        return -1;
    if (text == NULL)
        return fail(err, "invalid_request", "a text block needs a string text", "%s.text", at);
    *part = cJSON_CreateObject();
    if (*part == NULL || add_str(*part, "type", "text") < 0 || add_str(*part, "text", text) < 0) {
        cJSON_Delete(*part);
        *part = NULL;
        return oom(err);
    }
    return 0;
}

/* An image_url part for image block B (at AT). */
static int image_part(const cJSON *b, const char *at, cJSON **part, dialect_err_t *err)
{
    static const char *const fields[] = {"type", "source", "cache_control", NULL};
    static const char *const b64_fields[] = {"type", "media_type", "data", NULL};
    static const char *const url_fields[] = {"type", "url", NULL};
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(b, "source");
    const char *stype = str_of(src, "type");
    char sat[96], *url = NULL;
    cJSON *iu;

    if (known_fields(b, fields, at, err) < 0)
        return -1;
    if (!cJSON_IsObject(src) || stype == NULL)
        return fail(err, "invalid_request", "an image block needs a source with a type", "%s.source", at);
    path(sat, sizeof(sat), "%s.source", at);
    if (strcmp(stype, "base64") == 0) {
        const char *mt = str_of(src, "media_type"), *data = str_of(src, "data");
        if (known_fields(src, b64_fields, sat, err) < 0)
            return -1;
        /* the media type goes into a data: URL, where ; , and spaces are syntax */
        if (mt == NULL || mt[0] == '\0' || strpbrk(mt, ";, \t\r\n") != NULL)
            return fail(err, "invalid_request", "needs a media type such as image/png", "%s.media_type", sat);
        if (data == NULL)
            return fail(err, "invalid_request", "needs the image's base64 data", "%s.data", sat);
        size_t n = 5 + strlen(mt) + 8 + strlen(data) + 1;
        url = malloc(n);
        if (url == NULL)
            return oom(err);
        snprintf(url, n, "data:%s;base64,%s", mt, data);
    } else if (strcmp(stype, "url") == 0) {
        const char *u = str_of(src, "url");
        if (known_fields(src, url_fields, sat, err) < 0)
            return -1;
        if (u == NULL)
            return fail(err, "invalid_request", "needs a string url", "%s.url", sat);
        url = strdup(u);
        if (url == NULL)
            return oom(err);
    } else {
        return fail(err, "unsupported_parameter", "only base64 and url image sources have an OpenAI equivalent",
                    "%s.type", sat);
    }
    *part = cJSON_CreateObject();
    int ok = *part != NULL && add_str(*part, "type", "image_url") == 0 && (iu = obj_in(*part, "image_url")) != NULL &&
             add_str(iu, "url", url) == 0;
    free(url);
    if (!ok) {
        cJSON_Delete(*part);
        *part = NULL;
        return oom(err);
    }
    return 0;
}

/* The OpenAI content for text parts PARTS: the one text as a string, or the
 * parts themselves (PARTS is consumed either way). */
static cJSON *text_content(cJSON *parts)
{
    cJSON *one = cJSON_GetArrayItem(parts, 0);
    if (cJSON_GetArraySize(parts) == 1 && strcmp(str_of(one, "type"), "text") == 0) {
        cJSON *s = cJSON_CreateString(str_of(one, "text"));
        cJSON_Delete(parts);
        return s;
    }
    return parts;
}

/* A "tool" message for tool_result block B (at AT), appended to MSGS. */
static int tool_message(const cJSON *b, const char *at, cJSON *msgs, dialect_err_t *err)
{
    static const char *const fields[] = {"type", "tool_use_id", "content", "is_error", "cache_control", NULL};
    const char *id = str_of(b, "tool_use_id");
    const cJSON *c = given(b, "content"), *ie = given(b, "is_error");
    cJSON *m, *content;
    char cat[96];

    if (known_fields(b, fields, at, err) < 0)
        return -1;
    if (id == NULL)
        return fail(err, "invalid_request", "a tool_result needs a string tool_use_id", "%s.tool_use_id", at);
    if (ie != NULL && !cJSON_IsBool(ie))
        return fail(err, "invalid_request", "must be true or false", "%s.is_error", at);
    if (c == NULL || cJSON_IsString(c)) {
        content = cJSON_CreateString(c != NULL ? c->valuestring : "");
    } else if (cJSON_IsArray(c)) {
        content = cJSON_CreateArray();
        if (content == NULL)
            return oom(err);
        int k = 0;
        for (const cJSON *ib = c->child; ib != NULL; ib = ib->next, k++) {
            const char *t = str_of(ib, "type");
            cJSON *part = NULL;
            path(cat, sizeof(cat), "%s.content[%d]", at, k);
            if (!cJSON_IsObject(ib) || t == NULL) {
                cJSON_Delete(content);
                return fail(err, "invalid_request", "a content block needs a type", "%s.type", cat);
            }
            if (strcmp(t, "text") != 0) {
                cJSON_Delete(content);
                return fail(err, "unsupported_parameter", "an OpenAI tool message holds only text", "%s.type", cat);
            }
            if (text_part(ib, cat, &part, err) < 0 || add(content, NULL, part) < 0) {
                cJSON_Delete(content);
                return part != NULL ? oom(err) : -1;
            }
        }
        if (cJSON_GetArraySize(content) == 0) {
            cJSON_Delete(content);
            content = cJSON_CreateString("");
        } else {
            content = text_content(content);
        }
    } else {
        return fail(err, "invalid_request", "must be a string or an array of blocks", "%s.content", at);
    }
    m = obj_in(msgs, NULL);
    if (m == NULL || add_str(m, "role", "tool") < 0 || add_str(m, "tool_call_id", id) < 0) {
        cJSON_Delete(content);
        return oom(err);
    }
    return add(m, "content", content) < 0 ? oom(err) : 0;
}

/* A tool call for tool_use block B (at AT), appended to CALLS. */
static int tool_call(const cJSON *b, const char *at, cJSON *calls, dialect_err_t *err)
{
    static const char *const fields[] = {"type", "id", "name", "input", "cache_control", NULL};
    const char *id = str_of(b, "id"), *name = str_of(b, "name");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(b, "input");
    cJSON *call, *fn;
    char *args;
    int ok;

    if (known_fields(b, fields, at, err) < 0)
        return -1;
    if (id == NULL)
        return fail(err, "invalid_request", "a tool_use needs a string id", "%s.id", at);
    if (name == NULL)
        return fail(err, "invalid_request", "a tool_use needs a string name", "%s.name", at);
    if (!cJSON_IsObject(input))
        return fail(err, "invalid_request", "a tool_use's input must be an object", "%s.input", at);
    if ((args = cJSON_PrintUnformatted(input)) == NULL)
        return oom(err);
    ok = (call = obj_in(calls, NULL)) != NULL && add_str(call, "id", id) == 0 &&
         add_str(call, "type", "function") == 0 && (fn = obj_in(call, "function")) != NULL &&
         add_str(fn, "name", name) == 0 && add_str(fn, "arguments", args) == 0;
    free(args);
    return ok ? 0 : oom(err);
}

/* Why a block type no mapping takes is refused. */
static int block_refused(const char *type, const char *at, dialect_err_t *err)
{
    if (strcmp(type, "document") == 0)
        return fail(err, "unsupported_parameter", "document blocks have no OpenAI Chat Completions equivalent",
                    "%s.type", at);
    return fail(err, "unsupported_parameter", "this block type has no OpenAI Chat Completions equivalent", "%s.type",
                at);
}

/* User message M (at AT): its tool results as tool messages, then the rest. */
static int user_message(const cJSON *m, const char *at, cJSON *msgs, dialect_err_t *err)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    cJSON *parts, *um;
    char bat[96];
    int j = 0;

    if (cJSON_IsString(c)) {
        um = obj_in(msgs, NULL);
        return um == NULL || add_str(um, "role", "user") < 0 || add_str(um, "content", c->valuestring) < 0 ? oom(err)
                                                                                                            : 0;
    }
    if (!cJSON_IsArray(c) || cJSON_GetArraySize(c) == 0)
        return fail(err, "invalid_request", "must be a string or a non-empty array of blocks", "%s.content", at);
    if ((parts = cJSON_CreateArray()) == NULL)
        return oom(err);
    for (const cJSON *b = c->child; b != NULL; b = b->next, j++) {
        const char *t = str_of(b, "type");
        cJSON *part = NULL;
        int rc;
        path(bat, sizeof(bat), "%s.content[%d]", at, j);
        if (!cJSON_IsObject(b) || t == NULL)
            rc = fail(err, "invalid_request", "a content block needs a type", "%s.type", bat);
        else if (strcmp(t, "text") == 0)
            rc = text_part(b, bat, &part, err);
        else if (strcmp(t, "image") == 0)
            rc = image_part(b, bat, &part, err);
        else if (strcmp(t, "tool_result") == 0)
            rc = tool_message(b, bat, msgs, err);
        else if (strcmp(t, "tool_use") == 0)
            rc = fail(err, "invalid_request", "tool_use blocks belong in assistant messages", "%s.type", bat);
        else
            rc = block_refused(t, bat, err);
        if (rc == 0 && part != NULL && add(parts, NULL, part) < 0)
            rc = oom(err);
        if (rc < 0) {
            cJSON_Delete(parts);
            return -1;
        }
    }
    if (cJSON_GetArraySize(parts) == 0) {      /* only tool results */
        cJSON_Delete(parts);
        return 0;
    }
    um = obj_in(msgs, NULL);
    if (um == NULL || add_str(um, "role", "user") < 0) {
        cJSON_Delete(parts);
        return oom(err);
    }
    return add(um, "content", text_content(parts)) < 0 ? oom(err) : 0;
}

/* Assistant message M (at AT): its text as content, its tool_use blocks as tool_calls. */
static int assistant_message(const cJSON *m, const char *at, cJSON *msgs, dialect_err_t *err)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    cJSON *am, *parts = NULL, *calls = NULL;
    char bat[96];
    int j = 0, rc = 0;

    if ((am = obj_in(msgs, NULL)) == NULL || add_str(am, "role", "assistant") < 0)
        return oom(err);
    if (cJSON_IsString(c))
        return add_str(am, "content", c->valuestring) < 0 ? oom(err) : 0;
    if (!cJSON_IsArray(c))
        return fail(err, "invalid_request", "must be a string or an array of blocks", "%s.content", at);
    if ((parts = cJSON_CreateArray()) == NULL || (calls = cJSON_CreateArray()) == NULL) {
        cJSON_Delete(parts);
        return oom(err);
    }
    for (const cJSON *b = c->child; b != NULL && rc == 0; b = b->next, j++) {
        const char *t = str_of(b, "type");
        cJSON *part = NULL;
        path(bat, sizeof(bat), "%s.content[%d]", at, j);
        if (!cJSON_IsObject(b) || t == NULL)
            rc = fail(err, "invalid_request", "a content block needs a type", "%s.type", bat);
        else if (strcmp(t, "text") == 0)
            rc = text_part(b, bat, &part, err);
        else if (strcmp(t, "tool_use") == 0)
            rc = tool_call(b, bat, calls, err);
        else if (strcmp(t, "tool_result") == 0)
            rc = fail(err, "invalid_request", "tool_result blocks belong in user messages", "%s.type", bat);
        else if (strcmp(t, "image") == 0)
            rc = fail(err, "unsupported_parameter", "an OpenAI assistant message holds no images", "%s.type", bat);
        else
            rc = block_refused(t, bat, err);
        if (rc == 0 && part != NULL && add(parts, NULL, part) < 0)
            rc = oom(err);
    }
    if (rc < 0) {
        cJSON_Delete(parts);
        cJSON_Delete(calls);
        return -1;
    }
    cJSON *content;
    if (cJSON_GetArraySize(parts) > 0) {
        content = text_content(parts);
    } else {
        cJSON_Delete(parts);
        /* OpenAI: content may be null only when there are tool calls */
        content = cJSON_GetArraySize(calls) > 0 ? cJSON_CreateNull() : cJSON_CreateString("");
    }
    if (add(am, "content", content) < 0) {
        cJSON_Delete(calls);
        return oom(err);
    }
    if (cJSON_GetArraySize(calls) == 0) {
        cJSON_Delete(calls);
        return 0;
    }
    return add(am, "tool_calls", calls) < 0 ? oom(err) : 0;
}

/* The system prompt SYS as a first system message in MSGS. */
static int system_message(const cJSON *sys, cJSON *msgs, dialect_err_t *err)
{
    cJSON *m, *content;
    char bat[96];
    int j = 0;

    if (cJSON_IsString(sys)) {
        if (sys->valuestring[0] == '\0')
            return 0;
        content = cJSON_CreateString(sys->valuestring);
    } else if (cJSON_IsArray(sys)) {
        if (cJSON_GetArraySize(sys) == 0)
            return 0;
        if ((content = cJSON_CreateArray()) == NULL)
            return oom(err);
        for (const cJSON *b = sys->child; b != NULL; b = b->next, j++) {
            const char *t = str_of(b, "type");
            cJSON *part = NULL;
            int rc;
            path(bat, sizeof(bat), "system[%d]", j);
            if (!cJSON_IsObject(b) || t == NULL || strcmp(t, "text") != 0)
                rc = fail(err, "invalid_request", "the system prompt holds text blocks only", "%s.type", bat);
            else
                rc = text_part(b, bat, &part, err);
            if (rc == 0 && add(content, NULL, part) < 0)
                rc = oom(err);
            if (rc < 0) {
                cJSON_Delete(content);
                return -1;
            }
        }
        content = text_content(content);
    } else {
        return fail(err, "invalid_request", "must be a string or an array of text blocks", "system");
    }
    m = obj_in(msgs, NULL);
    if (m == NULL || add_str(m, "role", "system") < 0) {
        cJSON_Delete(content);
        return oom(err);
    }
    return add(m, "content", content) < 0 ? oom(err) : 0;
}

/* tools -> OpenAI function tools in OUT; *N gets how many. */
static int tools_field(const cJSON *tools, cJSON *out, int *n, dialect_err_t *err)
{
    static const char *const fields[] = {
        "type", "name", "description", "input_schema", "strict", "cache_control", NULL,
    };
    cJSON *arr;
    char at[64];
    int i = 0;

    *n = 0;
    if (!cJSON_IsArray(tools))
        return fail(err, "invalid_request", "must be an array of tools", "tools");
    if (cJSON_GetArraySize(tools) == 0)
        return 0;                                  /* OpenAI refuses an empty tools array */
    if ((arr = cJSON_CreateArray()) == NULL || add(out, "tools", arr) < 0)
        return oom(err);
    for (const cJSON *t = tools->child; t != NULL; t = t->next, i++) {
        const char *type = str_of(t, "type"), *name = str_of(t, "name");
        const cJSON *desc = given(t, "description"), *schema = cJSON_GetObjectItemCaseSensitive(t, "input_schema");
        const cJSON *strict = given(t, "strict");
        cJSON *tool, *fn;
        path(at, sizeof(at), "tools[%d]", i);
        if (!cJSON_IsObject(t))
            return fail(err, "invalid_request", "a tool must be an object", "%s", at);
        if (given(t, "type") != NULL && (type == NULL || strcmp(type, "custom") != 0))
            return fail(err, "unsupported_parameter",
                        "server tools (computer use, web search, ...) have no OpenAI Chat Completions equivalent",
                        "%s.type", at);
        if (known_fields(t, fields, at, err) < 0)
            return -1;
        if (name == NULL)
            return fail(err, "invalid_request", "a tool needs a string name", "%s.name", at);
        if (!cJSON_IsObject(schema))
            return fail(err, "invalid_request", "a tool needs an input_schema object", "%s.input_schema", at);
        if (desc != NULL && !cJSON_IsString(desc))
            return fail(err, "invalid_request", "must be a string", "%s.description", at);
        if (strict != NULL && !cJSON_IsBool(strict))
            return fail(err, "invalid_request", "must be true or false", "%s.strict", at);
        if ((tool = obj_in(arr, NULL)) == NULL || add_str(tool, "type", "function") < 0 ||
            (fn = obj_in(tool, "function")) == NULL || add_str(fn, "name", name) < 0 ||
            (desc != NULL && add_str(fn, "description", desc->valuestring) < 0) ||
            add(fn, "parameters", cJSON_Duplicate(schema, 1)) < 0 ||
            (strict != NULL && add(fn, "strict", cJSON_CreateBool(cJSON_IsTrue(strict))) < 0))
            return oom(err);
    }
    *n = i;
    return 0;
}

/* tool_choice TC -> tool_choice (and parallel_tool_calls) in OUT, given NTOOLS tools. */
static int tool_choice_field(const cJSON *tc, int ntools, cJSON *out, dialect_err_t *err)
{
    static const char *const fields[] = {"type", "name", "disable_parallel_tool_use", NULL};
    const char *type = str_of(tc, "type");
    const cJSON *dp = given(tc, "disable_parallel_tool_use");
    cJSON *choice;

    if (!cJSON_IsObject(tc) || type == NULL)
        return fail(err, "invalid_request", "must be an object with a type", "tool_choice");
    if (known_fields(tc, fields, "tool_choice", err) < 0)
        return -1;
    if (dp != NULL && !cJSON_IsBool(dp))
        return fail(err, "invalid_request", "must be true or false", "tool_choice.disable_parallel_tool_use");
    if (strcmp(type, "auto") == 0 || strcmp(type, "none") == 0) {
        if (ntools == 0)
            return 0;                              /* the same as no tool_choice */
        choice = cJSON_CreateString(type);
    } else if (strcmp(type, "any") == 0 || strcmp(type, "tool") == 0) {
        if (ntools == 0)
            return fail(err, "invalid_request", "asks for a tool but there are no tools", "tool_choice");
        if (strcmp(type, "any") == 0) {
            choice = cJSON_CreateString("required");
        } else {
            const char *name = str_of(tc, "name");
            cJSON *fn;
            if (name == NULL)
                return fail(err, "invalid_request", "a tool choice of type tool needs a name", "tool_choice.name");
            choice = cJSON_CreateObject();
            if (choice == NULL || add_str(choice, "type", "function") < 0 ||
                (fn = obj_in(choice, "function")) == NULL || add_str(fn, "name", name) < 0) {
                cJSON_Delete(choice);
                return oom(err);
            }
        }
    } else {
        return fail(err, "invalid_request", "must be auto, any, tool or none", "tool_choice.type");
    }
    if (add(out, "tool_choice", choice) < 0)
        return oom(err);
    if (dp != NULL && cJSON_IsTrue(dp) && add(out, "parallel_tool_calls", cJSON_CreateFalse()) < 0)
        return oom(err);
    return 0;
}

/* Top-level fields this file maps or drops; every other given field is refused. */
static const char *const top_fields[] = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_p", "tools", "tool_choice", "cache_control", "thinking", "service_tier", NULL,
};

/* Refused fields with a reason more useful than "unknown". */
static const struct {
    const char *name, *why;
} refused[] = {
    {"top_k", "OpenAI Chat Completions has no top_k"},
    {"container", "code-execution containers have no OpenAI Chat Completions equivalent"},
    {"mcp_servers", "MCP servers have no OpenAI Chat Completions equivalent"},
};

static int check_top_fields(const cJSON *root, dialect_err_t *err)
{
    for (const cJSON *f = root->child; f != NULL; f = f->next) {
        int ok = 0;
        if (cJSON_IsNull(f))
            continue;
        for (size_t i = 0; !ok && top_fields[i] != NULL; i++)
            ok = strcmp(f->string, top_fields[i]) == 0;
        if (ok)
            continue;
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
            if (strcmp(f->string, refused[i].name) == 0)
                return fail(err, "unsupported_parameter", refused[i].why, "%s", f->string);
        return fail(err, "unsupported_parameter", "not supported with an OpenAI upstream", "%s", f->string);
    }
    return 0;
}

/* The scalar and small fields, in ROOT, onto OUT. */
static int simple_fields(const cJSON *root, cJSON *out, dialect_req_info_t *info, dialect_err_t *err)
{
    const cJSON *v;

    if ((v = given(root, "thinking")) != NULL) {
        const char *t = str_of(v, "type");
        if (t == NULL || strcmp(t, "disabled") != 0)
            return fail(err, "unsupported_parameter", "extended thinking has no OpenAI Chat Completions equivalent",
                        "thinking");
    }
    if ((v = given(root, "service_tier")) != NULL && !(cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0))
        return fail(err, "unsupported_parameter", "only auto has an OpenAI equivalent", "service_tier");
    if ((v = given(root, "stop_sequences")) != NULL) {
        if (!cJSON_IsArray(v))
            return fail(err, "invalid_request", "must be an array of strings", "stop_sequences");
        for (const cJSON *s = v->child; s != NULL; s = s->next)
            if (!cJSON_IsString(s))
                return fail(err, "invalid_request", "must be an array of strings", "stop_sequences");
        if (cJSON_GetArraySize(v) > 0 && add(out, "stop", cJSON_Duplicate(v, 1)) < 0)
            return oom(err);
    }
    static const char *const nums[] = {"temperature", "top_p"};
    for (size_t i = 0; i < 2; i++)
        if ((v = given(root, nums[i])) != NULL) {
            if (!cJSON_IsNumber(v))
                return fail(err, "invalid_request", "must be a number", "%s", nums[i]);
            if (add_num(out, nums[i], v->valuedouble) < 0)
                return oom(err);
        }
    if ((v = given(root, "metadata")) != NULL) {
        static const char *const fields[] = {"user_id", NULL};
        const cJSON *u = given(v, "user_id");
        if (!cJSON_IsObject(v))
            return fail(err, "invalid_request", "must be an object", "metadata");
        if (known_fields(v, fields, "metadata", err) < 0)
            return -1;
        if (u != NULL && !cJSON_IsString(u))
            return fail(err, "invalid_request", "must be a string", "metadata.user_id");
        if (u != NULL && add_str(out, "user", u->valuestring) < 0)
            return oom(err);
    }
    if ((v = given(root, "stream")) != NULL) {
        if (!cJSON_IsBool(v))
            return fail(err, "invalid_request", "must be true or false", "stream");
        if (cJSON_IsTrue(v)) {
            cJSON *so;
            info->stream = 1;
            if (add(out, "stream", cJSON_CreateTrue()) < 0 || (so = obj_in(out, "stream_options")) == NULL ||
                add(so, "include_usage", cJSON_CreateTrue()) < 0)
                return oom(err);
        }
    }
    return 0;
}

static int translate_request(const cJSON *root, const dialect_req_opts_t *o, cJSON *out, dialect_req_info_t *info,
                             dialect_err_t *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    const cJSON *v;
    cJSON *omsgs;
    char at[64];
    int i = 0, ntools = 0;

    if (check_top_fields(root, err) < 0)
        return -1;
    if (!cJSON_IsString(model))
        return fail(err, "invalid_request", "a Messages request needs a string model", "model");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return fail(err, "invalid_request", "a Messages request needs a non-empty array of messages", "messages");
    if (!whole(mt, 1))
        return fail(err, "invalid_request", "a Messages request needs max_tokens, an integer of at least 1",
                    "max_tokens");
    if (add_str(out, "model", o != NULL && o->model != NULL ? o->model : model->valuestring) < 0 ||
        (omsgs = cJSON_CreateArray()) == NULL || add(out, "messages", omsgs) < 0)
        return oom(err);
    if ((v = given(root, "system")) != NULL && system_message(v, omsgs, err) < 0)
        return -1;
    for (const cJSON *m = msgs->child; m != NULL; m = m->next, i++) {
        const char *role = str_of(m, "role");
        static const char *const fields[] = {"role", "content", NULL};
        path(at, sizeof(at), "messages[%d]", i);
        if (!cJSON_IsObject(m))
            return fail(err, "invalid_request", "a message must be an object", "%s", at);
        if (known_fields(m, fields, at, err) < 0)
            return -1;
        if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
            return fail(err, "invalid_request", "the role must be user or assistant", "%s.role", at);
        if (strcmp(role, "user") == 0) {
            if (user_message(m, at, omsgs, err) < 0)
                return -1;
        } else if (m->next == NULL) {
            return fail(err, "unsupported_parameter",
                        "a final assistant message (a prefill Anthropic continues) has no OpenAI equivalent",
                        "%s.role", at);
        } else if (assistant_message(m, at, omsgs, err) < 0) {
            return -1;
        }
    }
    if (add_num(out, "max_tokens", mt->valuedouble) < 0)
        return oom(err);
    if (simple_fields(root, out, info, err) < 0)
        return -1;
    if ((v = given(root, "tools")) != NULL && tools_field(v, out, &ntools, err) < 0)
        return -1;
    if ((v = given(root, "tool_choice")) != NULL && tool_choice_field(v, ntools, out, err) < 0)
        return -1;
    return 0;
}

static int do_request(const char *body, size_t len, const dialect_req_opts_t *o, struct evbuffer *out,
                      dialect_req_info_t *info, dialect_err_t *err)
{
    int esc = dialect_bad_escape(body, len);
    cJSON *root = esc ? NULL : cJSON_ParseWithLength(body, len), *obody;
    char *text = NULL;
    int rc = -1;

    info->stream = 0;
    info->include_usage = 0;
    /* cJSON would cut a string at \u0000, and print a lone surrogate as bytes that are no UTF-8 */
    if (esc == DIALECT_ESC_NUL)
        return fail(err, "unsupported_parameter", "a string holds \\u0000, which cannot be translated", "%s", "");
    if (esc == DIALECT_ESC_SURROGATE)
        return fail(err, "invalid_request", "a string holds an unpaired UTF-16 surrogate escape", "%s", "");
    if (!cJSON_IsObject(root)) {
        jscan_t j;
        int parsed = root != NULL;
        cJSON_Delete(root);
        /* cJSON fails on a valid body only when memory runs out */
        if (!parsed && jscan_body(body, len, &j) == JSCAN_OK)
            return oom(err);
        return fail(err, "invalid_request", "the body must be a JSON object", "%s", "");
    }
    if ((obody = cJSON_CreateObject()) == NULL)
        rc = oom(err);
    else if (translate_request(root, o, obody, info, err) == 0)
        rc = (text = cJSON_PrintUnformatted(obody)) == NULL || evbuffer_add(out, text, strlen(text)) < 0 ? oom(err) : 0;
    free(text);
    cJSON_Delete(obody);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------------- answer */

/* The Anthropic stop_reason for OpenAI's finish_reason FR, or NULL. */
static const char *stop_reason(const char *fr, int has_tools)
{
    if (fr == NULL)
        return NULL;
    if (strcmp(fr, "stop") == 0)
        return has_tools ? "tool_use" : "end_turn";
    if (strcmp(fr, "length") == 0)
        return "max_tokens";
    if (strcmp(fr, "tool_calls") == 0 || strcmp(fr, "function_call") == 0)
        return "tool_use";
    if (strcmp(fr, "content_filter") == 0)
        return "refusal";
    return NULL;
}

/* Counts from OpenAI usage object U (NULL: none) into *D, each -1 when absent. */
static void read_usage(const cJSON *u, dialect_usage_t *d)
{
    const cJSON *v;
    if (!cJSON_IsObject(u))
        return;
    if (whole(v = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens"), 0))
        d->prompt = (int64_t)v->valuedouble;
    if (whole(v = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens"), 0))
        d->completion = (int64_t)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"), "cached_tokens");
    if (whole(v, 0))
        d->cached = (int64_t)v->valuedouble;
}

/* Input tokens as Anthropic counts them: those not read from the cache. */
static int64_t fresh_input(const dialect_usage_t *d)
{
    if (d->prompt < 0)
        return 0;
    return d->cached > 0 && d->cached <= d->prompt ? d->prompt - d->cached : d->prompt;
}

/* Whether chunk or completion OBJ names itself WANT (or nothing: some
 * servers, Azure's first chunk, leave it out or empty). */
static int object_is(const cJSON *root, const char *want)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "object");
    return o == NULL || cJSON_IsNull(o) ||
           (cJSON_IsString(o) && (o->valuestring[0] == '\0' || strcmp(o->valuestring, want) == 0));
}

/* The tool_use block for OpenAI tool call TC, or NULL when it is not one. */
static cJSON *tool_use_block(const cJSON *tc)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const char *id = str_of(tc, "id"), *type = str_of(tc, "type"), *name = str_of(fn, "name");
    const char *args = str_of(fn, "arguments");
    cJSON *b, *input;

    if (id == NULL || name == NULL || args == NULL || (type != NULL && strcmp(type, "function") != 0))
        return NULL;
    input = args[strspn(args, " \t\r\n")] == '\0' ? cJSON_CreateObject() : dialect_parse(args, strlen(args));
    if (!cJSON_IsObject(input)) {
        cJSON_Delete(input);
        return NULL;
    }
    b = cJSON_CreateObject();
    if (b == NULL || add_str(b, "type", "tool_use") < 0 || add_str(b, "id", id) < 0 || add_str(b, "name", name) < 0) {
        cJSON_Delete(input);
        cJSON_Delete(b);
        return NULL;
    }
    if (add(b, "input", input) < 0) {   /* add freed INPUT */
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

static cJSON *translate_answer(const cJSON *root, const char *model, dialect_usage_t *usage)
{
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    const cJSON *refusal = given(msg, "refusal");
    const cJSON *calls = given(msg, "tool_calls");
    const char *id = str_of(root, "id"), *text = NULL, *stop;
    char mid[128];
    cJSON *a, *blocks = NULL, *u;

    if (!cJSON_IsObject(root) || !object_is(root, "chat.completion") || id == NULL || !cJSON_IsObject(msg))
        return NULL;
    if (content != NULL && !cJSON_IsNull(content) && !cJSON_IsString(content))
        return NULL;
    if ((refusal != NULL && !cJSON_IsString(refusal)) || (calls != NULL && !cJSON_IsArray(calls)))
        return NULL;
    stop = stop_reason(str_of(ch, "finish_reason"), cJSON_GetArraySize(calls) > 0);
    if (stop == NULL)
        return NULL;
    if (cJSON_IsString(content) && content->valuestring[0] != '\0') {
        text = content->valuestring;
    } else if (refusal != NULL && refusal->valuestring[0] != '\0') {
        text = refusal->valuestring;
        stop = "refusal";
    }
    read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), usage);
    message_id(id, mid, sizeof(mid));
    if ((a = cJSON_CreateObject()) == NULL)
        return NULL;
    int ok = add_str(a, "id", mid) == 0 && add_str(a, "type", "message") == 0 &&
             add_str(a, "role", "assistant") == 0 && add_str(a, "model", model != NULL ? model : "") == 0 &&
             add(a, "content", blocks = cJSON_CreateArray()) == 0;
    if (ok && text != NULL) {
        cJSON *tb = obj_in(blocks, NULL);
        ok = tb != NULL && add_str(tb, "type", "text") == 0 && add_str(tb, "text", text) == 0;
    }
    for (const cJSON *tc = calls != NULL ? calls->child : NULL; ok && tc != NULL; tc = tc->next)
        ok = add(blocks, NULL, tool_use_block(tc)) == 0;
    ok = ok && add_str(a, "stop_reason", stop) == 0 && add(a, "stop_sequence", cJSON_CreateNull()) == 0 &&
         (u = obj_in(a, "usage")) != NULL && add_num(u, "input_tokens", (double)fresh_input(usage)) == 0 &&
         add_num(u, "output_tokens", (double)(usage->completion > 0 ? usage->completion : 0)) == 0 &&
         add_num(u, "cache_read_input_tokens", (double)(usage->cached > 0 ? usage->cached : 0)) == 0;
    if (!ok) {
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

static int do_answer(const char *body, size_t len, const char *model, struct evbuffer *out, dialect_usage_t *usage)
{
    dialect_usage_t d = {-1, -1, -1};
    cJSON *root = dialect_parse(body, len), *a = translate_answer(root, model, &d);
    char *text = a != NULL ? cJSON_PrintUnformatted(a) : NULL;
    int rc = text != NULL && evbuffer_add(out, text, strlen(text)) == 0 ? 0 : -1;

    if (rc == 0 && usage != NULL)
        *usage = d;
    free(text);
    cJSON_Delete(a);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------------- stream */

enum { OPEN_NONE, OPEN_TEXT, OPEN_TOOL };

struct dialect_stream {
    char *model;           /* the client's model (owned) */
    char id[128];          /* "msg_..." once a chunk named it; "" before */
    int started;           /* message_start sent */
    int open;              /* OPEN_*: the block being written */
    int next_index;        /* the Anthropic index of the next block */
    long tool;             /* the OpenAI index of the last tool call begun, -1 before */
    int refused;           /* the model refused (delta.refusal) */
    const char *stop;      /* the stop_reason once a finish_reason came */
    dialect_usage_t usage; /* counts so far, -1 unknown */
    int done;              /* [DONE] seen */
};

static dialect_stream_t *stream_new(const char *model, const dialect_req_info_t *info)
{
    dialect_stream_t *s = calloc(1, sizeof(*s));
    (void)info;
    if (s == NULL || (s->model = strdup(model != NULL ? model : "")) == NULL) {
        free(s);
        return NULL;
    }
    s->tool = -1;
    s->usage.prompt = s->usage.completion = s->usage.cached = -1;
    return s;
}

static void stream_free(dialect_stream_t *s)
{
    if (s == NULL)
        return;
    free(s->model);
    free(s);
}

/* Appends event NAME with data D (an object, consumed; NULL: out of memory),
 * its "type" field first as Anthropic writes it. */
static int emit(struct evbuffer *b, const char *name, cJSON *d)
{
    char *t = d != NULL ? cJSON_PrintUnformatted(d) : NULL;
    int rc = t != NULL && evbuffer_add_printf(b, "event: %s\ndata: %s\n\n", name, t) >= 0 ? 0 : -1;
    free(t);
    cJSON_Delete(d);
    return rc;
}

/* A new event object of TYPE, with "index" when INDEX >= 0. */
static cJSON *event(const char *type, int index)
{
    cJSON *e = cJSON_CreateObject();
    if (e == NULL || add_str(e, "type", type) < 0 || (index >= 0 && add_num(e, "index", index) < 0)) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

static int message_start(dialect_stream_t *s, struct evbuffer *b)
{
    cJSON *e, *m, *u;
    if (s->started)
        return 0;
    if (s->id[0] == '\0')
        return -1;                 /* no chunk named the message */
    e = event("message_start", -1);
    int ok = (m = obj_in(e, "message")) != NULL && add_str(m, "id", s->id) == 0 &&
             add_str(m, "type", "message") == 0 && add_str(m, "role", "assistant") == 0 &&
             add_str(m, "model", s->model) == 0 && add(m, "content", cJSON_CreateArray()) == 0 &&
             add(m, "stop_reason", cJSON_CreateNull()) == 0 && add(m, "stop_sequence", cJSON_CreateNull()) == 0 &&
             (u = obj_in(m, "usage")) != NULL && add_num(u, "input_tokens", (double)fresh_input(&s->usage)) == 0 &&
             add_num(u, "output_tokens", 0) == 0;
    if (!ok) {
        cJSON_Delete(e);
        return -1;
    }
    s->started = 1;
    return emit(b, "message_start", e);
}

static int close_block(dialect_stream_t *s, struct evbuffer *b)
{
    if (s->open == OPEN_NONE)
        return 0;
    s->open = OPEN_NONE;
    return emit(b, "content_block_stop", event("content_block_stop", s->next_index++));
}

/* A content_block_delta of DTYPE carrying KEY: VALUE for the open block. */
static int block_delta(dialect_stream_t *s, struct evbuffer *b, const char *dtype, const char *key, const char *value)
{
    cJSON *e = event("content_block_delta", s->next_index), *d;
    if ((d = obj_in(e, "delta")) == NULL || add_str(d, "type", dtype) < 0 || add_str(d, key, value) < 0) {
        cJSON_Delete(e);
        return -1;
    }
    return emit(b, "content_block_delta", e);
}

static int text_delta(dialect_stream_t *s, struct evbuffer *b, const char *text)
{
    if (s->open != OPEN_TEXT) {
        cJSON *e, *cb;
        if (close_block(s, b) < 0)
            return -1;
        e = event("content_block_start", s->next_index);
        if ((cb = obj_in(e, "content_block")) == NULL || add_str(cb, "type", "text") < 0 ||
            add_str(cb, "text", "") < 0) {
            cJSON_Delete(e);
            return -1;
        }
        if (emit(b, "content_block_start", e) < 0)
            return -1;
        s->open = OPEN_TEXT;
    }
    return block_delta(s, b, "text_delta", "text", text);
}

/* One element TC of a chunk's delta.tool_calls. */
static int tool_delta(dialect_stream_t *s, struct evbuffer *b, const cJSON *tc)
{
    const cJSON *ix = cJSON_GetObjectItemCaseSensitive(tc, "index");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const char *id = str_of(tc, "id"), *args = str_of(fn, "arguments");
    long index;

    if (!cJSON_IsObject(tc) || (ix != NULL && !whole(ix, 0)) || (fn != NULL && !cJSON_IsObject(fn)))
        return -1;
    /* without an index (some servers), a call with an id is a new one */
    index = ix != NULL ? (long)ix->valuedouble : id != NULL && id[0] != '\0' ? s->tool + 1 : s->tool;
    if (index < s->tool || index < 0)
        return -1;                 /* back to a closed block */
    if (index > s->tool || s->open != OPEN_TOOL) {
        const char *name = str_of(fn, "name");
        cJSON *e, *cb;
        if (index == s->tool || id == NULL || id[0] == '\0' || name == NULL || name[0] == '\0')
            return -1;             /* a call's first piece names it */
        if (close_block(s, b) < 0)
            return -1;
        e = event("content_block_start", s->next_index);
        if ((cb = obj_in(e, "content_block")) == NULL || add_str(cb, "type", "tool_use") < 0 ||
            add_str(cb, "id", id) < 0 || add_str(cb, "name", name) < 0 || obj_in(cb, "input") == NULL) {
            cJSON_Delete(e);
            return -1;
        }
        if (emit(b, "content_block_start", e) < 0)
            return -1;
        s->open = OPEN_TOOL;
        s->tool = index;
    }
    if (args != NULL && args[0] != '\0')
        return block_delta(s, b, "input_json_delta", "partial_json", args);
    return 0;
}

/* The end: close what is open, message_delta with the stop reason and usage, message_stop. */
static int finish(dialect_stream_t *s, struct evbuffer *b)
{
    cJSON *e, *d, *u;
    if (s->stop == NULL || message_start(s, b) < 0 || close_block(s, b) < 0)
        return -1;                 /* no finish_reason: the stream was cut */
    e = event("message_delta", -1);
    int ok = (d = obj_in(e, "delta")) != NULL &&
             add_str(d, "stop_reason", s->refused ? "refusal" : s->stop) == 0 &&
             add(d, "stop_sequence", cJSON_CreateNull()) == 0 && (u = obj_in(e, "usage")) != NULL &&
             (s->usage.prompt < 0 || add_num(u, "input_tokens", (double)fresh_input(&s->usage)) == 0) &&
             (s->usage.cached < 0 || add_num(u, "cache_read_input_tokens", (double)s->usage.cached) == 0) &&
             add_num(u, "output_tokens", (double)(s->usage.completion > 0 ? s->usage.completion : 0)) == 0;
    if (!ok) {
        cJSON_Delete(e);
        return -1;
    }
    if (emit(b, "message_delta", e) < 0 || emit(b, "message_stop", event("message_stop", -1)) < 0)
        return -1;
    s->done = 1;
    return 1;
}

/* One parsed chunk ROOT. */
static int chunk(dialect_stream_t *s, const cJSON *root, struct evbuffer *b)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    const cJSON *usage = given(root, "usage");
    const char *id = str_of(root, "id");

    if (!cJSON_IsObject(root) || cJSON_GetObjectItemCaseSensitive(root, "error") != NULL ||
        !object_is(root, "chat.completion.chunk") || (choices != NULL && !cJSON_IsArray(choices)) ||
        (usage != NULL && !cJSON_IsObject(usage)) || (choices == NULL && usage == NULL))
        return -1;
    if (s->id[0] == '\0' && id != NULL && id[0] != '\0')
        message_id(id, s->id, sizeof(s->id));
    read_usage(usage, &s->usage);
    for (const cJSON *ch = choices != NULL ? choices->child : NULL; ch != NULL; ch = ch->next) {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(ch, "index");
        const cJSON *delta = given(ch, "delta"), *calls = given(delta, "tool_calls"), *fr = given(ch, "finish_reason");
        const char *text = str_of(delta, "content"), *refusal = str_of(delta, "refusal");

        if (!cJSON_IsObject(ch) || (ix != NULL && !(cJSON_IsNumber(ix) && ix->valuedouble == 0)) ||
            (delta != NULL && !cJSON_IsObject(delta)) || (calls != NULL && !cJSON_IsArray(calls)) ||
            (fr != NULL && !cJSON_IsString(fr)))
            return -1;             /* one choice only: turnout never asks for n */
        if (message_start(s, b) < 0)
            return -1;
        if (text != NULL && text[0] != '\0' && text_delta(s, b, text) < 0)
            return -1;
        if (refusal != NULL && refusal[0] != '\0') {
            s->refused = 1;
            if (text_delta(s, b, refusal) < 0)
                return -1;
        }
        for (const cJSON *tc = calls != NULL ? calls->child : NULL; tc != NULL; tc = tc->next)
            if (tool_delta(s, b, tc) < 0)
                return -1;
        if (fr != NULL) {
            if ((s->stop = stop_reason(fr->valuestring, s->tool >= 0)) == NULL || close_block(s, b) < 0)
                return -1;
        }
    }
    return 0;
}

static int stream_event(dialect_stream_t *s, const char *ev, size_t len, struct evbuffer *out, dialect_usage_t *usage)
{
    dialect_stream_t saved = *s;
    struct evbuffer *b;
    sse_fields_t f;
    char *data;
    long n;
    int rc;

    if (s->done)
        return 0;                  /* nothing follows the terminator */
    if ((data = malloc(len + 1)) == NULL)
        return -1;
    n = sse_event(ev, len, &f, data, len + 1);
    if (n == -2) {                 /* a comment (keep-alive) */
        free(data);
        return 0;
    }
    if (n < 0 || (f.event != NULL && f.event_len == 5 && memcmp(f.event, "error", 5) == 0) ||
        (b = evbuffer_new()) == NULL) {
        free(data);
        return -1;
    }
    if (n == 6 && memcmp(f.data, "[DONE]", 6) == 0) {
        rc = finish(s, b);
    } else {
        cJSON *root = dialect_parse(f.data, (size_t)n);
        rc = root != NULL ? chunk(s, root, b) : -1;
        cJSON_Delete(root);
    }
    free(data);
    if (rc >= 0 && evbuffer_add_buffer(out, b) < 0)
        rc = -1;
    evbuffer_free(b);
    if (rc < 0) {
        *s = saved;                /* as if the event never came */
        return -1;
    }
    if (usage != NULL) {
        if (s->usage.prompt >= 0)
            usage->prompt = s->usage.prompt;
        if (s->usage.completion >= 0)
            usage->completion = s->usage.completion;
        if (s->usage.cached >= 0)
            usage->cached = s->usage.cached;
    }
    return rc;
}

/* -------------------------------------------------------------------- error */

static void do_error(int status, const char *body, size_t len, struct evbuffer *out)
{
    cJSON *root = body != NULL ? cJSON_ParseWithLength(body, len) : NULL, *e, *inner;
    const cJSON *oe = cJSON_GetObjectItemCaseSensitive(root, "error");
    const char *msg = cJSON_IsString(oe) ? oe->valuestring : str_of(oe, "message");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(oe, "code");
    char raw[1024], clean[1200], *text = NULL;

    if (msg != NULL && msg[0] != '\0' && cJSON_IsString(code) && code->valuestring[0] != '\0')
        snprintf(raw, sizeof(raw), "%s (%s)", msg, code->valuestring);
    else if (msg != NULL && msg[0] != '\0' && cJSON_IsNumber(code))
        snprintf(raw, sizeof(raw), "%s (%.0f)", msg, code->valuedouble);
    else if (msg != NULL && msg[0] != '\0')
        snprintf(raw, sizeof(raw), "%s", msg);
    else
        snprintf(raw, sizeof(raw), "the upstream answered HTTP %d", status);
    /* upstream bytes go back to the client: keep the JSON valid UTF-8 */
    jscan_utf8_clean(raw, clean, sizeof(clean));
    e = cJSON_CreateObject();
    if (e != NULL && add_str(e, "type", "error") == 0 && (inner = obj_in(e, "error")) != NULL &&
        add_str(inner, "type", dialect_anthropic_error_type(status)) == 0 && add_str(inner, "message", clean) == 0)
        text = cJSON_PrintUnformatted(e);
    if (text != NULL)
        evbuffer_add(out, text, strlen(text));
    else                           /* out of memory: a fixed answer still says what kind */
        evbuffer_add_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"upstream error\"}}",
                            dialect_anthropic_error_type(status));
    free(text);
    cJSON_Delete(e);
    cJSON_Delete(root);
}

const dialect_ops_t dialect_anthropic_to_openai = {
    .request = do_request,
    .answer = do_answer,
    .stream_new = stream_new,
    .stream_event = stream_event,
    .stream_free = stream_free,
    .error = do_error,
};
