/* intake.c - a request from its headers to its first attempt: path, method, key, body, resolution; its state's life. */
#include "plane.h"
#include "admin.h"
#include "auth.h"
#include "budget.h"
#include "edge.h"
#include "etcd.h"
#include "jscan.h"
#include "multipart.h"
#include "stats.h"
#include "tally.h"
#include "text.h"

#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define REQ_CLEARED offsetof(req_t, next_free)

#define REQ_FREE_MAX 64          /* freed requests a worker keeps for the next ones */

/* A request's state: one the worker freed before (a request is over 10 KB,
 * and a fresh one every time goes through malloc's slow path), or new. */
static req_t *req_new(worker_t *w)
{
    req_t *r = w->free_reqs;
    if (r != NULL) {
        w->free_reqs = r->next_free;
        w->nfree_reqs--;
    } else if ((r = malloc(sizeof(*r))) != NULL) {
        r->resp = r->xbuf = r->xout = NULL;
    } else {
        return NULL;
    }
    /* (the resolution's 7 KB of arrays are written before they are read) */
    memset(r, 0, offsetof(req_t, res));
    resolve_clear(&r->res);
    memset((char *)r + offsetof(req_t, res) + sizeof(r->res), 0, REQ_CLEARED - offsetof(req_t, res) - sizeof(r->res));
    r->usage.prompt = r->usage.completion = r->usage.cached = -1;
    return r;
}

/* Frees R and the buffers it keeps between requests. */
static void req_free(req_t *r)
{
    if (r->resp != NULL)
        evbuffer_free(r->resp);
    if (r->xbuf != NULL)
        evbuffer_free(r->xbuf);
    if (r->xout != NULL)
        evbuffer_free(r->xout);
    free(r);
}

static void req_drop(worker_t *w, req_t *r)
{
    if (w->nfree_reqs >= REQ_FREE_MAX) {
        req_free(r);
        return;
    }
    r->next_free = w->free_reqs;
    w->free_reqs = r;
    w->nfree_reqs++;
}

void proxy_worker_free(worker_t *w)
{
    while (w->free_reqs != NULL) {
        req_t *r = w->free_reqs;
        w->free_reqs = r->next_free;
        req_free(r);
    }
    w->nfree_reqs = 0;
}

/* --- request ids ------------------------------------------------------- */

static uint64_t next_rand(worker_t *w)
{
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

static void set_request_id(req_t *r)
{
    const char *id = evhtp_kv_find(r->req->headers_in, "x-request-id");
    size_t n = id ? strlen(id) : 0;
    int ok = n > 0 && n < sizeof(r->request_id);
    for (size_t i = 0; ok && i < n; i++)  /* echo only what is safe to put in a header */
        ok = id[i] > 0x20 && id[i] < 0x7f && id[i] != '"' && id[i] != '\\';
    char hex[17];
    if (ok)
        memcpy(r->request_id, id, n + 1);
    else
        text_cat(r->request_id, sizeof(r->request_id), "req_", text_hex64(hex, next_rand(r->w)), NULL);
}

typedef struct route_path {
    const char *path;
    endpoint_t ep;
    dialect_t dialect;           /* the API the client speaks there */
} route_path_t;

static const route_path_t data_paths[] = {
    { "/v1/chat/completions", EP_CHAT, DIALECT_OPENAI },
    { "/v1/completions", EP_COMPLETIONS, DIALECT_OPENAI },
    { "/v1/embeddings", EP_EMBEDDINGS, DIALECT_OPENAI },
    { "/v1/audio/speech", EP_AUDIO_SPEECH, DIALECT_OPENAI },
    { "/v1/audio/transcriptions", EP_AUDIO_TRANSCRIPTION, DIALECT_OPENAI },
    { "/v1/images/generations", EP_IMAGE_GENERATION, DIALECT_OPENAI },
    { "/v1/responses", EP_RESPONSES, DIALECT_OPENAI },   /* OpenAI's Responses API: passed through, never translated */
    { "/v1/messages", EP_CHAT, DIALECT_ANTHROPIC },   /* Anthropic's Messages API: the chat routes serve it */
};

static req_t *req_of(evhtp_request_t *req)
{
    return req->hooks != NULL ? req->hooks->on_request_fini_arg : NULL;
}

/* Finds the caller's key: the bootstrap admin key, or a stored enabled key
 * of any role. Returns 0 when the request may go on (a key was found, or
 * none is required). */
static int authorised(req_t *r)
{
    const char *h = evhtp_kv_find(r->req->headers_in, "authorization"), *token = auth_bearer_token(h);
    char bearer[512];
    /* Anthropic's clients send the key in x-api-key */
    if (token == NULL && r->client == DIALECT_ANTHROPIC &&
        (token = evhtp_kv_find(r->req->headers_in, "x-api-key")) != NULL) {
        text_cat(bearer, sizeof(bearer), "Bearer ", token, NULL);
        h = bearer;
        token = auth_bearer_token(h);
    }
    if (token == NULL)
        return !r->w->cfg->require_key;
    if (auth_bearer_matches(h, r->w->gw->admin_key)) {
        text_cat(r->key_id, sizeof(r->key_id), "bootstrap", NULL);
        r->privileged = 1;
        return 1;
    }
    if ((r->key_rec = auth_find_key(r->w->reader, token, &r->key_hold)) != NULL) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r->key_rec, "id");
        const cJSON *tenant = cJSON_GetObjectItemCaseSensitive(r->key_rec, "tenant");
        if (cJSON_IsString(id))
            text_cat(r->key_id, sizeof(r->key_id), id->valuestring, NULL);
        if (cJSON_IsString(tenant))
            text_cat(r->tenant, sizeof(r->tenant), tenant->valuestring, NULL);
        r->privileged = strcmp(schema_str(r->key_rec, "role", ""), "admin") == 0;
        if (cJSON_IsString(id) &&
            admin_key_use_due(id->valuestring,
                              cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->key_rec, "last_used_at"))))
            admin_key_used(id->valuestring);
        return 1;
    }
    return !r->w->cfg->require_key;
}

/* 1 when the caller's key may use the resolved route: a key with
 * allowed_routes reaches only those routes, by name. */
static int route_allowed(const req_t *r)
{
    const cJSON *allowed = cJSON_GetObjectItemCaseSensitive(r->key_rec, "allowed_routes"), *a;
    if (cJSON_GetArraySize(allowed) == 0)
        return 1;
    if (r->res.route == NULL)
        return 0;
    cJSON_ArrayForEach(a, allowed)
        if (cJSON_IsString(a) && strcmp(a->valuestring, r->res.route) == 0)
            return 1;
    return 0;
}

/* GET /v1/models: what the caller may name. */
typedef struct models_list {
    cJSON *data;
    cJSON *seen;                 /* names listed so far (a set) */
    const req_t *r;
    const char *router;
} models_list_t;

static void add_model(models_list_t *l, const char *id, const char *owner)
{
    cJSON *m;
    if (cJSON_GetObjectItemCaseSensitive(l->seen, id) != NULL)
        return;                  /* a name in several scopes, or a bare alias on several providers */
    cJSON_AddItemToObject(l->seen, id, cJSON_CreateTrue());
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", owner);
    cJSON_AddItemToArray(l->data, m);
}

/* A route is listed when the caller's scopes and router reach it, it is a
 * name rather than a pool pattern, and the key's allowed_routes (if any)
 * name it. */
static void on_list_route(const cJSON *rec, void *arg)
{
    models_list_t *l = arg;
    const req_t *r = l->r;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "name"));
    const char *scope = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "scope"));
    const char *router = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "router"));
    const cJSON *allowed = cJSON_GetObjectItemCaseSensitive(r->key_rec, "allowed_routes"), *a;
    int ok = cJSON_GetArraySize(allowed) == 0;
    if (name == NULL || scope == NULL || schema_is_glob(name) || strcmp(router ? router : "", l->router) != 0)
        return;
    if (!(strcmp(scope, "global") == 0 ||
          (strncmp(scope, "tenant:", 7) == 0 && r->tenant[0] && strcmp(scope + 7, r->tenant) == 0) ||
          (strncmp(scope, "key:", 4) == 0 && r->key_id[0] && strcmp(scope + 4, r->key_id) == 0)))
        return;
    cJSON_ArrayForEach(a, allowed)
        ok |= cJSON_IsString(a) && strcmp(a->valuestring, name) == 0;
    if (ok)
        add_model(l, name, "turnout");
}

static void on_list_provider(const cJSON *p, void *arg)
{
    models_list_t *l = arg;
    const cJSON *m, *pn = cJSON_GetObjectItemCaseSensitive(p, "name");
    char id[512];
    if (!cJSON_IsString(pn) || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "enabled")))
        return;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models")) {
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(m, "name");
        if (!cJSON_IsString(mn) || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(m, "enabled")))
            continue;
        snprintf(id, sizeof(id), "%s/%s", pn->valuestring, mn->valuestring);
        add_model(l, id, pn->valuestring);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "bare_alias")))
            add_model(l, mn->valuestring, pn->valuestring);
    }
}

static void serve_metrics(req_t *r)
{
    metrics_render(r->w->gw, r->req->buffer_out);
    budgets_refresh(r->w->budgets, r->w->reader, 0);   /* the budgets as the store has them now */
    budgets_render(r->w->budgets, r->req->buffer_out);
    reply_buffered(r, 200, "text/plain; version=0.0.4; charset=utf-8");
}

static void serve_models(req_t *r, const char *router)
{
    models_list_t l = { NULL, cJSON_CreateObject(), r, router };
    cJSON *root = cJSON_CreateObject();
    char *text;
    cJSON_AddStringToObject(root, "object", "list");
    l.data = cJSON_AddArrayToObject(root, "data");
    if (*router != '\0') {
        store_hold_t *hold;
        const cJSON *rt = store_get_router(r->w->reader, router, &hold);
        int open = rt != NULL && !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rt, "active")) &&
                   resolve_router_open(rt, r->tenant, r->privileged);
        store_release(hold);
        if (!open) {
            cJSON_Delete(root);
            cJSON_Delete(l.seen);
            reply_no_router(r, router);
            return;
        }
    }
    store_each(r->w->reader, STORE_ROUTES, on_list_route, &l);
    /* PROVIDER/MODEL names and bare aliases: outside routers, for keys not
     * limited to named routes */
    if (*router == '\0' && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->key_rec, "allowed_routes")) == 0)
        store_each(r->w->reader, STORE_PROVIDERS, on_list_provider, &l);
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    cJSON_Delete(l.seen);
    if (text == NULL) {
        reply_error(r, 500, "server_error", "internal_error", NULL, "out of memory");
        return;
    }
    reply_json(r, 200, text);
    free(text);
}

/* The value at BODY[OFF, OFF+LEN) as a token count: a whole number, else -1. */
static int64_t max_tokens_of(const char *body, size_t off, size_t len)
{
    int64_t v = 0;
    if (len == 0 || len > 15)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (body[off + i] < '0' || body[off + i] > '9')
            return -1;
        v = v * 10 + (body[off + i] - '0');
    }
    return v;
}

/* An OpenAI stream is asked for its usage (SPEC 8): the edit that makes
 * the body say stream_options.include_usage: true, made on its way to an
 * OpenAI upstream (attempt.c), and whether the client asked for it itself
 * (else relay.c drops the usage chunk it did not ask for). The body's
 * stream_options (its value at OFF, LEN bytes; LEN 0: none):
 *   none                     "stream_options":{"include_usage":true}, after the body's {
 *   {... no include_usage}   "include_usage":true first in it
 *   {"include_usage":true}   nothing: the client asked
 *   {"include_usage":false}  the false becomes "true " (same length)
 *   null                     replaced by {"include_usage":true}
 * An include_usage given twice or spelled with escapes is refused (400):
 * an upstream would read the one turnout did not, and its usage would go
 * unmetered. Any other value is left to the upstream to refuse. Returns 0,
 * or -1 after the 400. */
static int ask_for_usage(req_t *r, size_t off, size_t len)
{
    size_t pos = off, at, val_off = 0, val_len = 0;
    jscan_item_t it;
    int seen = 0;
    r->usage_cut = 0;
    if (len == 0) {
        for (at = 0; at < r->body_len && r->body[at] != '{'; at++)
            ;
        r->usage_off = at + 1;
        r->usage_ins = "\"stream_options\":{\"include_usage\":true},";
        return 0;
    }
    if (len == 4 && memcmp(r->body + off, "null", 4) == 0) {
        r->usage_off = off;
        r->usage_cut = 4;
        r->usage_ins = "{\"include_usage\":true}";
        return 0;
    }
    if (r->body[off] != '{')
        return 0;
    while (jscan_next_item(r->body, r->body_len, off, &pos, &it) == 1) {
        char key[16];
        if (jscan_string(r->body, it.key_off, it.key_len, key, sizeof(key)) != 13 || memcmp(key, "include_usage", 13) != 0)
            continue;
        if (seen++ || it.key_len != 15) {
            reply_error(r, 400, "invalid_request_error", "invalid_request", "stream_options.include_usage",
                        "'stream_options.include_usage' must be given once, its name spelled without escapes");
            return -1;
        }
        val_off = it.val_off;
        val_len = it.val_len;
    }
    if (seen) {
        if (val_len == 4 && memcmp(r->body + val_off, "true", 4) == 0) {
            r->usage_asked = 1;
        } else if (val_len == 5 && memcmp(r->body + val_off, "false", 5) == 0) {
            r->usage_off = val_off;
            r->usage_cut = 5;
            r->usage_ins = "true ";
        }
        return 0;                         /* (anything else: the upstream's to refuse) */
    }
    for (at = off + 1; at < off + len && (r->body[at] == ' ' || r->body[at] == '\t' || r->body[at] == '\r' ||
                                          r->body[at] == '\n'); at++)
        ;
    r->usage_off = off + 1;
    r->usage_ins = r->body[at] == '}' ? "\"include_usage\":true" : "\"include_usage\":true,";
    return 0;
}

static int parse_body(req_t *r)
{
    jscan_t js;
    long n;
    if (r->multipart) {
        size_t off, len;
        if (multipart_boundary(r->content_type, r->boundary, sizeof(r->boundary)) < 0) {
            reply_error(r, 400, "invalid_request_error", "invalid_multipart", NULL,
                        "multipart/form-data needs a boundary parameter of 1-70 characters");
            return -1;
        }
        if (multipart_field(r->body, r->body_len, r->boundary, "model", &off, &len) < 0) {
            reply_error(r, 400, "invalid_request_error", "missing_model", "model",
                        "the form needs one 'model' field: it has none, or two, or the multipart body is malformed");
            return -1;
        }
        if (len == 0 || len >= sizeof(r->model) || memchr(r->body + off, '\0', len) != NULL) {
            reply_error(r, 400, "invalid_request_error", "invalid_model", "model",
                        "'model' must be a non-empty string of at most %zu bytes", sizeof(r->model) - 1);
            return -1;
        }
        memcpy(r->model, r->body + off, len);
        r->model[len] = '\0';
        r->model_off = off;
        r->model_len = len;
        return 0;
    }
    switch (jscan_body(r->body, r->body_len, &js)) {
    case JSCAN_INVALID:
        reply_error(r, 400, "invalid_request_error", "invalid_json", NULL,
                    "the request body is not valid JSON (error at byte %zu)", js.error_off);
        return -1;
    case JSCAN_NOT_OBJECT:
        reply_error(r, 400, "invalid_request_error", "missing_model", "model",
                    "the request body must be a JSON object with a 'model' field");
        return -1;
    case JSCAN_OK:
        break;
    }
    if (!js.has_model) {
        reply_error(r, 400, "invalid_request_error", "missing_model", "model",
                    "you must provide a model parameter");
        return -1;
    }
    if (!js.model_is_string ||
        (n = jscan_string(r->body, js.model_off, js.model_len, r->model, sizeof(r->model))) <= 0) {
        reply_error(r, 400, "invalid_request_error", "invalid_model", "model",
                    "'model' must be a non-empty string of at most %zu bytes", sizeof(r->model) - 1);
        return -1;
    }
    r->model_off = js.model_off;
    r->model_len = js.model_len;
    r->stream = js.stream;
    r->user_off = js.user_off;
    r->user_len = js.user_len;
    if ((r->max_tokens = max_tokens_of(r->body, js.max_off, js.max_len)) < 0)
        r->max_tokens = 0;
    if (r->stream && r->client == DIALECT_OPENAI && (r->ep == EP_CHAT || r->ep == EP_COMPLETIONS) &&
        ask_for_usage(r, js.opts_off, js.opts_len) < 0)
        return -1;
    return 0;
}

static int content_type_ok(req_t *r)
{
    const char *ct = r->content_type;
    if (r->ep == EP_AUDIO_TRANSCRIPTION) {
        r->multipart = 1;
        return strncasecmp(ct, "multipart/form-data", 19) == 0;
    }
    if (*ct == '\0')
        return 1;                          /* curl -d without -H: treat as JSON */
    return strncasecmp(ct, "application/json", 16) == 0 && (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

/* The A/B stickiness key: the body's "user", else the x-turnout-ab-key
 * header, else the caller's key id; "" for none (a random split). */
static const char *sticky_key(req_t *r, char *buf, size_t cap)
{
    const char *h;
    if (r->user_len > 0 && jscan_string(r->body, r->user_off, r->user_len, buf, cap) > 0)
        return buf;
    if ((h = evhtp_kv_find(r->req->headers_in, "x-turnout-ab-key")) != NULL && *h)
        return h;
    return r->key_id;
}

/* A data-plane request admit() let in (its endpoint kind in r->ep): the
 * body's model, resolution, the first attempt. */
static void serve_data(req_t *r)
{
    struct evbuffer *in = r->req->buffer_in;
    r->body_len = evbuffer_get_length(in);
    r->body = r->body_len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (parse_body(r) < 0 || pace_admit(r) != 0)
        return;                           /* answered, or admitted later (intake_paced) */
    intake_paced(r);
}

void intake_paced(req_t *r)
{
    const char *router = r->router;
    endpoint_t ep = r->ep;
    char sticky[256];
    resolve_in_t ask = { .ep = ep, .model = r->model, .router = router, .key_id = r->key_id, .tenant = r->tenant,
                         .sticky = sticky_key(r, sticky, sizeof(sticky)), .privileged = r->privileged,
                         .body = r->body, .body_len = r->body_len, .form_boundary = r->multipart ? r->boundary : NULL };
    resolve_model(r->w->reader, &ask, &r->res);
    r->resolved = 1;
    if (r->res.status != RESOLVE_NO_ROUTER && !route_allowed(r))
        r->res.status = RESOLVE_NOT_FOUND;   /* as if absent: a key does not learn other routes */
    switch (r->res.status) {
    case RESOLVE_OK:
        break;
    case RESOLVE_NOT_FOUND:
        reply_error(r, 404, "invalid_request_error", "model_not_found", "model",
                    "the model '%s' does not exist or you do not have access to it", r->model);
        return;
    case RESOLVE_WRONG_ENDPOINT:
        reply_error(r, 400, "invalid_request_error", "wrong_endpoint", "model",
                    "route '%s' serves the %s endpoint, not %s", r->model,
                    cJSON_GetObjectItemCaseSensitive(r->res.route_rec, "endpoint")->valuestring,
                    schema_endpoint_name(ep));
        return;
    case RESOLVE_DISABLED:
        reply_retry_hints(r, -1, 0);       /* an operator's switch: retrying will not help */
        reply_error(r, 503, "server_error", "route_disabled", "model",
                    "route '%s' is disabled and has no fallback target", r->model);
        return;
    case RESOLVE_NO_ROUTER:
        reply_no_router(r, router);
        return;
    }
    if (r->res.ncand == 0) {
        reply_retry_hints(r, -1, 0);
        reply_error(r, 503, "server_error", "no_upstream", "model",
                    "model '%s' has no enabled upstream target", r->model);
        return;
    }
    attempt_first(r);
}

/* /readyz on a cluster: a node cut off from etcd stays ready (it serves
 * from its mirror) and says so. */
static void reply_cluster_ready(req_t *r, int ok)
{
    etcd_status_t st;
    char body[256];
    etcd_status(r->w->gw->etcd, &st);
    snprintf(body, sizeof(body), "{\"status\":\"%s\",\"etcd\":\"%s\",\"revision\":%lld%s}\n",
             ok ? "ok" : "unavailable", st.connected ? "connected" : "unreachable", (long long)st.revision,
             st.connected ? "" : ",\"serving\":\"mirror\"");
    reply_json(r, ok ? 200 : 503, body);
}

static int is_health_path(const char *path)
{
    return path != NULL && (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0);
}

/* Decides from the request line and headers alone where the request goes
 * and whether it may: the path (404), the method (405), the caller's key
 * (401), the Content-Type (415). Runs in the headers phase for a request
 * with a body, so that a refusal is answered before the body is sent (a
 * client waiting for "100 Continue" gets its 401 at once), else when the
 * request is complete. Returns 0 (r->target set), or -1 after replying. */
static int admit(req_t *r)
{
    evhtp_request_t *req = r->req;
    const char *path = req->uri && req->uri->path ? req->uri->path->full : NULL;
    htp_method m = evhtp_request_get_method(req);
    const route_path_t *dp = NULL;

    if (path == NULL) {
        reply_error(r, 400, "invalid_request_error", "bad_request", NULL, "missing request path");
        return -1;
    }
    if (is_health_path(path)) {
        r->m_endpoint = path + 1;
        if (m != htp_method_GET && m != htp_method_HEAD) {
            reply_not_allowed(r, m, path, "GET, HEAD");
            return -1;
        }
        r->target = TO_HEALTH;
        return 0;
    }
    if (strcmp(path, "/metrics") == 0) {  /* like the health checks: no key (it holds no secret) */
        r->m_endpoint = "metrics";
        if (m != htp_method_GET && m != htp_method_HEAD) {
            reply_not_allowed(r, m, path, "GET, HEAD");
            return -1;
        }
        r->target = TO_METRICS;
        return 0;
    }
    if (strncmp(path, "/router/", 8) == 0) {
        const char *slug = path + 8, *end = strchr(slug, '/');
        if (end == NULL || end == slug || (size_t)(end - slug) >= sizeof(r->router)) {
            reply_error(r, 404, "invalid_request_error", "not_found", NULL, "no such path: %s", path);
            return -1;
        }
        memcpy(r->router, slug, (size_t)(end - slug));
        r->router[end - slug] = '\0';
        path = end;
    }
    for (size_t i = 0; i < sizeof(data_paths) / sizeof(data_paths[0]) && dp == NULL; i++)
        if (strcmp(path, data_paths[i].path) == 0)
            dp = &data_paths[i];
    if (dp != NULL) {
        r->m_endpoint = schema_endpoint_name(dp->ep);   /* a 401 is counted under it too */
        r->client = dp->dialect;                        /* errors from here on are in its shape */
    }
    if (!authorised(r)) {
        reply_header(req, "WWW-Authenticate", "Bearer");
        reply_error(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                    r->client == DIALECT_ANTHROPIC ? "a valid API key is required: send 'x-api-key: KEY'"
                                                   : "a valid API key is required: send 'Authorization: Bearer KEY'");
        return -1;
    }
    if (strcmp(path, "/v1/models") == 0) {
        r->m_endpoint = "models";
        if (m != htp_method_GET && m != htp_method_HEAD) {
            reply_not_allowed(r, m, path, "GET, HEAD");
            return -1;
        }
        r->target = TO_MODELS;
        return 0;
    }
    if (dp != NULL) {
        if (m != htp_method_POST) {
            reply_not_allowed(r, m, path, "POST");
            return -1;
        }
        r->ep = dp->ep;
        r->is_data = 1;
        if (!content_type_ok(r)) {
            reply_error(r, 415, "invalid_request_error", "unsupported_media_type", NULL,
                        "Content-Type '%s' is not supported here; use %s", r->content_type,
                        r->multipart ? "multipart/form-data" : "application/json");
            return -1;
        }
        r->target = TO_DATA;
        return 0;
    }
    reply_error(r, 404, "invalid_request_error", "not_found", NULL, "no such path: %s", path);
    return -1;
}

/* The request is complete (headers and body): serve it. */
static void on_request(evhtp_request_t *req, void *arg)
{
    worker_t *w = arg;
    req_t *r = req_of(req);
    int ok;

    edge_request_complete(edge_client(req));
    if (r == NULL || r->refused)
        return;                            /* answered already (413, 503) */
    if (r->target == TO_NONE && admit(r) < 0)
        return;
    switch (r->target) {
    case TO_HEALTH:
        ok = r->m_endpoint[0] == 'h' || (w->gw->ready && !w->stopping);
        if (w->gw->etcd != NULL && r->m_endpoint[0] == 'r')
            reply_cluster_ready(r, ok);
        else
            reply_json(r, ok ? 200 : 503, ok ? "{\"status\":\"ok\"}\n" : "{\"status\":\"unavailable\"}\n");
        break;
    case TO_METRICS:
        serve_metrics(r);
        break;
    case TO_MODELS:
        serve_models(r, r->router);
        break;
    case TO_DATA:
        serve_data(r);
        break;
    case TO_NONE:
        break;
    }
}

/* A request answered in its headers phase or while its body arrives: the
 * reply (sent, with Connection: close) ends the connection. Returning its
 * status from the hook stops evhtp's parser; the parse-error path (patch
 * 0002, edge.c) then adds nothing (the request is answered), sends the
 * reply, half-closes and reads and discards whatever of the body still
 * comes until the client closes, so the client reads its answer instead of
 * a reset. */
static evhtp_res refuse(req_t *r)
{
    r->refused = 1;
    return (evhtp_res)r->final_status;
}

static evhtp_res on_read(evhtp_request_t *req, struct evbuffer *buf, void *arg)
{
    req_t *r = arg;
    r->body_bytes += evbuffer_get_length(buf);
    edge_body_read(edge_client(req));
    if (r->body_bytes > (uint64_t)r->w->cfg->max_body_bytes) {
        /* a chunked body has no length up front: refuse when it crosses */
        evbuffer_drain(buf, evbuffer_get_length(buf));
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
        reply_error(r, 413, "invalid_request_error", "request_too_large", NULL,
                    "the request body exceeds the limit of %lld bytes",
                    (long long)r->w->cfg->max_body_bytes);
        return refuse(r);
    }
    return EVHTP_RES_OK;
}

/* Whether the request, now over, counts as an error in the A/B and
 * per-route figures: a 5xx, a 429, or one that ended in an error (the
 * client gone included). */
static int request_failed(const req_t *r)
{
    return r->final_status >= 500 || r->final_status == 429 || r->error != NULL;
}

/* What an answered request counts into, per endpoint, route and provider
 * record in a store generation, kept per thread: its 200s and its
 * duration (the usual case; other statuses are found by name). */
enum { RS_OK, RS_DURATION };
#define REQUEST_SERIES 64
static _Thread_local metrics_memo_t request_series[REQUEST_SERIES], request_scratch;

/* The request's metrics, once it is over. */
static void count_request(req_t *r)
{
    const candidate_t *c = r->last_cand >= 0 ? &r->res.cand[r->last_cand] : NULL;
    metrics_t *m = r->w->metrics;
    metrics_memo_t *v = NULL;
    char status[24];
    if (c != NULL && r->final_status == 200 &&
        !metrics_memo(request_series, REQUEST_SERIES, &request_scratch, m, c->gen, r->res.route, c->prov,
                      r->m_endpoint, &v)) {
        v->slot[RS_OK] = metrics_series(m, M_REQUESTS, r->m_endpoint, r->res.route, c->provider, "200");
        v->slot[RS_DURATION] = metrics_series(m, M_DURATION, r->m_endpoint, r->res.route, NULL, NULL);
    }
    if (v != NULL) {
        metrics_add(v->slot[RS_OK], 1);
    } else {
        text_int(status, r->final_status);
        metrics_add(metrics_series(m, M_REQUESTS, r->m_endpoint, r->res.route, c ? c->provider : NULL, status), 1);
    }
    if (r->is_data) {
        double ms = req_elapsed_ms(r);
        metrics_observe(v != NULL ? v->slot[RS_DURATION] : metrics_series(m, M_DURATION, r->m_endpoint, r->res.route,
                                                                            NULL, NULL), ms / 1000.0);
        /* the control loop's per-route figures (stats.c) */
        stats_count(stats_line(r->w->stats, r->res.route_id, r->res.route, NULL, NULL, NULL), request_failed(r), ms);
    }
    if (r->m_route != NULL)
        metrics_add(r->m_route, -1);
    if (r->res.variant[0])
        metrics_add(metrics_series(m, M_AB, r->res.route, r->res.variant, NULL, NULL), 1);
}

static evhtp_res on_fini(evhtp_request_t *req, void *arg)
{
    req_t *r = arg;
    int on_redis = r->shared_call != NULL;
    if (on_redis)
        spend_forget(r);                   /* Redis's answer, when it comes, gives back what it took */
    if (r->call != NULL || r->waiting || on_redis) {
        if (r->call != NULL && r->ntrace > 0) {
            const candidate_t *c = &r->res.cand[r->cand];
            r->trace[r->ntrace - 1].error = "client_closed";
            r->trace[r->ntrace - 1].ms = edge_now_ms() - r->attempt_ms;
            metrics_add(metrics_series(r->w->metrics, M_ATTEMPTS, c->provider, c->model, "client_closed", NULL), 1);
        }
        if (!r->replied) {
            r->final_status = 499;         /* nginx's code for "client went away" */
            r->error = "client_closed";
        } else if (r->relaying) {
            r->error = "client_closed";
        }
    } else if (!r->replied && req->status >= 400) {
        r->final_status = req->status;     /* the edge answered it (408, 4xx) */
        r->error = "client_error";
    }
    attempt_end(r);
    r->req = NULL;
    spend_done(r);
    pace_done(r);
    reply_access_log(r);
    count_request(r);
    if (r->res.variant_tally != NULL) {      /* A/B counts, read by the dry-run (metrics count their own) */
        tally_t *t = r->res.variant_tally;
        atomic_fetch_add_explicit(&t->n, 1, memory_order_relaxed);
        if (request_failed(r))
            atomic_fetch_add_explicit(&t->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->total_us, (uint64_t)(req_elapsed_ms(r) * 1000.0), memory_order_relaxed);
    }
    if (r->resolved)
        resolve_free(&r->res);
    store_release(r->key_hold);   /* r->resp stays with r, drained by attempt_end */
    r->w->in_flight--;
    edge_request_done(edge_client(req));
    req_drop(r->w, r);
    return EVHTP_RES_OK;
}

evhtp_res proxy_on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
    worker_t *w = arg;
    req_t *r = req_new(w);
    client_t *cl = edge_client(req);
    const char *ct, *path = req->uri && req->uri->path ? req->uri->path->full : NULL;
    (void)hdrs;
    if (r == NULL)
        return EVHTP_RES_FATAL;
    r->w = w;
    r->req = req;
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    attempt_init(r);
    r->last_cand = -1;
    r->m_endpoint = "other";
    w->in_flight++;
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)on_fini, r);
    evhtp_request_set_hook(req, evhtp_hook_on_read, (evhtp_hook)on_read, r);
    set_request_id(r);
    ct = evhtp_kv_find(req->headers_in, "content-type");
    if (ct != NULL)
        text_cat(r->content_type, sizeof(r->content_type), ct, NULL);
    if (path != NULL) {
        size_t i = 0;   /* logged as a JSON string: keep only safe bytes */
        for (; path[i] && i < sizeof(r->path) - 1; i++)
            r->path[i] = (path[i] > 0x20 && path[i] < 0x7f && path[i] != '"' && path[i] != '\\') ? path[i] : '?';
        r->path[i] = '\0';
    }
    if (cl != NULL && cl->over_limit) {
        /* past limits.max_connections: health checks are still answered,
         * everything else is turned away; either way the connection closes */
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
        if (!is_health_path(path)) {
            reply_retry_hints(r, 1000, 1);
            reply_error(r, 503, "server_error", "too_many_connections", NULL,
                        "this gateway worker is at its limit of %d client connections; retry shortly",
                        w->cfg->max_connections);
            return refuse(r);
        }
    }
    if (req->conn->parser == NULL || !edge_expects_body(req))
        return EVHTP_RES_OK;             /* admitted when complete; the connection stays open */
    /* A body is coming: whatever can be refused without it is refused now
     * (and the connection closed after the answer); what passes is told to
     * send its body if it waits for "100 Continue" (README, HTTP edge). */
    r->early = 1;
    if (evhtp_request_content_len(req) > (uint64_t)w->cfg->max_body_bytes) {
        reply_error(r, 413, "invalid_request_error", "request_too_large", NULL,
                    "the request body of %llu bytes exceeds the limit of %lld bytes",
                    (unsigned long long)evhtp_request_content_len(req),
                    (long long)w->cfg->max_body_bytes);
        return refuse(r);
    }
    if (admit(r) < 0)
        return refuse(r);
    r->early = 0;
    edge_continue(req);
    return EVHTP_RES_OK;
}

void proxy_install(worker_t *w)
{
    evhtp_set_gencb(w->htp, on_request, w);
}
