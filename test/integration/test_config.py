"""turnout -t, --version, --help, and config errors that name the key."""
import os
import subprocess

import harness
from harness import check_config


def run(*args):
    p = subprocess.run([os.path.join(harness.BUILD, "turnout"), *args], capture_output=True, timeout=10)
    return p.returncode, (p.stdout + p.stderr).decode()


def test_version_and_help(env):
    rc, out = run("--version")
    assert rc == 0 and "turnout" in out
    rc, out = run("--help")
    assert rc == 0 and "-c" in out and "-t" in out
    rc, out = run("--bogus")
    assert rc != 0


def test_valid_config(env):
    rc, out = check_config(env.dir, {"listen": "127.0.0.1:0", "workers": 1, "limits": {"max_body_bytes": 10}})
    assert rc == 0, out


def test_bad_configs_name_the_key(env):
    cases = [({"listen": "127.0.0.1:1", "bogus": 1}, "bogus"),
             ({"limits": {"max_bodyy": 1}}, "limits.max_bodyy"),
             ({"workers": -1}, "workers"),
             ({"limits": {"max_body_bytes": 0}}, "limits.max_body_bytes"),
             ({"limits": {"header_timeout_s": "ten"}}, "limits.header_timeout_s"),
             ({"listen": "localhost"}, "listen"),
             ({"log": {"level": "chatty"}}, "log.level"),
             ({"require_key": "yes"}, "require_key")]
    for cfg, key in cases:
        rc, out = check_config(env.dir, cfg)
        assert rc != 0 and key in out, (cfg, out)
    rc, out = check_config(env.dir, '{"listen": ')
    assert rc != 0 and "JSON" in out


def test_bad_seed_refuses_to_start(env):
    m = env.mock()
    seed = {"providers": [{"name": "p", "base_url": m.base_url, "models": [{"name": "x"}]}],
            "routes": [{"name": "r", "targets": [{"provider": "ghost", "model": "x"}]}]}
    try:
        env.turnout(seed)
        assert False, "turnout started with a broken seed"
    except RuntimeError as e:
        assert "routes[0].targets[0].provider" in str(e), e


def test_seed_goes_through_the_admin_checks(env):
    """The seed import and the admin API share one write path: same ranges, same conflicts."""
    m = env.mock()
    p = {"name": "p", "base_url": m.base_url, "models": [{"name": "x"}]}
    r = {"name": "r", "targets": [{"provider": "p", "model": "x"}]}
    bad = [
        ({"providers": [p, dict(p)]}, 'providers[1]: the same provider as an earlier record of this seed (name "p")'),
        ({"providers": [p], "routes": [r, dict(r)]}, 'routes[1]: the same route as an earlier record of this seed (name "r")'),
        ({"providers": [p], "routes": [dict(r, router="nowhere")]}, 'routes[0].router: no router "nowhere"'),
        ({"providers": [p], "routes": [dict(r, retry={"max_429_retries": 11})]}, "routes[0].retry.max_429_retries"),
        ({"routers": [{"slug": "a"}, {"slug": "a"}]}, 'routers[1]: the same router as an earlier record of this seed (slug "a")'),
        ({"providers": [p], "routes": [dict(r, id="not-a-uuid")]}, "routes[0].id: must be a UUID"),
    ]
    for i, (seed, want) in enumerate(bad):
        try:
            env.turnout(dict({"providers": [], "routes": [], "routers": []}, **seed), name="t%d" % i)
            assert False, "turnout started with a broken seed: %s" % want
        except RuntimeError as e:
            assert want in str(e), (want, str(e)[-400:])
