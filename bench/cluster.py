#!/usr/bin/python3
"""turnout's cluster benchmark: what cluster.redis and cluster.etcd cost.

    /usr/bin/python3 bench/cluster.py [--quick] [--parts 1,2,3] [--build DIR] [--make]

Standard library only; it imports bench/bench.py for its process, CPU-tick
and wrk helpers (bench.start/stop, bench.ticks, bench.wrk with the lua
scripts in bench/lua, ...). Everything runs on 127.0.0.1, on free ports, in
a temp dir; every process started here is stopped by PID when the script
exits, however it exits. BUILD/turnout and BUILD/mockllm (the release build,
`make`) are copied into the temp dir first, so a rebuild during the run does
not change what is measured. Debian's /usr/bin/etcd (3.4) and
/usr/bin/redis-server (7) are started here: etcd as a one-member cluster
(data in the temp dir), redis with --save '' --appendonly no.

Part 1, Redis-backed key budget vs a local one (the shape of bench.py's
metering rows): BUILD/mockllm --no-log is the upstream; two turnouts, 1
worker each, require keys, the same seed as bench.py's turnout-keys (model
priced; KEY_PLAIN with no budget or limit, KEY_METERED with rpm 10,000,000
and a 1d USD budget of 1,000,000: far above what a run uses, so every
metered request is reserved, settled and answered with x-ratelimit
headers): "local" without cluster.redis, "redis" the same plus
"cluster": {"redis": "127.0.0.1:PORT"}. Servers (both turnouts, mockllm,
redis-server) pinned to core 1, wrk and this script to core 0, as in
bench.py. Before the rounds: checks (no key 401; the plain key 200 without
x-ratelimit-*; the metered key 200 with them; on "redis" one metered request
grows cmdstat_evalsha and one plain request does not), then one uncounted
run on each turnout. Per round (ROUNDS; each run a 1 s warm-up then
DURATION s; the order of "local" and "redis" in every pair alternates by
round: ABAB..., then BABA...):
  - 64 connections, metered key, local then redis: CPU us per request
      (turnout's utime+stime ticks over the run / requests), req/s;
  - 64 connections, plain key, local then redis: the same (a plain key on
      "redis" must make no Redis call: cmdstat_evalsha's calls before and
      after the run are compared, and its CPU must be "local"'s within noise);
  - 1 connection, metered key, local then redis (LAT_DURATION s): latency
      mean, p50, p99 (wrk's, via lua/report.lua).
  For every "redis" run also redis-server's CPU per request (its ticks, all
  threads) and Redis's INFO commandstats over the measured run: EVALSHA
  calls per request, all commands per request, Redis's own usec per EVALSHA.
  Reported: medians over the rounds of each figure, and the medians of the
  per-round differences redis - local (added CPU per request; added mean,
  p50, p99 latency at 1 connection). The runs are flagged as bench.py flags
  them (errors: INVALID; other processes on the machine over 10% of a core:
  CONTENDED; with the two niced fuzzers of this VM every run is).

Part 2, etcd propagation lag: three nodes (A, B, C; 1 worker each, their own
data dirs and ports, unpinned) on one etcd, cluster.prefix /p2/, the admin
key from the environment. A provider (mockllm) is created on A through the
admin API, then WRITES (100) route creates on A (POST /v1/model-routes),
one after the other; after each 201, B and C are polled (GET
/v1/model-routes/{id} on their admin ports, keep-alive, every 1 ms) until
each answers 200, for at most 5 s. Lag = from A's 201 (the client's receipt
of it) to the receipt of the first 200 from that node. Reported: p50, p99,
max (nearest rank) over the 2 x WRITES samples, per node too, and A's
POST-to-201 time. The first route is also requested on B's and C's data
plane once visible (200 from the mock expected).

Part 3, a node's memory with ROUTES (100,000) routes mirrored: node T
(prefix /p3/) creates a provider and one route through the admin API, the
route's record is read back from etcd (/v3/kv/range) as the template, T is
stopped, and ROUTES copies of it (new id, name big-rNNNNNNN, created_at and
updated_at; substituted in the record's text, so it stays byte for byte a
record as turnout writes it) are put into etcd directly through its JSON
gateway, /v3/kv/txn, 128 puts per transaction (etcd's default
--max-txn-ops), under /p3/records/routes/<id>. Then a fresh node F (empty
data_dir, no seed, the same config) is started: time from its start to
/readyz 200 (it loads the full snapshot before it listens) and to the first
200 of a data-plane request naming one of the routes; its VmRSS (RssAnon,
RssFile) and PSS (smaps_rollup) after the load, the peak VmRSS while it
loaded (sampled every 20 ms), the same after 1,000 requests (keep-alive,
one connection) to uniformly random routes, and the LMDB data file's size
(apparent and allocated). The baseline E has the same config and the same
history with an empty store: on prefix /p3e/ a node creates the same
provider and one route, is stopped, and a fresh node E loads that
(2-record) snapshot and serves the same 1,000 requests on its one route;
E's memory is also read before anything was created (a node on an empty
store). Reported: F - E.

--quick: ROUNDS 3, DURATION 2, LAT_DURATION 2, WRITES 30, ROUTES 10,000 (a
trial run, about 70 s). The full run (ROUNDS 5, DURATION 5, LAT_DURATION 3,
WRITES 100, ROUTES 100,000) took 3 min 40 s on the 2-core VM, most of it
part 1; a fresh node's load of 100,000 routes is ~20 s of that, mostly
etcd's (etcd 3.4 counts the rest of the range on every page of 500).
JSON: bench/results/cluster-<UTC stamp>.json; a summary on stdout.
"""
import argparse
import base64
import datetime
import hashlib
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench  # noqa: E402  (bench/bench.py: process, tick and wrk helpers)
from bench import Abort, log  # noqa: E402

ETCD = "/usr/bin/etcd"
REDIS = "/usr/bin/redis-server"
ADMIN_ENV = "TURNOUT_BENCH_ADMIN_KEY"
ADMIN_KEY = bench.ADMIN_KEY
KEY_PLAIN, KEY_METERED = bench.KEY_PLAIN, bench.KEY_METERED
TXN_OPS = 128                 # etcd's default --max-txn-ops
POLL_S = 0.001                # part 2: how often B and C are asked
LAG_BOUND_S = 5.0             # part 2: a write not seen by then is a miss
MODEL = "bench-upstream"
CHAT = {"messages": [{"role": "user", "content": "Summarise the benchmark in one sentence."}]}


def chat_body(model):
    return json.dumps(dict(CHAT, model=model), separators=(",", ":")).encode()


def b64(x):
    return base64.b64encode(x.encode() if isinstance(x, str) else x).decode()


def unb64(s):
    return base64.b64decode(s or "")


def prefix_end(prefix):
    p = bytearray(prefix.encode())
    p[-1] += 1
    return bytes(p)


def pct(samples, p):
    """The nearest-rank P-th percentile."""
    s = sorted(samples)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))] if s else None


def med(values):
    return bench.med(values)


def r1(x, nd=1):
    return None if x is None else round(x, nd)


# ---------------------------------------------------------------- HTTP

class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:PORT (made again
    after an error); KEY: sent as a bearer token."""

    def __init__(self, port, key=None, timeout=10):
        self.port, self.key, self.timeout, self.c = port, key, timeout, None

    def call(self, method, path, body=None, headers=None):
        """(status, headers dict (lower-case names), body bytes); status 0 when
        there is no answer."""
        h = {"Connection": "keep-alive"}
        if self.key:
            h["Authorization"] = "Bearer " + self.key
        if body is not None:
            if not isinstance(body, (bytes, bytearray)):
                body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        for attempt in range(2):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.c.request(method, path, body=body, headers=h)
                resp = self.c.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    return 0, {}, b""
        return 0, {}, b""

    def json(self, method, path, body=None):
        st, _h, data = self.call(method, path, body)
        try:
            return st, json.loads(data) if data else None
        except ValueError:
            return st, data

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


# ---------------------------------------------------------------- Redis and etcd

def resp_encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def redis_call(port, *args, timeout=5):
    """One command on a new connection: its reply (str, int, bytes, list, None)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp_encode(args))
        buf = b""

        def more():
            nonlocal buf
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            buf += chunk

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                more()
            ln, buf = buf.split(b"\r\n", 1)
            return ln

        def read():
            nonlocal buf
            ln = line()
            kind, rest = ln[:1], ln[1:]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise RuntimeError("redis: " + rest.decode())
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                while len(buf) < n + 2:
                    more()
                data, buf = buf[:n], buf[n + 2:]
                return data
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise ConnectionError("not RESP: %r" % ln[:80])
        return read()


def commandstats(port):
    """{command: {"calls", "usec"}} from INFO commandstats."""
    out = {}
    for ln in redis_call(port, "INFO", "commandstats").decode().splitlines():
        if ln.startswith("cmdstat_"):
            name, _, rest = ln[len("cmdstat_"):].partition(":")
            f = dict(kv.split("=", 1) for kv in rest.split(","))
            out[name] = {"calls": int(f["calls"]), "usec": int(f["usec"])}
    return out


def stats_delta(a, b):
    out = {}
    for k, v in b.items():
        c = v["calls"] - a.get(k, {}).get("calls", 0)
        if c:
            out[k] = {"calls": c, "usec": v["usec"] - a.get(k, {}).get("usec", 0)}
    return out


class Etcd:
    """etcd's v3 JSON gateway on one keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.conn = Conn(port, timeout=30)

    def call(self, path, body):
        st, _h, data = self.conn.call("POST", path, body)
        if st != 200:
            raise Abort(f"etcd {path}: {st} {data[:300]!r}")
        return json.loads(data)

    def range_prefix(self, prefix, limit=0, keys_only=False):
        body = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
        if limit:
            body["limit"] = limit
        if keys_only:
            body["keys_only"] = True
        return self.call("/v3/kv/range", body)

    def count(self, prefix):
        body = {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "count_only": True}
        return int(self.call("/v3/kv/range", body).get("count", 0))

    def put_many(self, items):
        """ITEMS: (key, value bytes); one transaction. Returns its revision."""
        ops = [{"request_put": {"key": b64(k), "value": b64(v)}} for k, v in items]
        r = self.call("/v3/kv/txn", {"success": ops})
        if not r.get("succeeded"):
            raise Abort(f"etcd txn did not succeed: {str(r)[:300]}")
        return int(r["header"]["revision"])

    def status(self):
        return self.call("/v3/maintenance/status", {})


# ---------------------------------------------------------------- processes

class Servers:
    """What bench.py's measure()-style code asks of its Stack: servers by name
    with "port", "proc", "pids"."""

    def __init__(self, tmp, binaries):
        self.tmp, self.bin = tmp, binaries
        self.servers = {}

    def url(self, name, path):
        return f"http://127.0.0.1:{self.servers[name]['port']}{path}"

    def all_pids(self):
        return [p for s in self.servers.values() for p in s["pids"] if os.path.exists(f"/proc/{p}")]

    def check_alive(self):
        for name, s in self.servers.items():
            if s["proc"].poll() is not None:
                raise Abort(f"{name} exited (status {s['proc'].returncode}); see {self.tmp}/{name}.out")

    def stop(self, name):
        s = self.servers.pop(name)
        bench.stop(s["proc"])
        bench.forget(s["proc"])

    # --- the servers

    def mock(self, cpu):
        port_file = os.path.join(self.tmp, "mockllm.port")
        p = bench.start("mockllm", [self.bin["mockllm"], "--port", "0", "--port-file", port_file, "--no-log",
                                    "--name", "benchmock"], self.tmp, cpu=cpu)
        end = time.monotonic() + 10
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.monotonic() > end or p.poll() is not None:
                raise Abort("mockllm did not start: " + open(os.path.join(self.tmp, "mockllm.out")).read()[-2000:])
            time.sleep(0.02)
        port = int(open(port_file).read())
        bench.wait_port(port, p, "mockllm", self.tmp)
        self.servers["mockllm"] = {"port": port, "proc": p, "pids": [p.pid]}
        return port

    def redis(self, cpu):
        port = bench.free_port()
        d = os.path.join(self.tmp, "redis-data")
        os.makedirs(d, exist_ok=True)
        p = bench.start("redis", [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", d, "--daemonize", "no"], self.tmp, cpu=cpu)
        bench.wait_port(port, p, "redis", self.tmp)
        end = time.monotonic() + 10
        while True:
            try:
                if redis_call(port, "PING", timeout=1) == "PONG":
                    break
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > end:
                raise Abort("redis-server did not answer PING")
            time.sleep(0.05)
        self.servers["redis"] = {"port": port, "proc": p, "pids": [p.pid]}
        return port

    def etcd(self, cpu):
        port, peer_port = bench.free_port(), bench.free_port()
        url, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
        argv = [ETCD, "--name", "bench", "--data-dir", os.path.join(self.tmp, "etcd-data"),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"bench={peer}", "--initial-cluster-state", "new",
                "--initial-cluster-token", f"turnout-bench-{port}",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        p = bench.start("etcd", argv, self.tmp, cpu=cpu)
        bench.wait_port(port, p, "etcd", self.tmp, timeout=30)
        e = Etcd(port)
        end = time.monotonic() + 30
        while True:
            try:
                if "header" in e.call("/v3/kv/range", {"key": b64("/")}):
                    break
            except (Abort, OSError, ValueError):
                pass
            if time.monotonic() > end or p.poll() is not None:
                raise Abort("etcd did not answer: " + open(os.path.join(self.tmp, "etcd.out")).read()[-2000:])
            time.sleep(0.1)
        self.servers["etcd"] = {"port": port, "proc": p, "pids": [p.pid]}
        return e

    def turnout(self, name, cpu, seed=None, cluster=None, require_key=False, log_level="warn", wait=True,
                data_dir=None):
        """A turnout, 1 worker, access log off. CLUSTER: its "cluster" object.
        WAIT: returns once /healthz answers and the admin port is bound (else
        at once, for the caller to time its start)."""
        port, admin = bench.free_port(), bench.free_port()
        cfg = {"listen": f"127.0.0.1:{port}", "workers": 1,
               "data_dir": data_dir or os.path.join(self.tmp, name + "-data"),
               "require_key": require_key,
               "admin": {"listen": f"127.0.0.1:{admin}", "key_env": ADMIN_ENV},
               "log": {"level": log_level, "access": "off"}}
        if seed is not None:
            cfg["seed"] = os.path.join(self.tmp, name + "-seed.json")
            with open(cfg["seed"], "w") as f:
                json.dump(seed, f)
        if cluster:
            cfg["cluster"] = cluster
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        t0 = time.monotonic()
        p = bench.start(name, [self.bin["turnout"], "-c", path], self.tmp, cpu=cpu, env={ADMIN_ENV: ADMIN_KEY})
        s = {"port": port, "admin_port": admin, "proc": p, "pids": [p.pid], "config": path,
             "data_dir": cfg["data_dir"], "started": t0}
        self.servers[name] = s
        if wait:
            self.wait_turnout(name)
        return s

    def wait_turnout(self, name, timeout=60):
        s = self.servers[name]
        end = time.monotonic() + timeout
        while True:
            st, _c, _b = bench.http_get(s["port"], "/healthz")
            if st == 200:
                break
            if time.monotonic() > end or s["proc"].poll() is not None:
                raise Abort(f"{name}: /healthz never answered 200 (exit {s['proc'].poll()}):\n" + self.output(name))
            time.sleep(0.02)
        while True:   # the admin listener is bound after the workers (main.c)
            try:
                socket.create_connection(("127.0.0.1", s["admin_port"]), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > end or s["proc"].poll() is not None:
                    raise Abort(f"{name}: admin port never bound:\n" + self.output(name))
                time.sleep(0.02)

    def output(self, name):
        try:
            with open(os.path.join(self.tmp, name + ".out"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def admin(self, name):
        return Conn(self.servers[name]["admin_port"], key=ADMIN_KEY)


def proc_mem(pid):
    """VmRSS, RssAnon, RssFile, VmHWM (kB, /proc/PID/status) and Pss, Pss_Anon,
    Pss_File (kB, smaps_rollup)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            k = ln.split(":", 1)[0]
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(ln.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                k = ln.split(":", 1)[0]
                if k in ("Pss", "Pss_Anon", "Pss_File"):
                    out[k] = int(ln.split()[1])
    except OSError:
        pass
    return out


def metric(port, name):
    st, _c, body = bench.http_get(port, "/metrics")
    if st != 200:
        return None
    for ln in body.decode(errors="replace").splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    return None


def wait_until(pred, timeout, what, step=0.02):
    end = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > end:
            raise Abort(f"{what}: not within {timeout} s")
        time.sleep(step)


# ---------------------------------------------------------------- part 1: Redis-backed budgets

def keys_seed(mock_port):
    """bench.py's turnout-keys seed (start_turnout_keys), on mockllm."""
    metered_id = "0c8b0ee1-0000-4000-8000-00000000b0d9"
    return {
        "providers": [{"name": "benchmock", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                       "models": [{"name": MODEL, "input_price": 2.5, "output_price": 10}]}],
        "routes": [{"name": "bench-chat", "endpoint": "chat", "targets": [{"provider": "benchmock", "model": MODEL}]}],
        "keys": [{"id": "0c8b0ee1-0000-4000-8000-00000000a0d9", "name": "bench-plain",
                  "secret_hash": hashlib.sha256(KEY_PLAIN.encode()).hexdigest()},
                 {"id": metered_id, "name": "bench-metered",
                  "secret_hash": hashlib.sha256(KEY_METERED.encode()).hexdigest(), "rpm": 10000000}],
        "budgets": [{"name": "bench-metered-daily", "scope": {"key": metered_id}, "limit_usd": 1000000,
                     "window": "1d"}],
    }


def verify_keys(srv, name, redis_port=None):
    """As bench.verify_keys, on NAME; with REDIS_PORT also that a metered
    request calls Redis (EVALSHA) and a plain one does not. Returns what it saw."""
    port = srv.servers[name]["port"]
    seen = {}
    for label, key in (("none", None), ("plain", KEY_PLAIN), ("metered", KEY_METERED)):
        before = commandstats(redis_port) if redis_port else None
        c = Conn(port, key=key)
        st, h, body = c.call("POST", "/v1/chat/completions", chat_body("bench-chat"))
        c.close()
        ev = None
        if redis_port:
            time.sleep(0.2)        # the settle is not waited for
            ev = stats_delta(before, commandstats(redis_port)).get("evalsha", {}).get("calls", 0)
        seen[label] = {"status": st, "x-ratelimit-limit-requests": h.get("x-ratelimit-limit-requests"),
                       "chat_completion": b'"chat.completion"' in body, "evalsha_calls": ev}
    ok = seen["none"]["status"] == 401 and seen["plain"]["status"] == 200 \
        and seen["plain"]["x-ratelimit-limit-requests"] is None and seen["metered"]["status"] == 200 \
        and seen["metered"]["x-ratelimit-limit-requests"] == "10000000" and seen["metered"]["chat_completion"]
    if redis_port:
        ok = ok and seen["plain"]["evalsha_calls"] == 0 and (seen["metered"]["evalsha_calls"] or 0) > 0
    if not ok:
        raise Abort(f"verification failed: {name}: {seen}\n" + srv.output(name))
    log(f"  ok  {name}: no key 401; plain 200 without x-ratelimit-*; metered 200 with x-ratelimit-limit-requests "
        f"10000000" + (f"; EVALSHA calls for one request: metered {seen['metered']['evalsha_calls']}, plain 0"
                       if redis_port else ""))
    return seen


# commands in INFO commandstats that are not run by turnout's scripts: the
# scripts themselves, this script's INFO, and the node's beat (once a second)
NOT_SCRIPT = ("evalsha", "info", "zadd", "zremrangebyscore", "zcard", "script")


def minflt(pids):
    """Minor page faults of PIDS (whole thread groups)."""
    return sum(int(bench.stat_fields(p)[7]) for p in pids)


def load_run(srv, name, key, conns, duration, redis_port):
    """One measured wrk run of chat-keyed.lua (KEY) against NAME after a 1 s
    warm-up: bench.measure's figures plus redis-server's ticks and Redis's
    commandstats over the measured run."""
    s = srv.servers[name]
    url = srv.url(name, "/v1/chat/completions")
    warm = bench.wrk(url, "chat-keyed.lua", conns, 1, script_args=(key,))
    pids, rpids = s["pids"], srv.servers["redis"]["pids"]
    every = srv.all_pids()
    cs0 = commandstats(redis_port)
    c0, o0 = bench.cpu_stat(), bench.others_ticks()
    t0, u0, rt0 = bench.ticks(pids), bench.ticks(pids, user_only=True), bench.ticks(rpids)
    f0 = minflt(pids)
    r = bench.wrk(url, "chat-keyed.lua", conns, duration, script_args=(key,))
    t1, u1, rt1 = bench.ticks(pids), bench.ticks(pids, user_only=True), bench.ticks(rpids)
    f1 = minflt(pids)
    c1, o1 = bench.cpu_stat(), bench.others_ticks()
    cs1 = commandstats(redis_port)
    srv.check_alive()
    other = bench.others_delta(o0, o1, set(every) | {os.getpid(), bench._last_wrk_pid})
    n = r["requests"]
    wall = max(r["duration_us"] / 1e6 * bench.HZ, 1)
    d = stats_delta(cs0, cs1)
    ev = d.get("evalsha", {"calls": 0, "usec": 0})
    out = {
        "server": name, "key": "metered" if key == KEY_METERED else "plain", "connections": conns,
        "duration_s": duration, "requests": n, "duration_us": r["duration_us"], "errors": r["errors"],
        "warmup_errors": sum(warm["errors"].values()),
        "rps": n / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        "latency_us": r["latency_us"],
        "cpu_ticks": t1 - t0,
        "cpu_us_per_req": (t1 - t0) / bench.HZ * 1e6 / n if n else None,
        "cpu_user_us_per_req": (u1 - u0) / bench.HZ * 1e6 / n if n else None,
        "minflt_per_req": (f1 - f0) / n if n else None,
        "redis_cpu_ticks": rt1 - rt0,
        "redis_cpu_us_per_req": (rt1 - rt0) / bench.HZ * 1e6 / n if n else None,
        "redis_commands": d,
        "redis_evalsha_calls": ev["calls"],
        "redis_evalsha_per_req": ev["calls"] / n if n else None,
        "redis_commands_per_req": sum(v["calls"] for v in d.values()) / n if n else None,
        "redis_script_commands_per_req": {k: v["calls"] / n for k, v in d.items() if k not in NOT_SCRIPT} if n else {},
        "redis_usec_per_evalsha": ev["usec"] / ev["calls"] if ev["calls"] else None,
        "valid": sum(r["errors"].values()) == 0 and n > 0,
    }
    load = {"other_processes_pct": 100 * other / wall,
            "steal_pct": 100 * sum(c1[k]["steal"] - c0[k]["steal"] for k in c1) / wall}
    for k in sorted(c1):
        load[f"cpu{k}_busy_pct"] = 100 * (c1[k]["busy"] - c0[k]["busy"]) / wall
    out["cpu_load"] = {k: round(v, 1) for k, v in load.items()}
    out["contended"] = load["other_processes_pct"] > bench.CONTENTION_PCT or load["steal_pct"] > bench.CONTENTION_PCT
    return out


SIDES = ("local", "redis")          # the turnouts t-local and t-redis
PART1_RUNS = (("metered_64", KEY_METERED, 64), ("plain_64", KEY_PLAIN, 64), ("metered_1", KEY_METERED, 1))


def part_redis(args, srv):
    log("part 1: a key with a budget and an rpm limit, counted in Redis (cluster.redis) vs in the node")
    mport = srv.mock(bench.SERVER_CPU)
    rport = srv.redis(bench.SERVER_CPU)
    seed = keys_seed(mport)
    srv.turnout("t-local", bench.SERVER_CPU, seed=seed, require_key=True)
    srv.turnout("t-redis", bench.SERVER_CPU, seed=seed, require_key=True, cluster={"redis": f"127.0.0.1:{rport}"})
    tport = srv.servers["t-redis"]["port"]
    wait_until(lambda: metric(tport, "turnout_redis_connected") == 1.0, 10, "t-redis: turnout_redis_connected 1")
    out = {"checks": {"t-local": verify_keys(srv, "t-local"), "t-redis": verify_keys(srv, "t-redis", rport)}}
    # a server's first run after another's is slower (bench.py): one uncounted run on each
    for name in ("t-local", "t-redis"):
        load_run(srv, name, KEY_METERED, 64, args.duration, rport)
    rounds = []
    for rnd in range(args.rounds):
        order = SIDES if rnd % 2 == 0 else SIDES[::-1]
        log(f"round {rnd + 1}/{args.rounds} (order {', '.join(order)})")
        r = {}
        for label, key, conns in PART1_RUNS:
            for side in order:
                a = load_run(srv, "t-" + side, key, conns, args.duration if conns > 1 else args.lat_duration, rport)
                r[f"{side}_{label}"] = a
                lat = a["latency_us"]
                log(f"  {side:5} {label:10} {a['rps']:8.0f} req/s  {a['cpu_us_per_req']:6.1f} us cpu/req  "
                    f"lat mean {lat['mean']:7.0f} p50 {lat['p50']:6d} p99 {lat['p99']:6d} us"
                    + (f"  redis {a['redis_cpu_us_per_req']:5.1f} us/req, {a['redis_evalsha_per_req']:.2f} "
                       f"EVALSHA/req" if side == "redis" else "") + bench.flags(a))
        rounds.append(r)
    out["rounds"] = rounds

    def col(side, label, f):
        return [f(r[f"{side}_{label}"]) for r in rounds]

    med_ = {}
    for side in SIDES:
        for label, _k, _c in PART1_RUNS:
            m = {"rps": med(col(side, label, lambda a: a["rps"])),
                 "cpu_us_per_req": med(col(side, label, lambda a: a["cpu_us_per_req"])),
                 "cpu_us_per_req_rounds": [r1(x) for x in col(side, label, lambda a: a["cpu_us_per_req"])],
                 "latency_mean_us": med(col(side, label, lambda a: a["latency_us"]["mean"])),
                 "latency_p50_us": med(col(side, label, lambda a: a["latency_us"]["p50"])),
                 "latency_p99_us": med(col(side, label, lambda a: a["latency_us"]["p99"])),
                 "minflt_per_req": med(col(side, label, lambda a: a["minflt_per_req"]))}
            if side == "redis":
                m.update({"redis_cpu_us_per_req": med(col(side, label, lambda a: a["redis_cpu_us_per_req"])),
                          "redis_evalsha_per_req": med(col(side, label, lambda a: a["redis_evalsha_per_req"])),
                          "redis_commands_per_req": med(col(side, label, lambda a: a["redis_commands_per_req"])),
                          "redis_script_commands_per_req": {
                              c: med(col(side, label, lambda a: a["redis_script_commands_per_req"].get(c, 0)))
                              for c in sorted({c for r in rounds for c in
                                               r[f"{side}_{label}"]["redis_script_commands_per_req"]})},
                          "redis_usec_per_evalsha": med(col(side, label, lambda a: a["redis_usec_per_evalsha"])),
                          "redis_evalsha_calls_total": sum(col(side, label, lambda a: a["redis_evalsha_calls"]))})
            med_[f"{side}_{label}"] = m
    out["medians"] = med_

    def diff(label, f):
        d = [f(r[f"redis_{label}"]) - f(r[f"local_{label}"]) for r in rounds]
        return {"median": med(d), "rounds": [r1(x) for x in d]}
    out["added"] = {
        "metered_cpu_us_per_req": diff("metered_64", lambda a: a["cpu_us_per_req"]),
        "plain_cpu_us_per_req": diff("plain_64", lambda a: a["cpu_us_per_req"]),
        "metered_latency_mean_us_1conn": diff("metered_1", lambda a: a["latency_us"]["mean"]),
        "metered_latency_p50_us_1conn": diff("metered_1", lambda a: a["latency_us"]["p50"]),
        "metered_latency_p99_us_1conn": diff("metered_1", lambda a: a["latency_us"]["p99"]),
        "metered_latency_mean_us_64conn": diff("metered_64", lambda a: a["latency_us"]["mean"]),
        "metered_latency_p50_us_64conn": diff("metered_64", lambda a: a["latency_us"]["p50"]),
        "metered_latency_p99_us_64conn": diff("metered_64", lambda a: a["latency_us"]["p99"]),
        "metered_rps_ratio_64conn": {"median": med([r["redis_metered_64"]["rps"] / r["local_metered_64"]["rps"]
                                                    for r in rounds])},
    }
    out["plain_key_evalsha_calls"] = med_["redis_plain_64"]["redis_evalsha_calls_total"]
    out["invalid_runs"] = sum(1 for r in rounds for a in r.values() if not a["valid"])
    out["contended_runs"] = sum(1 for r in rounds for a in r.values() if a["contended"])
    out["t_redis_metrics"] = {m: metric(tport, m) for m in ("turnout_redis_connected", "turnout_redis_rtt_seconds",
                                                             "turnout_redis_errors_total", "turnout_cluster_nodes")}
    keys = redis_call(rport, "KEYS", "/turnout/*") or []
    out["redis_keys"] = sorted(k.decode() for k in keys)
    out["redis_info_memory_used_bytes"] = int(re.search(rb"used_memory:(\d+)", redis_call(rport, "INFO", "memory"))
                                              .group(1))
    for name in ("t-local", "t-redis", "redis"):
        srv.stop(name)
    return out, mport


# ---------------------------------------------------------------- part 2: etcd propagation lag

def provider_body(mport):
    return {"name": "benchmock", "base_url": f"http://127.0.0.1:{mport}/v1", "models": [{"name": MODEL}]}


def route_body(name):
    return {"name": name, "endpoint": "chat", "targets": [{"provider": "benchmock", "model": MODEL}]}


def admin_create(conn, path, body, what):
    st, rec = conn.json("POST", path, body)
    if st != 201 or not isinstance(rec, dict):
        raise Abort(f"{what}: POST {path} answered {st}: {str(rec)[:300]}")
    return rec


def part_lag(args, srv, etcd, mport):
    log(f"part 2: etcd propagation lag, 3 nodes, {args.writes} route creates on A, B and C polled every 1 ms")
    cl = {"etcd": [etcd.url], "prefix": "/p2/"}
    names = ("node-a", "node-b", "node-c")
    for n in names:
        srv.turnout(n, bench.ALL_CPUS, cluster=cl)
    a, b, c = (srv.admin(n) for n in names)
    prov = admin_create(a, "/v1/providers", provider_body(mport), "node-a")
    for n, conn in (("node-b", b), ("node-c", c)):
        wait_until(lambda: conn.call("GET", "/v1/providers/" + prov["id"])[0] == 200, 10, f"the provider on {n}")
    polled = {"node-b": b, "node-c": c}
    lags = {n: [] for n in polled}
    misses = {n: 0 for n in polled}
    post_ms, polls, at_first = [], 0, 0
    t_start = time.monotonic()
    for i in range(args.writes):
        t0 = time.monotonic()
        rec = admin_create(a, "/v1/model-routes", route_body(f"lag-{i:05d}"), "node-a")
        t201 = time.monotonic()
        post_ms.append((t201 - t0) * 1e3)
        path = "/v1/model-routes/" + rec["id"]
        pending = dict(polled)
        tick, first = t201, True
        while pending and time.monotonic() - t201 < LAG_BOUND_S:
            for n in list(pending):
                st, _h, body = pending[n].call("GET", path)
                polls += 1
                if st == 200:
                    lags[n].append((time.monotonic() - t201) * 1e3)
                    del pending[n]
                    at_first += first
                elif st != 404:
                    raise Abort(f"{n}: GET {path} answered {st}: {body[:200]!r}")
            first = False
            tick += POLL_S
            wait = tick - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                tick = time.monotonic()
        for n in pending:
            misses[n] += 1
        if i == 0:   # once visible on the admin API, the data plane serves it
            for n in polled:
                dc = Conn(srv.servers[n]["port"])
                st, h, body = dc.call("POST", "/v1/chat/completions", chat_body(rec["name"]))
                dc.close()
                if st != 200 or h.get("x-turnout-route") != rec["name"]:
                    raise Abort(f"{n}: the first route on the data plane: {st} {body[:200]!r}")
    took = time.monotonic() - t_start
    every = lags["node-b"] + lags["node-c"]
    revs = {}
    for n in names:
        st, _c, body = bench.http_get(srv.servers[n]["port"], "/readyz")
        revs[n] = json.loads(body).get("revision") if st == 200 else None
    out = {"writes": args.writes, "samples": len(every), "misses": misses, "poll_interval_ms": POLL_S * 1e3,
           "polls": polls, "seconds": round(took, 2), "visible_at_first_poll": at_first,
           "lag_ms": {"p50": pct(every, 50), "p99": pct(every, 99), "max": max(every) if every else None,
                      "mean": statistics.mean(every) if every else None},
           "lag_ms_by_node": {n: {"p50": pct(v, 50), "p99": pct(v, 99), "max": max(v) if v else None}
                              for n, v in lags.items()},
           "post_to_201_ms": {"p50": pct(post_ms, 50), "p99": pct(post_ms, 99), "max": max(post_ms)},
           "readyz_revisions": revs, "lags_ms": {n: [round(x, 3) for x in v] for n, v in lags.items()}}
    for n in names:
        srv.stop(n)
    return out


# ---------------------------------------------------------------- part 3: 100k routes mirrored

STAMP = re.compile(r'"(created_at|updated_at)":"([^"]*)"')


def template_record(etcd, prefix, rid):
    r = etcd.call("/v3/kv/range", {"key": b64(f"{prefix}records/routes/{rid}")})
    kvs = r.get("kvs") or []
    if len(kvs) != 1:
        raise Abort(f"the template route {rid} is not in etcd under {prefix}records/routes/: {str(r)[:300]}")
    return unb64(kvs[0]["value"]).decode()


def fill_routes(etcd, prefix, template, tmpl_id, tmpl_name, n):
    """N copies of TEMPLATE (a route record's JSON text as a node wrote it),
    each with a new id, name big-rNNNNNNN and created_at/updated_at, put
    TXN_OPS to a transaction. Returns (names, seconds)."""
    if template.count(f'"{tmpl_id}"') != 1 or template.count(f'"{tmpl_name}"') != 1:
        raise Abort(f"the template's id or name is not there exactly once: {template}")
    stamps = dict(STAMP.findall(template))
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    try:
        base = datetime.datetime.strptime(stamps["created_at"], fmt)
    except (KeyError, ValueError):
        raise Abort(f"the template's created_at is not {fmt}: {template}")
    head, tail = template.split(f'"{tmpl_id}"')
    names, batch, t0 = [], [], time.monotonic()
    for i in range(1, n + 1):
        name = f"big-r{i:07d}"
        rid = str(uuid.uuid4())
        stamp = (base - datetime.timedelta(seconds=n - i + 1)).strftime(fmt)
        text = (head + f'"{rid}"' + tail).replace(f'"{tmpl_name}"', f'"{name}"')
        text = STAMP.sub(lambda m: f'"{m.group(1)}":"{stamp}"', text)
        batch.append((f"{prefix}records/routes/{rid}", text.encode()))
        names.append(name)
        if len(batch) == TXN_OPS or i == n:
            etcd.put_many(batch)
            batch = []
        if i % 20000 == 0:
            log(f"  {i} routes put into etcd ({time.monotonic() - t0:.1f} s)")
    return names, time.monotonic() - t0


def fresh_node(srv, name, etcd, prefix, names, requests, rng):
    """Starts NAME on PREFIX with an empty data_dir and measures its load, its
    memory and RSS after REQUESTS requests over random NAMES."""
    cl = {"etcd": [etcd.url], "prefix": prefix}
    s = srv.turnout(name, bench.ALL_CPUS, cluster=cl, log_level="info", wait=False)
    pid, port = s["proc"].pid, s["port"]
    peak = {"VmRSS": 0, "samples": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak["VmRSS"] = max(peak["VmRSS"], proc_mem(pid).get("VmRSS", 0))
                peak["samples"] += 1
            except OSError:
                pass
            done.wait(0.02)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        t0 = s["started"]
        end = t0 + 120
        while True:
            st, _c, body = bench.http_get(port, "/readyz")
            if st == 200:
                t_ready = time.monotonic() - t0
                ready = json.loads(body)
                break
            if time.monotonic() > end or s["proc"].poll() is not None:
                raise Abort(f"{name}: /readyz never answered 200:\n" + srv.output(name))
            time.sleep(0.005)
        dc = Conn(port)
        first = rng.choice(names)
        while True:
            st, h, body = dc.call("POST", "/v1/chat/completions", chat_body(first))
            if st == 200:
                t_first = time.monotonic() - t0
                break
            if time.monotonic() > end:
                raise Abort(f"{name}: route {first} never served: {st} {body[:200]!r}\n" + srv.output(name))
            time.sleep(0.005)
    finally:
        done.set()
        th.join()
    srv.wait_turnout(name)
    mem_loaded = proc_mem(pid)
    statuses, t1 = {}, time.monotonic()
    for _ in range(requests):
        model = rng.choice(names)
        st, h, body = dc.call("POST", "/v1/chat/completions", chat_body(model))
        statuses[st] = statuses.get(st, 0) + 1
        if st != 200 or h.get("x-turnout-route") != model:
            raise Abort(f"{name}: {model}: {st} route {h.get('x-turnout-route')!r} {body[:200]!r}")
    took = time.monotonic() - t1
    dc.close()
    mem_after = proc_mem(pid)
    _st, _c, mbody = bench.http_get(port, "/metrics")
    series = [ln for ln in mbody.decode(errors="replace").splitlines() if ln and not ln.startswith("#")]
    st_ = os.stat(os.path.join(s["data_dir"], "data.mdb"))
    lines = [ln for ln in srv.output(name).splitlines() if "etcd:" in ln]
    out = {"prefix": prefix, "routes": len(names), "ready_s": round(t_ready, 3), "first_request_s": round(t_first, 3),
           "readyz": ready, "peak_vmrss_kb_while_loading": peak["VmRSS"], "peak_samples": peak["samples"],
           "mem_kb_loaded": mem_loaded, "requests": requests, "requests_s": round(took, 3), "statuses": statuses,
           "mem_kb_after_requests": mem_after, "metrics_samples": len(series),
           "metrics_samples_with_route_label": sum(1 for ln in series if 'route="' in ln),
           "lmdb_data_mdb_bytes": st_.st_size, "lmdb_data_mdb_allocated_bytes": st_.st_blocks * 512,
           "etcd_log": lines[-3:]}
    log(f"  {name}: {len(names)} routes: /readyz after {t_ready:.2f} s, first request served after {t_first:.2f} s; "
        f"VmRSS {mem_loaded['VmRSS'] / 1024:.1f} MB (anon {mem_loaded['RssAnon'] / 1024:.1f}, file "
        f"{mem_loaded['RssFile'] / 1024:.1f}), PSS {mem_loaded.get('Pss', 0) / 1024:.1f} MB; after {requests} "
        f"requests VmRSS {mem_after['VmRSS'] / 1024:.1f} MB, PSS {mem_after.get('Pss', 0) / 1024:.1f} MB; "
        f"data.mdb {st_.st_size / 1048576:.1f} MB ({st_.st_blocks * 512 / 1048576:.1f} MB allocated)")
    srv.stop(name)
    return out


def part_memory(args, srv, etcd, mport):
    log(f"part 3: a node's memory with {args.routes} routes mirrored from etcd")
    rng = random.Random(20261201)
    out = {}
    # the baseline's history: an empty store (memory read), then a provider and one route
    srv.turnout("node-w", bench.ALL_CPUS, cluster={"etcd": [etcd.url], "prefix": "/p3e/"})
    time.sleep(0.5)
    out["empty_store_idle_mem_kb"] = proc_mem(srv.servers["node-w"]["proc"].pid)
    w = srv.admin("node-w")
    admin_create(w, "/v1/providers", provider_body(mport), "node-w")
    admin_create(w, "/v1/model-routes", route_body("big-r0000000"), "node-w")
    w.close()
    srv.stop("node-w")
    # the template, written by a node as any route is
    prefix = "/p3/"
    srv.turnout("node-t", bench.ALL_CPUS, cluster={"etcd": [etcd.url], "prefix": prefix})
    t = srv.admin("node-t")
    admin_create(t, "/v1/providers", provider_body(mport), "node-t")
    rec = admin_create(t, "/v1/model-routes", route_body("big-r0000000"), "node-t")
    t.close()
    srv.stop("node-t")
    template = template_record(etcd, prefix, rec["id"])
    out["template_record"] = json.loads(template)
    out["template_bytes"] = len(template)
    log(f"  template ({len(template)} bytes): {template}")
    names, took = fill_routes(etcd, prefix, template, rec["id"], rec["name"], args.routes)
    names.append(rec["name"])
    count = etcd.count(f"{prefix}records/routes/")
    if count != args.routes + 1:
        raise Abort(f"etcd holds {count} routes under {prefix}, not {args.routes + 1}")
    st = etcd.status()
    out["fill"] = {"routes_put": args.routes, "txn_ops": TXN_OPS, "seconds": round(took, 2),
                   "routes_per_s": round(args.routes / took), "etcd_db_size_bytes": int(st.get("dbSize", 0)),
                   "etcd_revision": int(st["header"]["revision"])}
    log(f"  {args.routes} routes put into etcd in {took:.1f} s ({args.routes / took:.0f}/s); etcd db "
        f"{int(st.get('dbSize', 0)) / 1048576:.1f} MB")
    out["baseline"] = fresh_node(srv, "node-e", etcd, "/p3e/", ["big-r0000000"], args.requests, rng)
    out["big"] = fresh_node(srv, "node-f", etcd, prefix, names, args.requests, rng)
    b, e = out["big"], out["baseline"]
    out["added_kb"] = {
        "vmrss_loaded": b["mem_kb_loaded"]["VmRSS"] - e["mem_kb_loaded"]["VmRSS"],
        "pss_loaded": b["mem_kb_loaded"].get("Pss", 0) - e["mem_kb_loaded"].get("Pss", 0),
        "rss_anon_loaded": b["mem_kb_loaded"]["RssAnon"] - e["mem_kb_loaded"]["RssAnon"],
        "rss_file_loaded": b["mem_kb_loaded"]["RssFile"] - e["mem_kb_loaded"]["RssFile"],
        "vmrss_after_requests": b["mem_kb_after_requests"]["VmRSS"] - e["mem_kb_after_requests"]["VmRSS"],
        "pss_after_requests": b["mem_kb_after_requests"].get("Pss", 0) - e["mem_kb_after_requests"].get("Pss", 0),
        "rss_anon_after_requests": b["mem_kb_after_requests"]["RssAnon"] - e["mem_kb_after_requests"]["RssAnon"],
        "rss_file_after_requests": b["mem_kb_after_requests"]["RssFile"] - e["mem_kb_after_requests"]["RssFile"],
        "peak_vmrss_while_loading": b["peak_vmrss_kb_while_loading"] - e["peak_vmrss_kb_while_loading"],
    }
    return out


# ---------------------------------------------------------------- the summary

def fmt(x, nd=1, unit=""):
    return "-" if x is None else f"{x:.{nd}f}{unit}"


def summary(doc):
    lines = [f"turnout cluster bench {doc['timestamp']}{' (--quick)' if doc['quick'] else ''}: "
             f"turnout {doc['machine'].get('turnout')} commit {doc['machine'].get('turnout_commit')}"
             f"{' (tree dirty)' if doc['machine'].get('turnout_tree_dirty') else ''}"]
    p1 = doc.get("redis")
    if p1:
        m, a = p1["medians"], p1["added"]
        lines += ["", f"1. Redis-backed key budget vs a local one ({doc['params']['rounds']} rounds, "
                      f"{doc['params']['duration']} s runs at 64 connections, {doc['params']['lat_duration']} s at 1; "
                      "medians; 'added' = median of the per-round differences redis - local)",
                  f"   {'':34} {'local':>9} {'redis':>9} {'added':>9}"]

        def row(title, lab, key, diffkey=None, nd=1):
            lo, re_ = m[f"local_{lab}"][key], m[f"redis_{lab}"][key]
            ad = a[diffkey]["median"] if diffkey else None
            lines.append(f"   {title:34} {fmt(lo, nd):>9} {fmt(re_, nd):>9} {fmt(ad, nd):>9}")
        row("metered key, CPU us/req (64 conn)", "metered_64", "cpu_us_per_req", "metered_cpu_us_per_req")
        row("metered key, req/s (64 conn)", "metered_64", "rps", None, 0)
        row("plain key, CPU us/req (64 conn)", "plain_64", "cpu_us_per_req", "plain_cpu_us_per_req")
        row("metered, latency mean us (1 conn)", "metered_1", "latency_mean_us", "metered_latency_mean_us_1conn", 0)
        row("metered, latency p50 us (1 conn)", "metered_1", "latency_p50_us", "metered_latency_p50_us_1conn", 0)
        row("metered, latency p99 us (1 conn)", "metered_1", "latency_p99_us", "metered_latency_p99_us_1conn", 0)
        row("metered, latency mean us (64 conn)", "metered_64", "latency_mean_us",
            "metered_latency_mean_us_64conn", 0)
        row("metered, latency p99 us (64 conn)", "metered_64", "latency_p99_us", "metered_latency_p99_us_64conn", 0)
        rm, rp = m["redis_metered_64"], m["redis_plain_64"]
        lines += [f"   per-round added CPU, metered: {a['metered_cpu_us_per_req']['rounds']} us; "
                  f"plain: {a['plain_cpu_us_per_req']['rounds']} us",
                  f"   local rounds metered {m['local_metered_64']['cpu_us_per_req_rounds']}, redis rounds metered "
                  f"{rm['cpu_us_per_req_rounds']}",
                  f"   redis-server CPU per request: metered {fmt(rm['redis_cpu_us_per_req'])} us, plain "
                  f"{fmt(rp['redis_cpu_us_per_req'])} us; EVALSHA per metered request {fmt(rm['redis_evalsha_per_req'], 2)}"
                  f" ({fmt(rm['redis_usec_per_evalsha'], 1)} us each by Redis's own count); run by the scripts per "
                  f"metered request: " + ", ".join(f"{c} {v:.2f}" for c, v in rm["redis_script_commands_per_req"].items()
                                                   if v >= 0.01),
                  f"   minor page faults per metered request: local {fmt(m['local_metered_64']['minflt_per_req'], 3)}, "
                  f"redis {fmt(rm['minflt_per_req'], 3)}",
                  f"   plain key through the Redis node: EVALSHA calls during its measured runs: "
                  f"{p1['plain_key_evalsha_calls']} (expected 0)",
                  f"   runs with errors: {p1['invalid_runs']}; flagged CONTENDED (other processes > 10% of a core): "
                  f"{p1['contended_runs']} of {len(p1['rounds']) * 6}",
                  f"   t-redis metrics at the end: {p1['t_redis_metrics']}"]
    p2 = doc.get("etcd_lag")
    if p2:
        lag = p2["lag_ms"]
        lines += ["", f"2. etcd propagation lag: {p2['writes']} route creates on A, {p2['samples']} samples (B and C), "
                      f"polled every {p2['poll_interval_ms']:.0f} ms",
                  f"   lag from A's 201 to visible: p50 {fmt(lag['p50'], 2)} ms, p99 {fmt(lag['p99'], 2)} ms, "
                  f"max {fmt(lag['max'], 2)} ms (mean {fmt(lag['mean'], 2)}); misses (> {LAG_BOUND_S:.0f} s): "
                  f"{sum(p2['misses'].values())}; already there at the first poll: {p2['visible_at_first_poll']}",
                  "   by node: " + "; ".join(f"{n[-1].upper()} p50 {fmt(v['p50'], 2)} p99 {fmt(v['p99'], 2)} "
                                             f"max {fmt(v['max'], 2)} ms" for n, v in p2["lag_ms_by_node"].items()),
                  f"   A's POST to 201: p50 {fmt(p2['post_to_201_ms']['p50'], 2)} ms, p99 "
                  f"{fmt(p2['post_to_201_ms']['p99'], 2)} ms, max {fmt(p2['post_to_201_ms']['max'], 2)} ms"]
    p3 = doc.get("memory")
    if p3:
        b, e, ad = p3["big"], p3["baseline"], p3["added_kb"]

        def mb(kb):
            return f"{kb / 1024:.1f} MB"
        lines += ["", f"3. a fresh node loading {b['routes']} routes from etcd (a {p3['template_bytes']}-byte record "
                      f"each; put in {p3['fill']['seconds']} s, {p3['fill']['routes_per_s']}/s)",
                  f"   {'':36} {'1 route':>10} {str(b['routes']) + ' routes':>14} {'added':>10}",
                  f"   {'start to /readyz 200':36} {e['ready_s']:>9.2f}s {b['ready_s']:>13.2f}s",
                  f"   {'start to first request served':36} {e['first_request_s']:>9.2f}s {b['first_request_s']:>13.2f}s"]
        for title, k1, k2, key in (("VmRSS after load", "mem_kb_loaded", "VmRSS", "vmrss_loaded"),
                                   ("  RssAnon", "mem_kb_loaded", "RssAnon", "rss_anon_loaded"),
                                   ("  RssFile (LMDB map, binary, libs)", "mem_kb_loaded", "RssFile",
                                    "rss_file_loaded"),
                                   ("PSS after load", "mem_kb_loaded", "Pss", "pss_loaded"),
                                   (f"VmRSS after {b['requests']} requests", "mem_kb_after_requests", "VmRSS",
                                    "vmrss_after_requests"),
                                   ("  RssAnon", "mem_kb_after_requests", "RssAnon", "rss_anon_after_requests"),
                                   ("  RssFile", "mem_kb_after_requests", "RssFile", "rss_file_after_requests"),
                                   (f"PSS after {b['requests']} requests", "mem_kb_after_requests", "Pss",
                                    "pss_after_requests")):
            lines.append(f"   {title:36} {mb(e[k1].get(k2, 0)):>10} {mb(b[k1].get(k2, 0)):>14} {mb(ad[key]):>10}")
        lines += [f"   {'peak VmRSS while loading':36} {mb(e['peak_vmrss_kb_while_loading']):>10} "
                  f"{mb(b['peak_vmrss_kb_while_loading']):>14} {mb(ad['peak_vmrss_while_loading']):>10}",
                  f"   {'VmHWM (peak RSS) after requests':36} {mb(e['mem_kb_after_requests'].get('VmHWM', 0)):>10} "
                  f"{mb(b['mem_kb_after_requests'].get('VmHWM', 0)):>14}",
                  f"   {'LMDB data.mdb (apparent)':36} {e['lmdb_data_mdb_bytes'] / 1048576:>8.1f}MB "
                  f"{b['lmdb_data_mdb_bytes'] / 1048576:>12.1f}MB",
                  f"   {'LMDB data.mdb (allocated)':36} {e['lmdb_data_mdb_allocated_bytes'] / 1048576:>8.1f}MB "
                  f"{b['lmdb_data_mdb_allocated_bytes'] / 1048576:>12.1f}MB",
                  f"   per route: {ad['vmrss_after_requests'] * 1024 / b['routes']:.0f} B of VmRSS after requests, "
                  f"{(b['lmdb_data_mdb_allocated_bytes'] - e['lmdb_data_mdb_allocated_bytes']) / b['routes']:.0f} B "
                  f"of LMDB; a node on an empty store, idle: VmRSS {mb(p3['empty_store_idle_mem_kb']['VmRSS'])}, "
                  f"PSS {mb(p3['empty_store_idle_mem_kb'].get('Pss', 0))}",
                  f"   {b['requests']} requests over random routes took {b['requests_s']:.2f} s "
                  f"({e['requests_s']:.2f} s on the 1-route node); /metrics samples after them: "
                  f"{b['metrics_samples']} ({b['metrics_samples_with_route_label']} with a route label) against "
                  f"{e['metrics_samples']} ({e['metrics_samples_with_route_label']})"]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short trial: 3 rounds of 2 s, 30 writes, 10k routes")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--make", action="store_true", help="run make in the source tree first")
    ap.add_argument("--parts", default="1,2,3", help="which parts, comma-separated")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int)
    ap.add_argument("--lat-duration", type=int)
    ap.add_argument("--writes", type=int)
    ap.add_argument("--routes", type=int)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs, data) when it ends")
    args = ap.parse_args()
    q = args.quick
    for k, full, quick in (("rounds", 5, 3), ("duration", 5, 2), ("lat_duration", 3, 2), ("writes", 100, 30),
                           ("routes", 100000, 10000)):
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    if args.rounds < 1 or args.duration < 1 or args.writes < 1 or args.routes < 1:
        ap.error("rounds, duration, writes and routes must be at least 1")
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    args.build = os.path.abspath(args.build)
    if args.make:
        subprocess.run(["make", "-C", ROOT], check=True)
    for tool, path in (("turnout", os.path.join(args.build, "turnout")), ("mockllm", os.path.join(args.build, "mockllm")),
                       ("etcd", ETCD), ("redis-server", REDIS), ("wrk", shutil.which("wrk") or "/usr/bin/wrk")):
        if not os.access(path, os.X_OK):
            print(f"cluster bench: {tool} not found at {path}" + (" (make builds it)" if tool in ("turnout", "mockllm")
                                                                else ""), file=sys.stderr)
            return 2
    if bench.PIN:
        os.sched_setaffinity(0, {int(bench.CLIENT_CPU)})
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bench._on_signal)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = tempfile.mkdtemp(prefix="turnout-cluster-bench-")
    doc = {"timestamp": stamp, "quick": q,
           "params": {k: getattr(args, k) for k in ("rounds", "duration", "lat_duration", "writes", "routes",
                                                    "requests")},
           "parts": sorted(parts)}
    t_all = time.monotonic()
    try:
        bindir = os.path.join(tmp, "bin")
        os.makedirs(bindir)
        binaries = {}
        for b in ("turnout", "mockllm"):
            binaries[b] = shutil.copy2(os.path.join(args.build, b), os.path.join(bindir, b))
        with open(binaries["turnout"], "rb") as f:
            doc["turnout_sha256"] = hashlib.sha256(f.read()).hexdigest()
        doc["machine"] = bench.machine_info(args.build)
        doc["machine"]["etcd"] = subprocess.run([ETCD, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        doc["machine"]["redis"] = subprocess.run([REDIS, "--version"], capture_output=True, text=True).stdout.strip()
        srv = Servers(tmp, binaries)
        mport = None
        if "1" in parts:
            doc["redis"], mport = part_redis(args, srv)
        if mport is None:
            mport = srv.mock(bench.SERVER_CPU)
        if "2" in parts or "3" in parts:
            etcd = srv.etcd(bench.ALL_CPUS)
            if "2" in parts:
                doc["etcd_lag"] = part_lag(args, srv, etcd, mport)
            if "3" in parts:
                doc["memory"] = part_memory(args, srv, etcd, mport)
        doc["seconds"] = round(time.monotonic() - t_all, 1)
        with open("/proc/loadavg") as f:
            doc["machine"]["loadavg_at_end"] = f.read().split()[:3]
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        path = os.path.join(HERE, "results", f"cluster-{stamp}.json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        log("")
        log(summary(doc))
        log(f"\n{doc['seconds']:.0f} s; JSON: {os.path.relpath(path, ROOT)}")
        return 0
    except Abort as e:
        print(f"cluster bench: ABORTED: {e}", file=sys.stderr)
        return 2
    finally:
        bench.stop_all()
        if args.keep:
            print(f"cluster bench: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
