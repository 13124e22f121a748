"""GET /metrics: the Prometheus exposition, checked by promtool and against counts the test knows."""
import json
import re
import subprocess
import threading
import time

from harness import http_request, seed_for

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def scrape(t):
    st, h, body = t.request("GET", "/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4"), (st, h)
    return body.decode()


def samples(text):
    """{(name, labels-text): value}; fails on a series printed twice."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, "not a sample line: %r" % line
        key = (m.group(1), m.group(2) or "")
        assert key not in out, "series printed twice: %r" % line
        out[key] = float(m.group(3))
    return out


def value(s, name, **labels):
    """The sample NAME whose labels include LABELS (exactly one must match)."""
    want = ['%s="%s"' % (k, v) for k, v in labels.items()]
    hits = [v for (n, l), v in s.items() if n == name and all(w in l for w in want)]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


def promtool(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode()


def test_metrics_count_what_happened(env):
    """Known traffic on two workers: requests by route/provider/status, attempts by
    result, failovers by reason, TTFB and duration histograms, A/B counts; each
    label set once (the workers' counts merged); promtool accepts it."""
    m = env.mock(name="good")
    b = env.mock(name="b")
    dead = {"name": "dead", "base_url": "http://127.0.0.1:9/v1", "models": [{"name": "m"}]}
    seed = seed_for(m, b, routes=[
        {"name": 'fail "over"', "targets": [{"provider": "dead", "model": "m"}, {"provider": "good", "model": "mock-small"}]},
        {"name": "split", "strategy": "ab", "targets": [{"provider": "good", "model": "mock-small", "weight": 50, "variant": "A"},
                                                        {"provider": "b", "model": "mock-small", "weight": 50, "variant": "B"}]},
    ])
    seed["providers"].append(dead)
    t = env.turnout(seed, config={"upstream": {"cooldown_after": 1000}})   # "dead" stays in the rotation
    before = samples(scrape(t))
    assert value(before, "turnout_build_info", version="0.1.0") == 1
    assert value(before, "turnout_workers") == 2

    def send(n, model, extra=None):
        for i in range(n):
            st, _, _ = t.chat(model, **(extra(i) if extra else {}))
            assert st == 200, st
    threads = [threading.Thread(target=send, args=(10, 'fail "over"')) for _ in range(4)]
    threads += [threading.Thread(target=send, args=(10, "split", lambda i: {"user": "u%d" % i}))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.chat("no-such-model")[0] == 404
    st, _, body = t.chat("good/mock-small", stream=True)
    assert st == 200 and b"[DONE]" in body

    text = scrape(t)
    rc, out = promtool(text)
    assert rc == 0, out
    s = samples(text)
    assert value(s, "turnout_requests_total", route='fail \\"over\\"', provider="good", status="200") == 40
    assert value(s, "turnout_requests_total", endpoint="chat", route="", provider="", status="404") == 1
    assert value(s, "turnout_requests_total", endpoint="chat", route="", provider="good", status="200") == 1
    assert value(s, "turnout_upstream_attempts_total", provider="dead", result="upstream_connect_error") == 40
    assert value(s, "turnout_failovers_total", route='fail \\"over\\"', reason="upstream_connect_error") == 40
    ab = {v: value(s, "turnout_ab_requests_total", route="split", variant=v) for v in ("A", "B")}
    assert ab["A"] + ab["B"] == 10 and ab["A"] > 0 and ab["B"] > 0, ab
    assert value(s, "turnout_requests_total", route="split", provider="good", status="200") == ab["A"]
    ok_attempts = value(s, "turnout_upstream_attempts_total", provider="good", model="mock-small", result="ok")
    assert ok_attempts == 40 + ab["A"] + 1
    assert value(s, "turnout_upstream_ttfb_seconds_count", provider="good", model="mock-small") == ok_attempts
    hist = value(s, "turnout_request_duration_seconds_count", endpoint="chat", route='fail \\"over\\"')
    assert hist == 40 and value(s, "turnout_request_duration_seconds_bucket", route='fail \\"over\\"', le="+Inf") == 40
    assert value(s, "turnout_request_duration_seconds_sum", route='fail \\"over\\"') > 0
    assert value(s, "turnout_route_in_flight", route='fail \\"over\\"') == 0
    assert value(s, "turnout_target_in_flight", route="split", provider="b") == 0
    # both workers served (each counts on its own; the scrape shows their sum once)
    lines = [e for e in t.access_log(count=53) if e["path"] == "/v1/chat/completions"]
    assert {e["worker"] for e in lines} == {0, 1}, "the load did not reach both workers"


def test_metrics_gauges_follow_live_state(env):
    """In-flight gauges while requests are open, and back to 0; a 429 with
    Retry-After shows as a retry, then the upstream as cooling until it ends."""
    slow = env.mock("--delay-ms", "1500", name="slow")
    limited = env.mock("--status", "429", "--retry-after", "3", name="limited")
    t = env.turnout(seed_for(slow, limited, routes=[
        {"name": "slow", "targets": [{"provider": "slow", "model": "mock-small"}]},
        {"name": "limited", "retry": {"max_429_retries": 0}, "targets": [{"provider": "limited", "model": "mock-small"}]},
    ]))
    results = []
    threads = [threading.Thread(target=lambda: results.append(t.chat("slow")[0])) for _ in range(6)]
    for th in threads:
        th.start()
    deadline = time.time() + 1.2
    while True:
        s = samples(scrape(t))
        try:
            if value(s, "turnout_target_in_flight", route="slow") == 6:
                break
        except AssertionError:
            pass
        assert time.time() < deadline, "the in-flight gauges never showed 6 open requests"
        time.sleep(0.05)
    assert value(s, "turnout_route_in_flight", route="slow") == 6
    assert value(s, "turnout_connections") >= 7          # the six, and this scrape
    for th in threads:
        th.join()
    assert results == [200] * 6
    s = samples(scrape(t))
    assert value(s, "turnout_route_in_flight", route="slow") == 0
    assert value(s, "turnout_target_in_flight", route="slow") == 0
    assert value(s, "turnout_upstream_ttfb_seconds_bucket", provider="slow", le="1") == 0
    assert value(s, "turnout_upstream_ttfb_seconds_bucket", provider="slow", le="2.5") == 6

    st, _, _ = t.chat("limited")
    assert st == 429
    s = samples(scrape(t))
    assert value(s, "turnout_upstream_attempts_total", provider="limited", result="upstream_rate_limited") == 1
    assert value(s, "turnout_upstream_cooling", provider="limited") == 1
    assert value(s, "turnout_upstream_cooling", provider="slow") == 0
    assert t.chat("limited")[0] == 429                   # passed over while it cools
    s = samples(scrape(t))
    assert value(s, "turnout_upstream_skipped_total", provider="limited", reason="cooling_down") == 1
    assert value(s, "turnout_upstream_attempts_total", provider="limited", result="upstream_rate_limited") == 1
    rc, out = promtool(scrape(t))
    assert rc == 0, out


def test_metrics_cooldowns_and_retries(env):
    """cooldown_after failures in a row start a cooldown: counted, and logged at warn;
    a 429 retried after its Retry-After is counted as a retry."""
    bad = env.mock("--status", "500", name="bad")
    flaky = env.mock("--status", "429", "--retry-after", "0.2", "--fail-first", "1", name="flaky")
    t = env.turnout(seed_for(bad, flaky, routes=[
        {"name": "bad", "targets": [{"provider": "bad", "model": "mock-small"}]},
        {"name": "flaky", "targets": [{"provider": "flaky", "model": "mock-small"}]},
    ]), config={"upstream": {"cooldown_after": 3, "cooldown_s": 30}})
    for _ in range(3):
        assert t.chat("bad")[0] == 502
    assert t.chat("flaky")[0] == 200
    s = samples(scrape(t))
    assert value(s, "turnout_upstream_cooldowns_total", provider="bad") == 1
    assert value(s, "turnout_upstream_cooling", provider="bad") == 1
    assert value(s, "turnout_upstream_retries_total", provider="flaky") == 1
    assert value(s, "turnout_upstream_attempts_total", provider="flaky", result="ok") == 1
    assert "turnout: [warn] upstream bad/mock-small cools down for 30 s after 3 failures in a row" in t.output()


def test_metrics_method_and_no_key(env):
    """/metrics needs no key (like /healthz) and answers GET and HEAD only."""
    m = env.mock()
    t = env.turnout(seed_for(m), config={"require_key": True})
    assert t.request("GET", "/metrics")[0] == 200
    assert t.request("HEAD", "/metrics")[0] == 200
    st, h, body = t.request("POST", "/metrics", b"{}")
    assert st == 405 and h["allow"] == "GET, HEAD" and json.loads(body)["error"]["code"] == "method_not_allowed"
    assert t.chat("mock-small")[0] == 401
    # a request is counted when it is over, just after its reply went out:
    # a scrape on the other worker can come a moment before that
    deadline = time.time() + 2
    while True:
        s = samples(scrape(t))
        if any(n == "turnout_requests_total" and 'status="401"' in l for n, l in s) or time.time() > deadline:
            break
        time.sleep(0.02)
    assert value(s, "turnout_requests_total", endpoint="metrics", status="405") == 1
    assert value(s, "turnout_requests_total", endpoint="chat", status="401") == 1
