/* ui.c - serves the dashboard's files (embedded at build time) on the admin listener, with their caching and security headers.
 *
 * The files are public (the data behind them needs a key, which the page
 * sends as a bearer header), so this runs before the admin API's key check.
 * Names are not content-hashed, so every answer says "no-cache": the browser
 * keeps its copy and revalidates it with If-None-Match, a 304 when unchanged
 * (a new binary with new files has new ETags). A gzip copy made at build
 * time is sent to clients that accept it; nothing is compressed at run time. */
#include "ui.h"

#include <evhtp/evhtp.h>
#include <string.h>
#include <strings.h>

/* No inline script or style, nothing from elsewhere, never framed. */
#define UI_CSP "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " \
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const ui_asset_t *ui_find(const char *name)
{
    for (size_t i = 0; i < ui_asset_count; i++)
        if (strcmp(ui_assets[i].name, name) == 0)
            return &ui_assets[i];
    return NULL;
}

static void add_header(evhtp_request_t *req, const char *name, const char *value)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new(name, value, 0, 0));
}

static void add_security_headers(evhtp_request_t *req)
{
    add_header(req, "Content-Security-Policy", UI_CSP);
    add_header(req, "X-Content-Type-Options", "nosniff");
    add_header(req, "X-Frame-Options", "DENY");
    add_header(req, "Referrer-Policy", "no-referrer");
}

static void reply_plain(evhtp_request_t *req, int status, const char *text)
{
    add_security_headers(req);
    add_header(req, "Content-Type", "text/plain; charset=utf-8");
    add_header(req, "Cache-Control", "no-store");
    evbuffer_add(req->buffer_out, text, strlen(text));
    evhtp_send_reply(req, (evhtp_res)status);
}

static void redirect(evhtp_request_t *req)
{
    add_header(req, "Location", "/ui/");
    reply_plain(req, 308, "moved to /ui/\n");
}

/* Whether an Accept-Encoding value admits gzip: a "gzip" (or "*") token
 * without q=0. A client that says nothing gets the plain bytes. */
static int accepts_gzip(const char *ae)
{
    while (ae != NULL && *ae != '\0') {
        size_t n;
        const char *q;
        while (*ae == ' ' || *ae == '\t' || *ae == ',')
            ae++;
        n = strcspn(ae, ";, \t");
        if ((n == 4 && strncasecmp(ae, "gzip", 4) == 0) || (n == 1 && *ae == '*')) {
            q = ae + n + strspn(ae + n, " \t");
            if (*q != ';')
                return 1;
            q += 1 + strspn(q + 1, " \t");
            if (strncasecmp(q, "q=", 2) != 0)
                return 1;
            q += 2;
            /* q=0, q=0.0, q=0.00, q=0.000 refuse it */
            if (!(q[0] == '0' && (q[1] != '.' || strspn(q + 2, "0") == strcspn(q + 2, ", \t;"))))
                return 1;
        }
        ae += strcspn(ae, ",");
    }
    return 0;
}

/* Whether If-None-Match names TAG (or is "*"); weak tags compare equal. */
static int etag_matches(const char *inm, const char *tag)
{
    size_t len = strlen(tag);
    while (inm != NULL && *inm != '\0') {
        inm += strspn(inm, " \t,");
        if (*inm == '*')
            return 1;
        if (strncmp(inm, "W/", 2) == 0)
            inm += 2;
        if (strncmp(inm, tag, len) == 0 && strchr(", \t", inm[len]) != NULL)
            return 1;
        inm += strcspn(inm, ",");
    }
    return 0;
}

static void serve_asset(evhtp_request_t *req, const ui_asset_t *a)
{
    int gz = a->gz_len > 0 && accepts_gzip(evhtp_kv_find(req->headers_in, "accept-encoding"));
    const char *tag = gz ? a->etag_gz : a->etag;
    add_security_headers(req);
    add_header(req, "Cache-Control", "no-cache");
    add_header(req, "ETag", tag);
    add_header(req, "Vary", "Accept-Encoding");
    if (etag_matches(evhtp_kv_find(req->headers_in, "if-none-match"), tag)) {
        evhtp_send_reply(req, EVHTP_RES_NOTMOD);
        return;
    }
    add_header(req, "Content-Type", a->type);
    if (gz)
        add_header(req, "Content-Encoding", "gzip");
    /* the body goes in for HEAD too: its Content-Length is the GET's, and
     * evhtp leaves the body out of a HEAD answer (patch 0003) */
    evbuffer_add_reference(req->buffer_out, gz ? a->gz : a->data, gz ? a->gz_len : a->len, NULL, NULL);
    evhtp_send_reply(req, EVHTP_RES_OK);
}

int ui_serve(evhtp_request_t *req, const char *path)
{
    htp_method m = evhtp_request_get_method(req);
    const ui_asset_t *a;
    if (strcmp(path, "/") != 0 && strcmp(path, "/ui") != 0 && strncmp(path, "/ui/", 4) != 0)
        return 0;
    if (m != htp_method_GET && m != htp_method_HEAD) {
        add_header(req, "Allow", "GET, HEAD");
        reply_plain(req, 405, "the dashboard's files are read with GET or HEAD\n");
        return 1;
    }
    if (strcmp(path, "/") == 0 || strcmp(path, "/ui") == 0) {
        redirect(req);
        return 1;
    }
    a = ui_find(path[4] == '\0' ? "index.html" : path + 4);
    if (a == NULL)
        reply_plain(req, 404, "no such file in the dashboard\n");
    else
        serve_asset(req, a);
    return 1;
}
