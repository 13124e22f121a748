"""GET /v1/usage (SPEC 8) against the real binary: the answer's shape and defaults, every parameter's validation
(400 naming it), tenant admins, user keys. The rollups are filled by the admin thread from what the workers
counted; how they are summed, bucketed, grouped and pruned is test/unit/test_store_usage.c's, against rows
it adds to a store itself. Here the store's rollups are empty: each answer's data is []."""
import calendar
import time
import urllib.parse

from harness import seed_for

U = "/v1/usage"


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def add(t, path, body, key=None):
    st, rec = t.admin("POST", path, body, key=key)
    assert st == 201, (body, st, rec)
    return rec


def get(t, query="", key=None):
    return t.admin("GET", U + ("?" + query if query else ""), key=key)


def test_usage_answer_shape_and_defaults(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    before = int(time.time())
    st, u = get(t)
    after = int(time.time())
    assert st == 200, u
    assert sorted(u) == ["bucket", "data", "from", "group_by", "object", "to"], u
    assert u["object"] == "list" and u["bucket"] == "hour" and u["group_by"] == [] and u["data"] == []
    # to defaults to now; from to 24 h before it, rounded down to its hour (the rollups hold whole hours)
    to = calendar.timegm(time.strptime(u["to"], "%Y-%m-%dT%H:%M:%SZ"))
    frm = calendar.timegm(time.strptime(u["from"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before <= to <= after, (u, before, after)
    assert frm == (to - 86400) // 3600 * 3600, u
    # RFC 3339 and epoch seconds; from is shown rounded down, to as given
    st, u = get(t, "from=2026-12-01T05:30:00Z&to=2026-12-02T00:00:00Z&bucket=day&group_by=model,key")
    assert st == 200, u
    assert (u["from"], u["to"], u["bucket"]) == ("2026-12-01T05:00:00Z", "2026-12-02T00:00:00Z", "day"), u
    assert u["group_by"] == ["key", "model"] and u["data"] == [], u      # in the order key, tenant, route, ...
    st, u = get(t, "from=1796083200&to=1796086800")
    assert st == 200 and (u["from"], u["to"]) == ("2026-12-01T00:00:00Z", "2026-12-01T01:00:00Z"), u
    # an offset, a fraction, a date; '+' percent-encoded, or as a query string turns it into a space
    for q in ("from=2026-12-01T02:00:00%2B02:00&to=2026-12-01T03:00:00.999Z",
              "from=2026-12-01T02:00:00+02:00&to=2026-12-01T03:00:00.999Z",
              "from=2026-12-01&to=2026-12-01T03:00:00Z"):
        st, u = get(t, q)
        assert st == 200 and (u["from"], u["to"]) == ("2026-12-01T00:00:00Z", "2026-12-01T03:00:00Z"), (q, u)
    # only to: from is 24 h before it; only from: to is now
    st, u = get(t, "to=2026-12-02T10:00:00Z")
    assert st == 200 and u["from"] == "2026-12-01T10:00:00Z", u
    st, u = get(t, "from=" + iso(int(time.time()) - 7200))
    assert st == 200 and abs(calendar.timegm(time.strptime(u["to"], "%Y-%m-%dT%H:%M:%SZ")) - time.time()) < 5, u
    # every group, and duplicates, and an empty group_by (none)
    st, u = get(t, "group_by=" + urllib.parse.quote("provider,tenant,model,route,key,key"))
    assert st == 200 and u["group_by"] == ["key", "tenant", "route", "provider", "model"], u
    st, u = get(t, "group_by=&bucket=hour")
    assert st == 200 and u["group_by"] == [] and u["bucket"] == "hour", u
    # a from inside the hour to is in: that hour counts, so it is not "from >= to"
    st, u = get(t, "from=2026-12-01T05:10:00Z&to=2026-12-01T05:20:00Z")
    assert st == 200 and u["from"] == "2026-12-01T05:00:00Z", u
    # HEAD answers the head alone; other methods are 405 with Allow
    st, h, body = __import__("harness").http_request(t.admin_port, "HEAD", U,
                                                     headers={"Authorization": "Bearer " + t.admin_key})
    assert st == 200 and body == b"", (st, body)
    for method in ("POST", "PATCH", "DELETE", "PUT"):
        st, e = t.admin(method, U, {} if method != "DELETE" else None)
        assert st == 405 and e["error"]["code"] == "method_not_allowed", (method, e)
    assert t.admin("GET", U + "/x")[0] == 404


def test_usage_validation_names_the_parameter(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    cases = [
        ("from=yesterday", "from"), ("from=", "from"), ("from=2026-12-01T00:00:00", "from"),
        ("from=2026-13-01T00:00:00Z", "from"), ("from=2026-02-30", "from"), ("from=-5", "from"),
        ("from=1.5", "from"), ("from=1969-12-31T23:00:00Z", "from"), ("from=10000-01-01T00:00:00Z", "from"),
        ("from=253402300800", "from"), ("to=soon", "to"), ("to=2026-12-01T25:00:00Z", "to"), ("to=", "to"),
        # the order: from must be before to
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "from"),
        ("from=2026-12-01T00:00:00Z&to=2026-12-01T00:00:00Z", "from"),
        ("from=1796083200&to=1796083200", "from"),
        ("from=" + iso(int(time.time()) + 7200), "from"),
        ("to=0", "from"),
        ("group_by=user", "group_by"), ("group_by=key,", "group_by"), ("group_by=,key", "group_by"),
        ("group_by=key,,model", "group_by"), ("group_by=Key", "group_by"), ("group_by=key%20", "group_by"),
        ("group_by=key|model", "group_by"), ("group_by=keys", "group_by"),
        ("bucket=week", "bucket"), ("bucket=", "bucket"), ("bucket=Hour", "bucket"), ("bucket=hours", "bucket"),
        ("limit=10", "limit"), ("tenant=acme", "tenant"), ("cursor=00", "cursor"), ("from_=1", "from_"),
    ]
    for query, param in cases:
        st, e = get(t, query)
        assert st == 400, (query, st, e)
        assert e["error"]["param"] == param and e["error"]["code"] == "invalid_value", (query, e)
    # the message says what is expected
    st, e = get(t, "group_by=user")
    assert "key, tenant, route, provider, model" in e["error"]["message"] and '"user"' in e["error"]["message"], e
    st, e = get(t, "from=yesterday")
    assert "RFC 3339" in e["error"]["message"] and "epoch seconds" in e["error"]["message"], e
    # the last of a repeated parameter counts; each is checked
    st, u = get(t, "bucket=hour&bucket=day&group_by=key&group_by=model")
    assert st == 200 and u["bucket"] == "day" and u["group_by"] == ["model"], u
    st, e = get(t, "bucket=week&bucket=day")
    assert st == 400 and e["error"]["param"] == "bucket", e


def test_usage_tenant_admins_and_users(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    ta = add(t, "/v1/keys", {"role": "tenant_admin", "tenant": "acme"})
    user = add(t, "/v1/keys", {"tenant": "acme"})
    admin_key = add(t, "/v1/keys", {"role": "admin"})
    q = "from=2026-12-01T00:00:00Z&to=2026-12-08T00:00:00Z&group_by=tenant,key&bucket=day"
    # a tenant admin gets the same answer, of its tenant's rows only: here none
    st, u = get(t, q, key=ta["secret"])
    assert st == 200 and u["data"] == [] and u["group_by"] == ["key", "tenant"] and u["bucket"] == "day", u
    st, u = get(t, key=ta["secret"])
    assert st == 200 and u["data"] == [], u
    # and the same validation
    st, e = get(t, "group_by=colour", key=ta["secret"])
    assert st == 400 and e["error"]["param"] == "group_by", e
    # an admin-role key as the bootstrap key
    st, u = get(t, q, key=admin_key["secret"])
    assert st == 200 and u["data"] == [], u
    # a user key has no admin API; no key, or a wrong one, is 401
    st, e = get(t, q, key=user["secret"])
    assert st == 403 and e["error"]["code"] == "permission_denied", e
    st, e = get(t, key="tk-nope")
    assert st == 401 and e["error"]["code"] == "invalid_api_key", e
    # real traffic does not break the (empty or not) answer
    assert t.chat("mock-small")[0] == 200
    st, u = get(t, "from=" + iso(int(time.time()) - 3600) + "&group_by=key,tenant,route,provider,model")
    assert st == 200 and isinstance(u["data"], list), u
    for row in u["data"]:     # once the admin thread feeds the rollups: each row has its bucket and counters
        assert {"start", "end", "requests", "prompt_tokens", "completion_tokens", "cost_usd"} <= set(row), row
