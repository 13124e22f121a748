"""HTTP/1.1 as RFC 9110/9112 say, at the edge: UTF-8 error bodies.

Raw sockets throughout: what is checked is the exact bytes on the wire."""
import json

from harness import ADMIN_KEY, raw_exchange, seed_for, status_of

BODY = b'{"model":"r","messages":[{"role":"user","content":"hi"}]}'


def start(env, **config):
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-small"}]}])
    return m, env.turnout(seed, config=config or None)


def utf8_json(body):
    """BODY as JSON, decoded as strict UTF-8 (RFC 8259 section 8.1)."""
    return json.loads(body.decode("utf-8", "strict"))


# --- UTF-8 in error bodies --------------------------------------------------------

def test_error_bodies_are_valid_utf8_json(env):
    m, t = start(env)
    ask = lambda port, path, extra=b"": raw_exchange(   # noqa: E731
        port, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n")[0]
    raw = ask(t.port, b"/v1/\xff\xfe")
    assert status_of(raw) == 404
    err = utf8_json(raw.partition(b"\r\n\r\n")[2])["error"]
    assert err["message"] == "no such path: /v1/\ufffd\ufffd", err
    # well-formed UTF-8 is kept; overlong forms, surrogates and cut sequences are not
    raw = ask(t.port, b"/v1/caf\xc3\xa9-\xf0\x9f\x9a\x80")
    assert utf8_json(raw.partition(b"\r\n\r\n")[2])["error"]["message"] == "no such path: /v1/caf\u00e9-\U0001f680"
    for path in (b"/v1/\xc0\xaf", b"/v1/\xed\xa0\x80", b"/v1/\xe2\x82", b"/v1/\xf4\x90\x80\x80", b"/v1/\x80z"):
        raw = ask(t.port, path)
        msg = utf8_json(raw.partition(b"\r\n\r\n")[2])["error"]["message"]
        assert "\ufffd" in msg and msg.startswith("no such path: /v1/"), (path, msg)
    raw = ask(t.port, b"/router/\xe9t\xe9/v1/models")
    assert status_of(raw) == 404
    assert "\ufffd" in utf8_json(raw.partition(b"\r\n\r\n")[2])["error"]["message"]
    # a Content-Type of raw bytes, quoted in the 415
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: text/\xe9\xff\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))
    raw, _ = raw_exchange(t.port, req)
    assert status_of(raw) == 415
    assert "text/\ufffd\ufffd" in utf8_json(raw.partition(b"\r\n\r\n")[2])["error"]["message"]
    # the admin API
    auth = b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
    for path in (b"/v1/providers/\xff\xfe", b"/v1/\xff", b"/v1/model-routes/\xc3"):
        raw = ask(t.admin_port, path, auth)
        assert status_of(raw) == 404, raw[:200]
        assert "\ufffd" in utf8_json(raw.partition(b"\r\n\r\n")[2])["error"]["message"], path
    # and the access log's lines
    t.access_log(count=9)
    for line in open(t.out_path, "rb"):
        if line.startswith(b"{"):
            utf8_json(line)


