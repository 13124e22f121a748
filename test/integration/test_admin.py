"""The admin API: CRUD, validation, pagination, live changes on the data plane, durability across SIGKILL."""
import json
import os
import signal
import subprocess
import threading
import time

from harness import seed_for


def start(env, *mocks):
    mocks = mocks or (env.mock(),)
    return mocks, env.turnout(seed_for(*mocks))


def route(name, provider="mock", model="mock-large", **extra):
    r = {"name": name, "targets": [{"provider": provider, "model": model}]}
    r.update(extra)
    return r


def test_route_crud_and_live_changes(env):
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a, b))
    st, rec = t.admin("POST", "/v1/model-routes", route("live", "a", "mock-large", description="first"))
    assert st == 201, rec
    assert len(rec["id"]) == 36 and rec["created_at"] and rec["updated_at"] and rec["description"] == "first"
    # used at once by the data plane, on every worker
    for _ in range(4):
        st, h, body = t.chat("live")
        assert st == 200 and h["x-turnout-provider"] == "a" and json.loads(body)["model"] == "mock-large"
    st, got = t.admin("GET", "/v1/model-routes/" + rec["id"])
    assert st == 200 and got == rec
    # PATCH the target: the next request reaches the other provider
    st, patched = t.admin("PATCH", "/v1/model-routes/" + rec["id"],
                          {"targets": [{"provider": "b", "model": "mock-small"}], "description": None})
    assert st == 200, patched
    assert "description" not in patched and patched["created_at"] == rec["created_at"] and patched["id"] == rec["id"]
    st, h, body = t.chat("live")
    assert st == 200 and h["x-turnout-provider"] == "b" and json.loads(body)["model"] == "mock-small"
    assert b.log()[-1]["model"] == "mock-small"
    # DELETE: the next request is 404
    st, out = t.admin("DELETE", "/v1/model-routes/" + rec["id"])
    assert st == 200 and out == {"id": rec["id"], "object": "model_route", "deleted": True}
    st, _, body = t.chat("live")
    assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found"
    assert t.admin("GET", "/v1/model-routes/" + rec["id"])[0] == 404
    assert t.admin("DELETE", "/v1/model-routes/" + rec["id"])[0] == 404


def test_validation_errors_name_the_field(env):
    _, t = start(env)
    cases = [
        (route("r", retry={"max_429_retries": 11}), "retry.max_429_retries"),
        (route("r", retry={"retry_after_cap_s": 181}), "retry.retry_after_cap_s"),
        (route("r", max_in_flight=0), "max_in_flight"),
        (route("r", max_in_flight=10001), "max_in_flight"),
        (route("r", timeouts={"first_byte_s": 0}), "timeouts.first_byte_s"),
        (route("r", timeouts={"total_s": 3601}), "timeouts.total_s"),
        (route("n" * 256), "name"),
        (route("r", description="d" * 1001), "description"),
        (route("r", provider="nope"), "targets[0].provider"),
        (route("r", endpoint="video"), "endpoint"),
        (route("r", bogus=1), "bogus"),
        ({"name": "r"}, "targets"),
        (route("r", id="00000000-0000-4000-8000-000000000000"), "id"),
    ]
    for body, field in cases:
        st, err = t.admin("POST", "/v1/model-routes", body)
        assert st == 400, (body, st, err)
        assert err["error"]["param"] == field and err["error"]["code"] == "invalid_value", (field, err)
    # the edges of each range are accepted
    ok = route("edges", retry={"max_429_retries": 10, "retry_after_cap_s": 180}, max_in_flight=10000,
               timeouts={"first_byte_s": 1800, "total_s": 3600}, description="d" * 1000)
    assert t.admin("POST", "/v1/model-routes", ok)[0] == 201
    assert t.admin("POST", "/v1/model-routes", route("n" * 255))[0] == 201
    st, err = t.admin("POST", "/v1/model-routes", route("edges"))
    assert st == 409 and err["error"]["code"] == "conflict" and err["error"]["param"] == "name"
    # the same name in another scope is another route
    assert t.admin("POST", "/v1/model-routes", route("edges", scope="tenant:acme"))[0] == 201


def test_protocol_errors(env):
    _, t = start(env)
    st, err = t.admin("GET", "/v1/model-routes", key="wrong")
    assert st == 401 and err["error"]["code"] == "invalid_api_key"
    assert t.admin("PUT", "/v1/model-routes")[0] == 405
    assert t.admin("POST", "/v1/model-routes/00000000-0000-4000-8000-000000000000")[0] == 405
    assert t.admin("GET", "/v1/model-routes/00000000-0000-4000-8000-000000000000")[0] == 404
    assert t.admin("PATCH", "/v1/model-routes/00000000-0000-4000-8000-000000000000", {"enabled": False})[0] == 404
    assert t.admin("GET", "/v1/nothing")[0] == 404
    from harness import http_request
    st, _, body = http_request(t.admin_port, "POST", "/v1/model-routes", b"name=x",
                               {"Authorization": "Bearer " + t.admin_key,
                                "Content-Type": "application/x-www-form-urlencoded"})
    assert st == 415, body
    st, _, body = http_request(t.admin_port, "POST", "/v1/model-routes", b"[1,2]",
                               {"Authorization": "Bearer " + t.admin_key, "Content-Type": "application/json"})
    assert st == 400
    st, err = t.admin("GET", "/v1/model-routes?limit=0")
    assert st == 400 and err["error"]["param"] == "limit"
    st, err = t.admin("GET", "/v1/model-routes?cursor=zz")
    assert st == 400 and err["error"]["param"] == "cursor"
    st, err = t.admin("GET", "/v1/model-routes?colour=red")
    assert st == 400 and err["error"]["param"] == "colour"


def test_list_pages_and_filters(env):
    _, t = start(env)
    made = {}
    for i in range(7):
        st, rec = t.admin("POST", "/v1/model-routes", route("p%d" % i, endpoint="embeddings" if i % 3 == 0 else "chat",
                                                            enabled=i != 6))
        assert st == 201
        made[rec["id"]] = rec
    seen, cursor, pages = [], None, 0
    while True:
        st, page = t.admin("GET", "/v1/model-routes?limit=3&include_disabled=true" +
                           ("&cursor=" + cursor if cursor else ""))
        assert st == 200 and page["object"] == "list" and len(page["data"]) <= 3
        seen += [r["id"] for r in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(made) and pages == 3
    st, page = t.admin("GET", "/v1/model-routes?limit=100")
    assert sorted(r["name"] for r in page["data"]) == ["p%d" % i for i in range(6)]   # p6 is disabled
    st, page = t.admin("GET", "/v1/model-routes?endpoint=embeddings&include_disabled=true")
    assert sorted(r["name"] for r in page["data"]) == ["p0", "p3", "p6"]
    st, page = t.admin("GET", "/v1/model-routes?scope=tenant%3Aacme")
    assert st == 200 and page["data"] == []


def test_providers_and_routers(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    st, p = t.admin("POST", "/v1/providers", {"name": "second", "base_url": m.base_url,
                                               "models": [{"name": "mock-small"}]})
    assert st == 201 and p["name"] == "second" and len(p["id"]) == 36
    assert t.admin("POST", "/v1/providers", {"name": "second", "base_url": m.base_url})[0] == 409
    st, r = t.admin("POST", "/v1/model-routes", route("via-second", "second", "mock-small"))
    assert st == 201
    st, h, _ = t.chat("via-second")
    assert st == 200 and h["x-turnout-provider"] == "second"
    st, err = t.admin("DELETE", "/v1/providers/" + p["id"])
    assert st == 409 and "via-second" in err["error"]["message"]
    st, err = t.admin("PATCH", "/v1/providers/" + p["id"], {"name": "renamed"})
    assert st == 409
    st, p2 = t.admin("PATCH", "/v1/providers/" + p["id"], {"max_in_flight": 5})
    assert st == 200 and p2["max_in_flight"] == 5
    # routers: a route inside one is reached only through /router/{slug}
    st, rt = t.admin("POST", "/v1/routers", {"slug": "team-a", "name": "Team A"})
    assert st == 201 and rt["active"] is True
    st, _ = t.admin("POST", "/v1/model-routes", route("inside", router="team-a"))
    assert st == 201
    st, _, _ = t.request("POST", "/router/team-a/v1/chat/completions", {"model": "inside"})
    assert st == 200
    assert t.chat("inside")[0] == 404
    assert t.admin("DELETE", "/v1/routers/" + rt["id"])[0] == 409
    st, rt2 = t.admin("PATCH", "/v1/routers/" + rt["id"], {"active": False})
    assert st == 200 and rt2["active"] is False
    st, _, body = t.request("POST", "/router/team-a/v1/chat/completions", {"model": "inside"})
    assert st == 404 and json.loads(body)["error"]["code"] == "router_not_found"
    assert t.admin("DELETE", "/v1/model-routes/" + r["id"])[0] == 200
    assert t.admin("DELETE", "/v1/providers/" + p["id"])[0] == 200


def test_acknowledged_writes_survive_sigkill(env):
    """Every write that got its 201 is in the store after a SIGKILL mid-stream of writes."""
    _, t = start(env)
    acked, stop = [], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            try:
                st, rec = t.admin("POST", "/v1/model-routes", route("k%d" % i), timeout=2)
            except OSError:
                return
            if st == 201:
                acked.append(rec["id"])
            i += 1

    th = threading.Thread(target=writer)
    th.start()
    time.sleep(1.0)
    t.proc.send_signal(signal.SIGKILL)
    t.proc.wait(5)
    stop.set()
    th.join(5)
    t.expect_exit = True
    assert len(acked) > 10, len(acked)
    # restart on the same data directory (the seed is not imported again: the store is not empty)
    t2 = env.turnout(seed_for(env.procs[0]), config={"data_dir": os.path.join(env.dir, "turnout-data")}, name="again")
    present = set()
    cursor = None
    while True:
        st, page = t2.admin("GET", "/v1/model-routes?limit=1000" + ("&cursor=" + cursor if cursor else ""))
        present |= {r["id"] for r in page["data"]}
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    missing = [i for i in acked if i not in present]
    assert not missing, "%d of %d acknowledged writes lost" % (len(missing), len(acked))
    print("    %d acknowledged writes before SIGKILL, all present after restart" % len(acked))


def test_full_store_answers_507_and_data_plane_keeps_serving(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-small"}]}]),
                    config={"store": {"map_size_mb": 1}})
    status, i = None, 0
    while i < 5000:
        status, body = t.admin("POST", "/v1/model-routes", route("fill-%d" % i, description="x" * 1000))
        if status != 201:
            break
        i += 1
    assert status == 507, (i, status, body)
    assert body["error"]["code"] == "store_full" and "map_size_mb" in body["error"]["message"]
    st, page = t.admin("GET", "/v1/model-routes?limit=1000")
    assert st == 200 and len(page["data"]) == i + 1      # nothing half-written
    assert t.chat("r")[0] == 200
    # the way out: a larger map on restart, with everything still there
    t.stop()
    t2 = env.turnout(seed_for(m), name="bigger",
                     config={"store": {"map_size_mb": 4}, "data_dir": os.path.join(env.dir, "turnout-data")})
    st, rec = t2.admin("POST", "/v1/model-routes", route("after-resize"))
    assert st == 201, rec
    assert t2.chat("fill-0")[0] == 200
    print("    map of 1 MB full after %d routes: 507, data plane still 200; 4 MB on restart takes writes" % i)


def test_change_while_a_request_holds_the_old_records(env):
    """Workers keep parsed records until the store changes. A request in flight
    keeps the records it resolved (route, provider, its retry and timeout
    settings) through a change; requests after the change see the new ones;
    the old generation is freed once the slow request is done (ASan checks the
    use and the free)."""
    slow = env.mock("--delay-ms", "800", name="slow")
    fast = env.mock(name="fast")
    t = env.turnout(seed_for(slow, fast), config={"workers": 1})
    st, rec = t.admin("POST", "/v1/model-routes", route("live", "slow", "mock-large", timeouts={"first_byte_s": 5}))
    assert st == 201, rec
    assert t.chat("live")[0] == 200                      # the records are cached now
    out = {}
    th = threading.Thread(target=lambda: out.update(r=t.chat("live")))
    th.start()
    deadline = time.time() + 3
    while not slow.log() and time.time() < deadline:      # the slow request reached the upstream
        time.sleep(0.01)
    st, _ = t.admin("PATCH", "/v1/model-routes/" + rec["id"], {"targets": [{"provider": "fast", "model": "mock-small"}]})
    assert st == 200
    st, _ = t.admin("PATCH", "/v1/providers/" + provider_id(t, "slow"), {"base_url": "http://127.0.0.1:1/v1"})
    assert st == 200
    st, h, body = t.chat("live")                          # the change, at once, while the slow one waits
    assert st == 200 and h["x-turnout-provider"] == "fast" and json.loads(body)["model"] == "mock-small"
    th.join(5)
    st, h, body = out["r"]
    assert st == 200 and h["x-turnout-provider"] == "slow" and json.loads(body)["model"] == "mock-large", body
    assert len(slow.log()) == 2 and len(fast.log()) == 1


def test_a_provider_change_reaches_the_next_request(env):
    """A worker reads a provider's fields once per store generation; a change
    to the provider is a new generation, so the next request goes where the
    provider now points, with its new settings."""
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a), config={"workers": 1})
    st, rec = t.admin("POST", "/v1/model-routes", route("moving", "a", "mock-small"))
    assert st == 201, rec
    for _ in range(3):
        assert t.chat("moving")[0] == 200
    assert len(a.log()) == 3
    st, _ = t.admin("PATCH", "/v1/providers/" + provider_id(t, "a"), {"base_url": b.base_url})
    assert st == 200
    st, h, _ = t.chat("moving")
    assert st == 200 and len(a.log()) == 3 and len(b.log()) == 1, (st, len(a.log()), len(b.log()))
    st, _ = t.admin("PATCH", "/v1/providers/" + provider_id(t, "a"), {"enabled": False})
    assert st == 200
    assert t.chat("moving")[0] != 200 and len(b.log()) == 1


def provider_id(t, name):
    st, page = t.admin("GET", "/v1/providers")
    assert st == 200, page
    return next(p["id"] for p in page["data"] if p["name"] == name)
