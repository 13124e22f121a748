/* test_multipart.c - boundary parsing and field lookup in multipart/form-data bodies. */
#include "../../src/multipart.c"
#include "unit.h"

int main(void)
{
    char b[80];
    size_t off = 0, len = 0;
    static const char body[] =
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model\"\r\n"
        "Content-Type: audio/wav\r\n\r\nRIFF\0\1\2model\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"models\"\r\n\r\nno\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        "--XyZ--\r\n";
    size_t blen = sizeof(body) - 1;

    CHECK(multipart_boundary("multipart/form-data; boundary=XyZ", b, sizeof(b)) == 3);
    CHECK_STR(b, "XyZ");
    CHECK(multipart_boundary("multipart/form-data; boundary=\"a b\"; x=y", b, sizeof(b)) == 3);
    CHECK_STR(b, "a b");
    CHECK(multipart_boundary("multipart/form-data", b, sizeof(b)) < 0);

    CHECK(multipart_field(body, blen, "XyZ", "model", &off, &len) == 0);
    CHECK(len == 9 && memcmp(body + off, "whisper-1", 9) == 0);
    CHECK(multipart_field(body, blen, "XyZ", "absent", &off, &len) < 0);
    CHECK(multipart_field(body, 40, "XyZ", "model", &off, &len) < 0);   /* truncated */

    /* [tls-fuzz] a form that gives the model twice is refused: turnout
     * routed on and rewrote the first, and an upstream that reads the last
     * (Starlette's forms do) served the other (fuzz corpus multipart/dup-model) */
    {
        static const char twice[] =
            "--b1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nallowed\r\n"
            "--b1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\nID3\r\n"
            "--b1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nother\r\n--b1--\r\n";
        CHECK(multipart_field(twice, sizeof(twice) - 1, "b1", "model", &off, &len) < 0);
        CHECK(multipart_field(twice, sizeof(twice) - 1, "b1", "file", &off, &len) == 0 && len == 3);
        /* a tail cut short after the model still has the model, as before */
        CHECK(multipart_field(twice, 120, "b1", "model", &off, &len) == 0 && len == 7 &&
              memcmp(twice + off, "allowed", 7) == 0);
    }

    /* the form's field names, in order */
    {
        static const char *const names[] = { "file", "models", "model" };
        char name[16];
        size_t pos = 0;
        int k = 0;
        while (multipart_next_name(body, blen, "XyZ", &pos, name, sizeof(name)) == 1) {
            CHECK(k < 3);
            if (k < 3)
                CHECK_STR(name, names[k]);
            k++;
        }
        CHECK(k == 3 && multipart_next_name(body, blen, "XyZ", &pos, name, sizeof(name)) == 0);
        pos = 0;
        CHECK(multipart_next_name(body, blen, "XyZ", &pos, name, 4) == 1);
        CHECK_STR(name, "fil");                                            /* cut to fit */
        pos = 0;
        CHECK(multipart_next_name(body, 40, "XyZ", &pos, name, sizeof(name)) == -1);   /* truncated */
        pos = 0;
        CHECK(multipart_next_name(body, blen, "other", &pos, name, sizeof(name)) == -1);
    }
    DONE();
}
