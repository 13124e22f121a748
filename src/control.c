/* control.c - the control loop's feeds on the admin listener: GET /v1/events (attempt events as server-sent events) and GET /v1/stats (per-route and per-target figures).
 *
 * Everything here runs on the admin thread. A timer every TICK_MS reads
 * what each worker's event ring gained (events.c: the workers never wait
 * for it), keeps the last KEEP events for new streams and writes the new
 * ones to every open stream whose caller may see their route. Every
 * STATS_TICK_S seconds it takes a snapshot of the workers' counts
 * (stats.c), from which /v1/stats answers. A stream whose client reads
 * too slowly to keep under MAX_PENDING bytes queued is ended; one that
 * is idle gets a comment line every KEEPALIVE_S seconds, so proxies and
 * clients see it is alive. */
#include "control.h"
#include "events.h"
#include "stats.h"
#include "text.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 200
#define KEEP 100                   /* events a new stream gets first */
#define BATCH 512                  /* events read per worker per tick, at most */
#define KEEPALIVE_S 15
#define MAX_PENDING (1024 * 1024)  /* bytes queued to a stream's client before it is ended */
#define MAX_STREAMS 64

typedef struct stream {
    evhtp_request_t *req;
    char tenant[132];
    int admin;                     /* sees everything */
    time_t last_write;
} stream_t;

static struct {
    gateway_t *gw;
    control_visible_fn visible;
    struct event *timer;
    uint64_t *cursor;              /* per worker: the next event of its ring to read */
    uint64_t lost;                 /* events overwritten before they were read */
    ctl_event_t recent[KEEP];      /* a ring: the last KEEP events, oldest at (nrecent % KEEP) once full */
    uint64_t nrecent;
    ctl_event_t *batch;
    stream_t streams[MAX_STREAMS];
    int nstreams;
    struct evbuffer *all, *out;    /* a tick's events as text; a stream's chunk */
    stats_view_t *view;
    stats_t **stats;               /* the workers' */
    time_t last_tick;
} ctl;

/* Whether the caller of stream S may see event EV. */
static int may_see(const stream_t *s, const ctl_event_t *ev)
{
    return s->admin || (ev->route_id[0] != '\0' && ctl.visible(s->tenant, ev->route_id));
}

/* Appends EV as one SSE event to OUT. */
static void add_event(struct evbuffer *out, const ctl_event_t *ev)
{
    char json[2048];
    size_t n = events_json(ev, json, sizeof(json));
    if (n == 0)
        return;
    evbuffer_add_printf(out, "event: %s\ndata: ", events_kind_name(ev->kind));
    evbuffer_add(out, json, n);
    evbuffer_add(out, "\n\n", 2);
}

/* Sends what OUT holds to S as one chunk (OUT is left empty). */
static void send_chunk(stream_t *s, struct evbuffer *out)
{
    if (evbuffer_get_length(out) == 0)
        return;
    evhtp_send_reply_chunk(s->req, out);
    evbuffer_drain(out, evbuffer_get_length(out));
    s->last_write = time(NULL);
}

/* Bytes queued to S's client and not written yet. */
static size_t pending(const stream_t *s)
{
    evhtp_connection_t *c = evhtp_request_get_connection(s->req);
    struct bufferevent *bev = c != NULL ? evhtp_connection_get_bev(c) : NULL;
    return bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void drop(int i)
{
    ctl.streams[i] = ctl.streams[--ctl.nstreams];
}

/* Ends stream I: its connection closes once what is queued is written. */
static void end_stream(int i)
{
    evhtp_request_t *req = ctl.streams[i].req;
    drop(i);
    evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
    evhtp_send_reply_chunk_end(req);
}

static int by_time(const void *a, const void *b)
{
    const ctl_event_t *x = a, *y = b;
    return x->ms < y->ms ? -1 : x->ms > y->ms;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    size_t got = 0;
    time_t now = time(NULL);
    (void)fd, (void)what, (void)arg;
    /* what every worker wrote since the last tick, in time order */
    for (int w = 0; w < ctl.gw->nworkers && got < BATCH * (size_t)ctl.gw->nworkers; w++)
        if (ctl.gw->workers[w].events != NULL)
            got += events_collect(ctl.gw->workers[w].events, &ctl.cursor[w], ctl.batch + got, BATCH, &ctl.lost);
    qsort(ctl.batch, got, sizeof(ctl_event_t), by_time);
    for (size_t k = 0; k < got; k++)
        ctl.recent[ctl.nrecent++ % KEEP] = ctl.batch[k];
    if (got > 0 && ctl.nstreams > 0) {    /* the tick's events as text, once for every admin's stream */
        evbuffer_drain(ctl.all, evbuffer_get_length(ctl.all));
        for (size_t k = 0; k < got; k++)
            add_event(ctl.all, &ctl.batch[k]);
    }
    for (int i = ctl.nstreams - 1; i >= 0; i--) {
        stream_t *s = &ctl.streams[i];
        if (got > 0 && s->admin) {        /* one chunk a tick, whatever the number of events */
            evbuffer_add(ctl.out, evbuffer_pullup(ctl.all, -1), evbuffer_get_length(ctl.all));
        } else {
            for (size_t k = 0; k < got; k++)
                if (may_see(s, &ctl.batch[k]))
                    add_event(ctl.out, &ctl.batch[k]);
        }
        if (evbuffer_get_length(ctl.out) == 0 && now - s->last_write >= KEEPALIVE_S)
            evbuffer_add(ctl.out, ": keep-alive\n\n", 14);
        send_chunk(s, ctl.out);
        if (pending(s) > MAX_PENDING)
            end_stream(i);                /* a client that does not read: not buffered for without end */
    }
    if (now - ctl.last_tick >= STATS_TICK_S) {
        stats_view_tick(ctl.view, ctl.stats, ctl.gw->nworkers, (int64_t)now);
        ctl.last_tick = now;
    }
}

int control_start(struct event_base *base, gateway_t *gw, control_visible_fn visible)
{
    struct timeval every = { 0, TICK_MS * 1000 };
    memset(&ctl, 0, sizeof(ctl));
    ctl.gw = gw;
    ctl.visible = visible;
    if ((ctl.cursor = calloc((size_t)gw->nworkers + 1, sizeof(uint64_t))) == NULL ||
        (ctl.batch = calloc((size_t)BATCH * ((size_t)gw->nworkers + 1), sizeof(ctl_event_t))) == NULL ||
        (ctl.stats = calloc((size_t)gw->nworkers + 1, sizeof(stats_t *))) == NULL ||
        (ctl.view = stats_view_new()) == NULL || (ctl.all = evbuffer_new()) == NULL ||
        (ctl.out = evbuffer_new()) == NULL ||
        (ctl.timer = event_new(base, -1, EV_PERSIST, on_tick, NULL)) == NULL || event_add(ctl.timer, &every) < 0) {
        control_stop();
        return -1;
    }
    for (int w = 0; w < gw->nworkers; w++)
        ctl.stats[w] = gw->workers[w].stats;
    return 0;
}

void control_stop(void)
{
    while (ctl.nstreams > 0)
        end_stream(ctl.nstreams - 1);
    if (ctl.timer != NULL)
        event_free(ctl.timer);
    free(ctl.cursor);
    free(ctl.batch);
    free(ctl.stats);
    stats_view_free(ctl.view);
    if (ctl.all != NULL)
        evbuffer_free(ctl.all);
    if (ctl.out != NULL)
        evbuffer_free(ctl.out);
    memset(&ctl, 0, sizeof(ctl));
}

int control_events(evhtp_request_t *req, const char *tenant)
{
    stream_t *s;
    uint64_t first;
    if (ctl.timer == NULL || ctl.nstreams == MAX_STREAMS)
        return -1;
    s = &ctl.streams[ctl.nstreams++];
    memset(s, 0, sizeof(*s));
    s->req = req;
    s->admin = tenant == NULL;
    text_cat(s->tenant, sizeof(s->tenant), tenant ? tenant : "", NULL);
    s->last_write = time(NULL);
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("Content-Type", "text/event-stream", 0, 0));
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("Cache-Control", "no-store", 0, 0));
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("X-Accel-Buffering", "no", 0, 0));
    evhtp_send_reply_chunk_start(req, EVHTP_RES_OK);
    if (evhtp_request_get_method(req) == htp_method_HEAD) {   /* the head alone */
        end_stream(ctl.nstreams - 1);
        return 0;
    }
    /* a comment first, so the client sees the stream open even with no event yet; then the last ones */
    evbuffer_add(ctl.out, ": turnout events\n\n", 18);
    first = ctl.nrecent > KEEP ? ctl.nrecent - KEEP : 0;
    for (uint64_t k = first; k < ctl.nrecent; k++)
        if (may_see(s, &ctl.recent[k % KEEP]))
            add_event(ctl.out, &ctl.recent[k % KEEP]);
    send_chunk(s, ctl.out);
    return 0;
}

void control_request_gone(evhtp_request_t *req)
{
    for (int i = 0; i < ctl.nstreams; i++)
        if (ctl.streams[i].req == req) {
            drop(i);
            return;
        }
}

static int show_route(const char *route_id, void *arg)
{
    const char *tenant = arg;
    return *route_id != '\0' && ctl.visible(tenant, route_id);
}

cJSON *control_stats(const char *tenant)
{
    if (ctl.view == NULL)
        return NULL;
    return stats_view_report(ctl.view, ctl.stats, ctl.gw->nworkers, (int64_t)time(NULL),
                             (int64_t)ctl.gw->started_at, tenant != NULL ? show_route : NULL, (void *)tenant);
}
