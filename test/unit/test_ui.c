/* test_ui.c - the dashboard's Accept-Encoding and If-None-Match reading, and its embedded table. */
#include "../../src/ui.c"
#include "unit.h"

int main(void)
{
    CHECK(accepts_gzip("gzip"));
    CHECK(accepts_gzip("gzip, deflate, br"));
    CHECK(accepts_gzip("br;q=1.0, GZIP;q=0.5"));
    CHECK(accepts_gzip("*"));
    CHECK(accepts_gzip("gzip ; q=1"));
    CHECK(accepts_gzip("gzip;q=0.001"));
    CHECK(!accepts_gzip(NULL));
    CHECK(!accepts_gzip(""));
    CHECK(!accepts_gzip("identity"));
    CHECK(!accepts_gzip("gzip;q=0"));
    CHECK(!accepts_gzip("gzip;q=0.000, identity"));
    CHECK(!accepts_gzip("x-gzip2, gzipped"));          /* whole tokens only */
    CHECK(!accepts_gzip("deflate,br"));

    CHECK(etag_matches("\"abc\"", "\"abc\""));
    CHECK(etag_matches("W/\"abc\"", "\"abc\""));
    CHECK(etag_matches("\"x\", \"abc\"", "\"abc\""));
    CHECK(etag_matches("*", "\"abc\""));
    CHECK(!etag_matches(NULL, "\"abc\""));
    CHECK(!etag_matches("\"abcd\"", "\"abc\""));
    CHECK(!etag_matches("\"ab\"", "\"abc\""));
    CHECK(!etag_matches("", "\"abc\""));

    /* the table the build embedded: index.html is there, every entry typed and tagged */
    CHECK(ui_find("index.html") != NULL && ui_find("nope") == NULL && ui_find("") == NULL);
    for (size_t i = 0; i < ui_asset_count; i++) {
        const ui_asset_t *a = &ui_assets[i];
        CHECK(a->type != NULL && a->len > 0 && strlen(a->etag) == 18 && a->etag[0] == '"');
        CHECK(strlen(a->etag_gz) == 21 && strncmp(a->etag, a->etag_gz, 17) == 0);
        CHECK(a->gz_len == 0 || (a->gz_len < a->len && a->gz[0] == 0x1f && a->gz[1] == 0x8b));
    }
    DONE();
}
