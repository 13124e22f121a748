"""Rate limits of keys and tenants (SPEC 8): rpm, tpm and max_in_flight shared by both workers,
429 rate_limited with Retry-After, and OpenAI's x-ratelimit-* headers on every answer to a limited
caller."""
import json
import threading

CHAT = "/v1/chat/completions"


def gateway(env, m):
    seed = {"providers": [{"name": "p", "base_url": m.base_url, "api_key_env": "MOCK_API_KEY",
                           "models": [{"name": "m"}]}],
            "routes": [{"name": "r", "targets": [{"provider": "p", "model": "m"}]}]}
    return env.turnout(seed, config={"require_key": True})


def key(t, **fields):
    st, k = t.admin("POST", "/v1/keys", dict({"name": "k"}, **fields))
    assert st == 201, k
    return {"Authorization": "Bearer " + k["secret"]}


def chat(t, headers, timeout=10):
    body = {"model": "r", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}
    return t.request("POST", CHAT, body, headers, timeout=timeout)


def test_rpm_with_the_headers(env):
    m = env.mock()
    t = gateway(env, m)
    h = key(t, rpm=3)
    free = key(t, name="free")
    left = []
    for _ in range(3):
        st, rh, body = chat(t, h)
        assert st == 200, body
        assert rh["x-ratelimit-limit-requests"] == "3" and rh["x-ratelimit-reset-requests"].endswith("s"), rh
        left.append(int(rh["x-ratelimit-remaining-requests"]))
    assert left == [2, 1, 0], left
    st, rh, body = chat(t, h)
    err = json.loads(body)["error"]
    assert st == 429 and err["code"] == "rate_limited" and err["type"] == "rate_limit_error", body
    assert "3 requests per minute" in err["message"]
    assert 1 <= int(rh["retry-after"]) <= 60 and rh["x-ratelimit-remaining-requests"] == "0", rh
    assert len(m.log()) == 3
    st, rh, _ = chat(t, free)          # an unlimited key: served, no headers
    assert st == 200 and "x-ratelimit-limit-requests" not in rh


def test_tpm_counts_estimates_then_what_was_used(env):
    m = env.mock()
    t = gateway(env, m)
    h = key(t, tpm=200)
    statuses, used = [], 0
    for _ in range(30):
        st, rh, body = chat(t, h)
        statuses.append(st)
        if st != 200:
            break
        u = json.loads(body)["usage"]
        used += u["prompt_tokens"] + u["completion_tokens"]
        assert rh["x-ratelimit-limit-tokens"] == "200"
    assert statuses[-1] == 429 and statuses.count(200) >= 2, statuses
    assert used <= 200, used
    # reconciled: more requests fit than the estimates alone would allow (each reserves ~20 + 10 output)
    line = t.access_log(CHAT, count=len(statuses))
    assert sum(1 for x in line if x["status"] == 200) == statuses.count(200)


def test_max_in_flight_across_workers(env):
    m = env.mock("--delay-ms", "600")
    t = gateway(env, m)
    h = key(t, max_in_flight=2)
    out = []
    lock = threading.Lock()

    def one():
        r = chat(t, h, timeout=20)
        with lock:
            out.append(r)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    codes = sorted(st for st, _, _ in out)
    assert codes == [200, 200, 429, 429, 429, 429], codes
    for st, rh, body in out:
        if st == 429:
            assert "in flight" in json.loads(body)["error"]["message"] and rh["retry-after"] == "1"
    assert chat(t, h)[0] == 200        # places given back


def test_a_tenant_limit_holds_for_all_its_keys(env):
    m = env.mock()
    t = gateway(env, m)
    st, rec = t.admin("POST", "/v1/tenants", {"name": "acme", "rpm": 2})
    assert st == 201, rec
    a, b = key(t, name="a", tenant="acme"), key(t, name="b", tenant="acme")
    other = key(t, name="o", tenant="other")
    assert chat(t, a)[0] == 200
    st, rh, _ = chat(t, b)
    assert st == 200 and rh["x-ratelimit-remaining-requests"] == "0"
    st, _, body = chat(t, a)
    assert st == 429 and "tenant 'acme'" in json.loads(body)["error"]["message"], body
    assert chat(t, other)[0] == 200
    # a key limit tighter than its tenant's is the one the headers show
    t.admin("PATCH", "/v1/tenants/" + rec["id"], {"rpm": 100})
    c = key(t, name="c", tenant="acme", rpm=5)
    st, rh, _ = chat(t, c)
    assert st == 200 and rh["x-ratelimit-limit-requests"] == "5" and rh["x-ratelimit-remaining-requests"] == "4"
