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
        /* an empty line: a terminator right after another one */
        if (eol_at(buf, len, i - 1, &s) && s > 0 && eol_at(buf, len, s - 1, &s2))
            return i;
    }
    return 0;
}

size_t sse_first(const char *buf, size_t len)
{
    int empty = 1;                        /* the line being read has no bytes yet */
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
    int have_data = 0;
    f->event = NULL;
    f->event_len = 0;
    while (pos < len) {
        size_t end = pos, name_end, v;
        while (end < len && ev[end] != '\n' && ev[end] != '\r')
            end++;
        if (end == pos)
            break;                        /* the empty line: the event's end */
        for (name_end = pos; name_end < end && ev[name_end] != ':'; name_end++)
            ;
        v = name_end < end ? name_end + 1 : end;
        if (v < end && ev[v] == ' ')
            v++;
        if (name_end - pos == 5 && memcmp(ev + pos, "event", 5) == 0) {
            f->event = ev + v;
            f->event_len = end - v;
        } else if (name_end - pos == 4 && memcmp(ev + pos, "data", 4) == 0) {
            if (dlen + (have_data ? 1 : 0) + (end - v) + 1 > cap)
                return -1;
            if (have_data)
                data[dlen++] = '\n';
            memcpy(data + dlen, ev + v, end - v);
            dlen += end - v;
            have_data = 1;
        }                                 /* a comment (name_end == pos) or another field: skipped */
        pos = end < len && ev[end] == '\r' && end + 1 < len && ev[end + 1] == '\n' ? end + 2 : end + 1;
    }
    if (!have_data)
        return -2;
    data[dlen] = '\0';
    return (long)dlen;
}
