"""Anthropic in and out (SPEC 7): OpenAI clients on Anthropic upstreams, Anthropic clients
(/v1/messages) on OpenAI upstreams, passthrough where the dialects agree, failover across
dialects, and every error in the caller's own shape. Upstreams are mockllm in both modes."""
import json

import harness
from harness import CANARY

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def fnv1a(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def providers(*mocks):
    """A provider per mock; a mock named anth* speaks Anthropic's dialect."""
    return [{"name": m.name, "base_url": m.base_url, "api_key_env": "MOCK_API_KEY",
             "protocol": "anthropic" if m.name.startswith("anth") else "openai",
             "models": [{"name": "m-" + m.name}]} for m in mocks]


def gateway(env, *mocks, routes=None, config=None):
    routes = routes or [{"name": "r", "targets": [{"provider": m.name, "model": "m-" + m.name} for m in mocks]}]
    return env.turnout({"providers": providers(*mocks), "routes": routes}, config=config)


def anthropic_mock(env, *flags, name="anth"):
    return env.mock("--protocol", "anthropic", *flags, name=name)


def messages_body(**extra):
    return dict({"model": "r", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}, **extra)


def sse_events(raw):
    """The (event, data) pairs of an SSE body."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        ev, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                ev = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip().decode())
        if data:
            out.append((ev, "\n".join(data)))
    return out


def test_openai_client_on_an_anthropic_upstream(env):
    """A chat completion to a route whose target speaks Anthropic: the mock
    gets POST /v1/messages with x-api-key and anthropic-version (never
    Authorization), the model mapped and max_tokens defaulted; the client
    gets a chat.completion with usage."""
    a = anthropic_mock(env)
    t = gateway(env, a)
    st, h, body = t.request("POST", CHAT, {"model": "r", "messages": [{"role": "system", "content": "be brief"},
                                                                      {"role": "user", "content": "hi"}]})
    assert st == 200, body
    c = json.loads(body)
    assert c["object"] == "chat.completion" and c["model"] == "r", c
    assert c["choices"][0]["message"]["role"] == "assistant" and c["choices"][0]["message"]["content"], c
    assert c["choices"][0]["finish_reason"] == "stop" and c["usage"]["total_tokens"] > 0, c
    assert h["content-type"].startswith("application/json") and h["x-turnout-provider"] == "anth", h
    log = a.log()[-1]
    assert log["path"] == "/v1/messages" and log["model"] == "m-anth", log
    assert log["headers"].get("x-api-key") == CANARY and "authorization" not in log["headers"], log["headers"].keys()
    assert log["headers"].get("anthropic-version") == "2023-06-01", log["headers"]


def test_openai_stream_from_an_anthropic_upstream(env):
    a = anthropic_mock(env)
    t = gateway(env, a)
    st, h, body = t.request("POST", CHAT, {"model": "r", "stream": True, "stream_options": {"include_usage": True},
                                           "messages": [{"role": "user", "content": "hi"}]})
    assert st == 200 and h["content-type"].startswith("text/event-stream"), (st, h)
    events = sse_events(body)
    assert events[-1] == (None, "[DONE]"), events[-3:]
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks), chunks
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text, chunks
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] \
        == ["stop"], chunks
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0, chunks[-1]


def test_anthropic_client_on_an_openai_upstream(env):
    """POST /v1/messages to a route whose target speaks OpenAI: translated
    there and back, key in x-api-key accepted; a stream ends with message_stop."""
    o = env.mock(name="oai")
    t = gateway(env, o, config={"require_key": True})
    key = {"x-api-key": harness.ADMIN_KEY, "anthropic-version": "2023-06-01"}
    st, h, body = t.request("POST", MESSAGES, messages_body(system="be brief"), key)
    assert st == 200, body
    m = json.loads(body)
    assert m["type"] == "message" and m["role"] == "assistant" and m["model"] == "r", m
    assert m["content"][0]["type"] == "text" and m["content"][0]["text"], m
    assert m["stop_reason"] == "end_turn" and m["usage"]["output_tokens"] > 0, m
    log = o.log()[-1]
    assert log["path"] == "/v1/chat/completions" and log["model"] == "m-oai", log
    assert log["headers"]["authorization"] == "Bearer " + CANARY, "the provider's key, never the caller's"
    st, h, body = t.request("POST", MESSAGES, messages_body(stream=True), key)
    assert st == 200, body
    names = [e for e, _ in sse_events(body)]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "content_block_delta" in names, names
    assert names[-2] == "message_delta", names


def test_passthrough_when_the_dialects_agree(env):
    """/v1/messages to an Anthropic target: the body goes byte for byte but
    for the model; the answer comes back as the upstream wrote it."""
    a = anthropic_mock(env)
    t = gateway(env, a)
    raw = b'{"model": "r", "max_tokens": 64,\n "messages": [{"role":"user","content":"caf\\u00e9"}], "top_k": 5}'
    st, h, body = t.request("POST", MESSAGES, raw, {"Content-Type": "application/json"})
    assert st == 200, body
    assert a.log()[-1]["body_fnv"] == fnv1a(raw.replace(b'"r"', b'"m-anth"', 1)), "the body was changed"
    assert json.loads(body)["type"] == "message"


def test_failover_across_dialects(env):
    """openai (failing) -> anthropic, and anthropic (failing, 529) -> openai,
    streams included: before the commit point, the next target serves in
    its own dialect, translated for the client."""
    bad_o = env.mock("--status", "500", name="oai-bad")
    bad_a = anthropic_mock(env, "--status", "529", name="anth-bad")
    a = anthropic_mock(env)
    o = env.mock(name="oai")
    routes = [{"name": "o-then-a", "targets": [{"provider": "oai-bad", "model": "m-oai-bad"},
                                                {"provider": "anth", "model": "m-anth"}]},
              {"name": "a-then-o", "targets": [{"provider": "anth-bad", "model": "m-anth-bad"},
                                                {"provider": "oai", "model": "m-oai"}]}]
    t = gateway(env, bad_o, bad_a, a, o, routes=routes)
    for route, second in (("o-then-a", "anth"), ("a-then-o", "oai")):
        for stream in (False, True):
            st, h, body = t.request("POST", CHAT, {"model": route, "stream": stream,
                                                   "messages": [{"role": "user", "content": "hi"}]})
            assert st == 200 and h["x-turnout-provider"] == second and h["x-turnout-attempts"] == "2", (route, st, h)
            if stream:
                assert sse_events(body)[-1] == (None, "[DONE]"), body[-200:]
            else:
                assert json.loads(body)["object"] == "chat.completion", body
            st, h, body = t.request("POST", MESSAGES, messages_body(model=route, stream=stream))
            assert st == 200 and h["x-turnout-provider"] == second, (route, st, body[:300])
            if stream:
                assert sse_events(body)[-1][0] == "message_stop", body[-300:]
            else:
                assert json.loads(body)["type"] == "message", body


def test_errors_on_the_messages_path_are_anthropic_shaped(env):
    """Unknown model 404, wrong key 401, malformed JSON 400, a failed
    upstream 502: the same statuses as the OpenAI path, in Anthropic's shape
    with the code leading the message."""
    bad = env.mock("--status", "500", name="oai-bad")
    t = gateway(env, bad, config={"require_key": True})
    key = {"x-api-key": harness.ADMIN_KEY}
    cases = [(messages_body(model="nope"), key, 404, "not_found_error", "model_not_found"),
             (messages_body(), {"x-api-key": "wrong"}, 401, "authentication_error", "invalid_api_key"),
             (b'{"model": ', key, 400, "invalid_request_error", "invalid_json"),
             (messages_body(), key, 502, "api_error", "upstream_error")]
    for body, headers, status, etype, code in cases:
        st, h, out = t.request("POST", MESSAGES, body, headers)
        e = json.loads(out)
        assert st == status and e["type"] == "error", (status, st, out)
        assert e["error"]["type"] == etype and e["error"]["message"].startswith(code + ":"), (status, e)


def test_untranslatable_fields_are_refused(env):
    """n > 1 has no Anthropic equivalent: 400 unsupported_parameter naming
    it, before any upstream call; top_k has no OpenAI one."""
    a = anthropic_mock(env)
    o = env.mock(name="oai")
    t = gateway(env, a, o, routes=[{"name": "to-a", "targets": [{"provider": "anth", "model": "m-anth"}]},
                                   {"name": "to-o", "targets": [{"provider": "oai", "model": "m-oai"}]}])
    st, h, body = t.request("POST", CHAT, {"model": "to-a", "n": 2, "messages": [{"role": "user", "content": "x"}]})
    e = json.loads(body)["error"]
    assert st == 400 and e["code"] == "unsupported_parameter" and e["param"] == "n", body
    st, h, body = t.request("POST", MESSAGES, messages_body(model="to-o", top_k=5))
    e = json.loads(body)
    assert st == 400 and e["error"]["type"] == "invalid_request_error" and "top_k" in e["error"]["message"], body
    assert a.log() == [] and o.log() == []


# --- the official SDKs, unchanged, through turnout ------------------------------------

WEATHER = {"name": "get_weather", "description": "the weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def anth_sdk(t, mode, body):
    return harness.sdk("anthropic.mjs", {"baseURL": t.url(), "apiKey": harness.ADMIN_KEY,
                                         "maxRetries": 0, "mode": mode, "body": body})


def test_anthropic_sdk_through_turnout(env):
    """@anthropic-ai/sdk against /v1/messages, on an Anthropic target
    (passthrough) and an OpenAI one (translated): a message, a stream through
    messages.stream() and its finalMessage(), and a tool-use round trip."""
    a = anthropic_mock(env)
    o = env.mock(name="oai")
    t = gateway(env, a, o, config={"require_key": True},
                routes=[{"name": "to-a", "targets": [{"provider": "anth", "model": "m-anth"}]},
                        {"name": "to-o", "targets": [{"provider": "oai", "model": "m-oai"}]}])
    for route in ("to-a", "to-o"):
        out = anth_sdk(t, "create", messages_body(model=route))
        assert out["ok"] and out["message"]["content"][0]["type"] == "text", (route, out)
        assert out["message"]["content"][0]["text"] and out["message"]["stop_reason"] == "end_turn", out
        out = anth_sdk(t, "stream", messages_body(model=route))
        assert out["ok"] and out["final"]["content"][0]["text"], (route, out)
        assert out["final"]["usage"]["output_tokens"] > 0, out["final"]
        ask = messages_body(model=route, tools=[WEATHER],
                            messages=[{"role": "user", "content": "weather in Paris?"}])
        out = anth_sdk(t, "stream", ask)
        use = [b for b in out["final"]["content"] if b["type"] == "tool_use"]
        assert out["ok"] and out["final"]["stop_reason"] == "tool_use" and len(use) == 1, (route, out)
        assert use[0]["name"] == "get_weather" and isinstance(use[0]["input"], dict), use
        ask["messages"] += [{"role": "assistant", "content": out["final"]["content"]},
                            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0]["id"],
                                                          "content": "21C, sunny"}]}]
        out = anth_sdk(t, "create", ask)
        assert out["ok"] and "21C, sunny" in out["message"]["content"][0]["text"], (route, out)


def oai_sdk(t, body, stream=False):
    return harness.sdk("chat.mjs", {"baseURL": t.url("/v1"), "maxRetries": 0,
                                    "stream": stream, "body": body})


def test_openai_sdk_on_an_anthropic_route(env):
    """The openai SDK against a route whose target speaks Anthropic: a chat
    completion, a stream, and a tool-call round trip (tool_calls out,
    tool results back)."""
    a = anthropic_mock(env)
    t = gateway(env, a)
    out = oai_sdk(t, {"model": "r", "messages": [{"role": "user", "content": "hi"}]})
    assert out["ok"] and out["completion"]["choices"][0]["message"]["content"], out
    out = oai_sdk(t, {"model": "r", "messages": [{"role": "user", "content": "hi"}]}, stream=True)
    assert out["ok"] and "".join(c["choices"][0]["delta"].get("content") or "" for c in out["chunks"]
                                 if c["choices"]), out
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "the weather",
                                                "parameters": WEATHER["input_schema"]}}]
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    for stream in (False, True):
        out = oai_sdk(t, {"model": "r", "messages": msgs, "tools": tools}, stream=stream)
        assert out["ok"], out
        if stream:
            calls = [tc for c in out["chunks"] if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
            assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "get_weather" and calls[0]["id"], calls
            args = "".join(tc["function"].get("arguments") or "" for tc in calls)
            call_id = calls[0]["id"]
        else:
            msg = out["completion"]["choices"][0]["message"]
            assert out["completion"]["choices"][0]["finish_reason"] == "tool_calls", out
            args, call_id = msg["tool_calls"][0]["function"]["arguments"], msg["tool_calls"][0]["id"]
        assert isinstance(json.loads(args), dict), args
    back = msgs + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "21C, sunny"}]
    out = oai_sdk(t, {"model": "r", "messages": back, "tools": tools})
    assert out["ok"] and "21C, sunny" in out["completion"]["choices"][0]["message"]["content"], out


def test_azure_and_the_responses_endpoint(env):
    """protocol azure: OpenAI's dialect at Azure's URL shape, the key in
    api-key. /v1/responses: passed through to OpenAI-dialect targets with
    only the model spliced; 400 unsupported_endpoint to an Anthropic one."""
    o = env.mock(name="oai")
    a = anthropic_mock(env)
    seed = {"providers": [{"name": "az", "base_url": o.base_url.rsplit("/v1", 1)[0], "protocol": "azure",
                           "api_version": "2024-10-21", "api_key_env": "MOCK_API_KEY",
                           "models": [{"name": "gpt-4o-deploy"}]}] + providers(o, a),
            "routes": [{"name": "r-az", "targets": [{"provider": "az", "model": "gpt-4o-deploy"}]},
                       {"name": "resp", "endpoint": "responses", "targets": [{"provider": "oai", "model": "m-oai"}]},
                       {"name": "resp-a", "endpoint": "responses", "targets": [{"provider": "anth", "model": "m-anth"}]}]}
    t = env.turnout(seed)
    st, h, body = t.request("POST", CHAT, {"model": "r-az", "messages": [{"role": "user", "content": "hi"}]})
    assert st == 200 and json.loads(body)["object"] == "chat.completion", body
    log = o.log()[-1]
    assert log["path"] == "/openai/deployments/gpt-4o-deploy/chat/completions", log
    assert log["query"] == "api-version=2024-10-21", log
    assert log["headers"].get("api-key") == CANARY and "authorization" not in log["headers"], log["headers"].keys()
    raw = b'{"model": "resp", "input": "hi",  "stream": false}'
    st, h, body = t.request("POST", "/v1/responses", raw, {"Content-Type": "application/json"})
    log = o.log()[-1]
    assert log["path"] == "/v1/responses" and log["body_fnv"] == fnv1a(raw.replace(b'"resp"', b'"m-oai"', 1)), log
    st, h, body = t.request("POST", "/v1/responses", {"model": "resp-a", "input": "hi"})
    e = json.loads(body)["error"]
    assert st == 400 and e["code"] == "unsupported_endpoint", body
    assert a.log() == []
