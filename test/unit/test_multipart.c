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
