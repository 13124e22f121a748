"""Graceful stop: the listener closes at once, open streams finish, the process exits 0."""
import signal
import socket
import threading
import time

from harness import chat_request, connect, seed_for


def open_streams(port, n):
    socks = []
    for _ in range(n):
        s = connect(port, timeout=10)
        s.sendall(chat_request({"model": "s", "stream": True, "messages": []}))
        socks.append(s)
    return socks


def read_to_end(s, out, i):
    data = b""
    s.settimeout(15)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    out[i] = data
    s.close()


def stop_during_streams(env, events, grace):
    m = env.mock("--stream-events", str(events), "--stream-interval-ms", "100")
    seed = seed_for(m, routes=[{"name": "s", "targets": [{"provider": "mock", "model": "mock-small"}]}])
    t = env.turnout(seed, config={"limits": {"shutdown_grace_s": grace}})
    socks = open_streams(t.port, 50)
    for s in socks:                        # every stream has started
        s.settimeout(5)
        assert s.recv(1, socket.MSG_PEEK) == b"H"
    results = [None] * len(socks)
    readers = [threading.Thread(target=read_to_end, args=(s, results, i)) for i, s in enumerate(socks)]
    for r in readers:
        r.start()
    t0 = time.time()
    t.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        connect(t.port, timeout=1).close()
        refused = False
    except OSError:
        refused = True
    rc = t.proc.wait(grace + 10)
    took = time.time() - t0
    for r in readers:
        r.join(15)
    return refused, rc, took, results


def test_sigterm_lets_50_open_streams_finish(env):
    refused, rc, took, results = stop_during_streams(env, 20, 30)
    assert refused, "the listener must close at once"
    assert rc == 0
    done = [r for r in results if r and b"data: [DONE]" in r and r.endswith(b"0\r\n\r\n")]
    assert len(done) == 50, "%d of 50 streams finished" % len(done)
    assert took < 5, took


def test_grace_period_bounds_the_stop(env):
    refused, rc, took, results = stop_during_streams(env, 100, 1)
    assert refused and rc == 0
    assert 0.9 < took < 3.5, took
    assert all(r and b"[DONE]" not in r for r in results)
