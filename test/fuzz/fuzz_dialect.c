/* fuzz_dialect.c - libFuzzer driver for both dialect translations: each of their four steps on arbitrary bytes.
 *
 * The first byte picks the direction (bit 0), the step (bits 1-2: request,
 * answer, stream, error) and, for a stream, include_usage (bit 3); the rest
 * is the input. Besides the sanitizers' findings it checks what dialect.h
 * promises: a request or answer that translates is valid JSON, and so is
 * the data of every event a stream translation writes. Build and run with
 * `make fuzz` (clang's libFuzzer); the seeds are in corpus/dialect. */
#include "dialect.h"
#include "jscan.h"
#include "sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts (a finding) unless OUT holds one valid JSON document, maybe after a newline. */
static void must_be_json(struct evbuffer *out)
{
    size_t n = evbuffer_get_length(out);
    const char *b = n ? (const char *)evbuffer_pullup(out, -1) : "";
    jscan_t j;
    while (n > 0 && b[n - 1] == '\n')
        n--;
    if (jscan_body(b, n, &j) != JSCAN_OK)
        abort();
}

/* Aborts unless every event in OUT is whole and carries valid JSON or [DONE]. */
static void must_be_events(struct evbuffer *out)
{
    size_t n = evbuffer_get_length(out);
    const char *b = n ? (const char *)evbuffer_pullup(out, -1) : "";
    char data[65536];
    while (n > 0) {
        size_t e = sse_first(b, n);
        sse_fields_t f;
        long dl;
        jscan_t j;
        if (e == 0)
            abort();                      /* half an event */
        dl = sse_event(b, e, &f, data, sizeof(data));
        if (dl == -1 || (dl >= 0 && !(dl == 6 && memcmp(f.data, "[DONE]", 6) == 0) &&
                         jscan_body(f.data, (size_t)dl, &j) != JSCAN_OK))
            abort();
        b += e;
        n -= e;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const dialect_ops_t *ops;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct evbuffer *out;
    dialect_usage_t usage = { -1, -1, -1 };
    jscan_t j;
    if (size < 1)
        return 0;
    ops = data[0] & 1 ? &dialect_anthropic_to_openai : &dialect_openai_to_anthropic;
    if ((out = evbuffer_new()) == NULL)
        return 0;
    switch ((data[0] >> 1) & 3) {
    case 0: {                             /* the data plane hands over only valid JSON */
        dialect_req_opts_t o = { "fuzz-model", 4096 };
        dialect_req_info_t info;
        dialect_err_t err;
        if (jscan_body(body, len, &j) == JSCAN_OK && ops->request(body, len, &o, out, &info, &err) == 0)
            must_be_json(out);
        break;
    }
    case 1:
        if (ops->answer(body, len, "fuzz-model", out, &usage) == 0)
            must_be_json(out);
        break;
    case 2: {
        dialect_req_info_t info = { 1, (data[0] >> 3) & 1 };
        dialect_stream_t *s = ops->stream_new("fuzz-model", &info);
        while (s != NULL && len > 0) {
            size_t n = sse_first(body, len);
            if (n == 0)
                n = len;
            if (ops->stream_event(s, body, n, out, &usage) == 1)
                break;
            body += n;
            len -= n;
        }
        ops->stream_free(s);
        must_be_events(out);
        break;
    }
    default:
        ops->error(400 + (int)(data[0] >> 3) * 7, body, len, out);
        must_be_json(out);
        break;
    }
    evbuffer_free(out);
    return 0;
}
