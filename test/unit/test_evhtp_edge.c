/* test_evhtp_edge.c - regression tests for the project's libevhtp patch
 * 0003 (scripts/patches/) at the library level: the reason phrase of every
 * status turnout sends. The integration suite checks the same on the wire
 * (test_http_edge_rfc.py). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <evhtp/evhtp.h>

#include "unit.h"

static void reason_phrases(void)
{
    /* every status turnout sends (data plane, admin API, edge answers, 100
     * Continue), with RFC 9110's phrase */
    static const struct { int code; const char *reason; } sent[] = {
        { 100, "Continue" }, { 200, "OK" }, { 201, "Created" }, { 400, "Bad Request" }, { 401, "Unauthorized" },
        { 403, "Forbidden" }, { 404, "Not Found" }, { 405, "Method Not Allowed" }, { 408, "Request Timeout" },
        { 409, "Conflict" }, { 411, "Length Required" }, { 413, "Content Too Large" }, { 414, "URI Too Long" },
        { 415, "Unsupported Media Type" }, { 417, "Expectation Failed" }, { 422, "Unprocessable Content" },
        { 429, "Too Many Requests" }, { 431, "Request Header Fields Too Large" },
        { 500, "Internal Server Error" }, { 501, "Not Implemented" }, { 502, "Bad Gateway" },
        { 503, "Service Unavailable" }, { 504, "Gateway Timeout" }, { 505, "HTTP Version Not Supported" },
        { 507, "Insufficient Storage" },
    };
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        const char *got = evhtp_status_code_str((evhtp_res)sent[i].code);
        if (strcmp(got, sent[i].reason) != 0)
            fprintf(stderr, "%d: '%s', want '%s'\n", sent[i].code, got, sent[i].reason);
        CHECK_STR(got, sent[i].reason);
    }
    /* an unregistered code (or 499, which only the access log shows) has none */
    CHECK_STR(evhtp_status_code_str(499), "");
    CHECK_STR(evhtp_status_code_str(460), "");
    CHECK_STR(evhtp_status_code_str(299), "");
}

int main(void)
{
    reason_phrases();
    DONE();
}
