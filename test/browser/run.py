"""run.py - runs every test_* function of test/browser/test_*.py: the dashboard in
headless Chromium against the real binaries (test/integration/harness.py starts
turnout and mockllm on free loopback ports and stops them by PID).

Each test gets a fresh harness.Env and a time bound. Screenshots go to
build/ui-shots/ (TURNOUT_UI_SHOTS). Ends with 'browser: N passed, N failed';
exits 1 on failure. Without chromium, chromedriver or python3-selenium every
test is counted failed, with the reason (scripts/install-deps.sh installs them)."""
import argparse
import importlib.util
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "integration"))
sys.path.insert(0, here)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("-k", default="", help="run only tests whose name contains this (or any of a,b,c)")
    ap.add_argument("--bound", type=int, default=90, help="seconds per test")
    args = ap.parse_args()
    import harness
    harness.BUILD = os.path.abspath(args.build_dir)
    harness.RELEASE_BUILD = harness.BUILD
    passed = failed = 0
    wanted = args.k.split(",")
    for fn in sorted(os.listdir(here)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location("browser_" + fn[:-3], os.path.join(here, fn))
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except ImportError as e:      # selenium missing: say so, count it
            failed += 1
            print("FAIL %s: cannot load (%s); scripts/install-deps.sh installs python3-selenium" % (fn, e), flush=True)
            continue
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = "%s.%s" % (fn[:-3], name)
            if not any(k in full for k in wanted):
                continue
            ok, stop = harness.run_test(full, getattr(mod, name), args.bound, label="browser/")
            passed += ok
            failed += not ok
            if stop:
                break
    print("browser: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
