"""TLS at the edge (SPEC 11): a private CA with an intermediate, curl, openssl s_client, Python's
ssl and the official openai SDK over https; TLS 1.2 and 1.3 only, ALPN http/1.1, session
resumption across connections, plain HTTP to the TLS port answered in clear text, and SIGHUP
reloading the certificate (a bad one rejected while the old keeps serving)."""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time

from harness import CANARY, SDK_DIR, check_config, make_tls_files, seed_for

CHAT = "/v1/chat/completions"


def make_pki(d, name="srv", cn="turnout-test"):
    """A root CA, an intermediate and a server certificate NAME for
    127.0.0.1 and localhost signed by it (harness.make_tls_files: the CA
    made once per D); returns (root, chain file, key) paths."""
    f = make_tls_files(d, name, cn)
    return f["root"], f["cert"], f["key"]


def gateway(env, m, cert, key):
    seed = seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]}])
    return env.turnout(seed, config={"tls": {"cert": cert, "key": key}})


def client_ctx(root, **kw):
    ctx = ssl.create_default_context(cafile=root)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https(t, ctx, method, path, body=None, headers=None):
    c = http.client.HTTPSConnection("127.0.0.1", t.port, context=ctx, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    h = dict(headers or {})
    if data is not None:
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    c.close()
    return out


def peer_cn(t, root):
    with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
        with client_ctx(root).wrap_socket(s, server_hostname="localhost") as ts:
            return dict(x[0] for x in ts.getpeercert()["subject"])["commonName"]


def test_https_with_a_private_ca_and_its_chain(env):
    root, chain, key = make_pki(env.dir)
    m = env.mock()
    t = gateway(env, m, chain, key)
    body = {"model": "r", "messages": [{"role": "user", "content": "hi"}]}
    # Python's ssl, TLS 1.3 and TLS 1.2, verifying the chain to the root only
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        st, h, data = https(t, client_ctx(root, minimum_version=version, maximum_version=version), "POST", CHAT, body)
        assert st == 200 and json.loads(data)["choices"][0]["message"]["content"], data
    # a stream over TLS, whole
    st, h, data = https(t, client_ctx(root), "POST", CHAT, dict(body, stream=True))
    assert st == 200 and data.decode().rstrip().endswith("data: [DONE]"), data
    # curl
    p = subprocess.run(["curl", "-sS", "--cacert", root, "https://localhost:%d/v1/chat/completions" % t.port,
                        "-H", "Content-Type: application/json", "-d", json.dumps(body), "-w", "\n%{http_version}"],
                       capture_output=True, timeout=20)
    out = p.stdout.decode()
    assert p.returncode == 0 and '"chat.completion"' in out and out.rstrip().endswith("1.1"), (out, p.stderr)
    # older protocols are refused
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(root)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    try:
        https(t, old, "GET", "/healthz")
        assert False, "TLS 1.1 was accepted"
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    assert https(t, client_ctx(root), "GET", "/healthz")[0] == 200


def test_openssl_s_client_and_alpn(env):
    root, chain, key = make_pki(env.dir)
    m = env.mock()
    t = gateway(env, m, chain, key)
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % t.port, "-CAfile", root,
                        "-servername", "localhost", "-alpn", "h2,http/1.1", "-ign_eof"],
                       input=b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=20)
    text = (p.stdout + p.stderr).decode(errors="replace")
    assert "Verify return code: 0 (ok)" in text and "New, TLSv1.3" in text, text
    assert "ALPN protocol: http/1.1" in text and "HTTP/1.1 200" in text, text
    assert "depth=2 CN = turnout harness root" in text, text       # the chain file's intermediate was sent
    # a client that offers only h2 agrees on no protocol and still gets HTTP/1.1
    with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
        ctx = client_ctx(root)
        ctx.set_alpn_protocols(["h2"])
        with ctx.wrap_socket(s, server_hostname="localhost") as ts:
            assert ts.selected_alpn_protocol() is None
            ts.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert ts.recv(4096).startswith(b"HTTP/1.1 200")


def test_sessions_resume_across_connections_and_workers(env):
    root, chain, key = make_pki(env.dir)
    m = env.mock()
    t = gateway(env, m, chain, key)
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = client_ctx(root, minimum_version=version, maximum_version=version)
        session, reused = None, []
        for _ in range(6):            # SO_REUSEPORT spreads them over both workers
            with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="localhost", session=session) as ts:
                    ts.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    reply = b""
                    while True:
                        chunk = ts.recv(4096)
                        if not chunk:
                            break
                        reply += chunk
                    assert reply.startswith(b"HTTP/1.1 200"), reply
                    reused.append(ts.session_reused)
                    session = ts.session
        assert reused[0] is False and all(reused[1:]), (version, reused)
    workers = {x["worker"] for x in t.access_log("/healthz", count=13)}
    assert workers == {0, 1}, workers


def test_plain_http_to_the_tls_port_is_answered_in_clear(env):
    root, chain, key = make_pki(env.dir)
    m = env.mock()
    t = gateway(env, m, chain, key)
    with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head, data
    assert json.loads(body)["error"]["code"] == "plain_http_to_https"
    # garbage and an early close: no crash
    for junk in (b"\x00\x01\x02", b"\x16\x03\x01\x00\x05hello", b"\x16"):
        with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
            s.sendall(junk)
    assert https(t, client_ctx(root), "GET", "/healthz")[0] == 200


def test_sighup_reloads_the_certificate_and_rejects_a_bad_one(env):
    root, chain, key = make_pki(env.dir)
    m = env.mock()
    t = gateway(env, m, chain, key)
    assert peer_cn(t, root) == "turnout-test"
    # a long-lived connection made before the reload goes on with the old one
    keep = http.client.HTTPSConnection("127.0.0.1", t.port, context=client_ctx(root), timeout=10)
    keep.request("GET", "/healthz")
    assert keep.getresponse().read()
    make_pki(env.dir, name="srv2", cn="turnout-renewed")
    os.replace(os.path.join(env.dir, "srv2-chain.pem"), chain)
    os.replace(os.path.join(env.dir, "srv2.key"), key)
    t.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "(generation 1)" not in t.output() and time.time() < deadline:
        time.sleep(0.05)
    assert peer_cn(t, root) == "turnout-renewed"
    keep.request("GET", "/healthz")
    assert keep.getresponse().status == 200
    keep.close()
    # a certificate file that does not load: the reload is rejected, the last one serves
    with open(chain, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    t.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "rejected" not in t.output() and time.time() < deadline:
        time.sleep(0.05)
    assert "reload: config" in t.output() and "rejected: tls: certificate" in t.output(), t.output()
    assert peer_cn(t, root) == "turnout-renewed"
    # and turnout -t says so too
    rc, out = check_config(env.dir, {"tls": {"cert": chain, "key": key}})
    assert rc == 1 and "tls: certificate" in out, out
    rc, out = check_config(env.dir, {"tls": {"cert": chain}})
    assert rc == 1 and "cert and key go together" in out, out


def test_the_openai_sdk_over_https_with_a_private_ca(env):
    root, chain, key = make_pki(env.dir)
    m = env.mock("--stream-events", "5")
    t = gateway(env, m, chain, key)
    for stream in (False, True):
        spec = {"baseURL": "https://localhost:%d/v1" % t.port, "stream": stream, "maxRetries": 0,
                "body": {"model": "r", "messages": [{"role": "user", "content": "hi"}]}}
        p = subprocess.run(["node", os.path.join(SDK_DIR, "chat.mjs"), json.dumps(spec)], capture_output=True,
                           timeout=60, env=dict(os.environ, NODE_EXTRA_CA_CERTS=root))
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        out = json.loads(p.stdout.decode().strip().splitlines()[-1])
        assert out["ok"], out
        assert (len(out["chunks"]) >= 5) if stream else out["completion"]["choices"][0]["message"]["content"], out
        assert CANARY not in json.dumps(out)


def test_the_admin_api_over_tls(env):
    root, chain, key = make_pki(env.dir)
    make_pki(env.dir, name="adm", cn="turnout-admin")
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "r", "targets": [{"provider": "mock", "model": "mock-large"}]}])
    t = env.turnout(seed, config={"admin": {"tls": {"cert": os.path.join(env.dir, "adm-chain.pem"),
                                                    "key": os.path.join(env.dir, "adm.key")}}})
    auth = {"Authorization": "Bearer " + t.admin_key}
    c = http.client.HTTPSConnection("127.0.0.1", t.admin_port, context=client_ctx(root), timeout=10)
    for _ in range(3):                 # keep-alive over one TLS connection
        c.request("GET", "/v1/model-routes", headers=auth)
        r = c.getresponse()
        page = json.loads(r.read())
        assert r.status == 200 and [x["name"] for x in page["data"]] == ["r"], page
    c.request("POST", "/v1/model-routes", body=json.dumps({"name": "r2", "targets": [
        {"provider": "mock", "model": "mock-small"}]}), headers=dict(auth, **{"Content-Type": "application/json"}))
    r = c.getresponse()
    assert r.status == 201, r.read()
    r.read()
    c.close()
    with socket.create_connection(("127.0.0.1", t.admin_port), timeout=5) as s:
        with client_ctx(root).wrap_socket(s, server_hostname="localhost") as ts:
            assert dict(x[0] for x in ts.getpeercert()["subject"])["commonName"] == "turnout-admin"
    # plain HTTP to it: answered in clear, closed; the data listener stays plain
    with socket.create_connection(("127.0.0.1", t.admin_port), timeout=5) as s:
        s.sendall(b"GET /v1/model-routes HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    assert t.chat("r2")[0] == 200
    rc, out = check_config(env.dir, {"admin": {"tls": {"cert": chain}}})
    assert rc == 1 and "admin.tls: cert and key go together" in out, out
    rc, out = check_config(env.dir, {"admin": {"tls": {"cert": chain, "key": key, "x": 1}}})
    assert rc == 1 and "admin.tls.x: unknown config key" in out, out
