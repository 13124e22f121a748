"""Every endpoint kind end to end: JSON kinds, binary speech, multipart transcription, SSE relay."""
import json
import uuid


def seed(m):
    t = lambda model: [{"provider": "mock", "model": model}]
    return {"providers": [{"name": "mock", "base_url": m.base_url,
                           "models": [{"name": n} for n in ("chat-m", "cmp-m", "emb-m", "tts-m", "stt-m", "img-m")]}],
            "routes": [{"name": "chat", "endpoint": "chat", "targets": t("chat-m")},
                       {"name": "cmp", "endpoint": "completions", "targets": t("cmp-m")},
                       {"name": "emb", "endpoint": "embeddings", "targets": t("emb-m")},
                       {"name": "tts", "endpoint": "audio_speech", "targets": t("tts-m")},
                       {"name": "fast-transcribe", "endpoint": "audio_transcription", "targets": t("stt-m")},
                       {"name": "img", "endpoint": "image_generation", "targets": t("img-m")}]}


def test_json_endpoints(env):
    m = env.mock()
    t = env.turnout(seed(m))
    for path, model, upstream, key in (("/v1/chat/completions", "chat", "chat-m", "choices"),
                                       ("/v1/completions", "cmp", "cmp-m", "choices"),
                                       ("/v1/embeddings", "emb", "emb-m", "data"),
                                       ("/v1/images/generations", "img", "img-m", "data")):
        st, h, body = t.request("POST", path, {"model": model, "input": "x", "prompt": "p"})
        assert st == 200, (path, body)
        doc = json.loads(body)
        assert doc["model"] == upstream and key in doc
        assert h["x-turnout-model"] == upstream
    assert [e["path"] for e in m.log()] == ["/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                            "/v1/images/generations"]


def test_speech_binary_relayed_unchanged(env):
    m = env.mock()
    t = env.turnout(seed(m))
    st, h, body = t.request("POST", "/v1/audio/speech", {"model": "tts", "input": "hello", "voice": "alloy"})
    assert st == 200
    assert h["content-type"] == "audio/mpeg"
    assert body == bytes((i * 31 + 7) & 0xFF for i in range(4096))
    assert h["x-mock-model"] == "tts-m"


def test_multipart_transcription_model_rewritten(env):
    m = env.mock()
    t = env.turnout(seed(m))
    boundary = "----turnout" + uuid.uuid4().hex
    audio = bytes(range(256)) * 8 + b"\r\n--not-the-boundary\r\n"
    parts = [b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
             b"Content-Type: audio/wav\r\n\r\n" + audio + b"\r\n",
             b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\nfast-transcribe\r\n',
             b"--" + boundary.encode() + b"--\r\n"]
    body = b"".join(parts)
    st, h, resp = t.request("POST", "/v1/audio/transcriptions", body,
                            {"Content-Type": "multipart/form-data; boundary=" + boundary})
    assert st == 200, resp
    assert json.loads(resp) == {"text": "mock transcription", "model": "stt-m"}
    e = m.log()[0]
    assert e["model"] == "stt-m"
    expected = body.replace(b"\r\n\r\nfast-transcribe\r\n", b"\r\n\r\nstt-m\r\n")
    assert e["body_len"] == len(expected)
    assert e["body_fnv"] == fnv(expected)
    assert e["content_type"] == "multipart/form-data; boundary=" + boundary


def test_multipart_without_model_field(env):
    m = env.mock()
    t = env.turnout(seed(m))
    body = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nxx\r\n--b--\r\n'
    st, _, resp = t.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": "multipart/form-data; boundary=b"})
    assert st == 400 and json.loads(resp)["error"]["code"] == "missing_model"
    assert m.log() == []


def test_sse_stream_relayed(env):
    m = env.mock("--stream-events", "4")
    t = env.turnout(seed(m))
    st, h, body = t.request("POST", "/v1/chat/completions", {"model": "chat", "stream": True})
    assert st == 200
    assert h["content-type"].startswith("text/event-stream")
    events = [e for e in body.decode().split("\n\n") if e.strip()]
    assert len(events) == 6 and events[-1] == "data: [DONE]"      # 4 deltas, the finish_reason chunk, [DONE]
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "stop"
    assert all(json.loads(e[6:])["model"] == "chat-m" for e in events[:-1])
    assert m.log()[0]["stream"] is True


def test_stream_broken_midway_ends_with_error_event(env):
    m = env.mock("--stream-events", "10", "--close-after", "2")
    t = env.turnout(seed(m))
    st, h, body = t.request("POST", "/v1/chat/completions", {"model": "chat", "stream": True})
    assert st == 200
    text = body.decode()
    assert text.count("data: {\"id\"") == 2
    assert "event: error" in text and "[DONE]" not in text


def fnv(data):
    h = 1469598103934665603
    for b in data:
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def test_client_disconnect_mid_stream_aborts_upstream(env):
    import time
    m = env.mock("--stream-events", "50", "--stream-interval-ms", "100")
    t = env.turnout(seed(m))
    body = b'{"model":"chat","stream":true}'
    s = t.connect(timeout=5)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while got.count(b"data: ") < 2:
        got += s.recv(65536)
    s.close()
    closed_at = time.time()
    while time.time() - closed_at < 1.0:
        if m.log()[0].get("aborted"):
            break
        time.sleep(0.02)
    assert m.log()[0].get("aborted") is True, "the upstream transfer outlived the client by over 1 s"
    print("    mid-stream hang-up seen by the provider after %.0f ms" % ((time.time() - closed_at) * 1000))
    assert m.stats()["in_flight"] == 0
    assert t.request("GET", "/healthz")[0] == 200


def test_client_disconnect_before_first_byte_aborts_upstream(env):
    import time
    m = env.mock("--delay-ms", "5000")
    t = env.turnout(seed(m))
    body = b'{"model":"chat"}'
    s = t.connect(timeout=5)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    deadline = time.time() + 2
    while not m.log() and time.time() < deadline:
        time.sleep(0.02)
    s.close()
    closed_at = time.time()
    while time.time() - closed_at < 1.0 and not m.log()[0].get("aborted"):
        time.sleep(0.02)
    assert m.log()[0].get("aborted") is True, "the upstream request outlived the client by over 1 s"
    print("    pre-first-byte hang-up seen by the provider after %.0f ms" % ((time.time() - closed_at) * 1000))
    t.stop()
    lines = [l for l in open(t.out_path) if '"path":"/v1/chat/completions"' in l]
    assert lines and '"status":499' in lines[0], lines


def test_large_bodies_reach_the_upstream_intact(env):
    """Bodies over 64 KiB are sent upstream from the client's buffer in pieces
    (before the model, the new model, after it): byte for byte the client's
    body with the model replaced, for JSON and multipart, and again in full on
    the fallback after a failed attempt."""
    bad = env.mock("--status", "500", name="bad")
    m = env.mock()
    s = seed(m)
    s["providers"].append({"name": "bad", "base_url": bad.base_url, "models": [{"name": "chat-m"}]})
    s["routes"][0]["targets"] = [{"provider": "bad", "model": "chat-m"}, {"provider": "mock", "model": "chat-m"}]
    t = env.turnout(s)
    big = "é" + "x" * 150000
    body = ('{"messages":[{"role":"user","content":"%s"}],"model":"chat","user":"%s"}' % (big, "y" * 90000)).encode()
    st, h, resp = t.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert st == 200 and h["x-turnout-attempts"] == "2", resp
    expected = body.replace(b'"model":"chat"', b'"model":"chat-m"')
    for log in (bad.log()[0], m.log()[0]):
        assert log["body_len"] == len(expected) and log["body_fnv"] == fnv(expected), log
    boundary = "b" + uuid.uuid4().hex
    audio = bytes(range(256)) * 400
    form = (b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' +
            audio + b"\r\n--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\n'
            b"fast-transcribe\r\n--" + boundary.encode() + b"--\r\n")
    st, _, resp = t.request("POST", "/v1/audio/transcriptions", form,
                            {"Content-Type": "multipart/form-data; boundary=" + boundary})
    assert st == 200, resp
    expected = form.replace(b"\r\n\r\nfast-transcribe\r\n", b"\r\n\r\nstt-m\r\n")
    log = m.log()[-1]
    assert log["body_len"] == len(expected) > 65536 and log["body_fnv"] == fnv(expected), log
