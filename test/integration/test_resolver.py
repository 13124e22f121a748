"""Resolution order, glob pools, routers, strategies, provider preferences, dry-run and /v1/models."""
import json
import threading
import time
from collections import Counter

from harness import http_connection, seed_for

CHAT = "/v1/chat/completions"


def add_route(t, **r):
    st, rec = t.admin("POST", "/v1/model-routes", r)
    assert st == 201, rec
    return rec


def tg(provider, model="mock-small", **extra):
    return dict({"provider": provider, "model": model}, **extra)


def hammer(t, bodies, headers_for=None, threads=8, path=CHAT):
    """Sends each body once over keep-alive connections from THREADS threads;
    returns the (status, headers) of each, in order."""
    out = [None] * len(bodies)

    def run(k):
        c = http_connection(t.port, timeout=10)
        for i in range(k, len(bodies), threads):
            h = {"Content-Type": "application/json"}
            if headers_for:
                h.update(headers_for(i))
            c.request("POST", path, json.dumps(bodies[i]), h)
            r = c.getresponse()
            r.read()
            out[i] = (r.status, {k.lower(): v for k, v in r.getheaders()})
        c.close()

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for x in ts:
        x.start()
    for x in ts:
        x.join(120)
    assert all(o is not None for o in out), "a load thread did not finish"
    return out


def test_resolution_order_and_glob_pools(env):
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a, b))
    add_route(t, name="gpt-4o", targets=[tg("a", "mock-large")])
    add_route(t, name="gpt-4*", priority=10, targets=[tg("b", "pool-gpt4")])
    star = add_route(t, name="*", priority=0, targets=[tg("a", "catch-all")])
    add_route(t, name="claude-?-[hs]*", priority=5, targets=[tg("b", "pool-claude")])
    add_route(t, name="text-*", endpoint="embeddings", priority=50, targets=[tg("a", "pool-embed")])

    def asked(model, path=CHAT):
        st, h, body = t.request("POST", path, {"model": model, "input": "x", "messages": []})
        return st, h, json.loads(body)

    st, h, body = asked("gpt-4o")               # an exact name beats every pool
    assert st == 200 and h["x-turnout-route"] == "gpt-4o" and body["model"] == "mock-large"
    st, h, body = asked("gpt-4-turbo")          # the pool with the highest priority that matches
    assert h["x-turnout-route"] == "gpt-4*" and h["x-turnout-provider"] == "b" and body["model"] == "pool-gpt4"
    assert b.log()[-1]["model"] == "pool-gpt4"  # model mapping: the provider receives the target's model
    assert asked("claude-3-haiku")[1]["x-turnout-route"] == "claude-?-[hs]*"
    assert asked("claude-3-opus")[1]["x-turnout-route"] == "*"
    assert asked("anything")[2]["model"] == "catch-all"
    assert asked("text-small")[1]["x-turnout-route"] == "*"        # the embeddings pool is not for chat
    assert asked("text-small", "/v1/embeddings")[2]["model"] == "pool-embed"
    # a higher priority pool takes over at once
    add_route(t, name="gpt-*", priority=20, targets=[tg("a", "pool-gpt")])
    assert asked("gpt-4-turbo")[1]["x-turnout-route"] == "gpt-*"
    # without the catch-all: PROVIDER/MODEL, then bare aliases, then 404
    assert t.admin("DELETE", "/v1/model-routes/" + star["id"])[0] == 200
    st, h, body = asked("b/mock-large")
    assert st == 200 and h["x-turnout-provider"] == "b" and "x-turnout-route" not in h
    st, h, body = asked("mock-small")
    assert st == 200 and h["x-turnout-provider"] == "a"              # both list it: provider order
    st, h, body = asked("nothing-matches")
    assert st == 404 and body["error"]["code"] == "model_not_found"
    st, h, body = asked("text-small")
    assert st == 404
    # route::NAME names a route only
    assert asked("route::gpt-4o")[1]["x-turnout-route"] == "gpt-4o"
    assert asked("route::gpt-4-turbo")[0] == 404


def test_router_slugs(env):
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a, b))
    st, router = t.admin("POST", "/v1/routers", {"slug": "team", "name": "Team"})
    assert st == 201
    add_route(t, name="r1", router="team", targets=[tg("b")])
    add_route(t, name="r1", targets=[tg("a")])
    add_route(t, name="only-global", targets=[tg("a")])
    add_route(t, name="team-*", router="team", targets=[tg("b", "team-pool")])
    st, h, _ = t.request("POST", "/router/team" + CHAT, {"model": "r1", "messages": []})
    assert st == 200 and h["x-turnout-provider"] == "b"
    assert t.chat("r1")[1]["x-turnout-provider"] == "a"
    st, h, body = t.request("POST", "/router/team" + CHAT, {"model": "team-x", "messages": []})
    assert st == 200 and json.loads(body)["model"] == "team-pool"
    assert t.chat("team-x")[0] == 404                       # the router's pool is not global
    for model in ("only-global", "a/mock-small", "mock-small"):
        st, _, body = t.request("POST", "/router/team" + CHAT, {"model": model, "messages": []})
        assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found", model
    st, _, body = t.request("GET", "/router/team/v1/models")
    assert st == 200 and [m["id"] for m in json.loads(body)["data"]] == ["r1"]
    st, _, body = t.request("POST", "/router/nope" + CHAT, {"model": "r1", "messages": []})
    assert st == 404 and json.loads(body)["error"]["code"] == "router_not_found"
    assert t.admin("PATCH", "/v1/routers/" + router["id"], {"active": False})[0] == 200
    st, _, body = t.request("POST", "/router/team" + CHAT, {"model": "r1", "messages": []})
    assert st == 404 and json.loads(body)["error"]["code"] == "router_not_found"


def test_weighted_split(env):
    a = env.mock("--no-log", name="a")
    b = env.mock("--no-log", name="b")
    t = env.turnout(seed_for(a, b))
    add_route(t, name="w", strategy="weighted", targets=[tg("a", weight=3), tg("b", weight=1)])
    n = 10000
    got = Counter(h["x-turnout-provider"] for st, h in hammer(t, [{"model": "w", "messages": []}] * n))
    share = got["a"] / n
    print("    weighted 3:1 over %d requests: a %.2f%%, b %.2f%%" % (n, 100 * share, 100 * got["b"] / n))
    assert abs(share - 0.75) <= 0.02 and got["a"] + got["b"] == n, got


def test_round_robin_even_across_workers(env):
    mocks = [env.mock("--no-log", name=x) for x in ("a", "b", "c")]
    t = env.turnout(seed_for(*mocks), config={"workers": 2})
    add_route(t, name="rr", strategy="round_robin", targets=[tg("a"), tg("b"), tg("c")])
    n = 9999
    got = Counter(h["x-turnout-provider"] for st, h in hammer(t, [{"model": "rr", "messages": []}] * n))
    print("    round robin over %d requests on 2 workers: %s" % (n, dict(got)))
    assert sum(got.values()) == n
    for p in "abc":
        assert abs(got[p] / n - 1 / 3) <= 0.01, got
    # both workers took part: the split held across them, not inside one
    workers = Counter(e["worker"] for e in t.access_log(CHAT, count=n, timeout=10))
    assert len(workers) == 2, workers


def test_ab_sticky_split_and_counts(env):
    a = env.mock("--no-log", name="a")
    b = env.mock("--no-log", name="b")
    t = env.turnout(seed_for(a, b))
    r = add_route(t, name="exp", strategy="ab", targets=[tg("a", variant="control"), tg("b", variant="treatment")])
    n = 10000
    res = hammer(t, [{"model": "exp", "messages": [], "user": "user-%d" % i} for i in range(n)])
    variants = [h["x-turnout-variant"] for st, h in res]
    assert all(st == 200 for st, h in res)
    assert all((v == "control") == (h["x-turnout-provider"] == "a") for v, (st, h) in zip(variants, res))
    share = variants.count("control") / n
    print("    ab 1:1 over %d users: control %.2f%%" % (n, 100 * share))
    assert abs(share - 0.5) <= 0.02
    # sticky: the same user, header or key always gets the same variant
    again = hammer(t, [{"model": "exp", "messages": [], "user": "user-%d" % (i % 50)} for i in range(500)])
    for i, (st, h) in enumerate(again):
        assert h["x-turnout-variant"] == variants[i % 50]
    by_header = hammer(t, [{"model": "exp", "messages": []}] * 200, lambda i: {"x-turnout-ab-key": "k%d" % (i % 10)})
    seen = {}
    for i, (st, h) in enumerate(by_header):
        assert seen.setdefault(i % 10, h["x-turnout-variant"]) == h["x-turnout-variant"]
    # per-variant counts, as the dry-run shows them. A request is counted when
    # the worker is done with it, just after its answer went out, so the last
    # answers' counts may be a moment behind their clients: read until all are
    # in (a count that never comes fails after 5 s)
    total = n + 500 + 200
    deadline = time.time() + 5
    while True:
        st, dry = t.admin("POST", "/v1/model-routes/dry-run", {"model": "exp", "user": "user-7"})
        assert st == 200 and dry["variant"] == variants[7]
        counts = {v["variant"]: v for v in dry["variants"]}
        if counts["control"]["requests"] + counts["treatment"]["requests"] == total or time.time() > deadline:
            break
        time.sleep(0.05)
    assert counts["control"]["requests"] + counts["treatment"]["requests"] == total, counts
    assert counts["control"]["errors"] == 0 and counts["control"]["mean_latency_ms"] > 0
    assert counts["control"]["requests"] == variants.count("control") + \
        sum(1 for st, h in again + by_header if h["x-turnout-variant"] == "control")


def test_provider_preferences(env):
    eu = env.mock(name="eu")
    us = env.mock("--delay-ms", "60", name="us")
    seed = seed_for(eu, us)
    seed["providers"][0].update(region="eu", eu_owned=True, data_collection="deny")
    seed["providers"][0]["models"] = [{"name": "m", "input_price": 3, "output_price": 6}]
    seed["providers"][1].update(region="us", eu_owned=False, data_collection="allow")
    seed["providers"][1]["models"] = [{"name": "m", "input_price": 0.5, "output_price": 1}]
    t = env.turnout(seed)
    cases = [({}, ["eu", "us"]), ({"only": ["us"]}, ["us"]), ({"ignore": ["eu"]}, ["us"]),
             ({"order": ["us"]}, ["us", "eu"]), ({"sort": "price"}, ["us", "eu"]),
             ({"eu_owned": True}, ["eu"]), ({"data_residency": "eu"}, ["eu"]),
             ({"data_residency": ["us", "ap"]}, ["us"]), ({"data_collection": "deny"}, ["eu"]),
             ({"allow_fallbacks": False, "order": ["us"]}, ["us"])]
    for i, (prefs, want) in enumerate(cases):
        add_route(t, name="p%d" % i, provider=prefs, targets=[tg("eu", "m"), tg("us", "m")])
        st, dry = t.admin("POST", "/v1/model-routes/dry-run", {"model": "p%d" % i})
        usable = [c["provider"] for c in dry["candidates"] if c["available"]]
        assert st == 200 and usable == want, (prefs, dry)
        gone = [c for c in dry["candidates"] if not c["available"]]
        assert len(gone) == 2 - len(want)
        for c in gone:
            assert c["state"] in ("filtered", "no_fallbacks") and c["filter"], c
        st, h, _ = t.chat("p%d" % i)
        assert st == 200 and h["x-turnout-provider"] == want[0], (prefs, h)
    st, dry = t.admin("POST", "/v1/model-routes/dry-run", {"model": "p1"})
    assert dry["candidates"][1] == {"provider": "eu", "model": "m", "available": False, "state": "filtered",
                                    "filter": "only"}
    # allow_fallbacks false: one attempt only
    st, _ = t.admin("POST", "/v1/providers", {"name": "down", "base_url": "http://127.0.0.1:9/v1"})
    add_route(t, name="nofb", provider={"allow_fallbacks": False}, targets=[tg("down", "m"), tg("eu", "m")])
    st, h, _ = t.chat("nofb")
    assert st == 502 and h["x-turnout-attempts"] == "1"
    # sort by latency: each target is measured once, then the faster one leads
    add_route(t, name="fast", provider={"sort": "latency"}, targets=[tg("us", "lat-m"), tg("eu", "lat-m")])
    first = [t.chat("fast")[1]["x-turnout-provider"] for _ in range(2)]
    assert sorted(first) == ["eu", "us"], first
    assert [t.chat("fast")[1]["x-turnout-provider"] for _ in range(5)] == ["eu"] * 5
    for body, field in [({"only": "eu"}, "provider.only"), ({"sort": "cost"}, "provider.sort"),
                        ({"data_collection": "maybe"}, "provider.data_collection"), ({"colour": 1}, "provider.colour"),
                        ({"data_residency": 5}, "provider.data_residency")]:
        st, err = t.admin("POST", "/v1/model-routes", {"name": "bad", "provider": body, "targets": [tg("eu")]})
        assert st == 400 and err["error"]["param"] == field, (body, err)


def test_dry_run_calls_no_provider(env):
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a, b))
    add_route(t, name="chain", targets=[tg("a", order=0), tg("b", order=1, enabled=False), tg("a", "x", order=2)])
    add_route(t, name="off", enabled=False, targets=[tg("a", order=0), tg("b", order=1)])
    add_route(t, name="emb", endpoint="embeddings", targets=[tg("a")])
    add_route(t, name="lm-*", priority=3, targets=[tg("b", "pool")])
    st, k = t.admin("POST", "/v1/keys", {"tenant": "acme"})
    add_route(t, name="chain", scope="tenant:acme", targets=[tg("b", "acme-model")])
    st, d = t.admin("POST", "/v1/model-routes/dry-run", {"model": "chain"})
    assert st == 200 and d["status"] == 200 and d["rule"] == "exact" and d["route"]["name"] == "chain"
    assert "scope global" in d["why"]
    assert [(c["provider"], c["model"], c["state"]) for c in d["candidates"]] == [
        ("a", "mock-small", "usable"), ("a", "x", "usable"), ("b", "mock-small", "target_disabled")]
    st, d = t.admin("POST", "/v1/model-routes/dry-run", {"model": "chain", "key_id": k["id"]})
    assert d["tenant"] == "acme" and d["route"]["scope"] == "tenant:acme" and d["candidates"][0]["model"] == "acme-model"
    st, d = t.admin("POST", "/v1/model-routes/dry-run", {"model": "off"})
    assert [(c["provider"], c["state"]) for c in d["candidates"]] == [("b", "usable"), ("a", "route_disabled")]
    st, d = t.admin("POST", "/v1/model-routes/dry-run", {"model": "lm-7b"})
    assert d["rule"] == "glob" and "lm-*" in d["why"] and d["candidates"][0]["model"] == "pool"
    st, d = t.admin("POST", "/v1/model-routes/dry-run", {"model": "emb"})
    assert d["status"] == 400 and d["code"] == "wrong_endpoint"
    st, d = t.admin("POST", "/v1/model-routes/dry-run", {"model": "emb", "endpoint": "embeddings"})
    assert d["status"] == 200
    st, d = t.admin("POST", "/v1/model-routes/dry-run", {"model": "zzz"})
    assert d["status"] == 404 and d["code"] == "model_not_found" and d["candidates"] == []
    assert t.admin("POST", "/v1/model-routes/dry-run", {"endpoint": "chat"})[0] == 400
    assert t.admin("POST", "/v1/model-routes/dry-run", {"model": "x", "endpoint": "video"})[0] == 400
    assert t.admin("GET", "/v1/model-routes/dry-run")[0] == 405
    assert a.stats()["requests"] == 0 and b.stats()["requests"] == 0


def test_models_list_per_key(env):
    a = env.mock(name="a")
    t = env.turnout(seed_for(a), config={"require_key": True})
    acme = t.admin("POST", "/v1/keys", {"tenant": "acme"})[1]
    globex = t.admin("POST", "/v1/keys", {"tenant": "globex"})[1]
    limited = t.admin("POST", "/v1/keys", {"tenant": "acme", "allowed_routes": ["acme-route"]})[1]
    add_route(t, name="shared", targets=[tg("a")])
    add_route(t, name="acme-route", scope="tenant:acme", targets=[tg("a")])
    add_route(t, name="globex-route", scope="tenant:globex", targets=[tg("a")])
    add_route(t, name="mine", scope="key:" + acme["id"], targets=[tg("a")])
    add_route(t, name="pool-*", targets=[tg("a")])

    def names(key):
        st, _, body = t.request("GET", "/v1/models", headers={"Authorization": "Bearer " + key["secret"]})
        assert st == 200
        return sorted(m["id"] for m in json.loads(body)["data"])

    assert names(acme) == ["a/mock-large", "a/mock-small", "acme-route", "mine", "mock-small", "shared"]
    assert names(globex) == ["a/mock-large", "a/mock-small", "globex-route", "mock-small", "shared"]
    assert names(limited) == ["acme-route"]
    assert t.request("GET", "/v1/models")[0] == 401
