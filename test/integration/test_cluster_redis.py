"""SPEC 10, cluster.redis: budgets, rate limits (rpm, max_in_flight, tenants) and upstreams'
429 not-before times shared by three turnout nodes through one real redis-server (Debian's,
on a free loopback port), and what happens when Redis dies or hangs (cluster.redis_failure
local / closed). The nodes share no store here: each imports the same seed, whose routes,
keys and budgets carry explicit ids, so they count in the same Redis counters."""
import json
import threading
import time

from cluster_redis_support import (key_record, new_id, percentile, redis_config, redis_entry, redis_metrics,
                                   redis_requests, start_redis_nodes, together, wait_cluster)
from cluster_support import label, node_logs, start_etcd, start_nodes, start_redis, wait_for

CHAT = "/v1/chat/completions"
IN_PRICE, OUT_PRICE = 3.0, 15.0


def make_seed(mocks, routes, budgets=(), keys=(), tenants=()):
    providers = [{"name": m.name, "base_url": m.base_url, "api_key_env": "MOCK_API_KEY",
                  "models": [{"name": "m", "input_price": IN_PRICE, "output_price": OUT_PRICE}]} for m in mocks]
    return {"providers": providers, "routes": list(routes), "routers": [], "budgets": list(budgets),
            "keys": list(keys), "tenants": list(tenants)}


def route(name, rid, *providers, **extra):
    r = {"id": rid, "name": name, "targets": [{"provider": p, "model": "m"} for p in providers]}
    r.update(extra)
    return r


def chat(t, model="r", headers=None, timeout=60):
    """One chat request to node T: (node label, status, headers, decoded body or raw bytes, seconds)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 20}
    t0 = time.monotonic()
    st, h, raw = t.request("POST", CHAT, body, headers, timeout=timeout)
    took = time.monotonic() - t0
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw
    return label(t), st, h, data, took


def err_code(body):
    return body["error"]["code"] if isinstance(body, dict) and isinstance(body.get("error"), dict) else None


def setup(env, mocks_flags=(("mock", ()),)):
    """A Redis and the mocks (name, flags)."""
    print("    env %s" % env.dir)
    r = start_redis(env)
    mocks = [env.mock(*flags, name=name) for name, flags in mocks_flags]
    return r, mocks


def nodes_for(env, r, seed, failure="local", config=None):
    nodes = start_redis_nodes(env, r, seed, config=config, failure=failure)
    lag = wait_cluster(nodes)
    print("    three nodes on redis :%d (redis_failure %s); all connected, cluster_nodes 3 after %.2f s"
          % (r.port, failure, lag))
    return nodes


def split(results):
    """{node label: (requests, 200s, 429s)} of RESULTS (chat()'s tuples)."""
    out = {}
    for node, st, _, _, _ in results:
        n, ok, refused = out.get(node, (0, 0, 0))
        out[node] = (n + 1, ok + (st == 200), refused + (st == 429))
    return out


def print_split(what, results):
    for node, (n, ok, refused) in sorted(split(results).items()):
        print("    %s: node %s: %d requests, %d admitted (200), %d refused (429)" % (what, node, n, ok, refused))


def access_lines(t, count, path=CHAT, timeout=5):
    return [x for x in t.access_log(path, count=count, timeout=timeout)]


def fresh_minute(margin=15):
    """Waits for the next UTC minute if fewer than MARGIN seconds of this one remain
    (rate limits count fixed UTC minutes)."""
    left = 60 - time.time() % 60
    if left < margin:
        print("    %.1f s left in this minute: waiting for the next one" % left)
        time.sleep(left + 0.2)


def wait_for_requests(r, entry, n, timeout=5):
    """Waits until Redis counts N requests for ENTRY (settles are told, not
    waited for): its windows' hashes."""
    wait_for(lambda: redis_requests(r, entry) == n, timeout, "redis %s: %d requests (now %s)"
             % (entry, n, redis_entry(r, entry)), step=0.05)
    return redis_entry(r, entry)[0]


# --- 1. a budget across the cluster ------------------------------------------------------

def test_limit_requests_30_holds_across_three_nodes_under_300_concurrent_requests(env):
    r, (m,) = setup(env, (("mock", ("--delay-ms", "300")),))
    rid, bid = new_id(), new_id()
    seed = make_seed([m], [route("r", rid, "mock")],
                     budgets=[{"id": bid, "name": "day", "scope": {"route": rid}, "limit_requests": 30, "window": "1d"}])
    nodes = nodes_for(env, r, seed)
    t0 = time.monotonic()
    results = together([lambda i=i: chat(nodes[i % 3]) for i in range(300)])
    took = time.monotonic() - t0
    bad = [x for x in results if not isinstance(x, tuple)]
    assert not bad, bad[:5]
    print_split("300 concurrent in %.2f s" % took, results)
    statuses = [st for _, st, _, _, _ in results]
    admitted = statuses.count(200)
    detail = "%d admitted, %s; redis: %s" % (admitted, {s: statuses.count(s) for s in set(statuses)},
                                            redis_entry(r, "b:" + bid))
    assert admitted == 30 and statuses.count(429) == 270, detail + "\n" + "\n".join(node_logs(t) for t in nodes)
    for node, st, h, body, _ in results:
        if st == 429:
            err = body["error"]
            assert err["code"] == "budget_exhausted" and err["type"] == "insufficient_quota", (node, body)
            assert "route budget 'day'" in err["message"] and "resets in" in err["message"], (node, body)
            assert int(h["retry-after"]) > 0 and h.get("x-should-retry") == "false", (node, h)
    # exactly 30 reached the upstream, and each node's access log agrees with its replies
    assert len(m.log()) == 30, len(m.log())
    per_node = split(results)
    for t in nodes:
        lines = access_lines(t, 100)
        ok = sum(1 for x in lines if x["status"] == 200)
        assert len(lines) == 100 and ok == per_node[label(t)][1], (label(t), len(lines), ok, per_node)
        assert all(x["status"] in (200, 429) for x in lines), [x["status"] for x in lines]
    # Redis counts the 30 (settled: one request each, spend at the answers' usage)
    entry = wait_for_requests(r, "b:" + bid, 30)
    print("    redis b:%s... = %s" % (bid[:8], entry))
    spent_tokens = sum(x["prompt_tokens"] + x["completion_tokens"]
                       for t in nodes for x in access_lines(t, 100) if x["status"] == 200)
    (held,) = entry.values()
    assert held["r"] == 30 and held["t"] == spent_tokens, (held, spent_tokens)
    # every node's admin API reads the cluster's counts (Redis's), not its own share
    for t in nodes:
        st, b = t.admin("GET", "/v1/budgets/" + bid)
        print("    admin read on %s: requests %s exhausted %s" % (label(t), b.get("requests"), b.get("exhausted")))
        assert st == 200 and b["requests"] == 30 and b["exhausted"] is True, (label(t), st, b)


test_limit_requests_30_holds_across_three_nodes_under_300_concurrent_requests.bound = 180


# --- 2. rate limits across the cluster ----------------------------------------------------

def test_key_and_tenant_rpm_hold_across_three_nodes(env):
    r, (m,) = setup(env)
    rid = new_id()
    capped, ch = key_record("capped", rpm=10)
    a1, ah1 = key_record("acme-1", tenant="acme")
    a2, ah2 = key_record("acme-2", tenant="acme")
    seed = make_seed([m], [route("r", rid, "mock")], keys=[capped, a1, a2],
                     tenants=[{"name": "acme", "rpm": 6}])
    nodes = nodes_for(env, r, seed, config={"require_key": True})
    fresh_minute(15)
    minute = int(time.time() // 60)
    results = together([lambda i=i: chat(nodes[i % 3], headers=ch) for i in range(30)])
    crossed = int(time.time() // 60) != minute
    print_split("key rpm 10, 30 requests", results)
    statuses = [st for _, st, _, _, _ in results]
    admitted = statuses.count(200)
    if crossed:     # a new window began during the burst: it may admit its own 10
        print("    the burst crossed a minute boundary")
        assert 10 <= admitted <= 20 and statuses.count(429) == 30 - admitted, statuses
    else:
        assert admitted == 10 and statuses.count(429) == 20, (statuses, redis_entry(r, "k:" + capped["id"]))
    remaining = []
    for node, st, h, body, _ in results:
        assert h["x-ratelimit-limit-requests"] == "10" and h["x-ratelimit-reset-requests"].endswith("s"), (node, h)
        if st == 200:
            remaining.append(int(h["x-ratelimit-remaining-requests"]))
            continue
        err = body["error"]
        assert err["code"] == "rate_limited" and err["type"] == "rate_limit_error", (node, body)
        assert "10 requests per minute" in err["message"], (node, body)
        assert 1 <= int(h["retry-after"]) <= 60 and h["x-ratelimit-remaining-requests"] == "0", (node, h)
    if not crossed:   # one counter for the cluster: each admitted request saw a different count
        assert sorted(remaining) == list(range(10)), sorted(remaining)
    assert len(m.log()) == admitted
    # a tenant's rpm over its two keys, on three nodes
    results = together([lambda i=i: chat(nodes[i % 3], headers=(ah1, ah2)[i % 2]) for i in range(18)])
    print_split("tenant rpm 6 over two keys, 18 requests", results)
    statuses = [st for _, st, _, _, _ in results]
    if int(time.time() // 60) == minute:
        assert statuses.count(200) == 6 and statuses.count(429) == 12, statuses
    for node, st, h, body, _ in results:
        if st == 429:
            assert err_code(body) == "rate_limited" and "tenant 'acme'" in body["error"]["message"], (node, body)


test_key_and_tenant_rpm_hold_across_three_nodes.bound = 120


def test_key_max_in_flight_holds_across_three_nodes(env):
    r, (m,) = setup(env, (("mock", ("--delay-ms", "800")),))
    rid = new_id()
    k, kh = key_record("two-at-once", max_in_flight=2)
    seed = make_seed([m], [route("r", rid, "mock")], keys=[k])
    nodes = nodes_for(env, r, seed, config={"require_key": True})
    results = together([lambda i=i: chat(nodes[i % 3], headers=kh) for i in range(9)])
    print_split("max_in_flight 2, 9 concurrent", results)
    statuses = sorted(st for _, st, _, _, _ in results)
    assert statuses == [200] * 2 + [429] * 7, (statuses, redis_entry(r, "k:" + k["id"]))
    for node, st, h, body, _ in results:
        if st == 429:
            assert err_code(body) == "rate_limited" and "in flight" in body["error"]["message"], (node, body)
            assert h["retry-after"] == "1", h
    # the places are given back when the answers are done: the set in Redis empties, and two more fit
    wait_for(lambda: redis_entry(r, "k:" + k["id"])[1] == [], 3, "k:%s:f empty" % k["id"])
    results = together([lambda i=i: chat(nodes[i], headers=kh) for i in (1, 2)])
    assert [st for _, st, _, _, _ in results] == [200, 200], results


test_key_max_in_flight_holds_across_three_nodes.bound = 120


# --- 3. 429 not-before times across the cluster ------------------------------------------

def test_a_429_seen_by_one_node_makes_the_others_pass_that_upstream_over(env):
    print("    env %s" % env.dir)
    r = start_redis(env)
    one = env.mock("--status", "429", "--retry-after", "30", name="one")
    two = env.mock(name="two")
    rid = new_id()
    seed = make_seed([one, two], [route("r", rid, "one", "two",
                                        retry={"max_429_retries": 0, "retry_after_cap_s": 60})])
    a, b, c = nodes_for(env, r, seed)
    node, st, h, body, _ = chat(a)
    t429 = time.monotonic()
    assert st == 200 and h["x-turnout-provider"] == "two" and h["x-turnout-attempts"] == "2", (st, h, body)
    trace = a.access_log(CHAT)[-1]["trace"]
    assert [(x.get("provider"), x.get("status")) for x in trace] == [("one", 429), ("two", 200)], trace
    assert len(one.log()) == 1 and len(two.log()) == 1
    # B and C, at once and for the next second: straight to two, one is not called
    firsts = {}
    while time.monotonic() - t429 < 1.0:
        for t in (b, c):
            node, st, h, body, _ = chat(t)
            firsts.setdefault(node, time.monotonic() - t429)
            assert st == 200 and h["x-turnout-provider"] == "two" and h["x-turnout-attempts"] == "1", \
                (node, st, h, body, "%.3f s after A's 429" % (time.monotonic() - t429))
    assert len(one.log()) == 1, "the upstream that answered 429 was called again: %d" % len(one.log())
    for t in (b, c):
        line = t.access_log(CHAT)[0]
        assert line["trace"][0].get("skipped") == "cooling_down" and line["provider"] == "two", line
    print("    B's first request %.3f s after A's 429, C's %.3f s; %d requests on B and C, upstream one called once"
          % (firsts["B"], firsts["C"], len(two.log()) - 1))
    # B's dry run shows the upstream passed over too
    st, dr = b.admin("POST", "/v1/model-routes/dry-run", {"model": "r"})
    assert st == 200, dr
    first = dr["candidates"][0]
    print("    dry run on B: candidate one %s" % {k: first.get(k) for k in ("state", "available")})
    assert first["available"] is False, first


test_a_429_seen_by_one_node_makes_the_others_pass_that_upstream_over.bound = 90


# --- 4, 5. Redis gone ---------------------------------------------------------------------

def sequential_latencies(nodes, n=50, model="free"):
    """N sequential unbudgeted requests, round robin over NODES: their seconds (all must be 200)."""
    out = []
    for i in range(n):
        node, st, h, body, took = chat(nodes[i % len(nodes)], model=model, timeout=20)
        assert st == 200, (node, st, body)
        out.append(took)
    return out


def outage_seed(m, failure_budget_limit=30):
    ids = {"free": new_id(), "big": new_id(), "fresh": new_id(), "b_big": new_id(), "b_fresh": new_id()}
    seed = make_seed([m], [route("free", ids["free"], "mock"), route("big", ids["big"], "mock"),
                           route("fresh", ids["fresh"], "mock")],
                     budgets=[{"id": ids["b_big"], "name": "big", "scope": {"route": ids["big"]},
                               "limit_requests": 1000000, "window": "1d"},
                              {"id": ids["b_fresh"], "name": "fresh", "scope": {"route": ids["fresh"]},
                               "limit_requests": failure_budget_limit, "window": "1d"}])
    return ids, seed


class Load:
    """Background load on every node: unbudgeted requests and requests on a
    budget far from its limit (so reservations are in flight in Redis), one
    thread per node, until stop(); every reply recorded."""

    def __init__(self, nodes):
        self.results, self.lock, self.done = [], threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True) for t in nodes]
        for th in self.threads:
            th.start()

    def run(self, t):
        i = 0
        while not self.done.is_set():
            model = ("free", "big")[i % 2]
            i += 1
            try:
                node, st, h, body, took = chat(t, model=model, timeout=20)
            except OSError as e:
                node, st, body, took = label(t), 0, repr(e), 0
            with self.lock:
                self.results.append((time.monotonic(), node, model, st, err_code(body) or body, took))

    def stop(self):
        self.done.set()
        for th in self.threads:
            th.join(30)
        return self.results


def test_redis_killed_under_load_local_policy_shares_out_the_budget(env):
    r, (m,) = setup(env)
    ids, seed = outage_seed(m)
    nodes = nodes_for(env, r, seed, failure="local")
    before = sequential_latencies(nodes)
    load = Load(nodes)
    time.sleep(1.5)
    t_kill = time.monotonic()
    r.kill()
    print("    redis killed (SIGKILL) under load")
    lag = wait_cluster(nodes, n=3, connected=0, timeout=5)
    print("    every node reports redis_connected 0 after %.3f s" % lag)
    time.sleep(1.0)
    results = load.stop()
    during_kill = [x for x in results if x[0] >= t_kill]
    bad = [x for x in results if x[3] != 200]
    print("    load: %d requests (%d after the kill), %d not 200" % (len(results), len(during_kill), len(bad)))
    assert not bad and during_kill, bad[:10]
    for t in nodes:
        assert t.proc.poll() is None, node_logs(t)
    # unbudgeted requests never wait on Redis
    down = sequential_latencies(nodes)
    p_before, p_down = percentile(before, 99), percentile(down, 99)
    print("    unbudgeted p99 (50 sequential): %.1f ms with redis, %.1f ms without (p50 %.1f / %.1f ms)"
          % (p_before * 1e3, p_down * 1e3, percentile(before, 50) * 1e3, percentile(down, 50) * 1e3))
    assert p_down < 3 * p_before + 0.05, (p_before, p_down)
    # a fresh budget of 30 on three nodes: each node admits its share, 10
    results = []
    for t in nodes:
        for _ in range(20):
            results.append(chat(t, model="fresh", timeout=20))
    print_split("budget 30 while redis is down", results)
    for node, (n, ok, refused) in split(results).items():
        assert ok == 10 and refused == 10, (node, split(results))
    for node, st, h, body, _ in results:
        if st == 429:
            assert err_code(body) == "budget_exhausted" and "'fresh'" in body["error"]["message"], (node, body)
    for t in nodes:
        assert "this node enforces 1/3 of every budget and rate limit on its own" in t.output(), node_logs(t)
    # Redis back (same port, empty): every node reconnects within a few seconds
    r.start()
    lag = wait_cluster(nodes, n=3, connected=1, timeout=8)
    print("    redis restarted: every node connected again (and three beating) %.2f s after it answered" % lag)
    assert lag < 5, lag
    # and budgets are counted in Redis again
    for t in nodes:
        node, st, h, body, _ = chat(t, model="big")
        assert st == 200, (node, st, body)
    wait_for_requests(r, "b:" + ids["b_big"], 3)
    for t in nodes:
        m_ = redis_metrics(t)
        print("    %s: %s" % (label(t), m_))
        assert t.proc.poll() is None


test_redis_killed_under_load_local_policy_shares_out_the_budget.bound = 180


def test_redis_down_closed_policy_refuses_budgeted_and_limited_requests(env):
    r, (m,) = setup(env)
    ids, seed = outage_seed(m)
    k, kh = key_record("capped", rpm=1000)
    free, fh = key_record("free")
    seed["keys"] = [k, free]
    nodes = nodes_for(env, r, seed, failure="closed", config={"require_key": True})
    for t in nodes:   # all well with Redis
        for model, h in (("fresh", fh), ("free", kh), ("free", fh)):
            node, st, _, body, _ = chat(t, model=model, headers=h)
            assert st == 200, (node, model, st, body)
    r.kill()
    lag = wait_cluster(nodes, n=3, connected=0, timeout=5)
    print("    redis killed: every node reports redis_connected 0 after %.3f s" % lag)
    for t in nodes:
        node, st, h, body, took = chat(t, model="fresh", headers=fh)
        print("    %s, redis down: budgeted %d %s in %.3f s: %s" % (node, st, err_code(body), took,
                                                                  body["error"]["message"] if st != 200 else ""))
        assert st == 429 and err_code(body) == "budget_exhausted" and "Redis" in body["error"]["message"], body
        assert "retry-after" in h, h
        node, st, h, body, took = chat(t, model="free", headers=kh)
        print("    %s, redis down: rate-limited key %d %s in %.3f s" % (node, st, err_code(body), took))
        assert st == 429 and err_code(body) == "rate_limited" and "Redis" in body["error"]["message"], body
        node, st, h, body, took = chat(t, model="free", headers=fh)
        assert st == 200, (node, st, body)
        node, st, h, body, took = chat(t, model="big", headers=fh)
        assert st == 429 and "Redis" in body["error"]["message"], (node, st, body)
    for t in nodes:
        assert "get 429 until it is back (cluster.redis_failure closed)" in t.output(), node_logs(t)
    r.start()
    lag = wait_cluster(nodes, n=3, connected=1, timeout=8)
    print("    redis restarted: every node connected again after %.2f s" % lag)
    for t in nodes:
        node, st, h, body, took = chat(t, model="fresh", headers=kh)
        assert st == 200, (node, st, body)


test_redis_down_closed_policy_refuses_budgeted_and_limited_requests.bound = 120


# --- 6. metrics ---------------------------------------------------------------------------

def test_metrics_show_redis_and_the_live_nodes(env):
    r, (m,) = setup(env)
    rid, bid = new_id(), new_id()
    seed = make_seed([m], [route("r", rid, "mock")],
                     budgets=[{"id": bid, "name": "b", "scope": {"route": rid}, "limit_requests": 100}])
    nodes = start_redis_nodes(env, r, seed)
    lag = wait_cluster(nodes, timeout=5)
    print("    cluster_nodes 3 on every node %.2f s after the third started" % lag)
    assert lag < 3, lag
    for t in nodes:
        chat(t)
    for t in nodes:
        got = redis_metrics(t)
        print("    %s: %s" % (label(t), got))
        assert got["turnout_redis_connected"] == 1 and got["turnout_cluster_nodes"] == 3, got
        assert got["turnout_redis_errors_total"] == 0, got
        assert 0 <= got["turnout_redis_rtt_seconds"] < 0.5, got
        text = t.request("GET", "/metrics")[2].decode()
        for name, kind in (("turnout_redis_connected", "gauge"), ("turnout_redis_rtt_seconds", "gauge"),
                           ("turnout_redis_errors_total", "counter"), ("turnout_cluster_nodes", "gauge")):
            assert "# TYPE %s %s" % (name, kind) in text, name
    # one node stops: the others count two once its beats are 5 s old
    nodes[2].stop()
    lag = wait_for(lambda: all(redis_metrics(t)["turnout_cluster_nodes"] == 2 for t in nodes[:2]), 10,
                   "cluster_nodes 2")
    print("    C stopped: A and B count 2 nodes after %.2f s" % lag)


test_metrics_show_redis_and_the_live_nodes.bound = 90


# --- 7. a client gone while its reservation is in flight -----------------------------------

def leave_while_redis_holds_the_call(r, t, headers):
    """Sends a chat request to node T and hangs up while Redis holds its
    reservation call (Redis paused for less than the call's 500 ms limit,
    shared.c, so the call is not given up on): the call is answered after
    the client has gone."""
    body = json.dumps({"model": "r", "messages": [{"role": "user", "content": "hi"}]}).encode()
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Authorization: %s\r\nContent-Length: %d\r\n\r\n" % (headers["Authorization"].encode(), len(body)) + body)
    before = len([x for x in t.access_log(CHAT, timeout=0) if x["status"] == 499])
    s = t.connect()
    r.pause()
    try:
        s.sendall(raw)
        time.sleep(0.15)
        s.close()
        time.sleep(0.1)
    finally:
        r.resume()
    wait_for(lambda: len([x for x in t.access_log(CHAT, timeout=0) if x["status"] == 499]) > before, 3,
             "%s's 499 line" % label(t))
    line = [x for x in t.access_log(CHAT) if x["status"] == 499][-1]
    assert line["error"] == "client_closed", line
    return line


def test_a_client_gone_while_its_reservation_is_in_redis_leaves_nothing_behind(env):
    r, (m,) = setup(env)
    rid, bid = new_id(), new_id()
    k, kh = key_record("one-at-once", max_in_flight=1)
    free, fh = key_record("free")
    seed = make_seed([m], [route("r", rid, "mock")], keys=[k, free],
                     budgets=[{"id": bid, "name": "one", "scope": {"route": rid}, "limit_requests": 1}])
    a, b, c = nodes_for(env, r, seed, config={"require_key": True})
    # the key's pace (its place in flight) is the call Redis holds
    leave_while_redis_holds_the_call(r, a, kh)
    wait_for(lambda: redis_entry(r, "k:" + k["id"])[1] == [] and redis_requests(r, "k:" + k["id"]) == 0, 3,
             "nothing left for the key: %s" % (redis_entry(r, "k:" + k["id"]),))
    print("    key's reservation in flight, client gone: redis holds key %s, budget %s"
          % (redis_entry(r, "k:" + k["id"]), redis_entry(r, "b:" + bid)))
    # the budget's reservation is the call Redis holds (a key without limits: no pace call before it)
    leave_while_redis_holds_the_call(r, a, fh)
    time.sleep(0.5)     # the forgotten call's answer, then its give-back, have come and gone
    print("    budget's reservation in flight, client gone: redis holds budget %s" % (redis_entry(r, "b:" + bid),))
    assert redis_requests(r, "b:" + bid) == 0, redis_entry(r, "b:" + bid)
    assert len(m.log()) == 0
    # the budget's only request and the key's only place are free: B gets them, C is refused
    node, st, h, body, _ = chat(b, headers=kh)
    assert st == 200, (node, st, body)
    node, st, h, body, _ = chat(c, headers=kh)
    assert st == 429 and err_code(body) == "budget_exhausted", (node, st, body)
    assert redis_requests(r, "b:" + bid) == 1


test_a_client_gone_while_its_reservation_is_in_redis_leaves_nothing_behind.bound = 90


# --- a hung Redis -------------------------------------------------------------------------

def test_a_hung_redis_is_given_up_on_and_the_policy_applies(env):
    """Redis stops answering (SIGSTOP: its sockets stay open, nothing is
    refused): a reservation that gets no answer within the call's limit
    (500 ms, shared.c: "drops the connection (every call on it fails, and
    the caller falls back on cluster.redis_failure)") falls back on the
    policy (local: admitted on this node's share), so a budgeted request is
    answered within about a second while Redis is still hung; and Redis
    waking up later leaves no reservation of that request behind."""
    r, (m,) = setup(env)
    ids, seed = outage_seed(m)
    nodes = nodes_for(env, r, seed, failure="local")
    a = nodes[0]
    node, st, _, body, _ = chat(a, model="big")
    assert st == 200, body
    wait_for_requests(r, "b:" + ids["b_big"], 1)
    done = {}

    def one(model):
        try:
            x = chat(a, model="big" if model == "late" else model, timeout=15)
            done[model] = (x[1], x[4], err_code(x[3]), time.monotonic())
        except OSError as e:
            done[model] = (0, time.monotonic() - t_pause, repr(e), time.monotonic())

    t_pause = time.monotonic()
    r.pause()
    try:
        ths = [threading.Thread(target=one, args=(mdl,), daemon=True) for mdl in ("big", "free")]
        for th in ths:
            th.start()
        seen = None
        while time.monotonic() - t_pause < 4.0 and not ("big" in done and "late" in done):
            if seen is None and time.monotonic() - t_pause > 1.0:
                seen = redis_metrics(a)
                # a second budgeted request, sent once the first call is past its limit
                ths.append(threading.Thread(target=one, args=("late",), daemon=True))
                ths[-1].start()
            time.sleep(0.02)
    finally:
        t_resume = time.monotonic()
        r.resume()
    for th in ths:
        th.join(20)
    for mdl, what in (("free", "unbudgeted"), ("big", "budgeted"), ("late", "budgeted, sent 1 s into the hang,")):
        st, took, code, at = done[mdl]
        print("    redis hung %.2f s: %s request: %d %s after %.3f s (%s redis woke up)"
              % (t_resume - t_pause, what, st, code or "", took, "before" if at < t_resume else "AFTER"))
    print("    A's redis metrics 1 s into the hang: %s" % seen)
    gave_up = a.output().count("no answer in 500 ms; reconnecting")
    print("    A's error log: %d lines 'no answer in 500 ms; reconnecting'" % gave_up)
    wait_cluster(nodes, timeout=8)
    # what the failed reservations took, if Redis ran them when it woke, is
    # given back by each worker once its own connection is up again (a
    # worker reconnects 500 ms after it gave up, on its 100 ms tick)
    t_woke = time.monotonic()
    try:
        wait_for(lambda: redis_requests(r, "b:" + ids["b_big"]) == 1, 5, "the hang's reservations given back")
    except AssertionError:
        pass                              # (asserted below, with what Redis holds)
    held = redis_requests(r, "b:" + ids["b_big"])
    print("    redis woke up: budget 'big' counts %d requests in Redis (1 before the hang), %.2f s after the nodes "
          "were connected" % (held, time.monotonic() - t_woke))
    assert done["free"][0] == 200 and done["free"][1] < 1.0, done["free"]
    assert done["late"][0] == 200 and done["late"][1] < 1.0, done["late"]
    assert done["big"][0] == 200 and done["big"][3] < t_resume and done["big"][1] < 2.0, \
        ("the budgeted request waited for the hung Redis", done["big"], "%d 'no answer' warnings" % gave_up)
    assert gave_up <= 5, "%d 'no answer in 500 ms' warnings for one hang" % gave_up
    # the requests admitted on A's share while Redis was hung are not Redis's
    assert held == 1, redis_entry(r, "b:" + ids["b_big"])


test_a_hung_redis_is_given_up_on_and_the_policy_applies.bound = 90


def test_etcd_and_redis_together_a_budget_made_on_one_node_holds_on_all(env):
    """The deployment the README describes: one etcd for the store, one Redis
    for the counters. A route and a `limit_requests: 12` budget created
    through node A's admin API (not a seed) reach B and C through etcd; 60
    concurrent requests over the three nodes: exactly 12 admitted, and
    every node's admin read of the budget says 12 and exhausted."""
    r, (m,) = setup(env, (("mock", ("--delay-ms", "200")),))
    etcd = start_etcd(env)
    seed = make_seed([m], [])
    nodes = start_nodes(env, etcd, seed, config=redis_config(r))
    wait_cluster(nodes)
    a = nodes[0]
    st, rt = a.admin("POST", "/v1/model-routes", {"name": "shared", "targets": [{"provider": "mock", "model": "m"}]})
    assert st == 201, rt
    st, bg = a.admin("POST", "/v1/budgets", {"name": "dozen", "scope": {"route": rt["id"]}, "limit_requests": 12,
                                             "window": "1d"})
    assert st == 201, bg
    for t in nodes[1:]:
        wait_for(lambda t=t: t.admin("GET", "/v1/budgets/" + bg["id"])[0] == 200, 5, "the budget on %s" % label(t))
    results = together([lambda i=i: chat(nodes[i % 3], model="shared") for i in range(60)])
    statuses = [x[1] for x in results]
    print_split("60 concurrent over etcd + redis", results)
    assert statuses.count(200) == 12 and statuses.count(429) == 48, {s: statuses.count(s) for s in set(statuses)}
    assert len(m.log()) == 12, len(m.log())
    wait_for_requests(r, "b:" + bg["id"], 12)
    for t in nodes:
        st, b = t.admin("GET", "/v1/budgets/" + bg["id"])
        assert st == 200 and b["requests"] == 12 and b["exhausted"] is True, (label(t), b)


test_etcd_and_redis_together_a_budget_made_on_one_node_holds_on_all.bound = 120
