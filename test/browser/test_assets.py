"""The dashboard's files with plain HTTP requests: the redirect, content types,
the security headers (CSP, nosniff, X-Frame-Options), ETag and 304, gzip when
accepted, 404 and 405, and the total weight gzipped (at most 150 KB)."""
import gzip
import os
import re

import harness
from harness import http_request, seed_for

LIMIT = 150 * 1024
UI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "ui")


def embedded():
    """(name, plain length, gzip length or 0) of each file, from the generated source."""
    src = open(os.path.join(harness.BUILD, "gen", "ui_assets.c")).read()
    return [(n, int(p), int(g)) for n, p, g in
            re.findall(r'\{"([^"]+)", "[^"]+", plain\d+, (\d+), gz\d+, (\d+), ', src)]


def get(t, path, method="GET", **headers):
    return http_request(t.admin_port, method, path, headers=headers)


def test_headers_etag_gzip(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    for path in ("/", "/ui"):
        st, h, _ = get(t, path)
        assert st == 308 and h["location"] == "/ui/", (path, st, h)
    names = [n for n, _, _ in embedded()]
    assert {"index.html", "app.js", "style.css"} <= set(names), names
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in names:
        st, h, body = get(t, "/ui/" + name)
        assert st == 200, name
        assert h["content-type"].startswith(types[os.path.splitext(name)[1]]), (name, h["content-type"])
        csp = h["content-security-policy"]
        for part in ("default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "style-src 'self'",
                     "object-src 'none'"):
            assert part in csp, (part, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["cache-control"] == "no-cache" and re.fullmatch(r'"[0-9a-f]{16}"', h["etag"]), h
        assert "content-encoding" not in h          # the client did not ask for gzip
        assert body == open(os.path.join(UI_DIR, name), "rb").read(), name
        # revalidation: 304 with no body, the same ETag, and the same for W/ and lists
        for inm in (h["etag"], "W/" + h["etag"], '"other", ' + h["etag"], "*"):
            st2, h2, body2 = get(t, "/ui/" + name, **{"If-None-Match": inm})
            assert st2 == 304 and body2 == b"" and h2["etag"] == h["etag"], (inm, st2)
        assert get(t, "/ui/" + name, **{"If-None-Match": '"0000000000000000"'})[0] == 200
        # gzip when accepted (made at build time), plain when refused
        st3, h3, z = get(t, "/ui/" + name, **{"Accept-Encoding": "gzip, deflate, br"})
        if h3.get("content-encoding") == "gzip":
            assert gzip.decompress(z) == body and len(z) < len(body)
            assert "accept-encoding" in h3["vary"].lower()
            # another representation, another tag: each revalidates as itself
            assert h3["etag"] == h["etag"][:-1] + '-gz"', (h3["etag"], h["etag"])
            assert get(t, "/ui/" + name, **{"Accept-Encoding": "gzip", "If-None-Match": h3["etag"]})[0] == 304
            assert get(t, "/ui/" + name, **{"If-None-Match": h3["etag"]})[0] == 200
            assert get(t, "/ui/" + name, **{"Accept-Encoding": "gzip", "If-None-Match": h["etag"]})[0] == 200
        else:
            assert z == body and h3["etag"] == h["etag"]
        st4, h4, z4 = get(t, "/ui/" + name, **{"Accept-Encoding": "gzip;q=0, identity"})
        assert "content-encoding" not in h4 and z4 == body
        # HEAD: the GET's head, no body
        st5, h5, b5 = get(t, "/ui/" + name, method="HEAD")
        assert st5 == 200 and b5 == b"" and h5["content-length"] == str(len(body))
    # index.html at /ui/; the big files are compressed
    st, h, body = get(t, "/ui/", **{"Accept-Encoding": "gzip"})
    assert st == 200 and h["content-type"].startswith("text/html") and b"app.js" in gzip.decompress(body)
    assert get(t, "/ui/app.js", **{"Accept-Encoding": "gzip"})[1]["content-encoding"] == "gzip"
    # unknown files, other methods
    st, h, _ = get(t, "/ui/nope.js")
    assert st == 404 and h["x-content-type-options"] == "nosniff"
    assert get(t, "/ui/../src/ui.c")[0] in (400, 404)
    for method in ("POST", "PUT", "DELETE"):
        st, h, _ = get(t, "/ui/app.js", method=method)
        assert st == 405 and h["allow"] == "GET, HEAD", (method, st)
    # the data still needs a key
    assert get(t, "/v1/model-routes")[0] == 401


def test_assets_weigh_at_most_150_kb_gzipped(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    files = embedded()
    total = sum(g or p for _, p, g in files)
    assert total <= LIMIT, "the dashboard weighs %d bytes gzipped, over %d" % (total, LIMIT)
    # what the server sends to a gzip client adds up to the same
    sent = sum(len(get(t, "/ui/" + n, **{"Accept-Encoding": "gzip"})[2]) for n, _, _ in files)
    assert sent == total, (sent, total)
    print("  dashboard: %d files, %d bytes plain, %d bytes as sent gzipped" %
          (len(files), sum(p for _, p, _ in files), total))
