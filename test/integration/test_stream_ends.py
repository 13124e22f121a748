"""How a relayed stream ends, as an application sees it through the official openai SDK.

Every stream here comes from a scripted raw-socket upstream (RawUpstream):
cut in the middle of an event, cut by the total deadline, or framed only by
the close. The SDK's own SSE parser must see either the whole stream or an
`error` event it raises as an APIError: never a half event joined to the
error (which it reports as malformed JSON, hiding the error), never a clean
end for a stream that was cut.
"""
import json
import time

import harness
from test_upstream_http import RawUpstream, Reply, chunk, one_upstream, response, LAST_CHUNK

SSE = (b"Content-Type", b"text/event-stream")


def event(i):
    return b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"e%d"}}]}\n\n' % i


def sdk_stream(t, **spec):
    return harness.sdk("chat.mjs", dict({"baseURL": t.url("/v1"), "stream": True,
                                         "maxRetries": 0, "body": {"model": "r", "messages": []}}, **spec))


def contents(out):
    return [c["choices"][0]["delta"]["content"] for c in out["chunks"]]


def assert_sdk_error(out, code, events):
    """The SDK got EVENTS whole, then raised the error event as an APIError with CODE."""
    assert not out["ok"], out
    assert out["error"]["class"] == "APIError" and out["error"]["code"] == code, out["error"]
    assert contents(out) == ["e%d" % i for i in range(events)], out["chunks"]


def test_a_stream_cut_mid_event_ends_with_an_error_the_sdk_sees(env):
    """Content-Length 400, one whole event and the start of another, then the
    close: the half event is never relayed, so the SDK raises the
    upstream_error event (before, it got the half event glued to the error
    and failed on malformed JSON)."""
    sent = event(0) + b'data: {"partial'
    head = response(headers=[SSE, (b"Content-Length", b"400")], length=False)
    with RawUpstream(Reply(head + sent, 0.05, end="close")) as up:
        t = one_upstream(env, up)
        assert_sdk_error(sdk_stream(t), "upstream_error", 1)


def test_a_chunked_stream_cut_mid_event_ends_with_an_error(env):
    """The same with chunked framing, the half event in a chunk of its own, then a reset."""
    head = response(headers=[SSE, (b"Transfer-Encoding", b"chunked")], length=False)
    with RawUpstream(Reply(head + chunk(event(0) + event(1)[:20]), 0.05, chunk(event(1)[20:30]), 0.05,
                           end="reset")) as up:
        t = one_upstream(env, up)
        assert_sdk_error(sdk_stream(t), "upstream_error", 1)


def test_the_total_deadline_never_leaves_half_an_event(env):
    """Two events, then half of a third, then silence: total_s 1 ends the
    stream with its upstream_total_timeout error event, which the SDK raises."""
    head = response(headers=[SSE, (b"Transfer-Encoding", b"chunked")], length=False)
    with RawUpstream(Reply(head + chunk(event(0) + event(1) + event(2)[:25]), 3, end="close")) as up:
        t = one_upstream(env, up, config={"upstream": {"total_s": 1}})
        t0 = time.time()
        out = sdk_stream(t)
        assert_sdk_error(out, "upstream_total_timeout", 2)
        assert time.time() - t0 < 2.5


def test_events_split_anywhere_arrive_whole(env):
    """Events written a few bytes at a time (every split inside and between
    them, CRLF line ends too) reach the SDK complete and in order, and the
    stream ends cleanly."""
    body = b"".join(event(i) for i in range(3)).replace(b"\n\n", b"\r\n\r\n", 1) + b"data: [DONE]\n\n"
    head = response(headers=[SSE, (b"Transfer-Encoding", b"chunked")], length=False)
    parts = [head]
    for i in range(0, len(body), 7):
        parts += [chunk(body[i:i + 7]), 0.002]
    with RawUpstream(Reply(*parts, LAST_CHUNK)) as up:
        t = one_upstream(env, up)
        out = sdk_stream(t)
        assert out["ok"] and contents(out) == ["e0", "e1", "e2"], out


def test_a_close_delimited_stream_is_judged_by_its_terminator(env):
    """No Content-Length, no chunks: the close ends the answer, so only
    data: [DONE] tells a finished stream from a cut one (SPEC 4.4). Three
    events and the close: upstream_truncated, which the SDK raises. With
    [DONE] before the close: a clean end."""
    head = response(headers=[SSE], length=False)
    events = event(0) + event(1) + event(2)
    with RawUpstream([Reply(head + events, 0.05, end="close"),
                      Reply(head + events + b"data: [DONE]\n\n", 0.05, end="close")]) as up:
        t = one_upstream(env, up)
        assert_sdk_error(sdk_stream(t), "upstream_truncated", 3)
        out = sdk_stream(t)
        assert out["ok"] and contents(out) == ["e0", "e1", "e2"], out
        log = t.access_log("/v1/chat/completions", 2)
        # the SDK hangs up as soon as it has [DONE], which may be before the upstream's close
        assert log[0]["error"] == "upstream_truncated" and log[1]["error"] in (None, "client_closed"), log


def test_a_close_delimited_stream_cut_before_its_first_byte_fails_over(env):
    """Closed before any event: nothing was relayed yet, so the next
    candidate answers (the commit point is the first byte relayed)."""
    good = env.mock(name="good")
    with RawUpstream(Reply(response(headers=[SSE], length=False), 0.05, end="close")) as up:
        from test_upstream_http import gateway, provider
        t = gateway(env, provider("raw", up.base_url()), provider("good", good.base_url, "mock-small"))
        out = sdk_stream(t)
        assert out["ok"] and len(out["chunks"]) > 0, out
        entry = t.access_log("/v1/chat/completions")[-1]
        assert [a["error"] for a in entry["trace"]] == ["upstream_truncated", None], entry
