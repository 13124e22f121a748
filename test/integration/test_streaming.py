"""SSE relay: per-event latency, backpressure, the commit point, and streams that outlive read timeouts."""
import json
import re
import socket
import threading
import time

from harness import chat_request, connect, rss_kb, seed_for

SENT = re.compile(rb'"sent_ms":([0-9.]+)\}')


def stream_route(*mocks):
    targets = [{"provider": m.name, "model": "mock-small"} for m in mocks]
    return seed_for(*mocks, routes=[{"name": "s", "strategy": "fallback", "targets": targets}])


def open_stream(port, extra=b"", version="1.1"):
    s = connect(port, timeout=10, nodelay=True)
    s.sendall(chat_request({"model": "s", "stream": True, "messages": []}, version, extra))
    return s


def read_all(s, timeout=10):
    """Reads until the server closes or the stream's last chunk; returns (bytes, [(recv_ms, sent_ms)])."""
    data, seen, marks = b"", 0, []
    deadline = time.time() + timeout
    s.settimeout(timeout)
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        now = time.time() * 1000
        if not chunk:
            break
        data += chunk
        found = SENT.findall(data)
        for v in found[seen:]:
            marks.append((now, float(v)))
        seen = len(found)
        if data.endswith(b"0\r\n\r\n"):
            break
    return data, marks


def test_events_reach_the_client_as_they_are_sent(env):
    m = env.mock("--stream-events", "20", "--stream-interval-ms", "100")
    t = env.turnout(stream_route(m))
    s = open_stream(t.port)
    data, marks = read_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"text/event-stream" in data.split(b"\r\n\r\n")[0]
    assert len(marks) == 20, len(marks)
    assert b"data: [DONE]" in data
    lags = [recv - sent for recv, sent in marks]
    # each event within 20 ms of the mock writing it (no added buffering)
    assert max(lags) < 20, "relay lag per event (ms): %s" % ["%.1f" % x for x in lags]
    print("    relay lag per event: median %.2f ms, max %.2f ms" % (sorted(lags)[len(lags) // 2], max(lags)))
    # and spread over ~2 s as sent, not delivered in a burst at the end
    assert marks[-1][0] - marks[0][0] > 1500


def slow_reader(s, rate_bps, limit_s):
    """Reads at about RATE_BPS until the stream ends; returns total bytes."""
    total, t0, tail = 0, time.time(), b""
    s.settimeout(10)
    while time.time() - t0 < limit_s:
        want = total - rate_bps * (time.time() - t0)
        if want > 0:
            time.sleep(want / rate_bps)
        chunk = s.recv(65536)
        if not chunk:
            break
        total += len(chunk)
        tail = (tail + chunk)[-64:]
        if tail.endswith(b"0\r\n\r\n"):
            break
    return total, tail


def run_backpressure(env, build, events, rate_bps, limit_s):
    m = env.mock("--stream-events", str(events), "--event-bytes", "65536", "--stream-interval-ms", "0")
    t = env.turnout(stream_route(m), build=build, config={"workers": 1})
    base_rss = rss_kb(t.proc.pid)
    peak = [base_rss]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(t.proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    s = connect(t.port, rcvbuf=256 * 1024)
    s.sendall(chat_request({"model": "s", "stream": True, "messages": []}))
    t0 = time.time()
    try:
        total, tail = slow_reader(s, rate_bps, limit_s)
    finally:
        done.set()
        sampler.join()
        s.close()
    return total, tail, time.time() - t0, base_rss, peak[0]


def test_backpressure_keeps_memory_bounded(env):
    """A 200 MB stream to a client reading 5 MB/s: the gateway stays under 32 MB RSS."""
    import harness
    total, tail, took, base, peak = run_backpressure(env, harness.RELEASE_BUILD, 3200, 5_000_000, 80)
    assert total > 200_000_000, total
    assert tail.endswith(b"0\r\n\r\n") and b"[DONE]" in tail, tail
    assert took > 35, "the client read 200 MB in %.1f s: it was not throttled" % took
    assert peak < 32 * 1024, "peak RSS %d kB (at start %d kB)" % (peak, base)
    print("    backpressure: %.0f MB in %.1f s, RSS %d kB at start, peak %d kB" % (total / 1e6, took, base, peak))


test_backpressure_keeps_memory_bounded.bound = 120


def test_backpressure_under_sanitizers(env):
    """The pause/resume path itself, under ASan+UBSan: 20 MB at 5 MB/s arrives whole."""
    import harness
    total, tail, took, _, _ = run_backpressure(env, harness.BUILD, 320, 5_000_000, 30)
    assert total > 20_000_000 and tail.endswith(b"0\r\n\r\n") and b"[DONE]" in tail, (total, tail)
    assert took > 3, took


def assert_cut_stream(env, mock_flags, expect_code, config=None):
    bad = env.mock("--stream-events", "10", "--stream-interval-ms", "20", *mock_flags, name="bad")
    good = env.mock("--stream-events", "3", name="good")
    t = env.turnout(stream_route(bad, good), config=config)
    s = open_stream(t.port)
    data, marks = read_all(s, timeout=10)
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    assert len(marks) == 3, (len(marks), data[-500:])
    assert b"[DONE]" not in data, data[-500:]
    assert b"event: error" in data, data[-500:]
    err = data[data.index(b"event: error"):]
    payload = json.loads(err.split(b"data: ", 1)[1].split(b"\n", 1)[0])
    assert payload["error"]["code"] == expect_code, payload
    assert data.endswith(b"0\r\n\r\n"), "the chunked reply must end cleanly after the error event"
    assert good.log() == [], "the fallback target must receive nothing after the commit point"
    chat = t.access_log("/v1/chat/completions")
    assert chat and chat[-1]["error"] == expect_code and chat[-1]["status"] == 200, chat


def test_upstream_close_mid_stream_ends_with_error_event(env):
    assert_cut_stream(env, ["--close-after", "3"], "upstream_error")


def test_upstream_reset_mid_stream_ends_with_error_event(env):
    assert_cut_stream(env, ["--reset-after", "3"], "upstream_error")


def test_upstream_silence_mid_stream_ends_with_idle_timeout(env):
    assert_cut_stream(env, ["--stall-after", "3"], "upstream_idle_timeout", {"upstream": {"idle_s": 1}})


def test_flowing_stream_outlives_every_read_timeout(env):
    """A 3.5 s stream with every timeout at 1 s: events keep flowing, so nothing fires."""
    m = env.mock("--stream-events", "35", "--stream-interval-ms", "100")
    t = env.turnout(stream_route(m), config={"limits": {"header_timeout_s": 1, "idle_timeout_s": 1},
                                              "upstream": {"idle_s": 1, "first_byte_s": 1}})
    s = open_stream(t.port)
    data, marks = read_all(s, timeout=10)
    s.close()
    assert len(marks) == 35 and b"data: [DONE]" in data, (len(marks), data[-300:])


def test_total_timeout_ends_a_long_stream(env):
    m = env.mock("--stream-events", "50", "--stream-interval-ms", "100")
    t = env.turnout(stream_route(m), config={"upstream": {"total_s": 1}})
    t0 = time.time()
    s = open_stream(t.port)
    data, marks = read_all(s, timeout=10)
    s.close()
    assert 0.9 < time.time() - t0 < 2.5
    assert 5 <= len(marks) <= 12, len(marks)
    assert b'"code":"upstream_total_timeout"' in data and b"[DONE]" not in data


def test_http10_client_gets_an_unchunked_stream(env):
    m = env.mock("--stream-events", "5")
    t = env.turnout(stream_route(m))
    s = open_stream(t.port, version="1.0")
    data, marks = read_all(s, timeout=10)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    assert b"transfer-encoding" not in head.lower(), head
    assert len(marks) == 5 and body.endswith(b"data: [DONE]\n\n"), body[-200:]
    assert body.startswith(b"data: {"), body[:50]   # no chunk-size lines


def test_http10_client_gets_a_plain_reply(env):
    m = env.mock()
    t = env.turnout(stream_route(m))
    s = connect(t.port, timeout=5)
    s.sendall(chat_request({"model": "s", "messages": []}, "1.0"))
    data, _ = read_all(s, timeout=5)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"transfer-encoding" not in head.lower(), head
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    assert len(body) == length and json.loads(body)["object"] == "chat.completion"
