/* log.c - the error log.
 *
 * One write(2) per line, so lines from different threads never interleave.
 * The log's descriptor number never changes after the first log_open: a
 * reload opens the new target and dup2()s it over that number, which
 * replaces the open file atomically for every thread. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const names[] = { "debug", "info", "warn", "error" };
static const char *const journal_prio[] = { "<7>", "<6>", "<4>", "<3>" };   /* sd-daemon.h's SD_DEBUG.. */

static _Atomic int min_level = LOG_INFO;
static _Atomic int log_fd = -1;        /* -1: stderr, before log_open */
static _Atomic int to_file;            /* timestamps on each line */
static int journal;                    /* stderr is journald's stream */

int log_level_of(const char *name)
{
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void log_set_level(int level)
{
    atomic_store(&min_level, level);
}

int log_open(const char *target, char *err, size_t errlen)
{
    int is_file = strcmp(target, "stderr") != 0;
    int fd = is_file ? open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640)
                     : fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    int cur = atomic_load(&log_fd);
    if (fd < 0) {
        snprintf(err, errlen, "log.error: cannot open %s: %s", target, strerror(errno));
        return -1;
    }
    if (cur < 0) {
        journal = getenv("JOURNAL_STREAM") != NULL;   /* once, before any other thread logs */
        atomic_store(&to_file, is_file);
        atomic_store(&log_fd, fd);
        return 0;
    }
    if (dup2(fd, cur) < 0) {
        snprintf(err, errlen, "log.error: cannot switch to %s: %s", target, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    atomic_store(&to_file, is_file);
    return 0;
}

void tlog(int level, const char *fmt, ...)
{
    char line[4096];
    size_t n = 0;
    int fd = atomic_load(&log_fd), w;
    va_list ap;
    if (level < atomic_load(&min_level))
        return;
    if (fd < 0)
        fd = STDERR_FILENO;
    if (atomic_load(&to_file)) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    } else if (journal) {
        n = (size_t)snprintf(line, sizeof(line), "%s", journal_prio[level]);
    }
    w = snprintf(line + n, sizeof(line) - n, "turnout: [%s] ", names[level]);
    n += (size_t)w;
    va_start(ap, fmt);
    w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    n = w < 0 ? n : n + (size_t)w >= sizeof(line) - 1 ? sizeof(line) - 2 : n + (size_t)w;
    line[n++] = '\n';
    if (write(fd, line, n) < 0) {
        /* nowhere left to say so */
    }
}

void log_close(void)
{
    int fd = atomic_exchange(&log_fd, -1);
    if (fd >= 0)
        close(fd);
}
