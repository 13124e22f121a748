#!/usr/bin/python3
"""turnout's benchmark harness: turnout against nginx reverse proxies, same upstream.

Run through bench/Makefile (`make -C bench`, `make -C bench scale`); standard
library only, for Debian's /usr/bin/python3.

What runs (everything on 127.0.0.1, ephemeral ports, in a temp dir, every
process started here is stopped by PID when the harness exits, however it exits):
  mock    nginx (nginx/mock.conf) answering POST /v1/chat/completions with a fixed
          ~600-byte chat.completion JSON and POST /sse/v1/chat/completions with a
          fixed ~13 KB SSE body (50 chat.completion.chunk events, then [DONE]);
          and, in Anthropic's Messages API (the translated rows), POST /v1/messages
          with a fixed message (id, type, role, model, one text block holding the
          chat.completion's text, stop_reason end_turn, usage) and POST
          /sse/v1/messages with a fixed event stream: message_start,
          content_block_start, ping, 49 content_block_delta text_delta events (the
          49 text pieces of the OpenAI SSE body), content_block_stop, message_delta
          with usage, message_stop; 55 events, ~7 KB (Anthropic's events carry
          less than OpenAI's chunks around the same text). nginx does not branch on
          the request's "stream" flag, so the stream answers are under /sse/.
  nginx-buf  nginx (nginx/proxy-buffered.conf), the baseline of the non-stream
          targets: nginx at its best for non-stream traffic, i.e. its default
          proxy_buffering on; 1 worker, keep-alive pool of 64 upstream
          connections, HTTP/1.1.
  nginx   nginx (nginx/proxy.conf), the same with proxy_buffering off: the
          baseline of the SSE targets (nginx relays a stream as it arrives only
          so), and of the non-stream rows labelled "earlier baseline" (what the
          bench compared with before; kept for comparison with older JSONs).
  turnout BUILD/turnout, 1 worker, require_key false, access log off; route
          bench-chat -> provider base_url http://127.0.0.1:MOCK/v1 and route
          bench-sse -> provider base_url http://127.0.0.1:MOCK/sse/v1 (the
          upstream model names differ from the routes', so turnout splices the
          model into the body as it would in production); route bench-anth-chat
          -> provider protocol anthropic, base_url http://127.0.0.1:MOCK/v1 (so
          POST /v1/messages) and route bench-anth-sse -> protocol anthropic,
          base_url http://127.0.0.1:MOCK/sse/v1: OpenAI requests on those routes
          are translated (src/dialect/openai_to_anthropic.c).
  nginx-tls  nginx (nginx/proxy-tls.conf): nginx-buf's config with its listener
          speaking TLS (listen ... ssl; TLS 1.2 and 1.3, nginx's defaults
          otherwise), and
  turnout-tls  a second turnout as above with "tls": {"cert", "key"}; both
          serve the same files, made in the temp dir with the openssl CLI as
          test/integration/test_tls.py makes its own: a root CA, an
          intermediate, an ECDSA P-256 server certificate for 127.0.0.1 and
          localhost (the chain file holds it and the intermediate). The
          protocol and cipher suite a client with OpenSSL's defaults (wrk's)
          agrees on with each are in the log and the JSON (tls.sessions).
  The servers are pinned to core 1 (taskset -c 1), wrk and this script to core 0
  (taskset -c 0 wrk -t1). wrk scripts are in lua/; their done() prints one JSON
  line (requests, duration, errors incl. status > 399, latency percentiles).

`bench` (the default target), per round (ROUNDS, default 3), each run DURATION
seconds (default 5) after a 1 s warm-up at the same concurrency:
  - direct to the mock, 1 connection, non-stream: p50/p99 (the floor);
  - for nginx-buf, nginx and turnout (their order rotates by round):
      64 connections non-stream: requests/s, CPU us per request, peak RSS;
      64 connections SSE (nginx and turnout): requests/s (whole streams/s),
        CPU us per request;
      1 connection non-stream: p50/p99, and added latency = proxy - direct;
  - turnout, translated (right after turnout's runs above): the same OpenAI
      requests (lua/chat-translated.lua, lua/sse-translated.lua: only the model
      differs) to the Anthropic routes, 64 connections non-stream and SSE:
      requests/s and CPU us per request. Each is reported beside turnout's
      passthrough figure of the same rounds, ratio translated/passthrough of
      the medians (target: CPU per request <= 1.5x passthrough's);
  - TLS, informational (no target): nginx-tls and turnout-tls (their order
      alternates by round), 64 connections non-stream over https, keep-alive
      (wrk opens its 64 connections once per run, so the run's 64 handshakes
      are in the CPU figure, spread over its requests): requests/s, CPU us per
      request, and what TLS adds to each one's plain figure of the rounds
      (turnout-tls - turnout, nginx-tls - nginx-buf).
  Then, once per bench run (after the rounds; "1 run" in the table):
  - system calls per request, non-stream, 64 connections, nginx-buf and
      turnout: `perf stat -e raw_syscalls:sys_enter` plus the
      syscalls:sys_enter_* tracepoints of SYSCALL_NAMES (a per-syscall
      breakdown, in the log and the JSON; "other" = the rest) on the server's
      processes (-p, every thread), after a 1 s warm-up, over SYSCALL_REQUESTS
      (20,000) requests: lua/chat-count.lua stops wrk after that many
      responses. perf starts with its events off and is switched on and off
      through a control FIFO (it acknowledges each), so its start-up is not
      counted. Counted: the span from just before wrk connects to just after
      it closed, so the accepts and closes of its 64 connections are in, and
      so are the < 64 requests still in flight when wrk stopped (< 0.4%).
      Target: turnout <= nginx-buf + 0.5;
  - a 200 KB request body (lua/chat-200k.lua), 8 connections, DURATION s,
      nginx-buf and turnout: CPU us per request (target <= 2x nginx-buf's);
  - heap allocations per request: bench/alloccount.c, built here with cc into
      the temp dir, is an LD_PRELOAD library counting malloc, calloc, realloc,
      reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc
      and free (all threads) into a file it maps (ALLOCCOUNT_FILE), with the
      4 innermost frames of each allocating call's stack. A turnout of its own
      (turnout-alloc; the measured ones are never hooked) serves 4 keep-alive
      connections from this script: 2,000 non-stream requests of warm-up,
      then the counters are read, then exactly 10,000 requests, then read
      again: allocations / request (target 0), frees and bytes per request,
      and the top call stacks (addr2line on turnout, the nearest dynamic
      symbol in Debian's libraries). Then as long again with the connections
      idle, for what allocates without requests (timers): information;
  - two workers: a stack of its own, nothing pinned (mock with 2 workers, so
      it does not limit the proxies; nginx-buf with worker_processes 2;
      turnout with "workers": 2; wrk -t2 on the same 2 cores), 64
      connections non-stream, DURATION s each: requests/s (target turnout >=
      1.0x nginx-buf) and CPU us per request.
  Before the rounds every path is checked once with curl; the translated
  answers must be a chat.completion with the mock's text and finish_reason
  stop, and a stream of chat.completion.chunk events carrying the same text,
  finish_reason stop, ending with data: [DONE].
  CPU per request = delta of utime+stime (/proc/PID/stat, clock ticks) of the
  server's processes over the run (nginx: master + workers; turnout: the process,
  all threads) / requests completed. Peak RSS = the largest sum of VmRSS of those
  processes sampled every 100 ms during the 64-connection non-stream run (MB =
  MiB); the VmRSS sum counts pages nginx's master and worker share twice, so the
  peak PSS (smaps_rollup, shared pages split) is reported beside it.
  Added latency = the proxy's p50 (p99) at 1 connection - the direct p50 (p99)
  of the same round; the median of those differences is reported.
  Targets (TARGETS; medians over the rounds, or the one run): non-stream
  req/s >= 1.0x nginx-buf, SSE req/s >= 1.1x nginx; CPU us per request <=
  nginx-buf's (non-stream), nginx's (SSE); system calls per request <=
  nginx-buf's + 0.5; added p50 at 1 connection <= nginx-buf's; peak RSS <=
  16 MB; 0 allocations per request; 2 workers >= 1.0x nginx-buf with 2
  workers; 200 KB bodies CPU <= 2x nginx-buf's; translated <= 1.5x
  passthrough's CPU. The table prints each with MET / NOT MET (NOT MEASURED
  when perf or cc could not be used: exit status 1). Any run with socket
  errors or status errors makes its figure INVALID and the exit status 1.
  Targets not met are reported, not failures. turnout's passthrough figures
  are compared with the newest earlier bench JSON (older layouts: what they
  lack prints as "-"), nginx's beside them as the control. A run during which other
  processes on the machine used more than 10% of a core (or the hypervisor stole
  as much) is flagged CONTENDED in the output and the JSON (cpu_load): its
  figures may be skewed, rerun on a quiet machine. JSON: results/bench-<UTC>.json.

`scale`:
  - resolve: bench/resolve.sh of the tree BUILD belongs to (1,000,000 routes);
  - streams: STREAMS (10,000) concurrent open SSE streams through turnout, with
    BUILD/mockllm as the upstream streaming one event every 2 s; the client here
    (selectors, non-blocking sockets) opens them, waits until every one has had
    its first event, then reads turnout's VmRSS. RSS per stream = (RSS with them
    open - RSS idle) / streams. Bounded to 60 s. If the hard RLIMIT_NOFILE
    cannot hold 2 fds per stream in turnout (client side + upstream side) and
    cannot be raised, the count is lowered to fit and the report says so;
  - big body: a 200 KB chat body through turnout, nginx-buf and nginx at 8
    connections, ROUNDS runs of DURATION each: requests/s and CPU us per
    request, and the ratios turnout / nginx-buf (the bench's row, measured
    there once) and turnout / nginx.
  JSON: results/scale-<UTC>.json.
"""
import argparse
import datetime
import hashlib
import json
import os
import resource
import select
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HZ = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "1", "0"
CONTENTION_PCT = 10     # a run where other processes took more than this % of a core is flagged
PIN = (os.cpu_count() or 1) >= 2

# what wrk's lua scripts send (chat.lua, sse.lua; *-translated.lua for the Anthropic routes)
CHAT_BODY = b'{"model":"bench-chat","messages":[{"role":"user","content":"Summarise the benchmark in one sentence."}]}'
SSE_BODY = (b'{"model":"bench-sse","messages":[{"role":"user","content":"Summarise the benchmark in one sentence."}],'
            b'"stream":true}')
XL_CHAT_BODY = CHAT_BODY.replace(b'"bench-chat"', b'"bench-anth-chat"')
XL_SSE_BODY = SSE_BODY.replace(b'"bench-sse"', b'"bench-anth-sse"')

TARGETS = {  # met-key: the target as printed ("nginx" = the baseline named in the row)
    "rps_nonstream_64": "turnout >= 1.0x nginx (buffering on)",
    "rps_sse_64": "turnout >= 1.1x nginx (buffering off)",
    "cpu_us_per_req_64": "turnout <= nginx (buffering on)",
    "cpu_us_per_req_sse_64": "turnout <= nginx (buffering off)",
    "syscalls_per_req_64": "turnout <= nginx (buffering on) + 0.5",
    "added_p50_us_1": "turnout <= nginx (buffering on)",
    "peak_rss_mb_64": "turnout <= 16 MB",
    "allocs_per_req": "turnout = 0 (steady state)",
    "rps_nonstream_64_2workers": "turnout >= 1.0x nginx (buffering on)",
    "cpu_us_per_req_200k_body": "turnout <= 2x nginx (buffering on)",
    "translated_cpu_us_per_req_64": "translated <= 1.5x passthrough",
    "translated_cpu_us_per_req_sse_64": "translated <= 1.5x passthrough",
}
TRANSLATED_CPU_MAX = 1.5    # translated CPU per request / passthrough's, at most
METERED_CPU_MAX_US = 2.0    # a key budget and an rpm limit add at most this CPU per request ([budgets])
# The keyed turnout's two callers (secrets as a client sends them; the store
# keeps their SHA-256): one with no budget or limit, one with an rpm limit
# and a budget of its own.
ADMIN_KEY = "tk-benchadmin-0123456789abcdef0123456789abcdef01"   # every turnout's admin API (bootstrap key)
EVENT_STREAMS = 20          # dashboards on /v1/events while the data plane is loaded ([dashboard])
EVENTS_COST_MAX = 0.03      # ... costing the data plane at most this share of its throughput
KEY_PLAIN = "tk-benchplain-0123456789abcdef0123456789abcdef01"
KEY_METERED = "tk-benchmeter-0123456789abcdef0123456789abcdef01"
RPS_NONSTREAM_MIN, RPS_SSE_MIN = 1.0, 1.1    # turnout / nginx req/s, at least
SYSCALLS_SLACK = 0.5        # turnout's system calls per request <= nginx's + this
BIG_BODY_CPU_MAX = 2.0      # 200 KB bodies: turnout's CPU per request / nginx's, at most
RPS_2WORKERS_MIN = 1.0
SYSCALL_REQUESTS = 20000    # requests over which the system calls are counted
ALLOC_REQUESTS, ALLOC_WARMUP, ALLOC_CONNS = 10000, 2000, 4
# the system calls counted one by one beside the total (those this kernel traces)
SYSCALL_NAMES = ("read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg", "sendfile64",
                 "splice", "epoll_wait", "epoll_pwait", "epoll_ctl", "ioctl", "accept4", "accept", "close",
                 "shutdown", "connect", "socket", "setsockopt", "getsockopt", "getsockname", "getpeername",
                 "fcntl", "clock_gettime", "gettimeofday", "futex", "mmap", "munmap", "brk", "madvise", "mprotect",
                 "openat", "newfstatat", "fstat", "pread64", "pwrite64", "lseek", "getrandom", "eventfd2",
                 "timerfd_settime", "getpid", "gettid", "rt_sigprocmask")
ALL_CPUS = "0-%d" % ((os.cpu_count() or 1) - 1)

_procs = []          # every process started here: (name, Popen)


def log(msg):
    print(msg, flush=True)


class Abort(Exception):
    pass


# ---------------------------------------------------------------- processes

def start(name, argv, tmp, cpu=SERVER_CPU, env=None):
    """Starts ARGV pinned to CPU (taskset execs it, so the PID is the server's);
    CPU ALL_CPUS lets it run anywhere (this script itself is pinned to core 0,
    and what it starts would inherit that). ENV: variables added to ours."""
    if PIN and cpu is not None:
        argv = ["taskset", "-c", cpu] + argv
    out = open(os.path.join(tmp, name + ".out"), "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True, env=dict(os.environ, **env) if env else None)
    out.close()
    _procs.append((name, p))
    return p


def stop(p, grace=5.0, group=False):
    """Stops P (SIGTERM, then SIGKILL after GRACE s). GROUP: signal P's whole
    process group instead (P was started in a session of its own, so the group
    is P and what P started, nothing else)."""
    if p.poll() is not None and not group:
        return
    def send(sig):
        try:
            if group:
                os.killpg(p.pid, sig)
            else:
                p.send_signal(sig)
        except ProcessLookupError:
            pass
    send(signal.SIGTERM)
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        p.wait(timeout=5)


def stop_all():
    while _procs:
        name, p = _procs.pop()
        stop(p, group=(name == "resolve.sh"))


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state is [0], ppid
    [1], utime [11], stime [12], cutime [13], cstime [14]); None when PID is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()


def all_stats():
    """(pid, stat_fields) of every process on the machine."""
    for d in os.listdir("/proc"):
        if d.isdigit():
            fl = stat_fields(d)
            if fl is not None:
                yield int(d), fl


def children_of(pid):
    return [p for p, fl in all_stats() if int(fl[1]) == pid]


def ticks(pids, user_only=False):
    """utime + stime (USER_ONLY: utime), in clock ticks, summed over PIDS (each
    whole thread group)."""
    total = 0
    for pid in pids:
        fields = stat_fields(pid)
        if fields is None:
            raise OSError("process %d is gone" % pid)
        total += int(fields[11]) + (0 if user_only else int(fields[12]))
    return total


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_stat():
    """Per-CPU counters from /proc/stat, in ticks: {cpu: {"busy", "softirq", "steal", "idle"}}."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal guest guest_nice
                out[line.split()[0][3:]] = {"busy": v[0] + v[1] + v[2] + v[5] + v[6], "softirq": v[6],
                                            "steal": v[7], "idle": v[3] + v[4]}
    return out


def others_ticks():
    """{pid: utime+stime+cutime+cstime} of every user-space process on the machine
    (kernel threads left out: softirq and kworker time is part of our own traffic)."""
    return {pid: int(fl[11]) + int(fl[12]) + int(fl[13]) + int(fl[14])
            for pid, fl in all_stats() if pid != 2 and fl[1] != "2"}


def others_delta(before, after, ours):
    """CPU ticks used between the snapshots by processes not in OURS (those that
    ended meanwhile are in their parent's cutime/cstime)."""
    return sum(max(0, t - before.get(pid, 0)) for pid, t in after.items() if pid not in ours)


def pss_kb(pids):
    """Proportional set size summed over PIDS: shared pages (libraries, and the
    pages nginx's master and worker share) counted once, unlike the VmRSS sum."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, name, tmp, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    tail = ""
    for f in sorted(os.listdir(tmp)):
        if f.startswith(name) and (f.endswith(".out") or f.endswith(".log") or f.endswith(".err")):
            with open(os.path.join(tmp, f), errors="replace") as fh:
                tail += f"--- {f}\n" + fh.read()[-2000:]
    raise Abort(f"{name} did not start listening on 127.0.0.1:{port} (exit {proc.poll()})\n{tail}")


# ---------------------------------------------------------------- the servers

def mock_bodies():
    """The fixed answers: ~600-byte chat.completion JSON, ~13 KB SSE body."""
    head = ('{"id":"chatcmpl-bench0000000000000000000000","object":"chat.completion","created":1700000000,'
            '"model":"bench-upstream","system_fingerprint":"fp_bench","choices":[{"index":0,"message":'
            '{"role":"assistant","content":"')
    tail = ('"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":17,'
            '"completion_tokens":64,"total_tokens":81}}')
    words = "The benchmark compares turnout with an nginx reverse proxy on the same mock upstream. "
    fill = (words * 8)[:600 - len(head) - len(tail)]
    chat = (head + fill + tail).encode()
    events = []
    for i in range(50):
        delta = '{"role":"assistant","content":""}' if i == 0 else '{"content":"%s"}'
        finish = '"stop"' if i == 49 else "null"
        ev_head = ('data: {"id":"chatcmpl-bench0000000000000000000000","object":"chat.completion.chunk",'
                   '"created":1700000000,"model":"bench-upstream","system_fingerprint":"fp_bench",'
                   '"choices":[{"index":0,"delta":')
        ev_tail = ',"logprobs":null,"finish_reason":%s}]}\n\n' % finish
        if i:
            room = 260 - len(ev_head) - len(ev_tail) - len('{"content":""}')
            delta = delta % (("tok%02d " % i) + ("lorem ipsum " * 20))[:room]
        events.append(ev_head + delta + ev_tail)
    sse = ("".join(events) + "data: [DONE]\n\n").encode()
    return chat, sse


def openai_texts(chat, sse):
    """The assistant's text in the OpenAI bodies: the chat.completion's, and the
    SSE body's content pieces in order (empty ones left out)."""
    text = json.loads(chat)["choices"][0]["message"]["content"]
    pieces = []
    for ev in sse.split(b"\n\n"):
        if ev.startswith(b"data: {"):
            c = json.loads(ev[6:])["choices"][0]["delta"].get("content")
            if c:
                pieces.append(c)
    return text, pieces


def anthropic_bodies(chat, sse):
    """The same answers in Anthropic's Messages API, as the real API writes them:
    a message whose one text block is the chat.completion's text, and an event
    stream whose text_delta events carry the OpenAI SSE body's text pieces, one
    each (so a translated client gets the same text in the same pieces)."""
    text, pieces = openai_texts(chat, sse)
    mid, model = "msg_bench0000000000000000000000", "bench-upstream"

    def usage(out):
        return {"input_tokens": 17, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": out, "service_tier": "standard"}

    def compact(o):
        return json.dumps(o, separators=(",", ":"))

    msg = compact({"id": mid, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": usage(64)}).encode()
    events = [("message_start", {"type": "message_start", "message": {
                  "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                  "stop_reason": None, "stop_sequence": None, "usage": usage(1)}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("ping", {"type": "ping"})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": p}}) for p in pieces]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": 64}}),
               ("message_stop", {"type": "message_stop"})]
    stream = "".join(f"event: {name}\ndata: {compact(d)}\n\n" for name, d in events).encode()
    return msg, stream


def make_tls_files(tmp):
    """The TLS row's certificate, as test/integration/test_tls.py makes its
    own: a root CA, an intermediate it signs and an ECDSA P-256 server
    certificate for 127.0.0.1 and localhost that the intermediate signs, in
    TMP/tls. Returns {"root", "cert" (server certificate + intermediate, one
    chain file: what both servers send), "key"}."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d)

    def openssl(*argv):
        r = subprocess.run(["openssl", *argv], cwd=d, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Abort(f"openssl {argv[0]}: {r.stderr.strip()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(d, "int.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-x509", *ec, "-keyout", "root.key", "-out", "root.crt", "-days", "3",
            "-subj", "/CN=turnout bench root", "-addext", "basicConstraints=critical,CA:true",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=turnout bench intermediate")
    openssl("x509", "-req", "-in", "int.csr", "-CA", "root.crt", "-CAkey", "root.key", "-CAcreateserial",
            "-out", "int.crt", "-days", "3", "-extfile", "int.ext")
    openssl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=turnout bench")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "int.crt", "-CAkey", "int.key", "-CAcreateserial",
            "-out", "srv.crt", "-days", "3", "-extfile", "srv.ext")
    with open(os.path.join(d, "srv-chain.pem"), "w") as f:
        for name in ("srv.crt", "int.crt"):
            with open(os.path.join(d, name)) as g:
                f.write(g.read())
    return {"root": os.path.join(d, "root.crt"), "cert": os.path.join(d, "srv-chain.pem"),
            "key": os.path.join(d, "srv.key")}


def tls_session(port, tls):
    """What a client with OpenSSL's defaults (as wrk's) agrees on with PORT:
    protocol, cipher suite, and the certificate chain verified to the root."""
    ctx = ssl.create_default_context(cafile=tls["root"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return {"version": s.version(), "cipher": s.cipher()[0], "verified": True}


def render(template, tmp, name, **kw):
    with open(os.path.join(HERE, "nginx", template)) as f:
        text = f.read()
    kw["TMP"] = tmp
    for k, v in kw.items():
        text = text.replace("@%s@" % k, str(v))
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def nginx_bin():
    for c in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if c and os.access(c, os.X_OK):
            return c
    raise Abort("nginx not found (make -C bench deps installs it)")


class Stack:
    """The mock, the nginx proxy and turnout, started on demand in TMP."""

    def __init__(self, build, tmp, cpu=SERVER_CPU, workers=1):
        """CPU: where the servers run (taskset list); WORKERS: nginx's
        worker_processes and turnout's workers."""
        self.build, self.tmp, self.cpu, self.workers = build, tmp, cpu, workers
        self.nginx = nginx_bin()
        self.servers = {}        # name -> {"port", "proc", "pids"}

    def _nginx(self, name, template, **kw):
        port = free_port()
        # nginx makes the temp subdirectories itself, owned by its worker user
        os.makedirs(os.path.join(self.tmp, f"{name}-tmp"), exist_ok=True)
        conf = render(template, self.tmp, f"{name}.conf", PORT=port, NAME=name, WORKERS=self.workers, **kw)
        # -e: the log nginx writes before it has read the config (not /var/log/nginx)
        argv = [self.nginx, "-c", conf, "-p", self.tmp + "/", "-e", os.path.join(self.tmp, f"{name}-error.log"),
                "-g", "daemon off;"]
        r = subprocess.run(argv + ["-t", "-q"], capture_output=True, text=True)
        if r.returncode != 0:
            raise Abort(f"nginx -t refused {conf}:\n{r.stderr}")
        p = start(name, argv, self.tmp, cpu=self.cpu)
        wait_port(port, p, name, self.tmp)
        end = time.monotonic() + 5
        kids = []
        while len(kids) < self.workers and time.monotonic() < end:
            kids = children_of(p.pid)
            time.sleep(0.02)
        self.servers[name] = {"port": port, "proc": p, "pids": [p.pid] + kids}
        return port

    def start_mock(self):
        chat, sse = mock_bodies()
        amsg, asse = anthropic_bodies(chat, sse)
        self.texts = openai_texts(chat, sse)
        www = os.path.join(self.tmp, "www")
        for rel, data in (("v1/chat/completions", chat), ("sse/v1/chat/completions", sse),
                          ("v1/messages", amsg), ("sse/v1/messages", asse)):
            os.makedirs(os.path.dirname(os.path.join(www, rel)), exist_ok=True)
            with open(os.path.join(www, rel), "wb") as f:
                f.write(data)
        self.mock_sizes = {"chat_bytes": len(chat), "sse_bytes": len(sse), "sse_events": sse.count(b"data: ") - 1,
                           "anthropic_message_bytes": len(amsg), "anthropic_sse_bytes": len(asse),
                           "anthropic_sse_events": asse.count(b"\nevent: ") + 1,
                           "anthropic_sse_text_deltas": asse.count(b"event: content_block_delta\n")}
        return self._nginx("mock", "mock.conf")

    def start_proxy(self, name="nginx", template="proxy.conf"):
        """The nginx proxy: NAME "nginx" with proxy.conf (buffering off), or
        "nginx-buf" with proxy-buffered.conf (nginx's default, buffering on)."""
        return self._nginx(name, template, UPSTREAM_PORT=self.servers["mock"]["port"])

    def start_proxy_buffered(self):
        return self.start_proxy("nginx-buf", "proxy-buffered.conf")

    def start_proxy_tls(self, tls):
        """nginx-tls: proxy-buffered.conf's nginx with listen ... ssl, serving
        TLS (make_tls_files) with the certificate and key turnout-tls has."""
        port = self._nginx("nginx-tls", "proxy-tls.conf", UPSTREAM_PORT=self.servers["mock"]["port"],
                           CERT=tls["cert"], KEY=tls["key"])
        self.servers["nginx-tls"]["tls"] = tls
        return port

    def start_turnout(self, providers, routes, limits=None, name="turnout", env=None, tls=None, seed_more=None):
        """TLS (make_tls_files): its data listener speaks TLS with that certificate.
        SEED_MORE: more collections for its seed (keys, budgets); with keys, a
        request needs one."""
        port, admin = free_port(), free_port()
        data = os.path.join(self.tmp, name + "-data")
        seed = os.path.join(self.tmp, name + "-seed.json")
        with open(seed, "w") as f:
            json.dump({"providers": providers, "routes": routes, **(seed_more or {})}, f)
        cfg = {"listen": f"127.0.0.1:{port}", "workers": self.workers, "data_dir": data,
               "require_key": bool(seed_more and seed_more.get("keys")),
               "admin": {"listen": f"127.0.0.1:{admin}", "key_env": "TURNOUT_BENCH_ADMIN_KEY"},
               "log": {"level": "warn", "access": "off"},
               "seed": seed}
        if limits:
            cfg["limits"] = limits
        if tls:
            cfg["tls"] = {"cert": tls["cert"], "key": tls["key"]}
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        binary = os.path.join(self.build, "turnout")
        p = start(name, [binary, "-c", path], self.tmp, cpu=self.cpu,
                  env=dict(env or {}, TURNOUT_BENCH_ADMIN_KEY=ADMIN_KEY))
        wait_port(port, p, name, self.tmp)
        # /healthz answers once the worker serves
        end = time.monotonic() + 10
        while time.monotonic() < end:
            st, _ct, _b = http_get(port, "/healthz", tls)
            if st == 200:
                break
            time.sleep(0.05)
        else:
            raise Abort(f"{name}: /healthz never answered 200")
        self.servers[name] = {"port": port, "proc": p, "pids": [p.pid], "tls": tls, "admin_port": admin}
        return port

    def url(self, name, path):
        """PATH's URL on server NAME: https:// when it serves TLS."""
        s = self.servers[name]
        return f"{'https' if s.get('tls') else 'http'}://127.0.0.1:{s['port']}{path}"

    def start_turnout_on_mock(self, limits=None, name="turnout", env=None, tls=None):
        m = self.servers["mock"]["port"]
        providers = [
            {"name": "benchmock", "base_url": f"http://127.0.0.1:{m}/v1", "models": [{"name": "bench-upstream"}]},
            {"name": "benchmock-sse", "base_url": f"http://127.0.0.1:{m}/sse/v1",
             "models": [{"name": "bench-upstream"}]},
            # Anthropic's dialect: turnout calls POST {base_url}/messages and translates
            {"name": "benchanth", "protocol": "anthropic", "base_url": f"http://127.0.0.1:{m}/v1",
             "models": [{"name": "bench-upstream"}]},
            {"name": "benchanth-sse", "protocol": "anthropic", "base_url": f"http://127.0.0.1:{m}/sse/v1",
             "models": [{"name": "bench-upstream"}]},
        ]
        routes = [
            {"name": "bench-chat", "endpoint": "chat", "targets": [{"provider": "benchmock", "model": "bench-upstream"}]},
            {"name": "bench-sse", "endpoint": "chat",
             "targets": [{"provider": "benchmock-sse", "model": "bench-upstream"}]},
            {"name": "bench-anth-chat", "endpoint": "chat",
             "targets": [{"provider": "benchanth", "model": "bench-upstream"}]},
            {"name": "bench-anth-sse", "endpoint": "chat",
             "targets": [{"provider": "benchanth-sse", "model": "bench-upstream"}]},
        ]
        return self.start_turnout(providers, routes, limits, name=name, env=env, tls=tls)

    def start_turnout_keys(self, name="turnout-keys"):
        """A turnout whose callers need a key, for the metering rows: its model
        is priced, KEY_PLAIN has no budget or limit, KEY_METERED has an rpm
        limit and a budget of its own (a day's USD), both far above what a
        run spends, so every request is metered and none refused."""
        m = self.servers["mock"]["port"]
        providers = [{"name": "benchmock", "base_url": f"http://127.0.0.1:{m}/v1",
                      "models": [{"name": "bench-upstream", "input_price": 2.5, "output_price": 10}]}]
        routes = [{"name": "bench-chat", "endpoint": "chat",
                   "targets": [{"provider": "benchmock", "model": "bench-upstream"}]}]
        metered_id = "0c8b0ee1-0000-4000-8000-00000000b0d9"
        keys = [{"id": "0c8b0ee1-0000-4000-8000-00000000a0d9", "name": "bench-plain",
                 "secret_hash": hashlib.sha256(KEY_PLAIN.encode()).hexdigest()},
                {"id": metered_id, "name": "bench-metered",
                 "secret_hash": hashlib.sha256(KEY_METERED.encode()).hexdigest(), "rpm": 10000000}]
        budgets = [{"name": "bench-metered-daily", "scope": {"key": metered_id}, "limit_usd": 1000000,
                    "window": "1d"}]
        return self.start_turnout(providers, routes, name=name, seed_more={"keys": keys, "budgets": budgets})

    def stop_server(self, name):
        """Stops one server started here and forgets it."""
        s = self.servers.pop(name)
        stop(s["proc"])
        forget(s["proc"])

    def all_pids(self):
        return [p for s in self.servers.values() for p in s["pids"] if os.path.exists(f"/proc/{p}")]

    def check_alive(self):
        for name, s in self.servers.items():
            if s["proc"].poll() is not None:
                raise Abort(f"{name} exited (status {s['proc'].returncode}); see its output in {self.tmp}")


def http_get(port, path, tls=None):
    """GET PATH on PORT (over TLS trusting TLS["root"] when TLS is given):
    (status, "", body), status 0 when there is no answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            s = ssl.create_default_context(cafile=tls["root"]).wrap_socket(raw, server_hostname="localhost") \
                if tls else raw
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), "", body
    except (OSError, ValueError, IndexError):
        return 0, "", b""


def curl_post(url, body, timeout=10, cacert=None, headers=()):
    """POST BODY with curl (trusting the CA file CACERT for https://; more
    HEADERS, "Name: value"); returns (status, content type, body bytes)."""
    r = subprocess.run(["curl", "-sS", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code} %{content_type}",
                        "-H", "Content-Type: application/json", "--data-binary", "@-",
                        *(["--cacert", cacert] if cacert else []), *[a for h in headers for a in ("-H", h)], url],
                       input=body, capture_output=True)
    out = r.stdout
    i = out.rfind(b"\n")
    meta = out[i + 1:].decode(errors="replace").split(" ", 1)
    status = int(meta[0]) if meta and meta[0].isdigit() else 0
    return status, (meta[1] if len(meta) > 1 else ""), out[:i]


def verify(label, url, stream, cacert=None):
    body = SSE_BODY if stream else CHAT_BODY
    status, ctype, data = curl_post(url, body, cacert=cacert)
    if stream:
        ok = status == 200 and "text/event-stream" in ctype and data.rstrip().endswith(b"data: [DONE]") \
            and b"chat.completion.chunk" in data
    else:
        ok = status == 200 and "application/json" in ctype and b'"chat.completion"' in data
    what = "stream" if stream else "non-stream"
    if not ok:
        raise Abort(f"verification failed: {label} {what} {url}: status {status}, content-type {ctype!r}, "
                    f"body starts {data[:300]!r} ends {data[-80:]!r}")
    log(f"  ok  {label:8} {what:10} {status} {ctype:32} {len(data)} bytes")
    return len(data)


def verify_anthropic_mock(url, stream):
    """The mock's Anthropic answers, once: a message, or an event stream ending with message_stop."""
    status, ctype, data = curl_post(url, XL_SSE_BODY if stream else XL_CHAT_BODY)
    if stream:
        ok = status == 200 and "text/event-stream" in ctype and data.startswith(b"event: message_start\n") \
            and data.rstrip().endswith(b'data: {"type":"message_stop"}')
    else:
        ok = status == 200 and "application/json" in ctype and b'"type":"message"' in data
    what = "stream" if stream else "non-stream"
    if not ok:
        raise Abort(f"verification failed: mock (anthropic) {what} {url}: status {status}, content-type {ctype!r}, "
                    f"body starts {data[:300]!r}")
    log(f"  ok  {'mock':8} {what:10} {status} {ctype:32} {len(data)} bytes (Anthropic Messages API)")
    return len(data)


def verify_translated(url, stream, texts):
    """An OpenAI request to an Anthropic route: the answer must be a real
    chat.completion (the mock's text, finish_reason stop, usage), or a stream
    of chat.completion.chunk events only, carrying the mock's text pieces in
    order, finish_reason stop, ending with data: [DONE]. TEXTS: openai_texts()."""
    status, ctype, data = curl_post(url, XL_SSE_BODY if stream else XL_CHAT_BODY)
    what = "stream" if stream else "non-stream"
    why, extra = None, ""
    try:
        if status != 200:
            why = f"status {status}"
        elif stream:
            events = [e for e in data.split(b"\n\n") if e.strip()]
            if "text/event-stream" not in ctype:
                why = "content-type"
            elif not events or events[-1].strip() != b"data: [DONE]":
                why = "the stream does not end with data: [DONE]"
            else:
                chunks = []
                for e in events[:-1]:
                    if not e.startswith(b"data: "):
                        raise ValueError(f"an event that is not one data line: {e[:80]!r}")
                    chunks.append(json.loads(e[6:]))
                pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c.get("choices")]
                if any(c.get("object") != "chat.completion.chunk" for c in chunks):
                    why = "an event that is not a chat.completion.chunk"
                elif chunks[0]["choices"][0]["delta"].get("role") != "assistant":
                    why = "the first chunk does not name the assistant's role"
                elif [p for p in pieces if p] != texts[1]:
                    why = "the text pieces differ from the mock's"
                elif chunks[-1]["choices"][0].get("finish_reason") != "stop":
                    why = "the last chunk's finish_reason is not stop"
                extra = f", {len(chunks)} chunks + [DONE]"
        else:
            doc = json.loads(data)
            msg = doc["choices"][0]["message"]
            if "application/json" not in ctype or doc.get("object") != "chat.completion":
                why = "not a chat.completion"
            elif msg.get("role") != "assistant" or msg.get("content") != texts[0]:
                why = "the message's role or text differs from the mock's"
            elif doc["choices"][0].get("finish_reason") != "stop":
                why = "finish_reason is not stop"
            elif doc.get("usage", {}).get("completion_tokens") != 64:
                why = "usage.completion_tokens is not the mock's 64"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        why = f"does not parse as the OpenAI dialect ({e})"
    if why:
        raise Abort(f"verification failed: turnout translated {what} {url}: {why}; content-type {ctype!r}, "
                    f"body starts {data[:300]!r} ends {data[-80:]!r}")
    log(f"  ok  {'turnout':8} {what:10} {status} {ctype:32} {len(data)} bytes (translated from Anthropic{extra})")
    return len(data)


# ---------------------------------------------------------------- wrk

_wrk_proc = None
_last_wrk_pid = None


def verify_keys(port):
    """The keyed turnout: no key is refused (401); KEY_PLAIN is answered with
    no x-ratelimit-* headers, KEY_METERED with them (its rpm limit and its
    budget are in force)."""
    import http.client
    seen = {}
    for label, key in (("none", None), ("plain", KEY_PLAIN), ("metered", KEY_METERED)):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        hdrs = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        c.request("POST", "/v1/chat/completions", body=CHAT_BODY, headers=hdrs)
        resp = c.getresponse()
        body = resp.read()
        seen[label] = (resp.status, resp.getheader("x-ratelimit-limit-requests"), body)
        c.close()
    ok = seen["none"][0] == 401 and seen["plain"][0] == 200 and seen["plain"][1] is None \
        and seen["metered"][0] == 200 and seen["metered"][1] == "10000000" \
        and b'"chat.completion"' in seen["metered"][2]
    if not ok:
        raise Abort("verification failed: turnout-keys: " +
                    "; ".join(f"{k}: status {v[0]}, x-ratelimit-limit-requests {v[1]!r}, body {v[2][:200]!r}"
                              for k, v in seen.items()))
    log("  ok  turnout-keys: no key 401; plain key 200 without x-ratelimit-*; metered key 200 with "
        "x-ratelimit-limit-requests 10000000")


def wrk(url, script, conns, duration, cpu=CLIENT_CPU, threads=1, script_args=(), stop_marker=False):
    """One wrk run (CPU: the taskset list it runs on; SCRIPT_ARGS: what the lua
    script's init() gets); returns report.lua's BENCHJSON object.
    STOP_MARKER: the script writes a line BENCHSTOP to stderr once its thread
    has stopped (lua/chat-count.lua); wrk itself would still sleep out its -d
    before reporting, so it gets a SIGINT then (wrk's own "stop now": it joins
    its threads and reports as at the end of -d)."""
    global _wrk_proc, _last_wrk_pid
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "-s",
            os.path.join(HERE, "lua", script), url]
    if script_args:
        argv += ["--"] + [str(a) for a in script_args]
    if PIN:
        argv = ["taskset", "-c", cpu] + argv
    p = _wrk_proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _last_wrk_pid = p.pid
    err_lines = []

    def read_stderr():
        for line in p.stderr:
            err_lines.append(line)
            if line.strip() == "BENCHSTOP":
                try:
                    p.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
    reader = None
    try:
        if stop_marker:
            reader = threading.Thread(target=read_stderr, daemon=True)
            reader.start()
            try:
                p.wait(timeout=duration + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise Abort(f"wrk did not finish in {duration + 30} s: {argv}")
            out = p.stdout.read()
            reader.join(timeout=5)
            err = "".join(err_lines)
        else:
            try:
                out, err = p.communicate(timeout=duration + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise Abort(f"wrk did not finish in {duration + 30} s: {argv}")
    except BaseException:      # interrupted: stop this wrk too
        if p.poll() is None:
            p.kill()
            p.wait()
        raise
    finally:
        _wrk_proc = None
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise Abort(f"wrk printed no BENCHJSON line (exit {p.returncode}): {argv}\n{out}\n{err}")


class RssSampler(threading.Thread):
    def __init__(self, pids, every=0.1):
        super().__init__(daemon=True)
        self.pids, self.every, self.peak, self.peak_pss, self.samples = pids, every, 0, 0, 0
        self.stopped = threading.Event()

    def sample(self):
        self.peak = max(self.peak, rss_kb(self.pids))
        self.peak_pss = max(self.peak_pss, pss_kb(self.pids))
        self.samples += 1

    def run(self):
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(self.every)

    def stop(self):
        self.stopped.set()
        self.join()
        self.sample()


def flags(r):
    """What to say after a run's figures: errors, and load from other processes."""
    out = "" if r["valid"] else "  INVALID " + json.dumps(r["errors"])
    if r.get("contended"):
        out += "  CONTENDED (other processes {other_processes_pct}% of a core, steal {steal_pct}%)".format(
            **r["cpu_load"])
    return out


def measure(stack, name, path, script, conns, duration, sample_rss=False, cpu=CLIENT_CPU, threads=1,
            script_args=()):
    """One measured wrk run against server NAME, after a 1 s warm-up (wrk on
    the taskset list CPU, with THREADS threads; SCRIPT_ARGS for the script)."""
    s = stack.servers[name]
    url = stack.url(name, path)
    warm = wrk(url, script, conns, 1, cpu=cpu, threads=threads, script_args=script_args)
    pids = s["pids"]
    sampler = RssSampler(pids) if sample_rss else None
    if sampler:
        sampler.start()
    every = stack.all_pids()
    c0, o0 = cpu_stat(), others_ticks()
    t0, u0 = ticks(pids), ticks(pids, user_only=True)
    r = wrk(url, script, conns, duration, cpu=cpu, threads=threads, script_args=script_args)
    t1, u1 = ticks(pids), ticks(pids, user_only=True)
    c1, o1 = cpu_stat(), others_ticks()
    other = others_delta(o0, o1, set(every) | {os.getpid(), _last_wrk_pid})
    if sampler:
        sampler.stop()
    stack.check_alive()
    errs = sum(r["errors"].values())
    n = r["requests"]
    out = {
        "server": name, "connections": conns, "script": script, "duration_s": duration,
        "requests": n, "duration_us": r["duration_us"], "errors": r["errors"],
        "warmup_errors": sum(warm["errors"].values()),
        "rps": n / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        "latency_us": r["latency_us"],
        "cpu_ticks": t1 - t0, "cpu_s": (t1 - t0) / HZ,
        "cpu_us_per_req": (t1 - t0) / HZ * 1e6 / n if n else None,
        "cpu_user_us_per_req": (u1 - u0) / HZ * 1e6 / n if n else None,
        "valid": errs == 0 and n > 0,
    }
    # Contention: CPU that other processes on the machine used during the run
    # (any core), and time the hypervisor stole, as % of one core over the run.
    wall = max(r["duration_us"] / 1e6 * HZ, 1)
    load = {"other_processes_pct": 100 * other / wall,
            "steal_pct": 100 * sum(c1[k]["steal"] - c0[k]["steal"] for k in c1) / wall}
    for k in sorted(c1):
        load[f"cpu{k}_busy_pct"] = 100 * (c1[k]["busy"] - c0[k]["busy"]) / wall
        load[f"cpu{k}_softirq_pct"] = 100 * (c1[k]["softirq"] - c0[k]["softirq"]) / wall
    out["cpu_load"] = {k: round(v, 1) for k, v in load.items()}
    out["contended"] = load["other_processes_pct"] > CONTENTION_PCT or load["steal_pct"] > CONTENTION_PCT
    if sampler:
        out["peak_rss_kb"] = sampler.peak
        out["peak_pss_kb"] = sampler.peak_pss
        out["rss_samples"] = sampler.samples
    return out


# ---------------------------------------------------------------- measured once per bench run

def forget(p):
    """Drops P (already stopped) from the processes stop_all() would stop."""
    for i, (_n, q) in enumerate(_procs):
        if q is p:
            del _procs[i]
            return


def perf_bin():
    for c in (shutil.which("perf"), "/usr/bin/perf"):
        if c and os.access(c, os.X_OK):
            return c
    return None


def traced_syscalls(perf):
    """(the names in SYSCALL_NAMES this kernel has a syscalls:sys_enter_NAME
    tracepoint for, None) or (None, why not) when raw_syscalls:sys_enter itself
    is missing. perf mounts tracefs the first time it needs it."""
    def root():
        for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
            if os.path.isdir(os.path.join(d, "events", "raw_syscalls", "sys_enter")):
                return d
        return None
    d = root()
    if d is None:
        subprocess.run([perf, "list", "raw_syscalls:sys_enter"], capture_output=True, timeout=60)
        d = root()
    if d is None:
        return None, "no raw_syscalls:sys_enter tracepoint (tracefs not mounted, or a kernel without ftrace syscalls)"
    return [n for n in SYSCALL_NAMES if os.path.isdir(os.path.join(d, "events", "syscalls", "sys_enter_" + n))], None


class PerfStat:
    """`perf stat` counting EVENTS in the processes PIDS (every thread each has
    when it starts), started with the events disabled and switched on and off
    through a control FIFO (perf answers "ack"), so what is counted is exactly
    the span between enable() and finish(), not perf's own start-up (setting
    up ~40 tracepoints per thread takes perf a second or two)."""

    def __init__(self, perf, events, pids, tmp, tag):
        self.out = os.path.join(tmp, f"perf-{tag}.csv")
        self.tag, self.tmp = tag, tmp
        ctl, ack = os.path.join(tmp, f"perf-{tag}.ctl"), os.path.join(tmp, f"perf-{tag}.ack")
        for f in (ctl, ack):
            os.mkfifo(f)
        # O_RDWR: on Linux, opening a FIFO so does not wait for the other end
        self.ctl = os.open(ctl, os.O_RDWR)
        self.ack = os.open(ack, os.O_RDWR | os.O_NONBLOCK)
        argv = [perf, "stat", "-x,", "-o", self.out, "-D", "-1", "--control", f"fifo:{ctl},{ack}"]
        for e in events:
            argv += ["-e", e]
        argv += ["-p", ",".join(str(p) for p in pids)]
        self.proc = start(f"perf-{tag}", argv, tmp, cpu=CLIENT_CPU)

    def _why(self):
        try:
            with open(os.path.join(self.tmp, f"perf-{self.tag}.out"), errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def command(self, cmd, timeout=60):
        os.write(self.ctl, (cmd + "\n").encode())
        end, got = time.monotonic() + timeout, b""
        while b"ack" not in got:
            if self.proc.poll() is not None:
                raise Abort(f"perf stat exited ({self.proc.returncode}) before acknowledging '{cmd}' (tracepoints "
                            f"need root, or kernel.perf_event_paranoid -1): {self._why()}")
            left = end - time.monotonic()
            if left <= 0:
                raise Abort(f"perf stat did not acknowledge '{cmd}' in {timeout} s")
            if select.select([self.ack], [], [], min(left, 0.2))[0]:
                got += os.read(self.ack, 64)

    def finish(self):
        """Disables the events, stops perf (SIGINT: it writes its counts) and
        returns {event: count, or None when perf could not count it}."""
        self.command("disable")
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        counts = {}
        with open(self.out) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 3 or line.startswith("#"):
                    continue
                try:
                    counts[parts[2]] = int(float(parts[0]))
                except ValueError:
                    counts[parts[2]] = None      # <not counted>, <not supported>
        return counts

    def close(self):
        stop(self.proc)
        forget(self.proc)
        os.close(self.ctl)
        os.close(self.ack)


def count_syscalls(stack, name, path, tmp, perf, names, n=SYSCALL_REQUESTS, conns=64):
    """System calls of server NAME's processes (all threads) over N non-stream
    requests at CONNS connections (lua/chat-count.lua stops wrk after N
    responses), after a 1 s warm-up: perf stat -e raw_syscalls:sys_enter, and
    the syscalls:sys_enter_* of NAMES one by one. Includes the accepts and
    closes of wrk's CONNS connections; at most CONNS - 1 requests the server
    answered after wrk had its N are counted as syscalls but not as requests."""
    s = stack.servers[name]
    url = f"http://127.0.0.1:{s['port']}{path}"
    wrk(url, "chat.lua", conns, 1)
    time.sleep(0.3)          # the warm-up's connections closed
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{x}" for x in names]
    ps = PerfStat(perf, events, s["pids"], tmp, name)
    try:
        ps.command("enable")
        t0 = time.monotonic()
        r = wrk(url, "chat-count.lua", conns, 60, script_args=(n,), stop_marker=True)
        wall = time.monotonic() - t0
        time.sleep(0.1)      # the server sees the connections close
        counts = ps.finish()
    finally:
        ps.close()
    stack.check_alive()
    done = r["requests"]
    total = counts.get("raw_syscalls:sys_enter")
    by = {x: counts.get(f"syscalls:sys_enter_{x}") for x in names}
    known = sum(v for v in by.values() if v)
    errs = sum(r["errors"].values())
    return {
        "server": name, "tool": "perf stat -e raw_syscalls:sys_enter (+ syscalls:sys_enter_*) -p PIDS",
        "pids": s["pids"], "connections": conns, "requests_asked": n, "requests": done, "errors": r["errors"],
        "wall_s": round(wall, 2), "syscalls": total,
        "per_req": total / done if total is not None and done else None,
        "by_syscall": {x: v for x, v in by.items() if v},
        "per_req_by_syscall": {x: round(v / done, 3) for x, v in sorted(by.items(), key=lambda kv: -(kv[1] or 0))
                               if v and done},
        "other": total - known if total is not None else None,
        "not_traced_here": [x for x in SYSCALL_NAMES if x not in names],
        "valid": errs == 0 and done >= n and total is not None,
    }


def syscall_breakdown(res):
    """'readv 1.00, writev 1.00, ...' for the log."""
    parts = [f"{k} {v:.2f}" for k, v in res["per_req_by_syscall"].items() if v >= 0.01]
    if res["other"] and res["requests"]:
        parts.append(f"other {res['other'] / res['requests']:.2f}")
    return ", ".join(parts)


ALLOC_COUNTERS = ("malloc", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign",
                  "valloc", "pvalloc", "free", "free_null", "bytes", "sites_dropped")   # alloccount.c's enum
ALLOC_CALLS = ALLOC_COUNTERS[:9]
ALLOC_MAGIC = 0x544e434f4c4c41


def build_alloccount(tmp):
    """Compiles alloccount.c into TMP; returns (path of the .so, None) or (None, why not)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler (cc) to build bench/alloccount.c"
    so = os.path.join(tmp, "alloccount.so")
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", so, os.path.join(HERE, "alloccount.c")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return None, "cc failed on bench/alloccount.c: " + r.stderr[-800:]
    return so, None


def read_alloc_counts(path):
    """alloccount.so's counters file: ({counter: n}, {call stack (a tuple of
    return addresses, innermost first): allocating calls from there})."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 64:
        raise Abort(f"{path}: not alloccount.so's counters (LD_PRELOAD did not take?)")
    magic, version, ncount, nsites, depth = struct.unpack_from("<5Q", data)
    if magic != ALLOC_MAGIC or version != 2 or ncount != len(ALLOC_COUNTERS):
        raise Abort(f"{path}: not alloccount.so's counters (magic {magic:#x}, version {version}, {ncount} counters)")
    counts = dict(zip(ALLOC_COUNTERS, struct.unpack_from(f"<{ncount}Q", data, 64)))
    words = struct.unpack_from(f"<{nsites * (depth + 1)}Q", data, 64 + 8 * ncount)
    sites = {}
    for i in range(nsites):
        e = words[i * (depth + 1):(i + 1) * (depth + 1)]
        if e[depth]:
            sites[tuple(pc for pc in e[:depth] if pc)] = e[depth]
    return counts, sites


def read_maps(pid):
    """The file-backed mappings of PID: [(start, end, file offset, path)]."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi, int(parts[2], 16), parts[5].strip()))
    return out


def resolve_sites(maps, addrs):
    """{return address: "function (dir/file:line)" or "function [module]"}:
    addr2line on the module's file. turnout has -g; Debian's libraries have no
    .symtab (their debug symbols are packaged apart), so what addr2line names
    there is the nearest exported symbol before the address, which may be the
    wrong function (a static one after it): such names get a "~" in front."""
    by_mod = {}
    names = {}
    for a in addrs:
        for lo, hi, off, path in maps:
            if lo <= a < hi:
                by_mod.setdefault(path, []).append((a, a - lo + off))
                break
        else:
            names[a] = f"{a:#x} (no mapping)"
    for path, items in by_mod.items():
        mod = os.path.basename(path)
        try:       # a return address: the call is the instruction before it
            lines = subprocess.run(["addr2line", "-f", "-C", "-e", path] + ["%x" % (rel - 1) for _, rel in items],
                                   capture_output=True, text=True, timeout=60).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            lines = []
        syms = None
        try:
            has_symtab = " .symtab " in subprocess.run(["readelf", "-S", "-W", path], capture_output=True,
                                                        text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            has_symtab = False
        for i, (a, rel) in enumerate(items):
            fn, loc = (lines[2 * i], lines[2 * i + 1]) if len(lines) >= 2 * i + 2 else ("??", "??:0")
            if fn == "??":
                if syms is None:
                    syms = dynamic_symbols(path)
                best = None
                for sa, sn in syms:
                    if sa <= rel:
                        best = (sa, sn)
                    else:
                        break
                fn = f"~{best[1]}+{rel - best[0]:#x}" if best else "??"
            elif not has_symtab and loc.startswith("??"):     # no debug information either
                fn = "~" + fn
            if not loc.startswith("??"):      # debug information (turnout's -g): the source line
                names[a] = f"{fn} ({'/'.join(loc.split(' ')[0].split('/')[-2:])})"
            else:
                names[a] = f"{fn} [{mod}{'' if fn != '??' else f'+{rel:#x}'}]"
    return names


def dynamic_symbols(path):
    """[(address, name)] of PATH's defined dynamic function symbols, sorted."""
    try:
        out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    syms = []
    for line in out.splitlines():
        p = line.split()
        if len(p) == 3 and p[1] in "TtWi":
            syms.append((int(p[0], 16), p[2]))
    return sorted(syms)


def parse_response(buf):
    """(length, status) of the first whole HTTP/1.1 response in BUF
    (Content-Length or chunked), or None while it is incomplete."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    head = buf[:i].split(b"\r\n")
    status = int(head[0].split()[1])
    clen, chunked = 0, False
    for h in head[1:]:
        k, _, v = h.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            clen = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    pos = i + 4
    if not chunked:
        return (pos + clen, status) if len(buf) >= pos + clen else None
    while True:
        j = buf.find(b"\r\n", pos)
        if j < 0:
            return None
        size = int(buf[pos:j].split(b";")[0], 16)
        pos = j + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)     # no trailers: the empty line right here
            return (end + 4, status) if end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


class KeepAliveClient:
    """CONNS keep-alive connections to 127.0.0.1:PORT, each with one request
    (POST /v1/chat/completions carrying BODY, as wrk sends it) in flight at a
    time: a client that sends an exact number of requests, and always over the
    same connections (so no connection is opened or closed while counting)."""

    def __init__(self, port, body, conns):
        self.req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        self.socks = []
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.socks.append(s)

    def run(self, total, deadline):
        """Sends TOTAL requests; returns (responses, non-200 responses)."""
        sel = selectors.DefaultSelector()
        bufs = {}
        sent = done = bad = 0
        try:
            for s in self.socks:
                if sent < total:
                    if s.send(self.req) != len(self.req):
                        raise Abort("a short send on an idle keep-alive connection")
                    sent += 1
                    sel.register(s, selectors.EVENT_READ)
                    bufs[s] = b""
            while done < sent:
                if time.monotonic() > deadline:
                    raise Abort(f"keep-alive client: {done} of {total} answers before the deadline")
                for key, _mask in sel.select(0.5):
                    s = key.fileobj
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise Abort(f"the server closed a keep-alive connection after {done} answers")
                    bufs[s] += chunk
                    got = parse_response(bufs[s])
                    if got is None:
                        continue
                    bufs[s] = bufs[s][got[0]:]
                    done += 1
                    bad += got[1] != 200
                    if sent < total:
                        if s.send(self.req) != len(self.req):
                            raise Abort("a short send on a keep-alive connection")
                        sent += 1
        finally:
            sel.close()
        return done, bad

    def close(self):
        for s in self.socks:
            s.close()


def count_allocations(stack, tmp, so):
    """Heap allocations per request in a turnout of its own (the one measured
    for throughput is never hooked) started with LD_PRELOAD=alloccount.so, on
    the same mock: ALLOC_CONNS keep-alive connections send ALLOC_WARMUP
    non-stream requests (warm-up: upstream connections, caches), then exactly
    ALLOC_REQUESTS more; the counters are read before and after. Then the
    same time again with the connections open and idle, for the allocations
    that happen without requests (timers): information."""
    counts_file = os.path.join(tmp, "alloccount.counts")
    name = "turnout-alloc"
    port = stack.start_turnout_on_mock(name=name, env={"LD_PRELOAD": so, "ALLOCCOUNT_FILE": counts_file})
    pid = stack.servers[name]["pids"][0]
    try:
        verify(name, f"http://127.0.0.1:{port}/v1/chat/completions", False)
        read_alloc_counts(counts_file)       # the preload took
        client = KeepAliveClient(port, CHAT_BODY, ALLOC_CONNS)
        try:
            deadline = time.monotonic() + 120
            wdone, wbad = client.run(ALLOC_WARMUP, deadline)
            c0, k0 = read_alloc_counts(counts_file)
            t0 = time.monotonic()
            done, bad = client.run(ALLOC_REQUESTS, deadline)
            t1 = time.monotonic()
            c1, k1 = read_alloc_counts(counts_file)
            time.sleep(t1 - t0)
            c2, _ = read_alloc_counts(counts_file)
            maps = read_maps(pid)
        finally:
            client.close()
        stack.check_alive()
    finally:
        stack.stop_server(name)
    delta = {k: c1[k] - c0[k] for k in ALLOC_COUNTERS}
    allocs = sum(delta[k] for k in ALLOC_CALLS)
    idle = sum(c2[k] - c1[k] for k in ALLOC_CALLS)
    sites = sorted(((st, k1[st] - k0.get(st, 0)) for st in k1 if k1[st] > k0.get(st, 0)), key=lambda x: -x[1])[:60]
    names = resolve_sites(maps, sorted({pc for st, _ in sites for pc in st}))
    merged = {}      # stacks that read the same once resolved (several calls on one line, say): summed
    for st, c in sites:
        key = tuple(names.get(pc, hex(pc)) for pc in st)
        merged[key] = merged.get(key, 0) + c
    sites = sorted(merged.items(), key=lambda x: -x[1])[:25]
    return {
        "tool": "LD_PRELOAD bench/alloccount.c (malloc, calloc, realloc, reallocarray, posix_memalign, "
                "aligned_alloc, memalign, valloc, pvalloc, free; all threads)",
        "connections": ALLOC_CONNS, "warmup_requests": wdone, "warmup_non_200": wbad,
        "requests": done, "non_200": bad, "seconds": round(t1 - t0, 2),
        "allocations": allocs, "allocs_per_req": allocs / done if done else None,
        "frees_per_req": delta["free"] / done if done else None,
        "bytes_per_req": delta["bytes"] / done if done else None,
        "by_call": delta,
        "allocations_idle_same_time": idle,
        "top_sites": [{"stack": list(st), "calls": c, "per_req": round(c / done, 3) if done else None}
                      for st, c in sites],
        "sites_dropped": delta["sites_dropped"],
        "valid": done == ALLOC_REQUESTS and bad == 0 and wbad == 0,
    }


BIG_BODY = ('{"model":"bench-chat","messages":[{"role":"user","content":"'
            + ("Summarise the benchmark in one sentence. " * 5000)[:204800] + '"}]}').encode()   # = chat-200k.lua's


def big_body_runs(stack, names, rounds, duration, conns=8):
    """A 200 KB chat body (lua/chat-200k.lua) through the servers NAMES at CONNS
    connections, ROUNDS runs each (order alternating): req/s, CPU us/request."""
    for name in names:
        status, ctype, data = curl_post(f"http://127.0.0.1:{stack.servers[name]['port']}/v1/chat/completions",
                                        BIG_BODY)
        if status != 200 or b'"chat.completion"' not in data:
            raise Abort(f"200 KB body through {name}: status {status}, body {data[:200]!r}")
        log(f"  ok  {name:9} 200 KB body {status} {ctype}")
    runs = {name: [] for name in names}
    for rnd in range(rounds):
        for name in (names if rnd % 2 == 0 else names[::-1]):
            r = measure(stack, name, "/v1/chat/completions", "chat-200k.lua", conns, duration)
            runs[name].append(r)
            log(f"  round {rnd + 1} {name:9} {conns} conns 200 KB body: {r['rps']:8.0f} req/s "
                f"{r['cpu_us_per_req']:7.1f} us cpu/req{flags(r)}")
    m = {name: {"rps": med([r["rps"] for r in rs if r["valid"]]),
                "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rs if r["valid"]])} for name, rs in runs.items()}
    return {"body_bytes": len(BIG_BODY), "connections": conns, "duration_s": duration, "rounds": rounds,
            "runs": runs, "medians": m, "valid": all(r["valid"] for rs in runs.values() for r in rs),
            "contended_runs": sum(1 for rs in runs.values() for r in rs if r.get("contended"))}


class EventStreams:
    """N open GET /v1/events streams on a turnout's admin port (the dashboards'
    control loop), each read by one thread to its end; opened() checks each
    got its 200 and first comment, alive() that none has ended."""

    def __init__(self, port, n):
        self.socks, self.threads, self.first, self.ended = [], [], [], []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n"
                      .encode())
            self.socks.append(s)
        for s in self.socks:
            t = threading.Thread(target=self._read, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def _read(self, s):
        got = b""
        s.settimeout(None)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                if len(got) < 4096:
                    got += b
                    if b": turnout events" in got and s not in self.first:
                        self.first.append(s)
        except OSError:
            pass
        self.ended.append(s)

    def opened(self, timeout=5.0):
        end = time.monotonic() + timeout
        while len(self.first) < len(self.socks) and time.monotonic() < end:
            time.sleep(0.05)
        return len(self.first) == len(self.socks)

    def alive(self):
        return not self.ended

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=2)


def thread_ticks(pid):
    """utime + stime of each thread of PID by its name (turnout names them:
    turnout-w0.., turnout-admin, turnout-keeper), summed per name."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fl = st[st.rfind(")") + 2:].split()
        out[name] = out.get(name, 0) + int(fl[11]) + int(fl[12])
    return out


def events_cost(stack, d):
    """turnout's non-stream throughput at 64 connections with EVENT_STREAMS
    open /v1/events streams and without, alternating (without, with, with,
    without): what the dashboards' feed costs the data plane. The feed runs
    on the admin thread, on the data plane's core (pinned together): its
    cost is the CPU that thread takes while the streams are open, as a share
    of what the worker used (throughput, which moves by 10% and more from
    run to run here, is shown beside it)."""
    t = stack.servers["turnout"]
    runs = {"without": [], "with": []}
    threads = {"without": [], "with": []}
    streams = None
    try:
        for label in ("without", "with", "with", "without"):
            if label == "with" and streams is None:
                streams = EventStreams(t["admin_port"], EVENT_STREAMS)
                if not streams.opened():
                    raise Abort(f"/v1/events: {len(streams.first)} of {EVENT_STREAMS} streams opened")
            if label == "without" and streams is not None:
                if not streams.alive():
                    raise Abort("/v1/events: a stream ended while the data plane was loaded")
                streams.close()
                streams = None
            before = thread_ticks(t["pids"][0])
            a = measure(stack, "turnout", "/v1/chat/completions", "chat.lua", 64, d)
            after = thread_ticks(t["pids"][0])
            used = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            runs[label].append(a)
            threads[label].append(used)
            log(f"  turnout   64 conn non-stream, {label:7} {EVENT_STREAMS} event streams {a['rps']:9.0f} req/s  "
                f"{a['cpu_us_per_req']:6.1f} us cpu/req; ticks by thread {used}{flags(a)}")
    finally:
        if streams is not None:
            streams.close()
    w = statistics.mean(a["rps"] for a in runs["with"])
    wo = statistics.mean(a["rps"] for a in runs["without"])
    admin = sum(u.get("turnout-admin", 0) for u in threads["with"])
    workers = sum(v for u in threads["with"] for k, v in u.items() if k.startswith("turnout-w"))
    if not workers or not any("turnout-admin" in u for u in threads["with"]):
        raise Abort("the worker and admin threads were not found by name (turnout-w0, turnout-admin)")
    cost = admin / workers
    return {"streams": EVENT_STREAMS, "connections": 64, "runs": runs, "ticks_by_thread": threads,
            "rps_with": w, "rps_without": wo, "rps_ratio": w / wo if wo else None,
            "admin_ticks_with": admin, "worker_ticks_with": workers,
            "cost": cost, "met": cost <= EVENTS_COST_MAX,
            "valid": all(a["valid"] for v in runs.values() for a in v)}


def two_workers(args, tmp):
    """turnout with "workers": 2 against nginx (buffering on) with
    worker_processes 2, non-stream at 64 connections; the mock has 2 workers
    too. Nothing is pinned: the servers, the mock and wrk (2 threads) share
    both cores."""
    stack = Stack(args.build, tmp, cpu=ALL_CPUS, workers=2)
    stack.start_mock()
    stack.start_proxy_buffered()
    stack.start_turnout_on_mock()
    for name in ("nginx-buf", "turnout"):
        verify(name, f"http://127.0.0.1:{stack.servers[name]['port']}/v1/chat/completions", False)
    runs = {}
    for name in ("nginx-buf", "turnout"):
        r = measure(stack, name, "/v1/chat/completions", "chat.lua", 64, args.duration, cpu=ALL_CPUS, threads=2)
        r["server_pids"] = stack.servers[name]["pids"]
        runs[name] = r
        log(f"  {name:9} 2 workers 64 conns non-stream {r['rps']:9.0f} req/s  {r['cpu_us_per_req']:6.1f} us cpu/req"
            f"{flags(r)}")
    stop_all()
    t, n = runs["turnout"], runs["nginx-buf"]
    return {"workers": 2, "connections": 64, "wrk_threads": 2, "pinned": False, "duration_s": args.duration,
            "runs": runs, "ratio_rps": t["rps"] / n["rps"] if n["rps"] else None,
            "valid": t["valid"] and n["valid"]}


# ---------------------------------------------------------------- info

def machine_info(build):
    info = {"cores": os.cpu_count(), "pinned": PIN, "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU,
            "kernel": os.uname().release, "clk_tck": HZ}
    with open("/proc/loadavg") as f:
        info["loadavg_at_end"] = f.read().split()[:3]     # another load on the machine skews everything
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["nginx"] = subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True).stderr.strip()
    except Abort:
        info["nginx"] = None
    w = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    info["wrk"] = (w.stdout + w.stderr).splitlines()[0].strip() if (w.stdout + w.stderr) else None
    t = subprocess.run([os.path.join(build, "turnout"), "--version"], capture_output=True, text=True)
    info["turnout"] = t.stdout.strip() or None
    info["build_dir"] = build
    # the commit of the tree BUILD is in (build/, or a directory under it),
    # and whether that tree had changes to tracked files not yet committed
    commit = dirty = None
    if os.path.isdir(build):
        g = subprocess.run(["git", "-C", build, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        commit = g.stdout.strip() or None
        if commit:
            st = subprocess.run(["git", "-C", build, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True)
            dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    info["turnout_commit"] = commit
    info["turnout_tree_dirty"] = dirty
    return info


def save(kind, doc):
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", f"{kind}-{doc['timestamp']}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return path


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None



def previous_bench(timestamp, rounds, duration, rows, medians):
    """turnout's passthrough figures (ROWS: (label, key, format)) against the
    newest earlier bench JSON in results/, preferring one with the same rounds
    and duration: passthrough must not get slower. nginx's figures of both runs
    (buffering off, and on where the earlier JSON has it) are printed too, as
    the control: when they moved as much, the machine did. Earlier JSONs may
    lack keys (older layouts): those figures print as "-".
    Returns (a dict for the JSON or None, lines to print)."""
    rdir = os.path.join(HERE, "results")
    found = []          # (file, doc), newest first
    for fn in sorted(os.listdir(rdir) if os.path.isdir(rdir) else [], reverse=True):
        if fn.startswith("bench-") and fn.endswith(".json") and fn < f"bench-{timestamp}.json":
            try:
                with open(os.path.join(rdir, fn)) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("medians"), dict) \
                    and isinstance(doc["medians"].get("turnout"), dict):
                found.append((fn, doc))
    if not found:
        return None, []
    same = [x for x in found if (x[1].get("settings") or {}).get("rounds") == rounds
            and (x[1].get("settings") or {}).get("duration_s") == duration]
    fn, prev = (same or found)[0]
    ps = prev.get("settings") or {}
    names = ("turnout", "nginx", "nginx-buf")
    out = {"file": fn, "rounds": ps.get("rounds"), "duration_s": ps.get("duration_s"),
           "same_settings": bool(same), "ratio_now_over_then": {}, "nginx_ratio_now_over_then": {},
           "nginx-buf_ratio_now_over_then": {}}
    for name in names:
        out[name] = {}
    lines = [f"turnout passthrough now vs {fn} ({ps.get('rounds')} rounds of {ps.get('duration_s')} s"
             + ("" if same else f"; this run: {rounds} rounds of {duration} s")
             + "); nginx (buffering off; on) beside it as the control"]

    def num(v, fmt):
        return fmt.format(v) if isinstance(v, (int, float)) else "-"

    for label, key, fmt in rows:
        row = f"  {label:38}"
        for name in names:
            then = (prev["medians"].get(name) or {}).get(key)
            now = (medians.get(name) or {}).get(key)
            if now is None and then is None:
                continue
            ok = isinstance(now, (int, float)) and isinstance(then, (int, float)) and then
            r_ = now / then if ok else None
            out[name][key] = then
            out["ratio_now_over_then" if name == "turnout" else f"{name}_ratio_now_over_then"][key] = r_
            row += f"  {name} now {num(now, fmt):>7} then {num(then, fmt):>7} ({num(r_, '{:.2f}')}x)"
        lines.append(row)
    return out, lines


def format_table(table):
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for i, row in enumerate(table):
        lines.append(" | ".join(c.ljust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return lines


# ---------------------------------------------------------------- bench

PROXIES = ("nginx-buf", "nginx")      # nginx with buffering on (non-stream's best), off (SSE's)
CONFIG_LABEL = {"nginx-buf": "buffering on", "nginx": "buffering off", "nginx-tls": "listen ssl, buffering on"}
# The TLS row: turnout-tls against nginx-tls, the same certificate; no target.
TLS_PAIR = ("nginx-tls", "turnout-tls")
TURNOUT_FOR = {"nginx-tls": "turnout-tls"}    # the turnout a row's nginx is compared with (else "turnout")
TLS_TARGET = "none (informational)"


def run_bench(args, tmp):
    stack = Stack(args.build, tmp)
    log("starting mock nginx, nginx proxies (buffering on and off; on with TLS) and turnout (plain; TLS) "
        "(servers on core %s, wrk on core %s)" % ((SERVER_CPU, CLIENT_CPU) if PIN else ("any", "any")))
    tls = make_tls_files(tmp)
    stack.start_mock()
    stack.start_proxy_buffered()
    stack.start_proxy()
    stack.start_proxy_tls(tls)
    stack.start_turnout_on_mock()
    stack.start_turnout_on_mock(name="turnout-tls", tls=tls)
    stack.start_turnout_keys()
    ports = {k: v["port"] for k, v in stack.servers.items()}
    log("  ports: " + ", ".join(f"{k} {v}" for k, v in ports.items())
        + f"; mock bodies: {stack.mock_sizes}")
    paths = {"mock": ("/v1/chat/completions", "/sse/v1/chat/completions"),
             "nginx": ("/v1/chat/completions", "/sse/v1/chat/completions"),
             "nginx-buf": ("/v1/chat/completions", "/sse/v1/chat/completions"),
             "turnout": ("/v1/chat/completions", "/v1/chat/completions")}
    log("verifying each path once with curl")
    for name in ("mock", "nginx-buf", "nginx", "turnout"):
        ns, ss = paths[name]
        verify(name, f"http://127.0.0.1:{ports[name]}{ns}", False)
        if name != "nginx-buf":
            verify(name, f"http://127.0.0.1:{ports[name]}{ss}", True)
    verify_anthropic_mock(f"http://127.0.0.1:{ports['mock']}/v1/messages", False)
    verify_anthropic_mock(f"http://127.0.0.1:{ports['mock']}/sse/v1/messages", True)
    verify_translated(f"http://127.0.0.1:{ports['turnout']}/v1/chat/completions", False, stack.texts)
    verify_translated(f"http://127.0.0.1:{ports['turnout']}/v1/chat/completions", True, stack.texts)
    verify_keys(ports["turnout-keys"])
    tls_sessions = {}
    for name in TLS_PAIR:
        verify(name, stack.url(name, "/v1/chat/completions"), False, cacert=tls["root"])
        tls_sessions[name] = tls_session(ports[name], tls)
    log("  TLS: " + "; ".join(f"{k} {v['version']} {v['cipher']}" for k, v in tls_sessions.items())
        + " (ECDSA P-256 certificate + intermediate, verified to the root)")

    d = args.duration
    t_start = time.monotonic()
    rounds = []
    servers = ["nginx-buf", "nginx", "turnout"]
    for rnd in range(1, args.rounds + 1):
        r = {"round": rnd}
        log(f"round {rnd}/{args.rounds}")
        r["direct_1"] = measure(stack, "mock", paths["mock"][0], "chat.lua", 1, d)
        log(f"  direct    1 conn  non-stream  p50 {r['direct_1']['latency_us']['p50']} us"
            f"  p99 {r['direct_1']['latency_us']['p99']} us{flags(r['direct_1'])}")
        k = (rnd - 1) % len(servers)
        for name in servers[k:] + servers[:k]:
            ns, ss = paths[name]
            runs = {"nonstream_64": measure(stack, name, ns, "chat.lua", 64, d, sample_rss=True)}
            if name != "nginx-buf":      # SSE through nginx: buffering off only
                runs["sse_64"] = measure(stack, name, ss, "sse.lua", 64, d)
            runs["nonstream_1"] = measure(stack, name, ns, "chat.lua", 1, d)
            r[name] = runs
            a, c = runs["nonstream_64"], runs["nonstream_1"]
            log(f"  {name:9} 64 conn non-stream {a['rps']:9.0f} req/s  {a['cpu_us_per_req']:6.1f} us cpu/req"
                f"  peak rss {a['peak_rss_kb'] / 1024:.1f} MB (pss {a['peak_pss_kb'] / 1024:.1f}){flags(a)}")
            if "sse_64" in runs:
                b = runs["sse_64"]
                log(f"  {name:9} 64 conn SSE        {b['rps']:9.0f} req/s  {b['cpu_us_per_req']:6.1f} us cpu/req"
                    f"{flags(b)}")
            log(f"  {name:9} 1 conn  non-stream  p50 {c['latency_us']['p50']} us  p99 {c['latency_us']['p99']} us"
                f"{flags(c)}")
            if name == "turnout":
                # translated: the same OpenAI requests to the Anthropic routes, right after passthrough's
                xa = measure(stack, name, ns, "chat-translated.lua", 64, d)
                xb = measure(stack, name, ss, "sse-translated.lua", 64, d)
                r["translated"] = {"nonstream_64": xa, "sse_64": xb}
                log(f"  {name:9} 64 conn translated non-stream {xa['rps']:9.0f} req/s  "
                    f"{xa['cpu_us_per_req']:6.1f} us cpu/req{flags(xa)}")
                log(f"  {name:9} 64 conn translated SSE        {xb['rps']:9.0f} req/s  "
                    f"{xb['cpu_us_per_req']:6.1f} us cpu/req{flags(xb)}")
        # TLS, informational: the same non-stream requests over https (keep-alive)
        for name in (TLS_PAIR if rnd % 2 else TLS_PAIR[::-1]):
            a = measure(stack, name, "/v1/chat/completions", "chat.lua", 64, d, sample_rss=True)
            r[name] = {"nonstream_64": a}
            log(f"  {name:11} 64 conn non-stream TLS {a['rps']:9.0f} req/s  {a['cpu_us_per_req']:6.1f} us cpu/req"
                f"  peak rss {a['peak_rss_kb'] / 1024:.1f} MB{flags(a)}")
        # metering: a keyed request, then the same with a key budget and an rpm limit ([budgets])
        # after a run of its own that is not counted (a server's first run after another's is slower), plain,
        # metered, metered, plain, the other way round in even rounds: a drift of the machine over the round
        # weighs on both alike
        r["metering"] = {}
        measure(stack, "turnout-keys", "/v1/chat/completions", "chat-keyed.lua", 64, d, script_args=(KEY_PLAIN,))
        order = (("plain", KEY_PLAIN), ("metered", KEY_METERED), ("metered", KEY_METERED), ("plain", KEY_PLAIN))
        if rnd % 2 == 0:
            order = (order[1], order[0], order[3], order[2])     # metered, plain, plain, metered
        for i, (label, key) in enumerate(order):
            a = measure(stack, "turnout-keys", "/v1/chat/completions", "chat-keyed.lua", 64, d, script_args=(key,))
            r["metering"][f"{label}_{i}"] = a
            log(f"  turnout-keys 64 conn non-stream, {label:7} key {a['rps']:9.0f} req/s  "
                f"{a['cpu_us_per_req']:6.1f} us cpu/req ({a['cpu_user_us_per_req']:5.1f} user){flags(a)}")
        rounds.append(r)
    rounds_s = time.monotonic() - t_start

    # ---- measured once per bench run (each is expensive, or a count that does not need medians)
    once = {}
    t_once = time.monotonic()
    perf = perf_bin()
    log(f"once: system calls per request, non-stream, 64 conns, {SYSCALL_REQUESTS} requests "
        "(perf stat on the server's processes)")
    if not perf:
        once["syscalls"] = {"error": "perf not found (make -C bench deps installs linux-perf)"}
    else:
        names, why = traced_syscalls(perf)
        if names is None:
            once["syscalls"] = {"error": why}
        else:
            once["syscalls"] = {}
            for name in ("nginx-buf", "turnout"):
                try:
                    res = count_syscalls(stack, name, paths[name][0], tmp, perf, names)
                except (Abort, OSError, subprocess.SubprocessError) as e:
                    once["syscalls"] = {"error": f"{name}: {e}"}
                    break
                once["syscalls"][name] = res
                log(f"  {name:9} {res['per_req'] if res['per_req'] is not None else float('nan'):6.2f} syscalls/request "
                    f"over {res['requests']} requests ({syscall_breakdown(res)}){'' if res['valid'] else '  INVALID'}")
    if "error" in once["syscalls"]:
        log(f"  NOT MEASURED: {once['syscalls']['error']}")

    log(f"once: the dashboards' feed: turnout non-stream 64 conns without and with {EVENT_STREAMS} open "
        f"/v1/events streams (without, with, with, without; {d} s each)")
    try:
        once["events_cost"] = events_cost(stack, d)
    except (Abort, OSError) as e:
        once["events_cost"] = {"error": str(e), "valid": False, "met": False}
    if "error" in once["events_cost"]:
        log(f"  NOT MEASURED: {once['events_cost']['error']}")

    log(f"once: 200 KB request bodies, 8 conns, 1 run of {d} s each")
    once["big_body"] = big_body_runs(stack, ("nginx-buf", "turnout"), 1, d)

    log(f"once: heap allocations per request: a turnout of its own with LD_PRELOAD=alloccount.so, "
        f"{ALLOC_CONNS} keep-alive connections, {ALLOC_WARMUP} requests of warm-up, then {ALLOC_REQUESTS}")
    so, why = build_alloccount(tmp)
    if so is None:
        once["allocations"] = {"error": why}
    else:
        try:
            once["allocations"] = count_allocations(stack, tmp, so)
        except (Abort, OSError) as e:
            once["allocations"] = {"error": str(e)}
    al = once["allocations"]
    if "error" in al:
        log(f"  NOT MEASURED: {al['error']}")
    else:
        log(f"  turnout   {al['allocs_per_req']:.2f} allocations/request ({al['allocations']} over {al['requests']} "
            f"requests; {al['frees_per_req']:.2f} frees, {al['bytes_per_req']:.0f} bytes per request; "
            f"{al['allocations_idle_same_time']} while idle as long){'' if al['valid'] else '  INVALID'}")
        log("    where (the 3 innermost frames above malloc & co., caller first; all 4 in the JSON; ~name: the "
            "nearest exported symbol of a library without symbols, maybe not the function):")
        short = {}
        for site in al["top_sites"]:
            k = " < ".join(site["stack"][:3])
            short[k] = short.get(k, 0) + site["calls"]
        for k, c in sorted(short.items(), key=lambda x: -x[1])[:15]:
            log(f"      {c / al['requests']:7.3f}/req  {k}")

    stack.check_alive()
    stop_all()       # the two-worker row runs a stack of its own, on both cores
    log(f"once: 2 workers each, non-stream 64 conns, nothing pinned (servers, mock and wrk -t2 share the 2 cores), "
        f"1 run of {d} s each")
    sub = os.path.join(tmp, "two-workers")
    os.makedirs(sub)
    os.chmod(sub, 0o755)
    once["two_workers"] = two_workers(args, sub)
    once_s = time.monotonic() - t_once

    # ---- per round figures, then medians
    def fig(r, name):
        x, dr = r[name], r["direct_1"]
        out = {}
        if "nonstream_64" in x:
            a = x["nonstream_64"]
            out.update({"rps_nonstream_64": (a["rps"], a["valid"]),
                        "cpu_us_per_req_64": (a["cpu_us_per_req"], a["valid"]),
                        "peak_rss_mb_64": (a["peak_rss_kb"] / 1024, a["valid"]),
                        "peak_pss_mb_64": (a["peak_pss_kb"] / 1024, a["valid"])})
        if "sse_64" in x:
            b = x["sse_64"]
            out.update({"rps_sse_64": (b["rps"], b["valid"]), "cpu_us_per_req_sse_64": (b["cpu_us_per_req"], b["valid"])})
        if "nonstream_1" in x:
            c = x["nonstream_1"]
            ok = c["valid"] and dr["valid"]
            out.update({"p50_us_1": (c["latency_us"]["p50"], c["valid"]),
                        "p99_us_1": (c["latency_us"]["p99"], c["valid"]),
                        "added_p50_us_1": (c["latency_us"]["p50"] - dr["latency_us"]["p50"], ok),
                        "added_p99_us_1": (c["latency_us"]["p99"] - dr["latency_us"]["p99"], ok)})
        return out

    per_round = {name: [fig(r, name) for r in rounds] for name in ("turnout",) + PROXIES + TLS_PAIR}
    medians, valid = {}, {}
    for name, figs in per_round.items():
        medians[name], valid[name] = {}, {}
        for key in figs[0]:
            medians[name][key] = med([f[key][0] for f in figs if f[key][1]])
            valid[name][key] = all(f[key][1] for f in figs)
    medians["direct"] = {"p50_us_1": med([r["direct_1"]["latency_us"]["p50"] for r in rounds]),
                         "p99_us_1": med([r["direct_1"]["latency_us"]["p99"] for r in rounds])}
    valid["direct"] = all(r["direct_1"]["valid"] for r in rounds)

    # translated (OpenAI client -> Anthropic upstream) beside turnout's passthrough, same rounds
    xkeys = ("rps_nonstream_64", "rps_sse_64", "cpu_us_per_req_64", "cpu_us_per_req_sse_64")

    def xfig(r):
        a, b = r["translated"]["nonstream_64"], r["translated"]["sse_64"]
        return {"rps_nonstream_64": (a["rps"], a["valid"]), "rps_sse_64": (b["rps"], b["valid"]),
                "cpu_us_per_req_64": (a["cpu_us_per_req"], a["valid"]),
                "cpu_us_per_req_sse_64": (b["cpu_us_per_req"], b["valid"])}

    per_round["translated"] = [xfig(r) for r in rounds]
    medians["translated"] = {k: med([f[k][0] for f in per_round["translated"] if f[k][1]]) for k in xkeys}
    valid["translated"] = {k: all(f[k][1] for f in per_round["translated"]) for k in xkeys}
    xt = medians["translated"]
    pt = medians["turnout"]
    ratio_translated = {k: (xt[k] / pt[k] if xt[k] is not None and pt[k] else None) for k in xkeys}
    # the same ratio round by round (each translated run beside the passthrough run of its round)
    ratio_translated_per_round = [
        {k: (x[k][0] / p[k][0] if x[k][1] and p[k][1] and x[k][0] is not None and p[k][0] else None) for k in xkeys}
        for x, p in zip(per_round["translated"], per_round["turnout"])]

    t = medians["turnout"]

    def ratio_to(base):
        # a ratio of differences that are not both positive means nothing: left out
        b = medians[base]
        return {k: (t[k] / b[k] if t[k] is not None and b.get(k) and b[k] > 0 and t[k] >= 0 else None)
                for k in t if k in b}
    ratio = ratio_to("nginx")            # vs buffering off (the only baseline of earlier JSONs)
    ratio_buf = ratio_to("nginx-buf")

    # the figures measured once, as (turnout, nginx, valid)
    sc = once["syscalls"]
    sys_t = sys_n = None
    sys_ok = "error" not in sc
    if sys_ok:
        sys_t, sys_n = sc["turnout"]["per_req"], sc["nginx-buf"]["per_req"]
        sys_ok = sc["turnout"]["valid"] and sc["nginx-buf"]["valid"]
    al = once["allocations"]
    alloc_t = al.get("allocs_per_req")
    alloc_ok = "error" not in al and al["valid"]
    bb = once["big_body"]
    bb_t, bb_n = bb["medians"]["turnout"]["cpu_us_per_req"], bb["medians"]["nginx-buf"]["cpu_us_per_req"]
    bb_rt, bb_rn = bb["medians"]["turnout"]["rps"], bb["medians"]["nginx-buf"]["rps"]
    tw = once["two_workers"]
    tw_t, tw_n = tw["runs"]["turnout"], tw["runs"]["nginx-buf"]
    once_figs = {
        "syscalls_per_req_64": {"turnout": sys_t, "nginx-buf": sys_n, "valid": sys_ok},
        "allocs_per_req": {"turnout": alloc_t, "valid": alloc_ok},
        "cpu_us_per_req_200k_body": {"turnout": bb_t, "nginx-buf": bb_n, "valid": bb["valid"]},
        "rps_200k_body": {"turnout": bb_rt, "nginx-buf": bb_rn, "valid": bb["valid"]},
        "rps_nonstream_64_2workers": {"turnout": tw_t["rps"], "nginx-buf": tw_n["rps"], "valid": tw["valid"]},
        "cpu_us_per_req_64_2workers": {"turnout": tw_t["cpu_us_per_req"], "nginx-buf": tw_n["cpu_us_per_req"],
                                       "valid": tw["valid"]},
    }

    def le(a, b, slack=0.0, factor=1.0):
        return a is not None and b is not None and a <= b * factor + slack

    def ge_ratio(r_, x):
        return r_ is not None and r_ >= x

    nb, n = medians["nginx-buf"], medians["nginx"]
    met = {
        "rps_nonstream_64": ge_ratio(ratio_buf.get("rps_nonstream_64"), RPS_NONSTREAM_MIN),
        "rps_sse_64": ge_ratio(ratio.get("rps_sse_64"), RPS_SSE_MIN),
        "cpu_us_per_req_64": le(t["cpu_us_per_req_64"], nb["cpu_us_per_req_64"]),
        "cpu_us_per_req_sse_64": le(t["cpu_us_per_req_sse_64"], n["cpu_us_per_req_sse_64"]),
        "syscalls_per_req_64": sys_ok and le(sys_t, sys_n, slack=SYSCALLS_SLACK),
        "added_p50_us_1": le(t["added_p50_us_1"], nb["added_p50_us_1"]),
        "peak_rss_mb_64": le(t["peak_rss_mb_64"], 16),
        "allocs_per_req": alloc_ok and alloc_t == 0,
        "rps_nonstream_64_2workers": tw["valid"] and ge_ratio(tw["ratio_rps"], RPS_2WORKERS_MIN),
        "cpu_us_per_req_200k_body": bb["valid"] and le(bb_t, bb_n, factor=BIG_BODY_CPU_MAX),
        "translated_cpu_us_per_req_64": ratio_translated["cpu_us_per_req_64"] is not None
        and ratio_translated["cpu_us_per_req_64"] <= TRANSLATED_CPU_MAX,
        "translated_cpu_us_per_req_sse_64": ratio_translated["cpu_us_per_req_sse_64"] is not None
        and ratio_translated["cpu_us_per_req_sse_64"] <= TRANSLATED_CPU_MAX,
    }
    measured = {"syscalls_per_req_64": "error" not in sc, "allocs_per_req": "error" not in al}
    met["events_cost"] = once["events_cost"]["met"]
    all_valid = once["events_cost"]["valid"] and all(all(v.values()) for v in (
        valid["turnout"], valid["nginx"], valid["nginx-buf"], valid["translated"], valid["turnout-tls"],
        valid["nginx-tls"])) and valid["direct"] and all(f["valid"] for f in once_figs.values())

    # ---- the table: one row per figure, each against the nginx named in the row
    R = "median"
    rows = [  # label, how, source key, nginx (None: no nginx figure), format, met key
        ("non-stream req/s, 64 conns", R, "rps_nonstream_64", "nginx-buf", "{:.0f}", "rps_nonstream_64"),
        ("non-stream req/s, 64 conns (earlier baseline)", R, "rps_nonstream_64", "nginx", "{:.0f}", None),
        ("SSE streams/s, 64 conns (13 KB each)", R, "rps_sse_64", "nginx", "{:.0f}", "rps_sse_64"),
        ("CPU us/request, non-stream 64 conns", R, "cpu_us_per_req_64", "nginx-buf", "{:.1f}", "cpu_us_per_req_64"),
        ("CPU us/request, non-stream 64 conns (earlier baseline)", R, "cpu_us_per_req_64", "nginx", "{:.1f}", None),
        ("CPU us/request, SSE 64 conns", R, "cpu_us_per_req_sse_64", "nginx", "{:.1f}", "cpu_us_per_req_sse_64"),
        (f"syscalls/request, non-stream 64 conns ({SYSCALL_REQUESTS} req)", "1 run", "syscalls_per_req_64",
         "nginx-buf", "{:.2f}", "syscalls_per_req_64"),
        ("p50 us, 1 conn non-stream", R, "p50_us_1", "nginx-buf", "{:.0f}", None),
        ("p99 us, 1 conn non-stream", R, "p99_us_1", "nginx-buf", "{:.0f}", None),
        ("added p50 us vs direct, 1 conn", R, "added_p50_us_1", "nginx-buf", "{:.0f}", "added_p50_us_1"),
        ("added p50 us vs direct, 1 conn (earlier baseline)", R, "added_p50_us_1", "nginx", "{:.0f}", None),
        ("added p99 us vs direct, 1 conn", R, "added_p99_us_1", "nginx-buf", "{:.0f}", None),
        ("peak RSS MB, 64 conns non-stream", R, "peak_rss_mb_64", "nginx-buf", "{:.1f}", "peak_rss_mb_64"),
        ("peak PSS MB, 64 conns (shared pages once)", R, "peak_pss_mb_64", "nginx-buf", "{:.1f}", None),
        (f"heap allocations/request, non-stream passthrough ({ALLOC_REQUESTS} req)", "1 run", "allocs_per_req",
         None, "{:.2f}", "allocs_per_req"),
        ("non-stream req/s, 2 workers each, 64 conns, unpinned (wrk shares the 2 cores)", "1 run",
         "rps_nonstream_64_2workers", "nginx-buf", "{:.0f}", "rps_nonstream_64_2workers"),
        ("CPU us/request, 2 workers each (as above)", "1 run", "cpu_us_per_req_64_2workers", "nginx-buf", "{:.1f}",
         None),
        ("CPU us/request, 200 KB request body, 8 conns", "1 run", "cpu_us_per_req_200k_body", "nginx-buf", "{:.1f}",
         "cpu_us_per_req_200k_body"),
        ("req/s, 200 KB request body, 8 conns", "1 run", "rps_200k_body", "nginx-buf", "{:.0f}", None),
        ("TLS non-stream req/s, 64 keep-alive conns", R, "rps_nonstream_64", "nginx-tls", "{:.0f}", None),
        ("TLS CPU us/request, non-stream 64 keep-alive conns", R, "cpu_us_per_req_64", "nginx-tls", "{:.1f}", None),
    ]

    def fmtv(v, fmt):
        return fmt.format(v) if v is not None else "-"

    table = [("metric", "how", "turnout", "nginx", "nginx config", "ratio t/n", "target", "")]
    row_docs = []
    for label, how, key, base, fmt, mkey in rows:
        tname = TURNOUT_FOR.get(base, "turnout")
        if how == R:
            tv, tok = medians[tname].get(key), valid[tname].get(key, True)
            nv = medians[base].get(key) if base else None
            nok = valid[base].get(key, True) if base else True
            if key.startswith("added_"):
                tok = tok and valid["direct"]
        else:
            f = once_figs[key]
            tv, nv, tok = f["turnout"], f.get(base) if base else None, f["valid"]
            nok = tok
        rt = tv / nv if tv is not None and nv and nv > 0 and tv >= 0 else None
        config = CONFIG_LABEL[base] if base else ""
        if key.endswith("_2workers"):
            config += ", 2 workers"
        if mkey is None:
            mark = ""
        elif mkey in measured and not measured[mkey]:
            mark = "NOT MEASURED"
        else:
            mark = "MET" if met[mkey] else "NOT MET"
        shown_ok = mark == "NOT MEASURED"      # no figure: "-", not "- INVALID"
        tcell = fmtv(tv, fmt) + ("" if tok or shown_ok else " INVALID")
        ncell = (fmtv(nv, fmt) + ("" if nok or shown_ok else " INVALID")) if base else ""
        how_cell = f"median of {args.rounds}" if how == R else how
        target = TARGETS.get(mkey, "") if mkey else TLS_TARGET if base in TLS_PAIR else ""
        table.append((label, how_cell, tcell, ncell, config, fmtv(rt, "{:.2f}"), target, mark))
        row_docs.append({"metric": label, "key": key, "how": how_cell, "turnout": tv, "nginx": nv,
                         "turnout_server": tname, "nginx_server": base,
                         "nginx_config": config or None, "ratio": rt, "target": target or None,
                         "met": met.get(mkey) if mkey else None, "valid": tok and nok})
    table.append(("direct to mock p50 / p99 us, 1 conn", f"median of {args.rounds}",
                  "{} / {}".format(fmtv(medians["direct"]["p50_us_1"], "{:.0f}"),
                                   fmtv(medians["direct"]["p99_us_1"], "{:.0f}"))
                  + ("" if valid["direct"] else " INVALID"), "", "", "", "", ""))
    lines = format_table(table)

    xrows = [
        ("translated non-stream req/s, 64 conns", "rps_nonstream_64", "{:.0f}"),
        ("translated SSE streams/s, 64 conns", "rps_sse_64", "{:.0f}"),
        ("CPU us/request translated non-stream, 64 conns", "cpu_us_per_req_64", "{:.1f}"),
        ("CPU us/request translated SSE, 64 conns", "cpu_us_per_req_sse_64", "{:.1f}"),
    ]

    def xcell(name, key, fmt):
        v = medians[name][key]
        s = fmt.format(v) if v is not None else "-"
        return s if valid[name][key] else s + " INVALID"

    xtable = [("metric", "translated", "passthrough", "ratio x/p", "target", "")]
    for label, key, fmt in xrows:
        rt = "{:.2f}".format(ratio_translated[key]) if ratio_translated[key] is not None else "-"
        tkey = "translated_" + key
        tgt = "<= %.1fx passthrough" % TRANSLATED_CPU_MAX if tkey in met else ""
        mark = ("met" if met[tkey] else "NOT MET") if tkey in met else ""
        xtable.append((label, xcell("translated", key, fmt), xcell("turnout", key, fmt), rt, tgt, mark))
    xlines = format_table(xtable)

    # metering ([budgets]): what a key budget and an rpm limit add to a keyed request, same rounds. A
    # run's CPU per request swings by 10 us and more from one run to the next on this VM, so each round
    # measures plain-metered-metered-plain (metered-plain-plain-metered in even rounds) and the figure is
    # the median over the rounds of each round's (mean metered - mean plain); user CPU (tick-sampled,
    # noisier still) is shown beside it.
    mkeys = ("rps_nonstream_64", "cpu_us_per_req_64", "cpu_user_us_per_req_64")

    def mfig(r, label):
        runs = [v for k, v in r["metering"].items() if k.startswith(label + "_")]
        ok = all(a["valid"] for a in runs)
        return {"rps_nonstream_64": (statistics.mean(a["rps"] for a in runs), ok),
                "cpu_us_per_req_64": (statistics.mean(a["cpu_us_per_req"] for a in runs), ok),
                "cpu_user_us_per_req_64": (statistics.mean(a["cpu_user_us_per_req"] for a in runs), ok)}
    for label in ("plain", "metered"):
        per_round["keyed-" + label] = [mfig(r, label) for r in rounds]
        medians["keyed-" + label] = {k: med([f[k][0] for f in per_round["keyed-" + label] if f[k][1]]) for k in mkeys}
        valid["keyed-" + label] = {k: all(f[k][1] for f in per_round["keyed-" + label]) for k in mkeys}

    def added_per_round(key):
        return [f[key][0] - g[key][0] if f[key][1] and g[key][1] else None
                for f, g in zip(per_round["keyed-metered"], per_round["keyed-plain"])]
    metering_added = {k: added_per_round(k) for k in ("cpu_us_per_req_64", "cpu_user_us_per_req_64")}
    metering_median = {k: med([x for x in v if x is not None]) for k, v in metering_added.items()}
    mu = metering_median["cpu_us_per_req_64"]
    met["metering_cpu_us_added"] = mu is not None and mu <= METERED_CPU_MAX_US
    metering_valid = all(valid["keyed-plain"].values()) and all(valid["keyed-metered"].values())
    all_valid = all_valid and metering_valid
    mtable = [("metric", "plain key", "key budget + rpm", "added (median of rounds)", "target", "")]
    for label, key, fmt in (("non-stream req/s, 64 conns", "rps_nonstream_64", "{:.0f}"),
                            ("CPU us/request (user + system), non-stream 64 conns", "cpu_us_per_req_64", "{:.1f}"),
                            ("user CPU us/request, non-stream 64 conns", "cpu_user_us_per_req_64", "{:.1f}")):
        cell = {n: (fmtv(medians[n][key], fmt) + ("" if valid[n][key] else " INVALID"))
                for n in ("keyed-plain", "keyed-metered")}
        added, tgt, mark = fmtv(metering_median.get(key), "{:+.1f}") if key in metering_median else "", "", ""
        if key == "cpu_us_per_req_64":
            tgt, mark = f"<= +{METERED_CPU_MAX_US:.1f} us", "MET" if met["metering_cpu_us_added"] else "NOT MET"
        mtable.append((label, cell["keyed-plain"], cell["keyed-metered"], added, tgt, mark))
    mlines = format_table(mtable)

    # TLS (informational): turnout-tls vs nginx-tls, and what TLS adds to each one's plain figures
    tt, tn = medians["turnout-tls"], medians["nginx-tls"]

    def div(a, b):
        return a / b if a is not None and b else None

    def sub(a, b):
        return a - b if a is not None and b is not None else None
    tls_doc = {
        "informational": True, "target": None,
        "certificate": "ECDSA P-256 server certificate + intermediate (one chain file), root CA trusted by the "
                       "clients; both servers serve the same files",
        "sessions": tls_sessions, "connections": 64, "keep_alive": True, "script": "chat.lua",
        "turnout": {k: tt.get(k) for k in ("rps_nonstream_64", "cpu_us_per_req_64", "peak_rss_mb_64")},
        "nginx": {k: tn.get(k) for k in ("rps_nonstream_64", "cpu_us_per_req_64", "peak_rss_mb_64")},
        "ratio_rps": div(tt.get("rps_nonstream_64"), tn.get("rps_nonstream_64")),
        "ratio_cpu_us_per_req": div(tt.get("cpu_us_per_req_64"), tn.get("cpu_us_per_req_64")),
        "cpu_us_per_req_added_by_tls": {"turnout": sub(tt.get("cpu_us_per_req_64"), t.get("cpu_us_per_req_64")),
                                        "nginx": sub(tn.get("cpu_us_per_req_64"), nb.get("cpu_us_per_req_64"))},
        "valid": all(valid["turnout-tls"].values()) and all(valid["nginx-tls"].values()),
    }

    prow = [("non-stream req/s, 64 conns", "rps_nonstream_64", "{:.0f}"),
            ("SSE streams/s, 64 conns (13 KB each)", "rps_sse_64", "{:.0f}"),
            ("CPU us/request, non-stream 64 conns", "cpu_us_per_req_64", "{:.1f}"),
            ("CPU us/request, SSE 64 conns", "cpu_us_per_req_sse_64", "{:.1f}")]
    previous, plines = previous_bench(args.timestamp, args.rounds, d, prow, medians)

    n_met = sum(1 for row in table[1:] if row[-1] == "MET")
    n_tgt = sum(1 for row in table[1:] if row[-1])
    log("")
    log(f"turnout (1 worker) vs nginx at its best for each mode: buffering on for non-stream, off for SSE "
        f"(the 'earlier baseline' rows: buffering off, as the bench measured before); 'median of {args.rounds}': "
        f"the median of {args.rounds} rounds of {d} s per run; '1 run': measured once per bench run, after the "
        f"rounds. MB = MiB; ratio = turnout / nginx. {n_met} of {n_tgt} targets met.")
    for line in lines:
        log(line)
    ad = tls_doc["cpu_us_per_req_added_by_tls"]
    if ad["turnout"] is not None and ad["nginx"] is not None:
        log(f"TLS rows (informational, no target): turnout-tls and nginx-tls serve the same ECDSA P-256 certificate "
            f"({tls_sessions['turnout-tls']['version']} {tls_sessions['turnout-tls']['cipher']}); TLS adds "
            f"{ad['turnout']:.1f} us of CPU per request to turnout's plain figure, {ad['nginx']:.1f} us to nginx's "
            f"(buffering on).")
    log("")
    log("turnout translating (OpenAI client -> Anthropic Messages API upstream) vs the same turnout passing "
        "through (OpenAI -> OpenAI), same rounds (ratio = translated / passthrough)")
    for line in xlines:
        log(line)
    log("")
    log("turnout metering ([budgets]): a turnout that requires keys; the same requests from a key with no budget "
        "or limit and from a key with an rpm limit and a USD budget of its own (both far above a run's use), "
        "after an uncounted run, plain-metered-metered-plain in each round (metered first in even rounds); 'added' = "
        "the median over the rounds of (metered - plain), "
        "per round: " + ", ".join(fmtv(x, "{:+.1f}") for x in metering_added["cpu_us_per_req_64"])
        + " us (user: " + ", ".join(fmtv(x, "{:+.1f}") for x in metering_added["cpu_user_us_per_req_64"])
        + "). A run's CPU per request moves by 10 us and more between runs on this VM: read the rows with that.")
    for line in mlines:
        log(line)
    ec = once["events_cost"]
    log("")
    if "error" in ec:
        log(f"the dashboards' feed ([dashboard]): NOT MEASURED: {ec['error']}")
    else:
        log(f"the dashboards' feed ([dashboard]): with {EVENT_STREAMS} open /v1/events streams under non-stream load "
            f"at 64 conns, the admin thread (which serves them, on the data plane's core) took {ec['admin_ticks_with']} "
            f"ticks while the worker took {ec['worker_ticks_with']}: {100 * ec['cost']:.2f}% of the data plane's CPU, "
            f"target <= {100 * EVENTS_COST_MAX:.0f}%: "
            f"{'MET' if ec['met'] else 'NOT MET'}; req/s {ec['rps_with']:.0f} with, {ec['rps_without']:.0f} without "
            f"(means of 2 runs each; runs here move by 10% and more)")
    if plines:
        log("")
        for line in plines:
            log(line)

    doc = {
        "kind": "bench", "timestamp": args.timestamp, "machine": machine_info(args.build),
        "settings": {"rounds": args.rounds, "duration_s": d, "warmup_s": 1, "connections": [64, 1],
                     "mock_bodies": stack.mock_sizes, "request_body_bytes": len(CHAT_BODY),
                     "sse_request_body_bytes": len(SSE_BODY),
                     "translated_request_body_bytes": len(XL_CHAT_BODY),
                     "translated_sse_request_body_bytes": len(XL_SSE_BODY),
                     "baselines": {"nginx-buf": "nginx/proxy-buffered.conf (proxy_buffering on, nginx's default)",
                                   "nginx": "nginx/proxy.conf (proxy_buffering off)",
                                   "nginx-tls": "nginx/proxy-tls.conf (proxy-buffered.conf with listen ... ssl, "
                                                "the certificate and key turnout-tls serves)"},
                     "syscall_requests": SYSCALL_REQUESTS, "alloc_requests": ALLOC_REQUESTS,
                     "alloc_warmup_requests": ALLOC_WARMUP, "alloc_connections": ALLOC_CONNS,
                     "rounds_s": round(rounds_s, 1), "once_s": round(once_s, 1)},
        "targets": TARGETS, "rounds": rounds, "per_round": per_round,
        "medians": medians, "ratios": ratio, "ratios_vs_nginx_buffered": ratio_buf, "once": once,
        "once_figures": once_figs, "met": met, "valid": valid, "all_valid": all_valid,
        "rows": row_docs, "table": lines,
        "ratios_translated_over_passthrough": ratio_translated,
        "ratios_translated_over_passthrough_per_round": ratio_translated_per_round,
        "table_translated": xlines,
        "metering": {"target": f"key budget + rpm limit: <= +{METERED_CPU_MAX_US} us CPU per request over "
                               "a keyed request with neither", "added_median": metering_median,
                     "added_per_round": metering_added, "met": met["metering_cpu_us_added"],
                     "valid": metering_valid, "table": mlines},
        "previous_bench": previous,
        "tls": tls_doc,
    }
    contended = [f"round {r['round']} {k}" + (f" {sub}" if sub else "")
                 for r in rounds for k, v in r.items() if k != "round"
                 for sub, run in ([("", v)] if "requests" in v else v.items()) if run.get("contended")]
    contended += [f"once big_body {name}" for name, rs in bb["runs"].items() for x in rs if x.get("contended")]
    contended += [f"once two_workers {name}" for name, x in tw["runs"].items() if x.get("contended")]
    doc["contended_runs"] = contended
    if contended:
        log(f"WARNING: {len(contended)} run(s) shared the machine with other busy processes (> {CONTENTION_PCT}% "
            f"of a core) or lost time to the hypervisor: {', '.join(contended)}. Their figures may be skewed; "
            "rerun on a quiet machine (see cpu_load in the JSON).")
    path = save("bench", doc)
    log(f"\nsaved {os.path.relpath(path)}")
    if not all(measured.values()):
        log("NOT MEASURED: " + "; ".join(f"{k}: {(sc if k.startswith('sys') else al)['error']}"
                                         for k, ok in measured.items() if not ok) + "; exit 1")
        return 1
    if not all_valid:
        log("INVALID: some runs had socket or status errors (see the rows marked INVALID); exit 1")
        return 1
    log("all runs valid (0 errors, 0 non-2xx)")
    return 0


# ---------------------------------------------------------------- scale

def nofile_for(streams):
    """Raises this process's RLIMIT_NOFILE (inherited by what it starts) towards
    2 fds per stream in turnout plus a margin; returns the limit in force."""
    want = 2 * streams + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def open_streams(port, n, deadline, body, max_pending=500):
    """Opens N streaming requests to 127.0.0.1:PORT; returns (socks, stats).
    At most MAX_PENDING connections wait for their first event at a time."""
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    sel = selectors.DefaultSelector()
    socks = []
    st = {"opened": 0, "first_event": 0, "failed": 0, "bytes": 0, "fail_reasons": {}}

    def fail(key, why):
        st["failed"] += 1
        st["fail_reasons"][why] = st["fail_reasons"].get(why, 0) + 1
        sel.unregister(key.fileobj)
        key.fileobj.close()

    t0 = time.monotonic()
    while st["first_event"] < n and time.monotonic() < deadline:
        while st["opened"] < n and st["opened"] - st["first_event"] - st["failed"] < max_pending:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE, {"state": "connecting", "buf": b""})
            st["opened"] += 1
        if st["failed"] and st["opened"] >= n and st["first_event"] + st["failed"] >= n:
            break
        for key, mask in sel.select(0.05):
            data, s = key.data, key.fileobj
            if data["state"] == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(key, os.strerror(err))
                    continue
                try:
                    s.send(req)     # small: fits an empty socket buffer
                except OSError as e:
                    fail(key, str(e))
                    continue
                data["state"] = "waiting"
                sel.modify(s, selectors.EVENT_READ, data)
                continue
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(key, str(e))
                continue
            if not chunk:
                fail(key, "closed" if data["state"] == "waiting" else "closed after first event")
                if data["state"] == "streaming":
                    st["first_event"] -= 1
                continue
            st["bytes"] += len(chunk)
            if data["state"] == "waiting":
                data["buf"] += chunk
                head, sep, rest = data["buf"].partition(b"\r\n\r\n")
                if sep:
                    if not head.startswith(b"HTTP/1.1 200"):
                        fail(key, head.split(b"\r\n")[0].decode(errors="replace"))
                        continue
                    if b"data: " in rest:
                        data["state"], data["buf"] = "streaming", b""
                        socks.append(s)
                        st["first_event"] += 1
    st["open_s"] = round(time.monotonic() - t0, 2)
    return sel, socks, st


def drain(sel, seconds):
    """Reads (and drops) whatever the open streams deliver for SECONDS."""
    end = time.monotonic() + seconds
    got = closed = 0
    while time.monotonic() < end:
        for key, _mask in sel.select(0.05):
            try:
                chunk = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                closed += 1
            got += len(chunk)
    return got, closed


def scale_streams(args, tmp):
    want = args.streams
    limit = nofile_for(want)
    n = min(want, (limit - 100) // 2)     # turnout itself holds ~20 other fds
    note = None
    if n < want:
        note = (f"RLIMIT_NOFILE hard limit is {limit} and cannot be raised here (no CAP_SYS_RESOURCE?); "
                f"turnout needs 2 fds per stream (client + upstream), so {n} streams were opened, not {want}")
        log("  NOTE: " + note)
    stack = Stack(args.build, tmp)
    mport_file = os.path.join(tmp, "mockllm.port")
    p = start("mockllm", [os.path.join(args.build, "mockllm"), "--no-log", "--port", "0", "--port-file", mport_file,
                          "--stream-events", "100000", "--stream-interval-ms", "2000"], tmp)
    end = time.monotonic() + 10
    while not os.path.exists(mport_file) and time.monotonic() < end and p.poll() is None:
        time.sleep(0.05)
    if not os.path.exists(mport_file):
        raise Abort("mockllm did not write its port file")
    with open(mport_file) as f:
        mport = int(f.read())
    stack.servers["mockllm"] = {"port": mport, "proc": p, "pids": [p.pid]}
    tport = stack.start_turnout(
        [{"name": "mockllm", "base_url": f"http://127.0.0.1:{mport}/v1", "models": [{"name": "mock-small"}]}],
        [{"name": "bench-sse", "endpoint": "chat", "targets": [{"provider": "mockllm", "model": "mock-small"}]}],
        limits={"max_connections": max(20000, n + 1000)})
    tpids = stack.servers["turnout"]["pids"]
    # idle: after one stream has been served and closed
    sel, socks, st = open_streams(tport, 1, time.monotonic() + 10, SSE_BODY)
    if st["first_event"] != 1:
        raise Abort(f"a single stream through turnout got no first event: {st}")
    for s in socks:
        sel.unregister(s)
        s.close()
    time.sleep(1.0)
    idle = rss_kb(tpids)
    mock_idle = rss_kb([p.pid])
    log(f"  turnout idle RSS {idle / 1024:.1f} MB; opening {n} streams (bounded to {args.stream_timeout} s)")
    t0 = time.monotonic()
    sel, socks, st = open_streams(tport, n, t0 + args.stream_timeout, SSE_BODY)
    stack.check_alive()
    log(f"  {st['first_event']} of {n} streams had their first event after {st['open_s']} s "
        f"(failed {st['failed']} {st['fail_reasons'] or ''})")
    _, closed_early = drain(sel, 1.0)   # keep reading so nothing backs up, then measure
    loaded = rss_kb(tpids)
    mock_loaded = rss_kb([p.pid])
    still = st["first_event"] - closed_early
    with open(f"/proc/{tpids[0]}/status") as f:
        hwm = next((int(l.split()[1]) for l in f if l.startswith("VmHWM:")), None)
    fds = len(os.listdir(f"/proc/{tpids[0]}/fd"))
    got, closed_late = drain(sel, 2.5)   # the streams still flow (one event per stream per 2 s)
    for s in socks:
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
    sel.close()
    time.sleep(1.5)
    after = rss_kb(tpids)
    ok = still == n and closed_late == 0
    res = {
        "streams_requested": want, "streams": n, "streams_with_first_event": still, "failed": st["failed"],
        "fail_reasons": st["fail_reasons"], "open_s": st["open_s"], "nofile_limit": limit, "note": note,
        "turnout_rss_idle_kb": idle, "turnout_rss_open_kb": loaded, "turnout_vmhwm_kb": hwm,
        "turnout_rss_after_close_kb": after, "turnout_fds_open": fds,
        "rss_per_stream_kb": (loaded - idle) / still if still else None,
        "bytes_read_in_2_5s_while_open": got, "closed_by_server_while_open": closed_early + closed_late,
        "mockllm_rss_idle_kb": mock_idle, "mockllm_rss_open_kb": mock_loaded,
        "upstream": "mockllm --stream-events 100000 --stream-interval-ms 2000", "valid": ok,
    }
    log(f"  turnout RSS: idle {idle / 1024:.1f} MB, with {still} open {loaded / 1024:.1f} MB "
        f"(VmHWM {hwm / 1024:.1f} MB, {fds} fds) -> {res['rss_per_stream_kb'] or 0:.1f} KB per stream; "
        f"after closing {after / 1024:.1f} MB; {got} bytes relayed in 2.5 s while open")
    stop_all()
    return res


def scale_body(args, tmp):
    """The 200 KB body at 8 connections through turnout and nginx, buffering on
    (nginx's default: the baseline of the bench's row) and off, ROUNDS runs
    each; ratios turnout / nginx (buffering on), and / nginx (buffering off)."""
    stack = Stack(args.build, tmp)
    stack.start_mock()
    stack.start_proxy_buffered()
    stack.start_proxy()
    stack.start_turnout_on_mock()
    res = big_body_runs(stack, ("nginx-buf", "nginx", "turnout"), args.rounds, args.duration)
    m = res["medians"]

    def ratio(key, base):
        t, n = m["turnout"][key], m[base][key]
        return t / n if t is not None and n else None
    res.update({"ratio_rps": ratio("rps", "nginx-buf"), "ratio_cpu": ratio("cpu_us_per_req", "nginx-buf"),
                "ratio_rps_buffering_off": ratio("rps", "nginx"),
                "ratio_cpu_buffering_off": ratio("cpu_us_per_req", "nginx"),
                "baselines": {"nginx-buf": "proxy_buffering on (nginx's default)", "nginx": "proxy_buffering off"}})
    stop_all()
    return res


def scale_resolve(args):
    if not args.resolve_tree:
        return {"skipped": "no tree given (RESOLVE_TREE)"}
    script = os.path.join(args.resolve_tree, "bench", "resolve.sh")
    if not os.path.exists(script):
        return {"skipped": f"{script} not found"}
    log(f"  bash {script}  (its own output follows)")
    t0 = time.monotonic()
    # resolve.sh runs make in its tree; this make's variables (BUILD=...) must not leak into it
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    p = subprocess.Popen(["bash", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         start_new_session=True)
    _procs.append(("resolve.sh", p))
    lines = []
    for line in p.stdout:
        lines.append(line.rstrip("\n"))
        log("    " + lines[-1])
    p.wait()
    _procs.remove(("resolve.sh", p))
    res = {"script": script, "exit": p.returncode, "seconds": round(time.monotonic() - t0, 1)}
    for line in reversed(lines):
        if line.startswith("{") and "exact_ratio_big_over_small" in line:
            res["result"] = json.loads(line)
            break
    res["valid"] = p.returncode == 0 and "result" in res
    return res


def run_scale(args, tmp):
    doc = {"kind": "scale", "timestamp": args.timestamp, "machine": machine_info(args.build)}
    parts = args.parts.split(",")
    if "resolve" in parts:
        log("scale 1/3: route resolution with 1,000,000 routes (bench/resolve.sh)")
        doc["resolve"] = scale_resolve(args)
    if "streams" in parts:
        log(f"scale 2/3: {args.streams} concurrent SSE streams through turnout (upstream BUILD/mockllm)")
        sub = os.path.join(tmp, "streams")
        os.makedirs(sub)
        doc["streams"] = scale_streams(args, sub)
    if "body" in parts:
        log(f"scale 3/3: 200 KB request bodies at 8 connections, {args.duration} s per run, {args.rounds} rounds")
        sub = os.path.join(tmp, "body")
        os.makedirs(sub)
        doc["big_body"] = scale_body(args, sub)

    log("\nscale summary")
    r = doc.get("resolve", {})
    if "result" in r:
        res = r["result"]
        log(f"  resolve: exact lookup {res['small']['exact_us']:.2f} us (100 routes) vs "
            f"{res['big']['exact_us']:.2f} us (1,000,000 routes): ratio {res['exact_ratio_big_over_small']}; "
            f"hot {res['exact_hot_ratio_big_over_small']}; turnout start-up on the big store "
            f"{res['turnout_startup_ms_big_store']} ms; {r['seconds']} s")
    elif r:
        log(f"  resolve: {r.get('skipped') or 'FAILED (exit %s)' % r.get('exit')}")
    s = doc.get("streams")
    if s:
        log(f"  streams: {s['streams_with_first_event']}/{s['streams']} open; turnout RSS idle "
            f"{s['turnout_rss_idle_kb'] / 1024:.1f} MB, open {s['turnout_rss_open_kb'] / 1024:.1f} MB -> "
            f"{(s['rss_per_stream_kb'] or 0):.1f} KB per stream" + (f"  ({s['note']})" if s["note"] else ""))
    b = doc.get("big_body")
    if b:
        m = b["medians"]

        def f(v, fmt):
            return fmt.format(v) if v is not None else "-"
        log(f"  200 KB body, 8 conns: turnout {f(m['turnout']['rps'], '{:.0f}')} req/s "
            f"{f(m['turnout']['cpu_us_per_req'], '{:.1f}')} us cpu/req; nginx (buffering on) "
            f"{f(m['nginx-buf']['rps'], '{:.0f}')} req/s {f(m['nginx-buf']['cpu_us_per_req'], '{:.1f}')} us cpu/req; "
            f"nginx (buffering off) {f(m['nginx']['rps'], '{:.0f}')} req/s "
            f"{f(m['nginx']['cpu_us_per_req'], '{:.1f}')} us cpu/req; ratios t/n (on): rps "
            f"{f(b['ratio_rps'], '{:.2f}')}, cpu {f(b['ratio_cpu'], '{:.2f}')} (target <= {BIG_BODY_CPU_MAX:.0f}); "
            f"(off): rps {f(b['ratio_rps_buffering_off'], '{:.2f}')}, cpu {f(b['ratio_cpu_buffering_off'], '{:.2f}')}")
    valid = all(doc[k].get("valid", True) for k in ("resolve", "streams", "big_body") if k in doc
                and "skipped" not in doc[k])
    doc["all_valid"] = valid
    path = save("scale", doc)
    log(f"\nsaved {os.path.relpath(path)}")
    return 0 if valid else 1


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("bench", "scale"))
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 5)))
    ap.add_argument("--streams", type=int, default=int(os.environ.get("STREAMS", 10000)))
    ap.add_argument("--stream-timeout", type=int, default=60)
    ap.add_argument("--parts", default="resolve,streams,body", help="scale: which parts, comma-separated")
    ap.add_argument("--resolve-tree", default=None, help="scale: the source tree whose bench/resolve.sh to run")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    args.timestamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for b in ("turnout",) + (("mockllm",) if args.what == "scale" else ()):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            print(f"bench: {args.build}/{b} not found; build it first (make in the source tree) or pass BUILD=DIR",
                  file=sys.stderr)
            return 2
    for tool in ("wrk", "curl") + (("taskset",) if PIN else ()):
        if not shutil.which(tool):
            print(f"bench: {tool} not found (make -C bench deps installs it)", file=sys.stderr)
            return 2
    if not PIN:
        log("WARNING: fewer than 2 CPUs: servers and wrk are not pinned apart")
    if PIN:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})   # this script (sampling, stream client) stays off core 1
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    tmp = tempfile.mkdtemp(prefix="turnout-bench-")
    os.chmod(tmp, 0o755)     # nginx workers run as an unprivileged user when started by root
    try:
        return run_bench(args, tmp) if args.what == "bench" else run_scale(args, tmp)
    except Abort as e:
        print(f"bench: ABORTED: {e}", file=sys.stderr)
        return 2
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
