/* dialect.c - which dialect a provider speaks, which translation joins two, and turnout's own errors in each shape. */
#include "dialect.h"
#include "jscan.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

dialect_t dialect_of_protocol(const char *protocol)
{
    return protocol != NULL && strcmp(protocol, "anthropic") == 0 ? DIALECT_ANTHROPIC : DIALECT_OPENAI;
}

const dialect_ops_t *dialect_between(dialect_t client, dialect_t upstream)
{
    if (client == upstream)
        return NULL;
    return client == DIALECT_OPENAI ? &dialect_openai_to_anthropic : &dialect_anthropic_to_openai;
}

const char *dialect_anthropic_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default:  return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

void dialect_error_body(dialect_t client, int status, const char *type, const char *code, const char *param_json,
                        const char *message_json, const char *extra, struct evbuffer *out)
{
    if (client == DIALECT_OPENAI) {
        evbuffer_add_printf(out, "{\"error\":{\"message\":%s,\"type\":\"%s\",\"param\":%s,\"code\":\"%s\"%s}}\n",
                            message_json, type, param_json, code, extra != NULL ? extra : "");
        return;
    }
    /* the code leads the message (Anthropic's error object has no code);
     * MESSAGE_JSON is a quoted string: its opening quote is replaced */
    evbuffer_add_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s: %s}}\n",
                        dialect_anthropic_error_type(status), code, message_json[0] == '"' ? message_json + 1 : "error\"");
}

int dialect_stream_ended(dialect_t d, const char *buf, size_t len)
{
    size_t end = len, start;
    while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r'))
        end--;
    start = end;
    while (start > 0 && buf[start - 1] != '\n' && buf[start - 1] != '\r')
        start--;
    if (d == DIALECT_OPENAI)
        return (end - start == 12 && memcmp(buf + start, "data: [DONE]", 12) == 0) ||
               (end - start == 11 && memcmp(buf + start, "data:[DONE]", 11) == 0);
    /* event: message_stop, then its data line {"type":"message_stop"} */
    return end - start > 5 && memcmp(buf + start, "data:", 5) == 0 &&
           memmem(buf + start, end - start, "\"message_stop\"", 14) != NULL;
}

static int hex4(const char *s, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
        if (d == 16)
            return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

int dialect_bad_escape(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        const char *bs = memchr(s + i, '\\', len - 1 - i);   /* most bodies have few escapes: skip to the next */
        unsigned v, lo;
        if (bs == NULL)
            break;
        i = (size_t)(bs - s);
        if (s[i + 1] != 'u' || i + 6 > len || !hex4(s + i + 2, &v)) {
            i++;                        /* the escaped character: \\u0000 is text */
            continue;
        }
        if (v == 0)
            return DIALECT_ESC_NUL;
        if (v >= 0xDC00 && v <= 0xDFFF)
            return DIALECT_ESC_SURROGATE;
        if (v >= 0xD800 && v <= 0xDBFF) {
            if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u' || !hex4(s + i + 8, &lo) || lo < 0xDC00 ||
                lo > 0xDFFF)
                return DIALECT_ESC_SURROGATE;
            i += 6;
        }
        i += 5;
    }
    return 0;
}

/* An upstream's BODY parsed, when it is well-formed JSON of valid UTF-8
 * (jscan checks what cJSON does not, so what we print is valid too). */
cJSON *dialect_parse(const char *body, size_t len)
{
    jscan_t j;
    if (jscan_body(body, len, &j) == JSCAN_INVALID || dialect_bad_escape(body, len))
        return NULL;
    return cJSON_ParseWithLength(body, len);
}
