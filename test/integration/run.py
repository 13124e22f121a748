"""run.py - runs every test_* function of test/integration/test_*.py against the real binaries.

Each test gets a fresh Env (temp dir, processes stopped by PID afterwards) and
a time bound. Ends with 'integration: N passed, N failed'; exits 1 on failure.

--tls: every turnout the harness starts serves its data port over TLS (a
private CA and intermediate made once for the run, harness.tls_setup), and
every client the harness and the tests use to reach a data port speaks TLS
trusting that CA (harness.connect, http_request, raw_exchange, url, the SDK
runs). The tests in TLS_EXCLUDED are left out of such a run, each for the
reason given, printed when the run starts."""
import argparse
import importlib.util
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)


# Tests that cannot apply over TLS, by name, with why; printed at the start of a
# --tls run. A test that fails over TLS because turnout misbehaves does not
# belong here: that is a bug.
TLS_EXCLUDED = {
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("-k", default="", help="run only tests whose name contains this (or any of a,b,c)")
    ap.add_argument("--upstream-client", default="", help="upstream.client for every turnout: native or curl")
    ap.add_argument("--release-dir", default="build", help="optimised build, for memory figures")
    ap.add_argument("--bound", type=int, default=60, help="seconds per test (a test may set fn.bound)")
    ap.add_argument("--tls", action="store_true", help="every turnout's data port speaks TLS, and so do the clients")
    args = ap.parse_args()
    os.environ["TURNOUT_BUILD"] = os.path.abspath(args.build_dir)
    import harness
    harness.BUILD = os.environ["TURNOUT_BUILD"]
    harness.RELEASE_BUILD = os.path.abspath(args.release_dir)
    harness.UPSTREAM_CLIENT = args.upstream_client
    wanted = args.k.split(",")
    if args.tls:
        tls = harness.tls_setup()
        print("TLS run: data ports speak TLS with %s (a private CA and an intermediate)" % tls["cert"], flush=True)
        for name, why in sorted(TLS_EXCLUDED.items()):
            print("tls: left out %s: %s" % (name, why), flush=True)
    passed = failed = 0
    for fn in sorted(os.listdir(here)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(here, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = "%s.%s" % (fn[:-3], name)
            if not any(k in full for k in wanted) or (args.tls and full in TLS_EXCLUDED):
                continue
            fn_ = getattr(mod, name)
            ok, stop = harness.run_test(full, fn_, getattr(fn_, "bound", args.bound))
            passed += ok
            failed += not ok
            if stop:
                break
    harness.tls_teardown()
    print("integration: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
