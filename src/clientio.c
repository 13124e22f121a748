/* clientio.c - a client connection's socket I/O: reads without FIONREAD, replies written at once.
 *
 * libevhtp drives a connection through a bufferevent: it parses what is in
 * the input buffer, adds its replies to the output buffer and is told, by
 * the bufferevent's callbacks, that bytes arrived, that the output drained
 * or that the connection failed. A socket bufferevent pays for that with
 * three system calls per request that nginx does not make: ioctl(FIONREAD)
 * before each read, and an epoll_ctl to start watching for writability and
 * another to stop, around every reply - each reply waits a loop turn for a
 * write that could have been made at once.
 *
 * So the data listener's bufferevents are made without their socket
 * (libevhtp patch 0007: fd -1, which libevent never polls) and this file
 * does the socket's I/O under them:
 *
 *   reading   one persistent EV_READ event for the connection's life; each
 *             readiness is one recv of up to 16 KB straight into the input
 *             buffer, then the bufferevent's read callback (deferred, as
 *             the socket bufferevent's are).
 *   writing   whatever is added to the output buffer is written at the end
 *             of the loop turn that added it (an active event, not a
 *             watched one), so a whole reply goes in one writev; EV_WRITE is
 *             watched only when the socket would block, with the send
 *             timeout; the write callback runs when the output is down to
 *             its low watermark, as a socket bufferevent's does.
 *   failure   end of input, a socket error or the send timeout runs the
 *             bufferevent's event callback with the flags a socket
 *             bufferevent would give, and libevhtp frees the connection.
 *
 * Over TLS (the listener has a certificate: tls, admin.tls) the same events drive
 * OpenSSL on the socket: a read is SSL_read into the input buffer (looping
 * while OpenSSL holds decrypted bytes the socket will not signal again),
 * and the output is written as records of up to 16 KB, each one SSL_write
 * of the output's first bytes copied together, so a reply of many small
 * pieces is one record and one system call. The handshake is done by the
 * first reads. A client whose first byte is not a TLS record speaks plain
 * HTTP to a TLS port: it gets a 400 in clear text, as nginx answers it,
 * and the connection closes.
 *
 * Reading follows what libevhtp wants: a connection being closed after its
 * answer (evhtp_connection_close_after_write: no read callback) has what
 * its client still sends read and dropped, and the client's close reported
 * only once the answer is written; a connection that stops reading (a
 * pipelined request waiting behind the current one, 64 KB of it at most)
 * is watched again when the request is done. */
#include "clientio.h"
#include "edge.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CIO_CHUNK (16384 - 256)   /* a read: the chain holding it is one 16 KB block (smallmem's largest class) */
#define CIO_HOLD (64 * 1024)      /* input waiting behind a request that stops reading */
#define CIO_RECORD 16384          /* the most a TLS record carries */

/* The answer to plain HTTP on a TLS port. */
static const char plain_on_tls[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 135\r\n\r\n"
    "{\"error\":{\"message\":\"this port speaks HTTPS: a plain HTTP request was sent to it\",\"type\":\"invalid_request_error\","
    "\"code\":\"plain_http_to_https\"}}";

static int retriable(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* Reports WHAT (BEV_EVENT_*) as a socket bufferevent would; libevhtp then
 * frees the connection, which stops this one's I/O (cio_stop). */
static void fail(client_t *cl, short what)
{
    event_del(&cl->rev);
    event_del(&cl->wev);
    cl->io_failed = 1;
    if (what & BEV_EVENT_EOF)
        errno = 0;                      /* libevhtp reads EOF with EAGAIN as "read again" */
    bufferevent_trigger_event(cl->conn->bev, what, BEV_TRIG_DEFER_CALLBACKS);
}

/* Writes OUT's first bytes as TLS records: returns what was written, 0
 * when the socket is full (or OpenSSL must read first), -1 on an error. */
static int tls_write(client_t *cl, struct evbuffer *out)
{
    static _Thread_local char rec[CIO_RECORD];
    int total = 0;
    while (evbuffer_get_length(out) > 0) {
        /* a write OpenSSL asked to retry is retried with the same bytes */
        size_t len = cl->tls_retry ? cl->tls_retry : evbuffer_get_length(out) < CIO_RECORD ? evbuffer_get_length(out)
                                                                                          : CIO_RECORD;
        int n, e;
        if (evbuffer_copyout(out, rec, len) != (ev_ssize_t)len)
            return -1;
        ERR_clear_error();
        if ((n = SSL_write(cl->ssl, rec, (int)len)) > 0) {
            cl->tls_retry = 0;
            evbuffer_drain(out, (size_t)n);
            total += n;
            continue;
        }
        cl->tls_retry = len;
        e = SSL_get_error(cl->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_WANT_READ) {
            cl->write_wants_read = 1;       /* on_readable writes again */
            break;
        }
        return total > 0 ? total : -1;
    }
    return total;
}

static void write_out(client_t *cl)
{
    struct bufferevent *bev = cl->conn->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    int n;
    if (cl->io_failed || evbuffer_get_length(out) == 0)
        return;
    if (cl->ssl != NULL) {
        cl->write_wants_read = 0;
        if ((n = tls_write(cl, out)) < 0) {
            fail(cl, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
            return;
        }
        goto written;
    }
    n = evbuffer_write_atmost(out, cl->fd, -1);
    if (n < 0) {
        if (!retriable()) {
            fail(cl, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
            return;
        }
        n = 0;
    }
written:
    if (evbuffer_get_length(out) > 0 && !cl->write_wants_read) {
        if (!event_pending(&cl->wev, EV_WRITE, NULL)) {
            struct timeval tv = { (*cl->cfg)->send_timeout_s, 0 };
            event_add(&cl->wev, &tv);
        }
    } else {
        event_del(&cl->wev);
    }
    if (n > 0)                          /* runs if the output is down to its low watermark */
        bufferevent_trigger(bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
    if (cl->eof_pending && evbuffer_get_length(out) == 0)
        fail(cl, BEV_EVENT_EOF | BEV_EVENT_READING);   /* after that write callback */
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    client_t *cl = arg;
    (void)fd;
    (void)what;
    cl->flush_armed = 0;
    write_out(cl);
}

static void on_readable(evutil_socket_t fd, short what, void *arg);

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    client_t *cl = arg;
    if (what & EV_TIMEOUT) {
        fail(cl, BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING);
        return;
    }
    if (cl->read_wants_write) {           /* a TLS read (the handshake) waited to write */
        cl->read_wants_write = 0;
        on_readable(fd, EV_READ, cl);
        if (cl->io_failed)
            return;
    }
    write_out(cl);
}

/* Bytes were added to the output: written at the end of this loop turn,
 * unless the socket is full and EV_WRITE already waits for it. */
static void on_output(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    client_t *cl = arg;
    (void)out;
    if (info->n_added > 0 && !cl->flush_armed && !event_pending(&cl->wev, EV_WRITE, NULL)) {
        cl->flush_armed = 1;
        event_active(&cl->flush, EV_WRITE, 1);
    }
}

/* The first byte of a connection to a TLS port: a handshake record goes
 * on to OpenSSL; anything else is plain HTTP, answered in clear text and
 * closed. Returns 1 to go on, 0 to wait, -1 when the connection is done. */
static int tls_first_byte(client_t *cl)
{
    unsigned char b;
    ssize_t n = recv(cl->fd, &b, 1, MSG_PEEK);
    if (n < 0 && retriable())
        return 0;
    if (n <= 0) {
        fail(cl, (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) | BEV_EVENT_READING);
        return -1;
    }
    if (b != 0x16) {                      /* not a TLS handshake record */
        char drop[4096];
        /* what it sent is read first: closing with unread bytes would reset
         * the connection, and the reset could overtake the answer */
        for (int i = 0; i < 16 && recv(cl->fd, drop, sizeof(drop), 0) == (ssize_t)sizeof(drop); i++)
            ;
        (void)send(cl->fd, plain_on_tls, sizeof(plain_on_tls) - 1, MSG_NOSIGNAL);
        shutdown(cl->fd, SHUT_WR);
        fail(cl, BEV_EVENT_EOF | BEV_EVENT_READING);
        return -1;
    }
    cl->tls_seen = 1;
    return 1;
}

/* Reads what OpenSSL has for IN, in pieces of up to a chunk, while it has
 * any and the input is not full: the bytes read, 0 when it waits, -1 at the
 * end of input, -2 on an error. */
static ssize_t tls_read(client_t *cl, struct evbuffer *in)
{
    ssize_t got = 0;
    do {
        struct evbuffer_iovec v;
        int n, e;
        if (evbuffer_reserve_space(in, CIO_CHUNK, &v, 1) < 1)
            return -2;
        ERR_clear_error();
        if ((n = SSL_read(cl->ssl, v.iov_base, (int)v.iov_len)) > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(in, &v, 1);
            got += n;
            continue;
        }
        e = SSL_get_error(cl->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_WANT_WRITE) {  /* the handshake must send first */
            cl->read_wants_write = 1;
            if (!event_pending(&cl->wev, EV_WRITE, NULL)) {
                struct timeval tv = { (*cl->cfg)->send_timeout_s, 0 };
                event_add(&cl->wev, &tv);
            }
            break;
        }
        if (got > 0)
            break;                        /* the end or the error shows at the next read */
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
            return -1;
        if (e == SSL_ERROR_SYSCALL && retriable())
            return 0;
        return -2;
    } while (SSL_pending(cl->ssl) > 0 && evbuffer_get_length(in) < CIO_HOLD);
    return got;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    client_t *cl = arg;
    struct bufferevent *bev = cl->conn->bev;
    struct evbuffer *in = bufferevent_get_input(bev);
    bufferevent_data_cb readcb = NULL;
    struct evbuffer_iovec v;
    ssize_t n;
    int closing;
    (void)what;
    bufferevent_getcb(bev, &readcb, NULL, NULL, NULL);
    closing = readcb == NULL;           /* closed after its answer: what comes is dropped */
    if (!closing && (!(bufferevent_get_enabled(bev) & EV_READ) || evbuffer_get_length(in) >= CIO_HOLD)) {
        event_del(&cl->rev);            /* until the request in progress is done */
        cl->read_held = 1;
        return;
    }
    if (cl->ssl != NULL) {
        if (!cl->tls_seen && tls_first_byte(cl) <= 0)
            return;
        n = tls_read(cl, in);
        if (cl->write_wants_read)
            write_out(cl);                /* a write waited for this read */
        if (cl->io_failed)
            return;
        if (n == 0)
            return;
        if (n == -2) {
            fail(cl, BEV_EVENT_ERROR | BEV_EVENT_READING);
            return;
        }
        if (n == -1)
            n = 0;                        /* the end of input, as recv's 0 */
    } else {
        if (evbuffer_reserve_space(in, CIO_CHUNK, &v, 1) < 1) {
            fail(cl, BEV_EVENT_ERROR | BEV_EVENT_READING);
            return;
        }
        if ((n = recv(fd, v.iov_base, v.iov_len, 0)) > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(in, &v, 1);
        }
    }
    if (n > 0) {
        if (closing)
            evbuffer_drain(in, evbuffer_get_length(in));
        else
            bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    if (n < 0 && retriable())
        return;
    if (n == 0) {                       /* the client is done sending (it may still read) */
        event_del(&cl->rev);
        if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
            cl->eof_pending = 1;        /* the answer goes out first (write_out) */
            return;
        }
        /* reported as a socket bufferevent would, but without stopping the
         * writes: an answer made before the report runs (a request read in
         * the same turn) is still written by the flush that precedes it */
        errno = 0;
        bufferevent_trigger_event(bev, BEV_EVENT_EOF | BEV_EVENT_READING, BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    fail(cl, BEV_EVENT_ERROR | BEV_EVENT_READING);
}

int cio_start(client_t *cl, struct event_base *base, const config_t *const *cfg, struct ssl_ctx_st *tls)
{
    struct bufferevent *bev = cl->conn->bev;
    cl->cfg = cfg;
    cl->fd = cl->conn->sock;
    /* a socket bufferevent freezes the ends it fills and empties itself */
    evbuffer_unfreeze(bufferevent_get_input(bev), 0);
    evbuffer_unfreeze(bufferevent_get_output(bev), 1);
    event_assign(&cl->rev, base, cl->fd, EV_READ | EV_PERSIST, on_readable, cl);
    event_assign(&cl->wev, base, cl->fd, EV_WRITE, on_writable, cl);
    event_assign(&cl->flush, base, -1, 0, on_flush, cl);
    cl->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, cl);
    if (tls != NULL) {
        if ((cl->ssl = SSL_new(tls)) == NULL || SSL_set_fd(cl->ssl, cl->fd) != 1) {
            ERR_clear_error();
            fail(cl, BEV_EVENT_ERROR | BEV_EVENT_READING);   /* out of memory: libevhtp lets it go */
            return -1;
        }
        SSL_set_accept_state(cl->ssl);
    }
    event_add(&cl->rev, NULL);
    return 0;
}

void cio_stop(client_t *cl)
{
    event_del(&cl->rev);
    event_del(&cl->wev);
    event_del(&cl->flush);
    if (cl->out_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(cl->conn->bev), cl->out_cb);
    if (cl->ssl != NULL) {
        if (cl->tls_seen && !cl->io_failed && SSL_is_init_finished(cl->ssl))
            (void)SSL_shutdown(cl->ssl);  /* close_notify, if the socket takes it now */
        ERR_clear_error();
        SSL_free(cl->ssl);
        cl->ssl = NULL;
    }
    close(cl->fd);
}

void cio_request_done(client_t *cl)
{
    if (cl->read_held && !cl->io_failed) {
        cl->read_held = 0;
        event_add(&cl->rev, NULL);
        if (cl->ssl != NULL && SSL_pending(cl->ssl) > 0)
            event_active(&cl->rev, EV_READ, 1);   /* bytes OpenSSL holds: the socket will not say so */
    }
}
