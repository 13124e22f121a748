"""Budgets in the store and the admin API (SPEC 8): CRUD with defaults, validation naming the field,
names unique within a scope, references to keys, routes and providers, tenant isolation, pagination,
and the seed import / export round trip."""
import json
import os
import subprocess

from harness import BUILD, seed_for

B = "/v1/budgets"
# What reads add from the ledger; never stored, never sent by a client.
LIVE = ("spent_usd", "spent_tokens", "requests", "window_start", "resets_at", "exhausted")
KEY_A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
ROUTE_A = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
BUDGET_A = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"


def stored(rec):
    """REC without the live fields, which change with traffic."""
    return {k: v for k, v in rec.items() if k not in LIVE}


def add(t, path, body, key=None, status=201):
    st, rec = t.admin("POST", path, body, key=key)
    assert st == status, (body, st, rec)
    return rec


def start(env, routes=None):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes))
    r = add(t, "/v1/model-routes", {"name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]})
    return m, t, r


def budget(name="b", scope="global", **extra):
    body = {"name": name, "scope": scope}
    if not any(k.startswith("limit_") for k in extra):
        body["limit_usd"] = 10
    body.update(extra)
    return body


def err_of(st, reply):
    assert isinstance(reply, dict) and "error" in reply, (st, reply)
    return reply["error"]


def test_budget_crud_and_defaults(env):
    _, t, r = start(env)
    st, rec = t.admin("POST", B, {"name": "monthly", "scope": "global", "limit_usd": 100})
    assert st == 201, rec
    assert len(rec["id"]) == 36 and rec["created_at"] and rec["updated_at"] == rec["created_at"]
    # the defaults are written into the stored record
    assert rec["window"] == "total" and rec["action_on_exhaust"] == "block" and rec["enabled"] is True, rec
    assert rec["scope"] == "global" and rec["limit_usd"] == 100 and "description" not in rec
    assert "limit_tokens" not in rec and "limit_requests" not in rec
    st, got = t.admin("GET", B + "/" + rec["id"])
    assert st == 200 and stored(got) == stored(rec), got
    st, page = t.admin("GET", B)
    assert st == 200 and page["object"] == "list" and [stored(x) for x in page["data"]] == [stored(rec)]
    assert page["has_more"] is False and page["next_cursor"] is None
    # PATCH: fields replace, null removes, the result is validated as a whole
    st, p = t.admin("PATCH", B + "/" + rec["id"], {"limit_tokens": 5000, "window": "1d", "description": "daily",
                                                   "action_on_exhaust": "alert", "enabled": False})
    assert st == 200, p
    assert (p["limit_tokens"], p["window"], p["description"], p["action_on_exhaust"], p["enabled"]) == \
        (5000, "1d", "daily", "alert", False)
    assert p["id"] == rec["id"] and p["created_at"] == rec["created_at"] and p["updated_at"] >= rec["updated_at"]
    st, p = t.admin("PATCH", B + "/" + rec["id"], {"limit_usd": None, "description": None, "window": None})
    assert st == 200 and "limit_usd" not in p and "description" not in p and p["limit_tokens"] == 5000, p
    assert p["window"] == "total"          # removed: back to the default, written again
    st, e = t.admin("PATCH", B + "/" + rec["id"], {"limit_tokens": None})
    assert st == 400 and err_of(st, e)["param"] == "limit_usd", e     # no limit left
    assert stored(t.admin("GET", B + "/" + rec["id"])[1]) == stored(p)
    # a scope changes kind: a string is replaced; an object merges (RFC 7386), so the old kind goes with null
    st, p = t.admin("PATCH", B + "/" + rec["id"], {"scope": {"tenant": "acme"}})
    assert st == 200 and p["scope"] == {"tenant": "acme"}, p
    st, e = t.admin("PATCH", B + "/" + rec["id"], {"scope": {"route": r["id"]}})
    assert st == 400 and err_of(st, e)["param"] == "scope", e
    st, p = t.admin("PATCH", B + "/" + rec["id"], {"scope": {"tenant": None, "route": r["id"]}})
    assert st == 200 and p["scope"] == {"route": r["id"]}, p
    st, p = t.admin("PATCH", B + "/" + rec["id"], {"scope": "global"})
    assert st == 200 and p["scope"] == "global"
    # DELETE
    st, out = t.admin("DELETE", B + "/" + rec["id"])
    assert st == 200 and out == {"id": rec["id"], "object": "budget", "deleted": True}, out
    assert t.admin("GET", B + "/" + rec["id"])[0] == 404
    assert t.admin("DELETE", B + "/" + rec["id"])[0] == 404
    assert t.admin("PATCH", B + "/" + rec["id"], {"enabled": True})[0] == 404
    assert t.admin("GET", B)[1]["data"] == []
    assert t.admin("PUT", B)[0] == 405 and t.admin("POST", B + "/" + rec["id"])[0] == 405


def test_budget_validation_errors_name_the_field(env):
    _, t, r = start(env)
    rid = r["id"]
    target = {"route": rid, "provider": "mock", "model": "mock-large"}
    cases = [
        ({"scope": "global", "limit_usd": 1}, "name"),
        (budget(name=""), "name"),
        (budget(name="a b"), "name"),
        (budget(name="n" * 129), "name"),
        (budget(name=5), "name"),
        (budget(description="d" * 1001), "description"),
        ({"name": "b", "limit_usd": 1}, "scope"),
        (budget(scope=None), "scope"),
        (budget(scope="tenant:acme"), "scope"),
        (budget(scope="Global"), "scope"),
        (budget(scope=5), "scope"),
        (budget(scope=["global"]), "scope"),
        (budget(scope={}), "scope"),
        (budget(scope={"tenant": "acme", "provider": "mock"}), "scope"),
        (budget(scope={"colour": "red"}), "scope.colour"),
        (budget(scope={"tenant": "acme", "colour": "red"}), "scope.colour"),
        (budget(scope={"global": True}), "scope.global"),
        (budget(scope={"key": ""}), "scope.key"),
        (budget(scope={"key": 5}), "scope.key"),
        (budget(scope={"key": None}), "scope.key"),
        (budget(scope={"tenant": ""}), "scope.tenant"),
        (budget(scope={"tenant": "a b"}), "scope.tenant"),
        (budget(scope={"tenant": "t" * 129}), "scope.tenant"),
        (budget(scope={"route": ""}), "scope.route"),
        (budget(scope={"route": {"id": rid}}), "scope.route"),
        (budget(scope={"provider": ""}), "scope.provider"),
        (budget(scope={"provider": "no such/slug"}), "scope.provider"),
        (budget(scope={"target": "r"}), "scope.target"),
        (budget(scope={"target": {}}), "scope.target.route"),
        (budget(scope={"target": {"route": rid, "provider": "mock"}}), "scope.target.model"),
        (budget(scope={"target": {"route": rid, "model": "m"}}), "scope.target.provider"),
        (budget(scope={"target": dict(target, model="")}), "scope.target.model"),
        (budget(scope={"target": dict(target, model=None)}), "scope.target.model"),
        (budget(scope={"target": dict(target, route="")}), "scope.target.route"),
        (budget(scope={"target": dict(target, provider="")}), "scope.target.provider"),
        (budget(scope={"target": dict(target, provider=7)}), "scope.target.provider"),
        (budget(scope={"target": dict(target, weight=1)}), "scope.target.weight"),
        ({"name": "b", "scope": "global"}, "limit_usd"),
        ({"name": "b", "scope": "global", "limit_usd": None}, "limit_usd"),
        (budget(limit_usd=0), "limit_usd"),
        (budget(limit_usd=-1), "limit_usd"),
        (budget(limit_usd=1e9 + 1), "limit_usd"),
        (budget(limit_usd="5"), "limit_usd"),
        (budget(limit_tokens=0), "limit_tokens"),
        (budget(limit_tokens=1.5), "limit_tokens"),
        (budget(limit_tokens=10 ** 15 + 1), "limit_tokens"),
        (budget(limit_tokens=True), "limit_tokens"),
        (budget(limit_requests=0), "limit_requests"),
        (budget(limit_requests=10 ** 12 + 1), "limit_requests"),
        (budget(limit_requests=2.5), "limit_requests"),
        (budget(window="1y"), "window"),
        (budget(window="1D"), "window"),
        (budget(window=""), "window"),
        (budget(window=60), "window"),
        (budget(action_on_exhaust="warn"), "action_on_exhaust"),
        (budget(action_on_exhaust=True), "action_on_exhaust"),
        (budget(enabled="yes"), "enabled"),
        (budget(colour="red"), "colour"),
        (budget(id="00000000-0000-4000-8000-000000000000"), "id"),
        (budget(created_at="2020-01-01T00:00:00Z"), "created_at"),
        (budget(updated_at="2020-01-01T00:00:00Z"), "updated_at"),
    ] + [(budget(**{f: 0}), f) for f in LIVE]
    for body, field in cases:
        st, e = t.admin("POST", B, body)
        assert st == 400, (body, st, e)
        e = err_of(st, e)
        assert e["param"] == field and e["code"] == "invalid_value", (body, field, e)
    assert t.admin("GET", B)[1]["data"] == []          # nothing was stored
    # the edges of each range, every window and both actions are accepted
    edges = budget(name="n" * 128, description="d" * 1000, limit_usd=1e9, limit_tokens=10 ** 15,
                   limit_requests=10 ** 12, action_on_exhaust="alert")
    st, rec = t.admin("POST", B, edges)
    assert st == 201, rec
    assert rec["limit_usd"] == 1e9 and rec["limit_tokens"] == 10 ** 15 and rec["limit_requests"] == 10 ** 12
    for i, w in enumerate(("1m", "1h", "1d", "1w", "1M", "total")):
        st, rec = t.admin("POST", B, budget(name="w%d" % i, window=w, limit_usd=0.01, limit_requests=1))
        assert st == 201 and rec["window"] == w, rec
    for limits in ({"limit_tokens": 1}, {"limit_requests": 1}, {"limit_usd": 0.000001}):
        st, rec = t.admin("POST", B, dict({"name": "only-" + list(limits)[0], "scope": "global"}, **limits))
        assert st == 201, rec
    # PATCH is validated the same way, the record unchanged on a refusal
    st, before = t.admin("GET", B + "/" + rec["id"])
    for body, field in [({"window": "1y"}, "window"), ({"scope": {"key": ""}}, "scope.key"),
                        ({"limit_tokens": 0}, "limit_tokens"), ({"spent_usd": 1}, "spent_usd"),
                        ({"exhausted": False}, "exhausted"), ({"id": rec["id"]}, "id"),
                        ({"name": "a b"}, "name"), ({"name": None}, "name"), ({"scope": None}, "scope")]:
        st, e = t.admin("PATCH", B + "/" + rec["id"], body)
        assert st == 400 and err_of(st, e)["param"] == field, (body, e)
    assert stored(t.admin("GET", B + "/" + rec["id"])[1]) == stored(before)
    # provider models take an optional cached_input_price, ranged like input_price
    m = {"name": "c", "input_price": 1, "output_price": 2, "cached_input_price": 0.5}
    st, p = t.admin("POST", "/v1/providers", {"name": "priced", "base_url": "http://127.0.0.1:9/v1", "models": [m]})
    assert st == 201 and p["models"][0]["cached_input_price"] == 0.5, p
    for bad in (-1, 1e9 + 1, "0.5"):
        st, e = t.admin("POST", "/v1/providers", {"name": "priced2", "base_url": "http://127.0.0.1:9/v1",
                                                  "models": [dict(m, cached_input_price=bad)]})
        assert st == 400 and err_of(st, e)["param"] == "models[0].cached_input_price", (bad, e)


def test_budget_names_are_unique_within_a_scope(env):
    _, t, r = start(env)
    k = add(t, "/v1/keys", {"tenant": "acme"})
    add(t, B, budget("monthly"))
    st, e = t.admin("POST", B, budget("monthly", limit_tokens=5))
    assert st == 409 and err_of(st, e)["code"] == "conflict" and e["error"]["param"] == "name", e
    # the same name in each other scope is another budget
    target = {"route": r["id"], "provider": "mock", "model": "mock-large"}
    scopes = [{"tenant": "acme"}, {"tenant": "globex"}, {"key": k["id"]}, {"route": r["id"]},
              {"provider": "mock"}, {"target": target}, {"target": dict(target, model="mock-small")}]
    made = {}
    for scope in scopes:
        rec = add(t, B, budget("monthly", scope=scope))
        made[json.dumps(scope, sort_keys=True)] = rec
        st, e = t.admin("POST", B, budget("monthly", scope=scope))
        assert st == 409 and e["error"]["param"] == "name", (scope, e)
    assert len(t.admin("GET", B)[1]["data"]) == len(scopes) + 1
    # a rename or a move onto a taken name in a scope is 409 too, and changes nothing
    other = add(t, B, budget("weekly", scope={"tenant": "acme"}))
    st, e = t.admin("PATCH", B + "/" + other["id"], {"name": "monthly"})
    assert st == 409 and e["error"]["param"] == "name", e
    st, e = t.admin("PATCH", B + "/" + other["id"], {"name": "monthly", "scope": {"tenant": None, "key": k["id"]}})
    assert st == 409, e
    st, p = t.admin("PATCH", B + "/" + other["id"], {"scope": {"tenant": "initech"}, "name": "monthly"})
    assert st == 200 and p["scope"] == {"tenant": "initech"} and p["name"] == "monthly", p
    # the freed name is free again in its old scope; a name differing in case is another name
    add(t, B, budget("weekly", scope={"tenant": "acme"}))
    add(t, B, budget("Monthly"))


def test_budget_references_are_checked(env):
    _, t, r = start(env)
    ghost = "00000000-0000-4000-8000-000000000000"
    k = add(t, "/v1/keys", {"tenant": "acme"})
    spare = add(t, "/v1/providers", {"name": "spare", "base_url": "http://127.0.0.1:9/v1"})
    target = {"route": r["id"], "provider": "spare", "model": "anything"}
    for scope, field in [({"key": ghost}, "scope.key"), ({"route": ghost}, "scope.route"),
                         ({"provider": "ghost"}, "scope.provider"),
                         ({"target": dict(target, route=ghost)}, "scope.target.route"),
                         ({"target": dict(target, provider="ghost")}, "scope.target.provider"),
                         ({"key": r["id"]}, "scope.key"), ({"route": k["id"]}, "scope.route")]:
        st, e = t.admin("POST", B, budget(scope=scope))
        assert st == 400 and err_of(st, e)["param"] == field, (scope, e)
    assert t.admin("GET", B)[1]["data"] == []
    # a target's provider has to exist, not to be one of the route's targets
    bt = add(t, B, budget("on-target", scope={"target": target}))
    bk = add(t, B, budget("on-key", scope={"key": k["id"]}))
    br = add(t, B, budget("on-route", scope={"route": r["id"]}))
    # what a budget names cannot go (409 naming the budget), nor be renamed under it
    for path, name in [("/v1/keys/" + k["id"], "on-key"), ("/v1/model-routes/" + r["id"], "on-route"),
                       ("/v1/providers/" + spare["id"], "on-target")]:
        st, e = t.admin("DELETE", path)
        assert st == 409 and err_of(st, e)["code"] == "conflict" and '"%s"' % name in e["error"]["message"], (path, e)
        assert t.admin("GET", path)[0] == 200
    st, e = t.admin("PATCH", "/v1/providers/" + spare["id"], {"name": "renamed"})
    assert st == 409 and '"on-target"' in e["error"]["message"], e
    # a route renamed keeps its id: its budgets stay with it
    st, p = t.admin("PATCH", "/v1/model-routes/" + r["id"], {"name": "r2"})
    assert st == 200 and p["id"] == r["id"]
    # a PATCH moving a budget onto a missing reference is refused like a create
    st, e = t.admin("PATCH", B + "/" + bk["id"], {"scope": {"key": ghost}})
    assert st == 400 and e["error"]["param"] == "scope.key", e
    # with the budgets gone, so is the hold
    assert t.admin("DELETE", B + "/" + bt["id"])[0] == 200
    assert t.admin("DELETE", "/v1/providers/" + spare["id"])[0] == 200
    assert t.admin("DELETE", B + "/" + bk["id"])[0] == 200
    assert t.admin("DELETE", "/v1/keys/" + k["id"])[0] == 200
    st, e = t.admin("DELETE", "/v1/model-routes/" + r["id"])
    assert st == 409 and '"on-route"' in e["error"]["message"], e
    # a budget moved off the route lets it go
    assert t.admin("PATCH", B + "/" + br["id"], {"scope": "global"})[0] == 200
    assert t.admin("DELETE", "/v1/model-routes/" + r["id"])[0] == 200
    # a provider named by a provider budget is held the same way
    add(t, "/v1/providers", {"name": "spare2", "base_url": "http://127.0.0.1:9/v1"})
    bp = add(t, B, budget("on-provider", scope={"provider": "spare2"}))
    sp2 = [p for p in t.admin("GET", "/v1/providers")[1]["data"] if p["name"] == "spare2"][0]
    st, e = t.admin("DELETE", "/v1/providers/" + sp2["id"])
    assert st == 409 and '"on-provider"' in e["error"]["message"], e
    assert t.admin("DELETE", B + "/" + bp["id"])[0] == 200
    assert t.admin("DELETE", "/v1/providers/" + sp2["id"])[0] == 200


def test_budget_tenant_admin_isolation(env):
    _, t, r = start(env)
    ta = add(t, "/v1/keys", {"role": "tenant_admin", "tenant": "acme"})
    tb = add(t, "/v1/keys", {"role": "tenant_admin", "tenant": "globex"})
    ua = add(t, "/v1/keys", {"tenant": "acme"})
    ug = add(t, "/v1/keys", {"tenant": "globex"})
    ak = add(t, "/v1/keys", {"role": "admin"})
    target = {"route": r["id"], "provider": "mock", "model": "mock-large"}
    by_admin = {}
    for name, scope in [("g", "global"), ("a", {"tenant": "acme"}), ("b", {"tenant": "globex"}),
                        ("ka", {"key": ua["id"]}), ("kg", {"key": ug["id"]}), ("rt", {"route": r["id"]}),
                        ("pv", {"provider": "mock"}), ("tg", {"target": target})]:
        by_admin[name] = add(t, B, budget(name, scope=scope))
    # each tenant admin sees its tenant's and its keys' budgets, nothing else
    st, page = t.admin("GET", B, key=ta["secret"])
    assert st == 200 and sorted(x["name"] for x in page["data"]) == ["a", "ka"], page
    st, page = t.admin("GET", B, key=tb["secret"])
    assert st == 200 and sorted(x["name"] for x in page["data"]) == ["b", "kg"], page
    assert t.admin("GET", B + "?scope=global", key=ta["secret"])[1]["data"] == []
    st, page = t.admin("GET", B + "?scope=key:" + ua["id"], key=ta["secret"])
    assert [x["name"] for x in page["data"]] == ["ka"]
    # the bootstrap key and an admin-role key see every one
    for key in (None, ak["secret"]):
        assert len(t.admin("GET", B, key=key)[1]["data"]) == len(by_admin)
    # anything else reads as absent: 404 for GET, PATCH and DELETE, and nothing changes
    for name in ("g", "b", "kg", "rt", "pv", "tg"):
        rid = by_admin[name]["id"]
        for method, body in (("GET", None), ("PATCH", {"description": "mine"}), ("DELETE", None)):
            st, e = t.admin(method, B + "/" + rid, body, key=ta["secret"])
            assert st == 404 and err_of(st, e)["code"] == "not_found", (name, method, e)
            assert "globex" not in json.dumps(e)
        assert stored(t.admin("GET", B + "/" + rid)[1]) == stored(by_admin[name])
    # a tenant admin's new budget defaults to its tenant; it may name its tenant or one of its keys
    st, mine = t.admin("POST", B, {"name": "default-scope", "limit_requests": 5}, key=ta["secret"])
    assert st == 201 and mine["scope"] == {"tenant": "acme"}, mine
    add(t, B, budget("explicit", scope={"tenant": "acme"}), key=ta["secret"])
    add(t, B, budget("on-my-key", scope={"key": ua["id"]}), key=ta["secret"])
    add(t, B, budget("on-myself", scope={"key": ta["id"]}), key=ta["secret"])
    # any other scope is 403, naming the scope
    for scope in ("global", {"tenant": "globex"}, {"key": ug["id"]}, {"key": tb["id"]}, {"key": ak["id"]},
                  {"route": r["id"]}, {"provider": "mock"}, {"target": target}):
        st, e = t.admin("POST", B, budget("x", scope=scope), key=ta["secret"])
        assert st == 403 and err_of(st, e)["code"] == "permission_denied" and e["error"]["param"] == "scope", \
            (scope, e)
    # nor may it move its own budget out of its tenant
    for scope in ("global", {"tenant": "globex"}, {"tenant": None, "key": ug["id"]}):
        st, e = t.admin("PATCH", B + "/" + mine["id"], {"scope": scope}, key=ta["secret"])
        assert st == 403 and e["error"]["param"] == "scope", (scope, e)
    assert t.admin("GET", B + "/" + mine["id"])[1]["scope"] == {"tenant": "acme"}
    # its own: read, changed, deleted
    st, p = t.admin("PATCH", B + "/" + by_admin["ka"]["id"], {"limit_usd": 3}, key=ta["secret"])
    assert st == 200 and p["limit_usd"] == 3, p
    st, p = t.admin("PATCH", B + "/" + mine["id"], {"scope": {"tenant": None, "key": ua["id"]}}, key=ta["secret"])
    assert st == 200 and p["scope"] == {"key": ua["id"]}, p
    assert t.admin("DELETE", B + "/" + by_admin["a"]["id"], key=ta["secret"])[0] == 200
    st, page = t.admin("GET", B, key=ta["secret"])
    assert sorted(x["name"] for x in page["data"]) == ["default-scope", "explicit", "ka", "on-my-key", "on-myself"]
    # a key moved to another tenant takes its budgets' visibility with it
    assert t.admin("PATCH", "/v1/keys/" + ua["id"], {"tenant": "globex"})[0] == 200
    assert t.admin("GET", B + "/" + by_admin["ka"]["id"], key=ta["secret"])[0] == 404
    assert t.admin("GET", B + "/" + by_admin["ka"]["id"], key=tb["secret"])[0] == 200
    # a user key has no admin API at all
    for key in (ua["secret"], ug["secret"]):
        st, e = t.admin("GET", B, key=key)
        assert st == 403 and err_of(st, e)["code"] == "permission_denied"
        assert t.admin("POST", B, budget("u", scope={"tenant": "acme"}), key=key)[0] == 403


def test_budget_list_pages_and_filters(env):
    _, t, r = start(env)
    k = add(t, "/v1/keys", {"tenant": "acme"})
    target = {"route": r["id"], "provider": "mock", "model": "mock-large"}
    scopes = ["global", {"tenant": "acme"}, {"tenant": "globex"}, {"key": k["id"]}, {"route": r["id"]},
              {"provider": "mock"}, {"target": target}]
    made = {}
    for i in range(14):
        rec = add(t, B, budget("b%02d" % i, scope=scopes[i % len(scopes)], enabled=i % 5 != 4))
        made[rec["id"]] = rec
    # pages of 5 over 14 budgets: 3 pages, every budget once
    seen, cursor, pages = [], None, 0
    while True:
        st, page = t.admin("GET", B + "?limit=5" + ("&cursor=" + cursor if cursor else ""))
        assert st == 200, page
        pages += 1
        assert len(page["data"]) == (5 if page["has_more"] else 4), page
        seen += [x["id"] for x in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3 and sorted(seen) == sorted(made) and len(seen) == 14
    for x in seen:
        assert stored(t.admin("GET", B + "/" + x)[1]) == stored(made[x])
    # the default lists disabled budgets too; include_disabled=false leaves them out
    assert len(t.admin("GET", B)[1]["data"]) == 14
    st, page = t.admin("GET", B + "?include_disabled=false")
    assert st == 200 and sorted(x["id"] for x in page["data"]) == \
        sorted(i for i, rec in made.items() if rec["enabled"]), page
    assert len(page["data"]) == 12
    assert len(t.admin("GET", B + "?include_disabled=true")[1]["data"]) == 14

    def names(query):
        st, page = t.admin("GET", B + "?" + query)
        assert st == 200, (query, page)
        return sorted(x["name"] for x in page["data"])

    def want(scope):
        return sorted(rec["name"] for rec in made.values() if rec["scope"] == scope)

    assert names("scope=global") == want("global") == ["b00", "b07"]
    assert names("scope=tenant:acme") == want({"tenant": "acme"}) == ["b01", "b08"]
    assert names("scope=tenant:globex") == want({"tenant": "globex"})
    assert names("scope=key:" + k["id"]) == want({"key": k["id"]})
    assert names("scope=route:" + r["id"]) == want({"route": r["id"]}) == ["b04", "b11"]
    assert names("scope=provider:mock") == want({"provider": "mock"})
    assert names("scope=tenant:nobody") == [] and names("scope=provider:acme") == []
    assert names("scope=tenant:acme&include_disabled=false") == ["b01", "b08"]
    assert names("scope=route:%s&include_disabled=false" % r["id"]) == ["b11"]      # b04 is disabled
    # a filter page by page
    st, page = t.admin("GET", B + "?scope=global&limit=1")
    assert page["has_more"] is True and [x["name"] for x in page["data"]] == ["b00"]
    st, page = t.admin("GET", B + "?scope=global&limit=1&cursor=" + page["next_cursor"])
    assert page["has_more"] is False and [x["name"] for x in page["data"]] == ["b07"]
    for query, field in [("scope=bogus", "scope"), ("scope=key:", "scope"), ("scope=target:x", "scope"),
                         ("scope=tenant", "scope"), ("include_disabled=maybe", "include_disabled"),
                         ("limit=0", "limit"), ("limit=1001", "limit"), ("cursor=zz", "cursor"),
                         ("endpoint=chat", "endpoint"), ("tenant=acme", "tenant")]:
        st, e = t.admin("GET", B + "?" + query)
        assert st == 400 and err_of(st, e)["param"] == field, (query, e)


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
        json.dump(obj, f)
    return path


def write_text(env, name, text):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def other_store(env, t, name):
    """A config like T's with its own empty data dir and no seed."""
    with open(t.config_path) as f:
        c = json.load(f)
    c["data_dir"] = os.path.join(env.dir, name + "-data")
    del c["seed"]
    return write(env, name + ".json", c)


def test_budget_seed_import_and_export_round_trip(env):
    m = env.mock()
    seed = seed_for(m, routes=[{"id": ROUTE_A, "name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]}])
    # budgets come before keys here: the import still takes keys first, since budgets name them
    seed = dict({"budgets": [
        {"id": BUDGET_A, "name": "all", "scope": "global", "limit_usd": 50, "window": "1M"},
        {"name": "acme", "scope": {"tenant": "acme"}, "limit_tokens": 1000000, "action_on_exhaust": "alert"},
        {"name": "ci-key", "scope": {"key": KEY_A}, "limit_requests": 100, "window": "1d"},
        {"name": "route", "scope": {"route": ROUTE_A}, "limit_usd": 5, "enabled": False},
        {"name": "provider", "scope": {"provider": "mock"}, "limit_usd": 7, "description": "per provider"},
        {"name": "target", "scope": {"target": {"route": ROUTE_A, "provider": "mock", "model": "mock-large"}},
         "limit_tokens": 500},
    ]}, **seed)
    seed["keys"] = [{"id": KEY_A, "name": "ci", "tenant": "acme", "secret_hash": "ab" * 32}]
    t = env.turnout(seed)
    st, page = t.admin("GET", B)
    assert st == 200 and len(page["data"]) == 6, page
    got = {x["name"]: x for x in page["data"]}
    assert got["all"]["id"] == BUDGET_A and got["all"]["window"] == "1M" and got["all"]["action_on_exhaust"] == "block"
    assert got["acme"]["window"] == "total" and got["acme"]["action_on_exhaust"] == "alert"
    assert got["route"]["enabled"] is False and got["ci-key"]["enabled"] is True
    assert got["target"]["scope"]["target"]["model"] == "mock-large"
    assert all(len(x["id"]) == 36 and x["created_at"] for x in got.values())
    # they are held like the admin API's: the seeded key cannot go while its budget names it
    assert t.admin("DELETE", "/v1/keys/" + KEY_A)[0] == 409
    # export, beside the running gateway: a budgets section with the stored records, live fields left out
    add(t, B, budget("by-api", scope={"tenant": "globex"}, limit_requests=3))
    first = export(t.config_path)
    assert sorted(first) == ["budgets", "keys", "providers", "routers", "routes", "tenants"]
    assert len(first["budgets"]) == 7
    by_id = {x["id"]: x for x in first["budgets"]}
    for x in t.admin("GET", B)[1]["data"]:
        assert by_id[x["id"]] == stored(x)
    assert not any(f in x for x in first["budgets"] for f in LIVE)
    path = write(env, "backup.json", first)
    # into an empty store: the same export comes back; importing it again changes nothing
    cfg2 = other_store(env, t, "restore")
    p = import_(cfg2, path)
    assert p.returncode == 0, p.stderr
    assert export(cfg2) == first
    assert import_(cfg2, path).returncode == 0
    assert export(cfg2) == first
    # and into the running gateway's own store: nothing changes either
    assert import_(t.config_path, path).returncode == 0
    assert export(t.config_path) == first
    # a record without id replaces the one with its scope and name, keeping id and created_at
    edit = {"budgets": [{"name": "acme", "scope": {"tenant": "acme"}, "limit_tokens": 5, "window": "1h"}]}
    assert import_(cfg2, write(env, "edit.json", edit)).returncode == 0
    after = {(json.dumps(x["scope"], sort_keys=True), x["name"]): x for x in export(cfg2)["budgets"]}
    before = {(json.dumps(x["scope"], sort_keys=True), x["name"]): x for x in first["budgets"]}
    e = after[('{"tenant": "acme"}', "acme")]
    b = before[('{"tenant": "acme"}', "acme")]
    assert e["id"] == b["id"] and e["created_at"] == b["created_at"], e
    assert e["limit_tokens"] == 5 and e["window"] == "1h" and e["action_on_exhaust"] == "block", e
    assert len(after) == 7 and all(after[k] == before[k] for k in before if k != ('{"tenant": "acme"}', "acme"))
    # the same name in another scope is a new budget
    assert import_(cfg2, write(env, "new.json", {"budgets": [{"name": "acme", "scope": {"tenant": "initech"},
                                                              "limit_usd": 1}]})).returncode == 0
    assert len(export(cfg2)["budgets"]) == 8
    # bad seeds are refused whole, naming the record and field, and change nothing
    snapshot = export(cfg2)
    ghost = "00000000-0000-4000-8000-000000000000"
    for bad, where in [
        ({"budgets": [{"name": "x", "scope": {"key": ghost}, "limit_usd": 1}]}, b"budgets[0].scope.key"),
        ({"budgets": [{"name": "x", "scope": {"route": ghost}, "limit_usd": 1}]}, b"budgets[0].scope.route"),
        ({"budgets": [{"name": "x", "scope": "global", "limit_usd": 1},
                      {"name": "y", "scope": {"provider": "ghost"}, "limit_usd": 1}]}, b"budgets[1].scope.provider"),
        ({"budgets": [{"name": "x", "scope": "global"}]}, b"budgets[0].limit_usd"),
        ({"budgets": [{"name": "x", "scope": "global", "limit_usd": 1, "spent_usd": 0}]}, b"budgets[0].spent_usd"),
        ({"budgets": [{"name": "x", "scope": {"target": {"route": ROUTE_A}}, "limit_usd": 1}]},
         b"budgets[0].scope.target.provider"),
        ({"budgets": [{"name": "x", "scope": "global", "limit_usd": 1},
                      {"name": "x", "scope": "global", "limit_usd": 2}]}, b"budgets[1]"),
        ({"budgets": {"name": "x"}}, b"budgets: must be an array"),
    ]:
        p = import_(cfg2, write(env, "bad.json", bad))
        assert p.returncode == 1 and where in p.stderr, (bad, p.stderr)
        assert export(cfg2) == snapshot
    # the restored store serves the API: budgets by id, survivors of a restart
    t2 = env.turnout({}, config={"data_dir": os.path.join(env.dir, "restore-data")}, name="restored")
    st, rec = t2.admin("GET", B + "/" + BUDGET_A)
    assert st == 200 and stored(rec) == by_id[BUDGET_A], rec
    assert len(t2.admin("GET", B)[1]["data"]) == 8
    st, e = t2.admin("POST", B, budget("all", limit_usd=1))
    assert st == 409, e


def test_budget_tables_come_with_schema_5(env):
    """A store of schema 4 (no budgets tables, nor the tenants, spend and
    usage tables of 6) is upgraded when opened: the tables are created, the
    version becomes the current one (6), everything else stays; an older
    build would refuse the upgraded store rather than ignore budgets."""
    m = env.mock()
    seed = seed_for(m, routes=[{"id": ROUTE_A, "name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]}])
    seed["keys"] = [{"id": KEY_A, "tenant": "acme", "secret_hash": "ab" * 32}]
    t = env.turnout(seed)
    t.stop()
    # the same store as a schema-4 build left it: no budgets tables (nor 6's), version 4
    dump = subprocess.run(["mdb_dump", "-a", "-p", os.path.join(env.dir, "turnout-data")], capture_output=True,
                          check=True, timeout=30).stdout.decode()
    sections = ["VERSION=" + s for s in dump.split("VERSION=")[1:]]
    dropped = ("budgets", "budget_ids", "tenants", "tenant_ids", "spend", "usage")
    kept = [s for s in sections if not any("\ndatabase=%s\n" % d in s for d in dropped)]
    assert len(kept) == len(sections) - len(dropped)
    v4 = "".join(kept)
    assert " schema_version\n 6\n" in v4
    v4 = v4.replace(" schema_version\n 6\n", " schema_version\n 4\n")
    data = os.path.join(env.dir, "v4-data")
    os.makedirs(data)
    subprocess.run(["mdb_load", "-f", write_text(env, "v4.dump", v4), data], check=True, timeout=30)
    listed = subprocess.run(["mdb_dump", "-l", data], capture_output=True, check=True, timeout=30).stdout.decode()
    assert "budgets" not in listed and "routes" in listed, listed
    t2 = env.turnout({}, config={"data_dir": data}, name="v4")
    assert "upgraded from schema version 4 to 6" in t2.output(), t2.output()
    assert t2.chat("r")[0] == 200
    rec = add(t2, B, budget("ci", scope={"key": KEY_A}, limit_requests=10))
    assert t2.admin("DELETE", "/v1/keys/" + KEY_A)[0] == 409
    t2.stop()
    t3 = env.turnout({}, config={"data_dir": data}, name="v5")
    assert "upgraded" not in t3.output()
    st, got = t3.admin("GET", B + "/" + rec["id"])
    assert st == 200 and stored(got) == stored(rec)
