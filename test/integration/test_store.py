"""The store's own behaviour: route shorthand, idempotent enablements, provider secrets,
export and import, and recovery after a crash."""
import json
import os
import signal
import subprocess

from harness import BUILD, CANARY, seed_for



def two_providers(env, *a_flags):
    a = env.mock(*a_flags, name="a")
    b = env.mock(name="b")
    seed = seed_for(a, b)
    seed["providers"][1]["models"].append({"name": "b-only"})
    return a, b, seed


def test_primary_and_fallback_model_shorthand(env):
    a, b, seed = two_providers(env, "--status", "503")
    t = env.turnout(seed)
    st, r = t.admin("POST", "/v1/model-routes", {"name": "fast-summariser", "primary_model": "a/mock-large",
                                                  "fallback_model": "b-only", "enabled": True})
    assert st == 201, r
    assert r["primary_model"] == "a/mock-large" and r["fallback_model"] == "b-only" and r["strategy"] == "fallback"
    assert [(x["provider"], x["model"]) for x in r["targets"]] == [("a", "mock-large"), ("b", "b-only")]
    # the fallback serves while the primary answers 503
    st, h, body = t.chat("fast-summariser")
    assert st == 200 and h["x-turnout-provider"] == "b" and json.loads(body)["model"] == "b-only", h
    assert a.log()[-1]["model"] == "mock-large"
    # PATCH one side: the targets follow, the other field stays
    st, r2 = t.admin("PATCH", "/v1/model-routes/" + r["id"], {"fallback_model": "b/mock-small"})
    assert st == 200 and r2["primary_model"] == "a/mock-large" and r2["fallback_model"] == "b/mock-small", r2
    assert [(x["provider"], x["model"]) for x in r2["targets"]] == [("a", "mock-large"), ("b", "mock-small")]
    assert json.loads(t.chat("fast-summariser")[2])["model"] == "mock-small"
    st, r3 = t.admin("PATCH", "/v1/model-routes/" + r["id"], {"fallback_model": None})
    assert st == 200 and "fallback_model" not in r3 and len(r3["targets"]) == 1
    # explicit targets replace the shorthand
    st, r4 = t.admin("PATCH", "/v1/model-routes/" + r["id"], {"targets": [{"provider": "b", "model": "mock-large"}]})
    assert st == 200 and "primary_model" not in r4 and "fallback_model" not in r4
    # a bare model is served by the first provider (by name) that lists it
    st, r5 = t.admin("POST", "/v1/model-routes", {"name": "bare", "primary_model": "mock-small"})
    assert st == 201 and r5["targets"][0]["provider"] == "a"
    for body, field in [({"name": "x", "primary_model": "nowhere-model"}, "primary_model"),
                        ({"name": "x", "primary_model": "mock-small", "fallback_model": "ghost/m"}, "fallback_model"),
                        ({"name": "x", "fallback_model": "mock-small"}, "fallback_model"),
                        ({"name": "x", "primary_model": "mock-small", "targets": []}, "targets"),
                        ({"name": "x", "strategy": "direct", "primary_model": "mock-small",
                          "fallback_model": "b-only"}, "fallback_model")]:
        st, err = t.admin("POST", "/v1/model-routes", body)
        assert st == 400 and err["error"]["param"] == field, (body, err)


def test_recreating_an_enablement_folds_into_the_existing_row(env):
    a, b, seed = two_providers(env)
    t = env.turnout(seed)
    en = {"name": "mock-large", "targets": [{"provider": "a", "model": "mock-large"}]}
    st, first = t.admin("POST", "/v1/model-routes", en)
    assert st == 201
    st, again = t.admin("POST", "/v1/model-routes", en)
    assert st == 200 and again == first, (again, first)
    st, more = t.admin("POST", "/v1/model-routes", dict(en, description="from automation"))
    assert st == 200 and more["id"] == first["id"] and more["description"] == "from automation"
    assert more["created_at"] == first["created_at"]
    # not the same enablement (another provider), or not an enablement at all: a conflict
    st, err = t.admin("POST", "/v1/model-routes", {"name": "mock-large",
                                                    "targets": [{"provider": "b", "model": "mock-large"}]})
    assert st == 409 and err["error"]["param"] == "name"
    alias = {"name": "team-model", "targets": [{"provider": "a", "model": "mock-large"}]}
    assert t.admin("POST", "/v1/model-routes", alias)[0] == 201
    assert t.admin("POST", "/v1/model-routes", alias)[0] == 409
    st, page = t.admin("GET", "/v1/model-routes")
    assert sorted(r["name"] for r in page["data"]) == ["mock-large", "team-model"]


def test_provider_key_never_shown_or_logged(env):
    m = env.mock()
    bad = env.mock("--status", "401", name="bad")
    t = env.turnout(seed_for(m, bad))
    st, p = t.admin("POST", "/v1/providers", {"name": "keyed", "base_url": m.base_url, "api_key": CANARY,
                                               "models": [{"name": "mock-small"}]})
    assert st == 201 and "api_key" not in p and p["api_key_last4"] == CANARY[-4:], p
    st, p2 = t.admin("POST", "/v1/providers", {"name": "keyed-bad", "base_url": bad.base_url, "api_key": CANARY})
    assert st == 201
    assert t.admin("POST", "/v1/model-routes", {"name": "k", "targets": [
        {"provider": "keyed-bad", "model": "mock-small"}, {"provider": "keyed", "model": "mock-small"}]})[0] == 201
    # used upstream as the provider's bearer key (the 401 of the first fails over)
    st, h, body = t.chat("k")
    assert st == 200 and h["x-turnout-provider"] == "keyed"
    assert m.log()[-1]["headers"]["authorization"] == "Bearer " + CANARY
    # kept across a PATCH of another field, and never in a read
    st, p3 = t.admin("PATCH", "/v1/providers/" + p["id"], {"description": "rotated never"})
    assert st == 200 and "api_key" not in p3
    t.chat("k")
    assert m.log()[-1]["headers"]["authorization"] == "Bearer " + CANARY
    assert t.admin("POST", "/v1/providers", {"name": "z", "base_url": m.base_url, "api_key_last4": "1234"})[0] == 400
    reads = [t.admin("GET", "/v1/providers/" + p["id"]), t.admin("GET", "/v1/providers"),
             t.admin("GET", "/v1/providers?limit=1")]
    # errors: every target failing, a stream, a timeout-free miss
    st_all = t.admin("POST", "/v1/model-routes", {"name": "all-bad", "targets": [
        {"provider": "keyed-bad", "model": "mock-small"}]})
    st, h, body = t.chat("all-bad")
    assert st == 502 and CANARY not in body.decode()
    st, h, body = t.chat("k", stream=True)
    assert st == 200
    exported = subprocess.run([os.path.join(BUILD, "turnout"), "export", "-c", t.config_path],
                              capture_output=True, timeout=20)
    assert exported.returncode == 0 and b'"keyed"' in exported.stdout
    texts = [json.dumps(r) for r in reads] + [body.decode(), exported.stdout.decode(), exported.stderr.decode(),
                                             json.dumps(st_all)]
    t.stop()
    texts.append(t.output())
    for text in texts:
        assert CANARY not in text and CANARY[3:] not in text, text[:300]


def export(cfg):
    p = subprocess.run([os.path.join(BUILD, "turnout"), "export", "-c", cfg], capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def import_(cfg, seed):
    return subprocess.run([os.path.join(BUILD, "turnout"), "import", "-c", cfg, seed], capture_output=True,
                          timeout=20)


def test_export_and_import_round_trip(env):
    a, b, seed = two_providers(env)
    t = env.turnout(seed)
    assert t.admin("POST", "/v1/routers", {"slug": "team", "name": "Team"})[0] == 201
    assert t.admin("POST", "/v1/providers", {"name": "keyed", "base_url": a.base_url, "api_key": CANARY})[0] == 201
    routes = [{"name": "sc", "primary_model": "a/mock-large", "fallback_model": "b-only"},
              {"name": "in-router", "router": "team", "targets": [{"provider": "b", "model": "mock-small"}]},
              {"name": "mine", "scope": "tenant:acme", "targets": [{"provider": "keyed", "model": "m"}]}]
    for r in routes:
        assert t.admin("POST", "/v1/model-routes", r)[0] == 201
    st, key = t.admin("POST", "/v1/keys", {"name": "ci", "tenant": "acme"})
    assert st == 201
    # export beside the running gateway
    first = export(t.config_path)
    assert sorted(first) == ["budgets", "keys", "providers", "routers", "routes", "tenants"]
    assert len(first["routes"]) == 3 and len(first["keys"]) == 1 and len(first["routers"]) == 1
    assert "secret" not in first["keys"][0] and len(first["keys"][0]["secret_hash"]) == 64
    assert CANARY not in json.dumps(first)
    path = os.path.join(env.dir, "backup.json")
    with open(path, "w") as f:
        json.dump(first, f)
    # into an empty store: the same store comes back, ids and times included
    cfg2 = os.path.join(env.dir, "restore.json")
    with open(t.config_path) as f:
        c = json.load(f)
    c["data_dir"] = os.path.join(env.dir, "restore-data")
    del c["seed"]
    with open(cfg2, "w") as f:
        json.dump(c, f)
    p = import_(cfg2, path)
    assert p.returncode == 0, p.stderr
    assert export(cfg2) == first
    # importing it again changes nothing (records match by id and name)
    assert import_(cfg2, path).returncode == 0
    assert export(cfg2) == first
    # a broken seed changes nothing either, and says what is wrong
    broken = dict(first, routes=first["routes"] + [{"name": "bad", "targets": [{"provider": "ghost", "model": "x"}]}])
    with open(os.path.join(env.dir, "broken.json"), "w") as f:
        json.dump(broken, f)
    p = import_(cfg2, os.path.join(env.dir, "broken.json"))
    assert p.returncode == 1 and b"routes[3].targets[0].provider" in p.stderr, p.stderr
    assert export(cfg2) == first
    # an edited record replaces the stored one of the same name
    edited = {"routes": [{"name": "in-router", "router": "team", "description": "from git",
                          "targets": [{"provider": "a", "model": "mock-small"}]}]}
    with open(os.path.join(env.dir, "edit.json"), "w") as f:
        json.dump(edited, f)
    assert import_(cfg2, os.path.join(env.dir, "edit.json")).returncode == 0
    after = {r["name"]: r for r in export(cfg2)["routes"]}
    before = {r["name"]: r for r in first["routes"]}
    assert after["in-router"]["id"] == before["in-router"]["id"]
    assert after["in-router"]["description"] == "from git" and after["in-router"]["targets"][0]["provider"] == "a"
    assert after["sc"] == before["sc"] and len(after) == 3
    # the restored store serves: the key's secret works, routes resolve
    t2 = env.turnout({}, config={"data_dir": c["data_dir"], "require_key": True}, name="restored")
    st, h, _ = t2.request("POST", "/v1/chat/completions", {"model": "mine", "messages": []},
                          {"Authorization": "Bearer " + key["secret"]})
    assert st == 200 and h["x-turnout-provider"] == "keyed", st
    assert "authorization" not in a.log()[-1]["headers"]    # api_key values are not exported
    st, h, _ = t2.request("POST", "/router/team/v1/chat/completions", {"model": "in-router", "messages": []},
                          {"Authorization": "Bearer " + key["secret"]})
    assert st == 200 and h["x-turnout-provider"] == "a"
    # an import into the store of a running gateway is used by its next request
    with open(os.path.join(env.dir, "live.json"), "w") as f:
        json.dump({"routes": [{"name": "imported", "targets": [{"provider": "b", "model": "mock-large"}]}]}, f)
    assert import_(t.config_path, os.path.join(env.dir, "live.json")).returncode == 0
    st, h, _ = t.chat("imported")
    assert st == 200 and h["x-turnout-provider"] == "b"


def write_json(env, name, obj):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def export_to(env, cfg, name):
    """`turnout export` into a file of the test's directory (searched for the
    canary at the end, as every file there is): the parsed export."""
    p = subprocess.run([os.path.join(BUILD, "turnout"), "export", "-c", cfg], capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(env.dir, name), "wb") as f:
        f.write(p.stdout)
    assert CANARY.encode() not in p.stdout and CANARY[3:].encode() not in p.stdout
    return json.loads(p.stdout)


def test_import_of_an_export_keeps_stored_secrets(env):
    """[client-fixes] C5: `turnout export` leaves provider api_keys out, and
    an import used to replace the stored record with the exported one, so a
    round trip on a live store dropped the key: the upstream request then
    went out with no Authorization. A record without api_key keeps the
    stored key, "api_key": null removes it, a string replaces it; key
    records keep their secret hash. Export, import, export is a no-op."""
    a = env.mock(name="a")
    t = env.turnout(seed_for(a), config={"require_key": True})
    # the stored key is the only one this provider has (no api_key_env)
    st, p = t.admin("POST", "/v1/providers", {"name": "keyed", "base_url": a.base_url, "api_key": CANARY,
                                               "models": [{"name": "mock-small"}]})
    assert st == 201 and p["api_key_last4"] == CANARY[-4:], p
    assert t.admin("POST", "/v1/model-routes", {"name": "k", "targets": [
        {"provider": "keyed", "model": "mock-small"}]})[0] == 201
    st, key = t.admin("POST", "/v1/keys", {"name": "app"})
    assert st == 201
    auth = {"Authorization": "Bearer " + key["secret"]}

    def upstream_auth():
        a.clear()
        st, h, body = t.request("POST", "/v1/chat/completions", {"model": "k", "messages": []}, auth)
        assert st == 200 and h["x-turnout-provider"] == "keyed", (st, body)
        return a.log()[-1]["headers"].get("authorization")

    assert upstream_auth() == "Bearer " + CANARY
    before = export_to(env, t.config_path, "export-before.json")
    assert [x for x in before["providers"] if x["name"] == "keyed"][0].get("api_key") is None
    # imported into the store of the running gateway: nothing changes
    p = import_(t.config_path, os.path.join(env.dir, "export-before.json"))
    assert p.returncode == 0, p.stderr
    assert export_to(env, t.config_path, "export-live.json") == before
    assert upstream_auth() == "Bearer " + CANARY
    st, rec = t.admin("GET", "/v1/providers/" + [x for x in before["providers"] if x["name"] == "keyed"][0]["id"])
    assert st == 200 and rec["api_key_last4"] == CANARY[-4:], rec
    # and with the gateway stopped: the next one on the same store still sends the key
    data_dir = json.load(open(t.config_path))["data_dir"]
    t.stop()
    p = import_(t.config_path, os.path.join(env.dir, "export-before.json"))
    assert p.returncode == 0, p.stderr
    assert export_to(env, t.config_path, "export-stopped.json") == before
    t = env.turnout({}, config={"data_dir": data_dir, "require_key": True}, name="again")
    assert upstream_auth() == "Bearer " + CANARY      # the key record kept its hash too
    keyed = [x for x in before["providers"] if x["name"] == "keyed"][0]
    # a string replaces the stored key
    write_json(env, "new-key.json", {"providers": [dict(keyed, api_key="sk-rotated-0000")]})
    assert import_(t.config_path, os.path.join(env.dir, "new-key.json")).returncode == 0
    assert upstream_auth() == "Bearer sk-rotated-0000"
    # "api_key": null removes it: the next request goes out without Authorization
    write_json(env, "no-key.json", {"providers": [dict(keyed, api_key=None)]})
    p = import_(t.config_path, os.path.join(env.dir, "no-key.json"))
    assert p.returncode == 0, p.stderr
    assert upstream_auth() is None
    st, rec = t.admin("GET", "/v1/providers/" + keyed["id"])
    assert st == 200 and "api_key_last4" not in rec and "api_key" not in rec, rec
    assert export_to(env, t.config_path, "export-after.json") == before
    # a key record that leaves secret_hash out keeps the stored hash
    k = dict(before["keys"][0], description="from git")
    del k["secret_hash"]
    write_json(env, "key.json", {"keys": [k]})
    p = import_(t.config_path, os.path.join(env.dir, "key.json"))
    assert p.returncode == 0, p.stderr
    after = export_to(env, t.config_path, "export-key.json")["keys"][0]
    assert after == dict(before["keys"][0], description="from git"), after
    st, _, _ = t.request("POST", "/v1/chat/completions", {"model": "k", "messages": []}, auth)
    assert st == 200


def test_stale_readers_cleared_after_a_crash(env):
    """LMDB resets its reader table when the first process opens the store, so
    stale slots matter when another process keeps it open: here a second
    gateway on the same data_dir, while the first is killed and restarted."""
    m = env.mock()
    t = env.turnout(seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]}]))
    data = os.path.join(env.dir, "turnout-data")
    other = env.turnout(seed_for(m), config={"data_dir": data}, name="other")
    assert t.chat("r")[0] == 200 and other.chat("r")[0] == 200
    os.kill(t.proc.pid, signal.SIGKILL)
    t.proc.wait()
    t.expect_exit = True
    t2 = env.turnout(seed_for(m), config={"data_dir": data}, name="after-crash")
    out = t2.output()
    assert "cleared" in out and "stale reader slot" in out, out
    assert t2.chat("r")[0] == 200 and other.chat("r")[0] == 200
    st, page = t2.admin("GET", "/v1/model-routes")
    assert [r["name"] for r in page["data"]] == ["r"]


def test_schema_3_store_is_upgraded_in_place(env):
    """A store written by a schema-3 build (routes kept by id beside a name
    index; test/fixtures/store-v3.dump, made from store-v3.seed.json) is
    re-keyed by route name when opened: every route, pool, router scope and
    key still resolves, and the admin API still finds routes by id."""
    m = env.mock()
    data = os.path.join(env.dir, "v3-data")
    os.makedirs(data)
    fixtures = os.path.join(os.path.dirname(__file__), "..", "fixtures")
    subprocess.run(["mdb_load", "-f", os.path.join(fixtures, "store-v3.dump"), data], check=True, timeout=30)
    t = env.turnout({}, config={"data_dir": data})
    assert "upgraded from schema version 3 to 6" in t.output()
    st, providers = t.admin("GET", "/v1/providers")
    assert st == 200 and len(providers["data"]) == 1
    st, _ = t.admin("PATCH", "/v1/providers/" + providers["data"][0]["id"], {"base_url": m.base_url})
    assert st == 200
    # exact route, pool, router-scoped route, tenant-scoped route through the key
    assert json.loads(t.chat("fast")[2])["model"] == "m1"
    assert json.loads(t.chat("gpt-4o")[2])["model"] == "m2"
    st, _, body = t.request("POST", "/router/team-a/v1/chat/completions",
                            {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert st == 200 and json.loads(body)["model"] == "m2"
    st, _, body = t.request("POST", "/v1/embeddings", {"model": "embed", "input": "x"},
                            headers={"Authorization": "Bearer test"})   # sha256("test") is the stored hash
    assert st == 200 and json.loads(body)["model"] == "m1", body
    # by id, renamed, deleted: the id index was rebuilt
    st, r = t.admin("GET", "/v1/model-routes/11111111-1111-4111-8111-111111111111")
    assert st == 200 and r["name"] == "fast"
    st, r = t.admin("PATCH", "/v1/model-routes/11111111-1111-4111-8111-111111111111", {"name": "faster"})
    assert st == 200 and r["name"] == "faster"
    assert t.chat("fast")[0] == 404 and t.chat("faster")[0] == 200
    assert t.admin("DELETE", "/v1/model-routes/22222222-2222-4222-8222-222222222222")[0] in (200, 204)
    assert t.chat("gpt-4o")[0] == 404
    st, page = t.admin("GET", "/v1/model-routes")
    assert sorted(r["name"] for r in page["data"]) == ["embed", "fast", "faster"]
    # reopened: already version 6, nothing to upgrade
    t.stop()
    t2 = env.turnout({}, config={"data_dir": data}, name="again")
    assert "upgraded" not in t2.output()
    assert t2.chat("faster")[0] == 200
