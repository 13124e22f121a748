"""Routing, model mapping, byte-for-byte forwarding, keys and response headers."""
import json

from harness import CANARY, seed_for



def routes(mock):
    return [{"name": "fast-summariser", "endpoint": "chat", "strategy": "fallback",
             "targets": [{"provider": mock.name, "model": "mock-small"}]},
            {"name": "embed", "endpoint": "embeddings", "targets": [{"provider": mock.name, "model": "mock-large"}]}]


def test_health_and_ready(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    assert t.request("GET", "/healthz")[0] == 200
    st, h, body = t.request("GET", "/readyz")
    assert st == 200 and json.loads(body)["status"] == "ok"


def test_route_maps_model_and_sets_headers(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    st, h, body = t.chat("fast-summariser")
    assert st == 200, body
    assert json.loads(body)["model"] == "mock-small"
    assert h["x-turnout-route"] == "fast-summariser"
    assert h["x-turnout-provider"] == "mock" and h["x-turnout-model"] == "mock-small"
    assert h["x-turnout-attempts"] == "1"
    assert h["x-request-id"]
    log = m.log()
    assert len(log) == 1 and log[0]["model"] == "mock-small" and log[0]["path"] == "/v1/chat/completions"


def test_route_prefix_and_provider_model_and_bare_alias(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    st, h, _ = t.chat("route::fast-summariser")
    assert st == 200 and h["x-turnout-route"] == "fast-summariser"
    st, h, body = t.chat("mock/mock-large")
    assert st == 200 and json.loads(body)["model"] == "mock-large" and "x-turnout-route" not in h
    st, h, body = t.chat("mock-small")           # bare_alias: true
    assert st == 200 and json.loads(body)["model"] == "mock-small"
    st, _, body = t.chat("mock-large")           # listed, but no bare alias
    assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found"
    st, _, body = t.chat("route::nope")
    assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found"
    st, _, body = t.chat("mock/absent-model")
    assert st == 404
    assert [e["model"] for e in m.log()] == ["mock-small", "mock-large", "mock-small"]


def test_wrong_endpoint(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    st, _, body = t.chat("embed")
    assert st == 400 and json.loads(body)["error"]["code"] == "wrong_endpoint"
    st, _, body = t.request("POST", "/v1/embeddings", {"model": "embed", "input": "x"})
    assert st == 200 and json.loads(body)["model"] == "mock-large"
    assert len(m.log()) == 1


def test_body_forwarded_byte_for_byte_except_model(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    body = (b'{ "messages" : [{"role":"user","content":"h\\u00e9llo \\"q\\" \xc3\xa9"}],\n'
            b'  "model":  "fast-summariser" , "temperature":0.5,"extra":{"model":"inner"}}')
    st, _, resp = t.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert st == 200, resp
    got = m.log()[0]["body"].encode()
    assert got == body.replace(b'"fast-summariser"', b'"mock-small"'), got


def test_keys_never_leak_and_client_auth_not_forwarded(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)), env={"MOCK_API_KEY": CANARY})
    st, h, body = t.request("POST", "/v1/chat/completions", {"model": "fast-summariser"},
                            {"Authorization": "Bearer client-secret"})
    assert st == 200
    hdrs = m.log()[0]["headers"]
    assert hdrs["authorization"] == "Bearer " + CANARY
    assert "client-secret" not in json.dumps(m.log())
    st2, h2, body2 = t.chat("nope")
    for text in (body.decode(), body2.decode(), json.dumps(h), json.dumps(h2)):
        assert CANARY not in text
    t.stop()
    assert CANARY not in t.output()


def test_request_id_echoed_or_generated(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    st, h, _ = t.request("POST", "/v1/chat/completions", {"model": "fast-summariser"}, {"x-request-id": "abc-123"})
    assert h["x-request-id"] == "abc-123"
    assert m.log()[0]["headers"]["x-request-id"] == "abc-123"
    _, h1, _ = t.chat("fast-summariser")
    _, h2, _ = t.chat("fast-summariser")
    assert h1["x-request-id"] and h1["x-request-id"] != h2["x-request-id"]


def test_models_list(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    st, _, body = t.request("GET", "/v1/models")
    assert st == 200
    doc = json.loads(body)
    ids = {d["id"] for d in doc["data"]}
    assert doc["object"] == "list"
    assert {"fast-summariser", "embed", "mock/mock-small", "mock/mock-large", "mock-small"} <= ids
    assert "mock-large" not in ids
    assert all(d["object"] == "model" for d in doc["data"])


def test_require_key(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)), config={"require_key": True},
                    env={"TURNOUT_ADMIN_KEY": "admin-key-1"})
    st, h, body = t.chat("fast-summariser")
    assert st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    st, _, _ = t.request("POST", "/v1/chat/completions", {"model": "fast-summariser"},
                         {"Authorization": "Bearer wrong"})
    assert st == 401
    st, _, _ = t.request("POST", "/v1/chat/completions", {"model": "fast-summariser"},
                         {"Authorization": "Bearer admin-key-1"})
    assert st == 200
    assert len(m.log()) == 1


def test_graceful_stop_exits_zero(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    assert t.chat("fast-summariser")[0] == 200
    assert t.stop() == 0


def test_access_log_line_per_request(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=routes(m)))
    t.chat("fast-summariser")
    t.chat("nope")
    t.stop()
    lines = [json.loads(l) for l in open(t.out_path) if l.startswith("{")]
    assert len(lines) >= 2
    ok = [l for l in lines if l["status"] == 200 and l["model"] == "fast-summariser"][0]
    assert ok["route"] == "fast-summariser" and ok["provider"] == "mock" and ok["upstream_model"] == "mock-small"
    assert ok["attempts"] == 1
    assert any(l["status"] == 404 and l["model"] == "nope" for l in lines)
    assert ok["path"] == "/v1/chat/completions" and ok["endpoint"] == "chat"
    health = [l for l in lines if l["path"] == "/healthz"]
    assert health and health[0]["endpoint"] is None and health[0]["model"] is None
