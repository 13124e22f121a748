/* mockllm.c - a mock OpenAI-compatible provider on libevent, for turnout's tests and benchmarks.
 *
 * Behaviour is chosen per instance by flags (a fixed status, 429 with
 * Retry-After, a delay before headers, SSE streams of N events T ms apart and
 * of a chosen size, closing, resetting or going silent after K events). Each
 * event carries the wall-clock time it was written ("sent_ms") so tests can
 * measure relay latency; with no interval the next event is written only
 * when the previous one has left the socket buffer, so a slow reader slows
 * the stream down instead of growing the mock's memory. Every request is recorded in an in-memory log that
 * tests read at GET /_mock/log (path, model, body hash, headers). */
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
} opts_t;

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
    struct pending *next, *prev;
} pending_t;

static opts_t o = { "127.0.0.1", 0, 0, NULL, -1, 0, 5, 0, -1, -1, -1, 0, NULL, "mockllm", 0 };
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

static void stream_next(pending_t *p)
{
    struct evbuffer *b;
    struct timeval tv = { o.stream_interval_ms / 1000, (o.stream_interval_ms % 1000) * 1000 };
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
    if (p->sent < o.stream_events) {
        int pad = o.event_bytes > 300 ? o.event_bytes - 300 : 0;
        evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
                               "\"created\":%ld,\"model\":\"%s\",\"system_fingerprint\":\"%s\",\"choices\":"
                               "[{\"index\":0,\"delta\":{\"content\":\"tok%d ", (long)time(NULL), p->model,
                            o.name, p->sent + 1);
        for (; pad > 0; pad -= 64)
            evbuffer_add(b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", pad < 64 ? (size_t)pad : 64);
        evbuffer_add_printf(b, "\"},\"finish_reason\":null}],\"event_index\":%d,\"sent_ms\":%.3f}\n\n",
                            p->sent, wall_ms());
        p->sent++;
        if (o.stream_interval_ms > 0) {
            evhttp_send_reply_chunk(p->req, b);
            event_add(p->timer, &tv);
        } else {
            evhttp_send_reply_chunk_with_cb(p->req, b, on_chunk_sent, p);
        }
        evbuffer_free(b);
        return;
    }
    evbuffer_add_printf(b, "data: [DONE]\n\n");
    evhttp_send_reply_chunk(p->req, b);
    evbuffer_free(b);
    evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
    evhttp_send_reply_end(p->req);
    pending_free(p);
}

static const char *path_of(struct evhttp_request *req)
{
    return evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
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
        send_error(req, o.status, code, body);
    } else if (p->stream) {
        add_json_header(req, "text/event-stream");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-cache");
        evhttp_send_reply_start(req, 200, "OK");
        stream_next(p);
        return;
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
    "/v1/audio/speech", "/v1/audio/transcriptions", NULL,
};

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
    (void)arg;

    if (path == NULL)
        path = "/";
    if (strncmp(path, "/_mock/", 7) == 0) {
        serve_control(req, path);
        return;
    }
    if (strcmp(path, "/v1/models") == 0) {
        static const char models[] = "{\"object\":\"list\",\"data\":[{\"id\":\"mock-small\",\"object\":\"model\","
                                     "\"owned_by\":\"mockllm\"},{\"id\":\"mock-large\",\"object\":\"model\","
                                     "\"owned_by\":\"mockllm\"}]}";
        send_text(req, 200, "application/json", models, sizeof(models) - 1);
        return;
    }
    for (const char *const *e = endpoints; *e; e++)
        is_endpoint |= strcmp(path, *e) == 0;

    /* the log entry */
    cJSON *entry = cJSON_CreateObject(), *hdrs = cJSON_CreateObject();
    seq++;
    cJSON_AddNumberToObject(entry, "seq", (double)seq);
    cJSON_AddNumberToObject(entry, "t_ms", ms_since_start());
    cJSON_AddStringToObject(entry, "method",
                            evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST"
                            : evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET" : "OTHER");
    cJSON_AddStringToObject(entry, "path", path);
    if (ct != NULL && strncasecmp(ct, "multipart/form-data", 19) == 0) {
        has_model = form_field(ct, body, len, "model", model, sizeof(model)) == 0;
    } else {
        cJSON *j = cJSON_ParseWithLength(body, len);
        cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
        if (j == NULL && is_endpoint) {
            cJSON_AddNullToObject(entry, "model");
            cJSON_AddItemToObject(entry, "headers", hdrs);
            cJSON_AddNumberToObject(entry, "body_len", (double)len);
            if (!o.no_log && cJSON_GetArraySize(reqlog) < LOG_MAX)
                cJSON_AddItemToArray(reqlog, entry);
            else
                cJSON_Delete(entry);
            send_error(req, 400, "invalid_json", "mockllm: the body is not valid JSON");
            return;
        }
        if (cJSON_IsString(m)) {
            snprintf(model, sizeof(model), "%s", m->valuestring);
            has_model = 1;
        }
        stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stream"));
        cJSON_Delete(j);
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

    if (!is_endpoint) {
        if (!logged)
            cJSON_Delete(entry);
        send_error(req, 404, "not_found", "mockllm: no such path");
        return;
    }
    pending_t *p = calloc(1, sizeof(*p));
    p->req = req;
    p->entry = entry;
    p->owns_entry = !logged;
    p->stream = stream;
    snprintf(p->model, sizeof(p->model), "%s", model);
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
               "               [--port-file FILE] [--name NAME] [--no-log]\n");
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "host", 1, 0, 'H' }, { "port", 1, 0, 'p' }, { "status", 1, 0, 's' },
        { "retry-after", 1, 0, 'r' }, { "fail-first", 1, 0, 'f' }, { "delay-ms", 1, 0, 'd' },
        { "stream-events", 1, 0, 'e' }, { "stream-interval-ms", 1, 0, 'i' },
        { "close-after", 1, 0, 'c' }, { "reset-after", 1, 0, 'R' }, { "stall-after", 1, 0, 'S' },
        { "event-bytes", 1, 0, 'b' }, { "port-file", 1, 0, 'P' }, { "name", 1, 0, 'n' },
        { "no-log", 0, 0, 'L' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
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
