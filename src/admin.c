/* admin.c - the admin API: CRUD of providers, routes, routers, keys, tenants and budgets, and usage reports, on its own thread.
 *
 * One thread with its own event loop serves admin.listen, so a write's fsync
 * never stalls a data-plane worker. Every write is one LMDB transaction,
 * committed and synced before the 2xx; workers read the store on every
 * request, so the next request on any worker sees the change.
 *
 *   /v1/model-routes, /v1/providers, /v1/routers, /v1/keys, /v1/tenants,
 *   /v1/budgets
 *     GET    list: limit (1-1000, default 100), cursor (opaque, from
 *            next_cursor), for routes also endpoint, router, scope,
 *            include_disabled (default false), for keys tenant, for
 *            budgets scope (global, key:ID, tenant:T, route:ID,
 *            provider:P: that exact scope) and include_disabled (default
 *            true: a disabled budget is still one to look at)
 *     POST   create -> 201 with the stored record (id, created_at,
 *            updated_at); a key's secret is in this reply only. A route
 *            that re-creates an existing 1:1 enablement folds into it: 200
 *            with the existing row (updated with the fields given).
 *   .../{id}
 *     GET    one record
 *     PATCH  JSON merge patch (RFC 7386): fields replace, null removes,
 *            objects merge; the result is validated as a whole
 *     DELETE -> {"id", "object", "deleted": true}
 *   POST /v1/model-routes/dry-run   resolve without calling anything (and
 *            the what-if forms: route_id / route_name, models, provider)
 *   GET  /v1/eu-residency           the country sets data_residency names
 *   GET  /v1/usage   the hourly rollups (store_usage_report) summed per
 *            bucket (hour or UTC day) and group_by fields (key, tenant,
 *            route, provider, model) over [from rounded down to its hour,
 *            to); from and to are RFC 3339 UTC or epoch seconds (default
 *            the last 24 h)
 * Errors are OpenAI-shaped with the offending field in "param".
 *
 * A budget's reads add its live spend from the ledger (add_live_fields);
 * a client sending those fields, like id or created_at, gets 400.
 *
 * Callers: the bootstrap admin key and stored keys of role admin may do
 * everything. A tenant_admin key sees and changes only its tenant's routes
 * (scope tenant:T, or key:K for a key K of T), keys and budgets (scope
 * {"tenant": T}, or {"key": K} for a key K of T), reads providers and
 * routers and its own tenant record (its limits are an admin's to set:
 * any tenant write is 403, found or not), and gets the usage of its
 * tenant's rows only; anything else of another tenant, and any budget of
 * another scope (global, route, provider, target), is answered 404, as if
 * it did not exist; writing one is 403. A user key is for the data plane
 * only (403). Reads never show a provider's api_key (only its last 4
 * characters) or a key's hash. */
#include "admin.h"
#include "shared.h"
#include "control.h"
#include "health.h"
#include "auth.h"
#include "budget.h"
#include "clientio.h"
#include "edge.h"
#include "jscan.h"
#include "residency.h"
#include "resolve.h"
#include "schema.h"
#include "store.h"
#include "tally.h"
#include "text.h"
#include "ui.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <evhtp/evhtp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ADMIN_MAX_BODY (1 << 20)
#define KEY_USE_REFRESH_S 60      /* last_used_at is kept to this precision */
#define KEY_USE_PENDING 64        /* distinct keys waiting for their write */

/* An open admin connection, freed with the loop if still open at exit. */
typedef struct admin_conn {
    evhtp_connection_t *conn;
    client_t *io;              /* its socket's I/O (clientio.c): plain, or TLS with admin.tls */
    struct admin_conn *prev, *next;
} admin_conn_t;

typedef struct admin {
    gateway_t *gw;
    admin_conn_t *conns;
    pthread_t thread;
    int running;
    struct event_base *base;
    evhtp_t *htp;
    struct event *stop_ev;
    struct event *reload_ev;   /* takes the newest config (SIGHUP) */
    const config_t *cfg;       /* the config in force, as this thread took it */
    store_reader_t *reader;    /* for key lookups */
    budgets_t *budgets;        /* the budgets, compiled for the dry-run */
} admin_t;

static admin_t admin;

/* Key uses reported by the workers, written by the admin thread. Outside
 * `admin` because workers may report while the admin thread stops. */
static pthread_mutex_t used_lock = PTHREAD_MUTEX_INITIALIZER;
static char used[KEY_USE_PENDING][37];
static int nused;
static struct event *used_ev;     /* wakes the admin loop; NULL when it is not running */

typedef struct collection {
    const char *path;          /* "/v1/model-routes" */
    const char *object;        /* "model_route" */
    store_table_t table;
    int (*normalise)(cJSON *rec, char *err, size_t errlen);
} collection_t;

static const collection_t collections[] = {
    { "/v1/model-routes", "model_route", STORE_ROUTES, schema_route_normalise },
    { "/v1/providers", "provider", STORE_PROVIDERS, schema_provider_normalise },
    { "/v1/routers", "router", STORE_ROUTERS, schema_router_normalise },
    { "/v1/keys", "key", STORE_KEYS, schema_key_normalise },
    { "/v1/budgets", "budget", STORE_BUDGETS, schema_budget_normalise },
    { "/v1/tenants", "tenant", STORE_TENANTS, schema_tenant_normalise },
};

typedef enum { ROLE_ADMIN, ROLE_TENANT_ADMIN, ROLE_USER } role_t;

/* Who is calling: the role and, for a tenant_admin, its tenant. */
typedef struct caller {
    role_t role;
    char tenant[132];
} caller_t;

/* --- replies ----------------------------------------------------------- */

static void reply_text(evhtp_request_t *req, int status, const char *text)
{
    evbuffer_add(req->buffer_out, text, strlen(text));
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("Content-Type", "application/json", 0, 0));
    evhtp_send_reply(req, (evhtp_res)status);
}

static void reply_json(evhtp_request_t *req, int status, const cJSON *obj)
{
    char *text = cJSON_PrintUnformatted(obj);
    if (text == NULL) {
        reply_text(req, 500, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                             "\"param\":null,\"code\":\"internal_error\"}}");
        return;
    }
    reply_text(req, status, text);
    free(text);
}

static const char *code_for(int status)
{
    switch (status) {
    case 400: return "invalid_value";
    case 401: return "invalid_api_key";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "request_too_large";
    case 415: return "unsupported_media_type";
    case 503: return "unavailable";
    case 507: return "store_full";
    default:  return "internal_error";
    }
}

/* An OpenAI-shaped error. When the message starts with "FIELD: ", FIELD is
 * reported as the error's param. */
static void vreply_error(evhtp_request_t *req, int status, const char *code, const char *fmt, va_list ap)
{
    char raw[1024], msg[3 * sizeof(raw)], param[128] = "";
    const char *colon;
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* cJSON prints bytes over 0x7f as they are: a path or value of raw
     * bytes must not make the body invalid UTF-8 */
    jscan_utf8_clean(raw, msg, sizeof(msg));
    colon = strstr(msg, ": ");
    if ((status == 400 || status == 403 || status == 409) && colon != NULL && (size_t)(colon - msg) < sizeof(param) &&
        strcspn(msg, " ") >= (size_t)(colon - msg)) {
        memcpy(param, msg, (size_t)(colon - msg));
        param[colon - msg] = '\0';
    }
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", status >= 500 ? "server_error" : "invalid_request_error");
    if (param[0])
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", code);
    reply_json(req, status, root);
    cJSON_Delete(root);
}

static void reply_error(evhtp_request_t *req, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply_error(req, status, code_for(status), fmt, ap);
    va_end(ap);
}

/* A write the store refused: ERR with its status; on a cluster whose etcd
 * cannot be reached, 503 store_unavailable (the node still serves). */
static void reply_store_error(evhtp_request_t *req, int status, const char *fmt, ...)
{
    va_list ap;
    if (status == STORE_UNAVAILABLE)
        evhtp_headers_add_header(req->headers_out, evhtp_header_new("Retry-After", "1", 0, 0));
    va_start(ap, fmt);
    vreply_error(req, status, status == STORE_UNAVAILABLE ? "store_unavailable" : code_for(status), fmt, ap);
    va_end(ap);
}

static void reply_not_allowed(evhtp_request_t *req, const char *allow)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("Allow", allow, 0, 1));
    reply_error(req, 405, "method not allowed here; use %s", allow);
}

/* --- request helpers --------------------------------------------------- */

/* The request body as a JSON object, or NULL after replying 400/415. */
static cJSON *body_object(evhtp_request_t *req)
{
    const char *ct = evhtp_kv_find(req->headers_in, "content-type");
    size_t len = evbuffer_get_length(req->buffer_in);
    const char *text = len ? (const char *)evbuffer_pullup(req->buffer_in, -1) : "";
    cJSON *obj;
    if (ct != NULL && !(strncasecmp(ct, "application/json", 16) == 0 && (ct[16] == '\0' || ct[16] == ';'))) {
        reply_error(req, 415, "Content-Type must be application/json");
        return NULL;
    }
    obj = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        reply_error(req, 400, "the body must be a JSON object");
        return NULL;
    }
    return obj;
}

/* Decodes %XX and '+' in place. */
static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '%' && s[1] && s[2]) {
            char hex[3] = { s[1], s[2], 0 };
            char *end;
            long v = strtol(hex, &end, 16);
            if (*end == '\0') {
                *o++ = (char)v;
                s += 2;
                continue;
            }
        }
        *o++ = *s == '+' ? ' ' : *s;
    }
    *o = '\0';
}

/* --- who may see what ------------------------------------------------- */

/* 1 when route scope SCOPE belongs to TENANT: tenant:TENANT, or key:K for
 * a key K of TENANT. */
static int scope_in_tenant(const char *scope, const char *tenant)
{
    if (strncmp(scope, "tenant:", 7) == 0)
        return strcmp(scope + 7, tenant) == 0;
    if (strncmp(scope, "key:", 4) == 0) {
        cJSON *k = store_find(admin.gw->store, STORE_KEYS, scope + 4);
        int mine = k != NULL && strcmp(schema_str(k, "tenant", ""), tenant) == 0;
        cJSON_Delete(k);
        return mine;
    }
    return 0;
}

/* 1 when budget scope SCOPE belongs to TENANT: {"tenant": TENANT}, or
 * {"key": K} for a key K of TENANT. Global, route, provider and target
 * budgets span tenants: an admin's. */
static int budget_in_tenant(const cJSON *scope, const char *tenant)
{
    const cJSON *m = cJSON_IsObject(scope) ? scope->child : NULL;
    char as_route[300];
    if (m == NULL || !cJSON_IsString(m) || (strcmp(m->string, "tenant") != 0 && strcmp(m->string, "key") != 0))
        return 0;
    snprintf(as_route, sizeof(as_route), "%s:%s", m->string, m->valuestring);
    return scope_in_tenant(as_route, tenant);
}

/* 1 when WHO may see REC of table T. */
static int visible(const caller_t *who, store_table_t t, const cJSON *rec)
{
    if (who->role == ROLE_ADMIN)
        return 1;
    switch (t) {
    case STORE_ROUTES: return scope_in_tenant(schema_str(rec, "scope", "global"), who->tenant);
    case STORE_KEYS: return strcmp(schema_str(rec, "tenant", ""), who->tenant) == 0;
    case STORE_BUDGETS: return budget_in_tenant(cJSON_GetObjectItemCaseSensitive(rec, "scope"), who->tenant);
    case STORE_TENANTS: return strcmp(schema_str(rec, "name", ""), who->tenant) == 0;
    default: return 1;     /* providers and routers are readable, not writable */
    }
}

/* control.c's rule: whether a tenant admin of TENANT may see the route with ROUTE_ID. */
static int route_visible(const char *tenant, const char *route_id)
{
    caller_t who = { .role = ROLE_TENANT_ADMIN };
    cJSON *rec = store_find(admin.gw->store, STORE_ROUTES, route_id);
    int ok;
    text_cat(who.tenant, sizeof(who.tenant), tenant, NULL);
    ok = rec != NULL && visible(&who, STORE_ROUTES, rec);
    cJSON_Delete(rec);
    return ok;
}

/* Checks that WHO may write REC (the record as it would be stored); replies
 * 403 and returns -1 if not. */
static int may_write(evhtp_request_t *req, const caller_t *who, const collection_t *col, const cJSON *rec)
{
    if (who->role == ROLE_ADMIN)
        return 0;
    if (col->table == STORE_PROVIDERS || col->table == STORE_ROUTERS) {
        reply_error(req, 403, "a tenant_admin key may read %ss but not change them", col->object);
        return -1;
    }
    if (col->table == STORE_TENANTS) {
        reply_error(req, 403, "tenant limits are set by an admin");
        return -1;
    }
    if (col->table == STORE_ROUTES && !visible(who, STORE_ROUTES, rec)) {
        reply_error(req, 403, "scope: a tenant_admin key writes routes in scope tenant:%s (or key:ID of its "
                              "tenant's keys) only", who->tenant);
        return -1;
    }
    if (col->table == STORE_BUDGETS && !visible(who, STORE_BUDGETS, rec)) {
        reply_error(req, 403, "scope: a tenant_admin key writes budgets in scope {\"tenant\": \"%s\"} (or "
                              "{\"key\": ID} of its tenant's keys) only", who->tenant);
        return -1;
    }
    if (col->table == STORE_KEYS && (!visible(who, STORE_KEYS, rec) || strcmp(schema_str(rec, "role", ""), "admin") == 0)) {
        reply_error(req, 403, "role: a tenant_admin key manages user and tenant_admin keys of tenant %s only",
                    who->tenant);
        return -1;
    }
    return 0;
}

/* Where a budget's live counts are read: a cluster's Redis, else NULL
 * (this process's ledger). */
static budget_counts_fn live_counts(void)
{
    return admin.gw->cfg.cluster_redis[0] != '\0' ? shared_counts : NULL;
}

/* Adds to VIEW, the public copy of record REC of table T, what the server
 * reports beside the stored record. */
static void add_live_fields(store_table_t t, const cJSON *rec, cJSON *view)
{
    if (t == STORE_BUDGETS)               /* spent, window, exhausted: the ledger's (a cluster's Redis's), as of now */
        budget_live_fields(rec, view, live_counts());
}

/* A copy of REC as the API shows it: never a provider's api_key (its last
 * 4 characters at most) nor a key's hash; a budget's live fields added. */
static cJSON *public_view(store_table_t t, const cJSON *rec)
{
    cJSON *out = cJSON_Duplicate(rec, 1);
    const char *key = schema_str(rec, "api_key", NULL);
    if (out == NULL)
        return NULL;
    if (t == STORE_PROVIDERS && key != NULL) {
        size_t n = strlen(key);
        cJSON_DeleteItemFromObjectCaseSensitive(out, "api_key");
        cJSON_AddStringToObject(out, "api_key_last4", n > 8 ? key + n - 4 : "");
    }
    if (t == STORE_KEYS)
        cJSON_DeleteItemFromObjectCaseSensitive(out, "secret_hash");
    add_live_fields(t, rec, out);
    return out;
}

static void reply_record(evhtp_request_t *req, int status, store_table_t t, const cJSON *rec)
{
    cJSON *view = public_view(t, rec);
    reply_json(req, status, view);
    cJSON_Delete(view);
}

/* The record with ID if WHO may see it, else NULL after replying 404. */
static cJSON *find_visible(evhtp_request_t *req, const caller_t *who, const collection_t *col, const char *id)
{
    cJSON *rec = store_find(admin.gw->store, col->table, id);
    if (rec != NULL && !visible(who, col->table, rec)) {
        cJSON_Delete(rec);
        rec = NULL;                /* another tenant's: as if absent, so ids do not leak */
    }
    if (rec == NULL)
        reply_error(req, 404, "no %s with id %s", col->object, id);
    return rec;
}

/* --- list -------------------------------------------------------------- */

typedef struct list_filter {
    const caller_t *who;
    store_table_t table;
    char endpoint[40], router[72], scope[310], tenant[132];
    int include_disabled;
    const char *scope_value;   /* a budget scope filter's value, in scope ("key:ID": ID) */
} list_filter_t;

/* 1 when budget REC's scope is the one filter F names: "global", or
 * KIND:VALUE for {"KIND": VALUE} (key, tenant, route, provider). */
static int budget_scope_is(const cJSON *rec, const list_filter_t *f)
{
    const cJSON *scope = cJSON_GetObjectItemCaseSensitive(rec, "scope"), *m;
    size_t kind_len;
    if (f->scope_value == NULL)
        return cJSON_IsString(scope);              /* "global" */
    m = cJSON_IsObject(scope) ? scope->child : NULL;
    kind_len = (size_t)(f->scope_value - 1 - f->scope);     /* f->scope is KIND:VALUE */
    return m != NULL && cJSON_IsString(m) && strlen(m->string) == kind_len &&
           strncmp(f->scope, m->string, kind_len) == 0 && strcmp(m->valuestring, f->scope_value) == 0;
}

static int keep_record(const cJSON *rec, void *arg)
{
    const list_filter_t *f = arg;
    if (!visible(f->who, f->table, rec))
        return 0;
    if (f->table == STORE_KEYS)
        return !f->tenant[0] || strcmp(schema_str(rec, "tenant", ""), f->tenant) == 0;
    if (f->table == STORE_BUDGETS)
        return (f->include_disabled || !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rec, "enabled"))) &&
               (!f->scope[0] || budget_scope_is(rec, f));
    if (f->table != STORE_ROUTES)
        return 1;
    if (!f->include_disabled && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rec, "enabled")))
        return 0;
    return (!f->endpoint[0] || strcmp(schema_str(rec, "endpoint", ""), f->endpoint) == 0) &&
           (!f->router[0] || strcmp(schema_str(rec, "router", ""), f->router) == 0) &&
           (!f->scope[0] || strcmp(schema_str(rec, "scope", ""), f->scope) == 0);
}

/* Copies a filter value, refusing one longer than any stored value can be. */
static int copy_param(evhtp_request_t *req, const char *name, const char *value, char *out, size_t cap)
{
    size_t n = strlen(value);
    if (n >= cap) {
        reply_error(req, 400, "%s: longer than any stored value (%zu bytes at most)", name, cap - 1);
        return -1;
    }
    memcpy(out, value, n + 1);
    return 0;
}

/* Reads F's scope as a budget scope filter: "global", or KIND:VALUE with
 * KIND one of key, tenant, route, provider and VALUE non-empty. Returns 0,
 * or -1 after replying 400. */
static int budget_scope_filter(evhtp_request_t *req, list_filter_t *f)
{
    static const char *const kinds[] = { "key", "tenant", "route", "provider" };
    const char *colon = strchr(f->scope, ':');
    f->scope_value = NULL;
    if (strcmp(f->scope, "global") == 0)
        return 0;
    for (size_t i = 0; colon != NULL && colon[1] != '\0' && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strlen(kinds[i]) == (size_t)(colon - f->scope) && strncmp(f->scope, kinds[i], strlen(kinds[i])) == 0) {
            f->scope_value = colon + 1;
            return 0;
        }
    }
    reply_error(req, 400, "scope: must be global, key:ID, tenant:T, route:ID or provider:P");
    return -1;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void serve_list(evhtp_request_t *req, const caller_t *who, const collection_t *col)
{
    list_filter_t f;
    char key[512], next[512], hex[1025], value[1100];
    size_t klen = 0, nlen = 0;
    int limit = 100, have_cursor = 0, routes = col->table == STORE_ROUTES, budgets = col->table == STORE_BUDGETS;
    evhtp_kv_t *kv;
    cJSON *root, *data, *rec, *next_rec;

    memset(&f, 0, sizeof(f));
    f.who = who;
    f.table = col->table;
    f.include_disabled = budgets;
    if (req->uri != NULL && req->uri->query != NULL) {
        TAILQ_FOREACH(kv, req->uri->query, next) {
            snprintf(value, sizeof(value), "%s", kv->val ? kv->val : "");
            unescape(value);
            if (strcmp(kv->key, "limit") == 0) {
                char *end;
                long n = strtol(value, &end, 10);
                if (*value == '\0' || *end != '\0' || n < 1 || n > 1000) {
                    reply_error(req, 400, "limit: must be an integer from 1 to 1000");
                    return;
                }
                limit = (int)n;
            } else if (strcmp(kv->key, "cursor") == 0) {
                size_t n = strlen(value);
                if (n == 0 || n % 2 != 0 || n / 2 > sizeof(key)) {
                    reply_error(req, 400, "cursor: not a cursor this API returned");
                    return;
                }
                for (size_t i = 0; i < n; i += 2) {
                    int hi = hexval(value[i]), lo = hexval(value[i + 1]);
                    if (hi < 0 || lo < 0) {
                        reply_error(req, 400, "cursor: not a cursor this API returned");
                        return;
                    }
                    key[i / 2] = (char)(hi * 16 + lo);
                }
                klen = n / 2;
                have_cursor = 1;
            } else if (routes && strcmp(kv->key, "endpoint") == 0) {
                if (copy_param(req, kv->key, value, f.endpoint, sizeof(f.endpoint)) < 0)
                    return;
            } else if (routes && strcmp(kv->key, "router") == 0) {
                if (copy_param(req, kv->key, value, f.router, sizeof(f.router)) < 0)
                    return;
            } else if (routes && strcmp(kv->key, "scope") == 0) {
                if (copy_param(req, kv->key, value, f.scope, sizeof(f.scope)) < 0)
                    return;
            } else if (budgets && strcmp(kv->key, "scope") == 0) {
                if (copy_param(req, kv->key, value, f.scope, sizeof(f.scope)) < 0 || budget_scope_filter(req, &f) < 0)
                    return;
            } else if (col->table == STORE_KEYS && strcmp(kv->key, "tenant") == 0) {
                if (copy_param(req, kv->key, value, f.tenant, sizeof(f.tenant)) < 0)
                    return;
            } else if ((routes || budgets) && strcmp(kv->key, "include_disabled") == 0) {
                if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
                    reply_error(req, 400, "include_disabled: must be true or false");
                    return;
                }
                f.include_disabled = value[0] == 't';
            } else {
                reply_error(req, 400, "%s: unknown query parameter", kv->key);
                return;
            }
        }
    }
    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    data = cJSON_AddArrayToObject(root, "data");
    if (store_list(admin.gw->store, col->table, have_cursor ? key : NULL, klen, limit, keep_record, &f, data,
                   next, &nlen) < 0) {
        cJSON_Delete(root);
        reply_error(req, 500, "the store could not be read");
        return;
    }
    for (rec = data->child; rec != NULL; rec = next_rec) {   /* secrets out */
        cJSON *view = public_view(col->table, rec);
        next_rec = rec->next;
        if (view == NULL || !cJSON_ReplaceItemViaPointer(data, rec, view)) {
            cJSON_Delete(view);
            cJSON_Delete(cJSON_DetachItemViaPointer(data, rec));   /* never shown unfiltered */
        }
    }
    cJSON_AddBoolToObject(root, "has_more", nlen > 0);
    if (nlen > 0) {
        for (size_t i = 0; i < nlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", (unsigned char)next[i]);
        cJSON_AddStringToObject(root, "next_cursor", hex);
    } else {
        cJSON_AddNullToObject(root, "next_cursor");
    }
    reply_json(req, 200, root);
    cJSON_Delete(root);
}

/* --- writes ------------------------------------------------------------ */

/* Fields the server owns or derives: a client may not set them. */
static int reject_server_fields(evhtp_request_t *req, const collection_t *col, const cJSON *body)
{
    static const char *const owned[] = { "id", "created_at", "updated_at", NULL };
    static const char *const key_owned[] = { "secret", "secret_hash", "secret_hint", "last_used_at", NULL };
    static const char *const budget_live[] = { "spent_usd", "spent_tokens", "requests", "window_start",
                                               "resets_at", "exhausted", NULL };
    for (const char *const *f = owned; *f; f++) {
        if (cJSON_GetObjectItemCaseSensitive(body, *f) != NULL) {
            reply_error(req, 400, "%s: set by the server, not by the client", *f);
            return -1;
        }
    }
    for (const char *const *f = key_owned; col->table == STORE_KEYS && *f; f++) {
        if (cJSON_GetObjectItemCaseSensitive(body, *f) != NULL) {
            reply_error(req, 400, "%s: set by the server; a key's secret is generated at creation", *f);
            return -1;
        }
    }
    for (const char *const *f = budget_live; col->table == STORE_BUDGETS && *f; f++) {
        if (cJSON_GetObjectItemCaseSensitive(body, *f) != NULL) {
            reply_error(req, 400, "%s: reported by the server from the budget's spend, not set by the client", *f);
            return -1;
        }
    }
    if (col->table == STORE_PROVIDERS && cJSON_GetObjectItemCaseSensitive(body, "api_key_last4") != NULL) {
        reply_error(req, 400, "api_key_last4: shown by the server; set api_key to change the key");
        return -1;
    }
    return 0;
}

static int fold_enablement(evhtp_request_t *req, const caller_t *who, const collection_t *col, const cJSON *rec,
                           const cJSON *body);

/* Validates REC as a whole, checks WHO may write it, stores it (a create
 * when OLD_ID is NULL) and answers with the stored record or the error;
 * frees REC. SECRET, for a new key, is added to the reply (only there).
 * FOLD_BODY, the body of a route create, lets a duplicate 1:1 enablement
 * fold into the existing row instead of failing (fold_enablement). */
static void validate_and_store(evhtp_request_t *req, const caller_t *who, const collection_t *col, cJSON *rec,
                               const char *old_id, const char *secret, const cJSON *fold_body)
{
    char err[512];
    int st;
    if (col->normalise(rec, err, sizeof(err)) < 0) {
        reply_error(req, 400, "%s", err);
    } else if (may_write(req, who, col, rec) == 0) {
        st = store_put(admin.gw->store, col->table, rec, old_id, err, sizeof(err));
        if (st == STORE_CONFLICT && fold_body != NULL && fold_enablement(req, who, col, rec, fold_body) == 0) {
            /* answered with the existing row */
        } else if (st != STORE_OK && st != STORE_CREATED) {
            reply_store_error(req, st, "%s", err);
        } else {
            cJSON *view = public_view(col->table, rec);
            if (secret != NULL)
                cJSON_AddStringToObject(view, "secret", secret);
            reply_json(req, st, view);
            cJSON_Delete(view);
        }
    }
    cJSON_Delete(rec);
}

/* RFC 7386: null removes, objects merge, anything else replaces. */
static void merge_patch(cJSON *target, const cJSON *patch)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, patch) {
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(target, p->string);
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
        } else if (cJSON_IsObject(p) && cJSON_IsObject(cur)) {
            merge_patch(cur, p);
        } else {
            cJSON *copy = cJSON_Duplicate(p, 1);
            if (cur != NULL)
                cJSON_ReplaceItemInObjectCaseSensitive(target, p->string, copy);
            else
                cJSON_AddItemToObject(target, p->string, copy);
        }
    }
}

/* A route's targets and its primary_model / fallback_model say the same
 * thing: a change to one side drops the other from the stored record (the
 * store re-expands the shorthand). */
static void settle_shorthand(cJSON *rec, const cJSON *patch)
{
    if (cJSON_GetObjectItemCaseSensitive(patch, "primary_model") != NULL ||
        cJSON_GetObjectItemCaseSensitive(patch, "fallback_model") != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "targets");
    } else if (cJSON_GetObjectItemCaseSensitive(patch, "targets") != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "primary_model");
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "fallback_model");
    }
}

static void set_updated_now(cJSON *rec)
{
    char now[32];
    schema_now(now);
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "updated_at");
    cJSON_AddStringToObject(rec, "updated_at", now);
}

/* The single target of a 1:1 enablement (a route whose only target's model
 * is the route's name), or NULL. */
static const cJSON *enablement_target(const cJSON *rec)
{
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(rec, "targets");
    const cJSON *t = cJSON_GetArrayItem(targets, 0);
    if (cJSON_GetArraySize(targets) != 1 || strcmp(schema_str(t, "model", ""), schema_str(rec, "name", "\1")) != 0)
        return NULL;
    return t;
}

/* Barndoor's idempotent create: REC (normalised and expanded, refused as a
 * duplicate name) re-creates the 1:1 enablement OLD of the same provider
 * and model, so BODY folds into OLD: 200 with OLD, updated with the fields
 * BODY gives. Returns 0 when it answered, -1 when REC is a real conflict. */
static int fold_enablement(evhtp_request_t *req, const caller_t *who, const collection_t *col, const cJSON *rec,
                           const cJSON *body)
{
    cJSON *old = store_find_route(admin.gw->store, schema_str(rec, "scope", "global"), schema_str(rec, "router", ""),
                                  schema_str(rec, "name", ""));
    const cJSON *a = enablement_target(rec), *b = enablement_target(old);
    cJSON *merged, *before;
    char err[512];
    if (a == NULL || b == NULL || strcmp(schema_str(a, "provider", ""), schema_str(b, "provider", "\1")) != 0 ||
        !visible(who, STORE_ROUTES, old)) {
        cJSON_Delete(old);
        return -1;
    }
    merged = cJSON_Duplicate(old, 1);
    before = cJSON_Duplicate(old, 1);
    merge_patch(merged, body);
    settle_shorthand(merged, body);
    if (col->normalise(merged, err, sizeof(err)) == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(before, "updated_at");
        cJSON_DeleteItemFromObjectCaseSensitive(merged, "updated_at");
        if (cJSON_Compare(before, merged, 1)) {   /* nothing new: the row as it is */
            reply_record(req, 200, STORE_ROUTES, old);
            cJSON_Delete(merged);
            merged = NULL;
        }
    }
    cJSON_Delete(before);
    if (merged != NULL) {
        set_updated_now(merged);
        validate_and_store(req, who, col, merged, schema_str(old, "id", ""), NULL, NULL);
    }
    cJSON_Delete(old);
    return 0;
}

static void serve_create(evhtp_request_t *req, const caller_t *who, const collection_t *col)
{
    char secret[AUTH_SECRET_LEN + 1], hash[65], hint[16];
    cJSON *body = body_object(req), *rec;
    if (body == NULL || reject_server_fields(req, col, body) < 0) {
        cJSON_Delete(body);
        return;
    }
    if (col->table == STORE_ROUTES && cJSON_GetObjectItemCaseSensitive(body, "targets") != NULL &&
        (cJSON_GetObjectItemCaseSensitive(body, "primary_model") != NULL ||
         cJSON_GetObjectItemCaseSensitive(body, "fallback_model") != NULL)) {
        reply_error(req, 400, "targets: give either targets or primary_model/fallback_model, not both");
        cJSON_Delete(body);
        return;
    }
    rec = cJSON_Duplicate(body, 1);
    if (who->role == ROLE_TENANT_ADMIN) {    /* its own tenant unless it says otherwise */
        char scope[160];
        snprintf(scope, sizeof(scope), "tenant:%s", who->tenant);
        if (col->table == STORE_ROUTES && cJSON_GetObjectItemCaseSensitive(rec, "scope") == NULL)
            cJSON_AddStringToObject(rec, "scope", scope);
        if (col->table == STORE_BUDGETS && cJSON_GetObjectItemCaseSensitive(rec, "scope") == NULL)
            cJSON_AddStringToObject(cJSON_AddObjectToObject(rec, "scope"), "tenant", who->tenant);
        if (col->table == STORE_KEYS && cJSON_GetObjectItemCaseSensitive(rec, "tenant") == NULL &&
            strcmp(schema_str(rec, "role", ""), "admin") != 0)   /* an admin key is refused below, as 403 */
            cJSON_AddStringToObject(rec, "tenant", who->tenant);
    }
    if (col->table == STORE_KEYS) {
        auth_new_secret(secret);
        auth_hash(secret, strlen(secret), hash);
        snprintf(hint, sizeof(hint), "tk-...%s", secret + AUTH_SECRET_LEN - 4);
        cJSON_AddStringToObject(rec, "secret_hash", hash);
        cJSON_AddStringToObject(rec, "secret_hint", hint);
    }
    validate_and_store(req, who, col, rec, NULL, col->table == STORE_KEYS ? secret : NULL,
                       col->table == STORE_ROUTES ? body : NULL);
    cJSON_Delete(body);
}

static void serve_patch(evhtp_request_t *req, const caller_t *who, const collection_t *col, const char *id)
{
    cJSON *patch = body_object(req), *rec;
    if (patch == NULL || reject_server_fields(req, col, patch) < 0) {
        cJSON_Delete(patch);
        return;
    }
    if ((rec = find_visible(req, who, col, id)) == NULL) {
        cJSON_Delete(patch);
        return;
    }
    merge_patch(rec, patch);
    if (col->table == STORE_ROUTES)
        settle_shorthand(rec, patch);
    cJSON_Delete(patch);
    set_updated_now(rec);
    validate_and_store(req, who, col, rec, id, NULL, NULL);
}

static void serve_delete(evhtp_request_t *req, const caller_t *who, const collection_t *col, const char *id)
{
    char err[512];
    cJSON *rec = find_visible(req, who, col, id), *out;
    int st;
    if (rec == NULL)
        return;
    st = may_write(req, who, col, rec) == 0 ? store_delete(admin.gw->store, col->table, id, err, sizeof(err)) : 0;
    cJSON_Delete(rec);
    if (st == 0)
        return;                               /* refused above */
    if (st != STORE_OK) {
        reply_store_error(req, st, "%s", err);
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "id", id);
    cJSON_AddStringToObject(out, "object", col->object);
    cJSON_AddTrueToObject(out, "deleted");
    reply_json(req, 200, out);
    cJSON_Delete(out);
}

/* --- dry-run ----------------------------------------------------------- */

static void add_str_or_null(cJSON *obj, const char *name, const char *v)
{
    if (v != NULL && *v)
        cJSON_AddStringToObject(obj, name, v);
    else
        cJSON_AddNullToObject(obj, name);
}

/* What the workers share about candidate I right now: "usable", or
 * "cooling_down" with cooling_until (UTC) and cooling_ms_left, "probing"
 * (its one probe is out), "at_cap" with which cap and its numbers. */
static void add_health(cJSON *c, const resolution_t *res, int i)
{
    static const char *const caps[CAP__COUNT] = { "route", "target", "provider" };
    int64_t now = health_now(), until = 0;
    int which = 0;
    health_t h;
    health_of(res, i, &h);
    switch (health_peek(&h, now, admin.cfg->cooldown_after, &until, &which)) {
    case HEALTH_USABLE:
        cJSON_AddTrueToObject(c, "available");
        cJSON_AddStringToObject(c, "state", "usable");
        break;
    case HEALTH_COOLING: {
        char when[32];
        time_t t = time(NULL) + (time_t)((until - now + 999) / 1000);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        cJSON_AddFalseToObject(c, "available");
        cJSON_AddStringToObject(c, "state", "cooling_down");
        cJSON_AddStringToObject(c, "cooling_until", when);
        cJSON_AddNumberToObject(c, "cooling_ms_left", (double)(until - now));
        break;
    }
    case HEALTH_PROBING:
        cJSON_AddFalseToObject(c, "available");
        cJSON_AddStringToObject(c, "state", "probing");
        break;
    case HEALTH_AT_CAP:
        cJSON_AddFalseToObject(c, "available");
        cJSON_AddStringToObject(c, "state", "at_cap");
        cJSON_AddStringToObject(c, "cap", caps[which]);
        cJSON_AddNumberToObject(c, "in_flight", (double)atomic_load(&h.cap[which]->in_flight));
        cJSON_AddNumberToObject(c, "max_in_flight", h.limit[which]);
        break;
    }
}

/* The preferences a resolution used, for "effective_preferences": a
 * matched route's (the what-if OVERRIDE merged in by the resolver), else
 * the override alone, else null. */
static cJSON *effective_json(const resolution_t *res, const cJSON *override)
{
    if (res->route_rec != NULL)
        return res->prefs != NULL ? cJSON_Duplicate(res->prefs, 1) : cJSON_CreateObject();
    return override != NULL ? cJSON_Duplicate(override, 1) : cJSON_CreateNull();
}

/* Adds to OUT what resolution RES found: status and code a request would
 * get, rule, why, route, A/B variant, effective_preferences,
 * provider_count and providers (the distinct providers left after the
 * preferences, in the order they would be tried) and every candidate with
 * its state. */
/* The budgets a request resolved to RES would be reserved against (SPEC
 * 8): each candidate's target and provider budgets in its own entry of
 * OUT's candidates (a blocking one makes its state budget_exhausted), and
 * the request's route, key, tenant and global ones in OUT's "budgets". */
static void add_budgets(cJSON *out, const resolution_t *res, const char *key_id, const char *tenant)
{
    budgets_t *compiled = admin.budgets;
    cJSON *cands = cJSON_GetObjectItemCaseSensitive(out, "candidates"), *mine, *c;
    char key[1200];
    int i = 0, blocked = 0;
    if (compiled == NULL && (compiled = admin.budgets = budgets_new()) == NULL)
        return;
    budgets_refresh(compiled, admin.reader, 0);   /* (as the store has them now) */
    cJSON_ArrayForEach(c, cands) {
        const candidate_t *cd;
        if (i >= res->ncand)
            break;                        /* (the dropped ones follow: never called) */
        cd = &res->cand[i++];
        mine = cJSON_AddArrayToObject(c, "budgets");
        if ((*res->route_id && budget_scope_key(BS_TARGET, res->route_id, cd->provider, cd->model, key, sizeof(key)) &&
             budgets_explain(compiled, key, mine, live_counts())) |
            (budget_scope_key(BS_PROVIDER, cd->provider, NULL, NULL, key, sizeof(key)) &&
             budgets_explain(compiled, key, mine, live_counts()))) {
            cJSON_ReplaceItemInObjectCaseSensitive(c, "available", cJSON_CreateFalse());
            cJSON_ReplaceItemInObjectCaseSensitive(c, "state", cJSON_CreateString("budget_exhausted"));
        }
    }
    mine = cJSON_AddArrayToObject(out, "budgets");
    if (*res->route_id && budget_scope_key(BS_ROUTE, res->route_id, NULL, NULL, key, sizeof(key)))
        blocked |= budgets_explain(compiled, key, mine, live_counts());
    if (*key_id && budget_scope_key(BS_KEY, key_id, NULL, NULL, key, sizeof(key)))
        blocked |= budgets_explain(compiled, key, mine, live_counts());
    if (*tenant && budget_scope_key(BS_TENANT, tenant, NULL, NULL, key, sizeof(key)))
        blocked |= budgets_explain(compiled, key, mine, live_counts());
    if (budget_scope_key(BS_GLOBAL, NULL, NULL, NULL, key, sizeof(key)))
        blocked |= budgets_explain(compiled, key, mine, live_counts());
    cJSON_AddBoolToObject(out, "budget_blocks", blocked);
}

static void add_resolution(cJSON *out, const resolution_t *res, const cJSON *override)
{
    static const char *const status_code[] = {
        [RESOLVE_OK] = NULL, [RESOLVE_NOT_FOUND] = "model_not_found", [RESOLVE_WRONG_ENDPOINT] = "wrong_endpoint",
        [RESOLVE_DISABLED] = "route_disabled", [RESOLVE_NO_ROUTER] = "router_not_found",
    };
    static const int status_http[] = {
        [RESOLVE_OK] = 200, [RESOLVE_NOT_FOUND] = 404, [RESOLVE_WRONG_ENDPOINT] = 400,
        [RESOLVE_DISABLED] = 503, [RESOLVE_NO_ROUTER] = 404,
    };
    char label[600];
    cJSON *arr, *names;
    cJSON_AddNumberToObject(out, "status", status_http[res->status]);
    add_str_or_null(out, "code", status_code[res->status]);
    add_str_or_null(out, "rule", res->rule);
    add_str_or_null(out, "why", res->why);
    if (res->route_rec != NULL) {
        cJSON *rt = cJSON_AddObjectToObject(out, "route");
        static const char *const fields[] = { "id", "name", "scope", "router", "endpoint", "strategy", "priority",
                                              "enabled", NULL };
        for (const char *const *f = fields; *f; f++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(res->route_rec, *f);
            if (v != NULL)
                cJSON_AddItemToObject(rt, *f, cJSON_Duplicate(v, 1));
        }
    } else {
        cJSON_AddNullToObject(out, "route");
    }
    add_str_or_null(out, "variant", res->variant);
    cJSON_AddItemToObject(out, "effective_preferences", effective_json(res, override));
    names = cJSON_CreateArray();
    for (int i = 0; i < res->ncand; i++) {
        const cJSON *n;
        int seen = 0;
        cJSON_ArrayForEach(n, names)
            seen |= strcmp(n->valuestring, res->cand[i].provider) == 0;
        if (!seen)
            cJSON_AddItemToArray(names, cJSON_CreateString(res->cand[i].provider));
    }
    cJSON_AddNumberToObject(out, "provider_count", cJSON_GetArraySize(names));
    cJSON_AddItemToObject(out, "providers", names);
    arr = cJSON_AddArrayToObject(out, "candidates");
    for (int i = 0; i < res->ncand; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "provider", res->cand[i].provider);
        cJSON_AddStringToObject(c, "model", res->cand[i].model);
        if (res->cand[i].target != NULL)
            cJSON_AddStringToObject(c, "variant", resolve_variant_label(res->cand[i].target, label, sizeof(label)));
        add_health(c, res, i);
        cJSON_AddItemToArray(arr, c);
    }
    for (int i = 0; i < res->ndropped; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "provider", res->dropped[i].provider);
        cJSON_AddStringToObject(c, "model", res->dropped[i].model);
        cJSON_AddFalseToObject(c, "available");
        cJSON_AddStringToObject(c, "state", res->dropped[i].state);
        add_str_or_null(c, "filter", res->dropped[i].detail);
        cJSON_AddItemToArray(arr, c);
    }
    if (res->route_rec != NULL && strcmp(schema_str(res->route_rec, "strategy", ""), "ab") == 0) {
        const cJSON *t;
        cJSON *vs = cJSON_AddArrayToObject(out, "variants");
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(res->route_rec, "targets")) {
            char name[700];
            const char *lab = resolve_variant_label(t, label, sizeof(label));
            cJSON *v = cJSON_CreateObject();
            tally_t *tl;
            uint64_t n = 0, errs = 0, us = 0;
            snprintf(name, sizeof(name), "ab:%s:%s", schema_str(res->route_rec, "id", ""), lab);
            if ((tl = tally_find(name)) != NULL) {
                n = atomic_load_explicit(&tl->n, memory_order_relaxed);
                errs = atomic_load_explicit(&tl->errors, memory_order_relaxed);
                us = atomic_load_explicit(&tl->total_us, memory_order_relaxed);
            }
            cJSON_AddStringToObject(v, "variant", lab);
            cJSON_AddNumberToObject(v, "weight", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(t, "weight")));
            cJSON_AddNumberToObject(v, "requests", (double)n);
            cJSON_AddNumberToObject(v, "errors", (double)errs);
            cJSON_AddNumberToObject(v, "mean_latency_ms", n ? (double)us / 1000.0 / (double)n : 0);
            cJSON_AddItemToArray(vs, v);
        }
    }
}

#define DRY_MAX_MODELS 100

/* Checks the dry-run body's fields; replies 400 naming the field and
 * returns -1 on the first bad one. */
static int dry_fields_ok(evhtp_request_t *req, const cJSON *body)
{
    static const char *const strings[] = { "model", "endpoint", "router", "key_id", "tenant", "user", "route_id",
                                           "route_name", NULL };
    char err[256];
    const cJSON *m, *e;
    cJSON_ArrayForEach(m, body) {
        int known = 0;
        for (const char *const *a = strings; *a; a++)
            known |= strcmp(*a, m->string) == 0;
        if (known) {
            if (!cJSON_IsString(m)) {
                reply_error(req, 400, "%s: must be a string", m->string);
                return -1;
            }
        } else if (strcmp(m->string, "models") == 0 || strcmp(m->string, "parameters") == 0) {
            int n = 0, models = m->string[1] == 'o';
            if (!cJSON_IsArray(m) || (models && (cJSON_GetArraySize(m) < 1 || cJSON_GetArraySize(m) > DRY_MAX_MODELS))) {
                reply_error(req, 400, models ? "models: must be an array of 1-%d model names"
                                             : "parameters: must be an array of request field names", DRY_MAX_MODELS);
                return -1;
            }
            cJSON_ArrayForEach(e, m) {
                if (!cJSON_IsString(e) || e->valuestring[0] == '\0' || strlen(e->valuestring) > 255) {
                    reply_error(req, 400, "%s: item %d must be a string of 1-255 characters", m->string, n);
                    return -1;
                }
                n++;
            }
        } else if (strcmp(m->string, "provider") == 0) {
            if (schema_prefs_check(m, err, sizeof(err)) < 0) {
                reply_error(req, 400, "%s", err);
                return -1;
            }
        } else {
            reply_error(req, 400, "%s: unknown field", m->string);
            return -1;
        }
    }
    if (cJSON_HasObjectItem(body, "model") && cJSON_HasObjectItem(body, "models")) {
        reply_error(req, 400, "models: give model or models, not both");
        return -1;
    }
    if (cJSON_HasObjectItem(body, "route_id") && cJSON_HasObjectItem(body, "route_name")) {
        reply_error(req, 400, "route_name: give route_id or route_name, not both");
        return -1;
    }
    return 0;
}

/* The route a what-if names by route_id (as GET /v1/model-routes/{id}
 * would show it to WHO) or by route_name (in ROUTER, the caller's scopes
 * most specific first, as a request would find it); NULL after replying
 * 404. The caller frees it. */
static cJSON *dry_route(evhtp_request_t *req, const caller_t *who, const cJSON *body, const char *router,
                        const char *key_id, const char *tenant)
{
    const char *id = schema_str(body, "route_id", NULL), *name = schema_str(body, "route_name", NULL);
    char scope[200];
    cJSON *rec = NULL;
    if (id != NULL) {
        rec = store_find(admin.gw->store, STORE_ROUTES, id);
        if (rec == NULL || !visible(who, STORE_ROUTES, rec)) {
            cJSON_Delete(rec);
            reply_error(req, 404, "no route with id %s", id);
            return NULL;
        }
        return rec;
    }
    if (*key_id) {
        snprintf(scope, sizeof(scope), "key:%s", key_id);
        rec = store_find_route(admin.gw->store, scope, router, name);
    }
    if (rec == NULL && *tenant) {
        snprintf(scope, sizeof(scope), "tenant:%s", tenant);
        rec = store_find_route(admin.gw->store, scope, router, name);
    }
    if (rec == NULL)
        rec = store_find_route(admin.gw->store, "global", router, name);
    if (rec == NULL)
        reply_error(req, 404, "no route named %s%s%s in the caller's scopes", name, *router ? " in router " : "",
                    router);
    return rec;
}

/* POST /v1/model-routes/dry-run {model | models, endpoint?, router?,
 * key_id?, tenant?, user?, route_id | route_name?, provider?,
 * parameters?}: resolves as a request from that caller would, calling no
 * provider and changing nothing, and shows the rule, why it matched and
 * every candidate with its availability. The what-if fields (EUrouter):
 * route_id / route_name test that route whatever the model would reach;
 * provider overrides the route's preferences; parameters are the request
 * fields require_parameters checks; models evaluates a fallback chain, one
 * result per model and a summary. A tenant_admin asks for its own tenant
 * only. */
static void serve_dry_run(evhtp_request_t *req, const caller_t *who)
{
    cJSON *body = body_object(req), *out, *key = NULL, *route = NULL, *results, *summary;
    const cJSON *models, *override, *m;
    const char *model, *ep_name, *tenant, *key_id, *router;
    resolution_t res;
    resolve_in_t in;
    int ep, with_providers = 0;

    if (body == NULL)
        return;
    if (dry_fields_ok(req, body) < 0)
        goto out;
    model = schema_str(body, "model", NULL);
    models = cJSON_GetObjectItemCaseSensitive(body, "models");
    override = cJSON_GetObjectItemCaseSensitive(body, "provider");
    router = schema_str(body, "router", "");
    key_id = schema_str(body, "key_id", "");
    tenant = schema_str(body, "tenant", "");
    if (*key_id) {          /* a key's own tenant; another tenant's key is as unknown */
        key = store_find(admin.gw->store, STORE_KEYS, key_id);
        if (key == NULL || !visible(who, STORE_KEYS, key)) {
            reply_error(req, 404, "no key with id %s", key_id);
            goto out;
        }
        tenant = schema_str(key, "tenant", "");
    }
    if (who->role == ROLE_TENANT_ADMIN) {
        if (*tenant && strcmp(tenant, who->tenant) != 0) {
            reply_error(req, 403, "tenant: a tenant_admin key dry-runs for tenant %s only", who->tenant);
            goto out;
        }
        tenant = who->tenant;
    }
    if (cJSON_HasObjectItem(body, "route_id") || cJSON_HasObjectItem(body, "route_name")) {
        if ((route = dry_route(req, who, body, router, key_id, tenant)) == NULL)
            goto out;
        router = schema_str(route, "router", "");
        if (model == NULL && models == NULL)
            model = schema_str(route, "name", NULL);       /* the route as its own name would reach it */
    }
    ep_name = schema_str(body, "endpoint", route != NULL ? schema_str(route, "endpoint", "chat") : "chat");
    if ((model == NULL || *model == '\0') && models == NULL) {
        reply_error(req, 400, "model: required (or models, or route_id / route_name)");
        goto out;
    }
    if ((ep = schema_endpoint_parse(ep_name)) < 0) {
        reply_error(req, 400, "endpoint: must be one of chat, completions, embeddings, audio_speech, "
                              "audio_transcription, image_generation, responses");
        goto out;
    }
    in = (resolve_in_t){ .ep = (endpoint_t)ep, .model = model, .router = router,
                         .key_id = key_id, .tenant = tenant,
                         .sticky = *schema_str(body, "user", "") ? schema_str(body, "user", "") : key_id, .dry = 1,
                         .params = cJSON_GetObjectItemCaseSensitive(body, "parameters"), .route = route,
                         .prefs = override,
                         .privileged = key != NULL && strcmp(schema_str(key, "role", ""), "admin") == 0 };
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "object", "model_route.dry_run");
    if (models == NULL)
        cJSON_AddStringToObject(out, "model", model);
    cJSON_AddStringToObject(out, "endpoint", ep_name);
    add_str_or_null(out, "router", in.router);
    add_str_or_null(out, "key_id", key_id);
    add_str_or_null(out, "tenant", tenant);
    if (models == NULL) {
        resolve_model(admin.reader, &in, &res);
        add_resolution(out, &res, override);
        add_budgets(out, &res, key_id, tenant);
        resolve_free(&res);
        goto reply;
    }
    /* a fallback chain: each model on its own, then what the chain gives */
    results = cJSON_CreateArray();
    cJSON_ArrayForEach(m, models) {
        cJSON *one = cJSON_CreateObject();
        in.model = m->valuestring;
        resolve_model(admin.reader, &in, &res);
        cJSON_AddStringToObject(one, "model", m->valuestring);
        add_resolution(one, &res, override);
        add_budgets(one, &res, key_id, tenant);
        if (res.ncand > 0 && with_providers++ == 0)
            cJSON_AddStringToObject(out, "selected_model", m->valuestring);
        if (route != NULL && !cJSON_HasObjectItem(out, "effective_preferences"))
            cJSON_AddItemToObject(out, "effective_preferences", effective_json(&res, override));
        resolve_free(&res);
        cJSON_AddItemToArray(results, one);
    }
    if (!cJSON_HasObjectItem(out, "selected_model"))
        cJSON_AddNullToObject(out, "selected_model");
    if (!cJSON_HasObjectItem(out, "effective_preferences"))
        cJSON_AddItemToObject(out, "effective_preferences",
                              override != NULL ? cJSON_Duplicate(override, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(out, "results", results);
    summary = cJSON_AddObjectToObject(out, "summary");
    cJSON_AddNumberToObject(summary, "total_models", cJSON_GetArraySize(models));
    cJSON_AddNumberToObject(summary, "models_with_providers", with_providers);
reply:
    reply_json(req, 200, out);
    cJSON_Delete(out);
out:
    cJSON_Delete(route);
    cJSON_Delete(key);
    cJSON_Delete(body);
}

/* GET /v1/eu-residency: the country sets data_residency can name (EUrouter's
 * eu_countries, eea_countries, eu_adequate_countries), each with every
 * country it admits: ISO 3166-1 alpha-2 code and name. */
static void serve_residency(evhtp_request_t *req)
{
    static const char *const keys[RESIDENCY__COUNT] = { "eu_countries", "eea_countries", "eu_adequate_countries" };
    size_t n;
    const residency_country_t *c = residency_countries(&n);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "object", "eu_residency");
    for (int set = 0; set < RESIDENCY__COUNT; set++) {
        cJSON *arr = cJSON_AddArrayToObject(out, keys[set]);
        for (size_t i = 0; i < n; i++) {
            if ((int)c[i].tier > set)
                continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "code", c[i].code);
            cJSON_AddStringToObject(e, "name", c[i].name);
            cJSON_AddItemToArray(arr, e);
        }
    }
    reply_json(req, 200, out);
    cJSON_Delete(out);
}

/* --- usage ------------------------------------------------------------- */

/* GET /v1/usage?from=&to=&group_by=&bucket=: the usage rollups over
 * [from, to), from rounded down to its hour (the rollups hold whole
 * hours), summed per bucket and group (store_usage_report). A
 * tenant_admin gets the rows of its tenant only. */
static void serve_usage(evhtp_request_t *req, const caller_t *who)
{
    static const char *const groups[] = { "key", "tenant", "route", "provider", "model" };
    char value[1100], when[32];
    int64_t from = -1, to = (int64_t)time(NULL);
    int day = 0;
    unsigned mask = 0;
    evhtp_kv_t *kv;
    cJSON *root, *data, *by;

    if (req->uri != NULL && req->uri->query != NULL) {
        TAILQ_FOREACH(kv, req->uri->query, next) {
            snprintf(value, sizeof(value), "%s", kv->val ? kv->val : "");
            unescape(value);
            if (strcmp(kv->key, "from") == 0 || strcmp(kv->key, "to") == 0) {
                int64_t t;
                if (schema_time_parse(value, &t) < 0) {
                    reply_error(req, 400, "%s: must be an RFC 3339 UTC time (2026-12-01T00:00:00Z) or epoch "
                                          "seconds, from 1970 to 9999", kv->key);
                    return;
                }
                *(kv->key[0] == 'f' ? &from : &to) = t;
            } else if (strcmp(kv->key, "group_by") == 0) {
                mask = 0;
                for (char *tok = value, *comma; *value != '\0'; tok = comma + 1) {
                    size_t i = 0;
                    if ((comma = strchr(tok, ',')) != NULL)
                        *comma = '\0';
                    while (i < sizeof(groups) / sizeof(groups[0]) && strcmp(tok, groups[i]) != 0)
                        i++;
                    if (i == sizeof(groups) / sizeof(groups[0])) {
                        reply_error(req, 400, "group_by: \"%.64s\" is none of key, tenant, route, provider, model "
                                              "(give one or more, comma-separated)", tok);
                        return;
                    }
                    mask |= 1u << i;
                    if (comma == NULL)
                        break;
                }
            } else if (strcmp(kv->key, "bucket") == 0) {
                if (strcmp(value, "hour") != 0 && strcmp(value, "day") != 0) {
                    reply_error(req, 400, "bucket: must be hour or day");
                    return;
                }
                day = value[0] == 'd';
            } else {
                reply_error(req, 400, "%s: unknown query parameter (from, to, group_by, bucket)", kv->key);
                return;
            }
        }
    }
    if (from < 0)
        from = to - 86400 > 0 ? to - 86400 : 0;
    if (from >= to) {
        reply_error(req, 400, "from: must be before to");
        return;
    }
    from -= from % 3600;
    data = store_usage_report(admin.gw->store, from, to, mask, day,
                              who->role == ROLE_TENANT_ADMIN ? who->tenant : NULL);
    if (data == NULL) {
        if (errno == E2BIG)
            reply_error(req, 400, "the answer would have more than %d rows: narrow from and to, use bucket=day, or "
                                  "group by fewer fields", STORE_USAGE_REPORT_MAX);
        else
            reply_error(req, 500, "the usage rollups could not be read");
        return;
    }
    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    schema_time_iso(from, when);
    cJSON_AddStringToObject(root, "from", when);
    schema_time_iso(to, when);
    cJSON_AddStringToObject(root, "to", when);
    cJSON_AddStringToObject(root, "bucket", day ? "day" : "hour");
    by = cJSON_AddArrayToObject(root, "group_by");
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
        if (mask & (1u << i))
            cJSON_AddItemToArray(by, cJSON_CreateString(groups[i]));
    cJSON_AddItemToObject(root, "data", data);
    reply_json(req, 200, root);
    cJSON_Delete(root);
}

/* --- key last use ------------------------------------------------------ */

/* RFC 3339 (UTC) of KEY_USE_REFRESH_S before now: a last_used_at before it
 * is stale. Made once a second per thread (strftime is no per-request
 * work); RFC 3339 in UTC sorts as time, so strcmp compares. */
static const char *key_use_limit(time_t now)
{
    static _Thread_local time_t made_for;
    static _Thread_local char limit[32];
    if (now != made_for) {
        time_t t = now - KEY_USE_REFRESH_S;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(limit, sizeof(limit), "%Y-%m-%dT%H:%M:%SZ", &tm);
        made_for = now;
    }
    return limit;
}

int admin_key_use_due(const char *id, const char *last_used_at)
{
    /* the keys this thread recorded lately, by a hash of the id (another key
     * in the same slot only costs one more record) */
    static _Thread_local struct {
        char id[37];
        time_t at;
    } told[64];
    time_t now = time(NULL);
    uint64_t h;
    if (strlen(id) != 36 || (last_used_at != NULL && strcmp(last_used_at, key_use_limit(now)) >= 0))
        return 0;
    h = tally_hash(id) & 63;
    if (told[h].at > now - KEY_USE_REFRESH_S && memcmp(told[h].id, id, 37) == 0)
        return 0;
    memcpy(told[h].id, id, 37);
    told[h].at = now;
    return 1;
}

void admin_key_used(const char *id)
{
    int known = 0;
    if (strlen(id) != 36)
        return;
    pthread_mutex_lock(&used_lock);
    for (int i = 0; i < nused && !known; i++)
        known = strcmp(used[i], id) == 0;
    if (!known && nused < KEY_USE_PENDING && used_ev != NULL) {
        memcpy(used[nused++], id, 37);
        if (nused == 1)
            event_active(used_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&used_lock);
}

/* On the admin thread: writes last_used_at of the keys reported used. */
static void on_keys_used(evutil_socket_t fd, short what, void *arg)
{
    char ids[KEY_USE_PENDING][37], now[32];
    int n;
    (void)fd;
    (void)what;
    (void)arg;
    pthread_mutex_lock(&used_lock);
    n = nused;
    memcpy(ids, used, sizeof(ids[0]) * (size_t)n);
    nused = 0;
    pthread_mutex_unlock(&used_lock);
    schema_now(now);
    store_touch_keys(admin.gw->store, (const char (*)[37])ids, n, now, key_use_limit(time(NULL)));
}

/* --- dispatch ---------------------------------------------------------- */

/* Identifies the caller from the Authorization header. Returns 0, or -1
 * after answering 401. */
static int identify(evhtp_request_t *req, caller_t *who)
{
    const char *h = evhtp_kv_find(req->headers_in, "authorization"), *token = auth_bearer_token(h);
    const cJSON *k;
    store_hold_t *hold;
    memset(who, 0, sizeof(*who));
    if (auth_bearer_matches(h, admin.gw->admin_key))
        return 0;
    if (token != NULL && (k = auth_find_key(admin.reader, token, &hold)) != NULL) {
        const char *role = schema_str(k, "role", "user");
        who->role = strcmp(role, "admin") == 0 ? ROLE_ADMIN : strcmp(role, "tenant_admin") == 0 ? ROLE_TENANT_ADMIN
                                                                                                 : ROLE_USER;
        snprintf(who->tenant, sizeof(who->tenant), "%s", schema_str(k, "tenant", ""));
        if (admin_key_use_due(schema_str(k, "id", ""), schema_str(k, "last_used_at", NULL)))
            admin_key_used(schema_str(k, "id", ""));
        store_release(hold);
        return 0;
    }
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("WWW-Authenticate", "Bearer", 0, 0));
    reply_error(req, 401, "the admin API needs 'Authorization: Bearer KEY' with an admin or tenant_admin key%s",
                admin.gw->admin_key == NULL ? " (no bootstrap key is configured: set the env var named by "
                                              "admin.key_env)"
                                            : "");
    return -1;
}

static void on_request(evhtp_request_t *req, void *arg)
{
    const char *path = req->uri && req->uri->path ? req->uri->path->full : "";
    htp_method m = evhtp_request_get_method(req);
    int get = m == htp_method_GET || m == htp_method_HEAD;   /* evhtp sends HEAD the head alone (patch 0003) */
    caller_t who;
    (void)arg;
    if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "{\"status\":\"ok\"}\n");
        return;
    }
    if (ui_serve(req, path))      /* the dashboard's files are public; its data needs a key */
        return;
    if (identify(req, &who) < 0)
        return;
    if (who.role == ROLE_USER) {
        reply_error(req, 403, "this key has the user role: it may call the data plane, not the admin API");
        return;
    }
    if (strcmp(path, "/v1/eu-residency") == 0) {
        if (get)
            serve_residency(req);
        else
            reply_not_allowed(req, "GET");
        return;
    }
    if (strcmp(path, "/v1/events") == 0 || strcmp(path, "/v1/stats") == 0) {
        const char *tenant = who.role == ROLE_ADMIN ? NULL : who.tenant;
        cJSON *stats;
        if (!get) {
            reply_not_allowed(req, "GET");
        } else if (path[4] == 'e') {
            if (control_events(req, tenant) < 0)
                reply_error(req, 503, "too many event streams are open (64); close one and retry");
        } else if ((stats = control_stats(tenant)) == NULL) {
            reply_error(req, 503, "the figures are not being collected");
        } else {
            evhtp_headers_add_header(req->headers_out, evhtp_header_new("Cache-Control", "no-store", 0, 0));
            reply_json(req, 200, stats);
            cJSON_Delete(stats);
        }
        return;
    }
    if (strcmp(path, "/v1/usage") == 0) {
        if (get)
            serve_usage(req, &who);
        else
            reply_not_allowed(req, "GET");
        return;
    }
    if (strcmp(path, "/v1/model-routes/dry-run") == 0) {
        if (m == htp_method_POST)
            serve_dry_run(req, &who);
        else
            reply_not_allowed(req, "POST");
        return;
    }
    for (size_t i = 0; i < sizeof(collections) / sizeof(collections[0]); i++) {
        const collection_t *col = &collections[i];
        size_t n = strlen(col->path);
        const char *id;
        if (strncmp(path, col->path, n) != 0 || (path[n] != '\0' && path[n] != '/'))
            continue;
        /* whether another tenant's record exists is not a tenant_admin's to
         * learn: any write of a tenant is 403, found or not */
        if (col->table == STORE_TENANTS && !get && who.role != ROLE_ADMIN &&
            (m == htp_method_POST || m == htp_method_PATCH || m == htp_method_DELETE)) {
            may_write(req, &who, col, NULL);
            return;
        }
        if (path[n] == '\0' || path[n + 1] == '\0') {
            if (get)
                serve_list(req, &who, col);
            else if (m == htp_method_POST)
                serve_create(req, &who, col);
            else
                reply_not_allowed(req, "GET, POST");
            return;
        }
        id = path + n + 1;
        if (strchr(id, '/') != NULL || strlen(id) > 64) {
            reply_error(req, 404, "no such path: %.200s", path);
            return;
        }
        if (get) {
            cJSON *rec = find_visible(req, &who, col, id);
            if (rec != NULL)
                reply_record(req, 200, col->table, rec);
            cJSON_Delete(rec);
        } else if (m == htp_method_PATCH) {
            serve_patch(req, &who, col, id);
        } else if (m == htp_method_DELETE) {
            serve_delete(req, &who, col, id);
        } else {
            reply_not_allowed(req, "GET, PATCH, DELETE");
        }
        return;
    }
    reply_error(req, 404, "no such path: %.200s", path);
}

/* Bodies over 1 MiB are refused before they are read: the hook's status
 * goes to the parse-error answer (edge.c), and the connection closes. A
 * client waiting for "100 Continue" gets it once the body is known to be
 * acceptable (the caller's key is checked with the complete request). */
/* A request is done: reading resumes if it was held back behind it. */
static evhtp_res on_request_fini(evhtp_request_t *req, void *arg)
{
    control_request_gone(req);            /* an event stream ends with its request */
    cio_request_done(((admin_conn_t *)arg)->io);
    return EVHTP_RES_OK;
}

static evhtp_res on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
    evhtp_kv_t *kv;
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)on_request_fini, arg);
    TAILQ_FOREACH(kv, hdrs, next)
        if (strcasecmp(kv->key, "expect") == 0 && !edge_expectation_ok(kv->val))
            return 417;
    if (evhtp_request_content_len(req) > ADMIN_MAX_BODY)
        return 413;
    if (evhtp_kv_find(req->headers_in, "transfer-encoding") != NULL)
        return 411;   /* admin bodies need a Content-Length */
    edge_continue(req);
    return EVHTP_RES_OK;
}

static void on_parse_error(evhtp_connection_t *conn, evhtp_res status, void *arg)
{
    (void)arg;
    edge_write_error(conn, status, status == 413 ? "admin request bodies are limited to 1 MiB"
                                 : status == 411 ? "admin requests need a Content-Length"
                                 : status == 417 ? "the only expectation supported is Expect: 100-continue"
                                                 : edge_parse_error_message(conn, status));
}

static evhtp_res on_conn_fini(evhtp_connection_t *conn, void *arg)
{
    admin_conn_t *c = arg;
    /* evhtp frees the connection's request after this: its fini hook must
     * not reach C */
    if (conn->request != NULL) {
        evhtp_request_set_hook(conn->request, evhtp_hook_on_request_fini, NULL, NULL);
        control_request_gone(conn->request);
    }
    cio_stop(c->io);
    free(c->io);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        admin.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
    return EVHTP_RES_OK;
}

static evhtp_res on_accept(evhtp_connection_t *conn, void *arg)
{
    admin_conn_t *c = calloc(1, sizeof(*c));
    (void)arg;
    if (c == NULL || (c->io = calloc(1, sizeof(*c->io))) == NULL) {
        free(c);
        return EVHTP_RES_FATAL;
    }
    c->conn = conn;
    c->io->conn = conn;
    c->next = admin.conns;
    if (admin.conns != NULL)
        admin.conns->prev = c;
    admin.conns = c;
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_conn_fini, c);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, c);
    /* the data listener's I/O, over TLS when admin.tls is set (the config
     * in force when the connection came: a reload's certificate is for new ones) */
    cio_start(c->io, admin.base, &admin.cfg, admin.cfg->admin_tls_ctx);
    return EVHTP_RES_OK;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopexit(admin.base, NULL);
}

static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    uint64_t gen = atomic_load(&admin.gw->gen);
    admin.cfg = atomic_load(&admin.gw->live);
    atomic_store(&admin.gw->admin_gen, gen);
}

void admin_reload(void)
{
    if (admin.running)
        event_active(admin.reload_ev, EV_READ, 0);
}

static void *admin_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "turnout-admin");   /* for top -H, perf and the bench */
    event_base_dispatch(admin.base);
    while (admin.conns != NULL)     /* keep-alive connections still open */
        evhtp_connection_free(admin.conns->conn);
    return NULL;
}

int admin_start(gateway_t *gw, char *err, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(gw->cfg.admin_listen, ':');
    struct event *ev = NULL;
    long port;
    memset(&admin, 0, sizeof(admin));
    admin.gw = gw;
    admin.cfg = atomic_load(&gw->live);
    if (colon == NULL || colon == gw->cfg.admin_listen || (size_t)(colon - gw->cfg.admin_listen) >= sizeof(host) ||
        (port = strtol(colon + 1, NULL, 10)) < 1 || port > 65535) {
        snprintf(err, errlen, "admin.listen: must be HOST:PORT");
        return -1;
    }
    memcpy(host, gw->cfg.admin_listen, (size_t)(colon - gw->cfg.admin_listen));
    host[colon - gw->cfg.admin_listen] = '\0';
    if ((admin.reader = store_reader_new(gw->store)) == NULL || (admin.base = event_base_new()) == NULL ||
        (admin.htp = evhtp_new(admin.base, NULL)) == NULL ||
        (ev = event_new(admin.base, -1, 0, on_keys_used, NULL)) == NULL ||
        (admin.stop_ev = event_new(admin.base, -1, 0, on_stop, NULL)) == NULL ||
        (admin.reload_ev = event_new(admin.base, -1, 0, on_reload, NULL)) == NULL) {
        if (ev != NULL)
            event_free(ev);
        snprintf(err, errlen, "admin: out of resources");
        admin_stop();
        return -1;
    }
    if (control_start(admin.base, gw, route_visible) < 0) {
        event_free(ev);
        snprintf(err, errlen, "admin: out of resources");
        admin_stop();
        return -1;
    }
    pthread_mutex_lock(&used_lock);
    used_ev = ev;
    pthread_mutex_unlock(&used_lock);
    evhtp_disable_flag(admin.htp, EVHTP_FLAG_ENABLE_100_CONT);
    evhtp_set_external_io(admin.htp, 1);     /* clientio.c does the sockets' I/O (and TLS) */
    evhtp_set_gencb(admin.htp, on_request, NULL);
    evhtp_set_post_accept_cb(admin.htp, on_accept, NULL);
    evhtp_set_edge_cbs(admin.htp, NULL, on_parse_error, NULL);
    if (evhtp_bind_socket(admin.htp, host, (uint16_t)port, 128) < 0) {
        snprintf(err, errlen, "admin.listen %s: cannot bind (in use, or a bad address)", gw->cfg.admin_listen);
        admin_stop();
        return -1;
    }
    if (pthread_create(&admin.thread, NULL, admin_main, NULL) != 0) {
        snprintf(err, errlen, "admin: cannot start its thread");
        admin_stop();
        return -1;
    }
    admin.running = 1;
    return 0;
}

void admin_stop(void)
{
    if (admin.running) {
        event_active(admin.stop_ev, EV_READ, 0);
        pthread_join(admin.thread, NULL);
        admin.running = 0;
    }
    if (admin.htp != NULL) {
        evhtp_unbind_socket(admin.htp);   /* evhtp_free leaves the listener */
        evhtp_free(admin.htp);
    }
    control_stop();                       /* (its streams ended with their connections) */
    if (admin.stop_ev != NULL)
        event_free(admin.stop_ev);
    if (admin.reload_ev != NULL)
        event_free(admin.reload_ev);
    pthread_mutex_lock(&used_lock);           /* no worker reports into a freed event */
    if (used_ev != NULL)
        event_free(used_ev);
    used_ev = NULL;
    nused = 0;
    pthread_mutex_unlock(&used_lock);
    if (admin.base != NULL)
        event_base_free(admin.base);
    store_reader_free(admin.reader);
    budgets_free(admin.budgets);
    admin.budgets = NULL;
    memset(&admin, 0, sizeof(admin));
}
