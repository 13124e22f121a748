/* test_text.c - joining strings and numbers: cuts, all-or-nothing appends, extremes. */
#include "../../src/text.c"
#include "unit.h"

#include <limits.h>
#include <stdio.h>

int main(void)
{
    char b[8], n[24], h[17];
    size_t len;
    CHECK(text_cat(b, sizeof(b), "ab", "/", "cd", NULL) == 5);
    CHECK_STR(b, "ab/cd");
    CHECK(text_cat(b, sizeof(b), "abcd", "efgh", NULL) == 7);     /* cut to fit, as snprintf cuts */
    CHECK_STR(b, "abcdefg");
    CHECK(text_cat(b, sizeof(b), NULL) == 0 && b[0] == '\0');
    CHECK(text_cat(b, 1, "abc", NULL) == 0 && b[0] == '\0');
    len = 0;
    CHECK(text_append(b, sizeof(b), &len, "k", ": ", "v", NULL) == 0 && len == 4);
    CHECK_STR(b, "k: v");
    CHECK(text_append(b, sizeof(b), &len, "\r\n", "xy", NULL) == -1 && len == 4);   /* all or nothing */
    CHECK_STR(b, "k: v");
    CHECK(text_append(b, sizeof(b), &len, "xyz", NULL) == 0 && len == 7);            /* exactly full */
    CHECK(text_append(b, sizeof(b), &len, "", NULL) == 0 && text_append(b, sizeof(b), &len, "a", NULL) == -1 && len == 7);
    CHECK_STR(text_int(n, 0), "0");
    CHECK_STR(text_int(n, 429), "429");
    CHECK_STR(text_int(n, -7), "-7");
    {
        char want[24];
        snprintf(want, sizeof(want), "%lld", LLONG_MIN);
        CHECK_STR(text_int(n, LLONG_MIN), want);
        snprintf(want, sizeof(want), "%lld", LLONG_MAX);
        CHECK_STR(text_int(n, LLONG_MAX), want);
    }
    CHECK_STR(text_hex64(h, 0), "0000000000000000");
    CHECK_STR(text_hex64(h, 0xdeadbeef0123abcdULL), "deadbeef0123abcd");
    DONE();
}
