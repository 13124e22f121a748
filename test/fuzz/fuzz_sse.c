/* fuzz_sse.c - libFuzzer driver for the event boundaries and fields of a server-sent event stream (src/sse.c).
 *
 * Input: byte 0 holds the number of split lengths (bits 0-2) and the room
 * sse_event gets for joined data lines (bits 3-7); then as many bytes of
 * piece lengths (each value + 1, used over and over); the rest is the
 * stream. Besides the sanitizers' findings it checks what sse.h promises
 * and what the relay (src/plane/relay.c relay_events) relies on:
 * - sse_whole's cut is a prefix of whole events: sse_first splits it into
 *   events whose lengths add up to it exactly (the last one may end in a
 *   lone CR, which sse_first leaves undecided on its own, as relay() knows),
 *   and no event ends in what is left after it;
 * - each event's fields, read by sse_event, are what the SSE standard's
 *   line rules give (a small reference reader below);
 * - the stream given in pieces, held back and searched the way
 *   relay_events does (from = held - 3), is cut at the same event ends as
 *   the stream given whole.
 * Every buffer handed over is a heap copy of exactly its length, so a read
 * past its end is an AddressSanitizer report. */
#include "sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ENDS 8192

typedef struct ends {
    size_t at[MAX_ENDS];           /* event ends, as offsets in the stream */
    size_t n;
} ends_t;

static char *copy(const char *b, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (c == NULL)
        abort();
    memcpy(c, b, n);
    return c;
}

/* The SSE standard's reading of one event EV[0, LEN): lines end at CR LF,
 * LF or CR; the first empty line ends the event; "name: value" with one
 * leading space dropped; data lines joined by LF. Returns the number of
 * data lines; the joined data and its length, and the last event value. */
static size_t ref_event(const char *ev, size_t len, char *out, size_t *olen, const char **event, size_t *elen)
{
    size_t pos = 0, lines = 0;
    *olen = 0;
    *event = NULL;
    *elen = 0;
    while (pos < len) {
        size_t end = pos, next, name, v;
        while (end < len && ev[end] != '\r' && ev[end] != '\n')
            end++;
        next = end < len && ev[end] == '\r' && end + 1 < len && ev[end + 1] == '\n' ? end + 2 : end + 1;
        if (end == pos)
            break;
        for (name = 0; pos + name < end && ev[pos + name] != ':'; name++)
            ;
        v = pos + name < end ? pos + name + 1 : end;
        if (v < end && ev[v] == ' ')
            v++;
        if (name == 5 && memcmp(ev + pos, "event", 5) == 0) {
            *event = ev + v;
            *elen = end - v;
        } else if (name == 4 && memcmp(ev + pos, "data", 4) == 0) {
            if (lines++ > 0)
                out[(*olen)++] = '\n';
            memcpy(out + *olen, ev + v, end - v);
            *olen += end - v;
        }
        pos = next;
    }
    return lines;
}

/* Aborts unless sse_event reads EV[0, LEN) as ref_event does, with CAP bytes of room. */
static void check_fields(const char *ev, size_t len, size_t cap)
{
    char *room = malloc(cap ? cap : 1), *ref = malloc(len + 1);
    const char *rev;
    size_t rlen, relen, lines;
    sse_fields_t f;
    long n;
    if (room == NULL || ref == NULL)
        abort();
    n = sse_event(ev, len, &f, room, cap);
    lines = ref_event(ev, len, ref, &rlen, &rev, &relen);
    if (n != -1 && ((rev == NULL) != (f.event == NULL) ||
                    (rev != NULL && (f.event_len != relen || memcmp(f.event, rev, relen) != 0))))
        abort();                          /* the wrong event type (-1 stops reading early) */
    if (lines == 0) {
        if (n != -2)
            abort();
    } else if (lines > 1 && rlen > cap) {
        if (n != -1)
            abort();
    } else {
        if (n < 0 || (size_t)n != rlen || f.data == NULL || (rlen > 0 && memcmp(f.data, ref, rlen) != 0))
            abort();                      /* the wrong data */
        if (!((f.data >= ev && f.data + rlen <= ev + len) || (f.data >= room && f.data + rlen <= room + cap)))
            abort();                      /* data neither in the event nor in the room given */
    }
    free(room);
    free(ref);
}

/* The events of a relayed cut BUF[0, CUT) (BASE: its offset in the
 * stream), split as relay() does; their ends go to E. ALL[0, ALEN) is what
 * has come so far (BUF's bytes are at ALL + BASE), for the byte after a
 * lone CR. */
static void take_cut(const char *buf, size_t cut, size_t base, const char *all, size_t alen, ends_t *e, size_t cap)
{
    size_t ev = 0;
    while (ev < cut) {
        size_t k = sse_first(buf + ev, cut - ev);
        if (k == 0) {
            /* only a cut that ends in a lone CR leaves its last event undecided */
            if (buf[cut - 1] != '\r' || base + cut >= alen || all[base + cut] == '\n')
                abort();
            k = cut - ev;
        }
        if (k > cut - ev || sse_first(all + base + ev, alen - base - ev) != k)
            abort();                      /* given the bytes after it, the same event */
        check_fields(buf + ev, k, cap);
        if (e->n < MAX_ENDS)
            e->at[e->n++] = base + ev + k;
        ev += k;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ends_t whole, split;
    const uint8_t *lens;
    size_t nlens, cap, len, w, pos, held = 0, li = 0;
    const char *s;
    char *all, *heldbuf = NULL;

    if (size < 1)
        return 0;
    nlens = data[0] & 7;
    cap = (size_t)(data[0] >> 3) * 3;
    if (size < 1 + nlens)
        return 0;
    lens = data + 1;
    s = (const char *)data + 1 + nlens;
    len = size - 1 - nlens;
    all = copy(s, len);

    /* the stream whole */
    whole.n = 0;
    w = sse_whole(all, len, 0);
    if (w > len)
        abort();
    take_cut(all, w, 0, all, len, &whole, cap);
    if (w < len && (sse_first(all + w, len - w) != 0 || sse_whole(all + w, len - w, 0) != 0))
        abort();                          /* an event ends after the cut */
    if (whole.n > 0 && whole.at[whole.n - 1] != w)
        abort();

    /* in pieces, as relay_events holds and searches them */
    split.n = 0;
    for (pos = 0; nlens > 0 && pos < len;) {
        size_t n = (size_t)lens[li++ % nlens] + 1, cut, base = pos - held;
        char *piece, *buf;
        if (n > len - pos)
            n = len - pos;
        piece = copy(s + pos, n);
        if (held == 0) {
            buf = piece;
            cut = sse_whole(buf, n, 0);
        } else {
            buf = malloc(held + n);
            if (buf == NULL)
                abort();
            memcpy(buf, heldbuf, held);
            memcpy(buf + held, piece, n);
            cut = sse_whole(buf, held + n, held > 3 ? held - 3 : 0);
        }
        if (cut > held + n)
            abort();
        take_cut(buf, cut, base, all, len, &split, cap);
        free(heldbuf);
        heldbuf = copy(buf + cut, held + n - cut);
        held = held + n - cut;
        if (buf != piece)
            free(buf);
        free(piece);
        pos += n;
    }
    if (nlens > 0 && (split.n != whole.n || memcmp(split.at, whole.at, whole.n * sizeof(whole.at[0])) != 0))
        abort();                          /* cut at other event ends than the stream given whole */
    free(heldbuf);
    free(all);
    return 0;
}
