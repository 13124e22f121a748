"""The hardened HTTP edge: every malformed request gets a 4xx before the close, pipelining, client timeouts, connection limits."""
import json
import re
import socket
import threading
import time

from harness import connect, raw_exchange, read_to_close, seed_for, status_of


def start(env, **config):
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-small"}]}])
    return m, env.turnout(seed, config=config or None)


def assert_refused(port, request, status, code):
    raw, closed = raw_exchange(port, request)
    assert status_of(raw) == status, (request[:80], raw[:300])
    assert closed, "the connection must close after the error"
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    err = json.loads(body)["error"]
    assert err["code"] == code and err["message"], err
    return err


def post(headers, body=b'{"model":"r"}'):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" +
            headers + b"\r\n" + body)


def test_malformed_framing_is_answered(env):
    m, t = start(env)
    assert_refused(t.port, b"NOT A REQUEST\r\n\r\n", 400, "bad_request")
    assert_refused(t.port, b"GET / HTTP/9.9x\r\n\r\n", 400, "bad_request")
    assert_refused(t.port, b"GET /healthz HTTP/1.1\nHost: t\n\n", 400, "bad_request")   # bare LF
    assert_refused(t.port, post(b"Content-Length: 1x\r\n"), 400, "bad_request")
    assert_refused(t.port, post(b"Content-Length: -13\r\n"), 400, "bad_request")
    e = assert_refused(t.port, post(b"Content-Length: 13\r\nContent-Length: 13\r\n"), 400, "bad_request")
    assert "Content-Length" in e["message"]
    assert_refused(t.port, post(b"Content-Length: 13\r\nContent-Length: 14\r\n"), 400, "bad_request")
    e = assert_refused(t.port, post(b"Content-Length: 13\r\nTransfer-Encoding: chunked\r\n"), 400, "bad_request")
    assert "Transfer-Encoding" in e["message"]
    assert_refused(t.port, post(b"Transfer-Encoding: chunked\r\nContent-Length: 13\r\n"), 400, "bad_request")
    assert_refused(t.port, post(b"Transfer-Encoding: gzip\r\n"), 501, "not_implemented")
    assert_refused(t.port, post(b"Transfer-Encoding: gzip, chunked\r\n"), 501, "not_implemented")
    assert_refused(t.port, post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"), 400, "bad_request")
    # a chunk size past 64 bits must not wrap around
    assert_refused(t.port, post(b"Transfer-Encoding: chunked\r\n", b"1" + b"0" * 16 + b"\r\nab"), 400, "bad_request")
    assert m.log() == [], "nothing malformed may reach the provider"
    assert t.request("GET", "/healthz")[0] == 200


def test_chunked_request_body_works_and_is_capped(env):
    m, t = start(env, limits={"max_body_bytes": 1000})
    body = b'{"model":"r","messages":[]}'
    ok = post(b"Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    raw, _ = raw_exchange(t.port, ok, timeout=2)
    assert status_of(raw) == 200, raw[:300]
    big = b"400\r\n" + b"x" * 1024 + b"\r\n"
    assert_refused(t.port, post(b"Transfer-Encoding: chunked\r\n", big * 3 + b"0\r\n\r\n"), 413, "request_too_large")
    assert len(m.log()) == 1


def test_long_request_line_and_headers(env):
    m, t = start(env, limits={"max_header_bytes": 4096, "max_headers": 20})
    assert_refused(t.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long")
    assert_refused(t.port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "headers_too_large")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(21))
    e = assert_refused(t.port, b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n", 431, "headers_too_large")
    assert "too many" in e["message"]
    fat = b"".join(b"X-F%d: %s\r\n" % (i, b"f" * 500) for i in range(9))
    assert_refused(t.port, b"GET /healthz HTTP/1.1\r\n" + fat + b"\r\n", 431, "headers_too_large")
    # just under both limits is fine
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(19))
    raw, _ = raw_exchange(t.port, b"GET /healthz HTTP/1.1\r\n" + ok + b"Connection: close\r\n\r\n")
    assert status_of(raw) == 200, raw[:200]


def test_slow_headers_get_408_while_others_are_served(env):
    m, t = start(env, limits={"header_timeout_s": 3})
    result = {}

    def slowloris():
        s = connect(t.port, timeout=10)
        t0 = time.time()
        data = b""
        request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 20
        try:
            for byte in request:
                s.sendall(bytes([byte]))
                s.settimeout(2)
                try:
                    chunk = s.recv(4096)
                    if chunk:
                        data += chunk
                    while chunk:
                        s.settimeout(1)
                        chunk = s.recv(4096)
                        data += chunk
                    break
                except socket.timeout:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            pass
        result["took"] = time.time() - t0
        result["data"] = data
        s.close()

    th = threading.Thread(target=slowloris)
    th.start()
    served = []
    t0 = time.time()
    while th.is_alive() and time.time() - t0 < 8:
        st, _, _ = t.request("POST", "/v1/chat/completions", {"model": "r"}, timeout=2)
        served.append((st, time.time()))
        time.sleep(0.1)
    th.join(10)
    assert status_of(result["data"]) == 408, result
    assert b'"code":"request_timeout"' in result["data"]
    assert 2.9 < result["took"] < 4.6, result["took"]
    assert len(served) >= 15 and all(st == 200 for st, _ in served), served


def test_stalled_body_gets_408(env):
    m, t = start(env, limits={"idle_timeout_s": 1})
    t0 = time.time()
    raw, closed = raw_exchange(t.port, post(b"Content-Length: 100\r\n", b'{"model":'), timeout=5)
    assert status_of(raw) == 408 and closed, raw[:200]
    assert 0.9 < time.time() - t0 < 2.5
    assert m.log() == []


def test_idle_keep_alive_connection_is_closed(env):
    m, t = start(env, limits={"idle_timeout_s": 1, "header_timeout_s": 2})
    s = connect(t.port, timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    first = s.recv(4096)
    assert status_of(first) == 200
    t0 = time.time()
    s.settimeout(5)
    assert s.recv(4096) == b"", "an idle keep-alive connection is closed without a reply"
    assert 0.8 < time.time() - t0 < 2.0
    s.close()
    # a connection that never sends anything is closed at header_timeout_s
    s = connect(t.port, timeout=5)
    t0 = time.time()
    assert s.recv(4096) == b""
    assert 1.8 < time.time() - t0 < 3.0
    s.close()


def test_a_busy_keep_alive_connection_outlives_every_client_timeout(env):
    """Requests every 50 ms on one connection for 3.5 s, with the header and
    idle limits at 1 s: the connection's timer fires several times while
    requests come and go, and closes nothing; once the requests stop, the
    connection is closed 1 s later."""
    m, t = start(env, limits={"idle_timeout_s": 1, "header_timeout_s": 1})
    s = connect(t.port, timeout=5)
    end, n = time.time() + 3.5, 0
    while time.time() < end:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status_of(s.recv(4096)) == 200, n
        n += 1
        time.sleep(0.05)
    t0 = time.time()
    assert s.recv(4096) == b"", "an idle keep-alive connection is closed without a reply"
    assert 0.8 < time.time() - t0 < 2.0, time.time() - t0
    s.close()
    assert n > 40, n


def test_pipelined_requests_answered_in_order(env):
    m, t = start(env)
    body = b'{"model":"r"}'
    reqs = b"".join(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nx-request-id: p%d\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body)
                    for i in (1, 2))
    reqs += b"GET /healthz HTTP/1.1\r\nx-request-id: p3\r\n\r\n"
    reqs += b"GET /v1/nowhere HTTP/1.1\r\nx-request-id: p4\r\nConnection: close\r\n\r\n"
    raw, closed = raw_exchange(t.port, reqs, timeout=5)
    assert closed
    ids = [line.split(b":")[1].strip() for line in raw.split(b"\r\n") if line.lower().startswith(b"x-request-id")]
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
    assert ids == [b"p1", b"p2", b"p3", b"p4"], raw
    assert statuses == [200, 200, 200, 404], statuses
    assert len(m.log()) == 2


def test_chunked_request_with_trailer_fields_then_a_pipelined_one(env):
    """A chunked body's trailer section of two fields ends at its empty line
    (libevhtp patch 0009, fuzz_http_request): the request ended after the
    first field, the second was read as the next request line, and a stray
    400 went out in place of the next request's answer."""
    m, t = start(env)
    body = b'{"model":"r","messages":[{"role":"user","content":"hi"}]}'
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nx-request-id: c1\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n" % (len(body), body))
    req += b"GET /healthz HTTP/1.1\r\nx-request-id: c2\r\nConnection: close\r\n\r\n"
    raw, closed = raw_exchange(t.port, req, timeout=5)
    assert closed
    ids = [line.split(b":")[1].strip() for line in raw.split(b"\r\n") if line.lower().startswith(b"x-request-id")]
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
    assert ids == [b"c1", b"c2"] and statuses == [200, 200], raw
    assert len(m.log()) == 1


def test_a_pipelined_flood_is_answered_whole_and_in_order(env):
    """2,000 requests sent at once (80 KB, more than the 64 KB a connection
    reads ahead of the request it is answering): every one is answered, in
    order, on the one connection."""
    m, t = start(env)
    n = 2000
    reqs = b"".join(b"GET /healthz HTTP/1.1\r\nx-request-id: f%d\r\n\r\n" % i for i in range(n))
    s = connect(t.port, timeout=10)
    sender = threading.Thread(target=s.sendall, args=(reqs,))
    sender.start()
    raw, deadline = b"", time.time() + 20
    while raw.count(b"HTTP/1.1 200 ") < n and time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
    sender.join()
    s.close()
    ids = re.findall(rb"x-request-id: (f\d+)\r\n", raw, re.I)
    assert ids == [b"f%d" % i for i in range(n)], (len(ids), ids[-3:])
    assert raw.count(b"HTTP/1.1 200 ") == n


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(env):
    """A 20 MB stream to a client that reads nothing for 3 s: after
    limits.send_timeout_s (1 s) without progress the connection is closed,
    so what the client reads afterwards ends early, without the stream's
    end; a client that reads on gets the whole stream (the other half)."""
    m = env.mock("--stream-events", "320", "--event-bytes", "65536", "--stream-interval-ms", "0")
    t = env.turnout(seed_for(m, routes=[{"name": "s", "targets": [{"provider": m.name, "model": "mock-small"}]}]),
                    config={"workers": 1, "limits": {"send_timeout_s": 1}})
    body = json.dumps({"model": "s", "stream": True, "messages": []}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def fetch(pause):
        s = connect(t.port, rcvbuf=64 * 1024)
        s.sendall(request)
        time.sleep(pause)
        data, deadline = b"", time.time() + 30
        s.settimeout(5)
        while time.time() < deadline:
            try:
                chunk = s.recv(1 << 20)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            if data.endswith(b"0\r\n\r\n"):
                break
        s.close()
        return data

    cut = fetch(3)
    assert cut.startswith(b"HTTP/1.1 200"), cut[:200]
    assert not cut.endswith(b"0\r\n\r\n") and len(cut) < 10_000_000, (len(cut), cut[-100:])
    whole = fetch(0)
    assert len(whole) > 20_000_000 and whole.endswith(b"0\r\n\r\n") and b"[DONE]" in whole[-200:], len(whole)


def test_a_half_closed_client_gets_its_refusal_and_gives_up_a_request(env):
    """A client that sends a malformed request and shuts its sending side at
    once (shutdown(SHUT_WR)) still reads the whole 400: the close is taken
    only once the answer is out. A half-close during a request being served
    is the client giving up, as with nginx's default
    (proxy_ignore_client_abort off): the upstream call stops, 499 in the log."""
    m, t = start(env)

    def half_closed(request):
        s = connect(t.port, timeout=5)
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        raw, closed, reset = read_to_close(s, timeout=5)
        s.close()
        assert closed and not reset, (raw[:200], closed, reset)
        return raw

    raw = half_closed(b"NOT A REQUEST\r\n\r\n")
    assert status_of(raw) == 400 and json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request", raw
    assert half_closed(post(b"Content-Length: 13\r\n")) == b""
    chat = t.access_log("/v1/chat/completions")
    assert chat and chat[-1]["status"] == 499 and chat[-1]["error"] == "client_closed", chat


def test_connection_limit_refuses_cleanly_and_health_still_answers(env):
    m, t = start(env, workers=1, limits={"max_connections": 4})
    held = [connect(t.port, timeout=5) for _ in range(4)]
    time.sleep(0.2)
    raw, closed = raw_exchange(t.port, post(b"Content-Length: 13\r\n"))
    assert status_of(raw) == 503 and closed, raw[:300]
    assert b'"code":"too_many_connections"' in raw and b"retry-after: 1" in raw.lower()
    raw, closed = raw_exchange(t.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(raw) == 200 and closed, raw[:300]
    for s in held:
        s.close()
    time.sleep(0.2)
    assert t.request("POST", "/v1/chat/completions", {"model": "r"})[0] == 200
    assert len(m.log()) == 1
