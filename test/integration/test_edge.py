"""The HTTP edge: request lines split at every byte, keep-alive, concurrent clients."""
import json
import socket
import threading
import time

from harness import connect, http_connection, seed_for


def start(env):
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "fast-summariser", "targets": [{"provider": "mock", "model": "mock-small"}]}])
    return m, env.turnout(seed)


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def split_everywhere(port, request):
    """Sends REQUEST in two writes split at every offset of its request line; returns the wrong ones."""
    line_end = request.index(b"\r\n") + 2
    wrong = []
    for cut in range(1, line_end + 1):
        s = connect(port, timeout=5, nodelay=True)
        s.sendall(request[:cut])
        time.sleep(0.005)
        s.sendall(request[cut:])
        try:
            resp = read_response(s)
        except socket.timeout:
            resp = b"timeout"
        s.close()
        if not resp.startswith(b"HTTP/1.1 200"):
            wrong.append((cut, resp[:60]))
    return wrong


def test_request_line_split_at_every_offset(env):
    m, t = start(env)
    assert split_everywhere(t.port, b"GET /healthz?probe=1&x=yz HTTP/1.1\r\nHost: x\r\n\r\n") == []
    body = b'{"model":"fast-summariser","messages":[]}'
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body) + body)
    wrong = split_everywhere(t.port, req)
    assert wrong == [], wrong
    assert len(m.log()) == req.index(b"\r\n") + 2


def test_keep_alive_two_requests_one_connection(env):
    m, t = start(env)
    c = http_connection(t.port, timeout=5)
    for _ in range(3):
        c.request("POST", "/v1/chat/completions", body=b'{"model":"fast-summariser"}',
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["model"] == "mock-small"
    c.request("GET", "/v1/nope")
    r = c.getresponse()
    assert r.status == 404
    r.read()
    c.close()


def test_concurrent_clients(env):
    m, t = start(env)
    results = []
    lock = threading.Lock()

    def client():
        c = http_connection(t.port, timeout=10)
        for _ in range(25):
            c.request("POST", "/v1/chat/completions", body=b'{"model":"fast-summariser"}',
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            with lock:
                results.append(r.status)
        c.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert results.count(200) == 200, results
    assert len(m.log()) == 200


def test_garbage_request_line_is_answered_400(env):
    m, t = start(env)
    s = connect(t.port, timeout=5)
    s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
    data = read_response(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 400"), data
    assert t.request("GET", "/healthz")[0] == 200
