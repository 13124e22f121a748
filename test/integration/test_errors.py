"""OpenAI-shaped errors with the right status and code for every kind of bad request."""
import json

from harness import connect, seed_for


def start(env, **config):
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "fast", "targets": [{"provider": "mock", "model": "mock-small"}]}])
    return m, env.turnout(seed, config=config)


def err(resp, status, code):
    st, h, body = resp
    assert st == status, (st, body)
    assert h["content-type"].startswith("application/json")
    e = json.loads(body)["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"], e
    assert e["code"] == code, e
    return e, h


def test_invalid_json(env):
    m, t = start(env)
    for body in (b'{"model": "fast",', b"not json", b'{"model":"fast"} trailing', b""):
        err(t.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"}), 400, "invalid_json")
    assert m.log() == []


def test_missing_and_non_string_model(env):
    m, t = start(env)
    e, _ = err(t.request("POST", "/v1/chat/completions", {"messages": []}), 400, "missing_model")
    assert e["param"] == "model"
    err(t.request("POST", "/v1/chat/completions", [1, 2]), 400, "missing_model")
    for bad in (5, None, "", ["fast"], {"a": 1}):
        e, _ = err(t.request("POST", "/v1/chat/completions", {"model": bad}), 400, "invalid_model")
        assert e["param"] == "model"
    assert m.log() == []


def test_unknown_model(env):
    m, t = start(env)
    err(t.request("POST", "/v1/chat/completions", {"model": "gpt-nope"}), 404, "model_not_found")


def test_unknown_path_and_router(env):
    m, t = start(env)
    err(t.request("GET", "/v1/nope"), 404, "not_found")
    err(t.request("POST", "/foo", {"model": "fast"}), 404, "not_found")
    err(t.request("POST", "/router/none/v1/chat/completions", {"model": "fast"}), 404, "router_not_found")
    assert m.log() == []


def test_wrong_method(env):
    m, t = start(env)
    for method, path in (("GET", "/v1/chat/completions"), ("DELETE", "/v1/embeddings"), ("POST", "/v1/models"),
                         ("PUT", "/v1/audio/speech")):
        _, h = err(t.request(method, path, b"{}" if method != "GET" else None), 405, "method_not_allowed")
        assert h.get("allow"), h


def test_unsupported_media_type(env):
    m, t = start(env)
    err(t.request("POST", "/v1/chat/completions", b'{"model":"fast"}', {"Content-Type": "text/plain"}),
        415, "unsupported_media_type")
    err(t.request("POST", "/v1/audio/transcriptions", {"model": "fast"}), 415, "unsupported_media_type")
    assert t.request("POST", "/v1/chat/completions", b'{"model":"fast"}',
                     {"Content-Type": "application/json; charset=utf-8"})[0] == 200
    assert t.request("POST", "/v1/chat/completions", b'{"model":"fast"}')[0] == 200   # no Content-Type
    assert len(m.log()) == 2


def test_body_limit_exact_is_accepted_one_more_is_413(env):
    limit = 4096
    m, t = start(env, limits={"max_body_bytes": limit})
    base = b'{"model":"fast","pad":"'
    exact = base + b"x" * (limit - len(base) - 2) + b'"}'
    assert len(exact) == limit
    st, _, body = t.request("POST", "/v1/chat/completions", exact, {"Content-Type": "application/json"})
    assert st == 200, body
    assert m.log()[0]["body"] == exact.replace(b'"fast"', b'"mock-small"').decode()
    over = base + b"x" * (limit - len(base) - 1) + b'"}'
    e, h = err(t.request("POST", "/v1/chat/completions", over, {"Content-Type": "application/json"}),
               413, "request_too_large")
    assert str(limit) in e["message"]
    assert len(m.log()) == 1


def test_413_for_large_body_on_raw_socket_then_close(env):
    m, t = start(env, limits={"max_body_bytes": 1000})
    s = connect(t.port, timeout=5)
    body = b'{"model":"fast","p":"' + b"y" * 5000 + b'"}'
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 413"), data[:100]
    assert b"request_too_large" in data
    assert m.log() == []


def test_upstream_caller_error_passed_through(env):
    for status in (400, 404, 422):
        m = env.mock("--status", str(status), name="bad%d" % status)
        m2 = env.mock(name="good%d" % status)
        seed = {"providers": [{"name": "a", "base_url": m.base_url, "models": [{"name": "x"}]},
                              {"name": "b", "base_url": m2.base_url, "models": [{"name": "y"}]}],
                "routes": [{"name": "r", "targets": [{"provider": "a", "model": "x"}, {"provider": "b", "model": "y"}]}]}
        t = env.turnout(seed, name="t%d" % status)
        st, h, body = t.request("POST", "/v1/chat/completions", {"model": "r"})
        assert st == status, (status, st, body)
        assert json.loads(body)["error"]["code"] == "mock_%d" % status
        assert h["x-turnout-attempts"] == "1"
        assert len(m.log()) == 1 and m2.log() == []
