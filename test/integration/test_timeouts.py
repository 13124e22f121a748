"""Upstream timeouts before the first byte: connect and first byte, each with its own code, and failover past them."""
import json
import socket
import time

from harness import seed_for


class Blackhole:
    """A listener whose accept queue is full, so new connections hang in SYN-SENT."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        port = self.sock.getsockname()[1]
        self.held = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            self.held.append(c)
        time.sleep(0.1)
        self.name = "blackhole"
        self.base_url = "http://127.0.0.1:%d/v1" % port

    def close(self):
        for c in self.held + [self.sock]:
            c.close()


def route(*providers):
    return seed_for(*providers, routes=[{"name": "r", "strategy": "fallback",
                                          "targets": [{"provider": p.name, "model": "mock-small"} for p in providers]}])


def test_connect_timeout(env):
    hole = Blackhole()
    try:
        m = env.mock()
        t = env.turnout(route(hole, m), config={"upstream": {"connect_ms": 300}})
        t0 = time.time()
        st, h, body = t.chat("r")
        assert st == 200 and h["x-turnout-provider"] == "mock" and h["x-turnout-attempts"] == "2", (st, h)
        assert 0.25 < time.time() - t0 < 1.5
        t2 = env.turnout(route(hole), config={"upstream": {"connect_ms": 300}}, name="t2")
        t0 = time.time()
        st, h, body = t2.chat("r")
        err = json.loads(body)["error"]
        assert st == 504 and err["code"] == "upstream_connect_timeout", (st, body)
        assert "blackhole/mock-small" in err["message"]
        assert 0.25 < time.time() - t0 < 1.5
    finally:
        hole.close()


def test_first_byte_timeout(env):
    slow = env.mock("--delay-ms", "3000", name="slow")
    fast = env.mock(name="fast")
    t = env.turnout(route(slow, fast), config={"upstream": {"first_byte_s": 1}})
    t0 = time.time()
    st, h, _ = t.chat("r")
    assert st == 200 and h["x-turnout-provider"] == "fast", (st, h)
    assert 0.9 < time.time() - t0 < 2.0
    t2 = env.turnout(route(slow), config={"upstream": {"first_byte_s": 1}}, name="t2")
    t0 = time.time()
    st, _, body = t2.chat("r")
    assert st == 504 and json.loads(body)["error"]["code"] == "upstream_first_byte_timeout", body
    assert 0.9 < time.time() - t0 < 2.0
    log = t2.access_log("/v1/chat/completions")
    assert [e["error"] for e in log] == ["upstream_first_byte_timeout"], log


def test_total_deadline_stops_failover(env):
    """No new attempt starts once the request's total time is spent."""
    slow1 = env.mock("--delay-ms", "1500", name="slow1")
    slow2 = env.mock("--delay-ms", "1500", name="slow2")
    t = env.turnout(route(slow1, slow2), config={"upstream": {"first_byte_s": 5, "total_s": 1}})
    t0 = time.time()
    st, h, body = t.chat("r")
    assert st == 504 and json.loads(body)["error"]["code"] == "upstream_total_timeout", body
    assert 0.9 < time.time() - t0 < 2.0
    assert h["x-turnout-attempts"] == "1" and slow2.log() == []
