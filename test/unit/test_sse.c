/* test_sse.c - event boundaries in every line-ending style, and an event's fields. */
#include "../../src/sse.c"
#include "unit.h"

static size_t whole(const char *s)
{
    return sse_whole(s, strlen(s), 0);
}

int main(void)
{
    CHECK(whole("data: a\n\n") == 9);
    CHECK(whole("data: a\n\ndata: b") == 9);
    CHECK(whole("data: a\n\ndata: b\n") == 9);
    CHECK(whole("data: a\r\n\r\ndata: b\r\n\r\n") == 22);
    CHECK(whole("data: a\r\n\r\ndata: b\r\n\r") == 11);     /* the last LF may still come */
    CHECK(whole("data: a\r\rdata: b") == 9);
    CHECK(whole("data: a\r\r") == 0);                        /* a CR at the end decides nothing yet */
    CHECK(whole("data: a\n\r\nx") == 10);
    CHECK(whole("data: a\r\n\nx") == 10);
    CHECK(whole("data: {\"partial") == 0);
    CHECK(whole("\n\n") == 2);
    CHECK(whole("") == 0);
    /* an empty line at the start is an event's end too (fuzz_sse: a piece
     * that began with one was held back, though the whole stream was cut
     * after it) */
    CHECK(whole("\ndata: a") == 1);
    CHECK(whole("\r\ndata: a") == 2);
    CHECK(whole("\rdata: b\r\r") == 1);
    CHECK(whole("\r") == 0);                                  /* an LF may follow */
    CHECK(whole("data: a\n\n\nx") == 10 && whole("\nx") == 1);   /* whole, and from the cut on */
    /* FROM: nothing ends before it */
    CHECK(sse_whole("a\n\nb", 4, 3) == 0);
    CHECK(sse_whole("a\n\nb\n\n", 6, 3) == 6);


    CHECK(sse_first("data: a\n\ndata: b\n\n", 18) == 9);
    CHECK(sse_first("data: a\r\n\r\ndata: b", 19) == 11);
    CHECK(sse_first("data: a\r\r", 9) == 0);      /* an LF may follow the last CR */
    CHECK(sse_first("data: a\r\rx", 10) == 9);
    CHECK(sse_first("data: a\n", 8) == 0);
    CHECK(sse_first("\ndata: a\n\n", 11) == 1);   /* an empty line alone: an event of no fields */
#define FIRST(lit) sse_first(lit, sizeof(lit) - 1)
    CHECK(FIRST("data: a\ndata: b\n\nrest") == 17);          /* LFs alone: the quick way */
    CHECK(FIRST("data: a\n\r\ndata: b\n\n") == 10);        /* a CR first: the long way */
    CHECK(FIRST("data: a\rb\n\n") == 11);                    /* a lone CR ends a line: "b" is the next */
    CHECK(FIRST("data: a\r\rdata: b\n\n") == 9);
    {
        char data[64];
        sse_fields_t f;
        static const char ev[] = "event: content_block_delta\r\ndata: {\"a\":\r\ndata:1}\r\n: ping\r\nid: 7\r\n\r\n";
        CHECK(sse_event(ev, sizeof(ev) - 1, &f, data, sizeof(data)) == 8);
        CHECK(f.data == data && memcmp(data, "{\"a\":\n1}", 8) == 0);   /* two lines: joined in DATA */
        CHECK(f.event_len == 19 && memcmp(f.event, "content_block_delta", 19) == 0);
        CHECK(sse_event("data: [DONE]\n\n", 14, &f, data, sizeof(data)) == 6 && f.event == NULL);
        CHECK(memcmp(f.data, "[DONE]", 6) == 0 && f.data != data);          /* one line: read in place */
        CHECK(sse_event("event:x\rdata:a\rdata: b\rdata\r\r", 29, &f, data, sizeof(data)) == 4);
        CHECK(memcmp(f.data, "a\nb\n", 4) == 0 && f.event_len == 1 && *f.event == 'x');
        CHECK(sse_event(": ping\n\n", 8, &f, data, sizeof(data)) == -2);
        CHECK(sse_event("data: 0123456789\n\n", 18, &f, data, 8) == 10);       /* one line needs no room */
        CHECK(sse_event("data: 0123\ndata: 456789\n\n", 25, &f, data, 8) == -1);
        CHECK(sse_event("data\n\n", 6, &f, data, sizeof(data)) == 0 && f.data != NULL);
        CHECK(sse_event("data: a", 7, &f, data, sizeof(data)) == 1 && f.data[0] == 'a');  /* no terminator */
    }
    DONE();
}
