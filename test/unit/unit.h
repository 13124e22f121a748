/* unit.h - a minimal unit-test harness: CHECK records failures, DONE prints the tally. */
#ifndef TURNOUT_UNIT_H
#define TURNOUT_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failed, unit_checks;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        unit_checks++;                                                                 \
        if (!(cond)) {                                                                 \
            unit_failed++;                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)

#define DONE()                                                                         \
    do {                                                                               \
        printf("%s: %d checks, %d failed\n", __FILE__, unit_checks, unit_failed);      \
        return unit_failed ? 1 : 0;                                                    \
    } while (0)

#endif
