"""Usage and cost (SPEC 8): the counts read from every answer (OpenAI and Anthropic, whole and
streamed, passthrough and translated, embeddings), turnout asking an OpenAI stream for its usage
and dropping the chunk the client did not ask for, the access-log fields and the metrics."""
import json
import time

from harness import http_request

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"

IN_PRICE, OUT_PRICE = 2.5, 10.0        # USD per 1M tokens


def gateway(env, *mocks):
    providers = [{"name": m.name, "base_url": m.base_url, "api_key_env": "MOCK_API_KEY",
                  "protocol": "anthropic" if m.name.startswith("anth") else "openai",
                  "models": [{"name": "m-" + m.name, "input_price": IN_PRICE, "output_price": OUT_PRICE},
                             {"name": "free-" + m.name}]} for m in mocks]
    routes = [{"name": "r-" + m.name, "targets": [{"provider": m.name, "model": "m-" + m.name}]} for m in mocks]
    routes += [{"name": "free-" + m.name, "targets": [{"provider": m.name, "model": "free-" + m.name}]}
               for m in mocks]
    routes.append({"name": "emb", "endpoint": "embeddings", "targets": [{"provider": mocks[0].name,
                                                                          "model": "m-" + mocks[0].name}]})
    return env.turnout({"providers": providers, "routes": routes})


def cost(prompt, completion):
    """What the access log should say, to the nano-dollar, as a string."""
    nano = prompt * IN_PRICE * 1000 + completion * OUT_PRICE * 1000
    return "%d.%09d" % (int(nano) // 10**9, int(nano) % 10**9)


def last_line(t, path, n):
    lines = t.access_log(path, count=n)
    assert len(lines) >= n, lines
    return lines[n - 1]


def raw_cost(t, rid):
    """The access-log line of request RID as raw text, for the exact cost_usd spelling."""
    with open(t.out_path) as f:
        for line in f:
            if rid in line:
                return line.split('"cost_usd":', 1)[1].split(",", 1)[0]
    return None


def data_events(raw):
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line[6:] != "[DONE]":
                out.append(json.loads(line[6:]))
    return out


def test_usage_of_a_whole_answer_priced(env):
    m = env.mock(name="oa")
    t = gateway(env, m)
    st, h, body = t.chat("r-oa")
    assert st == 200, body
    up = m.log()[-1]
    prompt = up["body_len"] // 4          # what mockllm reports
    assert json.loads(body)["usage"]["prompt_tokens"] == prompt
    line = last_line(t, CHAT, 1)
    assert line["prompt_tokens"] == prompt and line["completion_tokens"] == 5, line
    assert raw_cost(t, line["request_id"]) == cost(prompt, 5)
    # an unpriced model has counts and no cost
    st, _, _ = t.chat("free-oa")
    line = last_line(t, CHAT, 2)
    assert st == 200 and line["prompt_tokens"] > 0 and line["completion_tokens"] == 5 and line["cost_usd"] is None
    # an answer that is not a success has none
    st, _, _ = t.chat("no-such-route")
    line = last_line(t, CHAT, 3)
    assert st == 404 and line["prompt_tokens"] is None and line["cost_usd"] is None


def test_stream_usage_asked_for_and_dropped(env):
    m = env.mock("--stream-events", "4", name="oa")
    t = gateway(env, m)
    # the client did not ask: turnout asks, counts, and drops the usage chunk
    st, h, raw = t.chat("r-oa", stream=True)
    assert st == 200
    events = data_events(raw)
    assert events and all("usage" not in e or e["usage"] is None for e in events), events
    assert all(e["choices"] for e in events)
    assert raw.decode().rstrip().endswith("data: [DONE]")
    up = json.loads(m.log()[-1]["body"])
    assert up["stream_options"] == {"include_usage": True}, up
    line = last_line(t, CHAT, 1)
    assert line["prompt_tokens"] == 3 and line["completion_tokens"] == 4, line
    assert raw_cost(t, line["request_id"]) == cost(3, 4)
    # the client asked: it gets the chunk, and the body goes as it came
    st, h, raw = t.chat("r-oa", stream=True, stream_options={"include_usage": True})
    events = data_events(raw)
    assert st == 200 and events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 4
    assert json.loads(m.log()[-1]["body"])["stream_options"] == {"include_usage": True}
    assert last_line(t, CHAT, 2)["completion_tokens"] == 4
    # it said false, or named other options: asked anyway, and the chunk is dropped
    for opts in ({"include_usage": False}, {}, {"include_obfuscation": False}, None):
        st, h, raw = t.chat("r-oa", stream=True, stream_options=opts)
        events = data_events(raw)
        assert st == 200 and all(e["choices"] for e in events), (opts, events)
        sent = json.loads(m.log()[-1]["body"])["stream_options"]
        assert sent["include_usage"] is True and all(sent[k] == v for k, v in (opts or {}).items()
                                                     if k != "include_usage"), (opts, sent)
    lines = t.access_log(CHAT, count=6)
    assert [x["completion_tokens"] for x in lines[2:6]] == [4, 4, 4, 4], lines
    # given twice, or spelled with escapes: an upstream could read the one turnout did not
    n = len(m.log())
    for raw in (b'{"model":"r-oa","stream":true,"messages":[{"role":"user","content":"hi"}],'
                b'"stream_options":{"include_usage":true,"include_usage":false}}',
                b'{"model":"r-oa","stream":true,"messages":[{"role":"user","content":"hi"}],'
                b'"stream_options":{"include_usag\\u0065":false}}'):
        st, _, body = http_request(t.port, "POST", CHAT, raw, {"Content-Type": "application/json"})
        err = json.loads(body)["error"]
        assert st == 400 and err["param"] == "stream_options.include_usage", body
    assert len(m.log()) == n


def test_a_stream_not_asked_for_its_usage_is_byte_identical(env):
    """What a client that did not ask for the usage gets is what the upstream sends
    without include_usage, byte for byte: no usage chunk and no "usage": null in
    the others (the mock's timestamps aside)."""
    import re
    m = env.mock("--stream-events", "6", name="oa")
    t = gateway(env, m)
    body = {"model": "m-oa", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    st, _, direct = http_request(m.port, "POST", CHAT, body)
    assert st == 200 and b'"usage"' not in direct
    st, _, relayed = t.chat("r-oa", stream=True)
    assert st == 200
    assert json.loads(m.log()[-1]["body"])["stream_options"] == {"include_usage": True}

    def norm(raw):
        raw = re.sub(rb'"created":\d+', b'"created":0', raw)
        return re.sub(rb'"sent_ms":[0-9.]+', b'"sent_ms":0', raw)
    assert norm(relayed) == norm(direct), (relayed[:400], direct[:400])
    assert last_line(t, CHAT, 1)["completion_tokens"] == 6


def test_embeddings_usage(env):
    m = env.mock(name="oa")
    t = gateway(env, m)
    st, _, body = t.request("POST", "/v1/embeddings", {"model": "emb", "input": "hello"})
    assert st == 200, body
    line = last_line(t, "/v1/embeddings", 1)
    assert line["prompt_tokens"] == 3 and line["completion_tokens"] is None
    assert raw_cost(t, line["request_id"]) == cost(3, 0)


def test_anthropic_usage_passthrough_and_translated(env):
    a = env.mock("--protocol", "anthropic", name="anth")
    t = gateway(env, a)
    msg = {"model": "r-anth", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    # Anthropic in and out: the bytes pass, the counts are read
    st, _, body = t.request("POST", MESSAGES, msg)
    assert st == 200, body
    u = json.loads(body)["usage"]
    line = last_line(t, MESSAGES, 1)
    assert line["prompt_tokens"] == u["input_tokens"] and line["completion_tokens"] == u["output_tokens"], line
    st, _, raw = t.request("POST", MESSAGES, dict(msg, stream=True))
    assert st == 200
    starts = [json.loads(x[6:]) for x in raw.decode().split("\n") if x.startswith("data: ")]
    delta = [e for e in starts if e["type"] == "message_delta"][-1]["usage"]
    start = [e for e in starts if e["type"] == "message_start"][0]["message"]["usage"]
    line = last_line(t, MESSAGES, 2)
    assert line["prompt_tokens"] == start["input_tokens"] and line["completion_tokens"] == delta["output_tokens"]
    # an OpenAI client on the Anthropic upstream: the translation's counts
    st, _, body = t.chat("r-anth")
    assert st == 200, body
    u = json.loads(body)["usage"]
    line = last_line(t, CHAT, 1)
    assert line["prompt_tokens"] == u["prompt_tokens"] and line["completion_tokens"] == u["completion_tokens"]
    assert raw_cost(t, line["request_id"]) == cost(u["prompt_tokens"], u["completion_tokens"])
    st, _, raw = t.chat("r-anth", stream=True)
    events = data_events(raw)
    assert st == 200 and all("usage" not in e or e["usage"] is None for e in events)
    line = last_line(t, CHAT, 2)
    assert line["prompt_tokens"] > 0 and line["completion_tokens"] > 0, line


def test_token_and_cost_metrics(env):
    m = env.mock(name="oa")
    t = gateway(env, m)
    total_prompt = 0
    for _ in range(3):
        assert t.chat("r-oa")[0] == 200
        total_prompt += m.log()[-1]["body_len"] // 4
    t.access_log(CHAT, count=3)
    st, _, text = http_request(t.port, "GET", "/metrics")
    text = text.decode()
    assert st == 200
    want = {
        'turnout_tokens_total{route="r-oa",provider="oa",model="m-oa",type="prompt"}': str(total_prompt),
        'turnout_tokens_total{route="r-oa",provider="oa",model="m-oa",type="completion"}': "15",
        'turnout_cost_usd_total{route="r-oa",provider="oa",model="m-oa"}': cost(total_prompt, 15),
    }
    got = {}
    for line in text.split("\n"):
        k, _, v = line.rpartition(" ")
        if k in want:
            got[k] = v
    assert got == want, (got, [x for x in text.split("\n") if "tokens" in x or "cost" in x])
    assert "# TYPE turnout_cost_usd_total counter" in text


def test_usage_rollups_by_hour_and_group(env):
    m = env.mock(name="oa")
    a = env.mock("--protocol", "anthropic", name="anth")
    t = gateway(env, m, a)
    want = {}
    for route, n in (("r-oa", 3), ("r-anth", 2)):
        for _ in range(n):
            st, _, body = t.chat(route)
            assert st == 200, body
    lines = t.access_log(CHAT, count=5)
    for x in lines:
        w = want.setdefault(x["provider"], [0, 0, 0, 0])
        w[0] += 1
        w[1] += x["prompt_tokens"]
        w[2] += x["completion_tokens"]
        w[3] += round(float(raw_cost(t, x["request_id"])) * 1e9)
    time.sleep(1.5)                    # the keeper writes once a second
    st, rep = t.admin("GET", "/v1/usage?group_by=provider,model")
    assert st == 200, rep
    got = {}
    for row in rep["data"]:
        assert row["end"] > row["start"] and row["start"].endswith(":00:00Z"), row
        g = got.setdefault(row["provider"], [0, 0, 0, 0])
        g[0] += row["requests"]
        g[1] += row["prompt_tokens"]
        g[2] += row["completion_tokens"]
        g[3] += round(row["cost_usd"] * 1e9)
        assert row["model"] == "m-" + row["provider"]
    assert got == want, (got, want)
    st, rep = t.admin("GET", "/v1/usage?group_by=route&bucket=day")
    assert st == 200 and sorted((r["route"], r["requests"]) for r in rep["data"]) == [("r-anth", 2), ("r-oa", 3)], rep
    assert all(r["start"].endswith("T00:00:00Z") for r in rep["data"])
