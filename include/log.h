/* log.h - the error log: one line per event, with a level, to stderr or a file; safe from any thread. */
#ifndef TURNOUT_LOG_H
#define TURNOUT_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* The level named NAME ("debug", "info", "warn", "error"), or -1. */
int log_level_of(const char *name);

/* Lines below LEVEL are dropped (reload may change it at any time). */
void log_set_level(int level);

/* Sends the log to TARGET ("stderr" or a file path, appended to). The first
 * call opens it; later calls (reload) replace it in place, so a thread
 * writing meanwhile writes whole lines to the old or the new file, and a
 * rotated file is let go. Returns 0, or -1 with a message in ERR (the log
 * stays where it was). */
int log_open(const char *target, char *err, size_t errlen);

/* Writes "turnout: [LEVEL] message" (with a timestamp when the log is a
 * file; under journald, a priority prefix journald reads instead). */
void tlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Closes the file log_open opened. */
void log_close(void);

#endif
