/* upcurl.c - upstream calls through libcurl's multi interface on the worker's libevent loop.
 *
 * The plumbing follows libcurl's hiperfifo pattern (DESIGN.md): one
 * persistent event per socket, the timer callback only arms a libevent
 * timer, and finished transfers are collected after every socket action,
 * never inside a curl callback. Easy handles are kept and reset for the
 * next call: curl_easy_init allocates and initialises several kilobytes. */
#include "upcurl.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct upcurl {
    worker_t *w;
    CURL *easy;
    struct curl_slist *headers;
    const up_handlers_t *h;
    void *arg;
    struct iovec body[UP_MAX_BODY_PIECES];
    int nbody;
    size_t len, pos;               /* the body's length, and how much curl has read */
    int final;                     /* the headers that follow are the final response's */
    int in_cb, aborted;            /* inside one of curl's callbacks; upcurl_abort came meanwhile */
};

/* Per-socket state curl hands back to us (curl_multi_assign). */
typedef struct sock {
    struct event *ev;
    worker_t *w;
} sock_t;

static CURL *easy_get(worker_t *w)
{
    if (w->neasy > 0) {
        CURL *e = w->easy_pool[--w->neasy];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

static void easy_put(worker_t *w, CURL *easy)
{
    if (w->neasy < (int)(sizeof(w->easy_pool) / sizeof(w->easy_pool[0])))
        w->easy_pool[w->neasy++] = easy;
    else
        curl_easy_cleanup(easy);
}

static void release(upcurl_t *u)
{
    curl_multi_remove_handle(u->w->multi, u->easy);
    easy_put(u->w, u->easy);
    curl_slist_free_all(u->headers);
    free(u);
}

/* The error code of a failed transfer. */
static const char *fail_code(CURL *easy, CURLcode result)
{
    curl_off_t connect_us = 0;
    switch (result) {
    case CURLE_OK:
        return NULL;
    case CURLE_OPERATION_TIMEDOUT:
        curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        return connect_us == 0 ? "upstream_connect_timeout" : "upstream_total_timeout";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return "upstream_connect_error";
    default:
        return "upstream_error";
    }
}

static void check_multi(worker_t *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        upcurl_t *u = NULL;
        CURLcode result = msg->data.result;
        const up_handlers_t *h;
        void *arg;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&u);
        if (u == NULL)
            continue;
        h = u->h;
        arg = u->arg;
        const char *code = fail_code(u->easy, result);
        int aborted = u->aborted;
        release(u);                       /* msg is invalid from here */
        if (!aborted)                     /* its owner let go of it from a handler */
            h->done(arg, code, code != NULL ? curl_easy_strerror(result) : NULL);
    }
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    int running, action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(w->multi, fd, action, &running);
    check_multi(w);
}

static void on_curl_timeout(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    int running;
    (void)fd;
    (void)what;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi(w);
}

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    worker_t *w = userp;
    sock_t *sk = socketp;
    short kind;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            event_free(sk->ev);
            free(sk);
        }
        curl_multi_assign(w->multi, s, NULL);
        return 0;
    }
    kind = (short)(EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
    if (sk == NULL) {
        if ((sk = calloc(1, sizeof(*sk))) == NULL)
            return -1;
        sk->w = w;
        curl_multi_assign(w->multi, s, sk);
    } else {
        event_free(sk->ev);
    }
    sk->ev = event_new(w->base, s, kind, on_sock_event, w);
    if (sk->ev == NULL)
        return -1;
    event_add(sk->ev, NULL);
    return 0;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    worker_t *w = userp;
    struct timeval tv;
    (void)m;
    if (timeout_ms < 0) {
        evtimer_del(w->curl_timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(w->curl_timer, &tv);
    return 0;
}

int upcurl_init(worker_t *w)
{
    if ((w->multi = curl_multi_init()) == NULL || (w->curl_timer = evtimer_new(w->base, on_curl_timeout, w)) == NULL)
        return -1;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    return 0;
}

void upcurl_free(worker_t *w)
{
    while (w->neasy > 0)
        curl_easy_cleanup(w->easy_pool[--w->neasy]);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    if (w->curl_timer != NULL)
        event_free(w->curl_timer);
    w->multi = NULL;
    w->curl_timer = NULL;
}

/* Status lines (an interim 1xx, then the final one) and header lines. */
static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    upcurl_t *u = arg;
    size_t len = size * n, k, v;
    if (len >= 12 && memcmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', len);
        int status = sp != NULL && (size_t)(sp - buf) + 4 <= len ? atoi(sp + 1) : 0;
        u->final = status >= 200;
        if (u->final) {
            u->in_cb = 1;
            u->h->status(u->arg, status);
            u->in_cb = 0;
        }
        return u->aborted ? 0 : len;
    }
    if (!u->final || u->aborted)
        return u->aborted ? 0 : len;
    for (k = 0; k < len && buf[k] != ':'; k++)
        ;
    if (k == 0 || k >= len)
        return len;                       /* the blank line that ends the head */
    v = k + 1;
    while (v < len && (buf[v] == ' ' || buf[v] == '\t'))
        v++;
    while (len > v && (buf[len - 1] == '\r' || buf[len - 1] == '\n' || buf[len - 1] == ' '))
        len--;
    u->in_cb = 1;
    u->h->header(u->arg, buf, k, buf + v, len - v);
    u->in_cb = 0;
    return u->aborted ? 0 : size * n;
}

static size_t on_data(char *buf, size_t size, size_t n, void *arg)
{
    upcurl_t *u = arg;
    int r;
    if (u->aborted)
        return 0;
    u->in_cb = 1;
    r = u->h->body(u->arg, buf, size * n);
    u->in_cb = 0;
    if (u->aborted)
        return 0;                         /* curl ends the transfer; check_multi releases it */
    switch (r) {
    case UP_PAUSE:
        return CURL_WRITEFUNC_PAUSE;      /* curl keeps the bytes and hands them over again */
    case UP_ABORT:
        return 0;
    default:
        return size * n;
    }
}

/* The body pieces, one after the other. */
static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    upcurl_t *u = arg;
    size_t room = size * n, done = 0, skip = u->pos;
    for (int i = 0; i < u->nbody && done < room; i++) {
        size_t take;
        if (skip >= u->body[i].iov_len) {
            skip -= u->body[i].iov_len;
            continue;
        }
        take = u->body[i].iov_len - skip;
        if (take > room - done)
            take = room - done;
        memcpy(buf + done, (const char *)u->body[i].iov_base + skip, take);
        done += take;
        skip = 0;
    }
    u->pos += done;
    return done;
}

/* curl sends the body again on a fresh connection when a reused one turns
 * out closed: it starts over from OFFSET. */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
    upcurl_t *u = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > u->len)
        return CURL_SEEKFUNC_CANTSEEK;
    u->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

upcurl_t *upcurl_start(worker_t *w, const up_request_t *rq, const up_handlers_t *h, void *arg)
{
    upcurl_t *u = calloc(1, sizeof(*u));
    char url[2300], line[2048];
    const char *p = rq->head, *end = rq->head + rq->head_len;
    if (u == NULL)
        return NULL;
    if ((u->easy = easy_get(w)) == NULL) {
        free(u);
        return NULL;
    }
    u->w = w;
    u->h = h;
    u->arg = arg;
    u->nbody = rq->nbody;
    for (int i = 0; i < rq->nbody; i++) {
        u->body[i] = rq->body[i];
        u->len += rq->body[i].iov_len;
    }
    while (p < end) {                     /* one list entry per header line */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = (size_t)((nl != NULL ? nl : end) - p);
        if (l > 0 && p[l - 1] == '\r')
            l--;
        if (l > 0 && l < sizeof(line)) {
            memcpy(line, p, l);
            line[l] = '\0';
            u->headers = curl_slist_append(u->headers, line);
        }
        p = nl != NULL ? nl + 1 : end;
    }
    u->headers = curl_slist_append(u->headers, "Expect:");   /* no waiting for 100 Continue */
    snprintf(url, sizeof(url), "%s%s", rq->base_url, rq->path);
    curl_easy_setopt(u->easy, CURLOPT_URL, url);
    curl_easy_setopt(u->easy, CURLOPT_PRIVATE, u);
    curl_easy_setopt(u->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(u->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(u->easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(u->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(u->easy, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(u->easy, CURLOPT_READDATA, u);
    curl_easy_setopt(u->easy, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(u->easy, CURLOPT_SEEKDATA, u);
    curl_easy_setopt(u->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->len);
    curl_easy_setopt(u->easy, CURLOPT_HTTPHEADER, u->headers);
    curl_easy_setopt(u->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(u->easy, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(u->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(u->easy, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(u->easy, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_ms);
    curl_easy_setopt(u->easy, CURLOPT_TIMEOUT_MS, rq->total_ms);
    if (curl_multi_add_handle(w->multi, u->easy) != CURLM_OK) {
        curl_easy_cleanup(u->easy);
        curl_slist_free_all(u->headers);
        free(u);
        return NULL;
    }
    return u;
}

void upcurl_resume(upcurl_t *u)
{
    curl_easy_pause(u->easy, CURLPAUSE_CONT);   /* may hand held bytes over at once */
}

void upcurl_abort(upcurl_t *u)
{
    if (u->in_cb) {                       /* curl refuses to drop a handle from its own callback */
        u->aborted = 1;
        return;
    }
    release(u);
}
