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
#include <sys/socket.h>
#include <unistd.h>

#define CIO_CHUNK (16384 - 256)   /* a read: the chain holding it is one 16 KB block (smallmem's largest class) */
#define CIO_HOLD (64 * 1024)      /* input waiting behind a request that stops reading */

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

static void write_out(client_t *cl)
{
    struct bufferevent *bev = cl->conn->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    int n;
    if (cl->io_failed || evbuffer_get_length(out) == 0)
        return;
    n = evbuffer_write_atmost(out, cl->fd, -1);
    if (n < 0) {
        if (!retriable()) {
            fail(cl, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
            return;
        }
        n = 0;
    }
    if (evbuffer_get_length(out) > 0) {
        if (!event_pending(&cl->wev, EV_WRITE, NULL)) {
            struct timeval tv = { cl->w->cfg->send_timeout_s, 0 };
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

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    client_t *cl = arg;
    (void)fd;
    if (what & EV_TIMEOUT)
        fail(cl, BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING);
    else
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
    if (evbuffer_reserve_space(in, CIO_CHUNK, &v, 1) < 1) {
        fail(cl, BEV_EVENT_ERROR | BEV_EVENT_READING);
        return;
    }
    n = recv(fd, v.iov_base, v.iov_len, 0);
    if (n > 0) {
        v.iov_len = (size_t)n;
        evbuffer_commit_space(in, &v, 1);
        if (closing)
            evbuffer_drain(in, evbuffer_get_length(in));
        else
            bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    if (n < 0 && retriable())
        return;
    if (n == 0 && closing && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        event_del(&cl->rev);            /* the answer goes out first (write_out) */
        cl->eof_pending = 1;
        return;
    }
    fail(cl, (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) | BEV_EVENT_READING);
}

void cio_start(client_t *cl)
{
    struct bufferevent *bev = cl->conn->bev;
    struct event_base *base = cl->w->base;
    cl->fd = cl->conn->sock;
    /* a socket bufferevent freezes the ends it fills and empties itself */
    evbuffer_unfreeze(bufferevent_get_input(bev), 0);
    evbuffer_unfreeze(bufferevent_get_output(bev), 1);
    event_assign(&cl->rev, base, cl->fd, EV_READ | EV_PERSIST, on_readable, cl);
    event_assign(&cl->wev, base, cl->fd, EV_WRITE, on_writable, cl);
    event_assign(&cl->flush, base, -1, 0, on_flush, cl);
    cl->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, cl);
    event_add(&cl->rev, NULL);
}

void cio_stop(client_t *cl)
{
    event_del(&cl->rev);
    event_del(&cl->wev);
    event_del(&cl->flush);
    if (cl->out_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(cl->conn->bev), cl->out_cb);
    close(cl->fd);
}

void cio_request_done(client_t *cl)
{
    if (cl->read_held && !cl->io_failed) {
        cl->read_held = 0;
        event_add(&cl->rev, NULL);
    }
}
