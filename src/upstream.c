/* upstream.c - turnout's own HTTP/1.1 client for plain-http upstreams, on the worker's loop.
 *
 * Why not libcurl for these: per request it set up a transfer, allocated,
 * stopped and started watching the pooled socket (two epoll_ctl) and
 * polled it twice (liveness, readiness) - 9.3 system calls per proxied
 * request against nginx's 4-5 (README, Performance). Here a request on a
 * pooled connection costs one sendmsg (head and body pieces together) and,
 * for a response that fits the read buffer, one recv; the socket stays
 * registered with the loop for as long as the connection lives.
 *
 * Connections are pooled per worker and per host:port, most recently used
 * first. An idle connection keeps its read event: the upstream closing it
 * (or sending anything unasked) frees it at once. A request sent on a
 * reused connection that turns out dead before any response byte is sent
 * again once, on a new connection - what every keep-alive client does,
 * since the upstream may close an idle connection at any moment.
 *
 * Names are looked up with libevent's evdns (resolv.conf and /etc/hosts,
 * without blocking the loop) and the addresses kept for a minute; numeric
 * addresses need no lookup. Everything that is not http:// goes to
 * libcurl (upcurl.c), behind the same interface.
 *
 * Handlers are never called from inside up_start or up_resume: a failure
 * found there is reported from a zero timer on the next loop turn. */
#include "upstream.h"
#include "edge.h"
#include "h1.h"
#include "upcurl.h"
#include "text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define UP_BUF (16 * 1024)         /* a connection's read buffer, to begin with */
#define UP_HEAD_MAX H1_LINE_MAX    /* the longest response head */
#define UP_IDLE_MAX 256            /* idle connections kept per host:port */
#define UP_IDLE_MS 50000.0         /* older idle connections are closed, not reused */
#define UP_ADDR_TTL_MS 60000.0     /* how long looked-up addresses are used */
#define UP_MAX_ADDRS 4
#define UP_BUCKETS 64
#define UP_RESEND_MS 1000.0        /* a dead reused connection is resent on only this soon after the write */

typedef struct up_pool up_pool_t;
typedef struct up_conn up_conn_t;

struct up_conn {
    int fd;
    struct event rev;              /* read, persistent: pending for the connection's whole life */
    struct event wev;              /* write: while connecting, or while a request waits to be sent */
    up_pool_t *pool;
    up_conn_t *next;               /* the pool's idle list */
    up_call_t *call;               /* the call it serves; NULL while idle */
    int connecting;
    int served;                    /* responses completed on it */
    double idle_since;
    char *buf;                     /* response bytes; unparsed ones are buf[start, end) */
    size_t cap, start, end;
};

/* The connections and addresses of one host:port. */
struct up_pool {
    up_pool_t *next;               /* hash chain */
    char host[256];                /* as in the URL: a name, an IPv4 or a bracketed IPv6 address */
    int port;
    char authority[272];           /* the Host header */
    up_conn_t *idle;               /* most recently used first */
    int nidle;
    struct sockaddr_storage addr[UP_MAX_ADDRS];
    socklen_t addrlen[UP_MAX_ADDRS];
    int naddr;
    int numeric;                   /* addr never expires */
    double addr_until;
};

typedef struct up_state {
    up_pool_t *bucket[UP_BUCKETS];
    struct evdns_base *dns;        /* created on the first name lookup */
    struct up_call *free_calls;    /* ended calls kept for the next ones (calls_free of them) */
    int nfree_calls;
} up_state_t;

#define CALLS_KEPT 64              /* ended calls a worker keeps, and the */
#define CALL_KEPT_CAP 16384        /*   largest head room one may have */

typedef enum {
    ST_HEAD, ST_BODY_LEN, ST_BODY_CLOSE, ST_CHUNKED, ST_DONE,
} up_st_t;

struct up_call {
    upcurl_t *curl;                /* the libcurl backend's call, or NULL */
    worker_t *w;
    up_pool_t *pool;
    up_conn_t *conn;
    const up_handlers_t *h;
    void *arg;
    struct event tev;              /* the connect limit, or a failure to report */
    const char *fail_code, *fail_detail;
    char detail[160];
    struct evdns_getaddrinfo_request *dns;
    long connect_ms;
    int addr_i;                    /* the address being tried */
    int retried;                   /* already sent again after a dead reused connection */
    int busy, aborted;             /* inside a handler; up_abort was called meanwhile */
    int announced;                 /* the final status line went to the status handler */
    int paused, resumed;           /* the body handler said UP_PAUSE; up_resume since */
    int got_bytes;                 /* response bytes came on the current connection */
    int write_failed;              /* the rest is left to the read side, which sees why */
    double sent_ms;                /* when the request went out on the current connection */
    /* the request: head, then the body pieces */
    struct iovec iov[1 + UP_MAX_BODY_PIECES];
    int niov;
    size_t total, sent;
    /* the response */
    up_st_t st;
    int status;
    int keepalive;
    uint64_t left;                 /* of the body (Content-Length) */
    h1_chunks_t chunks;            /* a chunked body's framing */
    size_t scanned;                /* the head: bytes past start already searched for its end */
    struct up_call *next_free;     /* in the worker's kept calls */
    size_t head_cap;               /* the room in head */
    size_t head_len;
    char head[];
};

/* --- pools and connections ----------------------------------------------- */

static up_state_t *state_of(worker_t *w)
{
    if (w->up == NULL)
        w->up = calloc(1, sizeof(up_state_t));
    return w->up;
}

static unsigned bucket_of(const char *host, size_t hlen, int port)
{
    uint32_t h = 2166136261u ^ (uint32_t)port;
    for (size_t i = 0; i < hlen; i++)
        h = (h ^ (unsigned char)host[i]) * 16777619u;
    return h % UP_BUCKETS;
}

/* The pool of HOST (HLEN bytes) and PORT, made on first use. */
static up_pool_t *pool_get(up_state_t *s, const char *host, size_t hlen, int port)
{
    unsigned b = bucket_of(host, hlen, port);
    up_pool_t *p;
    char bare[256];
    for (p = s->bucket[b]; p != NULL; p = p->next)
        if (p->port == port && strncmp(p->host, host, hlen) == 0 && p->host[hlen] == '\0')
            return p;
    if (hlen == 0 || hlen >= sizeof(p->host) || (p = calloc(1, sizeof(*p))) == NULL)
        return NULL;
    memcpy(p->host, host, hlen);
    p->host[hlen] = '\0';
    p->port = port;
    if (port == 80)
        snprintf(p->authority, sizeof(p->authority), "%s", p->host);
    else
        snprintf(p->authority, sizeof(p->authority), "%s:%d", p->host, port);
    /* a numeric address is its own lookup */
    if (host[0] == '[' && host[hlen - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&p->addr[0];
        memcpy(bare, host + 1, hlen - 2);
        bare[hlen - 2] = '\0';
        if (inet_pton(AF_INET6, bare, &a->sin6_addr) == 1) {
            a->sin6_family = AF_INET6;
            a->sin6_port = htons((uint16_t)port);
            p->addrlen[0] = sizeof(*a);
            p->naddr = p->numeric = 1;
        }
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&p->addr[0];
        if (inet_pton(AF_INET, p->host, &a->sin_addr) == 1) {
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)port);
            p->addrlen[0] = sizeof(*a);
            p->naddr = p->numeric = 1;
        }
    }
    p->next = s->bucket[b];
    s->bucket[b] = p;
    return p;
}

static void on_conn_read(evutil_socket_t fd, short what, void *arg);
static void on_conn_write(evutil_socket_t fd, short what, void *arg);

static up_conn_t *conn_new(worker_t *w, up_pool_t *pool, int fd)
{
    up_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->buf = malloc(UP_BUF)) == NULL) {
        free(c);
        return NULL;
    }
    c->fd = fd;
    c->pool = pool;
    c->cap = UP_BUF;
    event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, on_conn_read, c);
    event_assign(&c->wev, w->base, fd, EV_WRITE, on_conn_write, c);
    return c;
}

static void conn_close(up_conn_t *c)
{
    event_del(&c->rev);
    event_del(&c->wev);
    close(c->fd);
    free(c->buf);
    free(c);
}

static void pool_unlink(up_conn_t *c)
{
    up_conn_t **pp;
    for (pp = &c->pool->idle; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            c->pool->nidle--;
            return;
        }
    }
}

/* A connection's response is complete and nothing else is on it: idle,
 * first in line for the next request to its host:port. */
static void pool_put(up_conn_t *c)
{
    up_pool_t *p = c->pool;
    if (p->nidle >= UP_IDLE_MAX) {
        conn_close(c);
        return;
    }
    event_del(&c->wev);
    c->call = NULL;
    c->start = c->end = 0;
    c->idle_since = edge_now_ms();
    c->next = p->idle;
    p->idle = c;
    p->nidle++;
}

/* Whether an idle connection has nothing waiting to be read. Its read
 * event closes it when bytes come while it idles, but bytes that arrived
 * since the loop last looked have not been seen yet: written to now, they
 * would be read as the answer to our request. One recv(MSG_PEEK) settles
 * it (and finds a connection the upstream closed, which saves a resend). */
static int conn_quiet(up_conn_t *c)
{
    char b;
    return recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static up_conn_t *pool_take(up_pool_t *p)
{
    double now = edge_now_ms();
    up_conn_t *c;
    while ((c = p->idle) != NULL) {
        p->idle = c->next;
        p->nidle--;
        /* long idle: the upstream may be closing it right now */
        if (now - c->idle_since <= UP_IDLE_MS && conn_quiet(c))
            return c;
        conn_close(c);
    }
    return NULL;
}

void up_worker_free(worker_t *w)
{
    up_state_t *s = w->up;
    if (s == NULL)
        return;
    for (int b = 0; b < UP_BUCKETS; b++) {
        up_pool_t *p = s->bucket[b], *next;
        for (; p != NULL; p = next) {
            up_conn_t *c;
            next = p->next;
            while ((c = p->idle) != NULL) {
                p->idle = c->next;
                conn_close(c);
            }
            free(p);
        }
    }
    while (s->free_calls != NULL) {
        up_call_t *call = s->free_calls;
        s->free_calls = call->next_free;
        free(call);
    }
    if (s->dns != NULL)
        evdns_base_free(s->dns, 0);
    free(s);
    w->up = NULL;
}

/* --- the end of a call ----------------------------------------------------- */

/* A native call with HEAD_CAP bytes of head room: one the worker kept
 * (a call is about 1 KB, and one a request is malloc's slow path), or new.
 * Cleared up to its head. */
static up_call_t *call_new(up_state_t *s, size_t head_cap)
{
    up_call_t *call = s->free_calls, **pp = &s->free_calls;
    for (; call != NULL && call->head_cap < head_cap; pp = &call->next_free, call = call->next_free)
        ;
    if (call != NULL) {
        *pp = call->next_free;
        s->nfree_calls--;
        head_cap = call->head_cap;
    } else if ((call = malloc(sizeof(*call) + head_cap)) == NULL) {
        return NULL;
    }
    memset(call, 0, sizeof(*call));
    call->head_cap = head_cap;
    return call;
}

static void call_free(up_call_t *call)
{
    up_state_t *s = call->w != NULL ? call->w->up : NULL;
    event_del(&call->tev);
    if (call->dns != NULL) {
        struct evdns_getaddrinfo_request *d = call->dns;
        call->dns = NULL;
        evdns_getaddrinfo_cancel(d);      /* its callback sees EVUTIL_EAI_CANCEL and returns */
    }
    if (s == NULL || s->nfree_calls >= CALLS_KEPT || call->head_cap > CALL_KEPT_CAP) {
        free(call);
        return;
    }
    call->next_free = s->free_calls;
    s->free_calls = call;
    s->nfree_calls++;
}

/* Ends CALL (CODE NULL: a whole response) and tells its owner. The
 * connection goes back to the pool when it is clean: the response framed
 * by length or chunks, the request fully sent, nothing more received. */
static void finish(up_call_t *call, const char *code, const char *detail)
{
    up_conn_t *c = call->conn;
    if (c != NULL) {
        call->conn = NULL;
        if (code == NULL && call->keepalive && call->sent == call->total && !call->write_failed &&
            c->start == c->end && !c->connecting) {
            c->served++;
            pool_put(c);
        } else {
            conn_close(c);
        }
    }
    call->h->done(call->arg, code, detail);
    call_free(call);
}

static void on_call_timer(evutil_socket_t fd, short what, void *arg)
{
    up_call_t *call = arg;
    (void)fd;
    (void)what;
    if (call->fail_code != NULL) {
        finish(call, call->fail_code, call->fail_detail);
        return;
    }
    snprintf(call->detail, sizeof(call->detail), "no connection within %ld ms", call->connect_ms);
    finish(call, "upstream_connect_timeout", call->detail);
}

/* Reports a failure on the next loop turn (see the top of the file). */
static void fail_later(up_call_t *call, const char *code, const char *detail)
{
    static const struct timeval now = { 0, 0 };
    call->fail_code = code;
    call->fail_detail = detail;
    event_add(&call->tev, &now);
}

/* --- connecting ------------------------------------------------------------ */

static void send_request(up_call_t *call);

/* Opens a connection to the pool's next address, or reports that none
 * would take one. */
static void connect_next(up_call_t *call)
{
    up_pool_t *p = call->pool;
    int err = ECONNREFUSED;
    for (; call->addr_i < p->naddr; call->addr_i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&p->addr[call->addr_i];
        int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        up_conn_t *c;
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, sa, p->addrlen[call->addr_i]) < 0 && errno != EINPROGRESS) {
            err = errno;
            close(fd);
            continue;
        }
        if ((c = conn_new(call->w, p, fd)) == NULL) {
            close(fd);
            fail_later(call, "upstream_error", "out of memory");
            return;
        }
        c->call = call;
        call->conn = c;
        c->connecting = 1;                /* on_conn_write sees how it went */
        event_add(&c->wev, NULL);
        return;
    }
    if (p->naddr == 0)
        snprintf(call->detail, sizeof(call->detail), "the host name has no usable address");
    else
        snprintf(call->detail, sizeof(call->detail), "cannot connect: %s", strerror(err));
    fail_later(call, "upstream_connect_error", call->detail);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    up_call_t *call = arg;
    up_pool_t *p;
    if (result == EVUTIL_EAI_CANCEL)      /* the call is being freed */
        return;
    call->dns = NULL;
    p = call->pool;
    if (result != 0) {
        snprintf(call->detail, sizeof(call->detail), "cannot resolve the host name: %s", evutil_gai_strerror(result));
        fail_later(call, "upstream_connect_error", call->detail);
        return;
    }
    p->naddr = 0;
    for (struct evutil_addrinfo *ai = res; ai != NULL && p->naddr < UP_MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(p->addr[0]))
            continue;
        memcpy(&p->addr[p->naddr], ai->ai_addr, ai->ai_addrlen);
        p->addrlen[p->naddr++] = (socklen_t)ai->ai_addrlen;
    }
    evutil_freeaddrinfo(res);
    p->addr_until = edge_now_ms() + UP_ADDR_TTL_MS;
    call->addr_i = 0;
    connect_next(call);
}

/* A new connection for CALL: addresses from the pool, or looked up first. */
static void open_conn(up_call_t *call)
{
    static const struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                                  .ai_protocol = IPPROTO_TCP };
    up_pool_t *p = call->pool;
    up_state_t *s = call->w->up;
    char port[8];
    struct timeval tv = { call->connect_ms / 1000, (call->connect_ms % 1000) * 1000 };
    event_add(&call->tev, &tv);           /* the connect limit covers the lookup too */
    call->addr_i = 0;
    if (p->numeric || (p->naddr > 0 && edge_now_ms() < p->addr_until)) {
        connect_next(call);
        return;
    }
    if (s->dns == NULL && (s->dns = evdns_base_new(call->w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL) {
        fail_later(call, "upstream_connect_error", "cannot resolve host names: no resolver configuration");
        return;
    }
    snprintf(port, sizeof(port), "%d", p->port);
    /* may answer at once (a hosts-file name), before it returns */
    call->dns = evdns_getaddrinfo(s->dns, p->host, port, &hints, on_resolved, call);
}

/* --- sending ----------------------------------------------------------------- */

/* The connection or request broke before the response was complete. A
 * reused connection that dies before any response byte is the keep-alive
 * race (the upstream closed it as we sent): the request goes again, once,
 * on a new connection. */
static void conn_broke(up_call_t *call, const char *what)
{
    up_conn_t *c = call->conn;
    /* Only at once: an upstream that took the request and died while working
     * on it must not get the same generation twice. */
    if (!call->got_bytes && c->served > 0 && !call->retried && edge_now_ms() - call->sent_ms < UP_RESEND_MS) {
        call->retried = 1;
        call->conn = NULL;
        conn_close(c);
        call->sent = 0;
        call->write_failed = 0;
        call->st = ST_HEAD;
        call->scanned = 0;
        open_conn(call);
        return;
    }
    snprintf(call->detail, sizeof(call->detail), "%s %s", what,
             call->got_bytes ? "in the middle of the response" : "before any response");
    call->keepalive = 0;
    finish(call, "upstream_error", call->detail);
}

/* Writes what is left of the request; the rest waits for the socket. */
static void send_request(up_call_t *call)
{
    up_conn_t *c = call->conn;
    if (call->sent == 0)
        call->sent_ms = edge_now_ms();
    while (call->sent < call->total && !call->write_failed) {
        struct iovec iov[1 + UP_MAX_BODY_PIECES];
        struct msghdr msg = { .msg_iov = iov };
        size_t skip = call->sent;
        ssize_t n;
        for (int i = 0; i < call->niov; i++) {
            if (skip >= call->iov[i].iov_len) {
                skip -= call->iov[i].iov_len;
                continue;
            }
            iov[msg.msg_iovlen].iov_base = (char *)call->iov[i].iov_base + skip;
            iov[msg.msg_iovlen++].iov_len = call->iov[i].iov_len - skip;
            skip = 0;
        }
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(&c->wev, NULL);
                return;
            }
            if (errno == EINTR)
                continue;
            /* The read side reports it: the connection's end (and a dead
             * reused connection is retried from there), or a response that
             * came early (a 413 before the whole body was read). */
            call->write_failed = 1;
            return;
        }
        call->sent += (size_t)n;
    }
}

static void on_conn_write(evutil_socket_t fd, short what, void *arg)
{
    up_conn_t *c = arg;
    up_call_t *call = c->call;
    (void)what;
    if (call == NULL)
        return;
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {                   /* refused: the next address, if any */
            call->conn = NULL;
            conn_close(c);
            call->addr_i++;
            connect_next(call);
            return;
        }
        c->connecting = 0;
        event_del(&call->tev);            /* connected within the limit */
        event_add(&c->rev, NULL);
    }
    send_request(call);
}

/* --- the response ------------------------------------------------------------ */

/* The next line in buf[*pos, end): its start and length without CR LF; 0
 * when it is not complete yet. */
static int next_line(up_conn_t *c, size_t *pos, const char **line, size_t *len)
{
    const char *nl = memchr(c->buf + *pos, '\n', c->end - *pos);
    if (nl == NULL)
        return 0;
    *line = c->buf + *pos;
    *len = (size_t)(nl - *line);
    if (*len > 0 && (*line)[*len - 1] == '\r')
        (*len)--;
    *pos = (size_t)(nl - c->buf) + 1;
    return 1;
}

/* After a handler returned: whether its owner called up_abort meanwhile,
 * in which case the call and its connection are freed here. */
static int gone(up_call_t *call)
{
    call->busy = 0;
    if (!call->aborted)
        return 0;
    if (call->conn != NULL)
        conn_close(call->conn);
    call_free(call);
    return 1;
}

/* The final response's status line has come: its first byte, for the
 * caller's timers (the rest of the head may take a while). Returns 0 when
 * the call is gone (aborted by the handler). */
static int announced(up_call_t *call, int status)
{
    if (call->announced)
        return 1;
    call->announced = 1;
    call->status = status;
    call->busy = 1;
    call->h->status(call->arg, status);
    return !gone(call);
}

/* A complete head in buf[start, end) ends at HEAD_END: a final response's
 * status and headers go to the handlers and its framing is set; an interim
 * 1xx is dropped. Returns 0, 1 when the call is gone (aborted by a
 * handler), or -1 for a malformed head. */
static int take_head(up_call_t *call, size_t head_end)
{
    up_conn_t *c = call->conn;
    size_t pos = c->start, len;
    const char *line, *name, *v;
    size_t nlen, vlen;
    int status, minor;
    h1_framing_t f = { 0 };

    next_line(c, &pos, &line, &len);
    if ((status = h1_status_line(line, len, &minor)) < 0)
        return -1;
    if (status < 200) {
        c->start = head_end;              /* 100 Continue, 103 Early Hints: the final one follows */
        return status == 101 ? -1 : 0;
    }
    if (!announced(call, status))
        return 1;
    while (pos < head_end && next_line(c, &pos, &line, &len) && len > 0) {
        /* not a field (a folded line, say), or a bad Content-Length */
        if (!h1_field(line, len, &name, &nlen, &v, &vlen) || h1_framing_field(&f, name, nlen, v, vlen) < 0)
            return -1;
        call->busy = 1;
        call->h->header(call->arg, name, nlen, v, vlen);
        if (gone(call))
            return 1;
    }
    c->start = head_end;
    call->keepalive = h1_reusable(&f, minor);
    if (status == 204 || status == 304) {
        call->st = ST_DONE;
    } else if (f.chunked == 1) {
        call->st = ST_CHUNKED;
        h1_chunks_init(&call->chunks);
    } else if (f.chunked == 0 && f.has_len) {
        call->st = f.clen > 0 ? ST_BODY_LEN : ST_DONE;
        call->left = f.clen;
    } else {
        call->st = ST_BODY_CLOSE;          /* until the upstream closes */
        call->keepalive = 0;
    }
    return 0;
}

/* The upstream sent what is not HTTP/1.1 (WHAT says how). */
static void fail_malformed(up_call_t *call, const char *what)
{
    call->keepalive = 0;
    finish(call, "upstream_error", what);
}

/* Hands N body bytes at buf[start] over. Returns 1 to go on parsing, 0
 * when the call stops here (paused, aborted or failed). */
static int deliver(up_call_t *call, size_t n)
{
    up_conn_t *c = call->conn;
    int r;
    call->busy = 1;
    r = call->h->body(call->arg, c->buf + c->start, n);
    if (gone(call))
        return 0;
    if (r == UP_PAUSE) {
        call->paused = 1;
        event_del(&c->rev);
        return 0;
    }
    if (r == UP_ABORT) {
        call->keepalive = 0;
        finish(call, "upstream_error", "the response could not be relayed");
        return 0;
    }
    c->start += n;
    if (call->st == ST_BODY_LEN)
        call->left -= n;
    else if (call->st == ST_CHUNKED)
        h1_chunks_took(&call->chunks, n);
    return 1;
}

/* Parses what has arrived, as far as it goes, and finishes the call when
 * the response is complete. Returns 1 when the call waits for more bytes,
 * 0 when it is paused, over or gone. */
static int parse(up_call_t *call)
{
    up_conn_t *c = call->conn;
    const char *line, *why;
    size_t len, pos, at, skip;
    int r;
    for (;;) {
        size_t avail = c->end - c->start;
        switch (call->st) {
        case ST_HEAD:
            pos = c->start + call->scanned;
            for (;;) {
                at = pos;
                if (!next_line(c, &pos, &line, &len)) {
                    call->scanned = at - c->start;   /* the search goes on from the unfinished line */
                    return 1;
                }
                if (len == 0 && at > c->start)
                    break;
                if (len == 0) {           /* a stray empty line before the status line */
                    c->start = pos;
                } else if (at == c->start) {   /* a status line: a final one is the first byte */
                    int minor, status = h1_status_line(line, len, &minor);
                    if (status >= 200 && !announced(call, status))
                        return 0;
                }
            }
            call->scanned = 0;
            if ((r = take_head(call, pos)) != 0) {
                if (r < 0)
                    fail_malformed(call, "a malformed response head");
                return 0;
            }
            break;
        case ST_BODY_LEN:
            if (avail == 0)
                return 1;
            if (!deliver(call, avail < call->left ? avail : (size_t)call->left))
                return 0;
            if (call->left == 0)
                call->st = ST_DONE;
            break;
        case ST_BODY_CLOSE:
            if (avail == 0)
                return 1;
            if (!deliver(call, avail))
                return 0;
            break;
        case ST_CHUNKED:
            r = h1_chunks_next(&call->chunks, c->buf + c->start, avail, &skip, &len, &why);
            c->start += skip;
            if (r == H1_BAD) {
                fail_malformed(call, why);
                return 0;
            }
            if (r == H1_MORE)
                return 1;
            if (r == H1_END)
                call->st = ST_DONE;
            else if (!deliver(call, len))
                return 0;
            break;
        case ST_DONE:
            finish(call, NULL, NULL);
            return 0;
        }
    }
}

/* Makes room in the read buffer: moves unparsed bytes to its front, and
 * grows it (up to UP_HEAD_MAX) when they fill it. Returns -1 when a head
 * or a line does not fit even then. */
static int make_room(up_conn_t *c)
{
    char *nb;
    if (c->start == c->end) {
        c->start = c->end = 0;
        return 0;
    }
    if (c->end < c->cap)
        return 0;
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
        return 0;
    }
    if (c->cap >= UP_HEAD_MAX || (nb = realloc(c->buf, c->cap * 2)) == NULL)
        return -1;
    c->buf = nb;
    c->cap *= 2;
    return 0;
}

static void on_conn_read(evutil_socket_t fd, short what, void *arg)
{
    up_conn_t *c = arg;
    up_call_t *call = c->call;
    ssize_t n;
    (void)what;
    if (call == NULL) {                   /* idle: closed by the upstream, or it sent what nobody asked for */
        pool_unlink(c);
        conn_close(c);
        return;
    }
    if (call->resumed) {                  /* bytes held back by a pause come first */
        call->resumed = 0;
        if (!parse(call))
            return;
    }
    if (make_room(c) < 0) {
        fail_malformed(call, "a response head or line over 64 KiB");
        return;
    }
    n = recv(fd, c->buf + c->end, c->cap - c->end, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_broke(call, strerror(errno));
        return;
    }
    if (n == 0) {
        if (call->st == ST_BODY_CLOSE)    /* the end of a body framed by the close */
            finish(call, NULL, NULL);
        else
            conn_broke(call, "the connection was closed");
        return;
    }
    c->end += (size_t)n;
    call->got_bytes = 1;
    parse(call);
}

/* --- the interface ------------------------------------------------------------ */

/* Splits BASE (http://HOST[:PORT][/PREFIX]) into its parts. */
static int split_url(const char *base, const char **host, size_t *hlen, int *port, const char **prefix)
{
    const char *h = base + 7, *end = h;
    if (strncasecmp(base, "http://", 7) != 0)
        return -1;
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL)
            return -1;
        end++;
    }
    while (*end && *end != '/' && *end != ':')
        end++;
    *host = h;
    *hlen = (size_t)(end - h);
    *port = 80;
    if (*end == ':') {
        char *pe;
        long p = strtol(end + 1, &pe, 10);
        if (pe == end + 1 || p <= 0 || p > 65535 || (*pe != '\0' && *pe != '/'))
            return -1;
        *port = (int)p;
        end = pe;
    }
    *prefix = end;
    return *hlen > 0 ? 0 : -1;
}

/* A libcurl call reports through these, so that its wrapper goes with it. */
static void curl_status(void *arg, int status)
{
    up_call_t *call = arg;
    call->h->status(call->arg, status);
}

static void curl_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    up_call_t *call = arg;
    call->h->header(call->arg, name, nlen, value, vlen);
}

static int curl_body(void *arg, const char *buf, size_t len)
{
    up_call_t *call = arg;
    return call->h->body(call->arg, buf, len);
}

static void curl_done(void *arg, const char *code, const char *detail)
{
    up_call_t *call = arg;
    call->h->done(call->arg, code, detail);
    free(call);
}

static const up_handlers_t via_curl = { curl_status, curl_header, curl_body, curl_done };

up_call_t *up_start(worker_t *w, const up_request_t *rq, const up_handlers_t *h, void *arg)
{
    const char *host, *prefix;
    size_t hlen, plen, head_cap, hl;
    char num[24];
    int port;
    up_state_t *s;
    up_pool_t *p;
    up_call_t *call;

    if (strcmp(w->cfg->upstream_client, "curl") == 0 || split_url(rq->base_url, &host, &hlen, &port, &prefix) < 0) {
        if ((call = calloc(1, sizeof(*call))) == NULL)
            return NULL;
        call->h = h;
        call->arg = arg;
        if ((call->curl = upcurl_start(w, rq, &via_curl, call)) == NULL) {
            free(call);
            return NULL;
        }
        return call;
    }
    if ((s = state_of(w)) == NULL || (p = pool_get(s, host, hlen, port)) == NULL)
        return NULL;
    plen = strlen(prefix) + strlen(rq->path);
    head_cap = plen + strlen(p->authority) + rq->head_len + 96;
    if ((call = call_new(s, head_cap < 1024 ? 1024 : head_cap)) == NULL)
        return NULL;
    head_cap = call->head_cap;
    call->w = w;
    call->pool = p;
    call->h = h;
    call->arg = arg;
    call->connect_ms = rq->connect_ms > 0 ? rq->connect_ms : 1;
    evtimer_assign(&call->tev, w->base, on_call_timer, call);
    for (int i = 0; i < rq->nbody && i < UP_MAX_BODY_PIECES; i++) {
        call->iov[1 + i] = rq->body[i];
        call->total += rq->body[i].iov_len;
    }
    /* (head_cap has room for all of it: 64 bytes of words and digits) */
    hl = 0;
    text_append(call->head, head_cap, &hl, "POST ", prefix, rq->path, " HTTP/1.1\r\nHost: ", p->authority, "\r\n", NULL);
    memcpy(call->head + hl, rq->head, rq->head_len);
    hl += rq->head_len;
    call->head[hl] = '\0';
    text_append(call->head, head_cap, &hl, "Content-Length: ", text_int(num, (long long)call->total), "\r\n\r\n", NULL);
    call->head_len = hl;
    call->iov[0].iov_base = call->head;
    call->iov[0].iov_len = call->head_len;
    call->niov = 1 + (rq->nbody < UP_MAX_BODY_PIECES ? rq->nbody : UP_MAX_BODY_PIECES);
    call->total += call->head_len;
    if ((call->conn = pool_take(p)) != NULL) {
        call->conn->call = call;
        send_request(call);
    } else {
        open_conn(call);
    }
    return call;
}

void up_resume(up_call_t *call)
{
    if (call->curl != NULL) {
        upcurl_resume(call->curl);
        return;
    }
    if (!call->paused || call->conn == NULL)
        return;
    call->paused = 0;
    call->resumed = 1;
    event_add(&call->conn->rev, NULL);
    event_active(&call->conn->rev, EV_READ, 1);   /* the held bytes, on the next turn */
}

void up_abort(up_call_t *call)
{
    if (call->curl != NULL) {
        upcurl_abort(call->curl);
        free(call);
        return;
    }
    if (call->busy) {                     /* inside a handler: freed when it returns (gone) */
        call->aborted = 1;
        return;
    }
    if (call->conn != NULL)
        conn_close(call->conn);
    call_free(call);
}
