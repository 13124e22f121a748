"""Tenant records and key rate limits in the store and the admin API (SPEC 8): /v1/tenants CRUD with defaults,
each field's range answered 400 naming it, tenant admins reading only their own record and writing none,
rpm / tpm / max_in_flight on keys, the seed import / export round trip with a tenants section, and the
schema 5 -> 6 upgrade that adds the tenants, spend and usage tables."""
import json
import os
import subprocess

from harness import BUILD, seed_for

T = "/v1/tenants"
TENANT_A = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
KEY_A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
# the ranges SPEC 8's limits take, on keys and tenants alike
LIMITS = {"rpm": 10_000_000, "tpm": 10_000_000_000, "max_in_flight": 100_000}


def add(t, path, body, key=None, status=201):
    st, rec = t.admin("POST", path, body, key=key)
    assert st == status, (body, st, rec)
    return rec


def err_of(reply):
    assert isinstance(reply, dict) and "error" in reply, reply
    return reply["error"]


def start(env, seed_extra=None):
    m = env.mock()
    seed = seed_for(m)
    seed.update(seed_extra or {})
    return m, env.turnout(seed)


def test_tenant_crud_and_defaults(env):
    _, t = start(env)
    st, rec = t.admin("POST", T, {"name": "acme", "rpm": 600, "tpm": 100000})
    assert st == 201, rec
    assert len(rec["id"]) == 36 and rec["created_at"] and rec["updated_at"] == rec["created_at"], rec
    assert rec["name"] == "acme" and rec["rpm"] == 600 and rec["tpm"] == 100000 and rec["enabled"] is True, rec
    assert "max_in_flight" not in rec and "description" not in rec
    st, got = t.admin("GET", T + "/" + rec["id"])
    assert st == 200 and got == rec, got
    st, page = t.admin("GET", T)
    assert st == 200 and page["object"] == "list" and page["data"] == [rec] and page["has_more"] is False
    # PATCH: fields replace, null removes, the result is validated as a whole
    st, p = t.admin("PATCH", T + "/" + rec["id"], {"max_in_flight": 8, "description": "the big one", "rpm": None,
                                                  "enabled": False})
    assert st == 200, p
    assert p["max_in_flight"] == 8 and p["description"] == "the big one" and "rpm" not in p and p["tpm"] == 100000
    assert p["enabled"] is False and p["id"] == rec["id"] and p["created_at"] == rec["created_at"]
    assert t.admin("GET", T + "/" + rec["id"])[1] == p
    # a tenant without limits is a valid record: it limits nothing
    st, bare = t.admin("POST", T, {"name": "globex"})
    assert st == 201 and bare["enabled"] is True and not any(f in bare for f in LIMITS), bare
    # names are unique (409 naming the field); renaming onto a taken one is 409 too, a free one is fine
    st, e = t.admin("POST", T, {"name": "acme", "rpm": 1})
    assert st == 409 and err_of(e)["code"] == "conflict" and e["error"]["param"] == "name", e
    st, e = t.admin("PATCH", T + "/" + bare["id"], {"name": "acme"})
    assert st == 409 and e["error"]["param"] == "name", e
    st, p = t.admin("PATCH", T + "/" + bare["id"], {"name": "initech"})
    assert st == 200 and p["name"] == "initech" and p["id"] == bare["id"], p
    assert sorted(x["name"] for x in t.admin("GET", T)[1]["data"]) == ["acme", "initech"]
    add(t, T, {"name": "globex"})                         # the old name is free again
    # DELETE
    st, out = t.admin("DELETE", T + "/" + rec["id"])
    assert st == 200 and out == {"id": rec["id"], "object": "tenant", "deleted": True}, out
    for method, body in (("GET", None), ("PATCH", {"rpm": 1}), ("DELETE", None)):
        assert t.admin(method, T + "/" + rec["id"], body)[0] == 404
    assert sorted(x["name"] for x in t.admin("GET", T)[1]["data"]) == ["globex", "initech"]
    assert t.admin("PUT", T)[0] == 405 and t.admin("POST", T + "/" + bare["id"])[0] == 405
    # pages: the generic cursor
    for i in range(5):
        add(t, T, {"name": "t%d" % i})
    st, page = t.admin("GET", T + "?limit=4")
    assert st == 200 and len(page["data"]) == 4 and page["has_more"] is True, page
    st, rest = t.admin("GET", T + "?limit=4&cursor=" + page["next_cursor"])
    assert st == 200 and len(rest["data"]) == 3 and rest["has_more"] is False, rest
    assert len({x["id"] for x in page["data"] + rest["data"]}) == 7
    st, e = t.admin("GET", T + "?tenant=acme")
    assert st == 400 and e["error"]["param"] == "tenant", e


def test_tenant_validation_names_the_field(env):
    _, t = start(env)
    cases = [
        ({}, "name"), ({"name": None}, "name"), ({"name": ""}, "name"), ({"name": "a b"}, "name"),
        ({"name": "t" * 129}, "name"), ({"name": 5}, "name"), ({"name": "acme/x"}, "name"),
        ({"name": "x", "description": "d" * 1001}, "description"),
        ({"name": "x", "enabled": "yes"}, "enabled"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "tenant": "x"}, "tenant"),
        ({"name": "x", "id": "00000000-0000-4000-8000-000000000000"}, "id"),
        ({"name": "x", "created_at": "2020-01-01T00:00:00Z"}, "created_at"),
        ({"name": "x", "updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),
    ]
    for field, top in LIMITS.items():
        cases += [({"name": "x", field: 0}, field), ({"name": "x", field: -1}, field),
                  ({"name": "x", field: top + 1}, field), ({"name": "x", field: 1.5}, field),
                  ({"name": "x", field: "5"}, field), ({"name": "x", field: True}, field),
                  ({"name": "x", field: [5]}, field)]
    for body, field in cases:
        st, e = t.admin("POST", T, body)
        assert st == 400, (body, st, e)
        assert err_of(e)["param"] == field and e["error"]["code"] == "invalid_value", (body, field, e)
    assert t.admin("GET", T)[1]["data"] == []            # nothing was stored
    # the edges of each range are accepted; null is no limit
    st, rec = t.admin("POST", T, dict({"name": "n" * 128, "description": "d" * 1000}, **LIMITS))
    assert st == 201 and all(rec[f] == v for f, v in LIMITS.items()), rec
    st, rec = t.admin("POST", T, {"name": "low", "rpm": 1, "tpm": 1, "max_in_flight": 1, "description": None})
    assert st == 201 and (rec["rpm"], rec["tpm"], rec["max_in_flight"]) == (1, 1, 1) and "description" not in rec
    st, rec2 = t.admin("POST", T, {"name": "nulls", "rpm": None, "tpm": None, "max_in_flight": None})
    assert st == 201 and not any(f in rec2 for f in LIMITS), rec2
    # PATCH is checked the same way, and a refusal changes nothing
    for body, field in [({"rpm": 0}, "rpm"), ({"tpm": 10_000_000_001}, "tpm"), ({"max_in_flight": 100_001},
                        "max_in_flight"), ({"name": None}, "name"), ({"name": "a b"}, "name"),
                        ({"id": rec["id"]}, "id"), ({"x": 1}, "x")]:
        st, e = t.admin("PATCH", T + "/" + rec["id"], body)
        assert st == 400 and err_of(e)["param"] == field, (body, e)
    assert t.admin("GET", T + "/" + rec["id"])[1] == rec


def test_key_rate_limits(env):
    _, t = start(env)
    st, k = t.admin("POST", "/v1/keys", dict({"tenant": "acme"}, **LIMITS))
    assert st == 201 and all(k[f] == v for f, v in LIMITS.items()), k
    st, got = t.admin("GET", "/v1/keys/" + k["id"])
    assert st == 200 and all(got[f] == v for f, v in LIMITS.items()) and "secret" not in got
    st, p = t.admin("PATCH", "/v1/keys/" + k["id"], {"rpm": 60, "tpm": None, "max_in_flight": 2})
    assert st == 200 and p["rpm"] == 60 and "tpm" not in p and p["max_in_flight"] == 2, p
    st, k2 = t.admin("POST", "/v1/keys", {"tenant": "acme", "rpm": None, "tpm": 1, "max_in_flight": 1})
    assert st == 201 and "rpm" not in k2 and k2["tpm"] == 1 and k2["max_in_flight"] == 1, k2
    for field, top in LIMITS.items():
        for bad in (0, -5, top + 1, 2.5, "10", False):
            st, e = t.admin("POST", "/v1/keys", {"tenant": "acme", field: bad})
            assert st == 400 and err_of(e)["param"] == field, (field, bad, e)
            st, e = t.admin("PATCH", "/v1/keys/" + k["id"], {field: bad})
            assert st == 400 and err_of(e)["param"] == field, (field, bad, e)
    after = t.admin("GET", "/v1/keys/" + k["id"])[1]
    assert after["rpm"] == 60 and "tpm" not in after and after["max_in_flight"] == 2, after
    # a tenant admin sets them on its tenant's keys like any other key field, not on another tenant's
    ta = add(t, "/v1/keys", {"role": "tenant_admin", "tenant": "acme"})
    other = add(t, "/v1/keys", {"tenant": "globex"})
    st, mine = t.admin("POST", "/v1/keys", {"rpm": 30, "max_in_flight": 3}, key=ta["secret"])
    assert st == 201 and mine["tenant"] == "acme" and mine["rpm"] == 30 and mine["max_in_flight"] == 3, mine
    st, p = t.admin("PATCH", "/v1/keys/" + k["id"], {"tpm": 5000}, key=ta["secret"])
    assert st == 200 and p["tpm"] == 5000, p
    st, e = t.admin("PATCH", "/v1/keys/" + k["id"], {"tpm": 0}, key=ta["secret"])
    assert st == 400 and err_of(e)["param"] == "tpm", e
    assert t.admin("PATCH", "/v1/keys/" + other["id"], {"rpm": 1}, key=ta["secret"])[0] == 404
    assert "rpm" not in t.admin("GET", "/v1/keys/" + other["id"])[1]
    # a key with limits still authenticates on the data plane (one small request is within them)
    st, _, body = t.request("POST", "/v1/chat/completions", {"model": "mock-small", "messages": []},
                            headers={"Authorization": "Bearer " + k["secret"]})
    assert st == 200, body


def test_tenant_admin_reads_only_its_own_and_writes_none(env):
    _, t = start(env)
    acme = add(t, T, {"name": "acme", "rpm": 100})
    globex = add(t, T, {"name": "globex", "tpm": 5})
    ta = add(t, "/v1/keys", {"role": "tenant_admin", "tenant": "acme"})
    tb = add(t, "/v1/keys", {"role": "tenant_admin", "tenant": "initech"})     # a tenant with no record
    user = add(t, "/v1/keys", {"tenant": "acme"})
    admin_key = add(t, "/v1/keys", {"role": "admin"})
    # its own record and nothing else: the list and by id; another's answers 404 as if absent
    st, page = t.admin("GET", T, key=ta["secret"])
    assert st == 200 and page["data"] == [acme] and page["has_more"] is False, page
    assert t.admin("GET", T + "/" + acme["id"], key=ta["secret"]) == (200, acme)
    st, e = t.admin("GET", T + "/" + globex["id"], key=ta["secret"])
    assert st == 404 and err_of(e)["code"] == "not_found" and "globex" not in json.dumps(e), e
    st, page = t.admin("GET", T, key=tb["secret"])
    assert st == 200 and page["data"] == [], page
    # any write is 403, found or not, its own included, so nothing is learnt about other tenants
    ghost = "00000000-0000-4000-8000-000000000000"
    for method, path, body in [("POST", T, {"name": "acme2"}), ("POST", T, {"name": "initech", "rpm": 1}),
                               ("PATCH", T + "/" + acme["id"], {"rpm": 100000}),
                               ("PATCH", T + "/" + globex["id"], {"rpm": 1}),
                               ("PATCH", T + "/" + ghost, {"rpm": 1}),
                               ("DELETE", T + "/" + acme["id"], None), ("DELETE", T + "/" + globex["id"], None),
                               ("DELETE", T + "/" + ghost, None)]:
        for key in (ta, tb):
            st, e = t.admin(method, path, body, key=key["secret"])
            assert st == 403 and err_of(e)["code"] == "permission_denied", (method, path, e)
            assert e["error"]["message"] == "tenant limits are set by an admin", e
    assert t.admin("GET", T)[1]["data"] == [acme, globex]          # nothing changed
    # an admin-role key does everything the bootstrap key does
    st, p = t.admin("PATCH", T + "/" + globex["id"], {"max_in_flight": 4}, key=admin_key["secret"])
    assert st == 200 and p["max_in_flight"] == 4
    assert len(t.admin("GET", T, key=admin_key["secret"])[1]["data"]) == 2
    # a user key has no admin API
    for method, path in (("GET", T), ("GET", T + "/" + acme["id"]), ("POST", T)):
        st, e = t.admin(method, path, {"name": "u"} if method == "POST" else None, key=user["secret"])
        assert st == 403 and err_of(e)["code"] == "permission_denied", e
    # deleting a tenant record leaves its keys alone: the tenant is a string they carry
    assert t.admin("DELETE", T + "/" + acme["id"])[0] == 200
    st, k = t.admin("GET", "/v1/keys/" + user["id"])
    assert st == 200 and k["tenant"] == "acme"
    assert t.admin("GET", T, key=ta["secret"])[1]["data"] == []
    assert t.admin("GET", "/v1/keys", key=ta["secret"])[0] == 200


def export(cfg):
    p = subprocess.run([os.path.join(BUILD, "turnout"), "export", "-c", cfg], capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def import_(cfg, seed):
    return subprocess.run([os.path.join(BUILD, "turnout"), "import", "-c", cfg, seed], capture_output=True,
                          timeout=20)


def write(env, name, obj):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def other_store(env, t, name):
    """A config like T's with its own empty data dir and no seed."""
    with open(t.config_path) as f:
        c = json.load(f)
    c["data_dir"] = os.path.join(env.dir, name + "-data")
    del c["seed"]
    return write(env, name + ".json", c)


def test_tenant_seed_import_and_export_round_trip(env):
    m = env.mock()
    # tenants come after keys in the file: the import still takes them first
    seed = dict({"keys": [{"id": KEY_A, "tenant": "acme", "secret_hash": "ab" * 32, "rpm": 60, "tpm": 1000,
                           "max_in_flight": 2}],
                 "tenants": [{"id": TENANT_A, "name": "acme", "rpm": 600, "description": "first"},
                             {"name": "globex", "max_in_flight": 10, "enabled": False}]}, **seed_for(m))
    t = env.turnout(seed)
    st, page = t.admin("GET", T)
    assert st == 200 and len(page["data"]) == 2, page
    got = {x["name"]: x for x in page["data"]}
    assert got["acme"]["id"] == TENANT_A and got["acme"]["rpm"] == 600 and got["acme"]["enabled"] is True
    assert got["globex"]["enabled"] is False and got["globex"]["max_in_flight"] == 10
    assert all(len(x["id"]) == 36 and x["created_at"] for x in got.values())
    st, k = t.admin("GET", "/v1/keys/" + KEY_A)
    assert st == 200 and (k["rpm"], k["tpm"], k["max_in_flight"]) == (60, 1000, 2), k
    add(t, T, {"name": "initech", "tpm": 77})
    first = export(t.config_path)
    assert sorted(first) == ["budgets", "keys", "providers", "routers", "routes", "tenants"], sorted(first)
    assert sorted(x["name"] for x in first["tenants"]) == ["acme", "globex", "initech"]
    by_id = {x["id"]: x for x in first["tenants"]}
    for x in t.admin("GET", T)[1]["data"]:
        assert by_id[x["id"]] == x
    assert first["keys"][0]["rpm"] == 60
    path = write(env, "backup.json", first)
    # into an empty store, the same export comes back; again, nothing changes; so into the live store
    cfg2 = other_store(env, t, "restore")
    p = import_(cfg2, path)
    assert p.returncode == 0, p.stderr
    assert export(cfg2) == first
    assert import_(cfg2, path).returncode == 0 and export(cfg2) == first
    assert import_(t.config_path, path).returncode == 0 and export(t.config_path) == first
    # a record without id replaces the one with its name, keeping id and created_at
    assert import_(cfg2, write(env, "edit.json", {"tenants": [{"name": "acme", "tpm": 9}]})).returncode == 0
    after = {x["name"]: x for x in export(cfg2)["tenants"]}
    assert after["acme"]["id"] == TENANT_A and after["acme"]["created_at"] == got["acme"]["created_at"]
    assert after["acme"]["tpm"] == 9 and "rpm" not in after["acme"] and "description" not in after["acme"]
    # bad seeds are refused whole, naming the record and field, and change nothing
    snapshot = export(cfg2)
    for bad, where in [
        ({"tenants": [{"name": "x", "rpm": 0}]}, b"tenants[0].rpm"),
        ({"tenants": [{"name": "x"}, {"name": "y", "tpm": 1.5}]}, b"tenants[1].tpm"),
        ({"tenants": [{"name": "a b"}]}, b"tenants[0].name"),
        ({"tenants": [{"rpm": 1}]}, b"tenants[0].name"),
        ({"tenants": [{"name": "x"}, {"name": "x", "rpm": 2}]}, b"tenants[1]"),
        ({"tenants": {"name": "x"}}, b"tenants: must be an array"),
        ({"keys": [{"tenant": "x", "secret_hash": "cd" * 32, "max_in_flight": 100001}]}, b"keys[0].max_in_flight"),
        ({"tenant": []}, b"tenant: unknown field"),
    ]:
        p = import_(cfg2, write(env, "bad.json", bad))
        assert p.returncode == 1 and where in p.stderr, (bad, p.stderr)
        assert export(cfg2) == snapshot
    # the restored store serves the API
    t2 = env.turnout({}, config={"data_dir": os.path.join(env.dir, "restore-data")}, name="restored")
    st, rec = t2.admin("GET", T + "/" + TENANT_A)
    assert st == 200 and rec == after["acme"], rec
    assert t2.admin("POST", T, {"name": "globex"})[0] == 409


def test_tables_come_with_schema_6(env):
    """A store of schema 5 (no tenants, spend or usage tables) is upgraded
    when opened: the tables are created, the version becomes 6, everything
    else stays; a schema-5 build refuses the upgraded store."""
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]}])
    seed["keys"] = [{"id": KEY_A, "tenant": "acme", "secret_hash": "ab" * 32}]
    t = env.turnout(seed)
    t.stop()
    dump = subprocess.run(["mdb_dump", "-a", "-p", os.path.join(env.dir, "turnout-data")], capture_output=True,
                          check=True, timeout=30).stdout.decode()
    sections = ["VERSION=" + s for s in dump.split("VERSION=")[1:]]
    new = ("tenants", "tenant_ids", "spend", "usage")
    kept = [s for s in sections if not any("\ndatabase=%s\n" % n in s for n in new)]
    assert len(kept) == len(sections) - len(new)
    v5 = "".join(kept)
    assert " schema_version\n 6\n" in v5
    v5 = v5.replace(" schema_version\n 6\n", " schema_version\n 5\n")
    data = os.path.join(env.dir, "v5-data")
    os.makedirs(data)
    subprocess.run(["mdb_load", "-f", write(env, "v5.dump", v5), data], check=True, timeout=30)
    listed = subprocess.run(["mdb_dump", "-l", data], capture_output=True, check=True, timeout=30).stdout.decode()
    assert "tenants" not in listed and "usage" not in listed and "routes" in listed, listed
    t2 = env.turnout({}, config={"data_dir": data}, name="v5")
    assert "upgraded from schema version 5 to 6" in t2.output(), t2.output()
    assert t2.chat("r")[0] == 200
    assert t2.admin("GET", "/v1/keys/" + KEY_A)[0] == 200
    rec = add(t2, T, {"name": "acme", "rpm": 5})
    t2.stop()
    t3 = env.turnout({}, config={"data_dir": data}, name="v6")
    assert "upgraded" not in t3.output()
    assert t3.admin("GET", T + "/" + rec["id"]) == (200, rec)
    st, u = t3.admin("GET", "/v1/usage")           # t2's one request, kept across the restart
    assert st == 200 and [r["requests"] for r in u["data"]] == [1], u
