"""The control loop's feeds on the admin listener: GET /v1/events (attempt
events as server-sent events, the last 100 first, tenant-filtered) and
GET /v1/stats (requests, errors and latency per route and target)."""
import json
import time

from harness import ADMIN_KEY, http_connection


def fallback_seed(a, b, routes=None):
    return {"providers": [{"name": "p1", "base_url": a.base_url, "models": [{"name": "m1"}]},
                          {"name": "p2", "base_url": b.base_url, "models": [{"name": "m2"}]}],
            "routes": routes or [{"name": "r", "strategy": "fallback",
                                  "targets": [{"provider": "p1", "model": "m1"}, {"provider": "p2", "model": "m2"}]}]}


class Events:
    """An open GET /v1/events: events() reads what arrives within a time."""

    def __init__(self, t, key=ADMIN_KEY):
        self.c = http_connection(t.admin_port, timeout=5)
        self.c.request("GET", "/v1/events", headers={"Authorization": "Bearer " + key})
        self.r = self.c.getresponse()
        self.status = self.r.status
        self.headers = {k.lower(): v for k, v in self.r.getheaders()}
        self.comments = []

    def events(self, want=1, timeout=3.0, kind=None):
        """Events read until WANT of them (of type KIND, if given) arrived or TIMEOUT passed."""
        got, ev = [], {}
        deadline = time.time() + timeout
        self.c.sock.settimeout(0.2)
        while time.time() < deadline and len([e for e in got if kind is None or e["type"] == kind]) < want:
            try:
                line = self.r.readline()
            except (TimeoutError, OSError):
                continue
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("event: "):
                ev["event"] = line[7:]
            elif line.startswith("data: "):
                ev["data"] = json.loads(line[6:])
            elif line == "" and ev:
                assert ev["event"] == ev["data"]["type"], ev
                got.append(ev["data"])
                ev = {}
        return got

    def close(self):
        self.c.close()


def test_events_stream_failovers_with_the_backlog_first(env):
    a, b = env.mock("--status", "500", name="first"), env.mock(name="second")
    t = env.turnout(fallback_seed(a, b))
    st, h, _ = t.chat("r")
    assert st == 200 and h["x-turnout-attempts"] == "2"
    first_id = h["x-request-id"]
    time.sleep(0.5)                       # read from the worker's ring by the admin thread's timer
    s = Events(t)
    try:
        assert s.status == 200 and s.headers["content-type"] == "text/event-stream", s.headers
        assert s.headers.get("cache-control") == "no-store"
        backlog = s.events(1, kind="failover")
        assert len(backlog) == 1, backlog
        ev = backlog[0]
        assert ev["route"] == "r" and ev["provider"] == "p1" and ev["model"] == "m1" and ev["status"] == 500, ev
        assert ev["request_id"] == first_id and ev["route_id"] and ev["time"].endswith("Z"), ev
        assert s.comments and s.comments[0].startswith(": turnout events"), s.comments
        # a new one arrives while the stream is open, well within 2 s
        began = time.time()
        st, h, _ = t.chat("r")
        assert st == 200
        live = s.events(1, timeout=2.0, kind="failover")
        assert len(live) == 1 and live[0]["request_id"] == h["x-request-id"], live
        assert time.time() - began < 2.0
    finally:
        s.close()


def test_events_retry_429_and_cooldown_start_and_end(env):
    a = env.mock("--status", "429", "--retry-after", "0", name="first")
    b = env.mock(name="second")
    seed = fallback_seed(a, b)
    seed["routes"][0]["retry"] = {"max_429_retries": 1}
    t = env.turnout(seed)
    s = Events(t)
    try:
        st, h, _ = t.chat("r")
        assert st == 200 and h["x-turnout-provider"] == "p2", h
        got = s.events(2, kind=None, timeout=3)
        kinds = [e["type"] for e in got]
        assert kinds[:2] == ["retry_429", "failover"], got
        assert got[0]["status"] == 429 and got[0]["provider"] == "p1" and "Retry-After" in got[0]["detail"], got
    finally:
        s.close()

    # cooldown: two failures in a row cool p1 down; once it answers its probe, it is back
    c, d = env.mock("--status", "503", name="third"), env.mock(name="fourth")
    t2 = env.turnout(fallback_seed(c, d), config={"upstream": {"cooldown_after": 2, "cooldown_s": 1}}, name="t2")
    s = Events(t2)
    try:
        for _ in range(2):
            assert t2.chat("r")[0] == 200
        got = s.events(1, kind="cooldown_start", timeout=3)
        assert [e for e in got if e["type"] == "cooldown_start" and e["provider"] == "p1"], got
        c.stop()
        c2 = env.mock(name="third-again")       # p1's upstream answers again, on a new port: re-point p1
        [p1] = [p for p in t2.admin("GET", "/v1/providers")[1]["data"] if p["name"] == "p1"]
        assert t2.admin("PATCH", "/v1/providers/" + p1["id"], {"base_url": c2.base_url})[0] == 200
        time.sleep(1.2)                          # the cooldown is over: the next request is p1's probe
        st, h, _ = t2.chat("r")
        assert st == 200 and h["x-turnout-provider"] == "p1", h
        back = s.events(1, kind="cooldown_end", timeout=3)
        assert back and back[-1]["provider"] == "p1" and back[-1]["status"] == 200, back
    finally:
        s.close()


def test_events_capacity_and_budget_passes(env):
    """A target at its max_in_flight and a target whose budget is spent are
    passed over: capacity_exhausted and budget_exhausted, with the next
    target serving."""
    import threading
    slow, b = env.mock("--delay-ms", "600", name="slow"), env.mock(name="second")
    seed = fallback_seed(slow, b, routes=[{"name": "r", "strategy": "fallback", "targets": [
        {"provider": "p1", "model": "m1", "max_in_flight": 1}, {"provider": "p2", "model": "m2"}]}])
    t = env.turnout(seed)
    s = Events(t)
    try:
        first = threading.Thread(target=t.chat, args=("r",))
        first.start()
        time.sleep(0.2)                   # the first holds p1's one place
        st, h, _ = t.chat("r")
        assert st == 200 and h["x-turnout-provider"] == "p2", h
        first.join()
        got = s.events(1, kind="capacity_exhausted")
        assert got and got[-1]["provider"] == "p1" and "max_in_flight" in got[-1]["detail"], got
        # a budget of p1's own, spent by one request: the next passes p1 over
        [route] = t.admin("GET", "/v1/model-routes")[1]["data"]
        st, bg = t.admin("POST", "/v1/budgets", {"name": "p1-once", "limit_requests": 1, "window": "1d",
                                                 "scope": {"target": {"route": route["id"], "provider": "p1",
                                                                      "model": "m1"}}})
        assert st == 201, bg
        assert t.chat("r")[1]["x-turnout-provider"] == "p1"
        assert t.chat("r")[1]["x-turnout-provider"] == "p2"
        got = s.events(1, kind="budget_exhausted")
        assert got and got[-1]["provider"] == "p1" and got[-1]["route"] == "r", got
    finally:
        s.close()


def test_events_for_a_tenant_admin_are_its_routes_only(env):
    a, b = env.mock("--status", "500", name="first"), env.mock(name="second")
    two = [{"provider": "p1", "model": "m1"}, {"provider": "p2", "model": "m2"}]
    t = env.turnout(fallback_seed(a, b, routes=[
        {"name": "mine", "scope": "tenant:acme", "strategy": "fallback", "targets": two},
        {"name": "theirs", "scope": "tenant:globex", "strategy": "fallback", "targets": two},
        {"name": "shared", "strategy": "fallback", "targets": two}]))
    st, ta = t.admin("POST", "/v1/keys", {"role": "tenant_admin", "tenant": "acme"})
    assert st == 201, ta
    st, user = t.admin("POST", "/v1/keys", {"tenant": "acme"})
    assert st == 201, user
    st, other = t.admin("POST", "/v1/keys", {"tenant": "globex"})
    assert st == 201, other
    mine, admin = Events(t, key=ta["secret"]), Events(t)
    try:
        for key, model in ((user["secret"], "mine"), (other["secret"], "theirs"), (ADMIN_KEY, "shared")):
            st, _, body = t.request("POST", "/v1/chat/completions", {"model": model, "messages": []},
                                    headers={"Authorization": "Bearer " + key})
            assert st == 200, (model, body)
        seen = admin.events(3, kind="failover")
        assert sorted(e["route"] for e in seen) == ["mine", "shared", "theirs"], seen
        got = mine.events(3, kind="failover", timeout=1.5)
        assert [e["route"] for e in got] == ["mine"], got
    finally:
        mine.close()
        admin.close()
    # a user key may not read the admin API at all
    st, _ = t.admin("GET", "/v1/events", key=user["secret"])
    assert st == 403


def test_stats_per_route_and_target(env):
    a, b = env.mock("--status", "500", name="first"), env.mock(name="second")
    t = env.turnout(fallback_seed(a, b))
    for _ in range(5):
        assert t.chat("r")[0] == 200
    st, got = t.admin("GET", "/v1/stats")
    assert st == 200, got
    assert got["windows"] == ["1m", "5m", "1h"] and got["generated_at"].endswith("Z")
    [r] = [x for x in got["routes"] if x["route"] == "r"]
    assert r["route_id"]
    for w in ("1m", "5m", "1h"):
        one = r["stats"][w]
        assert one["requests"] == 5 and one["errors"] == 0 and one["error_rate"] == 0, (w, one)
        assert one["p50_ms"] > 0 and one["p99_ms"] >= one["p50_ms"] and one["rps"] >= 0, (w, one)
    targets = {(x["provider"], x["model"]): x for x in r["targets"]}
    assert set(targets) == {("p1", "m1"), ("p2", "m2")}, targets
    bad, good = targets[("p1", "m1")]["stats"]["1m"], targets[("p2", "m2")]["stats"]["1m"]
    assert bad["requests"] == 5 and bad["errors"] == 5 and bad["error_rate"] == 1, bad
    assert good["requests"] == 5 and good["errors"] == 0, good
    assert targets[("p1", "m1")]["variant"] is None
    # only GET
    st, e = t.admin("POST", "/v1/stats", {})
    assert st == 405 and e["error"]["type"], e


def test_stats_for_a_tenant_admin_are_its_routes_only(env):
    m = env.mock(name="up")
    one = [{"provider": "p1", "model": "m1"}]
    t = env.turnout({"providers": [{"name": "p1", "base_url": m.base_url, "models": [{"name": "m1"}]}],
                     "routes": [{"name": "mine", "scope": "tenant:acme", "targets": one},
                                {"name": "theirs", "scope": "tenant:globex", "targets": one}]})
    st, ta = t.admin("POST", "/v1/keys", {"role": "tenant_admin", "tenant": "acme"})
    st2, user = t.admin("POST", "/v1/keys", {"tenant": "acme"})
    st3, other = t.admin("POST", "/v1/keys", {"tenant": "globex"})
    assert st == st2 == st3 == 201
    for key, model in ((user["secret"], "mine"), (other["secret"], "theirs")):
        st, _, body = t.request("POST", "/v1/chat/completions", {"model": model, "messages": []},
                                headers={"Authorization": "Bearer " + key})
        assert st == 200, body
    names = sorted(x["route"] for x in t.admin("GET", "/v1/stats")[1]["routes"] if x["route"])
    assert names == ["mine", "theirs"], names
    st, got = t.admin("GET", "/v1/stats", key=ta["secret"])
    assert st == 200 and [x["route"] for x in got["routes"]] == ["mine"], got
