/* upcurl.c - upstream calls through libcurl's multi interface on the worker's libevent loop.
 *
 * The plumbing follows libcurl's hiperfifo pattern (DESIGN.md): one
 * persistent event per socket, the timer callback only arms a libevent
 * timer, and finished transfers are collected after every socket action,
 * never inside a curl callback. Each call has an easy handle of its own
 * (see upcurl_start: libcurl 7.88 cannot reuse one safely).
 *
 * What libcurl 7.88 lets through is held to the rules of turnout's own
 * client (h1.h), so that both answer a client the same whatever an
 * upstream sends:
 *   - the head: every status line and header field is checked as it comes
 *     (libcurl relays a name with a space, a 101's successor as status 0,
 *     and treats a head cut by the close as a whole empty answer);
 *   - chunked bodies: libcurl hands them over still framed
 *     (CURLOPT_HTTP_TRANSFER_DECODING off) and h1.c decodes them, because
 *     libcurl reads "0x10" as a last chunk and passes trailer fields, and
 *     with them the body's own lines, to the header callback;
 *   - pooled connections: libcurl 7.88 reuses a connection with bytes
 *     waiting on it (its liveness check only looks for a close), which
 *     hands those bytes to the next request as its answer. So a connection
 *     back in libcurl's pool is watched here, and one that receives
 *     anything while idle is made to look closed (its descriptor is
 *     replaced by one at end-of-file): libcurl then drops it and connects
 *     afresh, and the bytes are never read. */
#include "upcurl.h"
#include "h1.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct upcurl {
    worker_t *w;
    CURL *easy;
    struct curl_slist *headers;
    const up_handlers_t *h;
    void *arg;
    struct iovec body[UP_MAX_BODY_PIECES];
    int nbody;
    size_t len, pos;               /* the body's length, and how much curl has read */
    int in_cb, aborted;            /* inside one of curl's callbacks; upcurl_abort came meanwhile */
    /* the response, as h1.c's rules see it */
    int in_head;                   /* a head has begun: its status line came */
    int final;                     /* that head is the final response's */
    int head_done;                 /* the final head's empty line came */
    int status, minor;             /* its status and HTTP/1.x minor version */
    h1_framing_t framing;          /* what its head says of the body and the connection */
    int chunked;                   /* its body is chunked: decoded here, with CHUNKS */
    int body_done;                 /* the chunked body's end came */
    int no_reuse;                  /* bytes after the end, or a length beside chunks: the connection goes */
    h1_chunks_t chunks;
    size_t taken;                  /* bytes at the start of the next on_data handed on before a pause */
    const char *bad;               /* why the response was refused */
};

/* One of libcurl's sockets: watched for libcurl while a transfer uses it,
 * and for stray bytes while it idles in libcurl's pool. */
typedef struct curl_sock {
    struct event ev;
    worker_t *w;
    curl_socket_t fd;
    int armed;                     /* EV is added */
    int idle;                      /* EV watches for stray bytes, not for libcurl */
} sock_t;

static void release(upcurl_t *u)
{
    curl_multi_remove_handle(u->w->multi, u->easy);
    curl_easy_cleanup(u->easy);
    curl_slist_free_all(u->headers);
    free(u);
}

/* --- libcurl's sockets ------------------------------------------------------- */

/* The state of socket FD, made when CREATE and missing. */
static sock_t *sock_of(worker_t *w, curl_socket_t fd, int create)
{
    sock_t *sk;
    if (fd < 0)
        return NULL;
    if (fd >= w->ncurl_socks) {
        int n = w->ncurl_socks ? w->ncurl_socks : 64;
        sock_t **grown;
        if (!create)
            return NULL;
        while (n <= fd)
            n *= 2;
        if ((grown = realloc(w->curl_socks, (size_t)n * sizeof(*grown))) == NULL)
            return NULL;
        memset(grown + w->ncurl_socks, 0, (size_t)(n - w->ncurl_socks) * sizeof(*grown));
        w->curl_socks = grown;
        w->ncurl_socks = n;
    }
    if ((sk = w->curl_socks[fd]) == NULL && create && (sk = calloc(1, sizeof(*sk))) != NULL) {
        sk->w = w;
        sk->fd = fd;
        w->curl_socks[fd] = sk;
    }
    return sk;
}

static void sock_disarm(sock_t *sk)
{
    if (sk->armed)
        event_del(&sk->ev);
    sk->armed = sk->idle = 0;
}

/* Bytes (or the close) on a connection idling in libcurl's pool. None may
 * become an answer: the descriptor now reads end-of-file, so libcurl's
 * check before reusing it finds it closed and drops it (closing the real
 * connection happens right here, as the old descriptor goes). */
static void on_idle_bytes(evutil_socket_t fd, short what, void *arg)
{
    sock_t *sk = arg;
    int pair[2];
    (void)what;
    sock_disarm(sk);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0) {
        close(pair[1]);
        if (dup2(pair[0], fd) < 0)
            shutdown(fd, SHUT_RDWR);
        close(pair[0]);
    } else {
        shutdown(fd, SHUT_RDWR);          /* libcurl's write then fails, and it connects afresh */
    }
}

/* A transfer is over and left its connection FD in libcurl's pool, unless
 * another transfer took it up meanwhile (then libcurl watches it). */
static void sock_idle(worker_t *w, curl_socket_t fd, int reusable)
{
    sock_t *sk = sock_of(w, fd, 1);
    if (sk == NULL || sk->armed)
        return;
    if (!reusable) {                      /* bytes came after the end: it is not to be used again */
        event_assign(&sk->ev, w->base, fd, EV_READ, on_idle_bytes, sk);
        on_idle_bytes(fd, EV_READ, sk);
        return;
    }
    event_assign(&sk->ev, w->base, fd, EV_READ | EV_PERSIST, on_idle_bytes, sk);
    event_add(&sk->ev, NULL);
    sk->armed = sk->idle = 1;
}

/* libcurl closes a socket (CURLOPT_CLOSESOCKETFUNCTION). */
static int on_close_socket(void *arg, curl_socket_t fd)
{
    worker_t *w = arg;
    sock_t *sk = sock_of(w, fd, 0);
    if (sk != NULL) {
        sock_disarm(sk);
        w->curl_socks[fd] = NULL;
        free(sk);
    }
    return close(fd);
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
        const char *code = fail_code(u->easy, result), *detail = code != NULL ? curl_easy_strerror(result) : NULL;
        int aborted = u->aborted;
        curl_socket_t fd = CURL_SOCKET_BAD;
        if (u->bad != NULL) {             /* we refused it: say why */
            code = "upstream_error";
            detail = u->bad;
        } else if (code == NULL && !u->head_done) {
            code = "upstream_error";
            detail = "the response head was cut short";
        } else if (code == NULL && u->chunked && !u->body_done) {
            code = "upstream_error";
            detail = "the chunked body was cut short";
        }
        /* the connection libcurl keeps for the next transfer, if any */
        if (curl_easy_getinfo(u->easy, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK && fd != CURL_SOCKET_BAD)
            sock_idle(w, fd, code == NULL && !u->no_reuse);
        release(u);                       /* msg is invalid from here */
        if (!aborted)                     /* its owner let go of it from a handler */
            h->done(arg, code, detail);
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

/* libcurl says what to watch a socket for; REMOVE when it no longer
 * needs it watched (the transfer ended, or is paused). */
static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    worker_t *w = userp;
    sock_t *sk = sock_of(w, s, what != CURL_POLL_REMOVE);
    short kind;
    (void)e;
    (void)socketp;
    if (sk == NULL)
        return what == CURL_POLL_REMOVE ? 0 : -1;
    sock_disarm(sk);                      /* and no longer idle: a transfer has it */
    if (what == CURL_POLL_REMOVE)
        return 0;
    kind = (short)(EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
    event_assign(&sk->ev, w->base, s, kind, on_sock_event, w);
    event_add(&sk->ev, NULL);
    sk->armed = 1;
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
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);     /* closes the pooled connections, through on_close_socket */
    for (int i = 0; i < w->ncurl_socks; i++) {
        if (w->curl_socks[i] != NULL) {
            sock_disarm(w->curl_socks[i]);
            free(w->curl_socks[i]);
        }
    }
    free(w->curl_socks);
    w->curl_socks = NULL;
    w->ncurl_socks = 0;
    if (w->curl_timer != NULL)
        event_free(w->curl_timer);
    w->multi = NULL;
    w->curl_timer = NULL;
}

/* Refuses the response: libcurl ends the transfer (a write error), and
 * check_multi reports WHY. */
static size_t refuse(upcurl_t *u, const char *why)
{
    if (u->bad == NULL)
        u->bad = why;
    return 0;
}

/* One field of the final head: checked as turnout's own client checks it,
 * then handed on. LINE has no CR LF. */
static size_t take_field(upcurl_t *u, const char *line, size_t len)
{
    const char *name, *v;
    size_t nlen, vlen;
    if (!h1_field(line, len, &name, &nlen, &v, &vlen))
        return refuse(u, "a malformed response head");   /* a folded line, or none at all */
    if (!u->final)
        return 1;                         /* an interim answer's fields go nowhere */
    if (h1_framing_field(&u->framing, name, nlen, v, vlen) < 0)
        return refuse(u, "a malformed response head");
    u->chunked = u->framing.chunked == 1;
    u->in_cb = 1;
    u->h->header(u->arg, name, nlen, v, vlen);
    u->in_cb = 0;
    return 1;
}

/* Every line of every head, one at a time: status lines (interim 1xx, then
 * the final one), fields, and the empty line that ends a head. */
static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    upcurl_t *u = arg;
    size_t len = size * n;
    int status, minor;
    if (u->aborted)
        return 0;
    if (u->head_done)
        return size * n;                  /* trailer fields (not given while curl leaves chunks to us) */
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (!u->in_head) {                    /* a status line */
        if ((status = h1_status_line(buf, len, &minor)) < 0 || status == 101)
            return refuse(u, "a malformed response head");   /* no upgrade was asked for */
        u->in_head = 1;
        u->final = status >= 200;
        u->status = status;
        u->minor = minor;
        if (u->final) {
            u->in_cb = 1;
            u->h->status(u->arg, status);
            u->in_cb = 0;
        }
    } else if (len == 0) {                /* the end of a head */
        u->in_head = 0;
        u->head_done = u->final;
        if (u->chunked)
            h1_chunks_init(&u->chunks);
        /* the native client's rule for reuse, which libcurl is laxer
         * about; and not after a 204/304 that announces a body (libcurl
         * drops those bytes, where the native client sees them as stray) */
        u->no_reuse = !h1_reusable(&u->framing, u->minor) ||
                      ((u->status == 204 || u->status == 304) && u->framing.has_len && u->framing.clen > 0);
    } else if (take_field(u, buf, len) == 0) {
        return 0;
    }
    return u->aborted ? 0 : size * n;
}

/* Body bytes: handed on as they come, or (chunked) decoded here first. A
 * pause makes libcurl hand the same bytes over again later: the first
 * TAKEN of them were handed on already. */
static size_t on_data(char *buf, size_t size, size_t n, void *arg)
{
    upcurl_t *u = arg;
    size_t len = size * n, off = u->taken, skip, dlen;
    const char *why;
    int r;
    u->taken = 0;
    while (!u->aborted && off < len) {
        if (u->chunked) {
            if (u->body_done) {           /* past the end: never anybody's answer */
                u->no_reuse = 1;
                return len;
            }
            r = h1_chunks_next(&u->chunks, buf + off, len - off, &skip, &dlen, &why);
            off += skip;
            if (r == H1_BAD)
                return refuse(u, why);
            if (r == H1_END) {
                u->body_done = 1;
                continue;
            }
            if (r == H1_MORE)
                break;
        } else {
            dlen = len - off;
        }
        u->in_cb = 1;
        r = u->h->body(u->arg, buf + off, dlen);
        u->in_cb = 0;
        if (u->aborted)
            break;                        /* curl ends the transfer; check_multi releases it */
        if (r == UP_PAUSE) {
            u->taken = off;
            return CURL_WRITEFUNC_PAUSE;  /* curl keeps the bytes and hands them over again */
        }
        if (r == UP_ABORT)
            return 0;
        if (u->chunked)
            h1_chunks_took(&u->chunks, dlen);
        off += dlen;
    }
    return u->aborted ? 0 : len;
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
    /* A new easy handle for every call: libcurl 7.88 keeps a pointer to a
     * reset handle's freed last header (curl#11101, fixed in 8.1.0), and a
     * reused handle whose next answer starts a header line with a space
     * reads and frees it again (found by test/fuzz/upstream_fuzz.py). */
    if ((u->easy = curl_easy_init()) == NULL) {
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
    curl_easy_setopt(u->easy, CURLOPT_HTTP_TRANSFER_DECODING, 0L);   /* chunks are decoded in on_data */
    curl_easy_setopt(u->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(u->easy, CURLOPT_CLOSESOCKETDATA, w);
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
