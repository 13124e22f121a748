"""Budgets enforced (SPEC 8): reservations that hold under concurrency across both workers, exact
spend, candidates passed over for their own budgets, 429 budget_exhausted with Retry-After for the
request's, windows turning over on time, alert budgets, a disconnected client's reservation
given back, and the live fields of reads."""
import json
import threading
import time

from harness import http_request

CHAT = "/v1/chat/completions"
IN_PRICE, OUT_PRICE = 3.0, 15.0        # USD per 1M tokens


def gateway(env, *mocks, config=None, extra_routes=None):
    providers = [{"name": m.name, "base_url": m.base_url, "api_key_env": "MOCK_API_KEY",
                  "models": [{"name": "m", "input_price": IN_PRICE, "output_price": OUT_PRICE}]} for m in mocks]
    routes = [{"name": "r", "targets": [{"provider": m.name, "model": "m"} for m in mocks]}]
    routes += extra_routes or []
    return env.turnout({"providers": providers, "routes": routes}, config=config)


def route_id(t, name="r"):
    st, page = t.admin("GET", "/v1/model-routes?limit=1000")
    assert st == 200, page
    return [r["id"] for r in page["data"] if r["name"] == name][0]


def budget(t, **fields):
    st, rec = t.admin("POST", "/v1/budgets", dict({"name": "b"}, **fields))
    assert st == 201, rec
    return rec


def read(t, rec):
    st, got = t.admin("GET", "/v1/budgets/" + rec["id"])
    assert st == 200, got
    return got


def chat(t, headers=None, timeout=10, **extra):
    body = {"model": "r", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 20}
    body.update(extra)
    return t.request("POST", CHAT, body, headers, timeout=timeout)


def test_limit_requests_holds_under_100_concurrent_requests(env):
    m = env.mock("--delay-ms", "300")
    t = gateway(env, m)
    b = budget(t, scope="global", limit_requests=10)
    results = []
    lock = threading.Lock()

    def one():
        st, h, body = chat(t, timeout=30)
        with lock:
            results.append((st, h, body))

    threads = [threading.Thread(target=one) for _ in range(100)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(40)
    statuses = sorted(st for st, _, _ in results)
    assert statuses.count(200) == 10 and statuses.count(429) == 90, statuses
    assert len(m.log()) == 10                       # exactly 10 reached the upstream
    for st, h, body in results:
        if st == 429:
            err = json.loads(body)["error"]
            assert err["code"] == "budget_exhausted" and err["type"] == "insufficient_quota", err
            assert "'b'" in err["message"] and "does not reset" in err["message"], err
            assert "retry-after" not in h and h.get("x-should-retry") == "false", h
    lines = t.access_log(CHAT, count=100)
    assert {x["worker"] for x in lines} == {0, 1}                 # both workers took some
    got = read(t, b)
    assert got["requests"] == 10 and got["exhausted"] is True and got["window_start"] is None, got
    assert got["spent_tokens"] == sum(x["prompt_tokens"] + x["completion_tokens"] for x in lines
                                      if x["status"] == 200)


def test_limit_usd_admits_within_it_and_records_the_exact_spend(env):
    m = env.mock()
    t = gateway(env, m)
    # each request: estimated (body bytes / 4) * 3 + 20 * 15 USD per 1M; actual (mock: upstream body / 4) * 3 + 5 * 15
    b = budget(t, scope={"route": route_id(t)}, limit_usd=0.004, window="1d")
    statuses = []
    for _ in range(40):
        statuses.append(chat(t)[0])
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
    lines = [x for x in t.access_log(CHAT, count=len(statuses)) if x["status"] == 200]
    with open(t.out_path) as f:
        costs = [float(line.split('"cost_usd":', 1)[1].split(",", 1)[0]) for line in f
                 if '"status":200' in line and CHAT in line]
    spent = sum(costs)
    got = read(t, b)
    assert abs(got["spent_usd"] - spent) < 1e-6, (got, spent)
    assert got["requests"] == len(lines) and got["spent_usd"] <= 0.004
    # the admitted estimates never passed the limit: the refused one would have
    body_len = len(json.dumps({"model": "r", "messages": [{"role": "user", "content": "hello there"}],
                               "max_tokens": 20}))
    estimate = (body_len // 4) * IN_PRICE / 1e6 + 20 * OUT_PRICE / 1e6
    assert spent + estimate > 0.004 - 1e-9, (spent, estimate)
    st, h, body = chat(t)
    assert st == 429 and json.loads(body)["error"]["code"] == "budget_exhausted"
    assert 0 < int(h["retry-after"]) <= 86400 and h["x-should-retry"] == "false"
    assert got["window_start"].endswith("T00:00:00Z") and got["resets_at"].endswith("T00:00:00Z")


def test_a_target_budget_passes_its_candidate_over(env):
    a, b2 = env.mock(name="a"), env.mock(name="b")
    t = gateway(env, a, b2)
    rid = route_id(t)
    bud = budget(t, name="a-cap", scope={"target": {"route": rid, "provider": "a", "model": "m"}}, limit_requests=2)
    for _ in range(2):
        assert chat(t)[0] == 200
    assert len(a.log()) == 2 and len(b2.log()) == 0
    st, h, body = chat(t)
    assert st == 200 and len(b2.log()) == 1 and len(a.log()) == 2, body
    line = t.access_log(CHAT, count=3)[2]
    assert line["provider"] == "b" and line["trace"][0]["skipped"] == "budget_exhausted", line
    assert h["x-turnout-attempts"] == "1"
    st, page = t.admin("GET", "/v1/budgets/" + bud["id"])
    assert page["requests"] == 2 and page["exhausted"] is True
    # a provider budget on the second too: nothing is left, 429 with the trace
    budget(t, name="b-cap", scope={"provider": "b"}, limit_requests=1)    # counts from its creation on
    assert chat(t)[0] == 200 and len(b2.log()) == 2
    st, h, body = chat(t)
    assert st == 429, body
    err = json.loads(body)["error"]
    assert err["code"] == "budget_exhausted" and [x["skipped"] for x in err["attempts"]] == ["budget_exhausted"] * 2


def test_key_and_tenant_budgets_refuse_only_their_callers(env):
    m = env.mock()
    t = gateway(env, m, config={"require_key": True})
    st, k1 = t.admin("POST", "/v1/keys", {"name": "one", "tenant": "acme"})
    st, k2 = t.admin("POST", "/v1/keys", {"name": "two", "tenant": "acme"})
    st, k3 = t.admin("POST", "/v1/keys", {"name": "three", "tenant": "other"})
    h1, h2, h3 = ({"Authorization": "Bearer " + k["secret"]} for k in (k1, k2, k3))
    budget(t, name="k1", scope={"key": k1["id"]}, limit_requests=1)
    budget(t, name="acme", scope={"tenant": "acme"}, limit_requests=3)
    assert chat(t, h1)[0] == 200
    st, _, body = chat(t, h1)
    assert st == 429 and "key budget 'k1'" in json.loads(body)["error"]["message"], body
    assert chat(t, h2)[0] == 200 and chat(t, h2)[0] == 200        # acme: 3 of 3
    st, _, body = chat(t, h2)
    assert st == 429 and "tenant budget 'acme'" in json.loads(body)["error"]["message"], body
    assert chat(t, h3)[0] == 200                                    # another tenant
    # a refused request spent nothing: the key's budget still shows 1
    st, page = t.admin("GET", "/v1/budgets?limit=100")
    by_name = {x["name"]: x for x in page["data"]}
    assert by_name["k1"]["requests"] == 1 and by_name["acme"]["requests"] == 3


def test_a_disabled_budget_is_not_enforced_and_an_alert_budget_never_refuses(env):
    m = env.mock()
    t = gateway(env, m)
    off = budget(t, name="off", scope="global", limit_requests=1, enabled=False)
    al = budget(t, name="watch", scope="global", limit_requests=2, action_on_exhaust="alert")
    for _ in range(5):
        assert chat(t)[0] == 200
    assert read(t, al)["requests"] == 5 and read(t, al)["exhausted"] is True
    assert read(t, off)["requests"] == 0
    time.sleep(0.2)
    assert t.output().count("budget watch (") == 1, t.output()     # once per window
    st, _, text = http_request(t.port, "GET", "/metrics")
    assert 'turnout_budget_alerts_total{budget="watch"} 1' in text.decode()


def test_a_one_minute_window_turns_over_on_time(env):
    m = env.mock()
    t = gateway(env, m)
    b = budget(t, scope="global", limit_requests=1, window="1m")
    assert chat(t)[0] == 200
    st, h, body = chat(t)
    assert st == 429, body
    wait = int(h["retry-after"])
    assert 1 <= wait <= 60 and float(h["retry-after-ms"]) <= 60000, h
    got = read(t, b)
    assert got["requests"] == 1 and got["exhausted"] is True
    start = time.strptime(got["window_start"], "%Y-%m-%dT%H:%M:%SZ")
    assert start.tm_sec == 0
    time.sleep(wait + 0.2)
    got = read(t, b)                   # a read after the turn shows the new window, without a request
    assert got["requests"] == 0 and got["exhausted"] is False, got
    assert chat(t)[0] == 200


def test_a_client_gone_before_the_answer_gives_its_reservation_back(env):
    m = env.mock("--delay-ms", "800")
    t = gateway(env, m)
    b = budget(t, scope="global", limit_requests=1)
    body = json.dumps({"model": "r", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    s = t.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(0.2)
    st, _, _ = chat(t)
    assert st == 429                   # the first one holds the only request
    s.close()                          # gone before any answer
    deadline = time.time() + 3
    while time.time() < deadline and chat(t)[0] != 200:
        time.sleep(0.1)
    got = read(t, b)
    assert got["requests"] == 1, got   # the second one; the first spent nothing
    line = [x for x in t.access_log(CHAT, count=3) if x["status"] == 499]
    assert line and line[0]["error"] == "client_closed"


def test_spend_survives_a_restart_and_sigkill(env):
    m = env.mock()
    t = gateway(env, m)
    b = budget(t, scope="global", limit_requests=100)
    for _ in range(5):
        assert chat(t)[0] == 200
    assert t.stop() == 0               # a clean stop writes the last of it
    t = gateway(env, m)                 # the same data dir (and the seed is not imported again)
    assert read(t, b)["requests"] == 5
    for _ in range(3):
        assert chat(t)[0] == 200
    time.sleep(1.5)                    # the keeper writes once a second: a crash loses at most that
    t.proc.kill()
    t.proc.wait()
    t.expect_exit = True
    t = gateway(env, m)
    got = read(t, b)
    assert got["requests"] == 8, got
    assert "restored the spend" in t.output()
    assert chat(t)[0] == 200 and read(t, b)["requests"] == 9


def test_dry_run_shows_the_budgets_that_apply_and_which_block(env):
    a, b2 = env.mock(name="a"), env.mock(name="b")
    t = gateway(env, a, b2)
    rid = route_id(t)
    budget(t, name="a-cap", scope={"target": {"route": rid, "provider": "a", "model": "m"}}, limit_requests=1)
    budget(t, name="b-watch", scope={"provider": "b"}, limit_requests=1, action_on_exhaust="alert")
    budget(t, name="route-day", scope={"route": rid}, limit_usd=5, window="1d")
    assert chat(t)[0] == 200 and chat(t)[0] == 200          # a's one, then b's one
    st, dr = t.admin("POST", "/v1/model-routes/dry-run", {"model": "r"})
    assert st == 200, dr
    ca, cb = dr["candidates"][0], dr["candidates"][1]
    assert ca["provider"] == "a" and ca["state"] == "budget_exhausted" and ca["available"] is False, ca
    assert [(x["name"], x["scope"], x["blocks"], x["requests"]) for x in ca["budgets"]] == [("a-cap", "target", True, 1)]
    assert cb["state"] == "usable" and cb["budgets"][0]["name"] == "b-watch" and cb["budgets"][0]["blocks"] is False
    assert cb["budgets"][0]["exhausted"] is True and cb["budgets"][0]["action_on_exhaust"] == "alert"
    assert [(x["name"], x["blocks"], x["window"]) for x in dr["budgets"]] == [("route-day", False, "1d")]
    assert dr["budgets"][0]["spent_usd"] > 0 and dr["budget_blocks"] is False
    budget(t, name="stop", scope="global", limit_requests=2)
    assert chat(t)[0] == 200 and chat(t)[0] == 200
    st, dr = t.admin("POST", "/v1/model-routes/dry-run", {"model": "r"})
    assert dr["budget_blocks"] is True and [x["name"] for x in dr["budgets"] if x["blocks"]] == ["stop"], dr
