/* admin.c - the admin API: CRUD of providers, routes and routers on its own listener and thread.
 *
 * One thread with its own event loop serves admin.listen, so a write's fsync
 * never stalls a data-plane worker. Every write is one LMDB transaction,
 * committed and synced before the 2xx; workers read the store on every
 * request, so the next request on any worker sees the change.
 *
 *   /v1/model-routes, /v1/providers, /v1/routers
 *     GET    list: limit (1-1000, default 100), cursor (opaque, from
 *            next_cursor), for routes also endpoint, router, scope,
 *            include_disabled (default false)
 *     POST   create -> 201 with the stored record (id, created_at, updated_at)
 *   .../{id}
 *     GET    one record
 *     PATCH  JSON merge patch (RFC 7386): fields replace, null removes,
 *            objects merge; the result is validated as a whole
 *     DELETE -> {"id", "object", "deleted": true}
 * Errors are OpenAI-shaped with the offending field in "param". */
#include "admin.h"
#include "auth.h"
#include "edge.h"
#include "jscan.h"
#include "schema.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <evhtp/evhtp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADMIN_MAX_BODY (1 << 20)

/* An open admin connection, freed with the loop if still open at exit. */
typedef struct admin_conn {
    evhtp_connection_t *conn;
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
} admin_t;

static admin_t admin;

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
};

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
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "request_too_large";
    case 415: return "unsupported_media_type";
    case 507: return "store_full";
    default:  return "internal_error";
    }
}

/* An OpenAI-shaped error. When the message starts with "FIELD: ", FIELD is
 * reported as the error's param. */
static void reply_error(evhtp_request_t *req, int status, const char *fmt, ...)
{
    char msg[1024], param[128] = "";
    const char *colon;
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    colon = strstr(msg, ": ");
    if ((status == 400 || status == 409) && colon != NULL && (size_t)(colon - msg) < sizeof(param) &&
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
    cJSON_AddStringToObject(e, "code", code_for(status));
    reply_json(req, status, root);
    cJSON_Delete(root);
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

/* --- list -------------------------------------------------------------- */

typedef struct route_filter {
    char endpoint[40], router[72], scope[310];
    int include_disabled;
} route_filter_t;

static int keep_route(const cJSON *rec, void *arg)
{
    const route_filter_t *f = arg;
    const cJSON *v;
    if (!f->include_disabled && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rec, "enabled")))
        return 0;
    v = cJSON_GetObjectItemCaseSensitive(rec, "endpoint");
    if (f->endpoint[0] && !(cJSON_IsString(v) && strcmp(v->valuestring, f->endpoint) == 0))
        return 0;
    v = cJSON_GetObjectItemCaseSensitive(rec, "router");
    if (f->router[0] && !(cJSON_IsString(v) && strcmp(v->valuestring, f->router) == 0))
        return 0;
    v = cJSON_GetObjectItemCaseSensitive(rec, "scope");
    if (f->scope[0] && !(cJSON_IsString(v) && strcmp(v->valuestring, f->scope) == 0))
        return 0;
    return 1;
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

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void serve_list(evhtp_request_t *req, const collection_t *col)
{
    route_filter_t f;
    char key[512], next[512], hex[1025], value[1100];
    size_t klen = 0, nlen = 0;
    int limit = 100, have_cursor = 0;
    evhtp_kv_t *kv;
    cJSON *root, *data;

    memset(&f, 0, sizeof(f));
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
            } else if (col->table == STORE_ROUTES && strcmp(kv->key, "endpoint") == 0) {
                if (copy_param(req, kv->key, value, f.endpoint, sizeof(f.endpoint)) < 0)
                    return;
            } else if (col->table == STORE_ROUTES && strcmp(kv->key, "router") == 0) {
                if (copy_param(req, kv->key, value, f.router, sizeof(f.router)) < 0)
                    return;
            } else if (col->table == STORE_ROUTES && strcmp(kv->key, "scope") == 0) {
                if (copy_param(req, kv->key, value, f.scope, sizeof(f.scope)) < 0)
                    return;
            } else if (col->table == STORE_ROUTES && strcmp(kv->key, "include_disabled") == 0) {
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
    if (store_list(admin.gw->store, col->table, have_cursor ? key : NULL, klen, limit,
                   col->table == STORE_ROUTES ? keep_route : NULL, &f, data, next, &nlen) < 0) {
        cJSON_Delete(root);
        reply_error(req, 500, "the store could not be read");
        return;
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

/* Fields the server owns: a client may not set them. */
static int reject_server_fields(evhtp_request_t *req, const cJSON *body)
{
    static const char *const owned[] = { "id", "created_at", "updated_at", NULL };
    for (const char *const *f = owned; *f; f++) {
        if (cJSON_GetObjectItemCaseSensitive(body, *f) != NULL) {
            reply_error(req, 400, "%s: set by the server, not by the client", *f);
            return -1;
        }
    }
    return 0;
}

static void reply_written(evhtp_request_t *req, int st, const char *err, const cJSON *rec)
{
    if (st == STORE_OK || st == STORE_CREATED)
        reply_json(req, st, rec);
    else
        reply_error(req, st, "%s", err);
}

/* Validates REC as a whole, stores it (a create when OLD_ID is NULL) and
 * answers with the stored record or the error; frees REC. */
static void validate_and_store(evhtp_request_t *req, const collection_t *col, cJSON *rec, const char *old_id)
{
    char err[512];
    if (col->normalise(rec, err, sizeof(err)) < 0) {
        reply_error(req, 400, "%s", err);
    } else {
        int st = store_put(admin.gw->store, col->table, rec, old_id, err, sizeof(err));
        reply_written(req, st, err, rec);
    }
    cJSON_Delete(rec);
}

static void serve_create(evhtp_request_t *req, const collection_t *col)
{
    cJSON *rec = body_object(req);
    if (rec == NULL || reject_server_fields(req, rec) < 0) {
        cJSON_Delete(rec);
        return;
    }
    validate_and_store(req, col, rec, NULL);
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

static void serve_patch(evhtp_request_t *req, const collection_t *col, const char *id)
{
    char now[32];
    cJSON *patch = body_object(req), *rec;
    if (patch == NULL || reject_server_fields(req, patch) < 0) {
        cJSON_Delete(patch);
        return;
    }
    if ((rec = store_find(admin.gw->store, col->table, id)) == NULL) {
        cJSON_Delete(patch);
        reply_error(req, 404, "no %s with id %s", col->object, id);
        return;
    }
    merge_patch(rec, patch);
    cJSON_Delete(patch);
    schema_now(now);
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "updated_at");
    cJSON_AddStringToObject(rec, "updated_at", now);
    validate_and_store(req, col, rec, id);
}

static void serve_delete(evhtp_request_t *req, const collection_t *col, const char *id)
{
    char err[512];
    int st = store_delete(admin.gw->store, col->table, id, err, sizeof(err));
    cJSON *out;
    if (st != STORE_OK) {
        reply_error(req, st, "%s", err);
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "id", id);
    cJSON_AddStringToObject(out, "object", col->object);
    cJSON_AddTrueToObject(out, "deleted");
    reply_json(req, 200, out);
    cJSON_Delete(out);
}

/* --- dispatch ---------------------------------------------------------- */

static void on_request(evhtp_request_t *req, void *arg)
{
    const char *path = req->uri && req->uri->path ? req->uri->path->full : "";
    htp_method m = evhtp_request_get_method(req);
    (void)arg;
    if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "{\"status\":\"ok\"}\n");
        return;
    }
    if (!auth_bearer_matches(evhtp_kv_find(req->headers_in, "authorization"), admin.gw->admin_key)) {
        evhtp_headers_add_header(req->headers_out, evhtp_header_new("WWW-Authenticate", "Bearer", 0, 0));
        reply_error(req, 401, "the admin API needs 'Authorization: Bearer KEY' with the admin key%s",
                    admin.gw->admin_key == NULL ? " (none is configured: set the env var named by admin.key_env)"
                                                : "");
        return;
    }
    for (size_t i = 0; i < sizeof(collections) / sizeof(collections[0]); i++) {
        const collection_t *col = &collections[i];
        size_t n = strlen(col->path);
        const char *id;
        if (strncmp(path, col->path, n) != 0 || (path[n] != '\0' && path[n] != '/'))
            continue;
        if (path[n] == '\0' || path[n + 1] == '\0') {
            if (m == htp_method_GET)
                serve_list(req, col);
            else if (m == htp_method_POST)
                serve_create(req, col);
            else
                reply_not_allowed(req, "GET, POST");
            return;
        }
        id = path + n + 1;
        if (strchr(id, '/') != NULL || strlen(id) > 64) {
            reply_error(req, 404, "no such path: %.200s", path);
            return;
        }
        if (m == htp_method_GET) {
            cJSON *rec = store_find(admin.gw->store, col->table, id);
            if (rec == NULL)
                reply_error(req, 404, "no %s with id %s", col->object, id);
            else
                reply_json(req, 200, rec);
            cJSON_Delete(rec);
        } else if (m == htp_method_PATCH) {
            serve_patch(req, col, id);
        } else if (m == htp_method_DELETE) {
            serve_delete(req, col, id);
        } else {
            reply_not_allowed(req, "GET, PATCH, DELETE");
        }
        return;
    }
    reply_error(req, 404, "no such path: %.200s", path);
}

/* Bodies over 1 MiB are refused before they are read: the hook's status
 * goes to the parse-error answer (edge.c), and the connection closes. */
static evhtp_res on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
    (void)hdrs;
    (void)arg;
    if (evhtp_request_content_len(req) > ADMIN_MAX_BODY)
        return 413;
    if (evhtp_kv_find(req->headers_in, "transfer-encoding") != NULL)
        return 411;   /* admin bodies need a Content-Length */
    return EVHTP_RES_OK;
}

static void on_parse_error(evhtp_connection_t *conn, evhtp_res status, void *arg)
{
    (void)arg;
    edge_write_error(conn, status, status == 413 ? "admin request bodies are limited to 1 MiB"
                                 : status == 411 ? "admin requests need a Content-Length"
                                                 : "malformed HTTP request");
}

static evhtp_res on_conn_fini(evhtp_connection_t *conn, void *arg)
{
    admin_conn_t *c = arg;
    (void)conn;
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
    if (c == NULL)
        return EVHTP_RES_FATAL;
    c->conn = conn;
    c->next = admin.conns;
    if (admin.conns != NULL)
        admin.conns->prev = c;
    admin.conns = c;
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_conn_fini, c);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, arg);
    return EVHTP_RES_OK;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopexit(admin.base, NULL);
}

static void *admin_main(void *arg)
{
    (void)arg;
    event_base_dispatch(admin.base);
    while (admin.conns != NULL)     /* keep-alive connections still open */
        evhtp_connection_free(admin.conns->conn);
    return NULL;
}

int admin_start(gateway_t *gw, char *err, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(gw->cfg.admin_listen, ':');
    long port;
    memset(&admin, 0, sizeof(admin));
    admin.gw = gw;
    if (colon == NULL || colon == gw->cfg.admin_listen || (size_t)(colon - gw->cfg.admin_listen) >= sizeof(host) ||
        (port = strtol(colon + 1, NULL, 10)) < 1 || port > 65535) {
        snprintf(err, errlen, "admin.listen: must be HOST:PORT");
        return -1;
    }
    memcpy(host, gw->cfg.admin_listen, (size_t)(colon - gw->cfg.admin_listen));
    host[colon - gw->cfg.admin_listen] = '\0';
    if ((admin.base = event_base_new()) == NULL || (admin.htp = evhtp_new(admin.base, NULL)) == NULL ||
        (admin.stop_ev = event_new(admin.base, -1, 0, on_stop, NULL)) == NULL) {
        snprintf(err, errlen, "admin: out of resources");
        admin_stop();
        return -1;
    }
    evhtp_disable_flag(admin.htp, EVHTP_FLAG_ENABLE_100_CONT);
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
    if (admin.stop_ev != NULL)
        event_free(admin.stop_ev);
    if (admin.base != NULL)
        event_base_free(admin.base);
    memset(&admin, 0, sizeof(admin));
}
