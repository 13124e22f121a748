"""The mock provider's dialects, driven directly (no turnout): `--protocol
anthropic` serving the Messages API, and tool calls in both dialects.

The translation tests trust these shapes, so they are checked here against
raw HTTP and against the official SDKs (test/sdk/anthropic.mjs, chat.mjs):
what the SDK accepts, assembles and raises is what a real application of
that dialect would see from the real provider.
"""
import json
import subprocess
import time

import harness

ANTH = ("--protocol", "anthropic")
HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
WEATHER = {"name": "get_weather", "description": "the weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
OA_WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}
TEXT_EVENTS = ["message_start", "content_block_start", "ping"]
END_EVENTS = ["content_block_stop", "message_delta", "message_stop"]


def body(**extra):
    b = {"model": "claude-mock", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    b.update(extra)
    return b


def post(m, b, path="/v1/messages", headers=HEADERS):
    st, h, data = harness.http_request(m.port, "POST", path, b, headers)
    return st, h, json.loads(data)


def sse(data):
    """[(event name or None, data)] of an SSE body; [DONE] stays a string."""
    out = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        name, lines = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                lines.append(line[6:])
        text = "\n".join(lines)
        out.append((name, text if text == "[DONE]" else json.loads(text)))
    return out


def dechunk(b):
    """A chunked body's bytes, and whether its last chunk came."""
    out = b""
    while True:
        i = b.find(b"\r\n")
        if i < 0:
            return out, False
        size = int(b[:i].split(b";")[0], 16)
        if size == 0:
            return out, True
        out += b[i + 2:i + 2 + size]
        if len(b) < i + 2 + size + 2:
            return out, False
        b = b[i + 2 + size + 2:]


def stream(m, b, path="/v1/messages", timeout=5):
    """POSTs B on a raw connection and reads until the mock closes it (or
    TIMEOUT): (status, head, events, whether the chunked body ended)."""
    data = json.dumps(b).encode()
    req = (b"POST %s HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nx-api-key: test-key\r\n"
           b"anthropic-version: 2023-06-01\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(data))) + data
    raw, _ = harness.raw_exchange(m.port, req, timeout=timeout)
    head, _, rest = raw.partition(b"\r\n\r\n")
    payload, ended = dechunk(rest)
    return harness.status_of(raw), head.decode().lower(), sse(payload), ended


def names(events):
    return [n for n, _ in events]


def check_event_data(events):
    """Every Anthropic event's data names its own type, as the API sends it."""
    for name, d in events:
        assert d["type"] == name, (name, d)


def sdk_installed():
    """The Anthropic SDK tests need @anthropic-ai/sdk in test/sdk (or on NODE_PATH)."""
    p = subprocess.run(["node", "-e", "require.resolve('@anthropic-ai/sdk')"], cwd=harness.SDK_DIR,
                       capture_output=True, timeout=30)
    assert p.returncode == 0, ("@anthropic-ai/sdk is not installed: add it to test/sdk/package.json and run "
                               "scripts/install-deps.sh (or set NODE_PATH to an install of it)")


def anth_sdk(m, **spec):
    sdk_installed()
    return harness.sdk("anthropic.mjs", dict({"baseURL": "http://127.0.0.1:%d" % m.port, "apiKey": "test-key",
                                              "maxRetries": 0, "body": body()}, **spec))


# ---- the Messages API, raw


def test_anthropic_message_whole_and_logged(env):
    m = env.mock(*ANTH)
    st, h, doc = post(m, body(model="claude-x"))
    assert st == 200, doc
    assert h["content-type"] == "application/json" and h["request-id"].startswith("req_")
    assert doc["id"].startswith("msg_") and doc["type"] == "message" and doc["role"] == "assistant"
    assert doc["model"] == "claude-x"
    assert doc["content"] == [{"type": "text", "text": "Hello from mockllm"}]
    assert doc["stop_reason"] == "end_turn" and doc["stop_sequence"] is None
    u = doc["usage"]
    assert u["input_tokens"] > 0 and u["output_tokens"] == 5
    assert u["cache_read_input_tokens"] == 0 and u["cache_creation_input_tokens"] == 0
    e = m.log()[0]
    assert e["path"] == "/v1/messages" and e["model"] == "claude-x" and e["stream"] is False
    assert e["headers"]["x-api-key"] == "test-key" and e["headers"]["anthropic-version"] == "2023-06-01"
    # like the OpenAI mode, the mock checks no key: turnout's tests read it from the log
    st, _, doc = post(m, body(), headers={})
    assert st == 200 and "x-api-key" not in m.log()[1]["headers"]


def test_anthropic_stream_has_the_documented_events(env):
    m = env.mock(*ANTH, "--stream-events", "3")
    st, head, events, ended = stream(m, body(stream=True))
    assert st == 200 and ended
    assert "content-type: text/event-stream" in head
    assert names(events) == TEXT_EVENTS + ["content_block_delta"] * 3 + END_EVENTS
    check_event_data(events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["model"] == "claude-mock" and start["content"] == []
    assert start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    assert events[1][1]["index"] == 0 and events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "tok1 tok2 tok3 "
    md = events[-2][1]
    assert md["delta"] == {"stop_reason": "end_turn", "stop_sequence": None} and md["usage"]["output_tokens"] == 3
    # every event is stamped like the OpenAI stream's, for latency measurements
    assert [d["event_index"] for _, d in events] == list(range(9))
    assert all(d["sent_ms"] > 0 for _, d in events)


def test_anthropic_stream_flags_interval_padding_and_cuts(env):
    m = env.mock(*ANTH, "--stream-events", "3", "--stream-interval-ms", "40", "--event-bytes", "1000")
    _, _, events, ended = stream(m, body(stream=True))
    assert ended and len(events) == 9
    sent = [d["sent_ms"] for _, d in events]
    assert all(b - a >= 30 for a, b in zip(sent, sent[1:])), sent
    assert all(len(d["delta"]["text"]) >= 690 for n, d in events if n == "content_block_delta")
    # --close-after counts every event: 3 + 5 cuts the 9-event stream just before message_stop
    m2 = env.mock(*ANTH, "--stream-events", "3", "--close-after", "8", name="close")
    _, _, events, ended = stream(m2, body(stream=True))
    assert not ended and names(events) == TEXT_EVENTS + ["content_block_delta"] * 3 + END_EVENTS[:2]
    m3 = env.mock(*ANTH, "--close-after", "0", name="empty")
    st, _, events, ended = stream(m3, body(stream=True))
    assert st == 200 and events == [] and not ended
    m4 = env.mock(*ANTH, "--stall-after", "4", name="stall")
    t0 = time.time()
    _, _, events, ended = stream(m4, body(stream=True), timeout=1)
    assert time.time() - t0 >= 0.9 and not ended
    assert names(events) == TEXT_EVENTS + ["content_block_delta"]
    m5 = env.mock(*ANTH, "--reset-after", "5", name="reset")
    _, _, events, ended = stream(m5, body(stream=True))
    assert not ended and len(events) <= 5 and "message_stop" not in names(events)


def test_anthropic_tool_use_whole_and_streamed(env):
    m = env.mock(*ANTH, "--stream-events", "4")
    st, _, doc = post(m, body(tools=[WEATHER]))
    assert st == 200 and doc["stop_reason"] == "tool_use"
    [block] = doc["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_") and block["name"] == "get_weather"
    assert block["input"] == {"city": "Paris"}
    _, _, events, ended = stream(m, body(tools=[WEATHER], stream=True))
    assert ended and names(events) == TEXT_EVENTS + ["content_block_delta"] * 4 + END_EVENTS
    check_event_data(events)
    cb = events[1][1]["content_block"]
    assert cb["type"] == "tool_use" and cb["name"] == "get_weather" and cb["input"] == {}
    assert cb["id"].startswith("toolu_")
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in deltas)
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_tool_input_follows_the_schema_and_tool_choice(env):
    m = env.mock(*ANTH)
    unit = {"name": "units", "input_schema": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}}}
    count = {"name": "count", "input_schema": {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}}}
    bare = {"name": "now", "input_schema": {"type": "object"}}
    for tools, choice, want in (([unit, WEATHER], None, ("units", {"unit": "c"})),
                                ([count], None, ("count", {"n": 1})),
                                ([bare], {"type": "auto"}, ("now", {})),
                                ([WEATHER, bare], {"type": "tool", "name": "now"}, ("now", {}))):
        extra = {"tools": tools}
        if choice:
            extra["tool_choice"] = choice
        _, _, doc = post(m, body(**extra))
        [block] = doc["content"]
        assert (block["name"], block["input"]) == want, (tools, doc)
    _, _, doc = post(m, body(tools=[WEATHER], tool_choice={"type": "none"}))
    assert doc["stop_reason"] == "end_turn" and doc["content"][0]["type"] == "text"


def test_anthropic_answers_tool_results_with_text(env):
    m = env.mock(*ANTH, "--stream-events", "4")
    msgs = [{"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C, sunny"},
                                         {"type": "tool_result", "tool_use_id": "toolu_2",
                                          "content": [{"type": "text", "text": "Ça va"}]}]}]
    _, _, doc = post(m, body(tools=[WEATHER], messages=msgs))
    assert doc["stop_reason"] == "end_turn"
    [block] = doc["content"]
    assert block["type"] == "text" and "21C, sunny" in block["text"] and "Ça va" in block["text"]
    _, _, events, ended = stream(m, body(tools=[WEATHER], messages=msgs, stream=True))
    assert ended and names(events) == TEXT_EVENTS + ["content_block_delta"] * 4 + END_EVENTS
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == block["text"]


def test_anthropic_max_tokens_cuts_the_answer(env):
    m = env.mock(*ANTH)
    _, _, doc = post(m, body(max_tokens=2))
    assert doc["stop_reason"] == "max_tokens" and doc["usage"]["output_tokens"] == 2
    assert doc["content"][0]["text"] == "Hello fr"
    _, _, events, _ = stream(m, body(max_tokens=2, stream=True))
    assert names(events).count("content_block_delta") == 2
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens" and events[-2][1]["usage"]["output_tokens"] == 2


def test_anthropic_forced_statuses_are_anthropic_errors(env):
    for status, kind in ((429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error"),
                         (400, "invalid_request_error"), (401, "authentication_error"),
                         (403, "permission_error"), (503, "api_error")):
        flags = ["--status", str(status)] + (["--retry-after", "3"] if status == 429 else [])
        m = env.mock(*ANTH, *flags, name="s%d" % status)
        for b in (body(), body(stream=True)):
            st, h, doc = post(m, b)
            assert st == status, (status, doc)
            assert doc == {"type": "error", "error": {"type": kind, "message": doc["error"]["message"]}}
            assert doc["error"]["message"]
            assert (h.get("retry-after") == "3") == (status == 429)
    m = env.mock(*ANTH, "--status", "529", "--fail-first", "1", name="first")
    assert post(m, body())[0] == 529
    assert post(m, body())[0] == 200


def test_anthropic_refuses_what_the_api_refuses(env):
    m = env.mock(*ANTH, "--status", "529")       # a refusal comes before any forced status
    for b, says in ((b"{not json", "not valid JSON"),
                    (json.dumps({"model": "c", "messages": [{"role": "user", "content": "x"}]}).encode(), "max_tokens"),
                    (json.dumps({"model": "c", "max_tokens": 5}).encode(), "messages"),
                    (json.dumps({"model": "c", "max_tokens": 5, "messages": []}).encode(), "messages"),
                    (json.dumps({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode(), "model")):
        st, h, data = harness.http_request(m.port, "POST", "/v1/messages", b,
                                           dict(HEADERS, **{"Content-Type": "application/json"}))
        doc = json.loads(data)
        assert st == 400 and doc["type"] == "error", (b, doc)
        assert doc["error"]["type"] == "invalid_request_error" and says in doc["error"]["message"], doc
    # the OpenAI paths are not the Messages API's
    st, _, doc = post(m, {"model": "c", "messages": []}, path="/v1/chat/completions")
    assert st == 404 and doc["error"]["type"] == "not_found_error"
    st, _, data = harness.http_request(m.port, "GET", "/v1/models")
    assert st == 200 and [d["id"] for d in json.loads(data)["data"]] == ["mock-small", "mock-large"]
    assert len(m.log()) == 6


# ---- tool calls in the OpenAI mode


def test_openai_tool_call_whole(env):
    m = env.mock()
    st, _, doc = post(m, {"model": "gpt-m", "messages": [{"role": "user", "content": "hi"}], "tools": [OA_WEATHER]},
                      path="/v1/chat/completions", headers={})
    assert st == 200
    [choice] = doc["choices"]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["role"] == "assistant" and msg["content"] is None
    [call] = msg["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert doc["usage"]["completion_tokens"] == 5
    # after the tool's answer, words naming it; with tool_choice none, the old text answer
    for extra, text in (({"messages": [{"role": "user", "content": "hi"},
                                       {"role": "assistant", "content": None, "tool_calls": [call]},
                                       {"role": "tool", "tool_call_id": call["id"], "content": "21C"}]},
                          "mockllm saw the tool result: 21C"),
                        ({"tool_choice": "none"}, "Hello from mockllm")):
        b = dict({"model": "gpt-m", "messages": [{"role": "user", "content": "hi"}], "tools": [OA_WEATHER]}, **extra)
        _, _, doc = post(m, b, path="/v1/chat/completions", headers={})
        assert doc["choices"][0]["message"]["content"] == text, doc
        assert doc["choices"][0]["finish_reason"] == "stop"


def test_openai_tool_call_streamed(env):
    m = env.mock("--stream-events", "3")
    b = {"model": "gpt-m", "messages": [{"role": "user", "content": "hi"}], "tools": [OA_WEATHER], "stream": True}
    for usage in (False, True):
        if usage:
            b["stream_options"] = {"include_usage": True}
        _, head, events, ended = stream(m, b, path="/v1/chat/completions")
        assert ended and "content-type: text/event-stream" in head
        assert events[-1] == (None, "[DONE]")
        chunks = [d for _, d in events[:-1]]
        assert len(chunks) == 1 + 3 + 1 + usage
        first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
        assert first["id"].startswith("call_") and first["function"] == {"name": "get_weather", "arguments": ""}
        args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:4])
        assert json.loads(args) == {"city": "Paris"}
        assert chunks[4]["choices"][0]["finish_reason"] == "tool_calls"
        if usage:
            assert chunks[5]["choices"] == [] and chunks[5]["usage"]["completion_tokens"] == 5
            assert all(c["usage"] is None for c in chunks[:5])
        assert [c["event_index"] for c in chunks] == list(range(len(chunks)))


def test_openai_text_stream_ends_as_openai_ends_it(env):
    """No tools: content chunks, then (as OpenAI's streams end) a chunk with
    finish_reason "stop", the usage chunk when include_usage asked for it,
    then [DONE]. The content chunks are what the relay tests count on."""
    m = env.mock("--stream-events", "2")
    for usage in (False, True):
        b = {"model": "gpt-m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
             "stream_options": {"include_usage": usage}}
        _, _, events, ended = stream(m, b, path="/v1/chat/completions")
        assert ended and events[-1] == (None, "[DONE]") and len(events) == 4 + usage, events
        assert [d["choices"][0]["delta"] for _, d in events[:2]] == [{"content": "tok1 "}, {"content": "tok2 "}]
        assert set(events[0][1]) == {"id", "object", "created", "model", "system_fingerprint", "choices",
                                     "event_index", "sent_ms"}
        assert events[2][1]["choices"][0]["finish_reason"] == "stop", events[2]
        if usage:
            assert events[3][1]["choices"] == [] and events[3][1]["usage"]["completion_tokens"] == 2, events[3]


# ---- the official SDKs against the mock


def test_anthropic_sdk_reads_messages_streams_and_tool_use(env):
    m = env.mock(*ANTH, "--stream-events", "4")
    out = anth_sdk(m)
    assert out["ok"], out
    assert out["message"]["content"] == [{"type": "text", "text": "Hello from mockllm"}]
    assert out["request_id"].startswith("req_")
    out = anth_sdk(m, mode="events")
    assert out["ok"], out
    assert [e["type"] for e in out["events"]] == ["message_start", "content_block_start"] + \
        ["content_block_delta"] * 4 + END_EVENTS        # the SDK drops the ping
    out = anth_sdk(m, mode="stream", body=body(tools=[WEATHER]))
    assert out["ok"], out
    final = out["final"]
    assert final["stop_reason"] == "tool_use" and final["usage"]["output_tokens"] == 5
    [block] = final["content"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather" and block["input"] == {"city": "Paris"}
    out = anth_sdk(m, mode="stream")
    assert out["ok"] and out["final"]["content"] == [{"type": "text", "text": "tok1 tok2 tok3 tok4 "}], out
    # this SDK (1.14.0) sends its key as Authorization: Bearer, not x-api-key,
    # and an anthropic-version of its own; the log shows whichever came
    for e in m.log():
        h = e["headers"]
        assert h.get("x-api-key") == "test-key" or h.get("authorization") == "Bearer test-key", h
        assert h["anthropic-version"], h


def test_anthropic_sdk_raises_the_forced_errors(env):
    for status, cls, kind in ((429, "RateLimitError", "rate_limit_error"), (529, "OverloadedError", "overloaded_error"),
                              (500, "InternalServerError", "api_error"), (401, "AuthenticationError",
                                                                          "authentication_error")):
        m = env.mock(*ANTH, "--status", str(status), "--retry-after", "7", name="s%d" % status)
        for mode in ("create", "events"):
            out = anth_sdk(m, mode=mode)
            assert not out["ok"], out
            err = out["error"]
            assert (err["class"], err["status"], err["type"]) == (cls, status, kind), err
            assert (err["headers"].get("retry-after") == "7") == (status == 429), err
    m = env.mock(*ANTH, "--close-after", "6", name="cut")
    out = anth_sdk(m, mode="stream")
    assert not out["ok"], out                           # a stream cut before message_stop is an error


def test_openai_sdk_reads_tool_calls(env):
    m = env.mock("--stream-events", "3")
    spec = {"baseURL": m.base_url, "maxRetries": 0,
            "body": {"model": "gpt-m", "messages": [{"role": "user", "content": "hi"}], "tools": [OA_WEATHER]}}
    out = harness.sdk("chat.mjs", spec)
    assert out["ok"], out
    [call] = out["completion"]["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    spec["body"]["stream_options"] = {"include_usage": True}
    out = harness.sdk("chat.mjs", dict(spec, stream=True))
    assert out["ok"], out
    calls = [c["choices"][0]["delta"].get("tool_calls") for c in out["chunks"] if c["choices"]]
    assert calls[0][0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c[0]["function"]["arguments"] for c in calls if c)) == {"city": "Paris"}
    assert out["chunks"][-1]["usage"]["total_tokens"] > 0


test_anthropic_sdk_reads_messages_streams_and_tool_use.bound = 120
test_anthropic_sdk_raises_the_forced_errors.bound = 120
