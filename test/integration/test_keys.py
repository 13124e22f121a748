"""API keys and tenants: secrets shown once and kept as hashes, roles, tenant isolation, scoped routes."""
import hashlib
import json
import os
import time

from harness import seed_for

CHAT = "/v1/chat/completions"


def chat(t, model, key=None):
    headers = {"Authorization": "Bearer " + key} if key else {}
    return t.request("POST", CHAT, {"model": model, "messages": [{"role": "user", "content": "hi"}]}, headers)


def new_key(t, by=None, **fields):
    st, rec = t.admin("POST", "/v1/keys", fields, key=by)
    assert st == 201, rec
    return rec


def test_key_secret_shown_once_and_stored_as_hash(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]}]),
                    config={"require_key": True})
    k = new_key(t, name="ci", tenant="acme")
    secret = k["secret"]
    assert secret.startswith("tk-") and len(secret) == 51, k
    assert k["role"] == "user" and k["tenant"] == "acme" and k["enabled"] is True and len(k["id"]) == 36
    assert k["secret_hint"] == "tk-..." + secret[-4:] and "secret_hash" not in k
    # never again: not by id, not in the list
    st, got = t.admin("GET", "/v1/keys/" + k["id"])
    assert st == 200 and "secret" not in got and "secret_hash" not in got and got["name"] == "ci"
    st, page = t.admin("GET", "/v1/keys")
    assert st == 200 and [x["id"] for x in page["data"]] == [k["id"]]
    assert secret not in json.dumps(page) and "secret_hash" not in page["data"][0]
    # the store holds the SHA-256 of the secret, never the secret
    with open(os.path.join(env.dir, "turnout-data", "data.mdb"), "rb") as f:
        raw = f.read()
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in raw
    assert secret.encode() not in raw and secret[3:].encode() not in raw
    # the data plane takes it; the access log names the key and tenant, not the secret
    st, h, _ = chat(t, "r", secret)
    assert st == 200, h
    line = t.access_log(CHAT)[-1]
    assert line["key_id"] == k["id"] and line["tenant"] == "acme" and line["status"] == 200
    # its last use is recorded (to the minute: a busy key costs one write a minute)
    assert "last_used_at" not in got
    deadline = time.time() + 3
    while "last_used_at" not in got and time.time() < deadline:
        time.sleep(0.05)
        got = t.admin("GET", "/v1/keys/" + k["id"])[1]
    assert got["last_used_at"] >= k["created_at"], got
    before = got["updated_at"]
    for _ in range(5):
        chat(t, "r", secret)
    time.sleep(0.3)
    got = t.admin("GET", "/v1/keys/" + k["id"])[1]
    assert got["updated_at"] == before and got["last_used_at"] >= k["created_at"]
    for wrong in (secret[:-1] + ("0" if secret[-1] != "0" else "1"), secret + "0", "tk-", None):
        st, h, body = chat(t, "r", wrong)
        assert st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", (wrong, body)
    # a disabled key stops working at once; re-enabled it works again
    assert t.admin("PATCH", "/v1/keys/" + k["id"], {"enabled": False})[0] == 200
    assert chat(t, "r", secret)[0] == 401
    st, rec = t.admin("PATCH", "/v1/keys/" + k["id"], {"enabled": True, "name": None})
    assert st == 200 and "name" not in rec and "secret" not in rec
    assert chat(t, "r", secret)[0] == 200
    # the client never sets the secret or its hash; bad roles and tenants are named
    for body, field in [({"secret": "tk-mine"}, "secret"), ({"secret_hash": "0" * 64}, "secret_hash"),
                        ({"role": "root"}, "role"), ({"role": "tenant_admin"}, "tenant"),
                        ({"role": "admin", "tenant": "acme"}, "tenant"), ({"tenant": "a b"}, "tenant"),
                        ({"allowed_routes": [""]}, "allowed_routes[0]"), ({"colour": 1}, "colour")]:
        st, err = t.admin("POST", "/v1/keys", body)
        assert st == 400 and err["error"]["param"] == field, (body, err)
    assert t.admin("PATCH", "/v1/keys/" + k["id"], {"secret_hash": "0" * 64})[0] == 400
    # deleted: gone from the data plane at once
    st, out = t.admin("DELETE", "/v1/keys/" + k["id"])
    assert st == 200 and out == {"id": k["id"], "object": "key", "deleted": True}
    assert chat(t, "r", secret)[0] == 401
    assert t.admin("GET", "/v1/keys/" + k["id"])[0] == 404
    assert secret not in t.output()


def test_roles_and_tenant_isolation(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    ta = new_key(t, role="tenant_admin", tenant="acme")
    tb = new_key(t, role="tenant_admin", tenant="globex")
    ua = new_key(t, role="user", tenant="acme")
    ak = new_key(t, role="admin")
    # an admin-role key does everything the bootstrap key does
    st, p = t.admin("POST", "/v1/providers", {"name": "extra", "base_url": m.base_url}, key=ak["secret"])
    assert st == 201, p
    # a user key is for the data plane only; an unknown key is 401
    st, err = t.admin("GET", "/v1/model-routes", key=ua["secret"])
    assert st == 403 and err["error"]["code"] == "permission_denied"
    assert t.admin("GET", "/v1/model-routes", key="tk-" + "0" * 48)[0] == 401
    # tenant admins write routes in their own tenant; the same name in two tenants does not clash
    body = {"name": "summary", "targets": [{"provider": "mock", "model": "mock-large"}]}
    st, ra = t.admin("POST", "/v1/model-routes", body, key=ta["secret"])
    assert st == 201 and ra["scope"] == "tenant:acme", ra
    st, rb = t.admin("POST", "/v1/model-routes", body, key=tb["secret"])
    assert st == 201 and rb["scope"] == "tenant:globex", rb
    st, rg = t.admin("POST", "/v1/model-routes", dict(body, name="global-one"))
    assert st == 201 and rg["scope"] == "global"
    # each sees only its own routes; another tenant's ids answer 404, as if absent
    st, page = t.admin("GET", "/v1/model-routes", key=ta["secret"])
    assert st == 200 and [r["id"] for r in page["data"]] == [ra["id"]], page
    for method, body_ in (("GET", None), ("PATCH", {"description": "mine now"}), ("DELETE", None)):
        for other in (rb["id"], rg["id"]):
            st, err = t.admin(method, "/v1/model-routes/" + other, body_, key=ta["secret"])
            assert st == 404 and err["error"]["code"] == "not_found", (method, err)
            assert "globex" not in json.dumps(err)
    st, still = t.admin("GET", "/v1/model-routes/" + rb["id"])
    assert st == 200 and still == rb
    # nor can a tenant admin write into another scope, or move its route there
    for scope in ("global", "tenant:globex", "key:" + tb["id"]):
        st, err = t.admin("POST", "/v1/model-routes", dict(body, name="x", scope=scope), key=ta["secret"])
        assert st == 403 and err["error"]["param"] == "scope", (scope, err)
    st, err = t.admin("PATCH", "/v1/model-routes/" + ra["id"], {"scope": "global"}, key=ta["secret"])
    assert st == 403
    st, kr = t.admin("POST", "/v1/model-routes", dict(body, scope="key:" + ua["id"]), key=ta["secret"])
    assert st == 201, kr
    # providers and routers: readable, not writable
    assert t.admin("GET", "/v1/providers", key=ta["secret"])[0] == 200
    assert t.admin("POST", "/v1/providers", {"name": "mine", "base_url": m.base_url}, key=ta["secret"])[0] == 403
    assert t.admin("POST", "/v1/routers", {"slug": "mine"}, key=ta["secret"])[0] == 403
    assert t.admin("DELETE", "/v1/providers/" + p["id"], key=ta["secret"])[0] == 403
    # keys: its tenant's only, never an admin key
    st, err = t.admin("POST", "/v1/keys", {"role": "admin"}, key=ta["secret"])
    assert st == 403
    st, err = t.admin("POST", "/v1/keys", {"tenant": "globex"}, key=ta["secret"])
    assert st == 403
    mine = new_key(t, by=ta["secret"], name="made by acme")
    assert mine["tenant"] == "acme" and mine["role"] == "user"
    st, page = t.admin("GET", "/v1/keys", key=ta["secret"])
    assert sorted(k["id"] for k in page["data"]) == sorted([ta["id"], ua["id"], mine["id"]])
    assert t.admin("GET", "/v1/keys/" + tb["id"], key=ta["secret"])[0] == 404
    st, err = t.admin("PATCH", "/v1/keys/" + ua["id"], {"role": "admin", "tenant": None}, key=ta["secret"])
    assert st == 403, err
    st, page = t.admin("GET", "/v1/keys?tenant=globex")
    assert [k["id"] for k in page["data"]] == [tb["id"]]


def test_route_scopes_key_then_tenant_then_global(env):
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a, b), config={"require_key": True})
    ua = new_key(t, tenant="acme")
    ua2 = new_key(t, tenant="acme")
    ug = new_key(t, tenant="globex")
    nobody = new_key(t)
    for scope, provider, model in (("global", "a", "mock-small"), ("tenant:acme", "b", "mock-small"),
                                   ("key:" + ua["id"], "b", "mock-large")):
        st, rec = t.admin("POST", "/v1/model-routes", {"name": "shared", "scope": scope,
                                                        "targets": [{"provider": provider, "model": model}]})
        assert st == 201, rec
    want = {ua["secret"]: ("b", "mock-large"), ua2["secret"]: ("b", "mock-small"),
            ug["secret"]: ("a", "mock-small"), nobody["secret"]: ("a", "mock-small"),
            t.admin_key: ("a", "mock-small")}
    for secret, (provider, model) in want.items():
        st, h, body = chat(t, "shared", secret)
        assert st == 200 and h["x-turnout-provider"] == provider and json.loads(body)["model"] == model, \
            (provider, model, h)
    # a tenant's route is invisible to other tenants
    st, rec = t.admin("POST", "/v1/model-routes", {"name": "acme-only", "scope": "tenant:acme",
                                                    "targets": [{"provider": "a", "model": "mock-small"}]})
    assert chat(t, "acme-only", ua2["secret"])[0] == 200
    st, _, body = chat(t, "acme-only", ug["secret"])
    assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found"
    # allowed_routes limits a key to the routes it names
    lim = new_key(t, tenant="acme", allowed_routes=["acme-only"])
    assert chat(t, "acme-only", lim["secret"])[0] == 200
    assert chat(t, "shared", lim["secret"])[0] == 404
    assert chat(t, "a/mock-small", lim["secret"])[0] == 404
    assert chat(t, "a/mock-small", ua["secret"])[0] == 200
