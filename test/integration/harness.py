"""harness.py - starts the real build/turnout and build/mockllm on free loopback ports for the tests."""
import collections
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import traceback

BUILD = os.environ.get("TURNOUT_BUILD", "build")
# The optimised build, for the few tests that measure memory (a sanitizer's
# shadow memory and quarantine would swamp the figure). The behaviour itself
# is tested under the sanitizers everywhere else.
RELEASE_BUILD = os.environ.get("TURNOUT_RELEASE_BUILD", "build")
ADMIN_KEY = "test-admin-key-0123456789"
# Every turnout of the run has this provider key (MOCK_API_KEY, the seeds'
# api_key_env), and tests put it into stored providers. It must reach the
# mock upstreams and nothing else: every reply from turnout and every file
# a test leaves (logs, exports) is searched for it (Env.close, check_reply).
CANARY = "sk-canary-7f3e9d2b41c8a6e05d17"
MOCK_PORTS = set()
# upstream.client for every turnout ("" = the default, native): the suite's
# upstream tests run once more through libcurl (scripts/run-tests.sh).
UPSTREAM_CLIENT = ""
# TLS on the data port of every turnout the harness starts (run.py --tls):
# {"dir", "root", "cert", "key", "context"}: a private CA, an intermediate
# and a server certificate for 127.0.0.1 and localhost, made once per run by
# tls_setup, and the client context that trusts the CA; None for a plain
# run. A test that configures its own "tls" keeps it. Mock upstreams and
# the admin port stay plain.
TLS = None
# The data ports that speak TLS now, and the client context each is reached
# with (the run's CA; unverified for a test's own certificate, which is the
# test's to check). Set when a turnout starts on the port.
_TLS_PORTS = {}


def _openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args[0], p.stderr.decode(errors="replace")))


def make_tls_files(d, name="srv", cn="turnout harness"):
    """Writes into D a root CA and an intermediate signed by it (once: a
    later call reuses them) and an ECDSA P-256 server certificate NAME for
    127.0.0.1 and localhost (subject CN) signed by the intermediate;
    returns {"dir", "root", "cert" (the server certificate and the
    intermediate, one chain file NAME-chain.pem), "key"}."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if not os.path.exists(os.path.join(d, "root.crt")):
        with open(os.path.join(d, "int.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
        with open(os.path.join(d, "srv.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-x509", *ec, "-keyout", "root.key", "-out", "root.crt", "-days", "3",
                 "-subj", "/CN=turnout harness root", "-addext", "basicConstraints=critical,CA:true",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        _openssl("req", *ec, "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=turnout harness intermediate",
                 cwd=d)
        _openssl("x509", "-req", "-in", "int.csr", "-CA", "root.crt", "-CAkey", "root.key", "-CAcreateserial",
                 "-out", "int.crt", "-days", "3", "-extfile", "int.ext", cwd=d)
    _openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", "int.crt", "-CAkey", "int.key", "-CAcreateserial",
             "-out", name + ".crt", "-days", "3", "-extfile", "srv.ext", cwd=d)
    with open(os.path.join(d, name + "-chain.pem"), "w") as f:
        f.write(open(os.path.join(d, name + ".crt")).read() + open(os.path.join(d, "int.crt")).read())
    return {"dir": d, "root": os.path.join(d, "root.crt"), "cert": os.path.join(d, name + "-chain.pem"),
            "key": os.path.join(d, name + ".key")}


def tls_setup():
    """Turns TLS on for the turnouts of this run (run.py --tls): makes the
    run's PKI in a temp dir of its own (removed by tls_teardown)."""
    global TLS
    TLS = make_tls_files(tempfile.mkdtemp(prefix="turnout-it-tls-"))
    TLS["context"] = ssl.create_default_context(cafile=TLS["root"])
    return TLS


def tls_teardown():
    global TLS
    if TLS is not None:
        shutil.rmtree(TLS["dir"], ignore_errors=True)
        TLS = None


def url(port, path=""):
    """The URL of PATH on a turnout's PORT: https:// when the port speaks TLS."""
    return "%s://127.0.0.1:%d%s" % ("https" if port in _TLS_PORTS else "http", port, path)


def curl_tls_args(port):
    """What curl needs to trust PORT's certificate (nothing for a plain port)."""
    if port not in _TLS_PORTS:
        return []
    return ["--cacert", TLS["root"]] if TLS is not None and _TLS_PORTS[port] is TLS["context"] else ["-k"]


def client_env():
    """The environment of a client program (node and the SDKs): it trusts
    the run's CA in a --tls run; os.environ as it is otherwise."""
    env = dict(os.environ)
    if TLS is not None:
        env["NODE_EXTRA_CA_CERTS"] = TLS["root"]
    return env


class TLSSocket:
    """A client TLS connection (OpenSSL through memory BIOs) that a test uses
    as it would the plain socket under it: sendall, recv (with MSG_PEEK),
    settimeout, setsockopt, shutdown, close. The handshake is done when it
    is made. What it adds to the plain socket's behaviour:
      - recv returns b"" at the server's close_notify and at a TCP close
        without one (as Python's SSLSocket does, suppress_ragged_eofs);
        close_notify says which it was. A reset is ConnectionResetError,
        a timeout socket.timeout, as on the plain socket.
      - shutdown(SHUT_WR) sends close_notify, then half-closes the TCP
        connection: the client is done sending and reads on (TLS 1.3 allows
        it, and OpenSSL reads after its close_notify is sent).
      - close() closes the TCP connection without close_notify (as
        SSLSocket.close does): an abrupt hang-up.
    One thread may read while another writes (a pipelining test sends from
    a thread of its own): OpenSSL's object is used under a lock, and the
    bytes it makes are sent in the order it made them."""

    def __init__(self, sock, ctx, server_hostname="localhost"):
        self.sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_side=False, server_hostname=server_hostname)
        self._lock = threading.Lock()        # the SSLObject and its BIOs
        self._send_lock = threading.Lock()   # the order of records on the socket
        self._plain = b""                    # decrypted, not yet returned (MSG_PEEK leaves it here)
        self._eof = False
        self.close_notify = False
        while True:
            with self._lock:
                try:
                    self._tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
            self._flush()
            if done:
                return
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection during the TLS handshake")
            with self._lock:
                self._in.write(data)

    def _flush(self):
        with self._send_lock:
            with self._lock:
                out = self._out.read()
            if out:
                self.sock.sendall(out)

    def sendall(self, data):
        with self._send_lock:
            with self._lock:
                self._tls.write(data)
                out = self._out.read()
            self.sock.sendall(out)

    def _read_buffered(self):
        """Decrypts what the incoming BIO holds into _plain; sets _eof at
        the server's close_notify or a TCP end without one."""
        with self._lock:
            while True:
                try:
                    data = self._tls.read(65536)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self.close_notify = self._eof = True
                    break
                except ssl.SSLEOFError:
                    self._eof = True
                    break
                if not data:
                    self._eof = True
                    break
                self._plain += data
            more = self._out.pending
        if more:
            self._flush()

    def recv(self, n, flags=0):
        if flags & ~socket.MSG_PEEK:
            raise ValueError("TLSSocket.recv: only MSG_PEEK")
        while not self._plain and not self._eof:
            self._read_buffered()
            if self._plain or self._eof:
                break
            raw = self.sock.recv(65536)
            with self._lock:
                if raw:
                    self._in.write(raw)
                else:
                    self._in.write_eof()
        out = self._plain[:n]
        if not flags & socket.MSG_PEEK:
            self._plain = self._plain[n:]
        return out

    def shutdown(self, how):
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            # what has arrived is decrypted first: OpenSSL's shutdown looks for
            # the server's close_notify, and must find no data there to drop
            self._read_buffered()
            with self._send_lock:
                with self._lock:
                    try:
                        self._tls.unwrap()
                    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                        pass
                    out = self._out.read()
                self.sock.sendall(out)
        self.sock.shutdown(how)

    def close(self):
        self.sock.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def gettimeout(self):
        return self.sock.gettimeout()

    def setsockopt(self, *args):
        self.sock.setsockopt(*args)

    def fileno(self):
        return self.sock.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(port, timeout=10, rcvbuf=None, nodelay=False):
    """A connection to PORT on 127.0.0.1 for a test to speak raw HTTP on: a
    plain socket, or a TLSSocket with its handshake done when PORT is a
    turnout data port that speaks TLS. RCVBUF (SO_RCVBUF) is set before the
    connect, so the window is what the test asked for."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = _TLS_PORTS.get(port)
        return TLSSocket(s, ctx) if ctx is not None else s
    except BaseException:
        s.close()
        raise


def http_connection(port, timeout=10):
    """An http.client connection to PORT on 127.0.0.1, HTTPS when the port speaks TLS."""
    ctx = _TLS_PORTS.get(port)
    if ctx is not None:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def check_reply(port, *parts):
    """Fails when a reply from anything but a mock upstream shows the canary key."""
    if port in MOCK_PORTS:
        return
    for part in parts:
        text = part if isinstance(part, (bytes, bytearray)) else str(part).encode()
        assert CANARY.encode() not in text, "the canary provider key was in a reply from port %d" % port


SDK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk")


def sdk(script, spec, timeout=60):
    """Runs test/sdk/SCRIPT (a client built on an official SDK, installed by
    scripts/install-deps.sh) with SPEC as its JSON argument; returns the JSON
    line it prints."""
    p = subprocess.run(["node", os.path.join(SDK_DIR, script), json.dumps(spec)], capture_output=True,
                       timeout=timeout, env=client_env())
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


# Ports are drawn from a generator of their own, so that a caller seeding
# the random module (test/fuzz/upstream_fuzz.py) does not get the same ports
# on every run.
_PORT_RNG = random.Random()


# The ports handed out lately: one is not handed out again until 4,096 others
# have been, since a port that binds now may belong to a server that has not
# bound it yet (a turnout's data and admin ports are drawn one after the other,
# and a draw of the same port twice made the admin listener fail to bind).
_PORTS_GIVEN = collections.deque(maxlen=4096)


def free_port():
    """A port that binds now, taken below the kernel's ephemeral range: a port
    from bind(0) is released before the server binds it, and in between any
    outgoing connection (a proxied request, curl) may take it as its source."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(200):
        port = _PORT_RNG.randrange(10000, max(low, 10001))
        if port in _PORTS_GIVEN:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            _PORTS_GIVEN.append(port)
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port below %d" % low)


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def raw_exchange(port, data, timeout=5, pause_after_send=0):
    """Sends DATA on a new connection and reads until the server closes it (or
    TIMEOUT): returns (bytes, closed_by_server)."""
    s = connect(port, timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return out, True
            if not chunk:
                check_reply(port, out)
                return out, True
            out += chunk
        check_reply(port, out)
        return out, False
    finally:
        s.close()


def read_to_close(s, timeout=3.0):
    """Everything S receives until the peer closes: (bytes, closed, reset)."""
    data, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, False, False
        except ConnectionResetError:
            return data, True, True
        if not chunk:
            return data, True, False
        data += chunk
    return data, False, False


def status_of(raw):
    """The status code of a raw HTTP response, or 0."""
    if not raw.startswith(b"HTTP/1."):
        return 0
    return int(raw.split(b" ", 2)[1])


def chat_request(body, version="1.1", extra=b""):
    """A raw POST /v1/chat/completions with a JSON BODY (dict)."""
    data = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/%s\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (version.encode(), len(data), extra)) + data


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a new connection: (status, lower-cased headers, body bytes)."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    c = http_connection(port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        check_reply(port, data, r.getheaders())
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


class Proc:
    """A started process whose stderr goes to a file; stopped by PID."""

    def __init__(self, argv, workdir, name, env=None):
        self.err_path = os.path.join(workdir, name + ".err")
        self.out_path = os.path.join(workdir, name + ".out")
        self.proc = subprocess.Popen(argv, stdout=open(self.out_path, "wb"), stderr=open(self.err_path, "wb"),
                                     env=env, start_new_session=True)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self):
        text = ""
        for p in (self.out_path, self.err_path):
            if os.path.exists(p):
                text += open(p, "rb").read().decode("utf-8", "replace")
        return text


class Mock(Proc):
    def __init__(self, workdir, *flags, name="mock"):
        port_file = os.path.join(workdir, name + ".port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        super().__init__([os.path.join(BUILD, "mockllm"), "--port", "0", "--port-file", port_file,
                          "--name", name, *flags], workdir, "mockllm-" + name)
        deadline = time.time() + 5
        while not os.path.exists(port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("mockllm did not start: " + self.output())
            time.sleep(0.02)
        self.port = int(open(port_file).read())
        MOCK_PORTS.add(self.port)
        self.base_url = "http://127.0.0.1:%d/v1" % self.port

    def log(self):
        return json.loads(http_request(self.port, "GET", "/_mock/log")[2])

    def clear(self):
        http_request(self.port, "DELETE", "/_mock/log")

    def stats(self):
        return json.loads(http_request(self.port, "GET", "/_mock/stats")[2])


class Turnout(Proc):
    def __init__(self, workdir, seed, config=None, env=None, name="turnout", build=None):
        self.port = free_port()
        self.admin_port = free_port()
        cfg = {
            "listen": "127.0.0.1:%d" % self.port, "workers": 2, "data_dir": os.path.join(workdir, name + "-data"),
            "require_key": False,
            "admin": {"listen": "127.0.0.1:%d" % self.admin_port, "key_env": "TURNOUT_ADMIN_KEY"},
            "limits": {"max_body_bytes": 1048576, "max_header_bytes": 65536, "max_headers": 100,
                       "header_timeout_s": 10, "idle_timeout_s": 60},
            "log": {"level": "info", "access": "stdout"}, "seed": name + "-seed.json",
        }
        if UPSTREAM_CLIENT:
            cfg["upstream"] = {"client": UPSTREAM_CLIENT}
        if TLS is not None:
            cfg["tls"] = {"cert": TLS["cert"], "key": TLS["key"]}
        cfg = deep_merge(cfg, config or {})
        with open(os.path.join(workdir, name + "-seed.json"), "w") as f:
            json.dump(seed, f)
        self.config_path = os.path.join(workdir, name + ".json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        full_env = dict(os.environ)
        full_env["TURNOUT_ADMIN_KEY"] = ADMIN_KEY
        full_env["MOCK_API_KEY"] = CANARY
        full_env.update(env or {})
        self.admin_key = full_env.get("TURNOUT_ADMIN_KEY")
        super().__init__([os.path.join(build or BUILD, "turnout"), "-c", self.config_path], workdir, name, full_env)
        self.tls = bool((cfg.get("tls") or {}).get("cert"))
        _TLS_PORTS.pop(self.port, None)
        if self.tls:   # the run's certificate is verified; a test's own is the test's to check
            ours = TLS is not None and cfg["tls"] == {"cert": TLS["cert"], "key": TLS["key"]}
            _TLS_PORTS[self.port] = TLS["context"] if ours else ssl._create_unverified_context()
        deadline = time.time() + 10
        while True:
            try:
                if http_request(self.port, "GET", "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()        # (the test never gets it to stop: it must not outlive the run)
                raise RuntimeError("turnout did not start: " + self.output())
            time.sleep(0.05)
        # the workers serve before the admin listener is bound (main.c starts
        # it after them): a test's first admin call must not find it closed
        while cfg["admin"].get("listen") == "127.0.0.1:%d" % self.admin_port:
            try:
                socket.create_connection(("127.0.0.1", self.admin_port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("turnout's admin API did not start: " + self.output())
                time.sleep(0.02)

    def request(self, method, path, body=None, headers=None, timeout=10):
        return http_request(self.port, method, path, body, headers, timeout)

    def url(self, path=""):
        """PATH's URL on the data port (https:// when it speaks TLS)."""
        return url(self.port, path)

    def connect(self, timeout=10, **kw):
        """A raw connection to the data port (see connect)."""
        return connect(self.port, timeout, **kw)

    def admin(self, method, path, body=None, key=None, timeout=10):
        """One admin API call: (status, decoded JSON or raw bytes)."""
        headers = {"Authorization": "Bearer " + (key if key is not None else self.admin_key)}
        st, h, data = http_request(self.admin_port, method, path, body, headers, timeout)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data

    def access_log(self, path=None, count=1, timeout=3):
        """The access-log lines (for PATH, if given), waiting up to TIMEOUT for
        COUNT of them: a line is written when the request is freed, which is
        after the client has its reply."""
        deadline = time.time() + timeout
        while True:
            with open(self.out_path) as f:
                lines = [json.loads(line) for line in f if line.startswith("{")]
            lines = [e for e in lines if path is None or e.get("path") == path]
            if len(lines) >= count or time.time() > deadline:
                return lines
            time.sleep(0.02)

    def chat(self, model, **extra):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        body.update(extra)
        return self.request("POST", "/v1/chat/completions", body)


def check_config(workdir, cfg):
    path = os.path.join(workdir, "check-%d.json" % time.monotonic_ns())
    with open(path, "w") as f:
        f.write(cfg if isinstance(cfg, str) else json.dumps(cfg))
    p = subprocess.run([os.path.join(BUILD, "turnout"), "-t", "-c", path], capture_output=True, timeout=10)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def seed_for(*mocks, routes=None, models=None):
    """A seed with one provider per mock (named after the mock) and ROUTES."""
    providers = []
    for m in mocks:
        providers.append({"name": m.name, "base_url": m.base_url, "api_key_env": "MOCK_API_KEY",
                          "models": models or [{"name": "mock-small", "bare_alias": True}, {"name": "mock-large"}]})
    return {"providers": providers, "routes": routes or [], "routers": []}


class Env:
    """Per-test scratch: a temp dir and everything started in it, stopped at the end."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="turnout-it-")
        self.procs = []

    def mock(self, *flags, name="mock"):
        m = Mock(self.dir, *flags, name=name)
        m.name = name
        self.procs.append(m)
        return m

    def turnout(self, seed, config=None, env=None, name="turnout", build=None):
        t = Turnout(self.dir, seed, config, env, name, build)
        self.procs.append(t)
        return t

    def output(self):
        return "\n".join("== %s\n%s" % (type(p).__name__, p.output()[-3000:]) for p in self.procs)

    def canary_leaks(self):
        """Files under the test's directory that hold the canary key: turnout's
        stdout and stderr (access and error logs), log files, exports. Left
        out: the mocks' own output (they are the upstream), the store's data
        files and the seeds the test wrote itself."""
        leaks = []
        for root, dirs, files in os.walk(self.dir):
            dirs[:] = [d for d in dirs if not d.endswith("-data")]
            for name in files:
                if name.startswith("mockllm-") or name.endswith("-seed.json"):
                    continue
                path = os.path.join(root, name)
                try:
                    with open(path, "rb") as f:
                        if CANARY.encode() in f.read():
                            leaks.append("the canary provider key is in " + os.path.relpath(path, self.dir))
                except OSError:
                    pass
        return leaks

    def close(self):
        """Stops everything; returns what went wrong on the way out (a non-zero
        exit of turnout, or a sanitizer report from any process)."""
        problems = []
        for p in reversed(self.procs):
            rc = p.stop()
            out = p.output()
            if isinstance(p, Turnout) and rc != 0 and not getattr(p, "expect_exit", False):
                problems.append("turnout exited %s" % rc)
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in out:
                    problems.append("%s reported: %s" % (type(p).__name__, marker))
        problems += self.canary_leaks()
        for p in self.procs:
            if isinstance(p, Turnout):
                _TLS_PORTS.pop(p.port, None)
        return problems   # procs are kept (stopped) so a failing test can still print their output


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test took longer than its bound")


def run_test(full, fn, bound, label=""):
    """Runs test FN (named FULL, printed after LABEL) with an Env of its own,
    under an alarm of BOUND seconds that raises TestTimeout in it: prints
    "ok" or "FAIL" with the trace and the end of what its processes wrote.
    Returns (passed, interrupted: the run should stop)."""
    env = Env()
    t0 = time.time()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(bound)
    try:
        fn(env)
        signal.alarm(0)
        problems = env.close()
        if problems:
            raise AssertionError("; ".join(problems))
        print("ok   %s%s (%.2fs)" % (label, full, time.time() - t0), flush=True)
        return True, False
    except BaseException as e:  # noqa: B902 - a failing test must not stop the run
        signal.alarm(0)
        print("FAIL %s%s: %s" % (label, full, e), flush=True)
        traceback.print_exc(limit=6)
        env.close()
        print(env.output()[-4000:], flush=True)
        return False, isinstance(e, KeyboardInterrupt)
