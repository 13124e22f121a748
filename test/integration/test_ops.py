"""Operating turnout: the systemd notify protocol and watchdog, the unit file, install."""
import os
import signal
import socket
import subprocess
import time


def test_systemd_notify_protocol(env):
    """A datagram socket stands in for systemd: READY=1 once listening,
    WATCHDOG=1 at half of WATCHDOG_USEC while the workers' loops turn,
    STOPPING=1 on SIGTERM."""
    path = os.path.join(env.dir, "notify.sock")
    sd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sd.bind(path)
    sd.settimeout(5)
    m = env.mock()
    t = env.turnout({"providers": [{"name": "p", "base_url": m.base_url, "models": [{"name": "m"}]}]},
                    env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    first = sd.recv(4096).decode()
    assert first.startswith("READY=1") and "STATUS=serving" in first, first
    pings = []
    t0 = time.monotonic()
    while len(pings) < 5:
        msg = sd.recv(4096).decode()
        assert msg == "WATCHDOG=1", msg
        pings.append(time.monotonic() - t0)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert all(0.15 <= g <= 0.35 for g in gaps), gaps         # every 200 ms
    t.proc.send_signal(signal.SIGTERM)
    while True:
        msg = sd.recv(4096).decode()
        if msg != "WATCHDOG=1":
            break
    assert msg.startswith("STOPPING=1"), msg
    assert t.proc.wait(10) == 0
    sd.close()


def test_no_notify_socket_is_fine(env):
    t = env.turnout({}, env={"WATCHDOG_USEC": "100000"})
    assert t.request("GET", "/healthz")[0] == 200


def test_make_install_and_the_unit(env):
    """make install with PREFIX puts the binary, man page, unit and example config
    in place; the unit names the installed paths, passes systemd-analyze verify,
    and the installed config passes turnout -t."""
    from harness import RELEASE_BUILD
    root = os.path.join(env.dir, "inst")
    subprocess.run(["make", "-s", "install", "BUILD=" + RELEASE_BUILD, "PREFIX=" + root + "/usr",
                    "SYSCONFDIR=" + root + "/etc"], check=True, timeout=300, capture_output=True)
    unit = os.path.join(root, "usr/lib/systemd/system/turnout.service")
    for f in ("usr/sbin/turnout", "usr/share/man/man8/turnout.8", "etc/turnout/turnout.json"):
        assert os.path.isfile(os.path.join(root, f)), f
    text = open(unit).read()
    assert "@SBINDIR@" not in text and "@SYSCONFDIR@" not in text
    assert "ExecStart=%s/usr/sbin/turnout -c %s/etc/turnout/turnout.json" % (root, root) in text
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=", "ExecStartPre=", "DynamicUser=yes",
                 "StateDirectory=turnout", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet="):
        assert line in text, line
    v = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, timeout=60,
                       env=dict(os.environ, MANPATH=root + "/usr/share/man"))
    assert v.returncode == 0, v.stderr.decode()
    c = subprocess.run([root + "/usr/sbin/turnout", "-t", "-c", root + "/etc/turnout/turnout.json"],
                       capture_output=True, timeout=10)
    assert c.returncode == 0, c.stderr
    # a second install keeps an edited config
    with open(os.path.join(root, "etc/turnout/turnout.json"), "a") as f:
        f.write(" ")
    subprocess.run(["make", "-s", "install", "BUILD=" + RELEASE_BUILD, "PREFIX=" + root + "/usr",
                    "SYSCONFDIR=" + root + "/etc"], check=True, timeout=300, capture_output=True)
    assert open(os.path.join(root, "etc/turnout/turnout.json")).read().endswith(" ")
