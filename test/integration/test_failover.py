"""Targets tried in order: connection errors, 5xx, 429 and 401/403 move on; all failing gives 502."""
import json

from harness import Env, free_port


def two(env, first_flags, first_url=None, retry=None):
    a = env.mock(*first_flags, name="first")
    b = env.mock(name="second")
    seed = {"providers": [{"name": "p1", "base_url": first_url or a.base_url, "models": [{"name": "m1"}]},
                          {"name": "p2", "base_url": b.base_url, "models": [{"name": "m2"}]}],
            "routes": [{"name": "r", "strategy": "fallback",
                        "targets": [{"provider": "p1", "model": "m1"}, {"provider": "p2", "model": "m2"}]}]}
    if retry is not None:
        seed["routes"][0]["retry"] = retry
    return a, b, env.turnout(seed)


def assert_failed_over(a, b, t, first_attempts=1):
    st, h, body = t.request("POST", "/v1/chat/completions", {"model": "r"})
    assert st == 200, body
    assert h["x-turnout-attempts"] == "2" and h["x-turnout-provider"] == "p2" and h["x-turnout-model"] == "m2"
    assert json.loads(body)["model"] == "m2"
    assert len(b.log()) == 1
    if a is not None:
        assert len(a.log()) == first_attempts


def test_failover_on_500(env):
    assert_failed_over(*two(env, ["--status", "500"]))


def test_failover_on_503_and_401_and_403(env):
    for status in ("503", "401", "403"):
        sub = Env()
        try:
            assert_failed_over(*two(sub, ["--status", status]))
        finally:
            assert sub.close() == []


def test_failover_on_429(env):
    """With no 429 retries the next target serves at once (test_resilience
    covers the retries)."""
    assert_failed_over(*two(env, ["--status", "429", "--retry-after", "1"], retry={"max_429_retries": 0}))


def test_failover_on_connection_refused(env):
    a, b, t = two(env, [], first_url="http://127.0.0.1:%d/v1" % free_port())
    assert_failed_over(None, b, t)


def test_order_field_decides(env):
    a = env.mock(name="a")
    b = env.mock(name="b")
    seed = {"providers": [{"name": "pa", "base_url": a.base_url, "models": [{"name": "ma"}]},
                          {"name": "pb", "base_url": b.base_url, "models": [{"name": "mb"}]}],
            "routes": [{"name": "r", "targets": [{"provider": "pa", "model": "ma", "order": 2},
                                                  {"provider": "pb", "model": "mb", "order": 1}]}]}
    t = env.turnout(seed)
    st, h, _ = t.request("POST", "/v1/chat/completions", {"model": "r"})
    assert st == 200 and h["x-turnout-provider"] == "pb"
    assert len(b.log()) == 1 and a.log() == []


def test_all_fail_gives_502_listing_attempts(env):
    a = env.mock("--status", "500", name="a")
    b = env.mock("--status", "502", name="b")
    seed = {"providers": [{"name": "pa", "base_url": a.base_url, "models": [{"name": "ma"}]},
                          {"name": "pb", "base_url": b.base_url, "models": [{"name": "mb"}]}],
            "routes": [{"name": "r", "targets": [{"provider": "pa", "model": "ma"}, {"provider": "pb", "model": "mb"}]}]}
    t = env.turnout(seed)
    st, h, body = t.request("POST", "/v1/chat/completions", {"model": "r"})
    assert st == 502, body
    e = json.loads(body)["error"]
    assert e["code"] == "upstream_error"
    assert "pa/ma" in e["message"] and "pb/mb" in e["message"] and "HTTP 500" in e["message"]
    assert h["x-turnout-attempts"] == "2"


def test_all_429_gives_429_with_retry_after(env):
    a = env.mock("--status", "429", "--retry-after", "7", name="a")
    seed = {"providers": [{"name": "pa", "base_url": a.base_url, "models": [{"name": "ma"}]}],
            "routes": [{"name": "r", "targets": [{"provider": "pa", "model": "ma"}],
                        "retry": {"max_429_retries": 0, "retry_after_cap_s": 30}}]}
    t = env.turnout(seed)
    st, h, body = t.request("POST", "/v1/chat/completions", {"model": "r"})
    assert st == 429, body
    assert h["retry-after"] == "7"
    assert json.loads(body)["error"]["attempts"][0]["status"] == 429


def test_disabled_route_goes_to_fallback_or_503(env):
    a = env.mock(name="a")
    b = env.mock(name="b")
    seed = {"providers": [{"name": "pa", "base_url": a.base_url, "models": [{"name": "ma"}]},
                          {"name": "pb", "base_url": b.base_url, "models": [{"name": "mb"}]}],
            "routes": [{"name": "r", "enabled": False,
                        "targets": [{"provider": "pa", "model": "ma"}, {"provider": "pb", "model": "mb"}]},
                       {"name": "solo", "enabled": False, "targets": [{"provider": "pa", "model": "ma"}]}]}
    t = env.turnout(seed)
    st, h, _ = t.request("POST", "/v1/chat/completions", {"model": "r"})
    assert st == 200 and h["x-turnout-provider"] == "pb"
    st, _, body = t.request("POST", "/v1/chat/completions", {"model": "solo"})
    assert st == 503 and json.loads(body)["error"]["code"] == "route_disabled"
    assert a.log() == []
