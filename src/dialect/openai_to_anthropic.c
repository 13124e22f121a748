/* openai_to_anthropic.c - an OpenAI Chat Completions client served by an Anthropic Messages API upstream (SPEC 7).
 *
 * Decisions, field by field, for the request (everything else is refused as
 * unsupported_parameter naming it: a field is never dropped unseen). A field
 * that is JSON null counts as absent, as OpenAI's API treats it.
 *
 *   model                 not read: the body names opts->model
 *   messages              translated (below); missing, not an array or empty: invalid_request
 *   stream                true -> "stream": true and info->stream
 *   stream_options        include_usage -> info->include_usage (only when streaming;
 *                         never sent); include_obfuscation accepted (it only pads
 *                         OpenAI's own events); any other key refused
 *   max_tokens, max_completion_tokens
 *                         -> max_tokens (an integer >= 1); both given and different:
 *                         invalid_request; neither: opts->default_max_tokens (4096 when <= 0)
 *   temperature           0..1 passes; above 1 refused (Anthropic's range is 0-1); below 0 invalid
 *   top_p                 0..1 passes; outside invalid
 *   stop                  string or array of strings -> stop_sequences (an empty array: none)
 *   user, safety_identifier
 *                         -> metadata.user_id (OpenAI's newer name for the same thing);
 *                         both given and different: invalid_request
 *   tools                 type "function" -> {name, description, input_schema}; other
 *                         types and function.strict true refused; [] means no tools
 *   tool_choice           auto/none/required/{function} -> auto/none/any/tool; without
 *                         tools only auto and none are accepted (and sent as nothing)
 *   parallel_tool_calls   false -> disable_parallel_tool_use in tool_choice (auto when
 *                         none is given; not sent with "none" or without tools)
 *   store                 false accepted (Anthropic keeps nothing for later); true refused
 *   metadata              accepted, not sent: OpenAI attaches it to a stored completion,
 *                         and store true is refused, so it has nothing to tag
 *   n 1, logprobs false, logit_bias {}, presence_penalty 0, frequency_penalty 0,
 *   response_format {"type":"text"}, modalities ["text"]
 *                         accepted (they ask for OpenAI's default); any other value refused
 *   top_logprobs, seed, audio, prediction, functions, function_call, reasoning_effort
 *                         refused whatever their value
 *
 * Messages: system and developer -> top-level system text blocks, in order
 * (wherever they stand); user and assistant -> messages of blocks (text,
 * image_url as base64 or url images, tool_calls as tool_use); tool ->
 * tool_result blocks, consecutive ones merged into one user message; the
 * legacy role "function" and a message's "name" are refused (Anthropic
 * has neither); an unknown role is invalid_request. Empty text parts are
 * left out (Anthropic refuses empty text blocks; they say nothing). An
 * image's "detail" is accepted and not sent: Anthropic sizes images itself.
 *
 * The answer and the stream: text and tool_use blocks are translated,
 * thinking blocks (never asked for here) are passed over, and any other
 * block type makes the answer or event malformed (-1) rather than hand the
 * client an answer with a part missing. A tool call's arguments in a whole
 * answer are its input printed by cJSON (numbers print as doubles: an
 * integer past 2^53 loses digits); in a stream they are Anthropic's own
 * partial_json pieces, untouched. Unknown event types are passed over, as
 * Anthropic's versioning policy asks of clients.
 *
 * cJSON decodes \u0000 into a C string that then ends there, so a body or
 * event holding that escape is refused or malformed instead of cut short;
 * an unpaired surrogate escape (\ud800 alone) is well-formed JSON but no
 * character: invalid_request (or a malformed answer). */
#include "dialect.h"
#include "jscan.h"
#include "sse.h"
#include "text.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_MAX_TOKENS 4096

/* ---------------------------------------------------------------- helpers */

static int absent(const cJSON *v)
{
    return v == NULL || cJSON_IsNull(v);
}

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int is(const char *s, const char *lit)
{
    return s != NULL && strcmp(s, lit) == 0;
}

/* Whether NAME is in LIST (NULL-terminated). */
static int listed(const char *const *list, const char *name)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static void *mem_grow(char **p, size_t *cap, size_t need)
{
    char *n;
    size_t c = *cap ? *cap : 256;
    if (need <= *cap)
        return *p;
    while (c < need)
        c = c > SIZE_MAX / 2 ? need : c * 2;
    if (!(n = realloc(*p, c)))
        return NULL;
    *p = n;
    *cap = c;
    return n;
}

/* A growing text: a translation written piece by piece (the answer, a
 * stream's event) instead of built as a tree and printed. Each append
 * returns 0, or -1 when memory ran out. */
typedef struct outbuf {
    char *buf;
    size_t len, cap;
} outbuf_t;

static int ob_add(outbuf_t *o, const char *p, size_t n)
{
    if (n == 0)
        return 0;                         /* (an empty piece may be an unwritten one's NULL) */
    if (n > SIZE_MAX - o->len || !mem_grow(&o->buf, &o->cap, o->len + n))
        return -1;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

static int ob_s(outbuf_t *o, const char *lit)
{
    return ob_add(o, lit, strlen(lit));
}

/* STR as a JSON string: jscan_quote writes at most 6 bytes a byte, the
 * quotes and a NUL. */
static int ob_q(outbuf_t *o, const char *str)
{
    size_t n = strlen(str);
    long w;
    if (n > (SIZE_MAX - o->len - 3) / 6 || !mem_grow(&o->buf, &o->cap, o->len + 6 * n + 3))
        return -1;
    if ((w = jscan_quote(str, o->buf + o->len, o->cap - o->len)) < 0)
        return -1;
    o->len += (size_t)w;
    return 0;
}

static int ob_int(outbuf_t *o, int64_t v)
{
    char n[24];
    return ob_s(o, text_int(n, (long long)v));
}

static void free_printed(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    cJSON_free((void *)data);
}

/* DOC printed onto OUT without a copy. */
static int print_to(cJSON *doc, struct evbuffer *out)
{
    char *p = cJSON_PrintUnformatted(doc);
    if (!p)
        return -1;
    if (evbuffer_add_reference(out, p, strlen(p), free_printed, NULL) != 0) {
        cJSON_free(p);
        return -1;
    }
    return 0;
}

/* Token counts as Anthropic reports them; -1 when it has said nothing. */
typedef struct tokens {
    int64_t input, cache_read, cache_creation, output;
} tokens_t;

static void take_count(const cJSON *u, const char *key, int64_t *to)
{
    const cJSON *v = get(u, key);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15)
        *to = (int64_t)v->valuedouble;
}

/* The counts in U (a usage object); OUTPUT too when WITH_OUTPUT (a stream's
 * message_start reports a placeholder output count, not the answer's). */
static void take_tokens(const cJSON *u, tokens_t *tk, int with_output)
{
    take_count(u, "input_tokens", &tk->input);
    take_count(u, "cache_read_input_tokens", &tk->cache_read);
    take_count(u, "cache_creation_input_tokens", &tk->cache_creation);
    if (with_output)
        take_count(u, "output_tokens", &tk->output);
}

static int64_t nonneg(int64_t v)
{
    return v < 0 ? 0 : v;
}

/* OpenAI counts cached and cache-writing input tokens as prompt tokens;
 * Anthropic reports them beside input_tokens. */
static void to_usage(const tokens_t *tk, dialect_usage_t *u)
{
    u->prompt = tk->input < 0 ? -1 : tk->input + nonneg(tk->cache_read) + nonneg(tk->cache_creation);
    u->completion = tk->output;
    u->cached = tk->cache_read;
}

static const char *finish_reason(const char *stop_reason)
{
    if (is(stop_reason, "max_tokens") || is(stop_reason, "model_context_window_exceeded"))
        return "length";
    if (is(stop_reason, "tool_use"))
        return "tool_calls";
    if (is(stop_reason, "refusal"))
        return "content_filter";
    return "stop";                      /* end_turn, stop_sequence, pause_turn, null, any added since */
}

/* ---------------------------------------------------------------- request */

/* One request translation: where a refusal goes, and whether a cJSON
 * builder ran out of memory (checked once, at the end). */
typedef struct tr {
    dialect_err_t *err;
    int oom;
} tr_t;

static int refuse(tr_t *t, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(tr_t *t, const char *code, const char *param, const char *fmt, ...)
{
    va_list ap;
    t->err->code = code;
    snprintf(t->err->param, sizeof(t->err->param), "%s", param);
    va_start(ap, fmt);
    vsnprintf(t->err->message, sizeof(t->err->message), fmt, ap);
    va_end(ap);
    return -1;
}

static int unsupported(tr_t *t, const char *param, const char *why)
{
    return refuse(t, "unsupported_parameter", param, "%s: %s", param, why);
}

static int invalid(tr_t *t, const char *param, const char *why)
{
    return refuse(t, "invalid_request", param, "%s: %s", param, why);
}

static void path(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Where a field is, for a refusal: FMT with its %s and %d filled in, cut
 * to CAP. Every message's paths are made whether or not they are needed,
 * so this is written by hand rather than with vsnprintf. */
static void path(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, fmt);
    for (const char *f = fmt; *f && n + 1 < cap; f++) {
        char num[24];
        const char *piece = NULL;
        if (f[0] == '%' && f[1] == 's')
            piece = va_arg(ap, const char *);
        else if (f[0] == '%' && f[1] == 'd')
            piece = text_int(num, va_arg(ap, int));
        if (piece == NULL) {
            dst[n++] = *f;
            continue;
        }
        f++;
        for (; *piece && n + 1 < cap; piece++)
            dst[n++] = *piece;
    }
    va_end(ap);
    dst[n] = '\0';
}

/* ITEM added to OBJ under KEY (or to the array ARR); on failure ITEM is
 * freed and the translation marked out of memory. */
static cJSON *put(tr_t *t, cJSON *obj, const char *key, cJSON *item)
{
    if (!item || !obj || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        t->oom = 1;
        return NULL;
    }
    return item;
}

static cJSON *push(tr_t *t, cJSON *arr, cJSON *item)
{
    if (!item || !arr || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        t->oom = 1;
        return NULL;
    }
    return item;
}

/* Strings from the client's document are referenced, not copied: it
 * outlives the translated one until that is printed (images are big). */
static cJSON *ref(const char *s)
{
    return cJSON_CreateStringReference(s);
}

/* V (a whole number, as a token limit is) as a JSON number spelled by hand:
 * cJSON prints every number with sprintf and reads it back with sscanf. */
static cJSON *whole_number(double v)
{
    char b[24];
    if (v != floor(v) || fabs(v) >= 9e15)
        return cJSON_CreateNumber(v);
    return cJSON_CreateRaw(text_int(b, (long long)v));
}

/* The name of the first key of OBJ not in KNOWN (NULL-terminated), or NULL. */
static const char *unknown_key(const cJSON *obj, const char *const *known)
{
    for (const cJSON *c = obj->child; c; c = c->next)
        if (!listed(known, c->string))
            return c->string;
    return NULL;
}

/* Refuses the first key of OBJ (at PREFIX) not in KNOWN. */
static int only_keys(tr_t *t, const cJSON *obj, const char *prefix, const char *const *known)
{
    char p[64];
    const char *k = unknown_key(obj, known);
    if (!k)
        return 0;
    path(p, sizeof(p), "%s.%s", prefix, k);
    return unsupported(t, p, "Anthropic's Messages API has no counterpart");
}

static void text_block(tr_t *t, cJSON *blocks, const char *s)
{
    cJSON *b;
    if (!*s)
        return;                         /* see the top comment */
    b = push(t, blocks, cJSON_CreateObject());
    put(t, b, "type", ref("text"));
    put(t, b, "text", ref(s));
}

static const char *const image_types[] = { "image/jpeg", "image/png", "image/gif", "image/webp", NULL };

/* An image_url part (at P) as an image block. */
static int image_block(tr_t *t, cJSON *blocks, const cJSON *part, const char *p)
{
    static const char *const img_keys[] = { "url", "detail", NULL };
    const cJSON *img = get(part, "image_url");
    const char *url = str_of(img, "url");
    char q[64];
    cJSON *b, *src;
    path(q, sizeof(q), "%s.image_url", p);
    if (!cJSON_IsObject(img))
        return invalid(t, q, "must be an object with a url");
    if (only_keys(t, img, q, img_keys))
        return -1;
    path(q, sizeof(q), "%s.image_url.url", p);
    if (!url)
        return invalid(t, q, "must be a string");
    b = push(t, blocks, cJSON_CreateObject());
    put(t, b, "type", ref("image"));
    src = put(t, b, "source", cJSON_CreateObject());
    if (strncasecmp(url, "https://", 8) == 0) {
        put(t, src, "type", ref("url"));
        put(t, src, "url", ref(url));
        return 0;
    }
    if (strncasecmp(url, "data:", 5) == 0) {
        const char *semi = strstr(url, ";base64,");
        size_t i, n = semi ? (size_t)(semi - (url + 5)) : 0;
        for (i = 0; semi && image_types[i]; i++)
            if (strlen(image_types[i]) == n && strncasecmp(url + 5, image_types[i], n) == 0)
                break;
        if (!semi)
            return unsupported(t, q, "a data: URL must be base64 (data:<type>;base64,...)");
        if (!image_types[i])
            return unsupported(t, q, "Anthropic takes image/jpeg, image/png, image/gif or image/webp");
        if (!semi[8])
            return invalid(t, q, "the data: URL holds no data");
        put(t, src, "type", ref("base64"));
        put(t, src, "media_type", ref(image_types[i]));
        put(t, src, "data", ref(semi + 8));
        return 0;
    }
    return unsupported(t, q, "Anthropic takes https: and base64 data: image URLs only");
}

/* A message's CONTENT (at P: "messages[2]"), a string or an array of
 * parts, appended to BLOCKS; image_url parts only when IMAGES. */
static int content_blocks(tr_t *t, cJSON *blocks, const cJSON *content, const char *p, int images)
{
    static const char *const text_keys[] = { "type", "text", NULL };
    static const char *const image_keys[] = { "type", "image_url", NULL };
    char q[64];
    int j = 0;
    if (cJSON_IsString(content)) {
        text_block(t, blocks, content->valuestring);
        return 0;
    }
    path(q, sizeof(q), "%s.content", p);
    if (!cJSON_IsArray(content))
        return invalid(t, q, "must be a string or an array of content parts");
    for (const cJSON *part = content->child; part; part = part->next, j++) {
        const char *type = str_of(part, "type"), *text = str_of(part, "text");
        path(q, sizeof(q), "%s.content[%d]", p, j);
        if (!cJSON_IsObject(part) || !type)
            return invalid(t, q, "must be an object with a type");
        if (strcmp(type, "text") == 0) {
            if (only_keys(t, part, q, text_keys))
                return -1;
            if (!text) {
                path(q, sizeof(q), "%s.content[%d].text", p, j);
                return invalid(t, q, "must be a string");
            }
            text_block(t, blocks, text);
        } else if (strcmp(type, "image_url") == 0 && images) {
            if (only_keys(t, part, q, image_keys) || image_block(t, blocks, part, q))
                return -1;
        } else {
            path(q, sizeof(q), "%s.content[%d].type", p, j);
            return unsupported(t, q, images ? "only text and image_url parts can be translated"
                                            : "only text parts can be translated here");
        }
    }
    return 0;
}

/* An assistant message's tool_calls (at P) as tool_use blocks. */
static int tool_use_blocks(tr_t *t, cJSON *blocks, const cJSON *calls, const char *p)
{
    static const char *const call_keys[] = { "id", "type", "function", NULL };
    static const char *const fn_keys[] = { "name", "arguments", NULL };
    char q[64];
    int j = 0;
    path(q, sizeof(q), "%s.tool_calls", p);
    if (!cJSON_IsArray(calls))
        return invalid(t, q, "must be an array");
    for (const cJSON *c = calls->child; c; c = c->next, j++) {
        const cJSON *fn = get(c, "function");
        const char *id = str_of(c, "id"), *type = str_of(c, "type");
        const char *name = str_of(fn, "name"), *args = str_of(fn, "arguments");
        cJSON *input, *b;
        path(q, sizeof(q), "%s.tool_calls[%d]", p, j);
        if (!cJSON_IsObject(c))
            return invalid(t, q, "must be an object");
        path(q, sizeof(q), "%s.tool_calls[%d].type", p, j);
        if (type && strcmp(type, "function") != 0)
            return unsupported(t, q, "only function tool calls can be translated");
        path(q, sizeof(q), "%s.tool_calls[%d]", p, j);
        if (only_keys(t, c, q, call_keys))
            return -1;
        path(q, sizeof(q), "%s.tool_calls[%d].id", p, j);
        if (!id)
            return invalid(t, q, "must be a string");
        path(q, sizeof(q), "%s.tool_calls[%d].function", p, j);
        if (!cJSON_IsObject(fn))
            return invalid(t, q, "must be an object with a name and arguments");
        if (only_keys(t, fn, q, fn_keys))
            return -1;
        path(q, sizeof(q), "%s.tool_calls[%d].function.name", p, j);
        if (!name)
            return invalid(t, q, "must be a string");
        path(q, sizeof(q), "%s.tool_calls[%d].function.arguments", p, j);
        if (!args)
            return invalid(t, q, "must be a string");
        input = dialect_bad_escape(args, strlen(args)) ? NULL : cJSON_ParseWithOpts(args, NULL, 1);
        if (!cJSON_IsObject(input)) {
            cJSON_Delete(input);
            return unsupported(t, q, "Anthropic takes a tool call's input as a JSON object only");
        }
        b = push(t, blocks, cJSON_CreateObject());
        put(t, b, "type", ref("tool_use"));
        put(t, b, "id", ref(id));
        put(t, b, "name", ref(name));
        put(t, b, "input", input);
    }
    return 0;
}

/* A new message of ROLE at the end of LIST; returns its content array. */
static cJSON *new_message(tr_t *t, cJSON *list, const char *role)
{
    cJSON *m = push(t, list, cJSON_CreateObject());
    put(t, m, "role", ref(role));
    return put(t, m, "content", cJSON_CreateArray());
}

/* MSGS (the client's messages) into UP's system and messages. */
static int do_messages(tr_t *t, const cJSON *msgs, cJSON *up)
{
    static const char *const plain_keys[] = { "role", "content", "name", NULL };   /* system, developer, user */
    static const char *const asst_keys[] = { "role", "content", "name", "tool_calls", "refusal", "audio",
                                             "function_call", NULL };
    static const char *const tool_keys[] = { "role", "content", "tool_call_id", NULL };
    cJSON *system = put(t, up, "system", cJSON_CreateArray());
    cJSON *list = put(t, up, "messages", cJSON_CreateArray());
    cJSON *results = NULL;              /* the tool results' user message consecutive tool messages join */
    char p[64], q[64];
    int i = 0;
    if (!cJSON_IsArray(msgs))
        return invalid(t, "messages", "must be an array of messages");
    if (!msgs->child)
        return invalid(t, "messages", "must hold at least one message");
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        const char *role = str_of(m, "role");
        const cJSON *content = get(m, "content");
        cJSON *blocks;
        path(p, sizeof(p), "messages[%d]", i);
        if (!cJSON_IsObject(m))
            return invalid(t, p, "must be an object");
        path(q, sizeof(q), "messages[%d].role", i);
        if (!role)
            return invalid(t, q, "must be a string");
        if (is(role, "function"))
            return unsupported(t, q, "the legacy function role cannot be translated; use tool");
        if (!is(role, "system") && !is(role, "developer") && !is(role, "user") && !is(role, "assistant") &&
            !is(role, "tool"))
            return invalid(t, q, "must be system, developer, user, assistant or tool");
        if (only_keys(t, m, p, is(role, "assistant") ? asst_keys : is(role, "tool") ? tool_keys : plain_keys))
            return -1;
        path(q, sizeof(q), "messages[%d].name", i);
        if (!absent(get(m, "name")))
            return unsupported(t, q, "Anthropic's messages have no participant names");
        if (is(role, "system") || is(role, "developer")) {
            if (content_blocks(t, system, content, p, 0))
                return -1;
            continue;                   /* a system message does not end a run of tool results */
        }
        if (is(role, "tool")) {
            const char *id = str_of(m, "tool_call_id");
            cJSON *b;
            path(q, sizeof(q), "messages[%d].tool_call_id", i);
            if (!id)
                return invalid(t, q, "must be a string");
            if (!results)
                results = new_message(t, list, "user");
            b = push(t, results, cJSON_CreateObject());
            put(t, b, "type", ref("tool_result"));
            put(t, b, "tool_use_id", ref(id));
            if (cJSON_IsString(content))
                put(t, b, "content", ref(content->valuestring));
            else if (content_blocks(t, put(t, b, "content", cJSON_CreateArray()), content, p, 0))
                return -1;
            continue;
        }
        results = NULL;
        if (is(role, "user")) {
            if (content_blocks(t, new_message(t, list, "user"), content, p, 1))
                return -1;
            continue;
        }
        path(q, sizeof(q), "messages[%d].refusal", i);
        if (!absent(get(m, "refusal")))
            return unsupported(t, q, "Anthropic's messages have no refusal");
        path(q, sizeof(q), "messages[%d].audio", i);
        if (!absent(get(m, "audio")))
            return unsupported(t, q, "Anthropic's messages have no audio");
        path(q, sizeof(q), "messages[%d].function_call", i);
        if (!absent(get(m, "function_call")))
            return unsupported(t, q, "the legacy function_call cannot be translated; use tool_calls");
        blocks = new_message(t, list, "assistant");
        if (!absent(content) && content_blocks(t, blocks, content, p, 0))
            return -1;
        if (!absent(get(m, "tool_calls")) && tool_use_blocks(t, blocks, get(m, "tool_calls"), p))
            return -1;
    }
    if (system && !system->child)
        cJSON_DeleteItemFromObjectCaseSensitive(up, "system");
    return 0;
}

/* TOOLS into UP's tools; returns how many, or -1. */
static int do_tools(tr_t *t, const cJSON *tools, cJSON *up)
{
    static const char *const tool_keys[] = { "type", "function", NULL };
    static const char *const fn_keys[] = { "name", "description", "parameters", "strict", NULL };
    cJSON *list;
    char q[64];
    int i = 0;
    if (absent(tools))
        return 0;
    if (!cJSON_IsArray(tools))
        return invalid(t, "tools", "must be an array");
    if (!tools->child)
        return 0;
    list = put(t, up, "tools", cJSON_CreateArray());
    for (const cJSON *tl = tools->child; tl; tl = tl->next, i++) {
        const cJSON *fn = get(tl, "function"), *params = get(fn, "parameters"), *strict = get(fn, "strict");
        const char *name = str_of(fn, "name"), *desc = str_of(fn, "description");
        cJSON *o;
        path(q, sizeof(q), "tools[%d]", i);
        if (!cJSON_IsObject(tl))
            return invalid(t, q, "must be an object");
        path(q, sizeof(q), "tools[%d].type", i);
        if (!is(str_of(tl, "type"), "function"))
            return unsupported(t, q, "only function tools can be translated");
        path(q, sizeof(q), "tools[%d]", i);
        if (only_keys(t, tl, q, tool_keys))
            return -1;
        path(q, sizeof(q), "tools[%d].function", i);
        if (!cJSON_IsObject(fn))
            return invalid(t, q, "must be an object");
        if (only_keys(t, fn, q, fn_keys))
            return -1;
        path(q, sizeof(q), "tools[%d].function.name", i);
        if (!name)
            return invalid(t, q, "must be a string");
        path(q, sizeof(q), "tools[%d].function.description", i);
        if (!absent(get(fn, "description")) && !desc)
            return invalid(t, q, "must be a string");
        path(q, sizeof(q), "tools[%d].function.parameters", i);
        if (!absent(params) && !cJSON_IsObject(params))
            return invalid(t, q, "must be a JSON Schema object");
        path(q, sizeof(q), "tools[%d].function.strict", i);
        if (cJSON_IsTrue(strict))
            return unsupported(t, q, "Anthropic does not enforce a tool's schema");
        if (!absent(strict) && !cJSON_IsBool(strict))
            return invalid(t, q, "must be a boolean");
        o = push(t, list, cJSON_CreateObject());
        put(t, o, "name", ref(name));
        if (desc)
            put(t, o, "description", ref(desc));
        if (absent(params)) {
            cJSON *schema = put(t, o, "input_schema", cJSON_CreateObject());
            put(t, schema, "type", ref("object"));
        } else {
            put(t, o, "input_schema", cJSON_CreateObjectReference(params->child));
        }
    }
    return i;
}

/* CHOICE and PARALLEL (parallel_tool_calls) into UP's tool_choice. */
static int do_tool_choice(tr_t *t, const cJSON *choice, const cJSON *parallel, int ntools, cJSON *up)
{
    static const char *const choice_keys[] = { "type", "function", NULL };
    static const char *const fn_keys[] = { "name", NULL };
    const char *type = "auto", *name = NULL;
    int serial = cJSON_IsFalse(parallel);
    cJSON *tc;
    if (!absent(parallel) && !cJSON_IsBool(parallel))
        return invalid(t, "parallel_tool_calls", "must be a boolean");
    if (cJSON_IsString(choice)) {
        const char *s = choice->valuestring;
        if (!is(s, "auto") && !is(s, "none") && !is(s, "required"))
            return invalid(t, "tool_choice", "must be auto, none, required or a function");
        type = is(s, "required") ? "any" : s;
    } else if (cJSON_IsObject(choice)) {
        const char *ct = str_of(choice, "type");
        const cJSON *fn = get(choice, "function");
        if (!ct)
            return invalid(t, "tool_choice.type", "must be a string");
        if (strcmp(ct, "function") != 0)
            return unsupported(t, "tool_choice.type", "only a function can be named");
        if (only_keys(t, choice, "tool_choice", choice_keys))
            return -1;
        if (!cJSON_IsObject(fn) || !(name = str_of(fn, "name")))
            return invalid(t, "tool_choice.function.name", "must be a string");
        if (only_keys(t, fn, "tool_choice.function", fn_keys))
            return -1;
        type = "tool";
    } else if (!absent(choice)) {
        return invalid(t, "tool_choice", "must be a string or an object");
    }
    if (ntools == 0) {
        if (is(type, "any") || is(type, "tool"))
            return invalid(t, "tool_choice", "asks for a tool call, but the request has no tools");
        return 0;                       /* auto or none without tools: nothing to say */
    }
    if (absent(choice) && !serial)
        return 0;                       /* Anthropic's default is auto too */
    tc = put(t, up, "tool_choice", cJSON_CreateObject());
    put(t, tc, "type", ref(type));
    if (name)
        put(t, tc, "name", ref(name));
    if (serial && !is(type, "none"))
        put(t, tc, "disable_parallel_tool_use", cJSON_CreateTrue());
    return 0;
}

/* A max_tokens-like field: absent (0), an integer >= 1 (into *V) or -1. */
static int token_limit(tr_t *t, const cJSON *in, const char *key, double *v)
{
    const cJSON *x = get(in, key);
    if (absent(x))
        return 0;
    if (!cJSON_IsNumber(x) || x->valuedouble < 1 || x->valuedouble > 2147483647.0 ||
        x->valuedouble != (double)(int64_t)x->valuedouble)
        return invalid(t, key, "must be an integer of at least 1");
    *v = x->valuedouble;
    return 1;
}

/* The fields translated (or accepted with no effect, see the top comment). */
static const char *const known_fields[] = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "stop", "user", "safety_identifier", "tools", "tool_choice", "parallel_tool_calls", "store",
    "metadata", NULL,
};

/* The fields with no Anthropic counterpart: refused unless they ask for OpenAI's default. */
static const char *const refused_fields[] = {
    "n", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed",
    "response_format", "audio", "modalities", "prediction", "functions", "function_call", "reasoning_effort",
    NULL,
};

/* Whether V, the value of NAME (a field with no Anthropic counterpart),
 * asks for nothing: absent or OpenAI's default. */
static int neutral(const char *name, const cJSON *v)
{
    if (absent(v))
        return 1;
    if (is(name, "n"))
        return cJSON_IsNumber(v) && v->valuedouble == 1;
    if (is(name, "logprobs"))
        return cJSON_IsFalse(v);
    if (is(name, "logit_bias"))
        return cJSON_IsObject(v) && !v->child;
    if (is(name, "presence_penalty") || is(name, "frequency_penalty"))
        return cJSON_IsNumber(v) && v->valuedouble == 0;
    if (is(name, "response_format"))
        return cJSON_IsObject(v) && is(str_of(v, "type"), "text") && !v->child->next;
    if (is(name, "modalities"))
        return cJSON_IsArray(v) && cJSON_IsString(v->child) && is(v->child->valuestring, "text") && !v->child->next;
    return 0;
}

/* The sampling and bookkeeping fields of IN into UP. */
static int do_fields(tr_t *t, const cJSON *in, cJSON *up)
{
    const cJSON *temp = get(in, "temperature"), *top_p = get(in, "top_p"), *stop = get(in, "stop");
    const cJSON *user = get(in, "user"), *sid = get(in, "safety_identifier"), *store = get(in, "store");
    const char *user_id = NULL;
    if (!absent(stop)) {
        cJSON *seq;
        int j = 0;
        if (!cJSON_IsString(stop) && !cJSON_IsArray(stop))
            return invalid(t, "stop", "must be a string or an array of strings");
        if (cJSON_IsString(stop)) {
            seq = put(t, up, "stop_sequences", cJSON_CreateArray());
            push(t, seq, ref(stop->valuestring));
        } else if (stop->child) {
            seq = put(t, up, "stop_sequences", cJSON_CreateArray());
            for (const cJSON *s = stop->child; s; s = s->next, j++) {
                char q[64];
                path(q, sizeof(q), "stop[%d]", j);
                if (!cJSON_IsString(s))
                    return invalid(t, q, "must be a string");
                push(t, seq, ref(s->valuestring));
            }
        }
    }
    if (!absent(temp)) {
        if (!cJSON_IsNumber(temp) || temp->valuedouble < 0)
            return invalid(t, "temperature", "must be a number of at least 0");
        if (temp->valuedouble > 1)
            return unsupported(t, "temperature", "Anthropic's temperature ranges from 0 to 1");
        put(t, up, "temperature", cJSON_CreateNumber(temp->valuedouble));
    }
    if (!absent(top_p)) {
        if (!cJSON_IsNumber(top_p) || top_p->valuedouble < 0 || top_p->valuedouble > 1)
            return invalid(t, "top_p", "must be a number from 0 to 1");
        put(t, up, "top_p", cJSON_CreateNumber(top_p->valuedouble));
    }
    if (!absent(user) && !cJSON_IsString(user))
        return invalid(t, "user", "must be a string");
    if (!absent(sid) && !cJSON_IsString(sid))
        return invalid(t, "safety_identifier", "must be a string");
    if (cJSON_IsString(user) && cJSON_IsString(sid) && strcmp(user->valuestring, sid->valuestring) != 0)
        return invalid(t, "safety_identifier", "differs from user; Anthropic takes one user id");
    user_id = cJSON_IsString(sid) ? sid->valuestring : cJSON_IsString(user) ? user->valuestring : NULL;
    if (user_id) {
        cJSON *md = put(t, up, "metadata", cJSON_CreateObject());
        put(t, md, "user_id", ref(user_id));
    }
    if (cJSON_IsTrue(store))
        return unsupported(t, "store", "Anthropic does not store completions");
    if (!absent(store) && !cJSON_IsFalse(store))
        return invalid(t, "store", "must be a boolean");
    if (!absent(get(in, "metadata")) && !cJSON_IsObject(get(in, "metadata")))
        return invalid(t, "metadata", "must be an object");
    return 0;
}

/* stream and stream_options into INFO (and UP's stream). */
static int do_stream(tr_t *t, const cJSON *in, cJSON *up, dialect_req_info_t *info)
{
    static const char *const opt_keys[] = { "include_usage", "include_obfuscation", NULL };
    const cJSON *stream = get(in, "stream"), *opts = get(in, "stream_options");
    const cJSON *usage = get(opts, "include_usage");
    if (!absent(stream) && !cJSON_IsBool(stream))
        return invalid(t, "stream", "must be a boolean");
    if (!absent(opts) && !cJSON_IsObject(opts))
        return invalid(t, "stream_options", "must be an object");
    if (cJSON_IsObject(opts) && only_keys(t, opts, "stream_options", opt_keys))
        return -1;
    if (!absent(usage) && !cJSON_IsBool(usage))
        return invalid(t, "stream_options.include_usage", "must be a boolean");
    info->stream = cJSON_IsTrue(stream);
    info->include_usage = info->stream && cJSON_IsTrue(usage);
    if (info->stream)
        put(t, up, "stream", cJSON_CreateTrue());
    return 0;
}

/* The long way: any request, read as a tree, refused with the field that
 * cannot be translated or a translation built as a tree and printed. */
static int request_long(const char *body, size_t len, const dialect_req_opts_t *o, struct evbuffer *out,
                        dialect_req_info_t *info, dialect_err_t *err)
{
    tr_t t = { err, 0 };
    cJSON *in = NULL, *up = NULL;
    double max_tokens = 0, max_completion = 0;
    int has_max, has_completion, ntools, esc, rc = -1;
    jscan_t j;
    memset(info, 0, sizeof(*info));
    memset(err, 0, sizeof(*err));
    if (jscan_body(body, len, &j) != JSCAN_OK) {
        refuse(&t, "invalid_request", "", "the body is not a JSON object");
        goto done;
    }
    if ((esc = dialect_bad_escape(body, len)) == DIALECT_ESC_NUL) {
        refuse(&t, "unsupported_parameter", "", "a string holds \\u0000, which cannot be translated");
        goto done;
    }
    if (esc == DIALECT_ESC_SURROGATE) {
        refuse(&t, "invalid_request", "", "a string holds an unpaired UTF-16 surrogate escape");
        goto done;
    }
    if (!(in = cJSON_ParseWithLength(body, len))) {
        t.oom = 1;                      /* jscan accepted it: only memory can fail */
        goto done;
    }
    for (const cJSON *c = in->child; c; c = c->next) {
        if (listed(refused_fields, c->string) && !neutral(c->string, c)) {
            unsupported(&t, c->string, "Anthropic's Messages API has no counterpart");
            goto done;
        }
        if (!listed(refused_fields, c->string) && !listed(known_fields, c->string)) {
            unsupported(&t, c->string, "this field cannot be translated to Anthropic's Messages API");
            goto done;
        }
    }
    if ((has_max = token_limit(&t, in, "max_tokens", &max_tokens)) < 0 ||
        (has_completion = token_limit(&t, in, "max_completion_tokens", &max_completion)) < 0)
        goto done;
    if (has_max && has_completion && max_tokens != max_completion) {
        invalid(&t, "max_tokens", "differs from max_completion_tokens; give one");
        goto done;
    }
    if (!has_max)
        max_tokens = has_completion ? max_completion
                                    : (double)(o->default_max_tokens > 0 ? o->default_max_tokens : DEFAULT_MAX_TOKENS);
    up = cJSON_CreateObject();
    put(&t, up, "model", cJSON_CreateString(o->model ? o->model : ""));
    put(&t, up, "max_tokens", whole_number(max_tokens));
    if (do_messages(&t, get(in, "messages"), up) || do_fields(&t, in, up))
        goto done;
    if ((ntools = do_tools(&t, get(in, "tools"), up)) < 0 ||
        do_tool_choice(&t, get(in, "tool_choice"), get(in, "parallel_tool_calls"), ntools, up) ||
        do_stream(&t, in, up, info))
        goto done;
    if (!t.oom && print_to(up, out) == 0)
        rc = 0;
    else
        t.oom = 1;
done:
    if (t.oom && rc < 0 && !err->code)
        refuse(&t, "out_of_memory", "", "out of memory while translating the request");
    cJSON_Delete(up);
    cJSON_Delete(in);
    return rc;
}

/* ----------------------------------------------------------------- answer */

static void free_outbuf(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* A value as it lies in the answer's bytes. */
typedef struct raw {
    const char *p;
    size_t n;
} raw_t;

/* RAW is the JSON string LIT, spelled without escapes. */
static int raw_is(raw_t raw, const char *lit)
{
    size_t n = strlen(lit);
    return raw.n == n + 2 && raw.p[0] == '"' && memcmp(raw.p + 1, lit, n) == 0;
}

static int raw_is_null(raw_t raw)
{
    return raw.n == 4 && memcmp(raw.p, "null", 4) == 0;
}

static int raw_is_true(raw_t raw)
{
    return raw.n == 4 && memcmp(raw.p, "true", 4) == 0;
}

static int raw_is_false(raw_t raw)
{
    return raw.n == 5 && memcmp(raw.p, "false", 5) == 0;
}

/* RAW is a string with an escape in it: compared by its bytes, it could
 * mean what the long way (cJSON, which decodes it) reads otherwise. */
static int raw_escaped(raw_t raw)
{
    return raw.p != NULL && raw.p[0] == '"' && memchr(raw.p, '\\', raw.n) != NULL;
}

/* Where the top-level object of B starts, in a body jscan_body found an
 * object (only white space comes before it). */
static size_t object_start(const char *b, size_t len)
{
    size_t start = 0;
    while (start < len && b[start] != '{')
        start++;
    return start;
}

/* The values of the members of the object at B[START] named by KEYS (N
 * of them) into VALS (the first of duplicates, as cJSON finds it); -1 on
 * a key with an escape in it (the long way reads those) and, when ONLY, on
 * a member not among KEYS or one named twice; 0 after the last. */
static int members(const char *b, size_t len, size_t start, const char *const *keys, raw_t *vals, int n, int only)
{
    size_t pos = start;
    jscan_item_t it;
    int r, i;
    while ((r = jscan_next_item(b, len, start, &pos, &it)) == 1) {
        if (memchr(b + it.key_off, '\\', it.key_len) != NULL)
            return -1;
        for (i = 0; i < n; i++)
            if (it.key_len == strlen(keys[i]) + 2 && memcmp(b + it.key_off + 1, keys[i], it.key_len - 2) == 0)
                break;
        if (i < n && vals[i].p == NULL)
            vals[i] = (raw_t){ b + it.val_off, it.val_len };
        else if (only)
            return -1;
    }
    return r;
}

/* A count as take_count reads it: a number, at least 0, below 9e15. */
static void raw_count(raw_t v, int64_t *to)
{
    char num[64];
    double d;
    if (!v.p || v.n >= sizeof(num) || !(v.p[0] == '-' || (v.p[0] >= '0' && v.p[0] <= '9')))
        return;
    memcpy(num, v.p, v.n);
    num[v.n] = '\0';
    d = strtod(num, NULL);
    if (d >= 0 && d < 9e15)
        *to = (int64_t)d;
}

/* finish_reason of a stop_reason as it lies in the bytes (one with an
 * escape never gets here: raw_escaped sends it the long way). */
static const char *raw_finish(raw_t v)
{
    char name[32];                      /* longer than any stop reason Anthropic has: "stop" */
    if (v.p == NULL || v.p[0] != '"' || v.n - 2 >= sizeof(name))
        return finish_reason(NULL);
    memcpy(name, v.p + 1, v.n - 2);
    name[v.n - 2] = '\0';
    return finish_reason(name);
}

/* The counts of the usage object U as take_tokens reads them; -1 on an
 * escaped key (the long way reads it), 0 otherwise (U not an object: none). */
static int raw_tokens(const char *b, size_t len, raw_t u, tokens_t *tk, int with_output)
{
    static const char *const keys[] = { "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                                         "output_tokens" };
    raw_t v[4] = { { 0 } };
    if (u.p == NULL || u.p[0] != '{')
        return 0;
    if (members(b, len, (size_t)(u.p - b), keys, v, 4, 0) < 0)
        return -1;
    raw_count(v[0], &tk->input);
    raw_count(v[1], &tk->cache_read);
    raw_count(v[2], &tk->cache_creation);
    if (with_output)
        raw_count(v[3], &tk->output);
    return 0;
}

/* A chat.completion from its id on: the members after the id, up to the
 * message's content, which the caller writes next. */
static int completion_head(outbuf_t *o, const char *model)
{
    return ob_s(o, ",\"object\":\"chat.completion\",\"created\":") || ob_int(o, (int64_t)time(NULL)) ||
           ob_s(o, ",\"model\":") || ob_q(o, model ? model : "") ||
           ob_s(o, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
}

/* A chat.completion after the message's content (and tool calls) to its
 * end: why it finished, and USAGE when the answer reported it. */
static int completion_tail(outbuf_t *o, const char *finish, int with_usage, const dialect_usage_t *usage)
{
    if (ob_s(o, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":") || ob_q(o, finish) || ob_s(o, "}]"))
        return -1;
    if (with_usage &&
        (ob_s(o, ",\"usage\":{\"prompt_tokens\":") || ob_int(o, nonneg(usage->prompt)) ||
         ob_s(o, ",\"completion_tokens\":") || ob_int(o, nonneg(usage->completion)) ||
         ob_s(o, ",\"total_tokens\":") || ob_int(o, nonneg(usage->prompt) + nonneg(usage->completion)) ||
         ob_s(o, ",\"prompt_tokens_details\":{\"cached_tokens\":") || ob_int(o, nonneg(usage->cached)) ||
         ob_s(o, "}}")))
        return -1;
    return ob_s(o, "}");
}

/* O's text onto OUT, without a copy (OUT frees it); 0 or -1. */
static int ob_give(outbuf_t *o, struct evbuffer *out)
{
    if (evbuffer_add_reference(out, o->buf, o->len, free_outbuf, NULL) != 0)
        return -1;
    o->buf = NULL;
    return 0;
}

/* ----------------------------------------------------- request, the usual way */

/* RAW is a string cJSON would print with the same bytes: its escapes are
 * only those cJSON writes itself (\" \\ \b \f \n \r \t; not \u or \/). */
static int prints_as_is(raw_t raw)
{
    const char *p, *end;
    if (raw.p == NULL || raw.p[0] != '"')
        return 0;
    p = raw.p + 1;
    end = raw.p + raw.n - 1;
    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        if (strchr("\"\\bfnrt", p[1]) == NULL)
            return 0;
        p += 2;
    }
    return 1;
}

/* A max_tokens-like value spelled as plain digits, 1 to 2147483647, into
 * *V: 1; absent: 0; anything else -1 (the long way says what is wrong). */
static int raw_limit(raw_t v, int64_t *out)
{
    int64_t n = 0;
    if (v.p == NULL)
        return 0;
    if (v.n > 10 || v.p[0] < '1' || v.p[0] > '9')
        return -1;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        n = n * 10 + (v.p[i] - '0');
    }
    if (n > 2147483647)
        return -1;
    *out = n;
    return 1;
}

/* RAW, a string, as the long way's text_block: nothing when empty. */
static int text_block_raw(outbuf_t *o, raw_t text)
{
    if (text.n == 2)
        return 0;
    return ob_s(o, o->len > 0 && o->buf[o->len - 1] == '}' ? ",{\"type\":\"text\",\"text\":" : "{\"type\":\"text\",\"text\":") ||
           ob_add(o, text.p, text.n) || ob_s(o, "}");
}

/* The messages at LIST, when each is a system, developer, user or
 * assistant message of role and string content only, into SYS (the
 * system blocks) and MSGS (the messages) as the long way writes them.
 * 1 when they were, 0 for the long way. */
static int messages_usual(const char *b, size_t len, raw_t list, outbuf_t *sys, outbuf_t *msgs)
{
    static const char *const keys[] = { "role", "content" };
    size_t start, pos;
    jscan_item_t it;
    int r, n = 0;
    if (list.p == NULL || list.p[0] != '[')
        return 0;
    start = pos = (size_t)(list.p - b);
    while ((r = jscan_next_item(b, len, start, &pos, &it)) == 1) {
        raw_t v[2] = { { 0 } };
        const char *role;
        if (b[it.val_off] != '{' || members(b, len, it.val_off, keys, v, 2, 1) < 0 || !v[0].p ||
            !prints_as_is(v[1]))
            return 0;
        n++;
        if (raw_is(v[0], "system") || raw_is(v[0], "developer")) {
            if (text_block_raw(sys, v[1]))
                return 0;
            continue;
        }
        role = raw_is(v[0], "user") ? "user" : raw_is(v[0], "assistant") ? "assistant" : NULL;
        if (role == NULL ||
            ob_s(msgs, msgs->len ? ",{\"role\":\"" : "{\"role\":\"") || ob_s(msgs, role) ||
            ob_s(msgs, "\",\"content\":[") || text_block_raw(msgs, v[1]) || ob_s(msgs, "]}"))
            return 0;
    }
    return r == 0 && n > 0;
}

/* The request almost every client sends, translated without a tree: the
 * model, messages of text (above), stream, stream_options.include_usage,
 * max_tokens or max_completion_tokens, user; nothing else, each once, no
 * escaped names, no escapes cJSON would write otherwise. Its translation
 * is byte for byte the long way's (test_openai_to_anthropic compares the
 * two). 1 when it was taken, 0 for the long way (which also says what is
 * wrong with a request it refuses). */
static int request_usual(const char *body, size_t len, const dialect_req_opts_t *o, struct evbuffer *out,
                         dialect_req_info_t *info)
{
    static const char *const keys[] = { "model", "messages", "stream", "stream_options", "max_tokens",
                                        "max_completion_tokens", "user" };
    static const char *const opt_keys[] = { "include_usage" };
    raw_t v[7] = { { 0 } }, opt[1] = { { 0 } };
    outbuf_t sys = { 0 }, msgs = { 0 }, w = { 0 };
    int64_t max = 0, completion = 0;
    int has_max, has_completion, stream = 0, usage = 0, taken = 0;
    jscan_t j;
    if (jscan_body(body, len, &j) != JSCAN_OK || dialect_bad_escape(body, len) ||
        members(body, len, object_start(body, len), keys, v, 7, 1) < 0)
        return 0;
    if ((has_max = raw_limit(v[4], &max)) < 0 || (has_completion = raw_limit(v[5], &completion)) < 0 ||
        (has_max && has_completion && max != completion))
        return 0;
    if (v[2].p != NULL && !(stream = raw_is_true(v[2])) && !raw_is_false(v[2]))
        return 0;
    if (v[3].p != NULL &&
        (v[3].p[0] != '{' || members(body, len, (size_t)(v[3].p - body), opt_keys, opt, 1, 1) < 0 ||
         (opt[0].p != NULL && !(usage = raw_is_true(opt[0])) && !raw_is_false(opt[0]))))
        return 0;
    if (v[6].p != NULL && !prints_as_is(v[6]))
        return 0;
    if (!messages_usual(body, len, v[1], &sys, &msgs))
        goto done;
    if (!has_max)
        max = has_completion ? completion : o->default_max_tokens > 0 ? o->default_max_tokens : DEFAULT_MAX_TOKENS;
    if (ob_s(&w, "{\"model\":") || ob_q(&w, o->model ? o->model : "") || ob_s(&w, ",\"max_tokens\":") ||
        ob_int(&w, max) ||
        (sys.len && (ob_s(&w, ",\"system\":[") || ob_add(&w, sys.buf, sys.len) || ob_s(&w, "]"))) ||
        ob_s(&w, ",\"messages\":[") || ob_add(&w, msgs.buf, msgs.len) || ob_s(&w, "]") ||
        (v[6].p && (ob_s(&w, ",\"metadata\":{\"user_id\":") || ob_add(&w, v[6].p, v[6].n) || ob_s(&w, "}"))) ||
        (stream && ob_s(&w, ",\"stream\":true")) || ob_s(&w, "}") || ob_give(&w, out))
        goto done;
    memset(info, 0, sizeof(*info));
    info->stream = stream;
    info->include_usage = stream && usage;
    taken = 1;
done:
    free(sys.buf);
    free(msgs.buf);
    free(w.buf);
    return taken;
}

static int request(const char *body, size_t len, const dialect_req_opts_t *o, struct evbuffer *out,
                   dialect_req_info_t *info, dialect_err_t *err)
{
    if (request_usual(body, len, o, out, info)) {
        memset(err, 0, sizeof(*err));
        return 0;
    }
    return request_long(body, len, o, out, info, err);
}

/* The answer almost every request gets, read without a tree: a message of
 * one text block (thinking blocks aside), no escapes in its keys or in the
 * strings it compares; the text and the id go into the chat.completion as
 * they came (valid JSON strings of valid UTF-8: the whole body was
 * checked). Returns 1 when it was taken (its result in *RC), 0 for the
 * long way, which reads anything else exactly as before. */
static int answer_fast(const char *b, size_t len, const char *model, struct evbuffer *out, dialect_usage_t *usage,
                       int *rc)
{
    static const char *const top_keys[] = { "id", "type", "content", "stop_reason", "usage" };
    static const char *const block_keys[] = { "type", "text" };
    raw_t top[5] = { { 0 } }, text = { 0 };
    tokens_t tk = { -1, -1, -1, -1 };
    outbuf_t o = { NULL, 0, 0 };
    size_t start, pos;
    jscan_item_t it;
    jscan_t j;
    int r, with_usage;
    if (jscan_body(b, len, &j) != JSCAN_OK || dialect_bad_escape(b, len))
        return 0;
    start = object_start(b, len);
    if (members(b, len, start, top_keys, top, 5, 0) < 0 || !top[0].p || top[0].p[0] != '"' ||
        !raw_is(top[1], "message") || !top[2].p || top[2].p[0] != '[' || raw_escaped(top[3]))
        return 0;
    pos = (size_t)(top[2].p - b);
    start = pos;
    while ((r = jscan_next_item(b, len, start, &pos, &it)) == 1) {
        raw_t blk[2] = { { 0 }, { 0 } };
        if (b[it.val_off] != '{' || members(b, len, it.val_off, block_keys, blk, 2, 0) < 0 || raw_escaped(blk[0]))
            return 0;
        if (raw_is(blk[0], "text") && blk[1].p && blk[1].p[0] == '"' && !text.p)
            text = blk[1];
        else if (!raw_is(blk[0], "thinking") && !raw_is(blk[0], "redacted_thinking"))
            return 0;                   /* a tool call, a second text, anything else */
    }
    if (r < 0 || raw_tokens(b, len, top[4], &tk, 1) < 0)
        return 0;
    if ((with_usage = top[4].p && top[4].p[0] == '{'))
        to_usage(&tk, usage);
    *rc = ob_s(&o, "{\"id\":") || ob_add(&o, top[0].p, top[0].n) || completion_head(&o, model) ||
                  (text.p ? ob_add(&o, text.p, text.n) : ob_s(&o, "null")) ||
                  completion_tail(&o, raw_finish(top[3]), with_usage, usage) || ob_give(&o, out)
              ? -1
              : 0;
    if (*rc < 0)
        usage->prompt = usage->completion = usage->cached = -1;
    free(o.buf);
    return 1;
}

/* The answer is read as a tree (it is validated and its blocks checked
 * first) and written straight out as OpenAI's chat.completion, members in
 * OpenAI's order: no second tree, no print. */
static int answer(const char *body, size_t len, const char *model, struct evbuffer *out, dialect_usage_t *usage)
{
    outbuf_t o = { NULL, 0, 0 };
    cJSON *in;
    const cJSON *content, *u;
    const char *id;
    char *text = NULL;
    size_t text_len = 0;
    int ntext = 0, ncalls = 0, rc = -1;
    tokens_t tk = { -1, -1, -1, -1 };
    usage->prompt = usage->completion = usage->cached = -1;
    if (answer_fast(body, len, model, out, usage, &rc))
        return rc;
    if (!(in = dialect_parse(body, len)))
        return -1;
    content = get(in, "content");
    id = str_of(in, "id");
    if (!is(str_of(in, "type"), "message") || !id || !cJSON_IsArray(content))
        goto done;
    /* first pass: every block is one we can translate, and the text's length */
    for (const cJSON *b = content->child; b; b = b->next) {
        const char *type = str_of(b, "type"), *s = str_of(b, "text");
        if (is(type, "text") && s) {
            text_len += strlen(s);
            ntext++;
        } else if (is(type, "tool_use")) {
            if (!str_of(b, "id") || !str_of(b, "name") || !cJSON_IsObject(get(b, "input")))
                goto done;
        } else if (!is(type, "thinking") && !is(type, "redacted_thinking")) {
            goto done;
        }
    }
    /* the text blocks are one content string */
    if (ntext && !(text = malloc(text_len + 1)))
        goto done;
    text_len = 0;
    for (const cJSON *b = content->child; b && ntext; b = b->next) {
        if (is(str_of(b, "type"), "text")) {
            size_t n = strlen(str_of(b, "text"));
            memcpy(text + text_len, str_of(b, "text"), n);
            text_len += n;
        }
    }
    if (text)
        text[text_len] = '\0';
    if (ob_s(&o, "{\"id\":") || ob_q(&o, id) || completion_head(&o, model) || (text ? ob_q(&o, text) : ob_s(&o, "null")))
        goto done;
    for (const cJSON *b = content->child; b; b = b->next) {
        char *args;
        int bad;
        if (!is(str_of(b, "type"), "tool_use"))
            continue;
        if (!(args = cJSON_PrintUnformatted(get(b, "input"))))
            goto done;
        bad = ob_s(&o, ncalls++ ? ",{\"id\":" : ",\"tool_calls\":[{\"id\":") || ob_q(&o, str_of(b, "id")) ||
              ob_s(&o, ",\"type\":\"function\",\"function\":{\"name\":") || ob_q(&o, str_of(b, "name")) ||
              ob_s(&o, ",\"arguments\":") || ob_q(&o, args) || ob_s(&o, "}}");
        cJSON_free(args);
        if (bad)
            goto done;
    }
    if (cJSON_IsObject(u = get(in, "usage"))) {
        take_tokens(u, &tk, 1);
        to_usage(&tk, usage);
    }
    if ((ncalls == 0 || ob_s(&o, "]") == 0) &&
        completion_tail(&o, finish_reason(str_of(in, "stop_reason")), cJSON_IsObject(u), usage) == 0 &&
        ob_give(&o, out) == 0)
        rc = 0;
done:
    if (rc < 0)
        usage->prompt = usage->completion = usage->cached = -1;
    free(o.buf);
    free(text);
    cJSON_Delete(in);
    return rc;
}

/* ----------------------------------------------------------------- stream */

enum { BLOCK_NONE, BLOCK_TEXT, BLOCK_TOOL, BLOCK_SKIP };

/* A stream's translation, from message_start to message_stop. Owns every
 * pointer in it; stream_free releases them. */
struct dialect_stream {
    char *model;                        /* the client's model, named in every chunk */
    int include_usage;                  /* a usage chunk at the end; "usage": null in each one before */
    int started, finished, done;        /* message_start, message_delta, message_stop seen */
    time_t created;                     /* one time for every chunk, as OpenAI does */
    char *head;                         /* every chunk's start: data: {"id":...,"model":..., */
    size_t head_len;
    int open;                           /* BLOCK_*: the content block between its start and stop */
    double open_index;                  /* its index */
    int tools;                          /* tool_use blocks begun: the open one's OpenAI index */
    int args_sent;                      /* the open tool_use block had a non-empty partial_json */
    char *start_input;                  /* its input as content_block_start gave it, printed; or NULL */
    tokens_t tk;
    char *data;                         /* the event's data */
    size_t data_cap;
    outbuf_t o;                         /* the event's translation: appended to OUT only when whole */
};

static dialect_stream_t *stream_new(const char *model, const dialect_req_info_t *info)
{
    dialect_stream_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (!(s->model = strdup(model ? model : ""))) {
        free(s);
        return NULL;
    }
    s->include_usage = info && info->include_usage;
    s->created = time(NULL);
    s->tk.input = s->tk.cache_read = s->tk.cache_creation = s->tk.output = -1;
    return s;
}

static void stream_free(dialect_stream_t *s)
{
    if (!s)
        return;
    free(s->model);
    free(s->head);
    free(s->start_input);
    free(s->data);
    free(s->o.buf);
    free(s);
}

static int add(dialect_stream_t *s, const char *p, size_t n)
{
    return ob_add(&s->o, p, n);
}

static int add_s(dialect_stream_t *s, const char *lit)
{
    return ob_s(&s->o, lit);
}

static int add_q(dialect_stream_t *s, const char *str)
{
    return ob_q(&s->o, str);
}

static int add_int(dialect_stream_t *s, int64_t v)
{
    return ob_int(&s->o, v);
}

/* A chunk is the head, CHUNK_OPEN, the delta object, then CHUNK_CLOSE
 * (finish_reason null; another is spelled out), USAGE_NULL when the client
 * asked for usage, CHUNK_END. Spelled once here for chunk_open and
 * chunk_close and for text_delta_fast, which writes a text chunk whole. */
static const char CHUNK_OPEN[] = "\"choices\":[{\"index\":0,\"delta\":";
static const char CHUNK_CLOSE[] = "},\"finish_reason\":null}]";
static const char USAGE_NULL[] = ",\"usage\":null";
static const char CHUNK_END[] = "}\n\n";

static int chunk_open(dialect_stream_t *s)
{
    return add(s, s->head, s->head_len) || add(s, CHUNK_OPEN, sizeof(CHUNK_OPEN) - 1);
}

static int chunk_close(dialect_stream_t *s, const char *finish)
{
    if (finish == NULL ? add(s, CHUNK_CLOSE, sizeof(CHUNK_CLOSE) - 1)
                       : add_s(s, "},\"finish_reason\":") || add_q(s, finish) || add_s(s, "}]"))
        return -1;
    if (s->include_usage && add(s, USAGE_NULL, sizeof(USAGE_NULL) - 1))
        return -1;
    return add(s, CHUNK_END, sizeof(CHUNK_END) - 1);
}

static int content_chunk(dialect_stream_t *s, const char *text)
{
    if (!*text)
        return 0;                       /* says nothing */
    return chunk_open(s) || add_s(s, "{\"content\":") || add_q(s, text) || chunk_close(s, NULL) ? -1 : 0;
}

static int args_chunk(dialect_stream_t *s, const char *args)
{
    return chunk_open(s) || add_s(s, "{\"tool_calls\":[{\"index\":") || add_int(s, s->tools) ||
           add_s(s, ",\"function\":{\"arguments\":") || add_q(s, args) || add_s(s, "}}]") || chunk_close(s, NULL)
               ? -1
               : 0;
}

/* The message has begun: its id is the last thing in s->o, after
 * "data: {"id":" (head_start). The rest of every chunk's head is added and
 * the head moved out of the buffer; then the first chunk, the role. */
static int head_start(dialect_stream_t *s)
{
    s->o.len = 0;
    return add_s(s, "data: {\"id\":");
}

static int message_started(dialect_stream_t *s, dialect_usage_t *usage)
{
    if (add_s(s, ",\"object\":\"chat.completion.chunk\",\"created\":") || add_int(s, (int64_t)s->created) ||
        add_s(s, ",\"model\":") || add_q(s, s->model) || add_s(s, ",") || !(s->head = malloc(s->o.len)))
        return -1;
    memcpy(s->head, s->o.buf, s->o.len);
    s->head_len = s->o.len;
    s->o.len = 0;
    s->started = 1;
    to_usage(&s->tk, usage);
    return chunk_open(s) || add_s(s, "{\"role\":\"assistant\",\"content\":\"\"") || chunk_close(s, NULL) ? -1 : 0;
}

static int on_message_start(dialect_stream_t *s, const cJSON *d, dialect_usage_t *usage)
{
    const cJSON *m = get(d, "message");
    const char *id = str_of(m, "id");
    if (!id)
        return -1;
    take_tokens(get(m, "usage"), &s->tk, 0);
    return head_start(s) || add_q(s, id) ? -1 : message_started(s, usage);
}

static int on_block_start(dialect_stream_t *s, const cJSON *d)
{
    const cJSON *b = get(d, "content_block"), *ix = get(d, "index"), *input = get(b, "input");
    const char *type = str_of(b, "type"), *id = str_of(b, "id"), *name = str_of(b, "name");
    if (s->open != BLOCK_NONE || !cJSON_IsNumber(ix) || !type)
        return -1;
    s->open_index = ix->valuedouble;
    if (is(type, "text")) {
        s->open = BLOCK_TEXT;
        return str_of(b, "text") ? content_chunk(s, str_of(b, "text")) : 0;
    }
    if (is(type, "thinking") || is(type, "redacted_thinking")) {
        s->open = BLOCK_SKIP;
        return 0;
    }
    if (!is(type, "tool_use") || !id || !name)
        return -1;
    s->open = BLOCK_TOOL;
    s->args_sent = 0;
    /* a tool without parameters may come whole in the start, with no deltas */
    if (cJSON_IsObject(input) && input->child && !(s->start_input = cJSON_PrintUnformatted(input)))
        return -1;
    return chunk_open(s) || add_s(s, "{\"tool_calls\":[{\"index\":") || add_int(s, s->tools) ||
           add_s(s, ",\"id\":") || add_q(s, id) || add_s(s, ",\"type\":\"function\",\"function\":{\"name\":") ||
           add_q(s, name) || add_s(s, ",\"arguments\":\"\"}}]") || chunk_close(s, NULL)
               ? -1
               : 0;
}

static int on_block_delta(dialect_stream_t *s, const cJSON *d)
{
    const cJSON *ix = get(d, "index"), *delta = get(d, "delta");
    const char *type = str_of(delta, "type");
    if (s->open == BLOCK_NONE || !cJSON_IsNumber(ix) || ix->valuedouble != s->open_index || !type)
        return -1;
    if (s->open == BLOCK_SKIP)
        return 0;
    if (s->open == BLOCK_TEXT) {
        if (is(type, "citations_delta"))
            return 0;                   /* a note on text already sent */
        return is(type, "text_delta") && str_of(delta, "text") ? content_chunk(s, str_of(delta, "text")) : -1;
    }
    if (!is(type, "input_json_delta") || !str_of(delta, "partial_json"))
        return -1;
    if (!*str_of(delta, "partial_json"))
        return 0;
    s->args_sent = 1;
    return args_chunk(s, str_of(delta, "partial_json"));
}

/* IX: the event's index, NAN when it has none that is a number */
static int on_block_stop(dialect_stream_t *s, double ix)
{
    int rc = 0;
    if (s->open == BLOCK_NONE || ix != s->open_index)
        return -1;
    if (s->open == BLOCK_TOOL) {
        /* OpenAI's clients parse the arguments: never leave them empty */
        if (!s->args_sent)
            rc = args_chunk(s, s->start_input ? s->start_input : "{}");
        free(s->start_input);
        s->start_input = NULL;
        s->tools++;
    }
    s->open = BLOCK_NONE;
    return rc;
}

/* The message has ended, for FINISH (an OpenAI finish_reason): the chunk that says so. */
static int message_finished(dialect_stream_t *s, const char *finish, dialect_usage_t *usage)
{
    to_usage(&s->tk, usage);
    s->finished = 1;
    return chunk_open(s) || add_s(s, "{") || chunk_close(s, finish) ? -1 : 0;
}

static int on_message_delta(dialect_stream_t *s, const cJSON *d, dialect_usage_t *usage)
{
    const cJSON *delta = get(d, "delta"), *reason = get(delta, "stop_reason");
    if (!cJSON_IsObject(delta) || (!absent(reason) && !cJSON_IsString(reason)))
        return -1;
    take_tokens(get(d, "usage"), &s->tk, 1);
    return message_finished(s, finish_reason(cJSON_IsString(reason) ? reason->valuestring : NULL), usage);
}

static int on_message_stop(dialect_stream_t *s)
{
    if (!s->finished || s->open != BLOCK_NONE)
        return -1;                      /* Anthropic always ends its blocks and says why it stopped */
    if (s->include_usage) {
        int64_t p = nonneg(s->tk.input) + nonneg(s->tk.cache_read) + nonneg(s->tk.cache_creation);
        int64_t c = nonneg(s->tk.output);
        if (add(s, s->head, s->head_len) || add_s(s, "\"choices\":[],\"usage\":{\"prompt_tokens\":") ||
            add_int(s, p) || add_s(s, ",\"completion_tokens\":") || add_int(s, c) ||
            add_s(s, ",\"total_tokens\":") || add_int(s, p + c) ||
            add_s(s, ",\"prompt_tokens_details\":{\"cached_tokens\":") || add_int(s, nonneg(s->tk.cache_read)) ||
            add_s(s, "}}}\n\n"))
            return -1;
    }
    if (add_s(s, "data: [DONE]\n\n"))
        return -1;
    s->done = 1;
    return 1;
}

static int on_event(dialect_stream_t *s, const char *type, const cJSON *d, dialect_usage_t *usage)
{
    if (is(type, "ping"))
        return 0;
    if (is(type, "error"))
        return -1;                      /* the relay ends the stream with its own error event */
    if (is(type, "message_start"))
        return s->started ? -1 : on_message_start(s, d, usage);
    if (!s->started)
        return -1;                      /* nothing can be said before the message's id */
    if (is(type, "content_block_start"))
        return on_block_start(s, d);
    if (is(type, "content_block_delta"))
        return on_block_delta(s, d);
    if (is(type, "content_block_stop"))
        return on_block_stop(s, cJSON_IsNumber(get(d, "index")) ? get(d, "index")->valuedouble : NAN);
    if (is(type, "message_delta"))
        return on_message_delta(s, d, usage);
    if (is(type, "message_stop"))
        return on_message_stop(s);
    return 0;                           /* a type added since: Anthropic asks clients to pass over them */
}

/* A JSON index at D[*K] (digits, no leading zero, at most 9 of them),
 * its value in *IX and *K moved past it; 0 when there is none. */
static int index_at(const char *d, size_t n, size_t *k, double *ix)
{
    size_t i = *k;
    double v = 0;
    while (i < n && i - *k < 9 && d[i] >= '0' && d[i] <= '9')
        v = v * 10 + (d[i++] - '0');
    if (i == *k || (d[*k] == '0' && i - *k > 1) || (i < n && d[i] >= '0' && d[i] <= '9'))
        return 0;
    *k = i;
    *ix = v;
    return 1;
}

/* Whether D (N bytes) is LIT, an index, then REST, exactly. */
static int spelled(const char *d, size_t n, const char *lit, size_t lit_len, const char *rest, size_t rest_len,
                   double *ix)
{
    size_t k = lit_len;
    return n > lit_len + rest_len && memcmp(d, lit, lit_len) == 0 && index_at(d, n, &k, ix) &&
           n - k == rest_len && memcmp(d + k, rest, rest_len) == 0;
}
#define SPELLED(d, n, lit, rest, ix) spelled(d, n, lit, sizeof(lit) - 1, rest, sizeof(rest) - 1, ix)
#define EVENT_IS(f, name) ((f)->event == NULL || ((f)->event_len == sizeof(name) - 1 && \
                           memcmp((f)->event, name, sizeof(name) - 1) == 0))

/* The one event a stream is mostly made of, a text delta of the open text
 * block, read without building a tree: DATA (N bytes, not yet validated)
 * is exactly Anthropic's own spelling,
 * {"type":"content_block_delta","index":I,"delta":{"type":"text_delta","text":"..."}},
 * and its text, once jscan finds it a valid JSON string (which makes the
 * whole event valid JSON), goes into the chunk as it came, with one copy.
 * Returns 1 when the event was taken (with -1 in *RC on a failure), 0 when
 * it is anything else: the long way validates and reads it. */
static int text_delta_fast(dialect_stream_t *s, const char *d, size_t n, int *rc)
{
    static const char pre[] = "{\"type\":\"content_block_delta\",\"index\":";
    static const char mid[] = ",\"delta\":{\"type\":\"text_delta\",\"text\":";
    static const char content[] = "{\"content\":";
    size_t k = sizeof(pre) - 1, start, need;
    double ix;
    long q;
    int escapes = 0;
    char *w;
    if (s->open != BLOCK_TEXT || n < sizeof(pre) + sizeof(mid) || memcmp(d, pre, sizeof(pre) - 1) != 0 ||
        !index_at(d, n, &k, &ix) || ix != s->open_index || n - k < sizeof(mid) - 1 ||
        memcmp(d + k, mid, sizeof(mid) - 1) != 0)
        return 0;
    start = k + sizeof(mid) - 1;        /* the text's opening quote */
    if ((q = jscan_string_len(d + start, n - start, &escapes)) < 0 || start + (size_t)q + 2 != n ||
        d[n - 2] != '}' || d[n - 1] != '}')
        return 0;                       /* not a valid string, or more members after it: the long way */
    s->o.len = 0;
    *rc = 0;
    if (escapes && dialect_bad_escape(d + start, (size_t)q))
        *rc = -1;                       /* \u0000 or a lone surrogate, refused as the long way refuses them */
    else if (q == 2)
        return 1;                       /* an empty text says nothing */
    /* chunk_open, the content, chunk_close(NULL): one growth, then copies */
    need = s->head_len + sizeof(CHUNK_OPEN) - 1 + sizeof(content) - 1 + (size_t)q + sizeof(CHUNK_CLOSE) - 1 +
           sizeof(USAGE_NULL) - 1 + sizeof(CHUNK_END) - 1;
    if (*rc < 0 || !mem_grow(&s->o.buf, &s->o.cap, need)) {
        *rc = -1;
        return 1;
    }
    w = s->o.buf;
    memcpy(w, s->head, s->head_len), w += s->head_len;
    memcpy(w, CHUNK_OPEN, sizeof(CHUNK_OPEN) - 1), w += sizeof(CHUNK_OPEN) - 1;
    memcpy(w, content, sizeof(content) - 1), w += sizeof(content) - 1;
    memcpy(w, d + start, (size_t)q), w += q;
    memcpy(w, CHUNK_CLOSE, sizeof(CHUNK_CLOSE) - 1), w += sizeof(CHUNK_CLOSE) - 1;
    if (s->include_usage)
        memcpy(w, USAGE_NULL, sizeof(USAGE_NULL) - 1), w += sizeof(USAGE_NULL) - 1;
    memcpy(w, CHUNK_END, sizeof(CHUNK_END) - 1), w += sizeof(CHUNK_END) - 1;
    s->o.len = (size_t)(w - s->o.buf);
    return 1;
}

/* The events whose whole spelling is fixed but for an index, read without
 * a tree when Anthropic spells them as it does: ping, message_stop, a
 * block's stop, and the start of a text block with no text yet. Returns 1
 * when the event was taken (its result in *RC), 0 for the long way. */
static int fixed_event(dialect_stream_t *s, const sse_fields_t *f, const char *d, size_t n, int *rc)
{
    double ix;
    if (n == 15 && memcmp(d, "{\"type\":\"ping\"}", 15) == 0 && EVENT_IS(f, "ping"))
        *rc = 0;
    else if (!s->started)
        return 0;                       /* the long way says what is wrong */
    else if (n == 23 && memcmp(d, "{\"type\":\"message_stop\"}", 23) == 0 && EVENT_IS(f, "message_stop"))
        *rc = on_message_stop(s);
    else if (SPELLED(d, n, "{\"type\":\"content_block_stop\",\"index\":", "}", &ix) &&
             EVENT_IS(f, "content_block_stop"))
        *rc = on_block_stop(s, ix);
    else if (SPELLED(d, n, "{\"type\":\"content_block_start\",\"index\":",
                     ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}", &ix) &&
             EVENT_IS(f, "content_block_start") && s->open == BLOCK_NONE) {
        s->open_index = ix;
        s->open = BLOCK_TEXT;
        *rc = 0;                        /* an empty text says nothing */
    } else
        return 0;
    return 1;
}

/* message_start and message_delta read without a tree, as answer_fast
 * reads an answer: the message's id (as it came) and usage, the stop
 * reason and the final counts. Returns 1 when the event was taken (its
 * result in *RC), 0 for the long way (escaped keys or compared strings,
 * anything unexpected), which reads it exactly as before. */
static int message_fast(dialect_stream_t *s, const sse_fields_t *f, const char *d, size_t n, dialect_usage_t *usage,
                        int *rc)
{
    static const char lead[] = "{\"type\":\"message_";   /* Anthropic's spelling of both */
    static const char *const top_keys[] = { "type", "message", "delta", "usage" };
    static const char *const msg_keys[] = { "id", "usage" };
    static const char *const delta_keys[] = { "stop_reason" };
    raw_t top[4] = { { 0 } }, m[2] = { { 0 } }, reason[1] = { { 0 } };
    jscan_t j;
    int start_event;
    if (n < sizeof(lead) || memcmp(d, lead, sizeof(lead) - 1) != 0 || jscan_body(d, n, &j) != JSCAN_OK ||
        dialect_bad_escape(d, n) || members(d, n, 0, top_keys, top, 4, 0) < 0 || raw_escaped(top[0]))
        return 0;
    start_event = raw_is(top[0], "message_start");
    if (start_event ? !EVENT_IS(f, "message_start") : !raw_is(top[0], "message_delta") || !EVENT_IS(f, "message_delta"))
        return 0;
    if (start_event) {
        if (s->started || !top[1].p || top[1].p[0] != '{' ||
            members(d, n, (size_t)(top[1].p - d), msg_keys, m, 2, 0) < 0 || !m[0].p || m[0].p[0] != '"' ||
            raw_tokens(d, n, m[1], &s->tk, 0) < 0)   /* (message_start's output count is a placeholder) */
            return 0;
        *rc = head_start(s) || add(s, m[0].p, m[0].n) ? -1 : message_started(s, usage);
        return 1;
    }
    if (!s->started || !top[2].p || top[2].p[0] != '{' ||
        members(d, n, (size_t)(top[2].p - d), delta_keys, reason, 1, 0) < 0 || raw_escaped(reason[0]) ||
        (reason[0].p && reason[0].p[0] != '"' && !raw_is_null(reason[0])) || raw_tokens(d, n, top[3], &s->tk, 1) < 0)
        return 0;
    *rc = message_finished(s, raw_finish(reason[0]), usage);
    return 1;
}

static int stream_event(dialect_stream_t *s, const char *ev, size_t len, struct evbuffer *out,
                        dialect_usage_t *usage)
{
    sse_fields_t f;
    cJSON *d = NULL;
    const char *type;
    long n;
    int rc;
    if (!s || s->done || len == SIZE_MAX || !mem_grow(&s->data, &s->data_cap, len + 1))
        return -1;
    if ((n = sse_event(ev, len, &f, s->data, s->data_cap)) == -2)
        return 0;                       /* a comment or an event without data: nothing to translate */
    if (n < 0)
        return -1;
    s->o.len = 0;
    if ((EVENT_IS(&f, "content_block_delta") && text_delta_fast(s, f.data, (size_t)n, &rc)) ||
        fixed_event(s, &f, f.data, (size_t)n, &rc) || message_fast(s, &f, f.data, (size_t)n, usage, &rc)) {
        /* taken */
    } else if (!(d = dialect_parse(f.data, (size_t)n))) {
        return -1;
    } else {
        type = str_of(d, "type");
        s->o.len = 0;
        if (!type || (f.event && (f.event_len != strlen(type) || memcmp(f.event, type, f.event_len) != 0)))
            rc = -1;
        else
            rc = on_event(s, type, d, usage);
    }
    if (rc >= 0 && s->o.len && evbuffer_add(out, s->o.buf, s->o.len) != 0)
        rc = -1;
    cJSON_Delete(d);
    return rc;
}

/* ------------------------------------------------------------------ error */

static const char *openai_error_type(const char *anthropic_type)
{
    if (is(anthropic_type, "invalid_request_error") || is(anthropic_type, "not_found_error") ||
        is(anthropic_type, "request_too_large") || is(anthropic_type, "permission_error"))
        return "invalid_request_error";
    if (is(anthropic_type, "authentication_error"))
        return "authentication_error";
    if (is(anthropic_type, "rate_limit_error"))
        return "rate_limit_error";
    return "server_error";              /* api_error, overloaded_error, and any other */
}

static const char *status_error_type(int status)
{
    switch (status) {
    case 400: case 403: case 404: case 413: return "invalid_request_error";
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    default: return "server_error";
    }
}

/* MSG and CODE (NULL: null) quoted into OpenAI's error shape; the quoting
 * also makes whatever bytes the upstream sent valid UTF-8. */
static int put_error(struct evbuffer *out, const char *msg, const char *type, const char *code)
{
    size_t cap = 6 * strlen(msg) + 6 * (code ? strlen(code) : 0) + 128;
    char *b = malloc(cap);
    size_t n;
    long w;
    int rc = -1;
    if (!b)
        return -1;
    n = (size_t)snprintf(b, cap, "{\"error\":{\"message\":");
    if ((w = jscan_quote(msg, b + n, cap - n)) < 0)
        goto done;
    n += (size_t)w;
    n += (size_t)snprintf(b + n, cap - n, ",\"type\":\"%s\",\"param\":null,\"code\":", type);
    if (code) {
        if ((w = jscan_quote(code, b + n, cap - n)) < 0)
            goto done;
        n += (size_t)w;
    } else {
        n += (size_t)snprintf(b + n, cap - n, "null");
    }
    n += (size_t)snprintf(b + n, cap - n, "}}");
    rc = n < cap && evbuffer_add(out, b, n) == 0 ? 0 : -1;
done:
    free(b);
    return rc;
}

static void error(int status, const char *body, size_t len, struct evbuffer *out)
{
    static const char oom[] = "{\"error\":{\"message\":\"out of memory while translating the upstream's error\","
                              "\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    cJSON *in = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *e = get(in, "error");
    const char *type = str_of(e, "type"), *msg = str_of(e, "message");
    int rc;
    if (type && msg) {
        rc = put_error(out, msg, openai_error_type(type), type);
    } else {
        char m[128];
        snprintf(m, sizeof(m), "the Anthropic upstream answered %d with a body that is not one of its errors", status);
        rc = put_error(out, m, status_error_type(status), NULL);
    }
    if (rc < 0)
        evbuffer_add(out, oom, sizeof(oom) - 1);
    cJSON_Delete(in);
}

const dialect_ops_t dialect_openai_to_anthropic = {
    .request = request,
    .answer = answer,
    .stream_new = stream_new,
    .stream_event = stream_event,
    .stream_free = stream_free,
    .error = error,
};
