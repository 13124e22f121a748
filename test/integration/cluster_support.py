"""cluster_support.py - what the cluster tests share (SPEC 10): Debian's etcd
and redis-server on free loopback ports, and turnout nodes that share one
etcd, all started in a test's Env and stopped by PID when it closes.

Only the standard library: etcd is driven through its HTTP/JSON gateway
(/v3/kv/..., keys and values base64), Redis through RESP on a raw socket.

    etcd = start_etcd(env)
    m = env.mock()
    a, b, c = start_nodes(env, etcd, seed_for(m, routes=[...]))
    lag = wait_for(lambda: route_on(b, "x") is not None, 1, "x on b")
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import harness
from harness import Proc, deep_merge, free_port

ETCD = "/usr/bin/etcd"
REDIS = "/usr/bin/redis-server"
PREFIX = "/turnout/"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s or "")


def prefix_end(prefix):
    """etcd's range_end for every key that starts with PREFIX."""
    p = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\0"
    p[-1] += 1
    return bytes(p)


def wait_for(pred, timeout, what, step=0.005):
    """Polls PRED until it returns a true value, for at most TIMEOUT seconds:
    returns the seconds it took (the measured lag); fails naming WHAT."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = None
    while True:
        try:
            if pred():
                return time.monotonic() - t0
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:   # a node between states
            last = e
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.1f s%s" % (what, timeout, " (last error: %r)" % last if last else ""))
        time.sleep(step)


class _Cleanup:
    """Registered in an Env before a server, so that Env.close (which stops
    its processes last-started first) reaches it after the server is down:
    removes the server's data directory (etcd preallocates 64 MB of WAL).
    The server's logs stay in the test's directory."""

    def __init__(self, path):
        self.path = path
        self.proc = None

    def stop(self, timeout=10):
        shutil.rmtree(self.path, ignore_errors=True)
        return 0

    def output(self):
        return ""


class Server(Proc):
    """A server process that can be stopped and started again with the same
    arguments (its data directory and ports stay); its stdout and stderr are
    appended to NAME.out / NAME.err in the test's directory across restarts."""

    def __init__(self, argv, workdir, name):
        self.argv, self.workdir, self.name = argv, workdir, name
        self.err_path = os.path.join(workdir, name + ".err")
        self.out_path = os.path.join(workdir, name + ".out")
        self.proc = None
        self.start()

    def spawn(self):
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, start_new_session=True)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL by PID: a crash, nothing flushed."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self):
        """SIGSTOP by PID: the process hangs with its sockets open (a peer
        that stopped answering, unlike a crash, closes nothing)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout=10):
        """SIGTERM by PID (SIGKILL after TIMEOUT)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)     # a paused one could not act on SIGTERM
        return super().stop(timeout)

    def start(self, timeout=30):
        """(Re)starts the process and waits until it answers (ready())."""
        assert not self.running(), "%s is running already" % self.name
        self.spawn()
        deadline = time.time() + timeout
        while True:
            try:
                if self.ready():
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("%s did not start: %s" % (self.name, self.output()[-3000:]))
            time.sleep(0.05)

    def ready(self):
        raise NotImplementedError


class Etcd(Server):
    """A one-member etcd (Debian's /usr/bin/etcd, 3.4) on free loopback ports
    (client and peer, both 127.0.0.1), its data in WORKDIR/NAME-data. Driven
    through the v3 HTTP/JSON gateway only."""

    def __init__(self, workdir, name="etcd"):
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = os.path.join(workdir, name + "-data")
        self.url = "http://127.0.0.1:%d" % self.client_port
        peer = "http://127.0.0.1:%d" % self.peer_port
        argv = [ETCD, "--name", name, "--data-dir", self.data_dir,
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "%s=%s" % (name, peer), "--initial-cluster-state", "new",
                "--initial-cluster-token", "turnout-it-%d" % self.client_port,
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        super().__init__(argv, workdir, name)

    def call(self, path, body, timeout=5):
        """POST BODY (JSON) to the gateway's PATH ("/v3/kv/range"): the decoded answer."""
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise RuntimeError("etcd %s: %d %s" % (path, e.code, e.read()[:500].decode("utf-8", "replace")))

    def ready(self):
        return "header" in self.call("/v3/kv/range", {"key": b64("/")}, timeout=1)

    def revision(self):
        """etcd's current revision (from a range's header)."""
        return int(self.call("/v3/kv/range", {"key": b64("/"), "count_only": True})["header"]["revision"])

    def compact(self, revision, physical=True):
        """Compacts the key-value history up to REVISION (physical: waits until it is done)."""
        return self.call("/v3/kv/compaction", {"revision": int(revision), "physical": physical})

    def get_prefix(self, prefix=PREFIX):
        """{key: value bytes} of every key under PREFIX."""
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        return {unb64(kv["key"]).decode(): unb64(kv.get("value")) for kv in r.get("kvs", [])}

    def count_prefix(self, prefix=PREFIX):
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "count_only": True})
        return int(r.get("count", 0))

    def put(self, key, value):
        """A plain put: the new revision."""
        return int(self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})["header"]["revision"])

    def delete_prefix(self, prefix):
        r = self.call("/v3/kv/deleterange", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        return int(r.get("deleted", 0))


def resp_encode(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class _RespReader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("not RESP: %r" % line[:100])


class RedisError(Exception):
    pass


class Redis(Server):
    """Debian's redis-server on a free loopback port, no config file, no
    persistence (--save '' --appendonly no), its directory WORKDIR/NAME-data."""

    def __init__(self, workdir, name="redis"):
        self.port = free_port()
        self.dir = os.path.join(workdir, name + "-data")
        os.makedirs(self.dir, exist_ok=True)
        argv = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir]
        super().__init__(argv, workdir, name)

    def command(self, *args, timeout=5):
        """One command on a new connection: its reply (str, int, bytes, list,
        None; an error reply is raised as RedisError)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(resp_encode(*args))
            r = _RespReader(s).read()
        finally:
            s.close()
        if isinstance(r, RedisError):
            raise r
        return r

    def ready(self):
        return self.command("PING", timeout=1) == "PONG"


def start_etcd(env, name="etcd"):
    """An Etcd in ENV, stopped (and its data removed) when ENV closes."""
    env.procs.append(_Cleanup(os.path.join(env.dir, name + "-data")))
    e = Etcd(env.dir, name)
    env.procs.append(e)
    return e


def start_redis(env, name="redis"):
    env.procs.append(_Cleanup(os.path.join(env.dir, name + "-data")))
    r = Redis(env.dir, name)
    env.procs.append(r)
    return r


# --- turnout nodes --------------------------------------------------------

def cluster_config(etcd, prefix=PREFIX, **more):
    """The config fragment that puts a node into ETCD's cluster."""
    return deep_merge({"cluster": {"etcd": [etcd.url], "prefix": prefix}}, more)


def start_node(env, etcd, seed, name, config=None, prefix=PREFIX, build=None):
    """One turnout node of ETCD's cluster: its own name (so its own data dir,
    NAME-data, unless CONFIG sets data_dir), listen and admin ports; the
    run's admin key (harness.ADMIN_KEY)."""
    t = env.turnout(seed, deep_merge(cluster_config(etcd, prefix), config or {}), name=name, build=build)
    t.node_name = name
    return t


def start_nodes(env, etcd, seed, names=("node-a", "node-b", "node-c"), config=None, prefix=PREFIX):
    """Nodes of ETCD's cluster, started one after the other (the first to
    start finds etcd empty and imports SEED into it; the others find records
    there and load them)."""
    return [start_node(env, etcd, seed, n, config, prefix) for n in names]


def start_nodes_together(env, etcd, seed, names, config=None, prefix=PREFIX):
    """Nodes started at the same moment (threads released together)."""
    out, errs = {}, []
    gate = threading.Barrier(len(names))

    def one(n):
        try:
            gate.wait(10)
            out[n] = start_node(env, etcd, seed, n, config, prefix)
        except Exception as e:   # noqa: B902 - reported below
            errs.append("%s: %r" % (n, e))

    ths = [threading.Thread(target=one, args=(n,)) for n in names]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)
    assert not errs, errs
    return [out[n] for n in names]


def label(t):
    return getattr(t, "node_name", "turnout").replace("node-", "").upper()


def readyz(t, timeout=5):
    """GET /readyz on the data port: (status, decoded body or raw bytes)."""
    st, h, body = t.request("GET", "/readyz", timeout=timeout)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def metrics_text(t):
    st, h, body = t.request("GET", "/metrics")
    assert st == 200, (st, body[:300])
    return body.decode()


def metrics(t):
    """{name: value} of the unlabelled samples of T's /metrics, and
    {name{labels}: value} of the labelled ones."""
    out = {}
    for line in metrics_text(t).splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def list_all(t, collection="/v1/model-routes"):
    """Every record of an admin collection on T (all pages, disabled ones too)."""
    out, cursor = [], None
    while True:
        q = "?limit=1000" + ("&include_disabled=true" if collection == "/v1/model-routes" else "")
        st, page = t.admin("GET", collection + q + ("&cursor=" + cursor if cursor else ""))
        assert st == 200, (label(t), collection, st, page)
        out += page["data"]
        if not page.get("has_more"):
            return out
        cursor = page["next_cursor"]


def route_names(t):
    return sorted(r["name"] for r in list_all(t))


def has_record(t, collection, rid):
    """Whether T's admin API finds record RID (GET by id: 200, else 404)."""
    st, body = t.admin("GET", "%s/%s" % (collection, rid), timeout=5)
    assert st in (200, 404), (label(t), rid, st, body)
    return st == 200


def export(t, check=True):
    """`turnout export -c` on T's config: (returncode, stdout bytes, stderr bytes)."""
    p = subprocess.run([os.path.join(harness.BUILD, "turnout"), "export", "-c", t.config_path],
                       capture_output=True, timeout=30)
    if check:
        assert p.returncode == 0, (label(t), p.returncode, p.stderr.decode("utf-8", "replace"))
    return p.returncode, p.stdout, p.stderr


def import_seed(t, path):
    """`turnout import -c` on T's config with the seed file PATH."""
    return subprocess.run([os.path.join(harness.BUILD, "turnout"), "import", "-c", t.config_path, path],
                          capture_output=True, timeout=60)


def route(name, provider="mock", model="mock-large", **extra):
    r = {"name": name, "targets": [{"provider": provider, "model": model}]}
    r.update(extra)
    return r


def node_logs(t, tail=3000):
    return "== %s (%s)\n%s" % (label(t), t.config_path, t.output()[-tail:])


def same_exports(env, nodes, what):
    """`turnout export` on every node of NODES, each kept in the test's
    directory (export-WHAT-NODE.json; searched for the canary at the end):
    fails with a diff unless all are byte for byte the same. Returns the
    parsed export."""
    import difflib
    outs = []
    for t in nodes:
        out = export(t)[1]
        with open(os.path.join(env.dir, "export-%s-%s.json" % (what, label(t))), "wb") as f:
            f.write(out)
        outs.append(out)
    for t, out in zip(nodes[1:], outs[1:]):
        if out != outs[0]:
            a = json.dumps(json.loads(outs[0]), indent=1, sort_keys=True).splitlines()
            b = json.dumps(json.loads(out), indent=1, sort_keys=True).splitlines()
            diff = "\n".join(difflib.unified_diff(a, b, label(nodes[0]), label(t), lineterm="", n=2))
            raise AssertionError("%s: the export of %s differs from %s's:\n%s" % (
                what, label(t), label(nodes[0]), diff[:4000] or "(same JSON, different bytes)"))
    return json.loads(outs[0])
