"""sdk-retries.py - how many upstream calls, and how long, until the official openai SDK
(its default 2 retries) gives up on a rate-limited or failing model through turnout.

  /usr/bin/python3 bench/sdk-retries.py [BUILD_DIR]      (default build)

Starts mockllm answering 429 with Retry-After 8 (route "r": turnout's default 2 retries,
5 s cap) and one answering 500 (route "r5"), then calls each once through
test/sdk/chat.mjs and prints the SDK's error class, the upstream calls the mock saw and
the time. [client-fixes] C4 measured it before and after turnout's retry hints.
Everything listens on 127.0.0.1 and is stopped when it ends."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "test", "integration"))
import harness  # noqa: E402

harness.BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "build"))
env = harness.Env()
try:
    a = env.mock("--status", "429", "--retry-after", "8", name="a")
    b = env.mock("--status", "500", name="b")
    seed = {"providers": [{"name": "a", "base_url": a.base_url, "models": [{"name": "m"}]},
                          {"name": "b", "base_url": b.base_url, "models": [{"name": "m"}]}],
            "routes": [{"name": "r", "targets": [{"provider": "a", "model": "m"}]},
                       {"name": "r5", "targets": [{"provider": "b", "model": "m"}]}]}
    t = env.turnout(seed)
    for route, mock, what in (("r", a, "429"), ("r5", b, "500")):
        out = harness.sdk("chat.mjs", {"baseURL": "http://127.0.0.1:%d/v1" % t.port,
                                       "body": {"model": route, "messages": []}}, timeout=120)
        print("upstream %s: %s after %d upstream calls, %.1f s" % (what, out["error"]["class"], len(mock.log()),
                                                                  out["elapsed_ms"] / 1000))
finally:
    env.close()
