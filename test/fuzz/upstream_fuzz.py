#!/usr/bin/python3
"""upstream_fuzz.py - a bounded black-box fuzzer of turnout's upstream HTTP clients.

A raw-socket upstream answers every request turnout sends it with a *mutated*
answer built from a correct one whose body names the request's x-request-id
(a chat.completion JSON, or an SSE stream whose events carry the id).
Mutations: byte flips in the head, wrong/duplicate/huge Content-Length,
chunked framing errors, trailers and extensions, truncation then close/reset/
silence, interim 1xx answers (up to thousands), 101, HTTP/1.0, Connection:
close lies, bytes after the answer (at once, later while the connection idles,
a whole second answer), dribbled and silent heads and bodies, non-token header
names, bytes >= 0x80, CR/LF/NUL inside values, SSE cut mid-event, with and
without [DONE], close-delimited bodies.

Client threads send concurrent requests (http.client keep-alive connections
and raw sockets; streaming and not), each with its own x-request-id, and check
every reply:
  CROSS-ANSWER            a body (or header) names another request's id
  HEADER-INJECTION        a reply header carries a name/value the upstream only
                          smuggled (x-fuzz-inj-*: in a 1xx, a 101, a trailer, a
                          bare CR, a NUL, a fold, after a bad chunk size, in stray bytes)
  BAD-ERROR-BODY          a 4xx/5xx made by turnout that is not {"error":{...}} UTF-8 JSON
  PARTIAL-EVENT-BEFORE-ERROR, BAD-ERROR-EVENT, DATA-AFTER-ERROR-EVENT, STREAM-END-...
  SLOW / HANG             no complete reply within total_s + margin / the client timeout
  NO-REPLY, CLIENT-FRAMING, BAD-REPLY-HEADER, WRONG-REQUEST-ID-HEADER, CANARY-LEAK
  REQUEST-ON-UNFINISHED-CONNECTION
                          turnout sent a request on a connection whose previous
                          answer was unfinished or said it would close
  TURNOUT-DIED, HEALTHZ-FAIL, SANITIZER, EXIT-CODE
Every finding keeps the exact upstream bytes (repr, truncated) and is
deduplicated by kind (and mutation set). Everything is bounded by count and time.

  /usr/bin/python3 test/fuzz/upstream_fuzz.py --binary /tmp/fuzz-turnout --client native --duration 420
  /usr/bin/python3 test/fuzz/upstream_fuzz.py --replay "b'HTTP/1.1 200 OK\\r\\n...'" --requests 3

Standard library only. Results go to --out (default /tmp/fuzz-results/<client>-<time>/).
"""
import argparse
import ast
import collections
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402  (free_port: ports below the ephemeral range, on loopback)

CANARY = "sk-fuzz-canary-5d1f0c9e7a2b4f36"
ADMIN_KEY = "fuzz-admin-key-0123456789"
FIRST_BYTE_S, IDLE_S, TOTAL_S = 2, 2, 5
MAX_PLAN_S = 8.0              # no upstream answer takes longer than this, pauses included
CLIENT_TIMEOUT_S = 25.0        # a client gives up after this: HANG
SLOW_MARGIN_S = 4.0            # over TOTAL_S + this: SLOW (sanitizer build, 2 CPUs, Python)
KEEP_BYTES = 64 * 1024         # bytes kept per upstream answer (for the report)
SHOW = 1500                    # repr length shown in findings
SAN_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: UndefinedBehavior",
               "SUMMARY: AddressSanitizer")

TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def now():
    return time.monotonic()


def short(b, n=SHOW):
    if b is None:
        return None
    r = repr(bytes(b))
    return r if len(r) <= n else r[:n * 2 // 3] + " ...<%d bytes>... " % len(b) + r[-n // 3:]


# --- the answers -------------------------------------------------------------------------------------------

BENIGN = {"clean", "dribble", "split", "silence_short", "chunk_ext", "chunk_trailers", "chunk_tiny", "chunk_upper",
          "chunk_zeros", "interim_few", "interim_many", "hop_headers", "big_body", "sse_crlf", "sse_comments",
          "high_bytes", "status_2xx", "empty_value", "many_headers", "sse_no_done", "cl_dup_same"}
# one of these alone (with benign ones) means the connection may not carry another request
NO_REUSE = {"conn_close_lie", "http10", "http10_ka", "cl_larger", "truncate_hang", "chunk_no_last", "chunk_last_partial",
            "chunk_size_bigger", "close_delim_open", "chunk_bad_size", "switch101", "silence_long", "hang",
            "slow_dribble"}


class Plan:
    """One upstream answer: WIRE split at CUTS (offset -> pause seconds), then STRAY (delay, bytes), then END."""

    def __init__(self):
        self.muts = []
        self.wire = b""
        self.cuts = {}
        self.stray = None
        self.end = "keep"          # keep, close, reset, hang (keep the connection, expect nothing more on it)
        self.linger = 0.0
        self.has_done = False
        self.sse = False
        self.status = 200

    def pauses(self):
        items = [(k, round(v, 3)) for k, v in sorted(self.cuts.items()) if v]
        if len(items) <= 6:
            return {str(k): v for k, v in items}
        return {"count": len(items), "total_s": round(sum(v for _, v in items), 3), "max_s": max(v for _, v in items)}

    def describe(self):
        return {"mutations": self.muts, "end": self.end, "linger": self.linger, "status": self.status,
                "pauses": self.pauses(),
                "stray_delay": self.stray[0] if self.stray else None, "wire_len": len(self.wire)}


def chunk(data, size=None, crlf=b"\r\n"):
    return (size if size is not None else b"%x" % len(data)) + crlf + data + crlf


WEIGHTS = [
    # head
    ("http10", 3), ("http10_ka", 2), ("status_2xx", 2), ("status_other", 3), ("status_junk", 3), ("cl_smaller", 3), ("cl_larger", 3),
    ("cl_dup_same", 2), ("cl_dup_diff", 3), ("cl_weird", 4), ("cl_and_te", 3), ("te_weird", 3),
    ("conn_close_lie", 4), ("bad_name", 4), ("high_bytes", 3), ("inject_cr", 3), ("inject_lf", 2), ("inject_nul", 2),
    ("fold", 2), ("many_headers", 1), ("huge_header", 1), ("hop_headers", 2), ("empty_value", 1), ("head_flip", 8),
    ("long_reason", 1),
    # framing and body
    ("chunk_bad_size", 5), ("chunk_ext", 3), ("chunk_ext_huge", 1), ("chunk_no_crlf", 3), ("chunk_lf_only", 3),
    ("chunk_trailers", 3), ("chunk_bad_trailers", 3), ("chunk_no_last", 2), ("chunk_last_partial", 2),
    ("chunk_size_bigger", 2), ("chunk_tiny", 2), ("chunk_upper", 1), ("chunk_zeros", 1), ("chunk_zero_mid", 3),
    ("close_delim", 3), ("close_delim_open", 2), ("body_flip", 3), ("big_body", 1), ("empty_body", 1),
    ("sse_no_done", 4), ("sse_crlf", 2), ("sse_cr_only", 1), ("sse_comments", 2), ("sse_big_event", 1),
    ("truncate", 6), ("truncate_hang", 2),
    # before the answer
    ("interim_few", 4), ("interim_many", 2), ("interim_bad", 3), ("switch101", 3), ("interim_then_silence", 1),
    # after the answer
    ("extra_now", 6), ("extra_later", 8), ("extra_second", 4), ("end_close", 3), ("end_reset", 3),
    ("end_close_linger", 3), ("end_reset_linger", 3),
    # delivery
    ("dribble", 4), ("slow_dribble", 1), ("split", 4), ("silence_short", 3), ("silence_long", 1), ("hang", 1),
    ("rate_limited", 1),
]
MUT_NAMES = [m for m, _ in WEIGHTS]
MUT_W = [w for _, w in WEIGHTS]


def pick_mutations(rng, clean_share):
    if rng.random() < clean_share:
        return []
    k = rng.choices([1, 2, 3, 4], [55, 28, 12, 5])[0]
    out = []
    for _ in range(k):
        m = rng.choices(MUT_NAMES, MUT_W)[0]
        if m not in out:
            out.append(m)
    return out


def build_plan(rid, stream, rng, clean_share=0.3, forced=None):
    """The answer to request RID (bytes as str), stream or not, with random mutations."""
    p = Plan()
    muts = forced if forced is not None else pick_mutations(rng, clean_share)
    has = set(muts).__contains__
    rb = rid.encode()
    p.muts = list(muts) or ["clean"]
    p.sse = stream
    stray_tag = b"x-fuzz-inj-stray"

    # body
    if stream:
        n = rng.randint(1, 8)
        nl = b"\r\n" if has("sse_crlf") else (b"\r" if has("sse_cr_only") else b"\n")
        events = []
        for i in range(n):
            ev = b'data: {"id":"%s","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"e%d"}}]}' % (rb, i)
            if has("sse_big_event") and i == n - 1:
                ev = b'data: {"id":"%s","pad":"%s"}' % (rb, b"p" * rng.choice([70000, 1100000]))
            events.append(ev + nl + nl)
            if has("sse_comments") and rng.random() < 0.5:
                events.append(rng.choice([b": keep-alive" + nl + nl, b"retry: 100" + nl + nl, b"event: ping" + nl + b"data: {}" + nl + nl]))
        p.has_done = not has("sse_no_done")
        if p.has_done:
            events.append(b"data: [DONE]" + nl + nl)
        body = b"".join(events)
        ctype = b"text/event-stream"
    else:
        pad = b""
        if has("big_body"):
            pad = b"p" * rng.choice([20000, 100000, 300000, 700000])
        body = (b'{"id":"%s","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",'
                b'"content":"answer for %s%s"}}]}' % (rb, rb, pad))
        ctype = b"application/json"
    if has("empty_body"):
        body = b""
    if has("body_flip") and len(body) > 10:
        b = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b))
            if rb in bytes(b[max(0, i - len(rb)):i + len(rb)]):
                continue                              # never corrupt the id itself
            b[i] = rng.randrange(256)
        body = bytes(b)

    # framing
    if has("chunk_bad_size") or has("chunk_ext") or has("chunk_ext_huge") or has("chunk_no_crlf") or \
            has("chunk_lf_only") or has("chunk_trailers") or has("chunk_bad_trailers") or has("chunk_no_last") or \
            has("chunk_last_partial") or has("chunk_size_bigger") or has("chunk_tiny") or has("chunk_upper") or \
            has("chunk_zeros") or has("chunk_zero_mid") or has("te_weird") or has("cl_and_te"):
        framing = "chunked"
    elif has("close_delim") or has("close_delim_open"):
        framing = "close"
    elif has("cl_smaller") or has("cl_larger") or has("cl_dup_same") or has("cl_dup_diff") or has("cl_weird"):
        framing = "cl"
    else:
        framing = rng.choices(["cl", "chunked", "close"], [45, 40, 15] if stream else [60, 30, 10])[0]

    chunk_only = {"chunk_bad_size", "chunk_ext", "chunk_ext_huge", "chunk_no_crlf", "chunk_lf_only", "chunk_trailers",
                  "chunk_bad_trailers", "chunk_no_last", "chunk_last_partial", "chunk_size_bigger", "chunk_tiny",
                  "chunk_upper", "chunk_zeros", "chunk_zero_mid", "te_weird", "cl_and_te"}
    cl_only = {"cl_smaller", "cl_larger", "cl_dup_same", "cl_dup_diff", "cl_weird"}
    sse_only = {"sse_no_done", "sse_crlf", "sse_cr_only", "sse_comments", "sse_big_event"}
    piece_muts = {"chunk_bad_size", "chunk_ext", "chunk_ext_huge", "chunk_no_crlf", "chunk_lf_only", "chunk_size_bigger",
                  "chunk_tiny", "chunk_upper", "chunk_zeros", "chunk_zero_mid"}
    muts = [m for m in muts if not (m in chunk_only and framing != "chunked" or m in cl_only and framing != "cl"
                                    or m in piece_muts and not body
                                    or m in ("close_delim", "close_delim_open") and framing != "close"
                                    or m in sse_only and not stream)]
    has = set(muts).__contains__
    p.muts = list(muts) or ["clean"]

    # status line and head
    version = b"HTTP/1.0" if has("http10") or has("http10_ka") else b"HTTP/1.1"
    status, reason = 200, b"OK"
    if has("status_2xx"):
        status, reason = rng.choice([(201, b"Created"), (203, b"Non-Authoritative"), (204, b"No Content"),
                                     (206, b"Partial"), (299, b"Whatever")])
    if has("status_other"):
        status, reason = rng.choice([(301, b"Moved"), (304, b"Not Modified"), (400, b"Bad Request"),
                                     (404, b"Not Found"), (422, b"Unprocessable"), (500, b"Internal"),
                                     (502, b"Bad Gateway"), (503, b"Unavailable"), (418, b"Teapot"),
                                     (401, b"Unauthorized"), (999, b"Nine"), (600, b"Six")])
    if has("rate_limited"):
        status, reason = 429, b"Too Many Requests"
    p.status = status
    status_line = b"%s %d %s" % (version, status, reason)
    if has("status_junk"):
        status_line = rng.choice([b"HTTP/1.1 200", b"HTTP/1.1  200 OK", b"http/1.1 200 OK", b"HTTP/2 200",
                                  b"HTTP/1.12 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 200\tOK",
                                  b"HTTP/1.1 200 O\x01K", b"HTTP/1.1 200 OK\x00", b"HTTP/1.1 -200 OK",
                                  b"ICY 200 OK", b" HTTP/1.1 200 OK", b"HTTP/1.1 +20 OK", b"HTTP/1.1 0200 OK",
                                  b"HTTP/1.1 200 \xc3\xa9t\xe9", b"HTTP/1.1 2\xff0 OK", b"HTTP/1.1"])
    if has("long_reason"):
        status_line = b"HTTP/1.1 200 " + b"r" * rng.choice([1000, 66000, 140000])
    heads = [b"Content-Type: " + ctype, b"X-Fuzz-Upstream: " + rb]
    if has("rate_limited"):
        heads.append(b"Retry-After: 0")        # a longer one would stop every request for that long
    if has("hop_headers"):
        heads += [b"Keep-Alive: timeout=5, max=100", b"Proxy-Connection: keep-alive", b"TE: trailers",
                  b"Upgrade: h2c", b"Trailer: X-Fuzz-Trailer"]
    if has("conn_close_lie"):
        heads.append(rng.choice([b"Connection: close", b"Connection: Close", b"connection: keep-alive, close"]))
    elif has("http10_ka"):
        heads.append(b"Connection: keep-alive")
    if has("bad_name"):
        name = rng.choice([b"X Fuzz-Inj-Name", b"X-\xffFuzz-Inj", b"X(y)-fuzz-inj", b"", b"X-Fuzz-Inj\x00", b"X-\x7f",
                           b" X-Fuzz-Inj-Lead", b"X-Fuzz-Inj\t", b"X-Fuzz-Inj@x", b"X-Fuzz-Inj\"q"])
        heads.insert(rng.randrange(len(heads) + 1), name + b": x-fuzz-inj-name")
        if rng.random() < 0.3:
            heads.insert(rng.randrange(len(heads) + 1), b"no colon x-fuzz-inj-nocolon")
    if has("high_bytes"):
        heads.append(b"X-Fuzz-Hi: caf\xc3\xa9 \xff\xfe\x80 " + bytes(rng.randrange(0x80, 0x100) for _ in range(8)))
    if has("inject_cr"):
        heads.append(b"X-Fuzz-A: 1\rx-fuzz-inj-cr: " + rb)
    if has("inject_lf"):
        heads.append(b"X-Fuzz-B: 1\nx-fuzz-lf-split: " + rb)     # a bare LF may be read as a line end (RFC 9112)
    if has("inject_nul"):
        heads.append(b"X-Fuzz-C: 1\x00x-fuzz-inj-nul: " + rb)
    if has("fold"):
        heads.append(b"X-Fuzz-D: 1")
        heads.append(rng.choice([b" x-fuzz-inj-fold: 1", b"\tx-fuzz-inj-fold: 1"]))
    if has("empty_value"):
        heads.append(b"X-Fuzz-Empty:")
    if has("many_headers"):
        heads += [b"X-Fuzz-M%04d: %s" % (i, b"v" * 20) for i in range(rng.choice([150, 600, 3000]))]
    if has("huge_header"):
        heads.append(b"X-Fuzz-Big: " + b"b" * rng.choice([60000, 66000, 150000]))

    # body framing
    if framing == "chunked":
        pieces = []
        if has("chunk_tiny"):
            sizes = [1] * min(len(body), 400) + ([len(body) - 400] if len(body) > 400 else [])
        else:
            sizes, left = [], len(body)
            while left > 0:
                s = min(left, rng.randint(1, max(1, len(body) // 2 + 1)))
                sizes.append(s)
                left -= s
        off, parts = 0, []
        for s in sizes:
            parts.append(body[off:off + s])
            off += s
        for i, d in enumerate(parts):
            size = b"%x" % len(d)
            if has("chunk_upper"):
                size = size.upper()
            if has("chunk_zeros"):
                size = b"000" + size
            if has("chunk_ext") and rng.random() < 0.5:
                size += rng.choice([b";a=b", b";foo", b' ; q="x y"', b";\xff\xfe", b";a=b;c=d"])
            crlf = b"\r\n"
            if has("chunk_lf_only") and rng.random() < 0.5:
                crlf = b"\n"
            pieces.append(chunk(d, size, crlf))
        if has("chunk_ext_huge") and pieces:
            pieces[0] = b"%x;%s\r\n" % (len(parts[0]), b"e" * rng.choice([1000, 70000])) + parts[0] + b"\r\n"
        if has("chunk_no_crlf") and pieces:
            i = rng.randrange(len(pieces))
            pieces[i] = pieces[i][:-2] + rng.choice([b"", b"XX", b"\n", b"\r"])
        if has("chunk_bad_size") and pieces:
            i = rng.randrange(len(pieces))
            bad = rng.choice([b"0x10", b"10zz", b"-5", b"", b" 5", b"5 ", b"ffffffffffffffffffff", b"7fffffffffffffff",
                              b"+5", b"5\x00", b"FFFFFFFFFFFFFFFF", b"1" * 70, b"g", b"0x0"])
            pieces[i] = bad + b"\r\nx-fuzz-inj-chunk: " + rb + b"\r\n\r\n" + pieces[i].split(b"\r\n", 1)[-1]
        if has("chunk_size_bigger") and pieces:
            i = rng.randrange(len(pieces))
            d = parts[i]
            pieces[i] = b"%x\r\n" % (len(d) + rng.randint(1, 5000)) + d + b"\r\n"
        if has("chunk_zero_mid") and len(pieces) > 1:
            pieces.insert(rng.randrange(1, len(pieces)), b"0\r\n\r\n")
        last = b"0\r\n\r\n"
        if has("chunk_trailers"):
            last = b"0\r\nx-fuzz-inj-trailer: " + rb + b"\r\nX-Fuzz-Inj-Trailer2: 1\r\n\r\n"
        if has("chunk_bad_trailers"):
            last = b"0\r\n" + rng.choice([b"no colon\r\n", b"X Y: 1\r\n", b"x-fuzz-inj-trailer: 1\rX: 2\r\n",
                                          b"X: " + b"t" * 70000 + b"\r\n", b" folded: 1\r\n",
                                          b"x-fuzz-inj-trailer: \xff\r\n"]) + b"\r\n"
        if has("chunk_last_partial"):
            last = rng.choice([b"0\r\n", b"0\r\n\r", b"0", b"0\r\nX-T: 1\r\n"])
        if has("chunk_no_last"):
            last = b""
        framed = b"".join(pieces) + last
        te = b"Transfer-Encoding: chunked"
        if has("te_weird"):
            te = rng.choice([b"Transfer-Encoding: Chunked", b"Transfer-Encoding: chunked, chunked",
                             b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: identity",
                             b"Transfer-Encoding: chunked;q=1", b"Transfer-Encoding: xchunked",
                             b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                             b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
                             b"Transfer-Encoding: chunked , identity", b"Transfer-Encoding:  chunked  "])
        heads.append(te)
        if has("cl_and_te"):
            heads.insert(rng.randrange(len(heads) + 1), b"Content-Length: %d" % rng.choice([len(framed), 5, 0, len(body)]))
    elif framing == "cl":
        framed = body
        n = len(body)
        if has("cl_smaller"):
            n = rng.randrange(0, max(1, len(body)))
        if has("cl_larger"):
            n = len(body) + rng.choice([1, 2, 100, 10000])
        cl = [b"Content-Length: %d" % n]
        if has("cl_dup_same"):
            cl = rng.choice([[cl[0], cl[0]], [b"Content-Length: %d, %d" % (n, n)]])
        if has("cl_dup_diff"):
            cl = rng.choice([[cl[0], b"Content-Length: %d" % (n + 1)], [b"Content-Length: %d, %d" % (n, n - 1)]])
        if has("cl_weird"):
            cl = [b"Content-Length: " + rng.choice([b"99999999999999999999", b"18446744073709551616",
                                                     b"18446744073709551615", b"9223372036854775807",
                                                     b"9223372036854775808", b"4294967296", b"4294967297", b"-1",
                                                     b"+%d" % n, b"0x%x" % n, b" %d " % n, b"", b"%d.0" % n,
                                                     b"%d\x00" % n, b"0%d" % n, b"1e3", b"%da" % n, b"\xd9\xa1"])]
        for c in cl:
            heads.insert(rng.randrange(len(heads) + 1), c)
    else:
        framed = body

    head = status_line + b"\r\n" + b"".join(h + b"\r\n" for h in heads) + b"\r\n"
    if has("head_flip"):
        h = bytearray(head)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(3)
            i = rng.randrange(len(h))
            v = rng.choice([rng.randrange(256), 0x0d, 0x0a, 0x3a, 0x20, 0x00, 0x80, 0xff, 0x09])
            if op == 0:
                h[i] = v
            elif op == 1:
                h.insert(i, v)
            elif len(h) > 4:
                del h[i]
        head = bytes(h)

    # before the answer
    prefix = b""
    if has("interim_few") or has("interim_then_silence"):
        prefix = b"".join(rng.choice([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n",
                                      b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\nx-fuzz-inj-1xx: " + rb + b"\r\n\r\n"])
                          for _ in range(rng.randint(1, 10)))
    if has("interim_many"):
        prefix += b"".join(b"HTTP/1.1 102 Processing\r\n\r\n" if i % 2 else
                           b"HTTP/1.1 103 Early Hints\r\nx-fuzz-inj-1xx: " + rb + b"\r\n\r\n"
                           for i in range(rng.choice([200, 1000, 2500])))
    if has("interim_bad"):
        prefix += rng.choice([b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nhello",
                              b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
                              b"HTTP/1.1 103 Early\r\nx-fuzz-inj-1xx: a\rb\r\n\r\n",
                              b"HTTP/1.0 100 Continue\r\n\r\n", b"HTTP/1.1 199 Odd\r\nx-fuzz-inj-1xx: 1\r\n\r\n",
                              b"HTTP/1.1 100 Continue\r\n", b"HTTP/1.1 100\r\n\r\n",
                              b"HTTP/1.1 100 Continue\r\nX Bad: 1\r\n\r\n"])
    if has("switch101"):
        prefix += b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nx-fuzz-inj-101: " + rb + b"\r\n\r\n"
    p.wire = prefix + head + framed

    if has("truncate") or has("truncate_hang"):
        cut = rng.randrange(1, max(2, len(p.wire)))
        p.wire = p.wire[:cut]
        p.end = "hang" if has("truncate_hang") else rng.choice(["close", "reset"])

    # after the answer
    def stray_bytes():
        return rng.choice([
            b"BAD",
            b"\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + stray_tag + b": " + rb + b"\r\nContent-Length: %d\r\n\r\n"
            % (len(b'{"id":"%s","object":"chat.completion","stray":true,"choices":[]}' % rb))
            + b'{"id":"%s","object":"chat.completion","stray":true,"choices":[]}' % rb,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + stray_tag + b": " + rb + b"\r\nContent-Length: %d\r\n\r\n"
            % len(b'data: {"id":"%s","stray":true}\n\ndata: [DONE]\n\n' % rb)
            + b'data: {"id":"%s","stray":true}\n\ndata: [DONE]\n\n' % rb,
        ])
    if has("extra_now"):
        p.stray = (0.0, stray_bytes())
    if has("extra_later"):
        p.stray = (rng.choice([0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9]), stray_bytes())
    if has("extra_second"):
        p.stray = (rng.choice([0.0, 0.0, 0.01, 0.1, 0.3]),
                   b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + stray_tag + b"-second: " + rb +
                   b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    if has("close_delim"):
        p.end = "close"
        p.linger = rng.choice([0.0, 0.0, 0.05, 0.5])
    if framing == "close" and p.end == "keep":
        p.end = "close"
    if has("close_delim_open") or has("chunk_no_last") or has("chunk_last_partial") or has("cl_larger") or \
            has("chunk_size_bigger"):
        if p.end == "keep":
            p.end = "hang"
    if has("end_close"):
        p.end = "close"
    if has("end_reset"):
        p.end = "reset"
    if has("end_close_linger"):
        p.end, p.linger = "close", rng.choice([0.01, 0.1, 0.3, 1.0])
    if has("end_reset_linger"):
        p.end, p.linger = "reset", rng.choice([0.01, 0.1, 0.3, 1.0])
    if has("hang"):
        p.wire, p.end, p.stray = b"", "hang", None
    if p.end == "keep" and set(p.muts) & NO_REUSE and set(p.muts) <= (NO_REUSE | BENIGN) and not p.stray:
        p.end = "hang"                 # turnout must not send another request on it: watch for one

    # delivery
    w = len(p.wire)
    if w:
        if has("split"):
            for _ in range(rng.randint(1, 6)):
                p.cuts[rng.randrange(w)] = 0.0
        if has("dribble"):
            size = max(1, w // 300)
            pause = rng.choice([0.0, 0.001, 0.003])
            for o in range(size, w, size):
                p.cuts[o] = pause
        if has("slow_dribble"):
            p.cuts[rng.randrange(w)] = rng.choice([IDLE_S + 0.5, IDLE_S + 1.5])
        if has("silence_short"):
            p.cuts[rng.choice([0, rng.randrange(w)])] = rng.choice([0.2, 0.8, 1.5])
        if has("silence_long"):
            p.cuts[rng.choice([0, rng.randrange(w)])] = rng.choice([FIRST_BYTE_S + 0.5, TOTAL_S + 1.0])
        if has("interim_then_silence") and prefix:
            p.cuts[len(prefix)] = rng.choice([FIRST_BYTE_S - 1.0, FIRST_BYTE_S + 0.7])
    total = sum(p.cuts.values())
    if total > MAX_PLAN_S:
        scale = MAX_PLAN_S / total
        p.cuts = {k: v * scale for k, v in p.cuts.items()}
    return p


# --- the upstream ------------------------------------------------------------------------------------------

class Upstream:
    """Raw-socket upstreams on loopback (one thread per connection) answering every request with build_plan()."""

    def __init__(self, nports, rng_seed, clean_share, log, findings, replay=None):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.rng = random.Random(rng_seed)
        self.clean_share = clean_share
        self.log = log
        self.findings = findings
        self.replay = replay
        self.records = collections.defaultdict(list)     # rid -> [answer record]
        self.conns = {}                                  # conn id -> [rid]
        self.next_conn = 0
        self.mut_counts = collections.Counter()
        self.answers = 0
        self.socks, self.threads = [], []
        for _ in range(nports):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(512)
            s.settimeout(0.2)
            self.socks.append(s)
            t = threading.Thread(target=self._accept, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.unfinished = []                             # (signature, detail): judged at the end

    def close(self):
        self.stopping.set()
        for t in self.threads[:len(self.socks)]:
            t.join(2)
        for s in self.socks:
            s.close()

    def _accept(self, s):
        port = s.getsockname()[1]
        while not self.stopping.is_set():
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                cid = self.next_conn
                self.next_conn += 1
                self.conns[cid] = []
            t = threading.Thread(target=self._serve, args=(c, cid, port), daemon=True)
            t.start()

    def _rng(self):
        with self.lock:
            return random.Random(self.rng.getrandbits(64))

    @staticmethod
    def _peek(c):
        try:
            return len(c.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)) > 0
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return False

    def _serve(self, c, cid, port):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(0.2)
        buf = b""
        prev = None               # the previous record on this connection
        started = now()
        try:
            while not self.stopping.is_set() and now() - started < 600:
                t_first = None
                while b"\r\n\r\n" not in buf:
                    d = self._recv(c)
                    if not d:
                        return
                    if t_first is None:
                        t_first = now()
                    buf += d
                    if len(buf) > 1 << 22:
                        return
                if t_first is None:
                    t_first = now()
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                fields = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    fields[k.strip().lower()] = v.strip()
                n = int(fields.get("content-length") or 0)
                while len(buf) < n:
                    d = self._recv(c)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                rid = fields.get("x-request-id", "?")
                try:
                    stream = bool(json.loads(body).get("stream"))
                except Exception:
                    stream = False
                if CANARY not in fields.get("authorization", ""):
                    self.findings.add("PROVIDER-KEY-MISSING", "req:" + rid, {"rid": rid, "fields": sorted(fields)})
                if self.replay is not None:
                    plan = self.replay(rid, stream)
                else:
                    plan = build_plan(rid, stream, self._rng(), self.clean_share)
                rec = {"rid": rid, "conn": cid, "port": port, "seq": len(self.conns[cid]), "t_arrive": t_first,
                       "plan": plan.describe(), "wire": plan.wire[:KEEP_BYTES], "wire_tail": plan.wire[-4096:], "stray": plan.stray[1] if plan.stray else None,
                       "stray_pre_peek": None, "stray_post_peek": None, "t_stray": None, "pending_rid": None, "stream": stream,
                       "prev_rid": prev["rid"] if prev else None, "buffered_before": bool(buf)}
                with self.lock:
                    self.records[rid].append(rec)
                    self.conns[cid].append(rid)
                    self.answers += 1
                    for m in plan.muts:
                        self.mut_counts[m] += 1
                if prev is not None and prev.get("expect_no_more"):
                    self.unfinished.append(("+".join(sorted(prev["plan"]["mutations"])), {
                        "previous_rid": prev["rid"], "previous_plan": prev["plan"],
                        "previous_upstream_bytes": short(prev["wire"]), "new_rid": rid,
                        "note": "turnout sent a request on a connection whose previous answer was unfinished, "
                                "said Connection: close / HTTP/1.0, or was refused"}))
                prev = rec
                if not self._deliver(c, plan, rec):
                    return
                if plan.end == "keep":
                    continue
                if plan.end == "hang":
                    rec["expect_no_more"] = True
                    deadline = now() + MAX_PLAN_S
                    while now() < deadline and not self.stopping.is_set():
                        r, _, _ = select.select([c], [], [], 0.2)
                        if r:
                            if self._peek(c):
                                break          # a request: parse and record it (REQUEST-ON-UNFINISHED-CONNECTION)
                            return             # closed or reset by turnout: fine
                    else:
                        return
                    continue
                self.stopping.wait(plan.linger)
                if plan.end == "reset":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
        except Exception:
            self.log("upstream thread error: " + traceback.format_exc())
        finally:
            c.close()

    def _recv(self, c):
        while not self.stopping.is_set():
            try:
                return c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return b""
        return b""

    @staticmethod
    def _pending_rid(c):
        """The x-request-id of a request already waiting, unread, on C."""
        try:
            data = c.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return None
        m = re.search(rb"\r\nx-request-id: *([^\r\n]*)", data, re.I)
        return m.group(1).decode("latin-1") if m else None

    def _deliver(self, c, plan, rec):
        c.settimeout(10)
        try:
            cuts = sorted(plan.cuts.items())
            off = 0
            for at, pause in cuts:
                if at > off:
                    c.sendall(plan.wire[off:at])
                    off = at
                if pause:
                    if self.stopping.wait(pause):
                        return False
            stray_now = plan.stray is not None and plan.stray[0] == 0.0
            rest = plan.wire[off:]
            if stray_now:
                rec["stray_pre_peek"] = self._peek(c)
                rec["pending_rid"] = self._pending_rid(c) if rec["stray_pre_peek"] else None
                c.sendall(rest + plan.stray[1])
                rec["t_stray"] = now()
                rec["stray_post_peek"] = self._peek(c)
            elif rest:
                c.sendall(rest)
            if plan.stray is not None and not stray_now:
                if self.stopping.wait(plan.stray[0]):
                    return False
                rec["stray_pre_peek"] = self._peek(c)
                rec["pending_rid"] = self._pending_rid(c) if rec["stray_pre_peek"] else None
                c.sendall(plan.stray[1])
                rec["t_stray"] = now()
                rec["stray_post_peek"] = self._peek(c)
            return True
        except OSError:
            return False
        finally:
            c.settimeout(0.2)


# --- findings ----------------------------------------------------------------------------------------------

class Findings:
    def __init__(self, log):
        self.lock = threading.Lock()
        self.by_key = collections.OrderedDict()
        self.log = log

    def add(self, kind, sig, detail):
        key = (kind, sig)
        with self.lock:
            f = self.by_key.get(key)
            if f is None:
                f = self.by_key[key] = {"kind": kind, "signature": sig, "count": 0, "examples": []}
                self.log("FINDING %s [%s]: %s" % (kind, sig, json.dumps(detail, default=repr)[:600]))
            f["count"] += 1
            if len(f["examples"]) < 3:
                f["examples"].append(detail)

    def kinds(self):
        c = collections.Counter()
        with self.lock:
            for f in self.by_key.values():
                c[f["kind"]] += f["count"]
        return c


# --- the client side -----------------------------------------------------------------------------------------

ID_RE = re.compile(rb"fz-[0-9a-f]{4}-\d{7}-[0-9a-f]{8}")
INJ_RE = re.compile(rb"x-fuzz-inj", re.I)


class Reply:
    def __init__(self):
        self.status = None
        self.headers = []          # [(name bytes, value bytes)]
        self.body = b""
        self.error = None          # transport problem, text
        self.framing_error = None  # the raw client's strict parse failed
        self.raw_head = None
        self.elapsed = 0.0
        self.aborted = False


def parse_head(raw):
    lines = raw.split(b"\r\n")
    m = re.match(rb"^HTTP/1\.[01] (\d{3}) [^\x00-\x08\x0a-\x1f\x7f]*$", lines[0])
    if not m:
        raise ValueError("bad status line %r" % lines[0][:200])
    headers, problems = [], []
    for ln in lines[1:]:
        name, sep, value = ln.partition(b":")
        if not sep or not TOKEN.match(name):
            problems.append("bad header line %r" % ln[:200])
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value):
            problems.append("control byte in value %r" % ln[:200])
        headers.append((name, value.strip(b" \t")))
    return int(m.group(1)), headers, problems


def raw_exchange(port, data, abort_after=None, timeout=CLIENT_TIMEOUT_S):
    """One request on a new connection, read strictly: Reply."""
    rep = Reply()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        rep.error = "connect: %s" % e
        return rep
    deadline = now() + timeout
    buf = b""

    def more():
        nonlocal buf
        left = deadline - now()
        if left <= 0:
            raise socket.timeout("client timeout")
        s.settimeout(left)
        d = s.recv(65536)
        if not d:
            raise EOFError("closed by turnout")
        buf += d

    try:
        s.sendall(data)
        if abort_after is not None:
            t_end = now() + abort_after
            s.settimeout(0.05)
            while now() < t_end:
                try:
                    if not s.recv(65536):
                        break
                except socket.timeout:
                    pass
            rep.aborted = True
            return rep
        while b"\r\n\r\n" not in buf:
            more()
        head, buf = buf.split(b"\r\n\r\n", 1)
        rep.raw_head = head
        rep.status, rep.headers, problems = parse_head(head)
        if problems:
            rep.framing_error = "; ".join(problems)
        h = {k.lower(): v for k, v in rep.headers}
        if b"transfer-encoding" in h:
            if h[b"transfer-encoding"].lower() != b"chunked" or b"content-length" in h:
                rep.framing_error = "reply framing headers %r" % rep.headers
            out = b""
            while True:
                while b"\r\n" not in buf:
                    more()
                line, buf = buf.split(b"\r\n", 1)
                if not re.match(rb"^[0-9a-fA-F]+$", line):
                    raise ValueError("bad chunk size line from turnout %r" % line[:100])
                n = int(line, 16)
                if n == 0:
                    while b"\r\n" not in buf:
                        more()
                    if not buf.startswith(b"\r\n"):
                        raise ValueError("trailer in turnout's reply %r" % buf[:200])
                    buf = buf[2:]
                    break
                while len(buf) < n + 2:
                    more()
                if buf[n:n + 2] != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF in turnout's reply")
                out += buf[:n]
                buf = buf[n + 2:]
                rep.body = out
            rep.body = out
        elif b"content-length" in h:
            n = int(h[b"content-length"])
            while len(buf) < n:
                more()
            rep.body, buf = buf[:n], buf[n:]
        elif rep.status in (204, 304) or 100 <= rep.status < 200:
            rep.body = b""
        else:
            try:
                while True:
                    more()
            except EOFError:
                pass
            rep.body = buf
            buf = b""
        if buf:
            rep.framing_error = (rep.framing_error or "") + " bytes after the reply %r" % buf[:200]
    except (socket.timeout, TimeoutError) as e:
        rep.error = "timeout: %s" % e
    except EOFError as e:
        rep.error = "eof: %s (got %d bytes)" % (e, len(buf))
        rep.body = rep.body or buf
    except ConnectionResetError as e:
        rep.error = "reset: %s" % e
    except ValueError as e:
        rep.framing_error = str(e)
    except OSError as e:
        rep.error = "oserror: %s" % e
    finally:
        s.close()
    return rep


def request_bytes(route, rid, stream, extra=b""):
    body = json.dumps({"model": route, "messages": [{"role": "user", "content": "hi " + rid}],
                       "stream": stream}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: turnout\r\nContent-Type: application/json\r\n"
            b"x-request-id: %s\r\nContent-Length: %d\r\n%s\r\n" % (rid.encode(), len(body), extra)) + body


class Client:
    def __init__(self, fz, idx):
        self.fz, self.idx = fz, idx
        self.conn = None
        self.reused = False
        self.rng = random.Random(fz.seed * 1000 + idx)

    def http_client_exchange(self, route, rid, stream):
        rep = Reply()
        body = json.dumps({"model": route, "messages": [{"role": "user", "content": "hi " + rid}], "stream": stream})
        hdrs = {"Content-Type": "application/json", "x-request-id": rid}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.fz.port, timeout=CLIENT_TIMEOUT_S)
                self.reused = False
            was_reused = self.reused
            got_any = False
            try:
                self.conn.request("POST", "/v1/chat/completions", body=body, headers=hdrs)
                r = self.conn.getresponse()
                got_any = True
                rep.status = r.status
                rep.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in r.getheaders()]
                try:
                    rep.body = r.read()
                except http.client.IncompleteRead as e:
                    rep.body = e.partial
                    rep.error = "incomplete read: %r" % e
                    self.conn.close()
                    self.conn = None
                    return rep
                self.reused = True
                if r.will_close:
                    self.conn.close()
                    self.conn = None
                return rep
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.conn.close()
                self.conn = None
                if was_reused and not got_any and attempt == 0 and not self.fz.upstream.records.get(rid):
                    continue            # a keep-alive connection turnout closed as we reused it: once more, fresh
                rep.error = "%s: %s%s" % (type(e).__name__, e, " (reused connection)" if was_reused else "")
                return rep
            except (socket.timeout, TimeoutError) as e:
                self.conn.close()
                self.conn = None
                rep.error = "timeout: %s" % e
                return rep
            except (http.client.HTTPException, OSError) as e:
                self.conn.close()
                self.conn = None
                rep.error = "%s: %s" % (type(e).__name__, e)
                return rep
        return rep

    def run(self):
        while not self.fz.stop.is_set() and now() < self.fz.deadline:
            try:
                self.one()
            except Exception:
                self.fz.log("client error: " + traceback.format_exc())
                time.sleep(0.1)

    def one(self):
        fz = self.fz
        if fz.restarting.is_set() or fz.proc.poll() is not None:
            time.sleep(0.2)                        # turnout is down: the watcher starts it again
            return
        with fz.lock:
            if fz.sent >= fz.max_requests:
                return
            fz.sent += 1
            seq = fz.sent
        rid = "fz-%s-%07d-%08x" % (fz.runtag, seq, self.rng.getrandbits(32))
        stream = self.rng.random() < fz.stream_share
        route = "rf" if self.rng.random() < 0.3 else "r"
        mode = "raw" if self.rng.random() < fz.raw_share else "httpclient"
        fz.issued.add(rid)
        gen = fz.gen
        t0 = now()
        if mode == "raw":
            abort = None
            if self.rng.random() < 0.06:
                abort = self.rng.choice([0.0, 0.05, 0.3, 1.0, 2.5])
            rep = raw_exchange(fz.port, request_bytes(route, rid, stream), abort_after=abort)
        else:
            rep = self.http_client_exchange(route, rid, stream)
        rep.elapsed = now() - t0
        with fz.lock:
            fz.done += 1
            fz.modes[mode] += 1
            fz.statuses[rep.status if not rep.aborted else "aborted"] += 1
        if rep.error:                          # a turnout that is dying (a sanitizer report takes a while)?
            t_end = now() + 2.0
            while now() < t_end and fz.proc.poll() is None:
                time.sleep(0.1)
        if gen != fz.gen or fz.restarting.is_set() or fz.proc.poll() is not None:
            with fz.lock:
                fz.info["replies caught by a turnout restart (not checked)"] += 1
            return
        if not rep.aborted:
            try:
                fz.check(rid, route, stream, mode, rep)
            except Exception:
                fz.log("check error: " + traceback.format_exc())


# --- the checks -----------------------------------------------------------------------------------------------

def lenient_dechunk(data):
    out, i = b"", 0
    while i < len(data):
        j = data.find(b"\n", i)
        if j < 0:
            break
        m = re.match(rb"\s*([0-9a-fA-F]+)", data[i:j])
        if not m:
            break
        n = int(m.group(1), 16)
        if n == 0:
            break
        out += data[j + 1:j + 1 + n]
        i = j + 1 + n
        if data[i:i + 2] == b"\r\n":
            i += 2
        elif data[i:i + 1] == b"\n":
            i += 1
    return out


def traceable(body, recs):
    """BODY (not empty) appears in what the upstream sent for these records (raw, or de-chunked leniently)."""
    probes = [body[:200], body[-200:]]
    for rec in recs:
        raw = rec["wire"] + (rec["stray"] or b"")
        hay = [raw, rec["wire_tail"]]
        k = raw.rfind(b"\r\n\r\n")
        for start in {k, raw.find(b"\r\n\r\n")}:
            if start >= 0:
                hay.append(lenient_dechunk(raw[start + 4:]))
        if all(any(p in h for h in hay) for p in probes):
            return True
    return False


def sse_check(body):
    """Problems with how a relayed SSE stream ends: (kind, text) or None; 'no-terminator' is returned as such."""
    idx = body.find(b"event: error")
    if idx >= 0:
        before = body[:idx]
        if before and not before.endswith((b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n", b"\r\n\n")):
            return ("PARTIAL-EVENT-BEFORE-ERROR", "bytes before the error event: %r" % before[-200:])
        rest = body[idx:]
        m = re.match(rb"event: error\r?\ndata: (.*?)\r?\n\r?\n", rest, re.S)
        if not m:
            return ("BAD-ERROR-EVENT", "error event not framed: %r" % rest[:300])
        try:
            err = json.loads(m.group(1).decode("utf-8"))
            assert isinstance(err, dict) and isinstance(err.get("error"), dict) and "code" in err["error"]
        except Exception:
            return ("BAD-ERROR-EVENT", "error event data is not the error object: %r" % m.group(1)[:300])
        if rest[m.end():].strip():
            return ("DATA-AFTER-ERROR-EVENT", "after the error event: %r" % rest[m.end():][:300])
        return None
    if re.search(rb"data: \[DONE\](\r\n|\n|\r)(\r\n|\n|\r)$", body):
        return None
    return ("no-terminator", None)


def error_body_ok(body):
    try:
        doc = json.loads(body.decode("utf-8"))
    except Exception:
        return False
    e = doc.get("error") if isinstance(doc, dict) else None
    return isinstance(e, dict) and isinstance(e.get("message"), str) and "type" in e and "code" in e


class Fuzzer:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
        self.runtag = "%04x" % random.Random(self.seed).randrange(1 << 16)
        self.outdir = args.out
        os.makedirs(self.outdir, exist_ok=True)
        self.logf = open(os.path.join(self.outdir, "run.log"), "a", buffering=1)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = self.done = 0
        self.issued = set()
        self.modes = collections.Counter()
        self.statuses = collections.Counter()
        self.info = collections.Counter()      # explained oddities, counted but not findings
        self.cross_events = []
        self.gen = 0
        self.restarting = threading.Event()
        self.err_paths = []
        self.max_requests = args.max_requests
        self.stream_share = args.stream_share
        self.raw_share = args.raw_share
        self.findings = Findings(self.log)
        self.proc = None

    def log(self, msg):
        line = "%s %s" % (time.strftime("%H:%M:%S"), msg)
        with self.lock:
            self.logf.write(line + "\n")
        if self.args.verbose or msg.startswith(("FINDING", "==")):
            print(line, flush=True)

    # turnout

    def start_turnout(self):
        d = tempfile.mkdtemp(prefix="turnout-fuzz-", dir=self.outdir)
        self.port, self.admin_port = harness.free_port(), harness.free_port()
        providers = [{"name": "fz%d" % i, "base_url": "http://127.0.0.1:%d/v1" % p, "api_key_env": "FUZZ_KEY",
                      "models": [{"name": "m"}]} for i, p in enumerate(self.upstream.ports)]
        seed = {"providers": providers, "routers": [], "routes": [
            {"name": "r", "strategy": "fallback", "retry": {"max_429_retries": 0, "retry_after_cap_s": 1},
             "targets": [{"provider": "fz0", "model": "m"}]},
            {"name": "rf", "strategy": "fallback", "retry": {"max_429_retries": 1, "retry_after_cap_s": 1},
             "targets": [{"provider": "fz0", "model": "m"}, {"provider": "fz1", "model": "m"}]}]}
        cfg = {"listen": "127.0.0.1:%d" % self.port, "workers": self.args.workers, "data_dir": os.path.join(d, "data"),
               "require_key": False, "admin": {"listen": "127.0.0.1:%d" % self.admin_port, "key_env": "TURNOUT_ADMIN_KEY"},
               "limits": {"max_body_bytes": 1048576, "shutdown_grace_s": 2, "idle_timeout_s": 60},
               "store": {"map_size_mb": 64},
               "upstream": {"first_byte_s": FIRST_BYTE_S, "idle_s": IDLE_S, "total_s": TOTAL_S, "connect_ms": 2000,
                            "cooldown_after": 1000, "cooldown_s": 1},
               "log": {"level": "warn", "access": "stdout"}, "seed": os.path.join(d, "seed.json")}
        if self.args.client != "native":
            cfg["upstream"]["client"] = self.args.client
        with open(os.path.join(d, "seed.json"), "w") as f:
            json.dump(seed, f)
        self.config_path = os.path.join(d, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=1)
        env = dict(os.environ, TURNOUT_ADMIN_KEY=ADMIN_KEY, FUZZ_KEY=CANARY,
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1"),
                   UBSAN_OPTIONS=os.environ.get("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1"))
        suffix = "" if self.gen == 0 else ".%d" % self.gen
        self.err_path = os.path.join(self.outdir, "turnout.err" + suffix)
        self.out_path = os.path.join(self.outdir, "turnout.access.log" + suffix)
        self.err_paths.append(self.err_path)
        self.proc = subprocess.Popen([self.args.binary, "-c", self.config_path], stdout=open(self.out_path, "wb"),
                                     stderr=open(self.err_path, "wb"), env=env, start_new_session=True)
        self.log("== turnout pid %d on port %d (%s client, %s), upstreams %s, config %s" % (
            self.proc.pid, self.port, self.args.client, self.args.binary, self.upstream.ports, self.config_path))
        deadline = now() + 15
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("turnout exited at start: " + open(self.err_path).read()[-2000:])
            if self.healthz(1) == 200:
                return
            time.sleep(0.1)
        raise RuntimeError("turnout did not answer /healthz")

    def healthz(self, timeout):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            c.close()

    def watch(self):
        fails = 0
        while not self.stop.wait(1.0):
            if self.proc.poll() is not None:
                self.turnout_died()
                if self.gen > self.args.max_restarts or self.stop.is_set():
                    self.stop.set()
                    return
                continue
            st = self.healthz(5)
            if st != 200:
                fails += 1
                if fails >= 3:
                    self.findings.add("HEALTHZ-FAIL", "3 in a row", {"status": st, "t": time.strftime("%H:%M:%S")})
            else:
                fails = 0

    def turnout_died(self):
        """Records the death with the answers in flight just before it, and starts a new turnout."""
        self.restarting.set()
        t_dead = now()
        err = open(self.err_path, "rb").read().decode("utf-8", "replace")
        with self.upstream.lock:
            recent = [r for recs in self.upstream.records.values() for r in recs if t_dead - r["t_arrive"] < 3.0]
        recent.sort(key=lambda r: r["t_arrive"])
        suspects = [{"rid": r["rid"], "conn": r["conn"], "seq_on_conn": r["seq"], "plan": r["plan"],
                     "s_before_death_seen": round(t_dead - r["t_arrive"], 3), "upstream_bytes": short(r["wire"], 600)}
                    for r in recent[-40:]]
        hits = [m for m in SAN_MARKERS if m in err]
        sig = "exit %s%s" % (self.proc.returncode, " " + ",".join(hits) if hits else "")
        i = min([err.find(m) for m in hits] or [max(0, len(err) - 4000)])
        self.findings.add("TURNOUT-DIED", sig, {"exit": self.proc.returncode, "stderr": err[max(0, i - 200):i + 5000],
                                                "stderr_file": self.err_path, "suspects_in_flight": suspects})
        self.log("== turnout died (%s): restarting" % sig)
        self.gen += 1
        if self.gen <= self.args.max_restarts and not self.stop.is_set():
            try:
                self.start_turnout()
            except Exception as e:
                self.log("== restart failed: %s" % e)
                self.stop.set()
        self.restarting.clear()

    def stop_turnout(self):
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.findings.add("SHUTDOWN-HANG", "SIGTERM", {"note": "turnout did not exit 20 s after SIGTERM"})
                self.proc.kill()
                rc = self.proc.wait()
        for path in self.err_paths:
            err = open(path, "rb").read().decode("utf-8", "replace")
            hits = [m for m in SAN_MARKERS if m in err]
            if hits:
                i = min(err.find(m) for m in hits)
                self.findings.add("SANITIZER", ",".join(hits), {"file": path, "report": err[max(0, i - 200):i + 6000]})
        if rc not in (0,):
            self.findings.add("EXIT-CODE", str(rc), {"exit": rc, "stderr_tail": err[-3000:]})
        return rc

    # the checks

    def upstream_view(self, rid):
        with self.upstream.lock:
            recs = list(self.upstream.records.get(rid, []))
        return [{"conn": r["conn"], "seq_on_conn": r["seq"], "plan": r["plan"], "upstream_bytes": short(r["wire"]),
                 "stray_bytes": short(r["stray"]), "stray_pre_peek": r["stray_pre_peek"],
                 "stray_post_peek": r["stray_post_peek"]} for r in recs]

    def sig(self, rid):
        with self.upstream.lock:
            recs = self.upstream.records.get(rid, [])
            muts = sorted({m for r in recs for m in r["plan"]["mutations"]})
        return "+".join(muts) or "no-upstream-call"

    def report(self, kind, rid, route, stream, mode, rep, text, sig=None, extra=None):
        detail = {"rid": rid, "route": route, "stream": stream, "client_mode": mode, "status": rep.status,
                  "elapsed_s": round(rep.elapsed, 3), "what": text,
                  "reply_headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in rep.headers][:40],
                  "reply_body": short(rep.body, 1200), "transport_error": rep.error,
                  "upstream": self.upstream_view(rid)}
        if extra:
            detail.update(extra)
        self.findings.add(kind, sig if sig is not None else self.sig(rid), detail)

    def check(self, rid, route, stream, mode, rep):
        with self.upstream.lock:
            recs = list(self.upstream.records.get(rid, []))
        muts = {m for r in recs for m in r["plan"]["mutations"]}
        everything = rep.body + b"".join(k + b":" + v for k, v in rep.headers)
        # another request's id anywhere in the reply
        others = sorted({o.decode() for o in ID_RE.findall(everything)} - {rid})
        others = [o for o in others if o in self.issued]
        if others:                 # the root finding: the rest of this reply is someone else's
            with self.lock:
                self.cross_events.append((rid, others[0], route, stream, mode, rep))
            return
        if CANARY.encode() in everything:
            self.report("CANARY-LEAK", rid, route, stream, mode, rep, "the provider key is in the reply")
        if rep.error:
            kind = "HANG" if rep.error.startswith("timeout") else "NO-REPLY" if rep.status is None else "CLIENT-STREAM-CUT"
            self.report(kind, rid, route, stream, mode, rep, rep.error)
            return
        if rep.framing_error:
            self.report("CLIENT-FRAMING", rid, route, stream, mode, rep, rep.framing_error)
        if rep.elapsed > TOTAL_S + SLOW_MARGIN_S:
            self.report("SLOW", rid, route, stream, mode, rep, "reply after %.1f s (total_s %d)" % (rep.elapsed, TOTAL_S),
                        sig="")
        h = {}
        for k, v in rep.headers:
            if (INJ_RE.search(k) or INJ_RE.search(v)) and k.lower().startswith(b"x-fuzz-inj-stray") \
                    and v.decode("latin-1") == rid and len(recs) > 1:
                self.info["own stray bytes answered the same request's next attempt"] += 1
            elif INJ_RE.search(k) or INJ_RE.search(v):
                self.report("HEADER-INJECTION", rid, route, stream, mode, rep, "reply header %r: %r" % (k, v),
                            sig=INJ_RE.sub(b"", k.lower()).decode("latin-1") + " | " + self.sig(rid))
            if not TOKEN.match(k) or re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", v):
                self.report("BAD-REPLY-HEADER", rid, route, stream, mode, rep, "reply header %r: %r" % (k, v))
            h.setdefault(k.lower(), v)
        if h.get(b"x-request-id", b"").decode("latin-1") != rid:
            self.report("WRONG-REQUEST-ID-HEADER", rid, route, stream, mode, rep,
                        "x-request-id %r" % h.get(b"x-request-id"), sig="")
        st = rep.status
        ctype = h.get(b"content-type", b"").lower()
        if st is None or st < 200 or st > 599:
            self.report("BAD-STATUS", rid, route, stream, mode, rep, "status %r" % st)
            return
        if st >= 400:
            if error_body_ok(rep.body):
                try:
                    rep.body.decode("utf-8")
                except UnicodeDecodeError:
                    self.report("BAD-ERROR-BODY", rid, route, stream, mode, rep, "error body not UTF-8")
                return
            relayed = (st < 500 and st != 429 and any(b"%d" % st in r["wire"] for r in recs)
                       and (not rep.body or rid.encode() in rep.body or traceable(rep.body, recs)))
            if relayed:
                self.info["relayed upstream 4xx"] += 1
                return
            if st >= 500 and traceable(rep.body, recs) and rep.body:
                self.report("RELAYED-UPSTREAM-5XX", rid, route, stream, mode, rep, "an upstream 5xx relayed as it came")
                return
            self.report("BAD-ERROR-BODY", rid, route, stream, mode, rep, "%d body is not an OpenAI error" % st)
            return
        # 2xx / 3xx
        if ctype.startswith(b"text/event-stream") and 200 <= st < 300:
            problem = sse_check(rep.body)
            if problem is None:
                return
            kind, text = problem
            if kind != "no-terminator":
                self.report(kind, rid, route, stream, mode, rep, text)
                return
            # ended with neither [DONE] nor an error event: only right when an upstream answer ended cleanly without it
            last = recs[-1] if recs else None
            if last and (last["plan"]["status"] != st or set(last["plan"]["mutations"]) - BENIGN
                         or "sse_no_done" in last["plan"]["mutations"]):
                self.info["stream end without terminator (explained by the mutations)"] += 1
                return
            self.report("STREAM-END-WITHOUT-TERMINATOR", rid, route, stream, mode, rep,
                        "stream ended with neither [DONE] nor an error event; the upstream sent a clean one")
            return
        if rep.body and rid.encode() not in rep.body and not traceable(rep.body, recs):
            self.report("UNTRACEABLE-BODY", rid, route, stream, mode, rep,
                        "a %d whose body is not from this request's upstream answer" % st)

    def cross_chains(self):
        """Cross-answers linked by 'the culprit was itself a victim': the longest such chain and how many there are."""
        victims = {rid: other for rid, other, *_ in self.cross_events}
        lengths = []
        heads = set(victims) - set(victims.values())        # victims whose answer went to no one known
        for h in heads:
            n, cur = 1, h
            while victims.get(cur) in victims and n < 10000:
                cur, n = victims[cur], n + 1
            lengths.append(n)
        return {"victims": len(victims), "chains": len(lengths), "longest": max(lengths) if lengths else 0}

    def classify_cross_answers(self):
        """Each reply that named another request's id: where its bytes came from, and whether HTTP/1.1 could tell."""
        victims = {rid: other for rid, other, *_ in self.cross_events}
        for rid, other, route, stream, mode, rep in self.cross_events:
            with self.upstream.lock:
                culprit = list(self.upstream.records.get(other, []))
                victim = list(self.upstream.records.get(rid, []))
            klass, gap = None, None
            strays = [c for c in culprit if c["stray"] is not None]
            for c in strays:
                if c["pending_rid"] == rid:
                    klass = ("documented: the victim's request was already waiting on the connection when the "
                             "culprit's stray bytes were sent")
            if klass is None:
                for v in victim:
                    for c in strays:
                        if c["conn"] == v["conn"] and c["seq"] < v["seq"]:
                            gap = round(v["t_arrive"] - c["t_stray"], 4) if c["t_stray"] else None
                            if c["stray_pre_peek"]:
                                klass = "documented: a request was already waiting when the stray bytes were sent"
                            elif c["stray_post_peek"]:
                                klass = "race: the victim's request arrived while the stray bytes were being sent"
                            else:
                                klass = ("DEFECT: the stray bytes were on the connection before the victim's "
                                         "request was written")
            if klass is None and other in victims:
                klass = ("cascade: the culprit's own request had been answered by someone else's bytes; its real "
                         "answer, arriving late, went to the next request written on that connection")
            if klass is None and strays and all(c["stray_pre_peek"] for c in strays):
                klass = "documented: a request was already waiting when the stray bytes were sent (victim never read)"
            if klass is None:
                klass = "UNEXPLAINED"
            sig = klass.split(":")[0] + " | culprit " + "+".join(sorted({m for c in culprit for m in c["plan"]["mutations"]}))
            self.report("CROSS-ANSWER", rid, route, stream, mode, rep, "got the answer of %s (%s)" % (other, klass),
                        sig=sig, extra={
                            "other_rid": other, "classification": klass, "culprit_was_victim_of": victims.get(other),
                            "culprit_upstream": [{"conn": c["conn"], "seq_on_conn": c["seq"], "plan": c["plan"],
                                                  "upstream_bytes": short(c["wire"]), "stray_bytes": short(c["stray"]),
                                                  "stray_pre_peek": c["stray_pre_peek"], "pending_rid": c["pending_rid"],
                                                  "stray_post_peek": c["stray_post_peek"], "next_request_after_stray_s": gap}
                                                 for c in culprit]})

    # the run

    def run(self):
        a = self.args
        self.log("== upstream fuzz: client=%s binary=%s duration=%ss max_requests=%d threads=%d seed=%d out=%s" % (
            a.client, a.binary, a.duration, a.max_requests, a.threads, self.seed, self.outdir))
        replay = None
        if a.replay:
            wires = [ast.literal_eval(w) for w in a.replay]
            stray = ast.literal_eval(a.replay_stray) if a.replay_stray else None
            served = [0]

            def replay(rid, stream):
                p = Plan()
                p.muts = ["replay"]
                with self.lock:
                    wire = wires[min(served[0], len(wires) - 1)]
                    served[0] += 1
                p.wire = wire.replace(b"{RID}", rid.encode())
                if stray is not None:
                    p.stray = (a.replay_stray_delay, stray.replace(b"{RID}", rid.encode()))
                p.end = a.replay_end
                return p
        self.upstream = Upstream(2, self.seed, a.clean_share, self.log, self.findings, replay)
        try:
            self.start_turnout()
        except Exception:
            self.upstream.close()
            raise
        t_start = now()
        self.deadline = t_start + a.duration
        watcher = threading.Thread(target=self.watch, daemon=True)
        watcher.start()
        if a.replay:
            for i in range(a.requests):
                rid = "fz-%s-%07d-%08x" % (self.runtag, i, random.getrandbits(32))
                self.issued.add(rid)
                t0 = now()
                rep = raw_exchange(self.port, request_bytes("r", rid, a.replay_stream))
                rep.elapsed = now() - t0
                print("request %s: status %s error %s framing %s elapsed %.2f\n  head %r\n  body %r" % (
                    rid, rep.status, rep.error, rep.framing_error, rep.elapsed, rep.raw_head, rep.body[:2000]))
                self.check(rid, "r", a.replay_stream, "raw", rep)
                time.sleep(a.replay_gap)
        else:
            clients = [Client(self, i) for i in range(a.threads)]
            threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
            for t in threads:
                t.start()
            last = now()
            while any(t.is_alive() for t in threads) and now() < self.deadline + CLIENT_TIMEOUT_S + 10:
                time.sleep(1)
                if now() - last >= 30:
                    last = now()
                    self.log("== %ds: %d replies, %d upstream answers, findings %s" % (
                        now() - t_start, self.done, self.upstream.answers, dict(self.findings.kinds())))
            self.stop.set()
            for t in threads:
                t.join(CLIENT_TIMEOUT_S + 5)
        self.stop.set()
        watcher.join(30)
        elapsed = now() - t_start
        self.classify_cross_answers()
        chains = self.cross_chains()
        victims = {rid for rid, *_ in self.cross_events}
        for sig, detail in self.upstream.unfinished:
            if detail["previous_rid"] in victims:       # turnout had its answer (someone else's bytes): a desync
                self.info["request on a connection whose answer went to another request (cross-answer desync)"] += 1
            else:
                self.findings.add("REQUEST-ON-UNFINISHED-CONNECTION", sig, detail)
        if self.healthz(5) != 200 and self.proc.poll() is None:
            self.findings.add("HEALTHZ-FAIL", "at the end", {})
        time.sleep(0.5)
        if self.proc.poll() is not None:
            self.turnout_died()
        rc = self.stop_turnout()
        self.upstream.close()
        summary = {"client": a.client, "binary": a.binary, "seed": self.seed, "elapsed_s": round(elapsed, 1),
                   "requests_sent": self.sent, "replies_checked": self.done, "client_modes": dict(self.modes),
                   "upstream_answers": self.upstream.answers,
                   "mutated_answers": self.upstream.answers - self.upstream.mut_counts.get("clean", 0),
                   "mutations_applied": sum(v for k, v in self.upstream.mut_counts.items() if k != "clean"),
                   "mutation_counts": dict(self.upstream.mut_counts.most_common()),
                   "statuses": {str(k): v for k, v in self.statuses.most_common()},
                   "explained": dict(self.info), "turnout_exit": rc, "turnout_restarts": self.gen,
                   "cross_answer_chains": chains,
                   "findings": dict(self.findings.kinds()),
                   "rerun": " ".join([sys.executable, os.path.abspath(__file__)] + sys.argv[1:])}
        with open(os.path.join(self.outdir, "findings.json"), "w") as f:
            json.dump({"summary": summary, "findings": list(self.findings.by_key.values())}, f, indent=1, default=repr)
        with open(os.path.join(self.outdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        self.log("== summary " + json.dumps(summary))
        print(json.dumps(summary, indent=1))
        for f in self.findings.by_key.values():
            print("FINDING %-34s x%-5d %s" % (f["kind"], f["count"], f["signature"][:150]))
        return 1 if self.findings.by_key else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="/tmp/fuzz-turnout", help="the turnout to fuzz (copy it: others rebuild)")
    ap.add_argument("--client", default="native", choices=["native", "curl"], help="upstream.client")
    ap.add_argument("--duration", type=float, default=60, help="seconds of sending requests")
    ap.add_argument("--max-requests", type=int, default=200000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="turnout workers")
    ap.add_argument("--stream-share", type=float, default=0.45)
    ap.add_argument("--raw-share", type=float, default=0.3, help="share of requests on raw sockets (else http.client)")
    ap.add_argument("--clean-share", type=float, default=0.3, help="share of answers left unmutated")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--max-restarts", type=int, default=30, help="turnouts started again after one died")
    ap.add_argument("--out", help="results directory (default /tmp/fuzz-results/CLIENT-TIME)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--replay", action="append", help="python bytes literal: an upstream answer ({RID} = the request "
                    "id); repeat it for a sequence (answer n to request n, the last one repeats)")
    ap.add_argument("--replay-stray", help="python bytes literal sent after the answer")
    ap.add_argument("--replay-stray-delay", type=float, default=0.0)
    ap.add_argument("--replay-end", default="keep", choices=["keep", "close", "reset", "hang"])
    ap.add_argument("--replay-stream", action="store_true")
    ap.add_argument("--replay-gap", type=float, default=0.2, help="pause between replayed requests")
    ap.add_argument("--requests", type=int, default=3, help="requests in --replay mode")
    args = ap.parse_args()
    if args.out is None:
        args.out = "/tmp/fuzz-results/%s-%s" % (args.client, time.strftime("%Y%m%d-%H%M%S"))
    args.max_requests = max(1, args.max_requests)
    args.duration = max(1.0, min(args.duration, 3600.0))
    sys.setswitchinterval(0.001)
    http.client._MAXHEADERS = 100000       # turnout may relay an upstream's many headers; not our concern here
    sys.exit(Fuzzer(args).run())


if __name__ == "__main__":
    main()
