/* test_jscan.c - the validating scanner: valid and invalid bodies, model and stream extraction. */
#include "../../src/jscan.c"
#include "unit.h"

static jscan_status_t scan(const char *s, jscan_t *j)
{
    return jscan_body(s, strlen(s), j);
}

int main(void)
{
    jscan_t j;
    char buf[64];
    const char *body = "{ \"messages\" : [{\"model\":\"inner\"}],\n \"model\":  \"fast\" , \"stream\":true}";

    CHECK(scan(body, &j) == JSCAN_OK);
    CHECK(j.has_model && j.model_is_string && j.stream);
    CHECK(strncmp(body + j.model_off, "\"fast\"", j.model_len) == 0 && j.model_len == 6);
    CHECK(jscan_string(body, j.model_off, j.model_len, buf, sizeof(buf)) == 4);
    CHECK_STR(buf, "fast");

    CHECK(scan("{\"model\":5}", &j) == JSCAN_OK && j.has_model && !j.model_is_string);
    CHECK(scan("{\"stream\":false,\"x\":null}", &j) == JSCAN_OK && !j.has_model && !j.stream);
    /* stream_options and the output limit, top level only; max_completion_tokens wins */
    body = "{\"x\":{\"stream_options\":1,\"max_tokens\":2},\"stream_options\": {\"a\":true} ,\"max_tokens\":64}";
    CHECK(scan(body, &j) == JSCAN_OK && j.opts_len == 10 && strncmp(body + j.opts_off, "{\"a\":true}", 10) == 0);
    CHECK(j.max_len == 2 && strncmp(body + j.max_off, "64", 2) == 0 && !j.max_completion);
    body = "{\"max_completion_tokens\":100,\"max_tokens\":7}";
    CHECK(scan(body, &j) == JSCAN_OK && j.max_completion && strncmp(body + j.max_off, "100", j.max_len) == 0);
    CHECK(scan("{\"model\":\"m\"}", &j) == JSCAN_OK && j.opts_len == 0 && j.max_len == 0);
    CHECK(scan("[1,2]", &j) == JSCAN_NOT_OBJECT);
    CHECK(scan("\"str\"", &j) == JSCAN_NOT_OBJECT);

    /* malformed */
    static const char *const bad[] = {
        "", "{", "{\"a\":}", "{\"a\":1,}", "{\"a\" 1}", "{'a':1}", "{\"a\":01}", "{\"a\":1.}",
        "{\"a\":tru}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12G4\"}", "{} {}",
        "{\"a\":[1,2}", "{\"a\":\"\xC0\xAF\"}", "{\"a\":\"\xED\xA0\x80\"}", "{\"a\":-}", "{\"a\":1e}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int ok = scan(bad[i], &j) == JSCAN_INVALID;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
    }
    /* valid edge cases */
    CHECK(scan(" {\"a\":[-0.5e+3,true,false,null,{},[]],\"b\":\"\\u00e9\xC3\xA9\\n\"} ", &j) == JSCAN_OK);

    /* nesting is bounded */
    char deep[300];
    memset(deep, '[', 200);
    deep[0] = '{'; deep[1] = '"'; deep[2] = 'a'; deep[3] = '"'; deep[4] = ':';
    memset(deep + 200, ']', 95);
    deep[295] = '\0';
    CHECK(scan(deep, &j) == JSCAN_INVALID);

    /* escapes decode; a surrogate pair becomes one code point */
    const char *esc = "{\"model\":\"a\\\"b\\u00e9\\ud83d\\ude00\"}";
    CHECK(scan(esc, &j) == JSCAN_OK);
    CHECK(jscan_string(esc, j.model_off, j.model_len, buf, sizeof(buf)) == 3 + 2 + 4);
    CHECK_STR(buf, "a\"b\xC3\xA9\xF0\x9F\x98\x80");
    const char *nul = "{\"model\":\"a\\u0000\"}";
    CHECK(scan(nul, &j) == JSCAN_OK && jscan_string(nul, j.model_off, j.model_len, buf, sizeof(buf)) < 0);
    CHECK(jscan_string(esc, j.model_off, j.model_len, buf, 4) < 0);

    /* [tls-fuzz] a key spelled with escapes is the key an upstream reads: the
     * model is the last "model" however written, so a second one cannot ride
     * past the one turnout writes (fuzz corpus jscan/chat-escaped-model-key) */
    const char *smuggle = "{\"model\":\"allowed\",\"messages\":[],\"mod\\u0065l\":\"smuggled\"}";
    CHECK(scan(smuggle, &j) == JSCAN_OK && j.has_model && j.model_is_string);
    CHECK(jscan_string(smuggle, j.model_off, j.model_len, buf, sizeof(buf)) == 8 && strcmp(buf, "smuggled") == 0);
    const char *esc_keys = "{\"m\\u006fdel\":\"m\",\"str\\u0065am\":true,\"max_tok\\u0065ns\":5,\"\\u0075ser\":\"u\"}";
    CHECK(scan(esc_keys, &j) == JSCAN_OK && j.has_model && j.stream && j.max_len == 1 && j.user_len == 3);
    /* [tls-fuzz] a backslash before a NUL byte is no escape (strchr found the
     * NUL of its list of escapes): invalid, however it is reached
     * (fuzz corpus jscan/backslash-nul) */
    {
        static const char bn[] = "{\"model\":\"a\\\0b\"}", bk[] = "{\"a\\\0\":1}";
        CHECK(jscan_body(bn, sizeof(bn) - 1, &j) == JSCAN_INVALID && j.error_off == 12);
        CHECK(jscan_body(bk, sizeof(bk) - 1, &j) == JSCAN_INVALID);
        CHECK(jscan_string_len(bn + 9, sizeof(bn) - 10, NULL) == -1);
        CHECK(jscan_string_len("\"\\/\"", 4, NULL) == 4);
    }
    /* a key that only starts like one, or holds a NUL, is none of ours */
    CHECK(scan("{\"model\\u0000\":\"x\",\"\\u006dodel_x\":1}", &j) == JSCAN_OK && !j.has_model);

    /* the top-level keys, in order, nested ones passed over */
    {
        const char *kb = " { \"model\":\"m\", \"messages\":[{\"tools\":1}] ,\"t\\u0065mp\": {\"x\":[]},\"seed\":1 } ";
        const char *want[] = { "model", "messages", "temp", "seed" };
        size_t pos = 0, off, klen;
        int n = 0;
        CHECK(scan(kb, &j) == JSCAN_OK);
        while (jscan_next_key(kb, strlen(kb), &pos, &off, &klen) == 1) {
            CHECK(n < 4 && jscan_string(kb, off, klen, buf, sizeof(buf)) > 0);
            if (n < 4)
                CHECK_STR(buf, want[n]);
            n++;
        }
        CHECK(n == 4);
        CHECK(jscan_next_key(kb, strlen(kb), &pos, &off, &klen) == 0);    /* stays at the end */
        pos = 0;
        CHECK(jscan_next_key("{}", 2, &pos, &off, &klen) == 0);
        pos = 0;
        CHECK(jscan_next_key(" { } ", 5, &pos, &off, &klen) == 0);
        pos = 0;
        CHECK(jscan_next_key("[1]", 3, &pos, &off, &klen) == -1);
        pos = 0;
        CHECK(jscan_next_key("{\"a\":1 \"b\":2}", 14, &pos, &off, &klen) == 1);
        CHECK(jscan_next_key("{\"a\":1 \"b\":2}", 14, &pos, &off, &klen) == -1);
        pos = 0;
        CHECK(jscan_next_key("", 0, &pos, &off, &klen) == -1);
    }

    /* quoting round-trips */
    CHECK(jscan_quote("a\"b\\c\n", buf, sizeof(buf)) == 15);
    CHECK_STR(buf, "\"a\\\"b\\\\c\\u000a\"");
    CHECK(jscan_quote("abc", buf, 4) < 0);

    /* quoting gives valid UTF-8 whatever the input: well-formed sequences
     * are kept, each byte of an ill-formed one becomes \ufffd */
    CHECK(jscan_quote("caf\xC3\xA9 \xF0\x9F\x9A\x80", buf, sizeof(buf)) == 12);
    CHECK_STR(buf, "\"caf\xC3\xA9 \xF0\x9F\x9A\x80\"");
    CHECK(jscan_quote("/v1/\xFF\xFE", buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "\"/v1/\\ufffd\\ufffd\"");
    CHECK(jscan_quote("\xC0\xAF|\xED\xA0\x80|\xE2\x82", buf, sizeof(buf)) > 0);   /* overlong, surrogate, cut */
    CHECK_STR(buf, "\"\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"");
    CHECK(jscan_quote("\xF4\x90\x80\x80", buf, sizeof(buf)) > 0);                      /* past U+10FFFF */
    CHECK_STR(buf, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    CHECK(jscan_quote("\x80", buf, 8) < 0);             /* \ufffd does not fit */
    char clean[8];
    CHECK(jscan_utf8_clean("a\xFFz", clean, sizeof(clean)) == 5);
    CHECK_STR(clean, "a\xEF\xBF\xBDz");
    CHECK(jscan_utf8_clean("\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC", clean, sizeof(clean)) == 6);
    CHECK_STR(clean, "\xE2\x82\xAC\xE2\x82\xAC");      /* cut at a whole character */
    {   /* one string literal, as the stream translation's fast path checks a text */
        int escd = -1;
        CHECK(jscan_string_len("\"abc\"}}", 7, &escd) == 5 && escd == 0);
        CHECK(jscan_string_len("\"a\\\"b\"", 6, &escd) == 6 && escd == 1);
        CHECK(jscan_string_len("\"\xC3\xA9\"", 4, NULL) == 4);
        CHECK(jscan_string_len("\"abc", 4, &escd) == -1);          /* unterminated */
        CHECK(jscan_string_len("\"a\x01\"", 4, &escd) == -1);     /* a control byte */
        CHECK(jscan_string_len("\"\xff\"", 3, &escd) == -1);       /* not UTF-8 */
        CHECK(jscan_string_len("\"\\q\"", 5, &escd) == -1);       /* no such escape */
        CHECK(jscan_string_len("abc", 3, &escd) == -1);
        CHECK(jscan_string_len("", 0, &escd) == -1);
    }
    {   /* stepping through an object's members and an array's elements in place */
        static const char b[] = " {\"a\" : \"x\\\"]}\\\\\" , \"b\":[1, {\"c\":\"]\"} ,[ ]], \"d\":-1.5e3,\"e\":true } ";
        size_t pos = 1, n = sizeof(b) - 1, arr;
        jscan_item_t it;
        jscan_t js;
        CHECK(jscan_body(b, n, &js) == JSCAN_OK);
        CHECK(jscan_next_item(b, n, 1, &pos, &it) == 1 && it.key_len == 3 && memcmp(b + it.key_off, "\"a\"", 3) == 0);
        CHECK(it.val_len == 9 && memcmp(b + it.val_off, "\"x\\\"]}\\\\\"", 9) == 0);   /* "x\"]}\\" */
        CHECK(jscan_next_item(b, n, 1, &pos, &it) == 1 && b[it.val_off] == '[');
        arr = it.val_off;
        CHECK(jscan_next_item(b, n, 1, &pos, &it) == 1 && it.val_len == 6 && memcmp(b + it.val_off, "-1.5e3", 6) == 0);
        CHECK(jscan_next_item(b, n, 1, &pos, &it) == 1 && it.val_len == 4);
        CHECK(jscan_next_item(b, n, 1, &pos, &it) == 0 && b[pos - 1] == '}');
        pos = arr;
        CHECK(jscan_next_item(b, n, arr, &pos, &it) == 1 && it.key_len == 0 && it.val_len == 1 && b[it.val_off] == '1');
        CHECK(jscan_next_item(b, n, arr, &pos, &it) == 1 && it.val_len == 9);       /* {"c":"]"} */
        CHECK(jscan_next_item(b, n, arr, &pos, &it) == 1 && it.val_len == 3);       /* [ ] */
        CHECK(jscan_next_item(b, n, arr, &pos, &it) == 0);
        pos = 0;
        CHECK(jscan_next_item("{}", 2, 0, &pos, &it) == 0 && pos == 2);
        pos = 0;
        CHECK(jscan_next_item("5", 1, 0, &pos, &it) == -1);
        /* bytes jscan_body refuses: no promise but staying inside them */
        static const char *const refused[] = { "{\"a\":\"x", "{\"a\":[1,{", "{\"a\"", "{\"a\":}", "[\"\\", "{\"a\":1 2}" };
        for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
            size_t bl = strlen(refused[k]), p2 = 0;
            int steps = 0, r;
            while ((r = jscan_next_item(refused[k], bl, 0, &p2, &it)) == 1 && steps++ < 10)
                CHECK(it.val_off + it.val_len <= bl && p2 <= bl);
            CHECK(p2 <= bl);
        }
    }
    {   /* one odd byte at every offset of a long string: the 64-, 16- and 8-byte skips stop at it */
        char str[160];
        for (int k = 0; k < 140; k++) {
            memset(str, 'a', sizeof(str));
            str[0] = '"';
            str[150] = '"';
            str[1 + k] = '\x01';
            CHECK(jscan_string_len(str, 151, NULL) == -1);                 /* a control byte */
            str[1 + k] = '"';
            CHECK(jscan_string_len(str, 151, NULL) == 2 + k);              /* a quote ends it there */
            str[1 + k] = '\x80';
            CHECK(jscan_string_len(str, 151, NULL) == -1);                 /* not UTF-8 */
            str[1 + k] = '\xc3', str[2 + k] = '\xa9';
            CHECK(jscan_string_len(str, 151, NULL) == 151);                 /* é */
            str[1 + k] = '\\', str[2 + k] = 'n';
            int e2 = 0;
            CHECK(jscan_string_len(str, 151, &e2) == 151 && e2 == 1);     /* an escape */
            str[1 + k] = 0x7f;
            CHECK(jscan_string_len(str, 151, NULL) == 151);                 /* DEL is text */
        }
    }
    DONE();
}
