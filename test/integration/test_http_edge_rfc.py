"""HTTP/1.1 as RFC 9110/9112 say, at the edge: HEAD, empty lines before a request, versions, optional
whitespace, UTF-8 error bodies, Expect: 100-continue, and the reason phrase of every status turnout sends.

Raw sockets throughout (TLS under them in a --tls run): what is checked is the exact bytes of HTTP on the
wire."""
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

from harness import ADMIN_KEY, connect, curl_tls_args, raw_exchange, read_to_close, seed_for, status_of

GET_HEALTH_CLOSE = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
BODY = b'{"model":"r","messages":[{"role":"user","content":"hi"}]}'

# RFC 9110 section 15 (and IANA's registry for 429, 431, 451, 507 ...)
REASON = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    206: "Partial Content", 207: "Multi-Status", 300: "Multiple Choices", 302: "Found",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    416: "Range Not Satisfiable", 417: "Expectation Failed", 418: "I'm a teapot", 421: "Misdirected Request",
    422: "Unprocessable Content", 423: "Locked", 424: "Failed Dependency", 425: "Too Early",
    426: "Upgrade Required", 428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported", 507: "Insufficient Storage",
}


def start(env, **config):
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-small"}]}])
    return m, env.turnout(seed, config=config or None)


def parse_responses(raw, methods):
    """Splits RAW into one response per request method (a HEAD answer has no
    body whatever its Content-Length says; 1xx answers are kept as their own
    entries); returns ([(status, reason, headers, body)], bytes left over)."""
    out = []
    methods = list(methods)
    while methods:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, "an incomplete response: %r" % raw[:300]
        lines = head.split(b"\r\n")
        version, status, reason = (lines[0].split(b" ", 2) + [b""])[:3]
        assert version in (b"HTTP/1.1", b"HTTP/1.0"), lines[0]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        status = int(status)
        if 100 <= status < 200:
            out.append((status, reason, headers, b""))
            raw = rest
            continue
        n = 0 if methods.pop(0) == "HEAD" else int(headers.get(b"content-length", b"0"))
        out.append((status, reason, headers, rest[:n]))
        raw = rest[n:]
    return out, raw


def recv_until(s, marker, timeout=2.0):
    """Reads from S until MARKER has arrived (or the peer closes, or TIMEOUT)."""
    data, deadline = b"", time.time() + timeout
    while marker not in data and time.time() < deadline:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def recv_response(s, timeout=5.0):
    """One whole response with a Content-Length body from S."""
    data = recv_until(s, b"\r\n\r\n", timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    deadline = time.time() + timeout
    while len(body) < n and time.time() < deadline:
        s.settimeout(max(0.01, deadline - time.time()))
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def utf8_json(body):
    """BODY as JSON, decoded as strict UTF-8 (RFC 8259 section 8.1)."""
    return json.loads(body.decode("utf-8", "strict"))


# --- HEAD -------------------------------------------------------------------

def test_head_is_answered_with_the_head_alone(env):
    m, t = start(env)
    methods = ["HEAD", "HEAD", "HEAD", "HEAD", "HEAD", "GET"]
    reqs = (b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /v1/models HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /v1/chat/completions HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /v1/nowhere HTTP/1.1\r\nHost: t\r\n\r\n" + GET_HEALTH_CLOSE)
    raw, closed = raw_exchange(t.port, reqs)
    got, rest = parse_responses(raw, methods)
    assert rest == b"" and closed, "bytes after the last answer: a HEAD answer carried a body: %r" % rest[:200]
    assert [g[0] for g in got] == [200, 200, 405, 200, 404, 200], [g[:2] for g in got]
    # Content-Length is what GET would send
    assert int(got[0][2][b"content-length"]) == len(got[5][3]) > 0
    st, _, models = t.request("GET", "/v1/models")
    assert st == 200 and int(got[1][2][b"content-length"]) == len(models)
    assert got[2][2][b"allow"] == b"POST" and int(got[2][2][b"content-length"]) > 0
    # the admin listener
    auth = b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
    reqs = (b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /v1/providers HTTP/1.1\r\nHost: t\r\n" + auth + b"\r\n"
            b"HEAD /v1/providers/nope HTTP/1.1\r\nHost: t\r\n" + auth + b"\r\n"
            b"HEAD /v1/providers HTTP/1.1\r\nHost: t\r\n\r\n" + GET_HEALTH_CLOSE)
    raw, closed = raw_exchange(t.admin_port, reqs)
    got, rest = parse_responses(raw, methods[:4] + ["GET"])
    assert rest == b"" and closed, rest[:200]
    assert [g[0] for g in got] == [200, 200, 404, 401, 200], [g[:2] for g in got]
    raw, _ = raw_exchange(t.admin_port, b"GET /v1/providers HTTP/1.1\r\nHost: t\r\n" + auth +
                          b"Connection: close\r\n\r\n")
    listing = raw.partition(b"\r\n\r\n")[2]
    assert status_of(raw) == 200 and int(got[1][2][b"content-length"]) == len(listing) > 0


# --- empty lines before a request line -----------------------------------------

def test_empty_lines_before_a_request_line_are_ignored(env):
    m, t = start(env)
    for prefix in (b"\r\n", b"\r\n\r\n", b"\r\n" * 4):
        raw, closed = raw_exchange(t.port, prefix + GET_HEALTH_CLOSE, timeout=3)
        assert status_of(raw) == 200 and closed, (prefix, raw[:200])
    # the empty line in a read of its own
    s = connect(t.port, timeout=5)
    s.sendall(b"\r\n")
    time.sleep(0.2)
    s.sendall(GET_HEALTH_CLOSE)
    raw, closed, _ = read_to_close(s)
    s.close()
    assert status_of(raw) == 200 and closed, raw[:200]
    # a stray CRLF after a body, then a pipelined request: both answered
    post = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    raw, closed = raw_exchange(t.port, post + b"\r\n" + GET_HEALTH_CLOSE, timeout=3)
    got, rest = parse_responses(raw, ["POST", "GET"])
    assert [g[0] for g in got] == [200, 200] and rest == b"" and closed, raw[:300]
    # and the same with the CRLF arriving after the answer to the first
    s = connect(t.port, timeout=5)
    s.sendall(post + b"\r\n")
    first = recv_response(s)
    assert status_of(first) == 200
    time.sleep(0.1)
    s.sendall(GET_HEALTH_CLOSE)
    raw, closed, _ = read_to_close(s)
    s.close()
    assert status_of(raw) == 200 and closed, raw[:200]
    # bounded: past four empty lines the request is refused, not waited for
    raw, closed = raw_exchange(t.port, b"\r\n" * 5 + GET_HEALTH_CLOSE)
    assert status_of(raw) == 400 and closed, raw[:200]
    assert utf8_json(raw.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request"
    assert len(m.log()) == 2


# --- versions -----------------------------------------------------------------

def refused(port, request, status, code):
    raw, closed = raw_exchange(port, request)
    assert status_of(raw) == status and closed, (request[:60], raw[:300])
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 %d %s" % (status, REASON[status].encode()), head
    assert b"connection: close" in head.lower()
    err = utf8_json(body)["error"]
    assert err["code"] == code and err["message"], err
    return err


def test_only_http_1_0_and_1_1_are_served(env):
    m, t = start(env)
    for version in (b"HTTP/1.12", b"HTTP/11.1", b"HTTP/1.", b"HTTP/1.x", b"HTTP/01.1"):
        err = refused(t.port, b"GET /healthz %s\r\nHost: t\r\n\r\n" % version, 400, "bad_request")
        assert "version" in err["message"], (version, err)
    for version in (b"HTTP/9.9", b"HTTP/3.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2"):
        err = refused(t.port, b"GET /healthz %s\r\nHost: t\r\n\r\n" % version, 505, "http_version_not_supported")
        assert "HTTP/1.1" in err["message"], err
    # no version at all (HTTP/0.9's request line): refused, not waited on or served as HTTP/1.0
    for line in (b"GET /healthz\r\n\r\n", b"GET /healthz \r\n\r\n", b"GET /v1/models?x=1\r\n\r\n"):
        refused(t.port, line, 400, "bad_request")
    for version in (b"1.0", b"1.1"):
        raw, _ = raw_exchange(t.port, b"GET /healthz HTTP/%s\r\nHost: t\r\nConnection: close\r\n\r\n" % version)
        assert raw.startswith(b"HTTP/%s 200 OK\r\n" % version), raw[:100]


# --- optional whitespace --------------------------------------------------------

def test_optional_whitespace_around_header_values(env):
    m, t = start(env, require_key=True)
    key = ADMIN_KEY.encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    cases = [
        (b"Content-Length:\t%d\r\n" % len(BODY), BODY),
        (b"Content-Length: %d \r\n" % len(BODY), BODY),
        (b"Content-Length: \t%d\t \r\n" % len(BODY), BODY),
        (b"Content-Length:%d\r\n" % len(BODY), BODY),
        (b"Transfer-Encoding:\tchunked\r\n", chunked),
        (b"Transfer-Encoding: chunked \r\n", chunked),
        (b"Transfer-Encoding: \tChunked\t\r\n", chunked),
    ]
    for framing, body in cases:
        req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
               b"Content-Type:\tapplication/json \r\nAuthorization: Bearer " + key + b" \t\r\n" + framing +
               b"\r\n" + body)
        raw, closed = raw_exchange(t.port, req + GET_HEALTH_CLOSE)
        got, rest = parse_responses(raw, ["POST", "GET"])
        # the body was framed by the value, and the request after it read from the right byte
        assert [g[0] for g in got] == [200, 200] and rest == b"" and closed, (framing, raw[:400])
        assert utf8_json(got[0][3])["object"] == "chat.completion"
    assert [e["model"] for e in m.log()] == ["mock-small"] * len(cases)
    # the same, a byte per read: the value is trimmed whatever the reads
    s = connect(t.port, timeout=5)
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + key +
           b"\r\nContent-Length: \t%d \r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))
    for i in range(len(req)):
        s.sendall(req[i:i + 1])
        if req[i:i + 1] in b" \t\r":
            time.sleep(0.002)
    raw, closed, _ = read_to_close(s)
    s.close()
    assert status_of(raw) == 200 and closed, raw[:300]
    # whitespace where RFC 9112 allows none: a 400, never a second way to read the framing
    for bad in (b"Content-Length : %d\r\n" % len(BODY),                     # before the colon
                b"Content-Length: 5\r\n\t%d\r\n" % len(BODY),               # obs-fold
                b"X-A: b\r\n c\r\nContent-Length: %d\r\n" % len(BODY),      # obs-fold with SP
                b"X A: b\r\nContent-Length: %d\r\n" % len(BODY)):           # inside a name
        req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n" + bad + b"\r\n" + BODY)
        err = refused(t.port, req, 400, "bad_request")
        assert "header" in err["message"], err
    refused(t.port, b"GET /healthz HTTP/1.1\r\n Host: t\r\n\r\n", 400, "bad_request")
    assert len(m.log()) == len(cases) + 1


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


# --- Expect: 100-continue -----------------------------------------------------------

def head_of(path=b"/v1/chat/completions", method=b"POST", length=len(BODY), version=b"1.1", extra=b"",
            ctype=b"application/json", key=ADMIN_KEY.encode()):
    return (b"%s %s HTTP/%s\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Authorization: Bearer %s\r\n%s\r\n" % (method, path, version, ctype, length, key, extra))


EXPECT = b"Expect: 100-continue\r\n"


def test_expect_100_continue(env):
    m, t = start(env, require_key=True, limits={"max_body_bytes": 4 << 20})
    # every check passes: 100 Continue at once, then the answer; the connection stays usable
    s = connect(t.port, timeout=5)
    t0 = time.time()
    s.sendall(head_of(extra=EXPECT))
    interim = recv_until(s, b"\r\n\r\n", timeout=1.5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n" and time.time() - t0 < 0.5, interim
    s.sendall(BODY)
    assert status_of(recv_response(s)) == 200
    s.sendall(head_of(extra=b"Expect: 100-Continue\r\n"))
    assert recv_until(s, b"\r\n\r\n", timeout=1.5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(BODY)
    assert status_of(recv_response(s)) == 200
    s.close()
    # refused before the body: the final answer at once, never a 100, then the connection closes
    refusals = [
        (head_of(key=b"wrong", extra=EXPECT), 401, "invalid_api_key"),
        (head_of(path=b"/v1/nowhere", extra=EXPECT), 404, "not_found"),
        (head_of(path=b"/router//v1/chat/completions", extra=EXPECT), 404, "not_found"),
        (head_of(method=b"PUT", extra=EXPECT), 405, "method_not_allowed"),
        (head_of(path=b"/healthz", extra=EXPECT), 405, "method_not_allowed"),
        (head_of(ctype=b"text/plain", extra=EXPECT), 415, "unsupported_media_type"),
        (head_of(length=5 << 20, extra=EXPECT), 413, "request_too_large"),
    ]
    for head, status, code in refusals:
        s = connect(t.port, timeout=5)
        t0 = time.time()
        s.sendall(head)
        raw, closed, reset = read_to_close(s, timeout=3)
        took = time.time() - t0
        s.close()
        assert status_of(raw) == status and took < 0.5, (head[:40], raw[:200], took)
        assert closed and not reset, (head[:40], closed, reset)
        h, _, body = raw.partition(b"\r\n\r\n")
        assert b"connection: close" in h.lower() and utf8_json(body)["error"]["code"] == code, raw[:300]
    # a client that sends its body anyway (no Expect) reads its answer, not a reset, while it sends
    big = b"x" * (3 << 20)
    s = connect(t.port, timeout=5)
    s.sendall(head_of(key=b"wrong", length=len(big)) + big[:65536])
    answer = recv_response(s)
    assert status_of(answer) == 401, answer[:200]
    s.sendall(big[65536:])             # discarded, not refused with a reset
    s.shutdown(socket.SHUT_WR)
    rest, closed, reset = read_to_close(s, timeout=5)
    s.close()
    assert rest == b"" and closed and not reset, (rest[:100], closed, reset)
    # an expectation other than 100-continue
    for value in (b"gzip", b"100-continue, x", b"200-ok"):
        err = refused(t.port, head_of(extra=b"Expect: " + value + b"\r\n") + BODY, 417, "expectation_failed")
        assert "100-continue" in err["message"]
    # HTTP/1.0: the expectation is ignored (RFC 9110 section 10.1.1), the body still read
    s = connect(t.port, timeout=5)
    s.sendall(head_of(version=b"1.0", extra=EXPECT))
    assert recv_until(s, b"\r\n\r\n", timeout=0.3) == b""
    s.sendall(BODY)
    raw, closed, _ = read_to_close(s)
    s.close()
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n") and closed, raw[:200]
    # no body, no 100
    raw, _ = raw_exchange(t.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw[:100]
    # the admin listener
    admin = (b"POST /v1/routers HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
    router = json.dumps({"slug": "exp", "name": "Expect"}).encode()
    s = socket.create_connection(("127.0.0.1", t.admin_port), timeout=5)
    s.sendall(admin % (ADMIN_KEY.encode(), len(router)))
    assert recv_until(s, b"\r\n\r\n", timeout=1.5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(router)
    raw, _, _ = read_to_close(s)
    s.close()
    assert status_of(raw) == 201, raw[:300]
    refused(t.admin_port, (admin % (ADMIN_KEY.encode(), 2 << 20)).replace(b"100-continue", b"gzip"),
            417, "expectation_failed")
    assert len(m.log()) == 3


def test_curl_uploads_a_large_body_without_waiting(env):
    """curl sends Expect: 100-continue with a body over 1 MiB and waits up to
    1 s for the interim answer before sending it anyway."""
    curl = shutil.which("curl")
    assert curl, "curl is installed by scripts/install-deps.sh"
    m, t = start(env, require_key=True, limits={"max_body_bytes": 4 << 20})
    path = os.path.join(env.dir, "big.json")
    with open(path, "wb") as f:
        f.write(json.dumps({"model": "r", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}).encode())

    def post(key):
        out = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                              "-H", "Content-Type: application/json", "-H", "Authorization: Bearer " + key,
                              *curl_tls_args(t.port), "--data-binary", "@" + path,
                              t.url("/v1/chat/completions")],
                             capture_output=True, text=True, timeout=20)
        code, took = out.stdout.split()
        return int(code), float(took)

    for key, status in ((ADMIN_KEY, 200), ("wrong", 401)):
        code, took = post(key)
        assert code == status and took < 0.5, (key, code, took)
        print("    2 MiB POST with curl's Expect: %d in %.3f s" % (code, took))
    assert len(m.log()) == 1


# --- reason phrases ------------------------------------------------------------

class StatusUpstream:
    """An upstream on a raw socket that answers each request with the status
    its model names ("s422" -> 422; "slow" -> no answer for 5 s)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.base_url = "http://127.0.0.1:%d/v1" % self.port
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                n = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
                while len(buf) < n:
                    buf += c.recv(65536)
                body, buf = buf[:n], buf[n:]
                model = json.loads(body)["model"]
                if model == "slow":
                    time.sleep(5)
                    return
                status = int(model[1:])
                out = b'{"error":{"message":"status %d","type":"x","param":null,"code":"x"}}' % status
                c.sendall(b"HTTP/1.1 %d Whatever\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (status, len(out), out))
        except OSError:
            return
        finally:
            c.close()

    def close(self):
        self.sock.close()


RELAYED = [200, 201, 202, 203, 207, 300, 302, 307, 308, 400, 402, 404, 405, 406, 409, 410, 412, 413, 415,
           416, 418, 421, 422, 423, 424, 425, 426, 428, 451]


def status_line(raw):
    return raw.partition(b"\r\n")[0].decode("latin-1")


def test_every_status_has_its_reason_phrase(env):
    m = env.mock()
    up = StatusUpstream()
    try:
        raw_provider = {"name": "raw", "base_url": up.base_url, "api_key_env": "MOCK_API_KEY",
                        "models": [{"name": "s%d" % c} for c in RELAYED + [429, 460, 500]] + [{"name": "slow"}]}
        seed = seed_for(m, routes=[
            {"name": "r", "targets": [{"provider": "mock", "model": "mock-small"}]},
            {"name": "r429", "targets": [{"provider": "raw", "model": "s429"}], "retry": {"max_429_retries": 0}},
            {"name": "r-slow", "targets": [{"provider": "raw", "model": "slow"}], "timeouts": {"first_byte_s": 1}},
            {"name": "r-off", "enabled": False, "targets": [{"provider": "mock", "model": "mock-small"}]},
        ])
        seed["providers"].append(raw_provider)
        t = env.turnout(seed, config={"require_key": True, "limits": {"idle_timeout_s": 1, "max_headers": 20}})
        key = b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
        seen = {}

        def check(raw, want=None):
            line = status_line(raw)
            mm = re.match(r"HTTP/1\.[01] (\d{3}) (.*)$", line)
            assert mm, line
            code = int(mm.group(1))
            assert want is None or code == want, (want, line)
            assert mm.group(2) == REASON[code], line
            seen[code] = line

        def chat(model, extra=b""):
            body = json.dumps({"model": model, "messages": []}).encode()
            return raw_exchange(t.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n" + key + extra +
                                b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                % (len(body), body), timeout=6)[0]

        # answered by turnout itself, on the data plane
        check(raw_exchange(t.port, GET_HEALTH_CLOSE)[0], 200)
        check(chat("r"), 200)
        check(raw_exchange(t.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n" + key +
                           b"Content-Length: 3\r\nConnection: close\r\n\r\n{x}")[0], 400)
        check(raw_exchange(t.port, b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n")[0], 401)
        check(raw_exchange(t.port, b"GET /v1/x HTTP/1.1\r\n" + key + b"Connection: close\r\n\r\n")[0], 404)
        check(raw_exchange(t.port, b"DELETE /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")[0], 405)
        check(raw_exchange(t.port, head_of(length=100))[0], 408)   # the body stalls (idle_timeout_s 1)
        check(raw_exchange(t.port, head_of(length=2 << 20))[0], 413)
        check(raw_exchange(t.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")[0], 414)
        check(raw_exchange(t.port, head_of(ctype=b"text/plain") + BODY)[0], 415)
        check(raw_exchange(t.port, head_of(extra=b"Expect: x\r\n"))[0], 417)
        check(chat("r429"), 429)
        check(raw_exchange(t.port, b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(21)) +
                           b"\r\n")[0], 431)
        check(raw_exchange(t.port, head_of(extra=b"Transfer-Encoding: gzip\r\n").replace(b"Content-Length", b"X-L"))[0],
              501)
        check(chat("raw/s500"), 502)
        check(chat("r-off"), 503)
        check(chat("r-slow"), 504)
        check(raw_exchange(t.port, b"GET /healthz HTTP/2.0\r\n\r\n")[0], 505)
        s = connect(t.port, timeout=5)
        s.sendall(head_of(extra=EXPECT))
        check(recv_until(s, b"\r\n\r\n"), 100)
        s.close()
        # relayed from the upstream as it answered
        for code in RELAYED:
            check(chat("raw/s%d" % code), code)
        # an unregistered code keeps an empty reason phrase, never a made-up word
        assert status_line(chat("raw/s460")) == "HTTP/1.1 460 ", status_line(chat("raw/s460"))
        # the admin API
        admin = lambda method, path, body=b"", extra=b"": raw_exchange(  # noqa: E731
            t.admin_port, b"%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (method, path, key, extra, len(body), body))[0]
        router = json.dumps({"slug": "one", "name": "One"}).encode()
        check(admin(b"POST", b"/v1/routers", router), 201)
        check(admin(b"POST", b"/v1/routers", router), 409)
        check(admin(b"PUT", b"/v1/routers"), 405)
        check(admin(b"POST", b"/v1/routers", b"[1]"), 400)
        check(raw_exchange(t.admin_port, b"POST /v1/routers HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")[0], 411)
        st, user = t.admin("POST", "/v1/keys", {"role": "user", "name": "u"})
        assert st == 201, user
        check(raw_exchange(t.admin_port, b"GET /v1/routers HTTP/1.1\r\nAuthorization: Bearer " +
                           user["secret"].encode() + b"\r\nConnection: close\r\n\r\n")[0], 403)
        check(admin(b"POST", b"/v1/routers", b"x" * (2 << 20)), 413)
        # a full store
        small = env.turnout(seed_for(m), name="small", config={"store": {"map_size_mb": 1}})
        big = {"name": "big%d", "base_url": "http://127.0.0.1:1/v1", "api_key_env": "MOCK_API_KEY",
               "models": [{"name": "m%05d-%s" % (j, "x" * 200)} for j in range(2000)]}
        for i in range(4):
            body = json.dumps(dict(big, name="big%d" % i)).encode()
            raw = raw_exchange(small.admin_port, b"POST /v1/providers HTTP/1.1\r\n" + key +
                               b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))[0]
            check(raw)
            if status_of(raw) != 201:
                break
        assert 507 in seen, sorted(seen)
        print("    %d statuses, each with its reason phrase: %s" % (len(seen), " ".join(str(c) for c in sorted(seen))))
    finally:
        up.close()
