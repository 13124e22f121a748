/* plane.h - the data plane's own header: one request's state (req_t), shared by its parts.
 *
 * The data plane takes a request from its headers to its access-log line,
 * in these files along the request's way:
 *   intake.c    path, method, key, body limits and parsing, resolution; the
 *               request's state from allocation to free (proxy.h's entry points)
 *   attempt.c   the attempt engine: candidates one at a time, retries on
 *               Retry-After, caps and cooldowns, the timers of each attempt
 *   relay.c     the upstream's answer to the client: buffered whole, or
 *               relayed event by event with backpressure
 *   reply.c     turnout's own answers (errors, JSON), the retry hints, the
 *               attempt trace and the access log
 *   pace.c      rate limits of keys and tenants (rpm, tpm, in flight), and
 *               the x-ratelimit-* headers
 *   spend.c     budget reservations before each attempt, settled with what
 *               the answer used (usage.c reads the counts) and cost

 *
 * Lifecycle of a request (req_t):
 *   on_headers hook   (after edge.c's header checks) allocate req_t; for a
 *                     request with a body, every check that needs no body
 *                     (413, admit: path, method, key, Content-Type) and then
 *                     "100 Continue" if the client waits for it; a refusal
 *                     here is answered at once and closes the connection
 *   on_read hook      count body bytes; 413 when a chunked body crosses the limit
 *   on_request (gencb) body complete: admit a request without a body, serve
 *                     by path: parse the few fields needed, resolve, start
 *                     the first attempt
 *   upstream handlers capture status and headers, buffer or relay the body;
 *                     pause the call while the client is behind (upstream.c
 *                     makes the call: our HTTP/1.1 client, or libcurl)
 *   next_attempt      the first candidate that is not cooling down (a 429's
 *                     Retry-After, a cooldown) or at a concurrency cap
 *                     (health.c, shared by all workers) and whose budgets
 *                     take its estimated cost (spend.c) gets the attempt
 *   attempt timer     first byte, idle gap inside the response, deadlines;
 *                     between 429 retries, the Retry-After wait
 *   attempt over      success -> reply; 429 -> the same candidate again after
 *                     its Retry-After (up to max_429_retries, inside the
 *                     deadline); other failover-able failures before the
 *                     first byte reached the client -> next candidate; after
 *                     it -> an SSE error event ends the stream
 *   on_request_fini   client done or gone: abort any transfer, log, free
 * The req_t is reachable from evhtp through the request's fini hook argument
 * and from the upstream call through its handlers' argument.
 *
 * Every failure has its own error code, used in the reply, the SSE error
 * event and the access log's "error" field: upstream_connect_error,
 * upstream_connect_timeout, upstream_first_byte_timeout, upstream_idle_timeout,
 * upstream_total_timeout, upstream_rate_limited (429), upstream_error (5xx,
 * 401/403, reset, a body cut short), upstream_truncated (a stream framed
 * only by the close that ended before its terminator). */
#ifndef TURNOUT_PLANE_H
#define TURNOUT_PLANE_H

#include "proxy.h"
#include "dialect.h"
#include "events.h"
#include "health.h"
#include "ledger.h"
#include "metrics.h"
#include "resolve.h"
#include "upstream.h"

#include <event2/event_struct.h>
#include <evhtp/evhtp.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MAX_MODEL 512

#define MAX_TRACE 32

#define MAX_BUDGET_HOLDS 16          /* budgets one attempt can be reserved against (more: refused) */

#define MAX_QUOTED_MODEL (MAX_MODEL * 6 + 3)   /* a model name as a JSON string, at worst */

/* One entry of the attempt trace: an attempt, or a candidate passed over. */
typedef struct trace {
    int cand;                    /* index into res.cand */
    int status;                  /* the upstream's HTTP status, 0 for none */
    const char *error;           /* error code, NULL for none */
    const char *detail;          /* the upstream client's message (in req_t.details), or NULL */
    const char *skipped;         /* "cooling_down", "probing", "at_cap": not called */
    double start_ms, ms;         /* since the request started; how long it took */
} trace_t;

/* Where admit() sends a request. */
typedef enum { TO_NONE, TO_HEALTH, TO_METRICS, TO_MODELS, TO_DATA } target_t;

/* One rate limit a request is counted in (pace.c). */
typedef struct pace {
    ledger_entry_t *e;
    ledger_hold_t h;
    int in_flight;               /* it holds a place in flight */
} pace_t;

typedef struct req {
    worker_t *w;
    evhtp_request_t *req;        /* NULL once the client is gone */
    int refused;                 /* a reply was sent before the body completed */
    int early;                   /* in the headers phase of a request with a body: a reply closes the connection */
    target_t target;             /* what admit() decided, TO_NONE before */
    char router[128];            /* /router/{slug}/..., "" for none */
    int replied;
    uint64_t body_bytes;
    endpoint_t ep;
    char model[MAX_MODEL];       /* as asked by the client */
    int stream;
    char request_id[64];
    const char *body;            /* borrowed from req->buffer_in */
    size_t body_len;
    size_t model_off, model_len; /* where the model value sits in the body */
    size_t user_off, user_len;   /* the body's "user" string, if any */
    int64_t max_tokens;          /* the body's max_completion_tokens, else max_tokens; 0: none */
    size_t usage_off, usage_cut; /* the edit asking an OpenAI stream for its usage (intake.c's */
    const char *usage_ins;       /*   ask_for_usage): USAGE_CUT bytes at USAGE_OFF become USAGE_INS; NULL: none */
    int usage_asked;             /* the client asked for the usage chunk itself */
    int multipart;
    char boundary[80];           /* a multipart body's boundary */
    dialect_t client;            /* the dialect the client speaks: /v1/messages is Anthropic's, the rest OpenAI's */
    int is_data;                 /* a data-plane endpoint (has a kind and a model) */
    char path[128];              /* for the access log */
    char content_type[256];
    char key_id[40];             /* the caller's key id, "" for none */
    char tenant[132];            /* the caller's tenant, "" for none */
    int privileged;              /* the caller's key is the bootstrap key or of role admin */
    const cJSON *key_rec;        /* the caller's stored key, or NULL */
    store_hold_t *key_hold;      /* what keeps it alive */
    resolution_t res;
    int resolved;
    int cand;                    /* index of the candidate being tried */
    int last_cand;               /* the last one called, -1 before any */
    int attempts;
    char attempts_text[12];      /* for the x-turnout-attempts header */
    char retry_after[24];        /* for the Retry-After header */
    int tries;                   /* attempts on the current candidate */
    int ntrace;                  /* entries in trace (below) */
    size_t details_len;          /* bytes used in details (below) */
    const char *last_fail;       /* error code of the last failed attempt */
    const char *error;           /* the error code this request ended with, for the log */
    double deadline_ms;          /* the route's total_s after the request started */
    int max_429_retries;         /* the route's retry settings */
    double retry_cap_ms;
    int n429;                    /* attempts answered 429 */
    int skipped_cap, skipped_cool, skipped_budget;   /* candidates passed over, and why */
    int budget_wait_set;         /* a budget that passed one over resets in budget_wait_ms */
    double budget_wait_ms;
    int nheld;                   /* budget reservations of the current attempt (held, below) */
    int npace;                   /* rate limits taken (pace, below) */
    int64_t pace_estimate;       /* the tokens they took */
    int rl_shown;                /* x-ratelimit-* headers go out, with these: */
    int64_t rl_order;            /*   the requests left of the pace shown (the fewest) */
    int64_t rl_limit[LEDGER__N], rl_remaining[LEDGER__N], rl_reset_s;
    char rl_text[3][2][24];      /* their header values as text (tokens, requests: limit, remaining; the reset) */
    dialect_usage_t estimate;    /* what the current attempt was expected to use */
    int waiting;                 /* the timer is a Retry-After wait */
    struct shared_call *shared_call;   /* a reservation Redis has yet to answer (pace.c, spend.c), or NULL */
    struct spend_wait *spend_wait;     /* what the budget reservation on its way needs back (spend.c) */
    int pace_sent;                     /* paces sent to Redis (in pace, npace 0 until they are taken) */
    int pace_shared, held_shared;      /* the paces / holds were taken in Redis (shared.c), not the ledger, */
    char pace_rid[96], held_rid[96];   /*   as the reservations so named (SHARED_RID) */
    health_t health;             /* the current attempt's shared slots */
    const char *m_endpoint;      /* the endpoint label of its metrics */
    series_t *m_route;           /* its route's in-flight gauge, once counted in it */
    series_t *m_target;          /* the current attempt's target in-flight gauge */
    /* the current attempt */
    up_call_t *call;
    long status;
    evhtp_headers_t *resp_headers;
    int relaying;                /* chunked relay to the client has started */
    int up_framed;               /* the upstream's answer has a Content-Length or chunks (not the close) */
    dialect_t up;                /* the dialect of the current attempt's upstream */
    const dialect_ops_t *xl;     /* the translation between client and upstream, NULL for passthrough */
    dialect_stream_t *xs;        /* a translated stream's state */
    dialect_req_info_t xinfo;    /* what the translated request said of itself */
    dialect_usage_t usage;       /* what the upstream reported, -1 each until it does */
    int drop_usage;              /* the attempt's stream has a usage chunk the client did not ask for */
    int64_t cost_nusd;           /* the answer's cost (spend.c), nano-USD */
    int priced;                  /* its model has prices: the cost means something */
    int sse_done;                /* the last event relayed is the stream's terminator */
    int paused;                  /* the transfer waits for the client to drain */
    int got_first_byte;          /* the current attempt has a response */
    double attempt_ms;           /* when the current attempt started */
    double attempt_deadline_ms;  /* the request's deadline, or the provider's total_s for one attempt */
    double first_byte_ms, idle_ms;   /* its limits: route, else provider, else config */
    double last_data_ms;         /* when its last bytes arrived */
    struct event timer;          /* the current attempt's timeouts */
    struct timespec t0;
    double ttfb_ms;
    int final_status;
    uint64_t bytes_out;
    /* Not cleared for a new request (req_new): kept, or written before being read. */
    struct req *next_free;       /* the worker's list of freed requests */
    struct evbuffer *resp;       /* a buffered non-streaming response; kept empty with a freed request */
    struct evbuffer *xbuf;       /* a translated request body (kept with a freed request, as the next two) */
    struct evbuffer *xout;       /* a translated answer, or translated stream events on their way out */
    char up_model[MAX_QUOTED_MODEL];   /* the target's model, as the upstream body has it */
    char up_hdrs[4096];          /* the upstream headers kept for the client (names and values, */
    size_t up_hdrs_len;          /*   NUL-terminated): resp_headers point into it */
    trace_t trace[MAX_TRACE];
    char details[1024];          /* the trace's detail messages */
    struct {                     /* the current attempt's budget reservations (spend.c), NHELD of them */
        ledger_entry_t *e;
        ledger_hold_t h;
    } held[MAX_BUDGET_HOLDS];
    pace_t pace[2];              /* the key's and the tenant's rate limits (pace.c), NPACE of them */
} req_t;

/* --- reply.c: turnout's own answers, the trace, the access log ---------- */

/* Appends a printf-formatted string to BUF (capacity CAP, *LEN used) unless
 * it would not fit: then BUF is left as it was and -1 returned. */
int plane_append(char *buf, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Milliseconds since the request started. */
double req_elapsed_ms(const req_t *r);
/* A reply header (copied) / one whose value outlives the reply's head (not copied). */
void reply_header(evhtp_request_t *req, const char *k, const char *v);
void reply_header_held(evhtp_request_t *req, const char *k, const char *v);
/* x-request-id and the x-turnout-* headers; keep-alive off when draining. */
void reply_std_headers(req_t *r);
/* An OpenAI-shaped error (PARAM may be NULL), unless the client is gone or answered. */
void reply_error(req_t *r, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void reply_no_router(req_t *r, const char *router);
void reply_not_allowed(req_t *r, htp_method m, const char *path, const char *allow);
/* What is in the reply's buffer, as a whole answer of type CTYPE / TEXT as JSON. */
void reply_buffered(req_t *r, int status, const char *ctype);
void reply_json(req_t *r, int status, const char *text);
/* Retry-After and retry-after-ms for a wait of WAIT_MS (none when < 0), and
 * x-should-retry; returns the Retry-After value. */
const char *reply_retry_hints(req_t *r, double wait_ms, int should_retry);
/* No candidate is left: 429, 502 or 504 with the trace. */
void reply_exhausted(req_t *r);
/* The cluster's shared counters (Redis) cannot be reached: under
 * cluster.redis_failure "closed", a 429 with TYPE and CODE (a limit's or a
 * budget's) and -1; under "local", 0, and the caller enforces its share. */
int reply_if_shared_closed(req_t *r, const char *type, const char *code);
/* A new trace entry for the current candidate (SKIPPED: why it was passed over, or NULL). */
trace_t *trace_add(req_t *r, const char *skipped);
/* The request's access-log line. */
void reply_access_log(req_t *r);

/* --- pace.c: rate limits of keys and tenants ---------------------------------- */

/* Counts the request in its key's and tenant's limits: 0, or -1 after
 * answering 429 rate_limited; 1 when the cluster's shared counters answer
 * later (intake_paced follows then, if the request is admitted). */
int pace_admit(req_t *r);
/* The request is over: its tokens reconciled, its place in flight given back. */
void pace_done(req_t *r);
/* (intake.c) A data request whose paces are taken: resolution, the first attempt. */
void intake_paced(req_t *r);
/* The x-ratelimit-* headers of a limited caller's answer. */
void pace_headers(req_t *r);

/* --- spend.c: budgets, usage and cost ---------------------------------------- */

/* Reserves the current attempt's estimated cost against every budget that
 * applies: 0 when reserved (or none applies), 1 when a budget of the
 * candidate's own passes it over, -1 when one of the request's refused it
 * (the client has its 429); 2 when the cluster's shared counters answer
 * later: attempt_reserved follows then with one of the other three. */
int spend_reserve(req_t *r);
/* The request is gone while Redis has a reservation of its to answer:
 * whatever it takes is given back when the answer comes. */
void spend_forget(req_t *r);
/* Settles the current attempt's reservations: charged with its usage when
 * ANSWERED (its answer reached the client), else released. */
void spend_settle(req_t *r, int answered);
/* The request is over: prices its usage, counts tokens and cost. */
void spend_done(req_t *r);

/* --- attempt.c: the attempt engine ----------------------------------------- */

/* The request's attempt timer, set up once its state is allocated. */
void attempt_init(req_t *r);
/* The request is resolved to candidates: its route's retry settings and
 * deadline, then the first attempt. */
void attempt_first(req_t *r);
/* Gives the current candidate, or the next usable one, an attempt; replies when none is left. */
void attempt_next(req_t *r);
/* spend_reserve's late answer RC for the current candidate: attempt_next goes on from it. */
void attempt_reserved(req_t *r, int rc);
/* Ends the current attempt: its timer, caps, call and buffered answer. */
void attempt_end(req_t *r);
/* One attempt is over (FAILED: NULL for a whole answer, else its code). */
void attempt_over(req_t *r, const char *failed, const char *detail);
/* Whether an upstream status moves on to the next candidate. */
int attempt_fails_over(long status);
/* (Re)arms the attempt's timer for its nearest limit from NOW. */
void attempt_arm_timer(req_t *r, double now);
/* The control loop's event KIND (events.c) for R's current candidate,
 * with the upstream's STATUS (0: none) and DETAIL. */
void attempt_event(req_t *r, event_kind_t kind, int status, const char *detail);

/* --- relay.c: the upstream's answer to the client ------------------------------ */

/* Upstream handlers (upstream.h): a header, body bytes. */
void relay_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen);
int relay_data(void *arg, const char *buf, size_t len);
/* The answer is whole: sends it, or ends the relayed stream. */
void relay_finish(req_t *r);
/* Ends a relayed stream that broke with an SSE error event. */
void relay_abort(req_t *r, const char *code, const char *why);
/* A whole answer, before it goes out: its error code (with *DETAIL) when
 * it cannot be used (a stream framed by the close that ended before its
 * terminator; an answer that does not translate into the client's
 * dialect), else NULL, the answer then in the client's dialect. */
const char *relay_check(req_t *r, const char **detail);
/* Frees a translated stream's state (with the attempt). */
void relay_end(req_t *r);

#endif
