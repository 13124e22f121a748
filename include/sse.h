/* sse.h - where the events of a server-sent event stream end, for relaying them whole.
 *
 * An event ends with an empty line; a line ends with CR LF, LF or CR. A
 * relay that passes on only whole events can always end a stream cleanly
 * (with an error event of its own) without a half-sent event in front of
 * it, which an SSE parser would join to what follows. */
#ifndef TURNOUT_SSE_H
#define TURNOUT_SSE_H

#include <stddef.h>

/* The length of the longest prefix of BUF[0, LEN) that holds only whole
 * events: the end of its last empty line, or 0. No event ends before FROM
 * (bytes the caller searched already): the search stops there. A CR at
 * the very end does not end a line yet (an LF may follow). */
size_t sse_whole(const char *buf, size_t len, size_t from);

/* The length of the first whole event of BUF[0, LEN) (up to and including
 * its empty line), or 0 when none has ended yet. */
size_t sse_first(const char *buf, size_t len);

/* The fields of one whole event EV[0, LEN) (as sse_whole cuts them), read
 * as the SSE standard says: "event" is the last event field's value
 * (pointing into EV; NULL when there is none), "data" the values of its data
 * lines joined by LF: one line is read where it lies in EV, more are joined
 * in DATA (capacity CAP). Neither is NUL-terminated. Comments (": ping") and
 * other fields are skipped; one leading space of a value is not part of it.
 * Returns the data's length, or -1 when joined lines do not fit in CAP
 * (-2: the event has no data line). */
typedef struct sse_fields {
    const char *event;
    size_t event_len;
    const char *data;
} sse_fields_t;
long sse_event(const char *ev, size_t len, sse_fields_t *f, char *data, size_t cap);

#endif
