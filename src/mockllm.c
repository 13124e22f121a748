/* mockllm.c - a mock OpenAI-compatible provider on libevent, for turnout's tests and benchmarks.
 * With --protocol anthropic it is an Anthropic Messages API provider instead
 * (POST /v1/messages, Anthropic-shaped answers, streams and errors), so the
 * dialect translations are tested against the shapes the real APIs send.
 *
 * Behaviour is chosen per instance by flags (a fixed status, 429 with
 * Retry-After, a delay before headers, SSE streams of N events T ms apart and
 * of a chosen size, closing, resetting or going silent after K events). Each
 * event carries the wall-clock time it was written ("sent_ms") so tests can
 * measure relay latency; with no interval the next event is written only
 * when the previous one has left the socket buffer, so a slow reader slows
 * the stream down instead of growing the mock's memory. Every request is recorded in an in-memory log that
 * tests read at GET /_mock/log (path, model, body hash, headers).
 *
 * Tool use: a chat request with `tools` whose last message is not a tool
 * result is answered with one call of the first tool (or the one tool_choice
 * names), its arguments built from the tool's schema, so both dialects'
 * tool-call shapes, streamed and whole, have an upstream to come from. */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX 100000

typedef struct opts {
    const char *host;
    int port;
    int status;             /* forced status, 0 = normal answers */
    const char *retry_after;
    long fail_first;        /* only the first N requests get the forced status; -1 = all */
    int delay_ms;
    int stream_events;
    int stream_interval_ms;
    int close_after;        /* -1 = never */
    int reset_after;        /* -1 = never: after K events, close with a TCP reset */
    int stall_after;        /* -1 = never: after K events, send nothing more */
    int event_bytes;        /* pad each event's content to about this many bytes */
    const char *port_file;
    const char *name;
    int no_log;             /* benchmarks: keep no request log */
    int anthropic;          /* --protocol anthropic: serve the Messages API */
} opts_t;

/* What a chat request is answered with. */
enum { ANS_TEXT, ANS_TOOL_CALL, ANS_TOOL_RESULT };

/* One request being answered (delayed or streaming). */
typedef struct pending {
    struct evhttp_request *req;
    struct event *timer;
    struct event *watch;     /* notices the client hanging up while we wait */
    cJSON *entry;            /* its log entry: borrowed from the log, or owned */
    int owns_entry;          /* the entry is not in the log (--no-log, or the log is full) */
    char model[256];
    int stream;
    int sent;                /* events sent so far */
    int started;
    long id;                 /* the request's seq: names its answer's ids, which a delay must not shift */
    int kind;                /* ANS_*: set only for chat requests */
    int in_tokens, out_tokens;
    int include_usage;       /* OpenAI stream_options.include_usage */
    const char *stop_reason; /* Anthropic's: end_turn, max_tokens or tool_use */
    int events;              /* events of a scripted stream before its end; -1: the plain OpenAI stream */
    int pieces;              /* of them, the deltas that carry the text or the arguments */
    char *tool;              /* ANS_TOOL_CALL: the tool's name */
    char *payload;           /* its arguments (JSON text), or the answer's text; owned */
    struct pending *next, *prev;
} pending_t;

static opts_t o = { "127.0.0.1", 0, 0, NULL, -1, 0, 5, 0, -1, -1, -1, 0, NULL, "mockllm", 0, 0 };
static struct event_base *base;
static cJSON *reqlog;
static long seq, in_flight, max_in_flight;
static pending_t *pendings;
static struct timespec t_start;

static double ms_since_start(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ts.tv_sec - t_start.tv_sec) * 1e3 + (ts.tv_nsec - t_start.tv_nsec) / 1e6;
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int valid_utf8_text(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (c == 0 || k == 0 || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
        i += k;
    }
    return 1;
}

/* Reads the multipart form field NAME (no decoding: the mock only echoes). */
static int form_field(const char *ct, const char *body, size_t len, const char *name, char *out, size_t cap)
{
    const char *b = ct ? strcasestr(ct, "boundary=") : NULL;
    char delim[128], want[128];
    if (b == NULL)
        return -1;
    b += 9;
    size_t bl = strcspn(b, "; \t\"");
    if (*b == '"') { b++; bl = strcspn(b, "\""); }
    snprintf(delim, sizeof(delim), "--%.*s", (int)bl, b);
    snprintf(want, sizeof(want), "name=\"%s\"", name);
    const char *end = body + len, *p = memmem(body, len, delim, strlen(delim));
    while (p != NULL) {
        const char *h = p + strlen(delim), *he = memmem(h, (size_t)(end - h), "\r\n\r\n", 4), *next;
        if (he == NULL)
            return -1;
        next = memmem(he + 4, (size_t)(end - he - 4), delim, strlen(delim));
        if (next == NULL)
            return -1;
        const char *q = memmem(h, (size_t)(he - h), want, strlen(want));
        if (q != NULL && (q[-1] == ' ' || q[-1] == ';')) {
            size_t n = (size_t)(next - 2 - (he + 4));
            if (n >= cap)
                n = cap - 1;
            memcpy(out, he + 4, n);
            out[n] = '\0';
            return 0;
        }
        p = next;
    }
    return -1;
}

static void add_json_header(struct evhttp_request *req, const char *ct)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ct);
    evhttp_add_header(h, "x-mock-name", o.name);
}

static void send_text(struct evhttp_request *req, int status, const char *ct, const char *body, size_t n)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, n);
    add_json_header(req, ct);
    evhttp_send_reply(req, status, NULL, b);
    evbuffer_free(b);
}

static void send_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"message\":\"%s\",\"type\":\"mock_error\",\"param\":null,\"code\":\"%s\"}}",
                     msg, code);
    send_text(req, status, "application/json", body, (size_t)n);
}

/* Anthropic's error type for STATUS, as its API documents them. */
static const char *anthropic_error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 402: return "billing_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 504: return "timeout_error";
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

/* An error in the dialect served: OpenAI's shape with CODE, or Anthropic's
 * with the type its status implies. MSG is a fixed text, put in unescaped. */
static void send_fail(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    char body[512];
    int n;
    if (!o.anthropic) {
        send_error(req, status, code, msg);
        return;
    }
    n = snprintf(body, sizeof(body), "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}",
                 anthropic_error_type(status), msg);
    send_text(req, status, "application/json", body, (size_t)n);
}

/* Anthropic names every reply with a request-id header; its SDK exposes it. */
static void add_request_id(struct evhttp_request *req, long id)
{
    char v[40];
    if (!o.anthropic)
        return;
    snprintf(v, sizeof(v), "req_mock_%ld", id);
    evhttp_add_header(evhttp_request_get_output_headers(req), "request-id", v);
}

static void pending_free(pending_t *p)
{
    if (p->prev) p->prev->next = p->next; else pendings = p->next;
    if (p->next) p->next->prev = p->prev;
    if (p->timer)
        event_free(p->timer);
    if (p->watch)
        event_free(p->watch);
    if (p->owns_entry)
        cJSON_Delete(p->entry);
    free(p->tool);
    free(p->payload);
    free(p);
    in_flight--;
}

static void answer(pending_t *p);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    answer(arg);
}

/* evhttp does not read a connection while its request is being answered,
 * so a client that hangs up during a delay or a stream goes unseen until
 * the next write. A peek at the socket tells at once. */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    pending_t *p = arg;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    (void)what;
    if (n > 0) {                     /* pipelined bytes: not a hang-up */
        event_del(p->watch);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    struct evhttp_connection *conn = evhttp_request_get_connection(p->req);
    cJSON_AddTrueToObject(p->entry, "aborted");
    evhttp_connection_set_closecb(conn, NULL, NULL);
    pending_free(p);
    evhttp_connection_free(conn);    /* frees the unfinished request with it */
}

static void on_conn_close(struct evhttp_connection *c, void *arg)
{
    (void)c;
    /* the client left while we were delaying or streaming */
    for (pending_t *p = pendings; p != NULL; p = p->next) {
        if (p == arg) {
            cJSON_AddTrueToObject(p->entry, "aborted");
            /* libevent detaches an unfinished request from a failed
             * connection and leaves it to us; ending it frees it. */
            if (evhttp_request_get_connection(p->req) == NULL)
                evhttp_send_reply_end(p->req);
            pending_free(p);
            return;
        }
    }
}

static void stream_next(pending_t *p);

static void on_chunk_sent(struct evhttp_connection *c, void *arg)
{
    (void)c;
    stream_next(arg);
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Ends the stream abruptly once what was sent has reached the client:
 * RESET sends a TCP reset, otherwise a plain close (no last chunk, so the
 * chunked body is truncated). */
static void stream_cut(pending_t *p, int reset)
{
    struct evhttp_connection *c = evhttp_request_get_connection(p->req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c);
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        struct timeval again = { 0, 5000 };
        event_add(p->timer, &again);
        return;
    }
    if (reset) {
        struct linger lg = { 1, 0 };
        setsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    evhttp_connection_set_closecb(c, NULL, NULL);
    pending_free(p);
    evhttp_connection_free(c);
}

/* Moves I forward to the start of a UTF-8 character, so that a piece of a
 * text cut at I is still valid UTF-8 (a JSON string must be). */
static size_t utf8_start(const char *s, size_t len, size_t i)
{
    while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

/* How many deltas a stream splits TEXT into: one per --stream-events, at
 * least one so that nothing of it is lost, at most one per byte. */
static int pieces_of(const char *text)
{
    size_t len = strlen(text);
    size_t n = o.stream_events < 1 ? 1 : (size_t)o.stream_events;
    return (int)(n > len && len > 0 ? len : n);
}

/* The Ith of N pieces of TEXT, as a new string. */
static char *piece_of(const char *text, int i, int n)
{
    size_t len = strlen(text);
    size_t a = utf8_start(text, len, len * (size_t)i / (size_t)n);
    size_t b = utf8_start(text, len, len * (size_t)(i + 1) / (size_t)n);
    char *out = malloc(b - a + 1);
    memcpy(out, text + a, b - a);
    out[b - a] = '\0';
    return out;
}

/* The text of the Ith delta of a plain text stream: "tokI " padded to
 * about --event-bytes, as the OpenAI stream's content is. */
static char *tok_text(int i)
{
    int pad = o.event_bytes > 300 ? o.event_bytes - 300 : 0;
    char *t = malloc((size_t)pad + 32);
    int n = snprintf(t, 32, "tok%d ", i + 1);
    memset(t + n, 'x', (size_t)pad);
    t[n + pad] = '\0';
    return t;
}

static cJSON *anthropic_usage(int in_tokens, int out_tokens)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", in_tokens);
    cJSON_AddNumberToObject(u, "output_tokens", out_tokens);
    cJSON_AddNumberToObject(u, "cache_read_input_tokens", 0);
    cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
    return u;
}

static cJSON *tool_use_block(const pending_t *p, int with_input)
{
    char id[40];
    cJSON *b = cJSON_CreateObject();
    snprintf(id, sizeof(id), "toolu_mock_%ld", p->id);
    cJSON_AddStringToObject(b, "type", "tool_use");
    cJSON_AddStringToObject(b, "id", id);
    cJSON_AddStringToObject(b, "name", p->tool);
    /* a stream starts the block with an empty input and sends it as deltas */
    cJSON_AddItemToObject(b, "input", with_input ? cJSON_Parse(p->payload) : cJSON_CreateObject());
    return b;
}

/* The Messages API's message: whole (CONTENT), or as message_start has it,
 * with no content and no stop reason yet. */
static cJSON *anthropic_message(const pending_t *p, int content)
{
    char id[40];
    cJSON *m = cJSON_CreateObject(), *c = cJSON_CreateArray();
    snprintf(id, sizeof(id), "msg_mock_%ld", p->id);
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "type", "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "model", p->model);
    if (content && p->kind == ANS_TOOL_CALL) {
        cJSON_AddItemToArray(c, tool_use_block(p, 1));
    } else if (content) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "type", "text");
        cJSON_AddStringToObject(t, "text", p->payload);
        cJSON_AddItemToArray(c, t);
    }
    cJSON_AddItemToObject(m, "content", c);
    if (content)
        cJSON_AddStringToObject(m, "stop_reason", p->stop_reason);
    else
        cJSON_AddNullToObject(m, "stop_reason");
    cJSON_AddNullToObject(m, "stop_sequence");
    /* message_start reports the prompt and a first output token, as the real API does */
    cJSON_AddItemToObject(m, "usage", anthropic_usage(p->in_tokens, content ? p->out_tokens : 1));
    return m;
}

/* Event I of an Anthropic stream, into D; returns the event's name. The
 * order is the documented one: message_start, content_block_start, ping,
 * the deltas, content_block_stop, message_delta, message_stop. */
static const char *anthropic_event(const pending_t *p, int i, cJSON *d)
{
    int tool = p->kind == ANS_TOOL_CALL;
    if (i == 0) {
        cJSON_AddStringToObject(d, "type", "message_start");
        cJSON_AddItemToObject(d, "message", anthropic_message(p, 0));
        return "message_start";
    }
    if (i == 1) {
        cJSON *b = tool ? tool_use_block(p, 0) : cJSON_CreateObject();
        if (!tool) {
            cJSON_AddStringToObject(b, "type", "text");
            cJSON_AddStringToObject(b, "text", "");
        }
        cJSON_AddStringToObject(d, "type", "content_block_start");
        cJSON_AddNumberToObject(d, "index", 0);
        cJSON_AddItemToObject(d, "content_block", b);
        return "content_block_start";
    }
    if (i == 2) {
        cJSON_AddStringToObject(d, "type", "ping");
        return "ping";
    }
    if (i < 3 + p->pieces) {
        cJSON *delta = cJSON_CreateObject();
        char *t = p->kind == ANS_TEXT ? tok_text(i - 3) : piece_of(p->payload, i - 3, p->pieces);
        cJSON_AddStringToObject(delta, "type", tool ? "input_json_delta" : "text_delta");
        cJSON_AddStringToObject(delta, tool ? "partial_json" : "text", t);
        free(t);
        cJSON_AddStringToObject(d, "type", "content_block_delta");
        cJSON_AddNumberToObject(d, "index", 0);
        cJSON_AddItemToObject(d, "delta", delta);
        return "content_block_delta";
    }
    if (i == 3 + p->pieces) {
        cJSON_AddStringToObject(d, "type", "content_block_stop");
        cJSON_AddNumberToObject(d, "index", 0);
        return "content_block_stop";
    }
    if (i == 4 + p->pieces) {
        cJSON *delta = cJSON_CreateObject(), *u = cJSON_CreateObject();
        cJSON_AddStringToObject(delta, "stop_reason", p->stop_reason);
        cJSON_AddNullToObject(delta, "stop_sequence");
        cJSON_AddNumberToObject(u, "output_tokens", p->out_tokens);
        cJSON_AddStringToObject(d, "type", "message_delta");
        cJSON_AddItemToObject(d, "delta", delta);
        cJSON_AddItemToObject(d, "usage", u);
        return "message_delta";
    }
    cJSON_AddStringToObject(d, "type", "message_stop");
    return "message_stop";
}

static cJSON *openai_usage(const pending_t *p)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", p->in_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", p->out_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", p->in_tokens + p->out_tokens);
    return u;
}

/* Chunk I of an OpenAI tool-call stream, into D, as OpenAI sends one: the
 * call's id and name with empty arguments, the arguments in pieces, the
 * finish_reason, then the usage (only when include_usage asked for it;
 * every chunk before it then carries "usage": null). */
static void openai_tool_chunk(const pending_t *p, int i, cJSON *d)
{
    cJSON *choices = cJSON_CreateArray(), *choice = cJSON_CreateObject(), *delta = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "id", "chatcmpl-mock");
    cJSON_AddStringToObject(d, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(d, "created", (double)time(NULL));
    cJSON_AddStringToObject(d, "model", p->model);
    cJSON_AddStringToObject(d, "system_fingerprint", o.name);
    cJSON_AddItemToObject(d, "choices", choices);
    if (i == p->pieces + 2) {               /* the usage chunk has no choice */
        cJSON_Delete(choice);
        cJSON_Delete(delta);
        cJSON_AddItemToObject(d, "usage", openai_usage(p));
        return;
    }
    if (p->include_usage)
        cJSON_AddNullToObject(d, "usage");
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON_AddItemToObject(choice, "delta", delta);
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddItemToArray(choices, choice);
    if (i == p->pieces + 1) {
        cJSON_AddStringToObject(choice, "finish_reason", "tool_calls");
        return;
    }
    cJSON_AddNullToObject(choice, "finish_reason");
    cJSON *calls = cJSON_CreateArray(), *call = cJSON_CreateObject(), *fn = cJSON_CreateObject();
    cJSON_AddNumberToObject(call, "index", 0);
    if (i == 0) {
        char id[40];
        snprintf(id, sizeof(id), "call_mock_%ld", p->id);
        cJSON_AddStringToObject(delta, "role", "assistant");
        cJSON_AddNullToObject(delta, "content");
        cJSON_AddStringToObject(call, "id", id);
        cJSON_AddStringToObject(call, "type", "function");
        cJSON_AddStringToObject(fn, "name", p->tool);
        cJSON_AddStringToObject(fn, "arguments", "");
    } else {
        char *t = piece_of(p->payload, i - 1, p->pieces);
        cJSON_AddStringToObject(fn, "arguments", t);
        free(t);
    }
    cJSON_AddItemToObject(call, "function", fn);
    cJSON_AddItemToArray(calls, call);
    cJSON_AddItemToObject(delta, "tool_calls", calls);
}

/* The next event of a scripted stream (an Anthropic one, or an OpenAI tool
 * call), with the same event_index and sent_ms as the plain stream's. */
static void scripted_event(pending_t *p, struct evbuffer *b)
{
    cJSON *d = cJSON_CreateObject();
    const char *name = NULL;
    if (o.anthropic)
        name = anthropic_event(p, p->sent, d);
    else
        openai_tool_chunk(p, p->sent, d);
    cJSON_AddNumberToObject(d, "event_index", p->sent);
    cJSON_AddNumberToObject(d, "sent_ms", wall_ms());
    char *text = cJSON_PrintUnformatted(d);
    if (name != NULL)
        evbuffer_add_printf(b, "event: %s\n", name);
    evbuffer_add_printf(b, "data: %s\n\n", text);
    free(text);
    cJSON_Delete(d);
}

/* Sends B, one event, and schedules the next: after the interval, or with
 * none once B has left the socket buffer. */
static void stream_push(pending_t *p, struct evbuffer *b)
{
    struct timeval tv = { o.stream_interval_ms / 1000, (o.stream_interval_ms % 1000) * 1000 };
    p->sent++;
    if (o.stream_interval_ms > 0) {
        evhttp_send_reply_chunk(p->req, b);
        event_add(p->timer, &tv);
    } else {
        evhttp_send_reply_chunk_with_cb(p->req, b, on_chunk_sent, p);
    }
    evbuffer_free(b);
}

static void stream_end(pending_t *p)
{
    evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
    evhttp_send_reply_end(p->req);
    pending_free(p);
}

static void stream_next(pending_t *p)
{
    struct evbuffer *b;
    if (o.close_after >= 0 && p->sent >= o.close_after) {
        stream_cut(p, 0);
        return;
    }
    if (o.reset_after >= 0 && p->sent >= o.reset_after) {
        stream_cut(p, 1);
        return;
    }
    if (o.stall_after >= 0 && p->sent >= o.stall_after)
        return;                          /* silent until the client gives up */
    b = evbuffer_new();
    if (p->events >= 0 && p->sent < p->events) {
        /* Every event counts for --close-after and the like, an Anthropic
         * stream's message_stop too: it ends the stream as soon as it is
         * written, as [DONE] does the OpenAI one. */
        scripted_event(p, b);
        if (o.anthropic && p->sent + 1 == p->events) {
            p->sent++;
            evhttp_send_reply_chunk(p->req, b);
            evbuffer_free(b);
            stream_end(p);
            return;
        }
        stream_push(p, b);
        return;
    } else if (p->events < 0 && p->sent < o.stream_events) {
        int pad = o.event_bytes > 300 ? o.event_bytes - 300 : 0;
        evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
                               "\"created\":%ld,\"model\":\"%s\",\"system_fingerprint\":\"%s\",\"choices\":"
                               "[{\"index\":0,\"delta\":{\"content\":\"tok%d ", (long)time(NULL), p->model,
                            o.name, p->sent + 1);
        for (; pad > 0; pad -= 64)
            evbuffer_add(b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", pad < 64 ? (size_t)pad : 64);
        evbuffer_add_printf(b, "\"},\"finish_reason\":null}],\"event_index\":%d,\"sent_ms\":%.3f}\n\n",
                            p->sent, wall_ms());
        stream_push(p, b);
        return;
    }
    /* as OpenAI ends a text stream: the finish_reason, the usage when asked
     * for, [DONE] (a scripted stream, a tool call's, wrote its own) */
    if (p->events < 0) {
        evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":%ld,"
                               "\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
                            (long)time(NULL), p->model);
        if (p->include_usage)
            evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":%ld,"
                                   "\"model\":\"%s\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                                   "\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
                                (long)time(NULL), p->model, p->sent, p->sent + 3);
    }
    evbuffer_add_printf(b, "data: [DONE]\n\n");
    evhttp_send_reply_chunk(p->req, b);
    evbuffer_free(b);
    stream_end(p);
}

/* The endpoint a request is for: its path, with Azure's deployment paths
 * (/openai/deployments/NAME/chat/completions?api-version=V) read as the
 * OpenAI paths they stand for. */
static const char *path_of(struct evhttp_request *req)
{
    static char mapped[300];
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), *rest;
    if (path != NULL && strncmp(path, "/openai/deployments/", 20) == 0 && (rest = strchr(path + 20, '/')) != NULL) {
        snprintf(mapped, sizeof(mapped), "/v1%s", rest);
        return mapped;
    }
    return path;
}

/* Sends the whole chat.completion of P whose one choice is MSG (owned)
 * with FINISH as its finish_reason. */
static void send_completion(pending_t *p, cJSON *msg, const char *finish)
{
    char id[40];
    cJSON *c = cJSON_CreateObject(), *choices = cJSON_CreateArray(), *choice = cJSON_CreateObject();
    snprintf(id, sizeof(id), "chatcmpl-mock-%ld", p->id);
    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "object", "chat.completion");
    cJSON_AddNumberToObject(c, "created", (double)time(NULL));
    cJSON_AddStringToObject(c, "model", p->model);
    cJSON_AddStringToObject(c, "system_fingerprint", o.name);
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON_AddItemToObject(choice, "message", msg);
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", finish);
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddItemToObject(c, "choices", choices);
    cJSON_AddItemToObject(c, "usage", openai_usage(p));
    char *text = cJSON_PrintUnformatted(c);
    send_text(p->req, 200, "application/json", text, strlen(text));
    free(text);
    cJSON_Delete(c);
}

/* The whole chat.completion that calls P's tool. */
static void send_tool_call(pending_t *p)
{
    char id[40];
    cJSON *msg = cJSON_CreateObject(), *calls = cJSON_CreateArray(), *call = cJSON_CreateObject();
    cJSON *fn = cJSON_CreateObject();
    snprintf(id, sizeof(id), "call_mock_%ld", p->id);
    cJSON_AddStringToObject(call, "id", id);
    cJSON_AddStringToObject(call, "type", "function");
    cJSON_AddStringToObject(fn, "name", p->tool);
    cJSON_AddStringToObject(fn, "arguments", p->payload);   /* a JSON text in a string, as OpenAI sends it */
    cJSON_AddItemToObject(call, "function", fn);
    cJSON_AddItemToArray(calls, call);
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddNullToObject(msg, "content");
    cJSON_AddItemToObject(msg, "tool_calls", calls);
    send_completion(p, msg, "tool_calls");
}

/* The whole chat.completion answering a tool message in P's words. */
static void send_words(pending_t *p)
{
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", p->payload);
    send_completion(p, msg, "stop");
}

/* Sends the answer for P now (after any delay). */
static void answer(pending_t *p)
{
    struct evhttp_request *req = p->req;
    const char *path = path_of(req);
    char body[2048];
    int n;
    if (p->started) {
        stream_next(p);
        return;
    }
    p->started = 1;
    cJSON *forced = cJSON_GetObjectItem(p->entry, "forced");
    if (forced != NULL) {
        if (o.status == 429 && o.retry_after != NULL)
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", o.retry_after);
        snprintf(body, sizeof(body), "mockllm forced status %d", o.status);
        char code[32];
        snprintf(code, sizeof(code), "mock_%d", o.status);
        add_request_id(req, p->id);
        send_fail(req, o.status, code, body);
    } else if (p->stream) {
        add_request_id(req, p->id);
        add_json_header(req, "text/event-stream");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-cache");
        evhttp_send_reply_start(req, 200, "OK");
        stream_next(p);
        return;
    } else if (o.anthropic) {                /* /v1/messages, the one endpoint */
        cJSON *m = anthropic_message(p, 1);
        char *text = cJSON_PrintUnformatted(m);
        add_request_id(req, p->id);
        send_text(req, 200, "application/json", text, strlen(text));
        free(text);
        cJSON_Delete(m);
    } else if (p->kind == ANS_TOOL_CALL) {
        send_tool_call(p);
    } else if (strcmp(path, "/v1/chat/completions") == 0 && p->kind == ANS_TOOL_RESULT) {
        send_words(p);
    } else if (strcmp(path, "/v1/chat/completions") == 0) {
        n = snprintf(body, sizeof(body),
                     "{\"id\":\"chatcmpl-mock-%ld\",\"object\":\"chat.completion\",\"created\":%ld,"
                     "\"model\":\"%s\",\"system_fingerprint\":\"%s\",\"choices\":[{\"index\":0,\"message\":"
                     "{\"role\":\"assistant\",\"content\":\"Hello from mockllm\"},\"logprobs\":null,"
                     "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":5,"
                     "\"total_tokens\":%d}}", seq, (long)time(NULL), p->model, o.name,
                     cJSON_GetObjectItem(p->entry, "body_len")->valueint / 4,
                     cJSON_GetObjectItem(p->entry, "body_len")->valueint / 4 + 5);
        send_text(req, 200, "application/json", body, (size_t)n);
    } else if (strcmp(path, "/v1/completions") == 0) {
        n = snprintf(body, sizeof(body),
                     "{\"id\":\"cmpl-mock-%ld\",\"object\":\"text_completion\",\"created\":%ld,\"model\":\"%s\","
                     "\"choices\":[{\"text\":\"Hello from mockllm\",\"index\":0,\"logprobs\":null,"
                     "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,"
                     "\"total_tokens\":8}}", seq, (long)time(NULL), p->model);
        send_text(req, 200, "application/json", body, (size_t)n);
    } else if (strcmp(path, "/v1/embeddings") == 0) {
        n = snprintf(body, sizeof(body),
                     "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":"
                     "[0.1,-0.2,0.3,-0.4,0.5,-0.6,0.7,-0.8]}],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":3,"
                     "\"total_tokens\":3}}", p->model);
        send_text(req, 200, "application/json", body, (size_t)n);
    } else if (strcmp(path, "/v1/images/generations") == 0) {
        n = snprintf(body, sizeof(body), "{\"created\":%ld,\"model\":\"%s\",\"data\":[{\"url\":"
                     "\"http://mock/image.png\"}]}", (long)time(NULL), p->model);
        send_text(req, 200, "application/json", body, (size_t)n);
    } else if (strcmp(path, "/v1/audio/speech") == 0) {
        unsigned char audio[4096];
        for (size_t i = 0; i < sizeof(audio); i++)
            audio[i] = (unsigned char)((i * 31 + 7) & 0xff);
        evhttp_add_header(evhttp_request_get_output_headers(req), "x-mock-model", p->model);
        send_text(req, 200, "audio/mpeg", (const char *)audio, sizeof(audio));
    } else if (strcmp(path, "/v1/audio/transcriptions") == 0) {
        n = snprintf(body, sizeof(body), "{\"text\":\"mock transcription\",\"model\":\"%s\"}", p->model);
        send_text(req, 200, "application/json", body, (size_t)n);
    } else if (strcmp(path, "/v1/responses") == 0) {
        n = snprintf(body, sizeof(body), "{\"id\":\"resp_mock_%ld\",\"object\":\"response\",\"status\":\"completed\","
                     "\"model\":\"%s\",\"output\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":"
                     "[{\"type\":\"output_text\",\"text\":\"Hello from mockllm\"}]}]}", seq, p->model);
        send_text(req, 200, "application/json", body, (size_t)n);
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    pending_free(p);
}

static void serve_control(struct evhttp_request *req, const char *path)
{
    char *text;
    if (strcmp(path, "/_mock/log") == 0 && evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
        cJSON_Delete(reqlog);
        reqlog = cJSON_CreateArray();
        seq = 0;
        max_in_flight = in_flight;
        evhttp_send_reply(req, 204, "No Content", NULL);
        return;
    }
    if (strcmp(path, "/_mock/log") == 0) {
        text = cJSON_PrintUnformatted(reqlog);
    } else if (strcmp(path, "/_mock/stats") == 0) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "requests", (double)seq);
        cJSON_AddNumberToObject(s, "in_flight", (double)in_flight);
        cJSON_AddNumberToObject(s, "max_in_flight", (double)max_in_flight);
        text = cJSON_PrintUnformatted(s);
        cJSON_Delete(s);
    } else {
        send_error(req, 404, "not_found", "no such mock control path");
        return;
    }
    send_text(req, 200, "application/json", text, strlen(text));
    free(text);
}

static const char *const endpoints[] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/images/generations",
    "/v1/audio/speech", "/v1/audio/transcriptions", "/v1/responses", NULL,
};

/* The Messages API serves only this; everything else is its 404. */
static const char *const anthropic_endpoints[] = { "/v1/messages", NULL };

static cJSON *field(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* A tool's name and its parameters' schema, in the dialect served: OpenAI's
 * {"type":"function","function":{"name","parameters"}}, Anthropic's
 * {"name","input_schema"}. */
static const char *tool_name(const cJSON *t, const cJSON **schema)
{
    const cJSON *holder = o.anthropic ? t : field(t, "function");
    const cJSON *name = field(holder, "name");
    *schema = field(holder, o.anthropic ? "input_schema" : "parameters");
    return cJSON_IsString(name) ? name->valuestring : NULL;
}

/* A value the property schema S accepts: its first enum value, else one
 * of its type ("Paris" for a string, the usual weather tool's city). */
static cJSON *sample_value(const cJSON *s)
{
    const cJSON *en = field(s, "enum"), *type = field(s, "type");
    if (cJSON_IsArray(en) && en->child != NULL)
        return cJSON_Duplicate(en->child, 1);
    if (cJSON_IsArray(type))                 /* ["integer", "null"] */
        type = type->child;
    const char *t = cJSON_IsString(type) ? type->valuestring : "string";
    if (strcmp(t, "integer") == 0 || strcmp(t, "number") == 0)
        return cJSON_CreateNumber(1);
    if (strcmp(t, "boolean") == 0)
        return cJSON_CreateTrue();
    if (strcmp(t, "array") == 0)
        return cJSON_CreateArray();
    if (strcmp(t, "object") == 0)
        return cJSON_CreateObject();
    if (strcmp(t, "null") == 0)
        return cJSON_CreateNull();
    return cJSON_CreateString("Paris");
}

/* The call's arguments as JSON text: the schema's first property with a
 * value of its type, so that they are deterministic and (for the usual
 * one-argument tool) valid; {} for a tool that takes nothing. */
static char *tool_args(const cJSON *schema)
{
    cJSON *args = cJSON_CreateObject();
    const cJSON *props = field(schema, "properties");
    if (cJSON_IsObject(props) && props->child != NULL && props->child->string != NULL)
        cJSON_AddItemToObject(args, props->child->string, sample_value(props->child));
    char *text = cJSON_PrintUnformatted(args);
    cJSON_Delete(args);
    return text;
}

/* Whether tool_choice C lets a tool be called (not "none", in either
 * dialect's shape); *FORCED is the tool it names, if it names one. */
static int choice_allows(const cJSON *c, const char **forced)
{
    const cJSON *type = field(c, "type"), *name;
    *forced = NULL;
    if (cJSON_IsString(c))                   /* OpenAI: "none", "auto", "required" */
        return strcmp(c->valuestring, "none") != 0;
    if (cJSON_IsString(type) && strcmp(type->valuestring, "none") == 0)
        return 0;                            /* Anthropic: {"type":"none"} */
    name = o.anthropic ? field(c, "name") : field(field(c, "function"), "name");
    if (cJSON_IsString(name))
        *forced = name->valuestring;
    return 1;
}

/* The answer to the tool results in Anthropic message M, naming what they
 * said so that a test sees they arrived; NULL when M carries none. */
static char *tool_results(const cJSON *m)
{
    const cJSON *content = field(m, "content"), *b, *part;
    struct evbuffer *t;
    int found = 0;
    if (!cJSON_IsArray(content))
        return NULL;
    t = evbuffer_new();
    evbuffer_add_printf(t, "mockllm saw the tool result:");
    cJSON_ArrayForEach(b, content) {
        const cJSON *type = field(b, "type"), *c = field(b, "content");
        const cJSON *parts = cJSON_IsArray(c) ? c : NULL;   /* a string, or text blocks */
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "tool_result") != 0)
            continue;
        evbuffer_add(t, found ? "; " : " ", found ? 2 : 1);
        found++;
        if (cJSON_IsString(c))
            evbuffer_add(t, c->valuestring, strlen(c->valuestring));
        cJSON_ArrayForEach(part, parts) {
            const cJSON *text = field(part, "text");
            if (cJSON_IsString(text))
                evbuffer_add(t, text->valuestring, strlen(text->valuestring));
        }
    }
    size_t n = evbuffer_get_length(t);
    char *out = NULL;
    if (found) {
        out = malloc(n + 1);
        evbuffer_remove(t, out, n);
        out[n] = '\0';
    }
    evbuffer_free(t);
    return out;
}

/* What the Messages API refuses in J with 400 invalid_request_error, or NULL. */
static const char *anthropic_invalid(const cJSON *j)
{
    const cJSON *msgs = field(j, "messages"), *max = field(j, "max_tokens");
    if (!cJSON_IsObject(j))
        return "mockllm: the body is not a JSON object";
    if (!cJSON_IsString(field(j, "model")))
        return "model: Field required";
    if (!cJSON_IsArray(msgs))
        return "messages: Field required";
    if (cJSON_GetArraySize(msgs) == 0)
        return "messages: at least one message is required";
    if (!cJSON_IsNumber(max))
        return "max_tokens: Field required";
    if (max->valuedouble < 1)
        return "max_tokens: Input should be greater than or equal to 1";
    return NULL;
}

/* Decides how chat request J (LEN bytes) is answered: text, a call of a
 * tool, or (Anthropic) an answer to the tool results its last message
 * carries; and, for a stream, its events. */
static void plan(pending_t *p, const cJSON *j, size_t len)
{
    const cJSON *msgs = field(j, "messages"), *tools = field(j, "tools"), *max = field(j, "max_tokens"), *t;
    const cJSON *last = cJSON_IsArray(msgs) ? cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1) : NULL;
    const cJSON *role = field(last, "role");
    const char *forced = NULL;
    p->kind = ANS_TEXT;
    p->in_tokens = (int)(len / 4);
    p->out_tokens = 5;
    p->stop_reason = "end_turn";
    p->include_usage = cJSON_IsTrue(field(field(j, "stream_options"), "include_usage"));
    if (o.anthropic && (p->payload = tool_results(last)) != NULL) {
        p->kind = ANS_TOOL_RESULT;
    } else if (!o.anthropic && cJSON_IsString(role) && strcmp(role->valuestring, "tool") == 0 &&
               cJSON_IsString(field(last, "content"))) {
        /* OpenAI's tool message: answered in words that name it, as above */
        size_t n = strlen(field(last, "content")->valuestring) + 40;
        if ((p->payload = malloc(n)) != NULL) {
            snprintf(p->payload, n, "mockllm saw the tool result: %s", field(last, "content")->valuestring);
            p->kind = ANS_TOOL_RESULT;
        }
    } else if (cJSON_IsArray(tools) && choice_allows(field(j, "tool_choice"), &forced)
               && !(cJSON_IsString(role) && strcmp(role->valuestring, "tool") == 0)) {
        cJSON_ArrayForEach(t, tools) {
            const cJSON *schema;
            const char *name = tool_name(t, &schema);
            if (name != NULL && (forced == NULL || strcmp(name, forced) == 0)) {
                p->kind = ANS_TOOL_CALL;
                p->tool = strdup(name);
                p->payload = tool_args(schema);
                p->stop_reason = "tool_use";
                break;
            }
        }
    }
    if (!o.anthropic) {
        /* only a tool call has a scripted stream: the text one stays as it was */
        if (p->kind == ANS_TOOL_CALL) {
            p->pieces = pieces_of(p->payload);
            p->events = p->pieces + 2 + p->include_usage;
        }
        return;
    }
    if (p->kind == ANS_TEXT) {
        p->payload = strdup("Hello from mockllm");
        p->pieces = o.stream_events > 0 ? o.stream_events : 0;
        if (p->stream)
            p->out_tokens = p->pieces;       /* one token a delta, "tokI " */
        /* A max_tokens below the answer's length cuts it, as the real API
         * does, so that stop_reason max_tokens has a source. */
        if (max->valuedouble < p->out_tokens) {
            p->out_tokens = (int)max->valuedouble;
            p->stop_reason = "max_tokens";
            if (p->stream)
                p->pieces = p->out_tokens;
            else
                p->payload[utf8_start(p->payload, strlen(p->payload),
                                      (size_t)p->out_tokens * 4 < strlen(p->payload)
                                          ? (size_t)p->out_tokens * 4 : strlen(p->payload))] = '\0';
        }
    } else {
        p->pieces = pieces_of(p->payload);
    }
    p->events = p->pieces + 6;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const char *path = path_of(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct evkeyval *kv;
    char hash[17], model[256] = "";
    int is_endpoint = 0, stream = 0, has_model = 0;
    cJSON *j = NULL;
    (void)arg;

    if (path == NULL)
        path = "/";
    if (strncmp(path, "/_mock/", 7) == 0) {
        serve_control(req, path);
        return;
    }
    if (strcmp(path, "/v1/models") == 0 && o.anthropic) {
        static const char models[] = "{\"data\":[{\"type\":\"model\",\"id\":\"mock-small\",\"display_name\":"
                                     "\"Mock Small\",\"created_at\":\"2025-01-01T00:00:00Z\"},{\"type\":\"model\","
                                     "\"id\":\"mock-large\",\"display_name\":\"Mock Large\",\"created_at\":"
                                     "\"2025-01-01T00:00:00Z\"}],\"has_more\":false,\"first_id\":\"mock-small\","
                                     "\"last_id\":\"mock-large\"}";
        send_text(req, 200, "application/json", models, sizeof(models) - 1);
        return;
    }
    if (strcmp(path, "/v1/models") == 0) {
        static const char models[] = "{\"object\":\"list\",\"data\":[{\"id\":\"mock-small\",\"object\":\"model\","
                                     "\"owned_by\":\"mockllm\"},{\"id\":\"mock-large\",\"object\":\"model\","
                                     "\"owned_by\":\"mockllm\"}]}";
        send_text(req, 200, "application/json", models, sizeof(models) - 1);
        return;
    }
    for (const char *const *e = o.anthropic ? anthropic_endpoints : endpoints; *e; e++)
        is_endpoint |= strcmp(path, *e) == 0;

    /* the log entry */
    cJSON *entry = cJSON_CreateObject(), *hdrs = cJSON_CreateObject();
    seq++;
    cJSON_AddNumberToObject(entry, "seq", (double)seq);
    cJSON_AddNumberToObject(entry, "t_ms", ms_since_start());
    cJSON_AddStringToObject(entry, "method",
                            evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST"
                            : evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET" : "OTHER");
    /* as the request had it (an Azure deployment path too), and its query */
    cJSON_AddStringToObject(entry, "path", evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)));
    if (evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)) != NULL)
        cJSON_AddStringToObject(entry, "query", evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)));
    if (!o.anthropic && ct != NULL && strncasecmp(ct, "multipart/form-data", 19) == 0) {
        has_model = form_field(ct, body, len, "model", model, sizeof(model)) == 0;
    } else {
        j = cJSON_ParseWithLength(body, len);
        cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
        if (j == NULL && is_endpoint) {
            cJSON_AddNullToObject(entry, "model");
            cJSON_AddItemToObject(entry, "headers", hdrs);
            cJSON_AddNumberToObject(entry, "body_len", (double)len);
            if (!o.no_log && cJSON_GetArraySize(reqlog) < LOG_MAX)
                cJSON_AddItemToArray(reqlog, entry);
            else
                cJSON_Delete(entry);
            add_request_id(req, seq);
            send_fail(req, 400, "invalid_json", "mockllm: the body is not valid JSON");
            return;
        }
        if (cJSON_IsString(m)) {
            snprintf(model, sizeof(model), "%s", m->valuestring);
            has_model = 1;
        }
        stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stream"));
    }
    if (has_model)
        cJSON_AddStringToObject(entry, "model", model);
    else
        cJSON_AddNullToObject(entry, "model");
    cJSON_AddBoolToObject(entry, "stream", stream);
    if (ct != NULL)
        cJSON_AddStringToObject(entry, "content_type", ct);
    else
        cJSON_AddNullToObject(entry, "content_type");
    cJSON_AddNumberToObject(entry, "body_len", (double)len);
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)fnv1a((const unsigned char *)body, len));
    cJSON_AddStringToObject(entry, "body_fnv", hash);
    if (len <= 65536 && valid_utf8_text((const unsigned char *)body, len)) {
        char *copy = malloc(len + 1);
        memcpy(copy, body, len);
        copy[len] = '\0';
        cJSON_AddStringToObject(entry, "body", copy);
        free(copy);
    } else {
        cJSON_AddNullToObject(entry, "body");
    }
    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        char lname[128];
        size_t i;
        for (i = 0; kv->key[i] && i < sizeof(lname) - 1; i++)
            lname[i] = (char)(kv->key[i] >= 'A' && kv->key[i] <= 'Z' ? kv->key[i] + 32 : kv->key[i]);
        lname[i] = '\0';
        cJSON_DeleteItemFromObject(hdrs, lname);
        cJSON_AddStringToObject(hdrs, lname, kv->value);
    }
    cJSON_AddItemToObject(entry, "headers", hdrs);
    int logged = !o.no_log && cJSON_GetArraySize(reqlog) < LOG_MAX;
    if (logged)
        cJSON_AddItemToArray(reqlog, entry);

    const char *invalid = !is_endpoint ? "mockllm: no such path" : o.anthropic ? anthropic_invalid(j) : NULL;
    if (invalid != NULL) {
        cJSON_Delete(j);
        if (!logged)
            cJSON_Delete(entry);
        add_request_id(req, seq);
        send_fail(req, is_endpoint ? 400 : 404, is_endpoint ? "invalid_request" : "not_found", invalid);
        return;
    }
    pending_t *p = calloc(1, sizeof(*p));
    p->req = req;
    p->entry = entry;
    p->owns_entry = !logged;
    p->stream = stream;
    p->id = seq;
    p->events = -1;
    snprintf(p->model, sizeof(p->model), "%s", model);
    if (o.anthropic || strcmp(path, "/v1/chat/completions") == 0)
        plan(p, j, len);
    cJSON_Delete(j);
    if (o.status != 0 && !(o.status >= 200 && o.status < 300) && (o.fail_first < 0 || seq <= o.fail_first))
        cJSON_AddTrueToObject(p->entry, "forced");
    p->timer = evtimer_new(base, on_timer, p);
    p->next = pendings;
    if (pendings)
        pendings->prev = p;
    pendings = p;
    if (++in_flight > max_in_flight)
        max_in_flight = in_flight;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_conn_close, p);
    p->watch = event_new(base, bufferevent_getfd(evhttp_connection_get_bufferevent(
                                   evhttp_request_get_connection(req))), EV_READ | EV_PERSIST, on_watch, p);
    event_add(p->watch, NULL);
    if (o.delay_ms > 0) {
        struct timeval tv = { o.delay_ms / 1000, (o.delay_ms % 1000) * 1000 };
        event_add(p->timer, &tv);
    } else {
        answer(p);
    }
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopexit(base, NULL);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mockllm [--host H] [--port N] [--status CODE] [--retry-after S] [--fail-first N]\n"
               "               [--delay-ms MS] [--stream-events N] [--stream-interval-ms T]\n"
               "               [--close-after K] [--reset-after K] [--stall-after K] [--event-bytes N]\n"
               "               [--port-file FILE] [--name NAME] [--no-log] [--protocol openai|anthropic]\n"
               "An anthropic stream is N+6 events for text (message_start, content_block_start, ping,\n"
               "N deltas, content_block_stop, message_delta, message_stop); the --*-after counts\n"
               "take in every event, so --close-after N+5 cuts it just before message_stop.\n");
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "host", 1, 0, 'H' }, { "port", 1, 0, 'p' }, { "status", 1, 0, 's' },
        { "retry-after", 1, 0, 'r' }, { "fail-first", 1, 0, 'f' }, { "delay-ms", 1, 0, 'd' },
        { "stream-events", 1, 0, 'e' }, { "stream-interval-ms", 1, 0, 'i' },
        { "close-after", 1, 0, 'c' }, { "reset-after", 1, 0, 'R' }, { "stall-after", 1, 0, 'S' },
        { "event-bytes", 1, 0, 'b' }, { "port-file", 1, 0, 'P' }, { "name", 1, 0, 'n' },
        { "no-log", 0, 0, 'L' }, { "protocol", 1, 0, 'A' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'H': o.host = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 's': o.status = atoi(optarg); break;
        case 'r': o.retry_after = optarg; break;
        case 'f': o.fail_first = atol(optarg); break;
        case 'd': o.delay_ms = atoi(optarg); break;
        case 'e': o.stream_events = atoi(optarg); break;
        case 'i': o.stream_interval_ms = atoi(optarg); break;
        case 'c': o.close_after = atoi(optarg); break;
        case 'R': o.reset_after = atoi(optarg); break;
        case 'S': o.stall_after = atoi(optarg); break;
        case 'b': o.event_bytes = atoi(optarg); break;
        case 'P': o.port_file = optarg; break;
        case 'n': o.name = optarg; break;
        case 'L': o.no_log = 1; break;
        case 'A':
            if (strcmp(optarg, "openai") != 0 && strcmp(optarg, "anthropic") != 0) {
                fprintf(stderr, "mockllm: --protocol is openai or anthropic\n");
                return 2;
            }
            o.anthropic = strcmp(optarg, "anthropic") == 0;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(http, on_request, NULL);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(http, o.host, (ev_uint16_t)o.port);
    if (bs == NULL) {
        fprintf(stderr, "mockllm: cannot bind %s:%d\n", o.host, o.port);
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    reqlog = cJSON_CreateArray();
    if (o.port_file != NULL) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", o.port_file);
        FILE *f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, o.port_file) != 0) {
            fprintf(stderr, "mockllm: cannot write %s\n", o.port_file);
            return 1;
        }
    }
    printf("mockllm listening on %s:%d\n", o.host, port);
    fflush(stdout);
    struct event *sterm = evsignal_new(base, SIGTERM, on_signal, NULL);
    struct event *sint = evsignal_new(base, SIGINT, on_signal, NULL);
    event_add(sterm, NULL);
    event_add(sint, NULL);
    event_base_dispatch(base);
    while (pendings != NULL)
        pending_free(pendings);
    event_free(sterm);
    event_free(sint);
    evhttp_free(http);
    event_base_free(base);
    cJSON_Delete(reqlog);
    return 0;
}
