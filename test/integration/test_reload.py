"""SIGHUP reload: a valid config is applied without dropping a request; an invalid one is
rejected with a log line while the running config keeps serving."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import seed_for


def edit_config(t, change):
    """Rewrites T's config file with CHANGE(cfg dict) applied (or raw text)."""
    if callable(change):
        with open(t.config_path) as f:
            cfg = json.load(f)
        change(cfg)
        change = json.dumps(cfg)
    with open(t.config_path, "w") as f:
        f.write(change)


def hup_and_wait(t, count_before, what="applied", timeout=5):
    """Sends SIGHUP and waits for the reload's log line (applied or rejected)."""
    t.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if t.output().count("reload: config") > count_before:
            break
        time.sleep(0.02)
    out = t.output()
    assert out.count("reload: config") == count_before + 1, out[-2000:]
    last = [line for line in out.splitlines() if "reload: config" in line][-1]
    assert what in last, last
    return last


def log_lines(path, count, timeout=3):
    """The JSON lines of the access log file PATH, waiting up to TIMEOUT for
    COUNT of them: a line is written when its request is freed, which is
    after the client has its reply (over TLS it can come a moment later)."""
    deadline = time.time() + timeout
    while True:
        with open(path) as f:
            lines = [json.loads(line) for line in f]
        if len(lines) >= count or time.time() > deadline:
            return lines
        time.sleep(0.02)


def test_reload_under_load_drops_nothing(env):
    """wrk keeps 16 connections busy for 9 s while the config is reloaded every
    2 s (4 reloads, alternating values): 0 socket errors, 0 non-2xx."""
    m = env.mock(name="up")
    t = env.turnout(seed_for(m, routes=[{"name": "r", "targets": [{"provider": "up", "model": "mock-small"}]}]),
                    config={"log": {"access": "off"}})
    script = os.path.join(env.dir, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.body = \'{"model":"r","messages":[{"role":"user","content":"hello"}]}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    wrk = subprocess.Popen(["wrk", "-t2", "-c16", "-d9s", "-s", script, t.url("/v1/chat/completions")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for i in range(4):
            time.sleep(2)
            edit_config(t, lambda c: c.setdefault("upstream", {}).update({"cooldown_s": 30 + i, "first_byte_s": 60 + i}))
            hup_and_wait(t, i)
        out = wrk.communicate(timeout=20)[0].decode()
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    print("    " + " | ".join(line.strip() for line in out.splitlines() if "requests in" in line or "Requests/sec" in line))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    assert reqs > 1000, out
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    st, _, body = t.request("GET", "/metrics")
    assert 'turnout_config_reloads_total{result="ok"} 4' in body.decode()
    assert "generation 4" in t.output()


def test_reload_applies_new_values(env):
    """After SIGHUP the new limits, timeouts and log targets are in force; the
    access log is reopened (a rotated file is let go); the log level applies."""
    slow = env.mock("--delay-ms", "1500", name="slow")
    t = env.turnout(seed_for(slow, routes=[{"name": "r", "targets": [{"provider": "slow", "model": "mock-small"}]}]))
    big = {"model": "r", "messages": [{"role": "user", "content": "x" * 2000}]}
    assert t.request("POST", "/v1/chat/completions", big)[0] == 200
    assert len(t.access_log("/v1/chat/completions", count=1)) == 1   # written (to stdout) once the request is freed
    access = os.path.join(env.dir, "access.log")

    def change(c):
        c["limits"]["max_body_bytes"] = 1000
        c["upstream"] = {"first_byte_s": 1}
        c["log"]["access"] = access
    edit_config(t, change)
    hup_and_wait(t, 0)
    st, _, body = t.request("POST", "/v1/chat/completions", big)
    assert st == 413 and b"1000 bytes" in body, body
    t0 = time.time()
    st, _, body = t.chat("r")
    assert st == 504 and b"upstream_first_byte_timeout" in body and time.time() - t0 < 1.4, body
    lines = log_lines(access, 2)
    assert [e["status"] for e in lines] == [413, 504], lines
    # rotation: the file is moved away, SIGHUP opens a new one at the path
    os.rename(access, access + ".1")
    hup_and_wait(t, 1)
    assert t.request("GET", "/healthz")[0] == 200
    time.sleep(0.1)
    assert [json.loads(line)["path"] for line in open(access)] == ["/healthz"]
    assert len(open(access + ".1").readlines()) == 2
    # log level warn: the next reload's info line is not written, its warning is
    edit_config(t, lambda c: (c["log"].update({"level": "warn"}), c.update({"listen": "127.0.0.1:1"})))
    t.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "reload: listen changed" not in t.output() and time.time() < deadline:
        time.sleep(0.02)
    assert "turnout: [warn] reload: listen changed; it takes effect at the next restart" in t.output()
    time.sleep(0.2)
    assert t.output().count("reload: config") == 2      # the third reload's info line was filtered
    assert t.request("GET", "/healthz")[0] == 200       # still on the port it started on


def test_reload_rejects_an_invalid_config(env):
    """Broken JSON, an unknown key or a value out of range: an error line names
    the problem, the old config keeps serving, /metrics says the last reload failed."""
    m = env.mock()
    t = env.turnout(seed_for(m), config={"limits": {"max_body_bytes": 5000}})
    good = open(t.config_path).read()
    cases = [('{"listen": ', "not a JSON object"),
             (good.replace('"limits": {', '"limits": {"max_bodyy": 1, '), "limits.max_bodyy: unknown config key"),
             (good.replace('"max_body_bytes": 5000', '"max_body_bytes": 0'), "limits.max_body_bytes")]
    for i, (text, why) in enumerate(cases):
        edit_config(t, text)
        line = hup_and_wait(t, i, what="rejected")
        assert "turnout: [error]" in line and why in line and "the running config keeps serving" in line, line
        assert t.chat("mock-small")[0] == 200
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "x" * 6000}]}
        assert t.request("POST", "/v1/chat/completions", body)[0] == 413     # the old limit holds
    metrics = t.request("GET", "/metrics")[2].decode()
    assert 'turnout_config_reloads_total{result="failed"} 3' in metrics
    assert "turnout_config_last_reload_successful 0" in metrics
    edit_config(t, good)
    hup_and_wait(t, 3)
    assert "turnout_config_last_reload_successful 1" in t.request("GET", "/metrics")[2].decode()


def test_reload_tells_systemd(env):
    """Type=notify: RELOADING=1 with MONOTONIC_USEC, then READY=1 when done;
    READY=1 also after a rejected reload (the service goes on)."""
    path = os.path.join(env.dir, "notify.sock")
    sd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sd.bind(path)
    sd.settimeout(5)
    m = env.mock()
    t = env.turnout(seed_for(m), env={"NOTIFY_SOCKET": path})
    assert sd.recv(4096).decode().startswith("READY=1")
    t.proc.send_signal(signal.SIGHUP)
    msg = sd.recv(4096).decode()
    assert re.match(r"RELOADING=1\nMONOTONIC_USEC=\d+$", msg), msg
    assert sd.recv(4096).decode() == "READY=1\nSTATUS=serving"
    edit_config(t, "{")
    t.proc.send_signal(signal.SIGHUP)
    assert sd.recv(4096).decode().startswith("RELOADING=1")
    assert sd.recv(4096).decode().startswith("READY=1\nSTATUS=serving (the last reload was rejected)")
    sd.close()
