/* sse.c - where the events of a server-sent event stream end (see sse.h).
 *
 * Both searches run backwards from the end: an upstream's read usually ends
 * exactly at an event's end, so the common case looks at two bytes. */
#include "sse.h"

#include <string.h>

/* Whether a line terminator ends at BUF[I] (inclusive), given the bytes
 * before it; its first byte's index goes to *START. */
static int eol_at(const char *buf, size_t len, size_t i, size_t *start)
{
    if (buf[i] == '\n') {
        *start = i > 0 && buf[i - 1] == '\r' ? i - 1 : i;
        return 1;
    }
    if (buf[i] == '\r' && i + 1 < len && buf[i + 1] != '\n') {
        *start = i;
        return 1;
    }
    return 0;
}

size_t sse_whole(const char *buf, size_t len, size_t from)
{
    for (size_t i = len; i > from; i--) {
        size_t s, s2;
        /* an empty line: a terminator right after another one, or at the
         * start (BUF starts where a line does: a stream's start, or a cut) */
        if (eol_at(buf, len, i - 1, &s) && (s == 0 || eol_at(buf, len, s - 1, &s2)))
            return i;
    }
    return 0;
}

size_t sse_first(const char *buf, size_t len)
{
    int empty = 1;                        /* the line being read has no bytes yet */
    const char *nl = buf;
    /* what every upstream sends: lines ending in LF alone, so the event ends
     * at the first LF LF if no CR comes before it (memchr line to line:
     * glibc's memmem is slower than that) */
    if (len > 0 && buf[0] == '\n')
        return 1;
    while ((nl = memchr(nl, '\n', len - (size_t)(nl - buf))) != NULL && (size_t)(nl - buf) + 1 < len && nl[1] != '\n')
        nl++;
    if (nl != NULL && (size_t)(nl - buf) + 1 < len && memchr(buf, '\r', (size_t)(nl - buf)) == NULL)
        return (size_t)(nl - buf) + 2;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\r' && buf[i] != '\n') {
            /* the rest of a line: to its LF at once (a CR before it is looked at then) */
            const char *lf = memchr(buf + i, '\n', len - i), *cr = memchr(buf + i, '\r', (lf ? (size_t)(lf - buf) : len) - i);
            empty = 0;
            i = (size_t)((cr != NULL ? cr : lf != NULL ? lf : buf + len) - buf) - 1;
            continue;
        }
        if (buf[i] == '\r') {
            if (i + 1 == len)
                return 0;                 /* an LF may follow */
            if (buf[i + 1] == '\n')
                i++;
        }
        if (empty)
            return i + 1;
        empty = 1;
    }
    return 0;
}

long sse_event(const char *ev, size_t len, sse_fields_t *f, char *data, size_t cap)
{
    size_t pos = 0, dlen = 0;
    int lines = 0, crs = memchr(ev, '\r', len) != NULL;   /* (without a CR, lines end at LFs alone) */
    f->event = NULL;
    f->event_len = 0;
    f->data = NULL;
    while (pos < len) {
        const char *lf = memchr(ev + pos, '\n', len - pos), *cr, *colon;
        size_t end = lf != NULL ? (size_t)(lf - ev) : len, next = end + 1, name, v;
        if (crs && (cr = memchr(ev + pos, '\r', end - pos)) != NULL) {   /* a CR ends the line, alone or before its LF */
            end = (size_t)(cr - ev);
            next = end + 1 < len && ev[end + 1] == '\n' ? end + 2 : end + 1;
        }
        if (end == pos)
            break;                        /* the empty line: the event's end */
        if (end - pos >= 5 && memcmp(ev + pos, "data:", 5) == 0)
            colon = ev + pos + 4;         /* the two fields every event has, without a search */
        else if (end - pos >= 6 && memcmp(ev + pos, "event:", 6) == 0)
            colon = ev + pos + 5;
        else
            colon = memchr(ev + pos, ':', end - pos);
        name = colon != NULL ? (size_t)(colon - ev) - pos : end - pos;
        v = colon != NULL ? (size_t)(colon - ev) + 1 : end;
        if (v < end && ev[v] == ' ')
            v++;
        if (name == 5 && memcmp(ev + pos, "event", 5) == 0) {
            f->event = ev + v;
            f->event_len = end - v;
        } else if (name == 4 && memcmp(ev + pos, "data", 4) == 0) {
            if (lines++ == 0) {           /* one line (the usual case) is read where it is */
                f->data = ev + v;
                dlen = end - v;
            } else {                      /* more are joined in DATA */
                if (dlen + 1 + (end - v) > cap)
                    return -1;
                if (f->data != data)
                    memmove(data, f->data, dlen);
                f->data = data;
                data[dlen++] = '\n';
                memcpy(data + dlen, ev + v, end - v);
                dlen += end - v;
            }
        }                                 /* a comment (name 0) or another field: skipped */
        pos = next;
    }
    return lines ? (long)dlen : -2;
}
