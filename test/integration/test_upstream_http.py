"""The upstream HTTP/1.1 client, byte by byte: what turnout sends to an http:// provider and how it reads the answer.

Every test talks to RawUpstream, a scripted upstream on raw sockets: it counts
the connections it accepts, records each request it parses (request line,
headers, body read by its Content-Length) and answers with exactly the bytes
the test chose, split, paused and ended (kept open, closed, reset) as the test
says. The tests pin down framing (Content-Length, chunked with extensions and
trailers, close-delimited), connection reuse and its failure modes (a pooled
connection the server closed or reset while idle, Connection: close), interim
1xx answers, broken answers (truncated, malformed, oversized headers) and how
they fail over, hop-by-hop headers, streaming without buffering, name
resolution, and an answer that arrives before the request body is sent.

They were written against the libcurl client and must hold for any client
that replaces it.
"""
import json
import socket
import struct
import threading
import time

import harness
from harness import CANARY, chat_request

WAIT_S = 5   # the longest any single wait in these tests may take

OK_BODY = b'{"id":"chatcmpl-raw","object":"chat.completion","choices":[]}'


# --- answers ----------------------------------------------------------------

def response(status=200, headers=(), body=b"", length=True, reason=b"OK"):
    """The bytes of one HTTP/1.1 response. LENGTH adds a Content-Length
    matching BODY; HEADERS is a list of (name, value) bytes."""
    head = [b"HTTP/1.1 %d %s" % (status, reason)] + [b"%s: %s" % hv for hv in headers]
    if length:
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


JSON = (b"Content-Type", b"application/json")
OK = response(headers=[JSON], body=OK_BODY)


def chunk(data, size_line=None):
    """One chunk of a chunked body; SIZE_LINE overrides the "%x" size line
    (to test upper case or an extension)."""
    return (size_line if size_line is not None else b"%x" % len(data)) + b"\r\n" + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def dribble(data, size=1, pause=0.001):
    """DATA as parts of SIZE bytes with a short pause between them, so the
    gateway's reads see every boundary inside it."""
    parts = []
    for i in range(0, len(data), size):
        parts += [data[i:i + size], pause]
    return parts


class Reply:
    """How RawUpstream answers one request.

    PARTS are sent in order: bytes are written, a number pauses that many
    seconds, a threading.Event is waited for (at most WAIT_S). Then END:
    "keep" (go on reading requests on the connection), "close" (FIN) or
    "reset" (RST), after LINGER seconds of keeping the connection idle.
    READ_BODY=False answers after the request's headers, leaving its body
    unread."""

    def __init__(self, *parts, end="keep", linger=0.0, read_body=True):
        assert end in ("keep", "close", "reset")
        self.parts, self.end, self.linger, self.read_body = parts, end, linger, read_body


class Request:
    """One request as the upstream parsed it; header names lower-cased."""

    def __init__(self, conn, line, fields):
        self.conn = conn                       # index of the connection it came on
        self.method, self.target, self.version = line.split(" ", 2)
        self.fields = fields                   # [(name, value)] in order
        self.body = b""

    def __repr__(self):   # for failure messages: never the provider key
        shown = [(k, "<redacted>" if k == "authorization" else v) for k, v in self.fields]
        return "<%s %s %s on connection %d: %s>" % (self.method, self.target, self.version, self.conn, shown)

    def all(self, name):
        return [v for k, v in self.fields if k == name]

    def get(self, name):
        values = self.all(name)
        assert len(values) <= 1, "%s sent %d times: %r" % (name, len(values), self)
        return values[0] if values else None


class RawUpstream:
    """A scripted HTTP/1.1 server on loopback, one thread per connection.

    SCRIPT is a Reply for every request, or a list of them: the n-th request
    (counted over all connections) gets the n-th, the last one repeats."""

    def __init__(self, script, host="127.0.0.1"):
        self.script = script if isinstance(script, list) else [script]
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.accepted = 0                      # connections accepted
        self.requests = []                     # Request, in arrival order
        self.peer_closed = set()               # connections the gateway closed
        self.server_closed = set()             # connections we ended (Reply.end)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        harness.MOCK_PORTS.add(self.port)      # it is an upstream: it may see the provider key
        self.threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self.threads[0].start()

    def base_url(self, host="127.0.0.1"):
        return "http://%s:%d/v1" % (host, self.port)

    def wait(self, predicate, what, timeout=WAIT_S):
        """Waits until PREDICATE() (called under the lock) holds; fails naming WHAT."""
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), "upstream: timed out waiting for " + what

    def close(self):
        self.stopping.set()
        for t in self.threads:
            t.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # the server side

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cond:
                index = self.accepted
                self.accepted += 1
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            self.threads.append(t)
            t.start()

    def _recv(self, conn):
        """The next bytes from CONN; b"" when the peer closed it, reset it, or we are stopping."""
        while not self.stopping.is_set():
            try:
                return conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return b""
        return b""

    def _serve(self, conn, index):
        conn.settimeout(0.1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while not self.stopping.is_set():
                while b"\r\n\r\n" not in buf:
                    data = self._recv(conn)
                    if not data:
                        if not self.stopping.is_set():
                            with self.cond:
                                self.peer_closed.add(index)
                                self.cond.notify_all()
                        return
                    buf += data
                    assert len(buf) < 1 << 20, "request head too large"
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                fields = [(k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
                req = Request(index, lines[0], fields)
                with self.cond:
                    reply = self.script[min(len(self.requests), len(self.script) - 1)]
                if reply.read_body:
                    buf = self._read_body(conn, req, buf)
                with self.cond:
                    self.requests.append(req)
                    self.cond.notify_all()
                if not self._send(conn, reply) or reply.end != "keep":
                    self._end(conn, index, reply)
                    return
        finally:
            conn.close()

    def _read_body(self, conn, req, buf):
        """Reads REQ's body (by Content-Length, or chunked); returns what follows it."""
        if (req.get("transfer-encoding") or "").lower() == "chunked":
            while not buf.endswith(b"0\r\n\r\n") and not self.stopping.is_set():
                data = self._recv(conn)
                if not data:
                    break
                buf += data
            req.body, buf = buf, b""           # kept framed: read only so the server does not stall
            return buf
        n = int(req.get("content-length") or 0)
        while len(buf) < n:
            data = self._recv(conn)
            if not data:
                break
            buf += data
        req.body, buf = buf[:n], buf[n:]
        return buf

    def _send(self, conn, reply):
        conn.settimeout(WAIT_S)                # for sendall: a large answer may take more than 0.1 s
        try:
            for part in reply.parts:
                if isinstance(part, (bytes, bytearray)):
                    conn.sendall(part)
                elif isinstance(part, threading.Event):
                    part.wait(WAIT_S)
                else:
                    self.stopping.wait(part)
            return True
        except OSError:                        # the gateway gave up on us (oversized, early close)
            return False
        finally:
            conn.settimeout(0.1)

    def _end(self, conn, index, reply):
        if reply.end == "keep":                # a send failed: just close
            return
        self.stopping.wait(reply.linger)
        if reply.end == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        with self.cond:
            self.server_closed.add(index)
            self.cond.notify_all()


# --- the gateway ------------------------------------------------------------

def provider(name, base_url, model="m", **extra):
    return dict({"name": name, "base_url": base_url, "api_key_env": "MOCK_API_KEY",
                 "models": [{"name": model}]}, **extra)


def gateway(env, *providers, workers=2, config=None):
    """A turnout whose route "r" tries PROVIDERS in order (each with its one model)."""
    seed = {"providers": list(providers),
            "routes": [{"name": "r", "strategy": "fallback",
                        "targets": [{"provider": p["name"], "model": p["models"][0]["name"]} for p in providers]}]}
    return env.turnout(seed, config=dict(config or {}, workers=workers), name="turnout-%d" % len(env.procs))


def one_upstream(env, up, workers=1, config=None):
    """A turnout with the single provider "raw" on UP. One worker by default,
    so consecutive requests meet the same connection pool."""
    return gateway(env, provider("raw", up.base_url()), workers=workers, config=config)


def chat(t):
    """POST /v1/chat/completions for the route "r", given up on after WAIT_S."""
    return t.request("POST", "/v1/chat/completions", {"model": "r", "messages": [{"role": "user", "content": "hi"}]},
                     timeout=WAIT_S)


def assert_ok(reply, body=OK_BODY, attempts="1"):
    st, h, data = reply
    assert st == 200, (st, data[:500])
    assert data == body, data[:500]
    assert h["x-turnout-attempts"] == attempts, h
    return h


def assert_upstream_error(reply, attempts="1"):
    st, h, data = reply
    assert st == 502, (st, data[:500])
    assert json.loads(data)["error"]["code"] == "upstream_error", data
    assert h["x-turnout-attempts"] == attempts, h


# --- request shape ----------------------------------------------------------

def test_request_shape(env):
    """Request line, Host, framing, the headers turnout adds, and the body with
    only the model replaced: a small body, and one over 1 MiB (streamed from
    the client's buffer; libcurl would add Expect: 100-continue past 1 MiB)."""
    small = (b'{"messages": [{"role":"user","content":"caf\\u00e9 \xc3\xa9  spaced"}],\n'
             b'  "model" :  "r" , "temperature": 0.50, "n":1,"stop":["\\n"]}')
    large = small[:-1] + b', "user": "%s"}' % (b"u" * 1_200_000)
    with RawUpstream(Reply(OK)) as up:
        t = gateway(env, provider("raw", up.base_url(), headers={"X-Custom": "v"}),
                    config={"limits": {"max_body_bytes": 4 << 20}})
        for n, body in enumerate((small, large), 1):
            st, h, data = t.request("POST", "/v1/chat/completions", body, timeout=WAIT_S,
                                    headers={"Content-Type": "application/json",
                                             "Authorization": "Bearer sk-client-own"})
            assert_ok((st, h, data))
            up.wait(lambda: len(up.requests) == n, "request %d" % n)
            assert_request_shape(up.requests[-1], body.replace(b'"r"', b'"m"', 1), "127.0.0.1:%d" % up.port,
                                 h["x-request-id"])


def assert_request_shape(req, body, host, request_id):
    line = (req.method, req.target, req.version)
    assert line == ("POST", "/v1/chat/completions", "HTTP/1.1"), line
    assert req.get("host") == host, req
    assert req.get("content-length") == str(len(body)), req
    assert req.get("transfer-encoding") is None, req
    assert all("100-continue" not in v.lower() for v in req.all("expect")), req
    assert req.get("content-type") == "application/json", req
    assert req.all("authorization") == ["Bearer " + CANARY], "the provider's key, and only it"
    assert req.get("x-request-id") == request_id, (req, request_id)
    assert req.get("x-custom") == "v", req
    assert req.get("user-agent").startswith("turnout/"), req
    # which client sent it: libcurl adds its default Accept, turnout's own sends none
    assert req.get("accept") == ("*/*" if harness.UPSTREAM_CLIENT == "curl" else None), req
    assert req.body == body, (len(req.body), req.body[:200])


# --- connection reuse -------------------------------------------------------

def test_keep_alive_reuses_one_connection_per_worker(env):
    """20 sequential requests, Content-Length answers: at most one connection per worker."""
    with RawUpstream(Reply(OK)) as up:
        t = one_upstream(env, up, workers=2)
        for _ in range(20):
            assert_ok(chat(t))
        up.wait(lambda: len(up.requests) == 20, "20 requests")
        assert up.accepted <= 2, "%d connections for 20 sequential requests on 2 workers" % up.accepted


def test_chunked_response_in_tiny_pieces(env):
    """Upper and lower case hex sizes, a chunk extension and a trailer, every
    byte written on its own: the client gets the de-chunked body, and the
    connection is reused afterwards (the parser ended exactly at the trailer's end)."""
    body = (b'{"id":"chatcmpl-chunked","object":"chat.completion","choices":[{"index":0,'
            b'"message":{"role":"assistant","content":"reassembled from chunks"}}]}')
    a, b, c, rest = body[:5], body[5:31], body[31:58], body[58:]
    framed = (response(headers=[JSON, (b"Transfer-Encoding", b"chunked"), (b"Trailer", b"X-Checksum")],
                       length=False)
              + chunk(a, b"5;foo=bar") + chunk(b, b"1A") + chunk(c, b"1b") + chunk(rest)
              + b"0\r\nX-Checksum: abc123\r\n\r\n")
    assert len(b) == 0x1A and len(c) == 0x1B
    with RawUpstream([Reply(*dribble(framed)), Reply(OK)]) as up:
        t = one_upstream(env, up)
        assert_ok(chat(t), body)
        assert_ok(chat(t))
        assert up.accepted == 1 and len(up.requests) == 2, (up.accepted, len(up.requests))


def test_close_delimited_body(env):
    """No Content-Length, no Transfer-Encoding: the body ends where the server closes."""
    body = OK_BODY.replace(b"chatcmpl-raw", b"chatcmpl-until-close")
    with RawUpstream([Reply(response(headers=[JSON], body=body, length=False), 0.05, end="close"),
                      Reply(OK)]) as up:
        t = one_upstream(env, up)
        assert_ok(chat(t), body)
        assert_ok(chat(t))
        assert up.accepted == 2 and [r.conn for r in up.requests] == [0, 1], up.accepted


def test_connection_close_header_is_honoured(env):
    """The server says Connection: close but leaves the socket open: the
    gateway must close it itself and use a new connection next time."""
    closing = response(headers=[JSON, (b"Connection", b"close")], body=OK_BODY)
    with RawUpstream([Reply(closing), Reply(OK)]) as up:
        t = one_upstream(env, up)
        assert_ok(chat(t))
        up.wait(lambda: 0 in up.peer_closed, "the gateway to close the first connection")
        assert_ok(chat(t))
        assert up.accepted == 2 and [r.conn for r in up.requests] == [0, 1], up.accepted


def assert_stale_connection_retried(env, end):
    """The first answer leaves the connection open, then the server ends it
    (END) 100 ms later while it sits idle in the gateway's pool: the next
    request must reach the server on a new connection as its first attempt."""
    with RawUpstream(Reply(OK, end=end, linger=0.1)) as up:
        t = one_upstream(env, up)
        assert_ok(chat(t))
        up.wait(lambda: 0 in up.server_closed, "the server to end the idle connection")
        assert_ok(chat(t), attempts="1")
        assert up.accepted == 2 and [r.conn for r in up.requests] == [0, 1], up.accepted
        assert t.access_log("/v1/chat/completions", 2)[-1]["error"] is None


def test_stale_pooled_connection_closed_is_retried(env):
    assert_stale_connection_retried(env, "close")


def test_stale_pooled_connection_reset_is_retried(env):
    assert_stale_connection_retried(env, "reset")


# --- what comes back ----------------------------------------------------------

def test_interim_1xx_responses_are_skipped(env):
    """100 Continue and 103 Early Hints before the 200: only the 200 reaches the client, without the 103's Link."""
    interim = [b"HTTP/1.1 100 Continue\r\n\r\n", 0.05,
               b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n", 0.05]
    with RawUpstream(Reply(*interim, OK)) as up:
        t = one_upstream(env, up)
        h = assert_ok(chat(t))
        assert "link" not in h, h
        assert h["content-type"] == "application/json", h


def test_hop_by_hop_headers_are_not_relayed(env):
    """Connection, Keep-Alive, Transfer-Encoding and a Content-Length that is
    wrong once the chunks are taken off stay between turnout and the
    upstream; an ordinary header passes through."""
    head = [JSON, (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5, max=100"),
            (b"X-Upstream-Thing", b"42"), (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"9999")]
    framed = response(headers=head, length=False) + chunk(OK_BODY[:20]) + chunk(OK_BODY[20:]) + LAST_CHUNK
    with RawUpstream(Reply(framed)) as up:
        t = one_upstream(env, up)
        h = assert_ok(chat(t))
    assert h["x-upstream-thing"] == "42", h
    assert h.get("content-length") == str(len(OK_BODY)), h
    # the client asked for nothing about its connection: turnout says nothing either
    assert "connection" not in h and "keep-alive" not in h and "transfer-encoding" not in h, h


def assert_broken_answer_fails_over(env, broken):
    """The raw upstream answers BROKEN and closes. A route falling back to a
    working mockllm gets the client that one's answer; the raw upstream
    alone gets it a 502."""
    good = env.mock(name="good")
    with RawUpstream(Reply(*broken, end="close")) as up:
        raw = provider("raw", up.base_url())
        both = gateway(env, raw, provider("good", good.base_url, "mock-small"))
        alone = gateway(env, raw)
        st, h, data = chat(both)
        assert st == 200 and h.get("x-turnout-provider") == "good", (st, h, data[:300])
        assert h["x-turnout-attempts"] == "2" and json.loads(data)["object"] == "chat.completion", (h, data)
        assert_upstream_error(chat(alone))
        assert len(up.requests) == 2


def test_truncated_content_length_body_fails_over(env):
    assert_broken_answer_fails_over(env, [response(headers=[JSON, (b"Content-Length", b"1000")], length=False)
                                          + OK_BODY[:10], 0.05])


def test_truncated_chunked_body_fails_over(env):
    head = response(headers=[JSON, (b"Transfer-Encoding", b"chunked")], length=False)
    assert_broken_answer_fails_over(env, [head + chunk(OK_BODY[:10]) + b"40\r\n" + OK_BODY[10:30], 0.05])


def assert_refused_then_recovers(env, bad, config=None):
    """BAD (then a close) gets the client a 502; the next request is served."""
    with RawUpstream([Reply(bad, end="close"), Reply(OK)]) as up:
        t = one_upstream(env, up, config=config)
        assert_upstream_error(chat(t))
        assert_ok(chat(t))
        assert len(up.requests) == 2, "the broken answer was not retried"
        assert t.request("GET", "/healthz")[0] == 200


def test_malformed_status_line_is_an_upstream_error(env):
    assert_refused_then_recovers(env, b"garbage\r\n\r\n")


def test_header_lines_that_are_not_http_are_an_upstream_error(env):
    """What the upstream sends in its head reaches the client, so both clients
    refuse a name with a space ("Content-Length : 5" would also frame the body
    wrongly), a folded line, a bare CR inside a value, a line without a colon,
    and a name with bytes that are not a token (RFC 9110: "Transfer-E\xcdcoding"
    is no header of ours to relay)."""
    for bad in (b"Content-Length : 2\r\n", b"X-A: 1\r\n  folded: on\r\n", b"X-A: 1\rX-Injected: 2\r\n",
                b"no colon here\r\n", b"Transfer-E\xcdcoding: chunked\r\n", b"X-\xff: 1\r\n"):
        assert_refused_then_recovers(env, b"HTTP/1.1 200 OK\r\n" + bad + b"Content-Length: 2\r\n\r\n{}")


def test_oversized_response_headers_are_an_upstream_error(env):
    """One header line of 150 KB, and 1 MiB of header lines of 1 KiB each.
    (libcurl relays a block of 150 lines of 1 KiB whole: its limits are 100 KB
    for one line and 300 KB for the block, so smaller blocks are not tested.)"""
    tail = b"Content-Length: 2\r\n\r\n{}"
    assert_refused_then_recovers(env, b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 150_000 + b"\r\n" + tail)
    filler = b"".join(b"X-Filler-%04d: %s\r\n" % (i, b"f" * 1000) for i in range(1024))
    assert_refused_then_recovers(env, b"HTTP/1.1 200 OK\r\n" + filler + tail)


# --- streaming --------------------------------------------------------------

def read_until(s, data, marker, timeout=WAIT_S):
    """Reads from S onto DATA until MARKER is in it, the peer closes, or TIMEOUT."""
    deadline = time.time() + timeout
    while marker not in data and time.time() < deadline:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            got = s.recv(65536)
        except socket.timeout:
            break
        if not got:
            break
        data += got
    return data


def test_stream_events_are_relayed_before_the_stream_ends(env):
    """Event 2 is only written once the client has seen event 1 through the gateway."""
    release = threading.Event()
    head = response(headers=[(b"Content-Type", b"text/event-stream"), (b"Transfer-Encoding", b"chunked")],
                    length=False)
    event1 = b'data: {"choices":[{"delta":{"content":"event-one"}}]}\n\n'
    event2 = b'data: {"choices":[{"delta":{"content":"event-two"}}]}\n\n'
    with RawUpstream(Reply(head + chunk(event1), release,
                           chunk(event2) + chunk(b"data: [DONE]\n\n") + LAST_CHUNK)) as up:
        t = one_upstream(env, up)
        s = t.connect(timeout=WAIT_S)
        try:
            s.sendall(chat_request({"model": "r", "stream": True, "messages": []}))
            data = read_until(s, b"", b"event-one")
            assert b"event-one" in data, "event 1 was held back by the gateway: %r" % data[-300:]
            assert data.startswith(b"HTTP/1.1 200") and b"text/event-stream" in data.split(b"\r\n\r\n")[0], data
            assert b"event-two" not in data
            release.set()
            data = read_until(s, data, b"\r\n0\r\n\r\n")
        finally:
            release.set()
            s.close()
        harness.check_reply(t.port, data)
        assert data.endswith(b"\r\n0\r\n\r\n") and b"event-two" in data and b"data: [DONE]" in data, data[-300:]
        assert json.loads(up.requests[0].body)["stream"] is True


# --- names, and answers before the request is sent ----------------------------

def localhost_address():
    """The first address /etc/hosts gives "localhost" (127.0.0.1 if none)."""
    with open("/etc/hosts") as f:
        for line in f:
            words = line.split("#")[0].split()
            if len(words) > 1 and "localhost" in words[1:]:
                return words[0]
    return "127.0.0.1"


def test_base_url_with_a_host_name(env):
    """base_url http://localhost:PORT: the name is resolved (/etc/hosts) and sent as the Host."""
    with RawUpstream(Reply(OK), host=localhost_address()) as up:
        t = gateway(env, provider("raw", up.base_url("localhost")))
        assert_ok(chat(t))
        assert up.requests[0].get("host") == "localhost:%d" % up.port, up.requests[0]


def test_early_response_before_the_request_body_is_sent(env):
    """The upstream refuses a 900 KB body after its headers: 413, Connection:
    close, then it closes without reading the body (so its kernel resets the
    connection under the body still arriving).

    The current binary relays the 413 and its body as they are (413 is the
    caller's error, not a failover status; libcurl stops sending once the
    final answer is in): 100 runs out of 100. It does not hang, and the next
    request is served on a new connection."""
    refused = b'{"error":{"message":"too big","type":"invalid_request_error","param":null,"code":"big"}}'
    refusal = response(413, [JSON, (b"Connection", b"close")], refused, reason=b"Payload Too Large")
    big = json.dumps({"model": "r", "messages": [{"role": "user", "content": "x" * 900_000}]}).encode()
    with RawUpstream([Reply(refusal, end="close", read_body=False), Reply(OK)]) as up:
        t = one_upstream(env, up)
        st, h, data = t.request("POST", "/v1/chat/completions", big, {"Content-Type": "application/json"},
                                timeout=WAIT_S)
        assert (st, data) == (413, refused), (st, data[:300])
        assert h["x-turnout-attempts"] == "1", h
        assert up.requests[0].get("content-length") == str(len(big)), up.requests[0]
        assert_ok(chat(t))
        assert up.accepted == 2, up.accepted


# --- response integrity: bytes nobody asked for are never an answer -----------------

def answer(tag):
    """A complete 200 whose body names TAG, so a test can tell whose answer a client got."""
    return response(headers=[JSON], body=b'{"id":"%s","object":"chat.completion","choices":[]}' % tag)


def body_id(reply):
    st, h, data = reply
    assert st == 200, (st, data[:300])
    return json.loads(data)["id"]


WRONG = answer(b"unsolicited")


def test_unsolicited_bytes_on_an_idle_connection_are_never_an_answer(env):
    """After answering request 1 the upstream writes more, 200 ms later, while
    the connection idles in the pool: 3 stray bytes, or a whole well-formed
    answer. Request 2 must get its own answer (on a new connection), never
    those bytes, and every request after it too."""
    for stray in (b"BAD", WRONG):
        with RawUpstream([Reply(answer(b"one"), 0.2, stray), Reply(answer(b"two")), Reply(answer(b"three"))]) as up:
            t = one_upstream(env, up)
            assert body_id(chat(t)) == "one"
            up.wait(lambda: True, "nothing")
            time.sleep(0.4)                    # the stray bytes are in, the connection idles
            assert body_id(chat(t)) == "two", stray
            assert body_id(chat(t)) == "three", stray
            assert up.accepted == 2 and [r.conn for r in up.requests] == [0, 1, 1], (stray, up.accepted)
            up.wait(lambda: 0 in up.peer_closed, "the gateway to close the connection that had stray bytes")


def test_bytes_after_a_complete_answer_close_the_connection(env):
    """The stray answer comes in the same write as request 1's answer: the
    connection is closed with it, and request 2 gets its own answer."""
    for stray in (b"BAD", WRONG):
        with RawUpstream([Reply(answer(b"one") + stray), Reply(answer(b"two"))]) as up:
            t = one_upstream(env, up)
            assert body_id(chat(t)) == "one"
            assert body_id(chat(t)) == "two", stray
            assert up.accepted == 2 and [r.conn for r in up.requests] == [0, 1], (stray, up.accepted)


def test_stray_bytes_after_a_large_answer_are_never_an_answer(env):
    """A 100 KB answer (several reads), then a stray answer 50 ms later; the
    next request comes 100 ms after the big answer, when the stray bytes
    wait on the pooled connection: it gets its own answer, and so does every
    request after it. (A request written before stray bytes arrive cannot be
    told from their answer in HTTP/1.1, by any client: see the README.)"""
    big = response(headers=[JSON], body=b'{"id":"big","pad":"' + b"p" * 100_000 + b'"}')
    script = [Reply(big, 0.05, WRONG)] + [Reply(answer(b"n%d" % i)) for i in range(1, 10)]
    with RawUpstream(script) as up:
        t = one_upstream(env, up)
        assert body_id(chat(t)) == "big"
        time.sleep(0.1)
        for i in range(1, 10):
            assert body_id(chat(t)) == "n%d" % i, i
        assert up.accepted == 2, up.accepted


def test_bytes_waiting_when_a_request_is_written_are_never_its_answer(env):
    """The stray answer reaches the gateway while it is busy reading a large
    request (8 MB of JSON takes it milliseconds to check), after its loop last
    looked at the idle connection and before it writes the request there.
    The request must not be paired with those bytes."""
    go = threading.Event()
    with RawUpstream([Reply(answer(b"one"), go, WRONG), Reply(answer(b"two"))]) as up:
        t = one_upstream(env, up, config={"limits": {"max_body_bytes": 16 << 20}})
        assert body_id(chat(t)) == "one"
        up.wait(lambda: len(up.requests) == 1, "request 1")
        body = json.dumps({"model": "r", "messages": [{"role": "user", "content": "x" * (8 << 20)}]}).encode()
        s = t.connect(timeout=WAIT_S)
        try:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body[:-1])
            time.sleep(0.3)
            s.sendall(body[-1:])
            time.sleep(0.002)
            go.set()
            data = read_until(s, b"", b"}}", timeout=WAIT_S)
            data = read_until(s, data, b'"choices":[]}', timeout=0.5)
        finally:
            s.close()
        st = harness.status_of(data)
        if st == 200:
            assert b'"id":"two"' in data, data[-300:]
        else:
            assert st == 502, data[:300]
        assert b"unsolicited" not in data, data[-300:]


# --- what both clients refuse, and what they skip ------------------------------------

def test_trailer_fields_are_never_reply_headers(env):
    """A chunked answer's trailer is dropped: it never becomes a header of the client's reply."""
    framed = (response(headers=[JSON, (b"Transfer-Encoding", b"chunked"), (b"Trailer", b"X-Trailer")], length=False)
              + chunk(OK_BODY) + b"0\r\nX-Trailer: injected\r\nX-Other: also\r\n\r\n")
    with RawUpstream([Reply(framed), Reply(OK)]) as up:
        t = one_upstream(env, up)
        h = assert_ok(chat(t))
        assert "x-trailer" not in h and "x-other" not in h, h
        assert_ok(chat(t))


def test_bad_chunk_size_is_an_upstream_error(env):
    """"0x10" is no chunk size: reading it as 0 would make the body's own
    lines a trailer (and, relayed, reply headers). It is an upstream_error,
    and so are a size with trailing junk and a negative one."""
    head = response(headers=[(b"Content-Type", b"text/event-stream"), (b"Transfer-Encoding", b"chunked")],
                    length=False)
    for size in (b"0x10", b"10zz", b"-5"):
        bad = head + size + b'\r\ndata: {"a":1}\r\nX-Injected: yes\r\n\r\n'
        assert_refused_then_recovers(env, bad)


def test_cut_or_switched_heads_are_upstream_errors(env):
    """A head cut in the middle of a header line, then the close; a 101
    Switching Protocols (turnout asked for no upgrade) followed by a 200; a
    status line that is not HTTP/1.x NNN. Each is a 502, never a 200."""
    for bad in (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Le",
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + OK,
                b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}",
                b"HTTP/2 200\r\nContent-Length: 2\r\n\r\n{}",
                b"HTTP/1.1 200\tOK\r\nContent-Length: 2\r\n\r\n{}"):
        assert_refused_then_recovers(env, bad)


def test_many_interim_answers_are_skipped(env):
    """1,000 interim 102 and 103 answers before the 200 (28 KB of heads): both clients skip them all."""
    interim = b"".join(b"HTTP/1.1 102 Processing\r\n\r\n" if i % 2 else
                       b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" for i in range(1000))
    with RawUpstream(Reply(interim, OK)) as up:
        t = one_upstream(env, up)
        h = assert_ok(chat(t))
        assert "link" not in h, h


# --- a head that trickles -------------------------------------------------------------

def slow_head(status_line_first=True):
    """A 200 whose status line comes at once and whose other head lines trickle in at 30 bytes/s (~3 s)."""
    rest = b"Content-Type: application/json\r\nX-Slow: " + b"s" * 40 + b"\r\nX-More: 1\r\n"
    return [b"HTTP/1.1 200 OK\r\n"] + dribble(rest, 3, 0.1) + [b"Content-Length: %d\r\n\r\n" % len(OK_BODY), OK_BODY]


def test_first_byte_limit_times_the_first_byte_only(env):
    """first_byte_s is from the request to the answer's first byte: a status
    line at once, then a head that takes 3 s, passes a 1 s first-byte limit
    (the rest of the head is bounded by idle_s, 5 s here), and the access log's
    ttfb is that of the status line."""
    with RawUpstream(Reply(*slow_head())) as up:
        t = one_upstream(env, up, config={"upstream": {"first_byte_s": 1, "idle_s": 5}})
        t0 = time.time()
        h = assert_ok(chat(t))
        assert time.time() - t0 > 2.5 and h["x-slow"] == "s" * 40, h
        entry = t.access_log("/v1/chat/completions")[-1]
        assert entry["ttfb_ms"] < 900, entry


def test_a_head_slower_than_idle_s_is_an_idle_timeout(env):
    """The same 3 s head with idle_s 1: 504 upstream_idle_timeout after about 1 s, not a first-byte timeout."""
    with RawUpstream(Reply(*slow_head())) as up:
        t = one_upstream(env, up, config={"upstream": {"first_byte_s": 10, "idle_s": 1}})
        t0 = time.time()
        st, h, data = chat(t)
        assert st == 504 and json.loads(data)["error"]["code"] == "upstream_idle_timeout", (st, data[:300])
        assert 0.9 < time.time() - t0 < 2.5, time.time() - t0


def test_a_head_line_starting_with_whitespace_after_an_answer(env):
    """Found by test/fuzz/upstream_fuzz.py: an answer, then one whose first
    header line starts with a tab (an obsolete fold of nothing) on the same
    worker. libcurl 7.88 read a freed header of the first answer there when
    it reused its easy handle, and crashed; both clients must refuse it with
    a 502 and serve the next request."""
    fold = b"HTTP/1.1 200 OK\r\n\tX-Lead: 1\r\nContent-Length: 2\r\n\r\n{}"
    with RawUpstream([Reply(OK), Reply(fold, end="close"), Reply(OK)]) as up:
        t = one_upstream(env, up)
        assert_ok(chat(t))
        assert_upstream_error(chat(t))
        assert_ok(chat(t))
        assert t.request("GET", "/healthz")[0] == 200
