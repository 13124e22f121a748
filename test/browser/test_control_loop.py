"""The dashboard's control loop: a failover forced with mockllm shows in the live
feed (read from GET /v1/events) within 2 s, and the route's rates, latency
and A/B variants from GET /v1/stats show beside it, charted."""
import time

from browser import start
from harness import seed_for


def test_failover_shows_in_the_feed_and_stats(env):
    a = env.mock("--status", "503", name="a")
    b = env.mock(name="b")
    routes = [{"name": "flaky", "strategy": "fallback",
               "targets": [{"provider": "a", "model": "mock-large"}, {"provider": "b", "model": "mock-small"}]},
              {"name": "ab-test", "strategy": "ab", "targets": [
                  {"provider": "b", "model": "mock-large", "variant": "large", "weight": 50},
                  {"provider": "b", "model": "mock-small", "variant": "small", "weight": 50}]}]
    t = env.turnout(seed_for(a, b, routes=routes))
    # both variants get requests: the pick is sticky per user, 50/50 over users, so with 40 users
    # one variant gets none only once in 2^39 runs (with 6 it was 1 in 32: seen in a run)
    for i in range(40):
        assert t.chat("ab-test", user="u%d" % i)[0] == 200
    br = start(env, t)
    br.sign_in(view="live")
    br.wait_text("#events-status", "live")
    assert br.all("#events-feed li") == []
    st, h, _ = t.chat("flaky")
    assert st == 200 and h["x-turnout-provider"] == "b"
    t0 = time.time()
    ev = br.wait(lambda: next((e for e in br.all('#events-feed li[data-type="failover"]') if "flaky" in e.text), None),
                 2, "the failover in the feed")
    assert time.time() - t0 <= 2.0
    assert "a/mock-large" in ev.text and "503" in ev.text, ev.text
    # the stats are polled every 3 s: both routes, the A/B variants side by side
    card = br.wait_css('.route-stats[data-route="flaky"]', 8)
    assert "1m" in card.text
    ab = br.wait_css('.route-stats[data-route="ab-test"]', 8)
    names = [v.text for v in ab.find_elements("css selector", ".variant .vname")]
    assert any("variant large" in n for n in names) and any("variant small" in n for n in names), names
    # a few more requests, so the charts have a line
    for _ in range(3):
        t.chat("flaky")
    time.sleep(3.5)
    br.wait_css('.route-stats[data-route="flaky"] canvas')
    assert len(br.all('#events-feed li[data-type="failover"]')) >= 2
    br.shot("control-loop")
    # leaving the view closes the stream (the admin API allows 64 at once)
    br.go("routes")
    br.wait_css("#routes-table")
