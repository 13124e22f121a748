"""SPEC 10, cluster.etcd: nodes that share one configuration through etcd v3.
Real etcd (Debian's /usr/bin/etcd), three real turnout nodes, each with its
own data dir, ports and LMDB mirror; admin writes on any node are etcd
transactions, every node mirrors the prefix through a watch."""
import json
import os
import signal
import subprocess
import threading
import time

import harness

from cluster_support import (PREFIX, export, has_record, import_seed, label, list_all, metrics, metrics_text, readyz,
                             route, route_names, same_exports, start_etcd, start_node, start_nodes,
                             start_nodes_together, wait_for)
from harness import free_port, seed_for

ROUTES = "/v1/model-routes"
ERROR_FIELDS = {"message", "type", "param", "code"}


def setup(env, routes=None, n=3, config=None):
    """etcd, a mock provider and N nodes sharing one seed (the first node
    imports it into the empty etcd)."""
    print("    env %s" % env.dir)
    etcd = start_etcd(env)
    m = env.mock()
    seed = seed_for(m, routes=routes if routes is not None else [route("r0")])
    names = ("node-a", "node-b", "node-c", "node-d")[:n]
    return etcd, m, seed, start_nodes(env, etcd, seed, names, config)


def propagation(writer, others, seen, what, bound=1.0):
    """After a write answered on WRITER: polls every node of OTHERS until
    SEEN(node) holds, at once, so each lag is from the answer to that node;
    prints each and fails when one is over BOUND seconds (polls on to 5 s so
    that a late one still shows its lag)."""
    t0 = time.monotonic()
    lags = {}
    deadline = t0 + max(5.0, bound)
    while len(lags) < len(others) and time.monotonic() < deadline:
        for o in others:
            if o not in lags and seen(o):
                lags[o] = time.monotonic() - t0
        time.sleep(0.002)
    worst = 0.0
    for o in others:
        lag = lags.get(o)
        print("    propagation %s->%s %s (%s)" % (label(writer), label(o),
                                                  "%.3f s" % lag if lag is not None else "never (5 s)", what))
        worst = max(worst, lag if lag is not None else 1e9)
    assert worst < bound, "%s: propagation over %.1f s: %s" % (
        what, bound, {label(o): lags.get(o) for o in others})
    return worst


def error_of(body, code):
    """Checks an OpenAI-shaped error body with CODE; returns its error object."""
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert set(err) >= ERROR_FIELDS, err
    assert err["code"] == code, err
    return err


def revisions(nodes):
    out = []
    for t in nodes:
        st, r = readyz(t)
        assert st == 200, (label(t), st, r)
        out.append(r["revision"])
    return out


def converged(nodes, bound=5.0):
    """Waits until every node's readyz revision is the same: that revision."""
    wait_for(lambda: len(set(revisions(nodes))) == 1, bound, "revisions equal on every node")
    return revisions(nodes)[0]


def test_writes_propagate_to_every_node_within_a_second(env):
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    # the seed went into etcd once, and every node mirrors the same records
    names = [route_names(t) for t in nodes]
    assert names == [["r0"]] * 3, names
    ids = [[r["id"] for r in list_all(t)] for t in nodes]
    assert ids[0] == ids[1] == ids[2], ids
    assert etcd.count_prefix("/turnout/") > 0, etcd.get_prefix("/")
    for t in nodes:
        st, r = readyz(t)
        assert st == 200 and r["status"] == "ok" and r["etcd"] == "connected", (label(t), st, r)
        assert isinstance(r["revision"], int) and r["revision"] > 0, r
    worst = 0.0
    for writer in nodes:
        others = [t for t in nodes if t is not writer]
        for i in range(3):
            name = "p-%s-%d" % (label(writer).lower(), i)
            st, rec = writer.admin("POST", ROUTES, route(name))
            assert st == 201, (st, rec)
            # the writer reads its own write at once, admin API and data plane
            assert has_record(writer, ROUTES, rec["id"]), "%s not on its writer at once" % name
            st, h, body = writer.chat(name)
            assert st == 200 and h["x-turnout-route"] == name, (st, body)
            worst = max(worst, propagation(writer, others, lambda t: has_record(t, ROUTES, rec["id"]),
                                           "create " + name))
            for t in others:   # once the admin API has it, so does the data plane
                st, h, body = t.chat(name)
                assert st == 200 and h["x-turnout-route"] == name and h["x-turnout-provider"] == "mock", \
                    (label(t), st, body)
    # a PATCH on B, a DELETE on C
    st, rec = b.admin("POST", ROUTES, route("edited"))
    assert st == 201
    propagation(b, [a, c], lambda t: has_record(t, ROUTES, rec["id"]), "create edited")
    st, p = b.admin("PATCH", ROUTES + "/" + rec["id"], {"description": "patched on B",
                                                         "targets": [{"provider": "mock", "model": "mock-small"}]})
    assert st == 200 and p["description"] == "patched on B", p
    worst = max(worst, propagation(b, [a, c], lambda t: t.admin("GET", ROUTES + "/" + rec["id"])[1].get(
        "description") == "patched on B", "patch edited"))
    for t in nodes:
        st, h, body = t.chat("edited")
        assert st == 200 and json.loads(body)["model"] == "mock-small", (label(t), st, body)
    st, out = c.admin("DELETE", ROUTES + "/" + rec["id"])
    assert st == 200 and out["deleted"] is True, out
    assert not has_record(c, ROUTES, rec["id"])
    worst = max(worst, propagation(c, [a, b], lambda t: not has_record(t, ROUTES, rec["id"]), "delete edited"))
    for t in nodes:
        st, _, body = t.chat("edited")
        assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found", (label(t), st, body)
    # every node holds the same routes, ids included
    lists = [sorted((r["name"], r["id"]) for r in list_all(t)) for t in nodes]
    assert lists[0] == lists[1] == lists[2] and len(lists[0]) == 10, lists
    print("    worst propagation %.3f s" % worst)


test_writes_propagate_to_every_node_within_a_second.bound = 120


def test_concurrent_creates_of_one_name_exactly_one_wins(env):
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    wins = {"A": 0, "B": 0}
    winners = {}
    for i in range(10):
        name = "race-%d" % i
        gate = threading.Barrier(2)
        res = {}

        def create(t, who):
            gate.wait(10)
            res[who] = t.admin("POST", ROUTES, route(name, description="from " + who), timeout=20)

        ths = [threading.Thread(target=create, args=(t, who)) for t, who in ((a, "A"), (b, "B"))]
        for th in ths:
            th.start()
        for th in ths:
            th.join(30)
        assert set(res) == {"A", "B"}, res
        statuses = sorted(st for st, _ in res.values())
        assert statuses == [201, 409], (name, res)
        winner = next(who for who, (st, _) in res.items() if st == 201)
        loser = "B" if winner == "A" else "A"
        error_of(res[loser][1], "conflict")
        wins[winner] += 1
        winners[name] = (winner, res[winner][1]["id"])
    print("    10 rounds of concurrent creates: A won %d, B won %d; each round one 201 and one 409" %
          (wins["A"], wins["B"]))

    # in the end every name exists once on every node, as its winner wrote it
    def all_there(t):
        recs = list_all(t)
        names = [r["name"] for r in recs]
        return all(names.count(n) == 1 for n in winners)

    for t in nodes:
        wait_for(lambda: all_there(t), 5, "every race-N once on %s" % label(t))
        recs = {r["name"]: r for r in list_all(t)}
        for name, (who, rid) in winners.items():
            assert recs[name]["id"] == rid and recs[name]["description"] == "from " + who, (label(t), recs[name])
        assert sorted(recs) == sorted(list(winners) + ["r0"]), (label(t), sorted(recs))


test_concurrent_creates_of_one_name_exactly_one_wins.bound = 180


def test_etcd_down_nodes_serve_from_their_mirror_and_refuse_writes(env):
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    st, before = a.admin("POST", ROUTES, route("before", model="mock-small"))
    assert st == 201
    propagation(a, [b, c], lambda t: has_record(t, ROUTES, before["id"]), "create before")
    rev = converged(nodes)
    names = route_names(a)
    etcd.kill()
    t0 = time.monotonic()
    for t in nodes:
        wait_for(lambda: readyz(t)[1].get("etcd") == "unreachable", 10, "%s readyz says etcd unreachable" % label(t))
    print("    etcd killed: every node's readyz says unreachable after %.3f s" % (time.monotonic() - t0))
    for t in nodes:
        # the data path keeps serving the mirrored routes
        for model, upstream in (("r0", "mock-large"), ("before", "mock-small")):
            st, h, body = t.chat(model)
            assert st == 200 and h["x-turnout-provider"] == "mock" and json.loads(body)["model"] == upstream, \
                (label(t), model, st, body)
        # admin writes: 503 store_unavailable, OpenAI-shaped; nothing changes
        t1 = time.monotonic()
        st, body = t.admin("POST", ROUTES, route("during-" + label(t)), timeout=20)
        assert st == 503, (label(t), st, body)
        err = error_of(body, "store_unavailable")
        print("    %s: POST while etcd is down: %d %s in %.3f s" % (label(t), st, err["code"], time.monotonic() - t1))
        st, body = t.admin("PATCH", ROUTES + "/" + before["id"], {"description": "no"}, timeout=20)
        assert st == 503, (label(t), st, body)
        error_of(body, "store_unavailable")
        st, body = t.admin("DELETE", ROUTES + "/" + before["id"], timeout=20)
        assert st == 503, (label(t), st, body)
        error_of(body, "store_unavailable")
        st, body = t.admin("POST", "/v1/routers", {"slug": "nope", "name": "Nope"}, timeout=20)
        assert st == 503, (label(t), st, body)
        error_of(body, "store_unavailable")
        # reads still answer from the mirror
        assert route_names(t) == names, (label(t), route_names(t))
        st, r = readyz(t)
        assert st == 200 and r["status"] == "ok" and r["etcd"] == "unreachable" and r["revision"] == rev, \
            (label(t), st, r)
    # the metrics say so
    time.sleep(1.2)
    for t in nodes:
        wait_for(lambda: metrics(t).get("turnout_etcd_connected") == 0, 5, "%s connected 0" % label(t))
        s = metrics(t)
        assert s["turnout_etcd_behind_seconds"] > 0, (label(t), s["turnout_etcd_behind_seconds"])
        assert s["turnout_etcd_errors_total"] >= 1, (label(t), s["turnout_etcd_errors_total"])
        assert s["turnout_etcd_revision"] == rev, (label(t), s["turnout_etcd_revision"], rev)
        print("    %s: connected %g behind %.1f s errors %g revision %g" % (
            label(t), s["turnout_etcd_connected"], s["turnout_etcd_behind_seconds"],
            s["turnout_etcd_errors_total"], s["turnout_etcd_revision"]))
    # `turnout import` cannot commit either; `turnout export` reads the mirror
    path = os.path.join(env.dir, "while-down.json")
    with open(path, "w") as f:
        json.dump({"routes": [route("imported-while-down")]}, f)
    p = import_seed(a, path)
    assert p.returncode != 0, (p.returncode, p.stdout, p.stderr)
    print("    import while etcd is down: exit %d, %s" % (p.returncode, p.stderr.decode(errors="replace").strip()[:200]))
    # (`turnout export` brings the mirror up to etcd's revision first: with
    # etcd down it may refuse, saying so, or print the mirror)
    rc, out, err = export(a, check=False)
    print("    export while etcd is down: exit %d %s" % (rc, err.decode(errors="replace").strip()[:200]))
    if rc == 0:
        exported = same_exports(env, nodes, "down")
        assert "imported-while-down" not in [r["name"] for r in exported["routes"]]
    else:
        assert b"etcd" in err, err
    for t in nodes:
        assert route_names(t) == names, (label(t), route_names(t))
        assert t.chat("r0")[0] == 200


test_etcd_down_nodes_serve_from_their_mirror_and_refuse_writes.bound = 180


def test_etcd_back_watches_reconnect_and_writes_converge(env):
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    rev = converged(nodes)
    etcd.kill()
    for t in nodes:
        wait_for(lambda: readyz(t)[1].get("etcd") == "unreachable", 10, "%s sees etcd down" % label(t))
    assert b.admin("POST", ROUTES, route("during"), timeout=20)[0] == 503
    time.sleep(4)        # long enough for the watches' back-off to grow
    etcd.start()
    t0 = time.monotonic()
    # the first write goes in as soon as B can make it, whether or not A
    # and C are back yet: they catch up from their mirrors' revision
    wait_for(lambda: b.admin("POST", ROUTES, route("after-return"), timeout=20)[0] == 201, 15,
             "a write on B after etcd returned", step=0.02)
    first = time.monotonic() - t0
    st, rec = b.admin("GET", ROUTES + "?limit=100")
    rid = next(r["id"] for r in rec["data"] if r["name"] == "after-return")
    lags = {}
    for t in (a, c):
        lags[label(t)] = wait_for(lambda: has_record(t, ROUTES, rid), 10, "after-return on %s" % label(t))
    for t in nodes:
        wait_for(lambda: readyz(t)[1].get("etcd") == "connected", 15, "%s reconnects to etcd" % label(t), step=0.02)
    back = time.monotonic() - t0
    print("    etcd restarted: B's first write took %.3f s; A had it %.3f s later, C %.3f s later; every node "
          "connected after %.3f s" % (first, lags["A"], lags["C"], back))
    assert back < 5, back
    # writes on any node converge on the others, as before
    st, rec2 = c.admin("POST", ROUTES, route("after-return-2", model="mock-small"), timeout=20)
    assert st == 201, (st, rec2)
    propagation(c, [a, b], lambda t: has_record(t, ROUTES, rec2["id"]), "create after etcd returned")
    st, rec3 = a.admin("PATCH", ROUTES + "/" + rid, {"description": "patched on A"}, timeout=20)
    assert st == 200, (st, rec3)
    propagation(a, [b, c], lambda t: t.admin("GET", ROUTES + "/" + rid)[1].get("description") == "patched on A",
                "patch after etcd returned")
    for t in nodes:
        assert t.chat("after-return")[0] == 200 and t.chat("after-return-2")[0] == 200
        assert route_names(t) == ["after-return", "after-return-2", "r0"], (label(t), route_names(t))
    rev2 = converged(nodes)
    assert rev2 > rev, (rev, rev2)
    for t in nodes:
        wait_for(lambda: metrics(t).get("turnout_etcd_connected") == 1, 5, "%s connected 1" % label(t))
        s = metrics(t)
        assert s["turnout_etcd_behind_seconds"] == 0 and s["turnout_etcd_revision"] == rev2, (label(t), s)
    same_exports(env, nodes, "back")


test_etcd_back_watches_reconnect_and_writes_converge.bound = 180


def test_node_restarted_while_etcd_is_down_serves_its_mirror(env):
    """A node that restarts while etcd is down serves what its mirror holds
    and catches up when etcd returns; a node with nothing mirrored cannot
    serve anything, so it does not start."""
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    st, rec = a.admin("POST", ROUTES, route("mirrored", model="mock-small"))
    assert st == 201
    rev = converged(nodes)
    data_dir = json.load(open(c.config_path))["data_dir"]
    assert c.stop() == 0
    etcd.kill()
    c2 = start_node(env, etcd, seed, "node-c-again", config={"data_dir": data_dir})
    st, h, body = c2.chat("mirrored")
    assert st == 200 and json.loads(body)["model"] == "mock-small", (st, body)
    st, r = readyz(c2)
    assert st == 200 and r["etcd"] == "unreachable" and r["revision"] == rev, (st, r)
    st, body = c2.admin("POST", ROUTES, route("nope"), timeout=20)
    assert st == 503, (st, body)
    error_of(body, "store_unavailable")
    # an empty mirror and no etcd: it gives up (within its retries) and serves nothing
    cfg = json.load(open(c.config_path))
    cfg["data_dir"] = os.path.join(env.dir, "empty-data")
    cfg["listen"] = "127.0.0.1:%d" % free_port()
    cfg["admin"]["listen"] = "127.0.0.1:%d" % free_port()
    del cfg["seed"]
    path = os.path.join(env.dir, "empty.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(harness.BUILD, "turnout"), "-c", path], capture_output=True, timeout=60,
                       env=dict(os.environ, TURNOUT_ADMIN_KEY=harness.ADMIN_KEY))
    err = p.stderr.decode(errors="replace")
    print("    empty mirror, etcd down: exit %d after %.1f s: %s" % (p.returncode, time.monotonic() - t0,
                                                                   err.strip().splitlines()[-1][:200]))
    assert p.returncode != 0 and "etcd" in err, (p.returncode, err)
    # etcd back: C catches up from its mirror's revision
    etcd.start()
    wait_for(lambda: readyz(c2)[1].get("etcd") == "connected", 10, "C reconnects", step=0.02)
    st, rec2 = b.admin("POST", ROUTES, route("after"), timeout=20)
    assert st == 201, rec2
    propagation(b, [a, c2], lambda t: has_record(t, ROUTES, rec2["id"]), "create after etcd returned")
    converged([a, b, c2])
    same_exports(env, [a, b, c2], "caught-up")


test_node_restarted_while_etcd_is_down_serves_its_mirror.bound = 180


def test_hung_etcd_is_reported_unreachable_and_writes_refused(env):
    """etcd that stops answering but keeps its connections open (SIGSTOP:
    a stall or a partition that drops packets, unlike a crash, closes
    nothing): the nodes keep serving, admin writes answer 503 within a
    bound, and readyz and the metrics say etcd is unreachable instead of
    connected. Then it answers again: connected, and writes converge."""
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    rev = converged(nodes)
    etcd.pause()
    t0 = time.monotonic()
    res = {}
    th = threading.Thread(target=lambda: res.update(w=a.admin("POST", ROUTES, route("while-hung"), timeout=60)))
    th.start()
    time.sleep(0.3)
    # (the admin API has one thread: a read waits behind the write)
    t1 = time.monotonic()
    try:
        st = a.admin("GET", ROUTES, timeout=30)[0]
    except OSError as e:
        st = repr(e)
    print("    etcd paused: an admin GET on A during A's write answered %s after %.2f s" % (st, time.monotonic() - t1))
    for t in nodes:
        st, h, body = t.chat("r0")
        assert st == 200, (label(t), st, body)
    th.join(60)
    st, body = res["w"]
    took = time.monotonic() - t0
    print("    etcd paused: POST on A answered %d after %.2f s" % (st, took))
    assert st == 503 and took < 15, (st, took, body)
    error_of(body, "store_unavailable")
    states = {}

    def reported(t):
        states[label(t)] = (readyz(t)[1].get("etcd"), metrics(t).get("turnout_etcd_connected"))
        return states[label(t)] == ("unreachable", 0)

    try:
        for t in nodes:
            wait_for(lambda: reported(t), max(1.0, 20 - (time.monotonic() - t0)),
                     "%s reports etcd unreachable" % label(t), step=0.2)
        print("    etcd paused: every node reports it unreachable after %.1f s" % (time.monotonic() - t0))
    except AssertionError:
        raise AssertionError("etcd paused for %.0f s, a write on A got 503 store_unavailable (%s), yet readyz "
                             "and turnout_etcd_connected still say: %s" % (
                                 time.monotonic() - t0, body["error"]["message"], states))
    finally:
        etcd.resume()
    for t in nodes:
        wait_for(lambda: readyz(t)[1].get("etcd") == "connected", 15, "%s connected again" % label(t), step=0.05)
    st, rec = b.admin("POST", ROUTES, route("after-hang"), timeout=20)
    assert st == 201, (st, rec)
    propagation(b, [a, c], lambda t: has_record(t, ROUTES, rec["id"]), "create after etcd answered again")
    assert converged(nodes) > rev


test_hung_etcd_is_reported_unreachable_and_writes_refused.bound = 120


def test_stopped_node_resyncs_after_compaction_past_its_revision(env):
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    made = {}
    for name in ("keep", "doomed-1", "doomed-2"):
        st, rec = a.admin("POST", ROUTES, route(name))
        assert st == 201
        made[name] = rec["id"]
    st, extra = a.admin("POST", "/v1/providers", {"name": "extra", "base_url": m.base_url,
                                                   "api_key_env": "MOCK_API_KEY", "models": [{"name": "mock-small"}]})
    assert st == 201, extra
    rev_c = converged(nodes)
    assert sorted(made) == [n for n in route_names(c) if n != "r0"]
    data_dir = json.load(open(c.config_path))["data_dir"]
    assert c.stop() == 0, c.output()[-2000:]
    # while C is down: deletes, creates, a patch; then etcd forgets the history
    for name in ("doomed-1", "doomed-2"):
        assert a.admin("DELETE", ROUTES + "/" + made[name])[0] == 200
    assert b.admin("DELETE", "/v1/providers/" + extra["id"])[0] == 200
    for i in range(5):
        assert b.admin("POST", ROUTES, route("new-%d" % i))[0] == 201
    assert a.admin("PATCH", ROUTES + "/" + made["keep"], {"description": "changed while C was down"})[0] == 200
    now = etcd.revision()
    assert now > rev_c + 1, (now, rev_c)
    etcd.compact(now)
    try:
        etcd.call("/v3/kv/range", {"key": "Lw==", "revision": rev_c + 1})
        raise AssertionError("etcd still serves revision %d after compacting to %d" % (rev_c + 1, now))
    except RuntimeError as e:
        assert "compacted" in str(e), e
    print("    C stopped at revision %d; etcd compacted to %d" % (rev_c, now))
    t0 = time.monotonic()
    c2 = start_node(env, etcd, seed, "node-c-again", config={"data_dir": data_dir})
    started = time.monotonic() - t0
    want = route_names(a)
    lag = wait_for(lambda: route_names(c2) == want, 10, "C's routes after its resync equal A's")
    print("    C restarted in %.3f s; its mirror matched A's %.3f s after that" % (started, lag))
    assert not has_record(c2, ROUTES, made["doomed-1"]) and not has_record(c2, ROUTES, made["doomed-2"])
    assert not has_record(c2, "/v1/providers", extra["id"])
    st, keep = c2.admin("GET", ROUTES + "/" + made["keep"])
    assert st == 200 and keep["description"] == "changed while C was down", keep
    assert c2.chat("doomed-1")[0] == 404 and c2.chat("new-4")[0] == 200 and c2.chat("keep")[0] == 200
    assert converged([a, b, c2]) == now
    same_exports(env, [a, b, c2], "resynced")
    s = metrics(c2)
    assert s["turnout_etcd_revision"] == now and s["turnout_etcd_connected"] == 1, s
    # and it follows the watch again afterwards
    st, rec = a.admin("POST", ROUTES, route("after-resync"))
    assert st == 201
    propagation(a, [c2], lambda t: has_record(t, ROUTES, rec["id"]), "create after C's resync")


test_stopped_node_resyncs_after_compaction_past_its_revision.bound = 180


def test_fresh_node_loads_the_snapshot_before_serving(env):
    etcd, m, seed, nodes = setup(env, n=2, config={"require_key": True})
    a, b = nodes
    assert a.admin("POST", "/v1/routers", {"slug": "team", "name": "Team"})[0] == 201
    st, p = a.admin("POST", "/v1/providers", {"name": "extra", "base_url": m.base_url,
                                               "api_key_env": "MOCK_API_KEY", "models": [{"name": "mock-small"}]})
    assert st == 201, p
    for i in range(20):
        assert b.admin("POST", ROUTES, route("bulk-%02d" % i))[0] == 201
    assert a.admin("POST", ROUTES, route("in-team", router="team", model="mock-small"))[0] == 201
    assert a.admin("POST", ROUTES, route("via-extra", provider="extra", model="mock-small"))[0] == 201
    st, key = b.admin("POST", "/v1/keys", {"name": "app"})
    assert st == 201, key
    rev = converged(nodes)
    records = etcd.count_prefix(PREFIX + "records/")
    # a node with an empty data dir and a seed of its own: etcd has records,
    # so its seed is not imported; the snapshot is there for its first request
    own = seed_for(m, routes=[route("seed-of-d")])
    t0 = time.monotonic()
    d = start_node(env, etcd, own, "node-d")
    print("    node D (empty data dir) serving after %.3f s" % (time.monotonic() - t0))
    st, r = readyz(d)
    assert st == 200 and r["revision"] == rev and r["etcd"] == "connected", (r, rev)
    assert route_names(d) == route_names(a), (route_names(d), route_names(a))
    same_exports(env, [a, b, d], "fresh")
    auth = {"Authorization": "Bearer " + key["secret"]}
    st, h, body = d.request("POST", "/v1/chat/completions", {"model": "via-extra", "messages": []}, auth)
    assert st == 200 and h["x-turnout-provider"] == "extra", (st, body)
    st, h, body = d.request("POST", "/router/team/v1/chat/completions", {"model": "in-team", "messages": []}, auth)
    assert st == 200 and json.loads(body)["model"] == "mock-small", (st, body)
    assert "seed-of-d" not in route_names(d)
    st, _, body = d.request("POST", "/v1/chat/completions", {"model": "seed-of-d", "messages": []}, auth)
    assert st == 404, (st, body)
    assert "seed-of-d" not in route_names(a) and "seed-of-d" not in route_names(b)
    # (the key's use on D is written through etcd, its last_used_at: the
    # revision moves, the set of records does not)
    assert etcd.count_prefix(PREFIX + "records/") == records, \
        "starting node D added records to etcd (its seed?): %d -> %d" % (records, etcd.count_prefix(PREFIX + "records/"))


test_fresh_node_loads_the_snapshot_before_serving.bound = 180


def test_a_key_used_on_one_node_leaves_every_node_the_same_store(env):
    """A key's use is recorded (last_used_at) by the node that saw it; in a
    cluster the nodes must still hold one store: the key record reads the
    same on every node and `turnout export` prints the same on each."""
    etcd, m, seed, nodes = setup(env, config={"require_key": True})
    a, b, c = nodes
    st, key = a.admin("POST", "/v1/keys", {"name": "app"})
    assert st == 201, key
    converged(nodes)
    same_exports(env, nodes, "before-use")
    st, h, body = b.request("POST", "/v1/chat/completions", {"model": "r0", "messages": []},
                            {"Authorization": "Bearer " + key["secret"]})
    assert st == 200, (st, body)
    time.sleep(1.5)      # the admin thread records the use at once; the keeper within a second

    def key_records():
        return [t.admin("GET", "/v1/keys/" + key["id"])[1] for t in nodes]

    try:
        wait_for(lambda: key_records()[0] == key_records()[1] == key_records()[2], 3,
                 "the key record equal on every node")
    except AssertionError:
        recs = key_records()
        raise AssertionError("the key record differs between nodes after its use on B:\n%s" %
                             "\n".join("%s %s" % (label(t), json.dumps(r, sort_keys=True)) for t, r in zip(nodes, recs)))
    same_exports(env, nodes, "after-use")


test_a_key_used_on_one_node_leaves_every_node_the_same_store.bound = 120


def test_seed_is_imported_once_when_nodes_start_together(env):
    print("    env %s" % env.dir)
    etcd = start_etcd(env)
    m = env.mock()
    seed = seed_for(m, routes=[route("s-1"), route("s-2", model="mock-small")])
    seed["routers"] = [{"slug": "team", "name": "Team"}]
    assert etcd.count_prefix("/turnout/") == 0
    nodes = start_nodes_together(env, etcd, seed, ["node-a", "node-b", "node-c"])
    converged(nodes)
    lists = [sorted((r["name"], r["id"]) for r in list_all(t)) for t in nodes]
    assert [n for n, _ in lists[0]] == ["s-1", "s-2"], lists[0]
    assert lists[0] == lists[1] == lists[2], lists
    routers = [[x["id"] for x in list_all(t, "/v1/routers")] for t in nodes]
    assert len(routers[0]) == 1 and routers[0] == routers[1] == routers[2], routers
    same_exports(env, nodes, "together")
    for t in nodes:
        assert t.chat("s-2")[0] == 200


test_seed_is_imported_once_when_nodes_start_together.bound = 120


def test_import_on_one_node_reaches_all_and_exports_match(env):
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    doc = {"routers": [{"slug": "imported-team", "name": "Imported"}],
           "routes": [route("imp-1"), route("imp-2", model="mock-small"),
                      route("imp-team", router="imported-team")]}
    path = os.path.join(env.dir, "import.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    p = import_seed(a, path)
    assert p.returncode == 0, (p.returncode, p.stderr)
    want = ["imp-1", "imp-2", "imp-team", "r0"]
    propagation(a, nodes, lambda t: route_names(t) == want, "turnout import on A")
    for t in nodes:
        st, h, body = t.chat("imp-2")
        assert st == 200 and json.loads(body)["model"] == "mock-small", (label(t), st, body)
        st, h, body = t.request("POST", "/router/imported-team/v1/chat/completions", {"model": "imp-team",
                                                                                       "messages": []})
        assert st == 200, (label(t), st, body)
    converged(nodes)
    exported = same_exports(env, nodes, "imported")
    assert sorted(r["name"] for r in exported["routes"]) == want
    assert [r["slug"] for r in exported["routers"]] == ["imported-team"]
    # an edited record imported on C replaces the stored one everywhere
    edited = {"routes": [dict(route("imp-1", model="mock-small"), description="edited in git")]}
    with open(os.path.join(env.dir, "edit.json"), "w") as f:
        json.dump(edited, f)
    p = import_seed(c, os.path.join(env.dir, "edit.json"))
    assert p.returncode == 0, p.stderr
    imp1 = next(r for r in exported["routes"] if r["name"] == "imp-1")
    propagation(c, [a, b], lambda t: t.admin("GET", ROUTES + "/" + imp1["id"])[1].get("description") ==
                "edited in git", "turnout import on C")
    converged(nodes)
    after = {r["name"]: r for r in same_exports(env, nodes, "edited")["routes"]}
    assert after["imp-1"]["id"] == imp1["id"] and after["imp-1"]["targets"][0]["model"] == "mock-small"
    for t in nodes:
        assert json.loads(t.chat("imp-1")[2])["model"] == "mock-small"


test_import_on_one_node_reaches_all_and_exports_match.bound = 180


def test_metrics_and_readyz_report_the_applied_revision(env):
    etcd, m, seed, nodes = setup(env)
    for i, t in enumerate(nodes):
        assert t.admin("POST", ROUTES, route("m-%d" % i))[0] == 201
    rev = converged(nodes)
    assert rev <= etcd.revision(), (rev, etcd.revision())
    for t in nodes:
        text = metrics_text(t)
        for name, kind in (("turnout_etcd_revision", "gauge"), ("turnout_etcd_connected", "gauge"),
                           ("turnout_etcd_behind_seconds", "gauge"), ("turnout_etcd_errors_total", "counter")):
            assert "# TYPE %s %s\n" % (name, kind) in text, (label(t), name, kind)
        s = metrics(t)
        assert s["turnout_etcd_revision"] == rev and s["turnout_etcd_connected"] == 1, (label(t), s)
        assert s["turnout_etcd_behind_seconds"] == 0 and s["turnout_etcd_errors_total"] >= 0, (label(t), s)
        st, r = readyz(t)
        assert st == 200 and r == dict(r, status="ok", etcd="connected", revision=rev), r
    print("    revision %d on every node (etcd at %d)" % (rev, etcd.revision()))
    # a write moves every node's revision on, to the same value
    assert nodes[1].admin("POST", ROUTES, route("m-next"))[0] == 201
    rev2 = converged(nodes)
    assert rev2 > rev
    vals = [metrics(t)["turnout_etcd_revision"] for t in nodes]
    assert vals == [rev2] * 3, (vals, rev2)


test_metrics_and_readyz_report_the_applied_revision.bound = 120


def test_prefix_separates_clusters_on_one_etcd(env):
    print("    env %s" % env.dir)
    etcd = start_etcd(env)
    m = env.mock()
    one = start_nodes(env, etcd, seed_for(m, routes=[route("one-seed")]), ("node-a", "node-b"), prefix="/one/")
    two = start_node(env, etcd, seed_for(m, routes=[route("two-seed")]), "node-x", prefix="/two/")
    assert route_names(one[0]) == route_names(one[1]) == ["one-seed"]
    assert route_names(two) == ["two-seed"]
    st, rec = one[0].admin("POST", ROUTES, route("one-only"))
    assert st == 201
    propagation(one[0], [one[1]], lambda t: has_record(t, ROUTES, rec["id"]), "create in /one/")
    assert two.admin("POST", ROUTES, route("one-only"))[0] == 201   # no conflict across prefixes
    time.sleep(0.3)
    assert route_names(two) == ["one-only", "two-seed"] and route_names(one[1]) == ["one-only", "one-seed"]
    assert etcd.count_prefix("/one/") > 0 and etcd.count_prefix("/two/") > 0


def test_concurrent_writes_on_every_node_all_land(env):
    """Writes of different records on every node at once: the guard makes
    the losers of each race check again against the caught-up mirror; every
    one of them lands (none is refused for the others' sake), once."""
    etcd, m, seed, nodes = setup(env)
    results, gate = [], threading.Barrier(6)

    def writer(t, tag):
        gate.wait(10)
        for i in range(15):
            st, body = t.admin("POST", ROUTES, route("w-%s-%02d" % (tag, i)), timeout=30)
            results.append((tag, i, st, body if st != 201 else None))

    ths = [threading.Thread(target=writer, args=(t, "%s%d" % (label(t), k))) for t in nodes for k in range(2)]
    t0 = time.monotonic()
    for th in ths:
        th.start()
    for th in ths:
        th.join(120)
    took = time.monotonic() - t0
    bad = [r for r in results if r[2] != 201]
    print("    %d creates from 3 nodes at once in %.2f s; %d not 201" % (len(results), took, len(bad)))
    assert len(results) == 90 and not bad, bad[:5]
    want = sorted(["w-%s%d-%02d" % (label(t), k, i) for t in nodes for k in range(2) for i in range(15)] + ["r0"])
    for t in nodes:
        wait_for(lambda: route_names(t) == want, 5, "all 90 routes on %s" % label(t))
    converged(nodes)
    same_exports(env, nodes, "concurrent")


test_concurrent_writes_on_every_node_all_land.bound = 240


def test_concurrent_provider_delete_and_route_create_never_both_succeed(env):
    """A route created on one node while its provider is deleted on another:
    either the delete wins (the create is refused: no such provider) or the
    create does (the delete is refused: the provider is in use), never both."""
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    outcomes = []
    for i in range(10):
        st, p = a.admin("POST", "/v1/providers", {"name": "p%d" % i, "base_url": m.base_url,
                                                   "api_key_env": "MOCK_API_KEY", "models": [{"name": "mock-small"}]})
        assert st == 201, p
        wait_for(lambda: has_record(b, "/v1/providers", p["id"]), 2, "p%d on B" % i)
        gate, res = threading.Barrier(2), {}

        def delete():
            gate.wait(10)
            res["delete"] = a.admin("DELETE", "/v1/providers/" + p["id"], timeout=20)

        def create():
            gate.wait(10)
            res["create"] = b.admin("POST", ROUTES, route("uses-p%d" % i, provider="p%d" % i, model="mock-small"),
                                    timeout=20)

        ths = [threading.Thread(target=delete), threading.Thread(target=create)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(30)
        d, cr = res["delete"][0], res["create"][0]
        assert (d, cr) in ((200, 400), (409, 201)), (i, res)
        outcomes.append("delete" if d == 200 else "create")
        converged(nodes)
        for t in nodes:
            has_p = has_record(t, "/v1/providers", p["id"])
            has_r = "uses-p%d" % i in route_names(t)
            assert has_p == has_r == (d != 200), (label(t), i, has_p, has_r, res)
    print("    10 races: the delete won %d, the create %d; never both" % (outcomes.count("delete"),
                                                                          outcomes.count("create")))
    same_exports(env, nodes, "races")


test_concurrent_provider_delete_and_route_create_never_both_succeed.bound = 180


def test_fresh_node_pages_through_a_large_snapshot(env):
    """Over 5,000 records (the snapshot's page, src/etcd.c PAGE): a node with
    an empty data dir still gets every one of them (it takes the pages one
    transaction each, its revision with the last)."""
    etcd, m, seed, nodes = setup(env, n=2)
    a, b = nodes
    path = os.path.join(env.dir, "bulk.json")
    with open(path, "w") as f:
        json.dump({"routes": [route("bulk-%04d" % i) for i in range(5050)]}, f)
    t0 = time.monotonic()
    p = import_seed(a, path)
    assert p.returncode == 0, p.stderr
    print("    imported 5050 routes through etcd in %.2f s" % (time.monotonic() - t0))
    rev = converged(nodes)
    want = route_names(a)
    assert len(want) == 5051 and route_names(b) == want, (len(want), len(route_names(b)))
    t0 = time.monotonic()
    d = start_node(env, etcd, seed, "node-d")
    print("    node D mirrored %d routes and served after %.3f s" % (len(want), time.monotonic() - t0))
    assert route_names(d) == want, len(route_names(d))
    assert readyz(d)[1]["revision"] == rev
    assert d.chat("bulk-5049")[0] == 200 and d.chat("bulk-0000")[0] == 200
    same_exports(env, [a, b, d], "large")


test_fresh_node_pages_through_a_large_snapshot.bound = 240


def test_import_of_a_large_store_into_a_cluster(env):
    """`turnout import` of a store bigger than etcd's default transaction
    (--max-txn-ops 128): all of it lands on every node, or, if it cannot,
    none of it does and the command says why."""
    etcd, m, seed, nodes = setup(env)
    doc = {"routers": [{"slug": "big", "name": "Big"}],
           "routes": [route("big-%03d" % i) for i in range(300)]}
    path = os.path.join(env.dir, "big.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    p = import_seed(nodes[0], path)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        time.sleep(0.5)
        partial = [len([n for n in route_names(t) if n.startswith("big-")]) for t in nodes]
        raise AssertionError("import of 301 records failed (exit %d): %s; routes of it on A, B, C: %s" % (
            p.returncode, err.strip(), partial))
    want = sorted(["big-%03d" % i for i in range(300)] + ["r0"])
    for t in nodes:
        wait_for(lambda: route_names(t) == want, 5, "the 300 imported routes on %s" % label(t))
    converged(nodes)
    same_exports(env, nodes, "big-import")


test_import_of_a_large_store_into_a_cluster.bound = 180


def test_large_seed_bootstraps_an_empty_cluster(env):
    """The config's seed, imported into an empty etcd by the first node, may
    be larger than one etcd transaction's default limit (128 operations)."""
    print("    env %s" % env.dir)
    etcd = start_etcd(env)
    m = env.mock()
    seed = seed_for(m, routes=[route("seed-%03d" % i) for i in range(200)])
    try:
        a = start_node(env, etcd, seed, "node-a")
    except RuntimeError as e:
        said = [line for line in str(e).splitlines() if "[error]" in line or line.startswith("SUMMARY")]
        raise AssertionError("the first node did not start with a 201-record seed: %s" % " | ".join(said))
    b = start_node(env, etcd, seed, "node-b")
    want = sorted("seed-%03d" % i for i in range(200))
    assert route_names(a) == want and route_names(b) == want
    same_exports(env, [a, b], "big-seed")


test_large_seed_bootstraps_an_empty_cluster.bound = 120


def test_sighup_keeps_the_node_in_its_cluster(env):
    """A reload (SIGHUP) keeps the cluster settings the node started with
    (a change of them waits for a restart): the mirror follows on."""
    etcd, m, seed, nodes = setup(env)
    a, b, c = nodes
    with open(b.config_path) as f:
        cfg = json.load(f)
    cfg["cluster"]["prefix"] = "/elsewhere/"
    cfg["log"]["level"] = "debug"
    with open(b.config_path, "w") as f:
        json.dump(cfg, f)
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload" in b.output().lower() or "SIGHUP" in b.output(), 5, "B logs the reload")
    time.sleep(0.3)
    st, rec = a.admin("POST", ROUTES, route("after-hup"))
    assert st == 201
    propagation(a, [b, c], lambda t: has_record(t, ROUTES, rec["id"]), "create after B's SIGHUP")
    st, rec2 = b.admin("POST", ROUTES, route("from-b-after-hup"))
    assert st == 201, rec2
    propagation(b, [a, c], lambda t: has_record(t, ROUTES, rec2["id"]), "create on B after its SIGHUP")
    assert etcd.count_prefix("/elsewhere/") == 0
    converged(nodes)
    print("    B after SIGHUP: %s" % [line for line in b.output().splitlines() if "cluster" in line][-1:])
