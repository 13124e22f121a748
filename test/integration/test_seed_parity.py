"""What the seeds do that turnout now does too ([seed-parity]): Tyk AI Studio's
pools that pass the requested model through, its per-vendor model mappings,
and routers limited to namespaces (tenants)."""
from harness import seed_for

CHAT = "/v1/chat/completions"


def add(t, path, body, status=201):
    st, rec = t.admin("POST", path, body)
    assert st == status, rec
    return rec


def asked_upstream(t, mock, model, headers=None, path=CHAT):
    """Sends MODEL; returns (status, headers, the model name the mock upstream got or None)."""
    mock.clear()
    st, h, body = t.request("POST", path, {"model": model, "messages": []}, headers)
    log = mock.log()
    return st, h, log[-1]["model"] if log else None


def test_a_pool_passes_the_requested_model_through(env):
    """Tyk: a pool claude-* with an Anthropic vendor sends claude-3-sonnet-20240229
    on as asked. A pool target without model passes the name through, so two
    names matching the pool reach the upstream as themselves; a target with a
    model still sends that model."""
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a, b))
    add(t, "/v1/model-routes", {"name": "claude-*", "targets": [{"provider": "a"}]})
    add(t, "/v1/model-routes", {"name": "fixed-*", "targets": [{"provider": "b", "model": "one-model"}]})
    for name in ("claude-3-sonnet-20240229", "claude-3-haiku-20240307"):
        st, h, got = asked_upstream(t, a, name)
        assert (st, got) == (200, name), (st, got)
        assert h["x-turnout-model"] == name and h["x-turnout-route"] == "claude-*", h
    assert asked_upstream(t, b, "fixed-anything")[2] == "one-model"
    st, dr = t.admin("POST", "/v1/model-routes/dry-run", {"model": "claude-3-opus-20240229"})
    assert st == 200 and [c["model"] for c in dr["candidates"]] == ["claude-3-opus-20240229"], dr
    # an exact route still needs a model: its name is no upstream model
    st, err = t.admin("POST", "/v1/model-routes", {"name": "exact", "targets": [{"provider": "a"}]})
    assert st == 400 and err["error"]["param"] == "targets[0].model", err


def test_model_map_translates_only_the_sources_it_lists(env):
    """Tyk: gpt-4 -> claude-3-opus-20240229 for one vendor, nothing for the
    other. One pool, two targets: the first maps gpt-4 (exact) and gpt-4o*
    (a glob, listed after, so gpt-4 takes the exact entry), the second maps
    nothing. Names the first does not map pass through; mappings come before
    a target's own model."""
    a = env.mock(name="a")
    b = env.mock(name="b")
    t = env.turnout(seed_for(a, b))
    add(t, "/v1/model-routes", {"name": "gpt-*", "strategy": "fallback", "targets": [
        {"provider": "a", "model_map": {"gpt-4": "claude-3-opus-20240229", "gpt-4o*": "claude-3-5-sonnet"}},
        {"provider": "b"}]})
    add(t, "/v1/model-routes", {"name": "emb-*", "targets": [
        {"provider": "b", "model": "default-embed", "model_map": {"emb-large": "big-embed"}}]})
    assert asked_upstream(t, a, "gpt-4")[2] == "claude-3-opus-20240229"
    assert asked_upstream(t, a, "gpt-4o-mini")[2] == "claude-3-5-sonnet"
    assert asked_upstream(t, a, "gpt-3.5-turbo")[2] == "gpt-3.5-turbo"        # not listed: as asked
    assert asked_upstream(t, b, "emb-large")[2] == "big-embed"                # the map before model
    assert asked_upstream(t, b, "emb-small")[2] == "default-embed"
    st, dr = t.admin("POST", "/v1/model-routes/dry-run", {"model": "gpt-4"})
    assert [(c["provider"], c["model"]) for c in dr["candidates"]] == [
        ("a", "claude-3-opus-20240229"), ("b", "gpt-4")], dr
    # the second vendor is the fallback, and it gets gpt-4 as asked
    a.stop()
    st, h, got = asked_upstream(t, b, "gpt-4")
    assert st == 200 and got == "gpt-4" and h["x-turnout-provider"] == "b", (st, h, got)
    for bad in ({"gpt-4": 5}, {"": "x"}, {"gpt-4": ""}, ["gpt-4"]):
        st, err = t.admin("POST", "/v1/model-routes", {"name": "bad-*", "targets": [{"provider": "a", "model_map": bad}]})
        assert st == 400 and "model_map" in err["error"]["message"], (bad, err)


def test_router_namespaces(env):
    """Tyk's Available Namespaces: a router listing tenants serves keys of
    those tenants; another tenant's key (and a key of no tenant) gets 404
    router_not_found, as for an unknown router, on requests and on its
    /v1/models; admin keys and the bootstrap key reach every router."""
    a = env.mock(name="a")
    t = env.turnout(seed_for(a), config={"require_key": True})
    add(t, "/v1/routers", {"slug": "acme-only", "name": "Acme", "namespaces": ["acme"]})
    add(t, "/v1/routers", {"slug": "open", "name": "Everyone"})
    add(t, "/v1/model-routes", {"name": "r", "router": "acme-only", "targets": [{"provider": "a", "model": "m"}]})
    add(t, "/v1/model-routes", {"name": "r", "router": "open", "targets": [{"provider": "a", "model": "m"}]})
    keys = {name: add(t, "/v1/keys", body)["secret"] for name, body in (
        ("acme", {"role": "user", "tenant": "acme"}), ("globex", {"role": "user", "tenant": "globex"}),
        ("none", {"role": "user"}), ("admin", {"role": "admin"}))}

    def call(key, router, path=CHAT):
        h = {"Authorization": "Bearer " + key}
        if path == CHAT:
            st, _, body = t.request("POST", "/router/%s%s" % (router, path), {"model": "r", "messages": []}, h)
        else:
            st, _, body = t.request("GET", "/router/%s%s" % (router, path), None, h)
        return st, body

    assert call(keys["acme"], "acme-only")[0] == 200
    for who in ("globex", "none"):
        for path in (CHAT, "/v1/models"):
            st, body = call(keys[who], "acme-only", path)
            assert st == 404 and b"router_not_found" in body, (who, path, st, body)
            assert call(keys[who], "open", path)[0] == 200
    # exactly as for a router that does not exist
    assert call(keys["globex"], "acme-only")[1].replace(b"acme-only", b"X") == \
        call(keys["globex"], "no-such-router")[1].replace(b"no-such-router", b"X")
    for key in (keys["admin"], "test-admin-key-0123456789"):
        assert call(key, "acme-only")[0] == 200 and call(key, "acme-only", "/v1/models")[0] == 200
    st, body = call(keys["acme"], "acme-only", "/v1/models")
    assert st == 200 and b'"id":"r"' in body, body
    # the dry-run sees what the caller would
    st, dr = t.admin("POST", "/v1/model-routes/dry-run", {"model": "r", "router": "acme-only", "tenant": "globex"})
    assert dr["code"] == "router_not_found", dr
    st, dr = t.admin("POST", "/v1/model-routes/dry-run", {"model": "r", "router": "acme-only", "tenant": "acme"})
    assert dr["status"] == 200, dr
    st, err = t.admin("POST", "/v1/routers", {"slug": "bad", "name": "b", "namespaces": [""]})
    assert st == 400 and err["error"]["param"] == "namespaces", err
