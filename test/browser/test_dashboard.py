"""The dashboard in a browser: sign-in, the route form and its field errors, the
enable switch against the data plane, dry-run, records shown as text, a tenant
admin's view, the keys' secret shown once, and the control loop's live feed.
Each view is photographed into build/ui-shots/."""
import json
import time

from browser import start
from harness import seed_for
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

XSS = "<img src=x onerror=alert(1)>"


def two_mocks(env, a_flags=(), routes=None):
    a = env.mock(*a_flags, name="a")
    b = env.mock(name="b")
    return a, b, env.turnout(seed_for(a, b, routes=routes))


def test_sign_in_wrong_key_and_key_deleted_mid_session(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    b = start(env, t)
    # / redirects to /ui/, which asks for a key
    b.open("/")
    b.wait_css("#signin-key")
    assert b.d.current_url.endswith("/ui/")
    b.shot("signin")
    b.sign_in("not-a-key")
    err = b.wait_text("#signin-error", "not accepted")
    assert "401" in err.text, err.text
    assert b.css("#app").get_attribute("hidden") is not None
    # a user key may not use the admin API: said so
    st, user = t.admin("POST", "/v1/keys", {"role": "user", "name": "u"})
    assert st == 201
    b.css("#signin-key").clear()
    b.sign_in(user["secret"])
    b.wait_text("#signin-error", "may not use the admin API")
    # a tenant admin signs in; its key is deleted; the next call returns to sign-in
    st, ta = t.admin("POST", "/v1/keys", {"role": "tenant_admin", "tenant": "acme", "name": "ops"})
    assert st == 201
    b.sign_in(ta["secret"])
    b.wait_css("#routes-table")
    assert b.d.execute_script("return sessionStorage.getItem('turnout.key')") == ta["secret"]
    assert t.admin("DELETE", "/v1/keys/" + ta["id"])[0] == 200
    b.go("providers")
    b.wait_text("#signin-error", "no longer accepted")
    assert b.d.execute_script("return sessionStorage.getItem('turnout.key')") is None
    # no cookie is ever set
    assert b.d.get_cookies() == []
    assert not b.console_errors() or all("401" in e["message"] or "403" in e["message"] for e in b.console_errors())


def test_create_route_through_the_form(env):
    a, b_, t = two_mocks(env)
    b = start(env, t)
    b.sign_in()
    b.wait_css("#routes-table")
    b.css("#route-new").click()
    b.wait_css("#route-form")
    b.css("#rf-name").send_keys("summarise")
    b.css("#rf-description").send_keys("made in the dashboard")
    b.css("#rf-primary").send_keys("a/mock-large")
    b.css("#rf-fallback").send_keys("b/mock-small")
    b.shot("route-form")
    b.css("#rf-save").click()
    row = b.wait_css('#routes-table tr[data-name="summarise"]')
    assert "a/mock-large" in row.text and "b/mock-small" in row.text, row.text
    st, lst = t.admin("GET", "/v1/model-routes")
    rec = next(r for r in lst["data"] if r["name"] == "summarise")
    assert rec["primary_model"] == "a/mock-large" and rec["fallback_model"] == "b/mock-small"
    assert rec["description"] == "made in the dashboard"
    assert [x["provider"] for x in rec["targets"]] == ["a", "b"]
    # edit it with the full targets: the order is swapped
    row.find_element(By.CSS_SELECTOR, "button.edit").click()
    b.wait_css("#route-form")
    b.css("#rf-mode-targets").click()
    rows = b.all("#route-form tr.target")
    assert len(rows) == 2
    for r, prov in zip(rows, ("b", "a")):
        box = r.find_element(By.CSS_SELECTOR, ".t-provider")
        box.clear()
        box.send_keys(prov)
    b.css("#rf-save").click()
    b.wait(lambda: t.admin("GET", "/v1/model-routes/" + rec["id"])[1]["targets"][0]["provider"] == "b", 5, "the PATCH")
    got = t.admin("GET", "/v1/model-routes/" + rec["id"])[1]
    assert "primary_model" not in got and got["description"] == "made in the dashboard", got
    st, h, body = t.chat("summarise")
    assert st == 200 and h["x-turnout-provider"] == "b"


def test_invalid_form_shows_the_field_error_beside_the_field(env):
    a, b_, t = two_mocks(env)
    b = start(env, t)
    b.sign_in()
    b.css("#route-new").click()
    b.wait_css("#route-form")
    b.css("#rf-name").send_keys("bad")
    b.css("#rf-max-in-flight").send_keys("0")
    b.css("#rf-primary").send_keys("a/mock-large")
    b.css("#rf-save").click()
    err = b.wait_text('[data-param="max_in_flight"] .field-error', "max_in_flight")
    assert b.css('[data-param="max_in_flight"]').get_attribute("class").split().count("invalid") == 1
    b.shot("route-form-error")
    # fixed, then a target naming an unknown provider: the error sits in that cell
    b.css("#rf-max-in-flight").clear()
    b.css("#rf-mode-targets").click()
    b.css("#route-form tr.target .t-provider").send_keys("nope")
    b.css("#route-form tr.target .t-model").send_keys("m")
    b.css("#rf-save").click()
    cell = b.wait_text('[data-param="targets[0].provider"] .field-error', "nope")
    assert cell.is_displayed()
    assert b.css('[data-param="max_in_flight"] .field-error').text == ""
    assert err is not None
    assert not [r for r in t.admin("GET", "/v1/model-routes")[1]["data"] if r["name"] == "bad"]


def test_switch_off_sends_callers_to_the_fallback(env):
    routes = [{"name": "flip", "strategy": "fallback",
               "targets": [{"provider": "a", "model": "mock-large"}, {"provider": "b", "model": "mock-small"}]}]
    a, b_, t = two_mocks(env, routes=routes)
    st, h, _ = t.chat("flip")
    assert st == 200 and h["x-turnout-provider"] == "a"
    b = start(env, t)
    b.sign_in()
    row = b.wait_css('#routes-table tr[data-name="flip"]')
    row.find_element(By.CSS_SELECTOR, "input.switch").click()
    b.wait_text("#flash", "disabled")
    assert t.admin("GET", "/v1/model-routes?include_disabled=true")[1]["data"][0]["enabled"] is False
    b.wait_css('#routes-table tr.off[data-name="flip"]')
    b.shot("routes-switched-off")
    for _ in range(3):
        st, h, _ = t.chat("flip")
        assert st == 200 and h["x-turnout-provider"] == "b", h
    # and back on
    b.css('#routes-table tr[data-name="flip"] input.switch').click()
    b.wait_text("#flash", "enabled")
    st, h, _ = t.chat("flip")
    assert st == 200 and h["x-turnout-provider"] == "a"


def test_delete_asks_first(env):
    m = env.mock()
    t = env.turnout(seed_for(m, routes=[{"name": "gone", "targets": [{"provider": "mock", "model": "mock-large"}]}]))
    b = start(env, t)
    b.sign_in()
    row = b.wait_css('#routes-table tr[data-name="gone"]')
    row.find_element(By.CSS_SELECTOR, "button.delete").click()
    b.wait_text('#routes-table tr[data-name="gone"] .ask', "Delete gone?")
    b.css('#routes-table tr[data-name="gone"] .confirm-no').click()
    assert len(t.admin("GET", "/v1/model-routes")[1]["data"]) == 1
    b.css('#routes-table tr[data-name="gone"] button.delete').click()
    b.wait_css('#routes-table tr[data-name="gone"] .confirm-yes').click()
    b.wait(lambda: not b.all('#routes-table tr[data-name="gone"]'), 5, "the row to go")
    assert t.admin("GET", "/v1/model-routes")[1]["data"] == []


def test_dry_run(env):
    routes = [{"name": "ab", "strategy": "ab", "targets": [
        {"provider": "a", "model": "mock-large", "variant": "A", "weight": 50},
        {"provider": "b", "model": "mock-small", "variant": "B", "weight": 50}]}]
    a, b_, t = two_mocks(env, routes=routes)
    b = start(env, t)
    b.sign_in(view="dry-run")
    b.wait_css("#dry-run-form")
    b.css("#dr-model").send_keys("ab")
    b.css("#dr-user").send_keys("alice")
    b.css("#dr-run").click()
    b.wait_text("#dr-rule", "exact")
    assert 'route "ab"' in b.css("#dr-why").text
    rows = b.all("#dr-candidates tbody tr")
    assert len(rows) == 2 and all("usable" in r.text for r in rows), [r.text for r in rows]
    b.shot("dry-run")
    # an unknown model: the answer's status and code
    b.css("#dr-model").clear()
    b.css("#dr-model").send_keys("nothing-here")
    b.css("#dr-run").click()
    b.wait_text("#dry-run-result", "model_not_found")
    assert b.css("#dr-status").text == "404"


def test_records_are_shown_as_text(env):
    m = env.mock()
    seed = seed_for(m, routes=[{"name": "xss", "description": XSS, "targets": [{"provider": "mock", "model": "mock-large"}]}])
    seed["routers"] = [{"slug": "team", "name": XSS, "description": XSS}]
    t = env.turnout(seed)
    st, k = t.admin("POST", "/v1/keys", {"name": XSS, "description": XSS})
    assert st == 201
    b = start(env, t)
    b.sign_in()
    row = b.wait_css('#routes-table tr[data-name="xss"]')
    assert row.find_element(By.CSS_SELECTOR, "td.desc").text == XSS
    assert b.all("#view img") == []
    row.find_element(By.CSS_SELECTOR, "button.edit").click()
    assert b.wait_css("#rf-description").get_attribute("value") == XSS
    for view, sel in (("routers", "#routers-table"), ("keys", "#keys-table")):
        b.go(view)
        b.wait_text(sel, XSS)
        assert b.all("#view img") == []
    time.sleep(0.3)
    assert b.alert_text() is None
    assert b.d.execute_script("return document.querySelectorAll('img').length") == 0


def test_tenant_admin_sees_only_its_tenant(env):
    m = env.mock()
    routes = [{"name": n, "scope": s, "targets": [{"provider": "mock", "model": "mock-large"}]}
              for n, s in (("acme-route", "tenant:acme"), ("other-route", "tenant:other"), ("global-route", "global"))]
    t = env.turnout(seed_for(m, routes=routes))
    st, ta = t.admin("POST", "/v1/keys", {"role": "tenant_admin", "tenant": "acme", "name": "acme ops"})
    assert st == 201
    assert t.admin("POST", "/v1/keys", {"role": "user", "tenant": "other", "name": "other-user"})[0] == 201
    b = start(env, t)
    b.sign_in(ta["secret"])
    b.wait_css('#routes-table tr[data-name="acme-route"]')
    names = [r.get_attribute("data-name") for r in b.all("#routes-table tbody tr")]
    assert "other-route" not in names, names
    visible = {r["name"] for r in t.admin("GET", "/v1/model-routes", key=ta["secret"])[1]["data"]}
    assert set(names) == visible, (names, visible)
    b.go("keys")
    b.wait_text("#keys-table", "acme ops")
    assert "other-user" not in b.css("#keys-table").text
    # what the API refuses is shown with its message
    b.go("routes")
    b.wait_css("#route-new").click()
    b.css("#rf-name").send_keys("sneaky")
    b.css("#rf-scope").send_keys("tenant:other")
    b.css("#rf-primary").send_keys("mock/mock-large")
    b.css("#rf-save").click()
    b.wait(lambda: any(e.text for e in b.all("#route-form .field-error, #route-form .form-error")), 5, "the 403")
    b.shot("tenant-admin")


def test_new_key_secret_is_shown_once(env):
    m = env.mock()
    t = env.turnout(seed_for(m))
    b = start(env, t)
    b.sign_in(view="keys")
    b.wait_css("#keys-table")
    b.css("#keys-new").click()
    b.css("#kf-name").send_keys("ci")
    Select(b.css("#kf-role")).select_by_value("user")
    b.css("#kf-save").click()
    secret = b.wait_css("#new-secret").get_attribute("value")
    assert secret.startswith("tk-") and len(secret) == 51
    assert b.css("#copy-secret").is_displayed()
    b.shot("key-secret")
    st, h, _ = t.request("POST", "/v1/chat/completions", {"model": "mock-small", "messages": []},
                         {"Authorization": "Bearer " + secret})
    assert st == 200
    b.css("#secret-done").click()
    b.wait_text("#keys-table", "ci")
    assert secret not in b.d.page_source
    assert secret not in json.dumps(b.d.execute_script("return Object.assign({}, sessionStorage)"))
    assert secret not in json.dumps(b.d.get_log("browser"))


def test_every_view_photographed(env):
    a, b_, t = two_mocks(env, routes=[{"name": "fast-summariser", "description": "cheap first, then the large model",
                                       "primary_model": "a/mock-small", "fallback_model": "b/mock-large"}])
    st, p = t.admin("GET", "/v1/providers")
    for rec in p["data"]:
        t.admin("PATCH", "/v1/providers/" + rec["id"], {"models": [
            {"name": "mock-small", "bare_alias": rec["name"] == "a", "input_price": 0.15, "output_price": 0.6},
            {"name": "mock-large", "input_price": 2.5, "output_price": 10}]})
    assert t.admin("POST", "/v1/routers", {"slug": "team-a", "name": "Team A"})[0] == 201
    assert t.admin("POST", "/v1/model-routes", {"name": "gpt-*", "router": "team-a", "priority": 10,
                                                "targets": [{"provider": "a"}]})[0] in (201, 400)
    assert t.admin("POST", "/v1/budgets", {"name": "monthly", "scope": "global", "limit_usd": 5, "window": "1M"})[0] == 201
    assert t.admin("POST", "/v1/keys", {"name": "acme ops", "role": "tenant_admin", "tenant": "acme"})[0] == 201
    for _ in range(5):
        t.chat("fast-summariser")
    b = start(env, t)
    b.sign_in()
    b.wait_css('#routes-table tr[data-name="fast-summariser"]')
    b.shot("routes")
    for view, sel in (("providers", "#providers-table"), ("routers", "#routers-table"), ("keys", "#keys-table"),
                      ("budgets", "#budgets-table"), ("usage", "#usage-form")):
        b.go(view)
        b.wait_css(sel)
        time.sleep(0.3)
        b.shot(view)
    b.go("providers")
    b.wait_text("#providers-table", "$0.15")
    assert "MOCK_API_KEY" in b.css("#providers-table").text
    b.wait_text("#providers-table", "attempts")           # the last minute, from /v1/stats
    # a provider's editor holds what the API read, and no page-only field
    b.css("#providers-table button.edit").click()
    rec = json.loads(b.wait_css("#json-editor").get_attribute("value"))
    assert "id" not in rec and not [k for k in rec if k.startswith("_")] and rec["models"], rec
    # no view broke the CSP (no inline script or style) or failed to load a file
    bad = [e["message"] for e in b.console_errors()
           if "Content Security Policy" in e["message"] or "/ui/" in e["message"]]
    assert not bad, bad


def test_providers_show_cooldowns_and_traffic(env):
    a = env.mock("--status", "503", name="a")
    b_ = env.mock(name="b")
    routes = [{"name": "flaky", "strategy": "fallback",
               "targets": [{"provider": "a", "model": "mock-large"}, {"provider": "b", "model": "mock-small"}]}]
    t = env.turnout(seed_for(a, b_, routes=routes), config={"upstream": {"cooldown_after": 1, "cooldown_s": 600}})
    st, h, _ = t.chat("flaky")
    assert st == 200 and h["x-turnout-provider"] == "b"
    b = start(env, t)
    b.sign_in(view="providers")
    state = b.wait_text("#providers-table .state", "cooling down until")
    row = b.css('#providers-table tr[data-id="%s"]' % next(
        p["id"] for p in t.admin("GET", "/v1/providers")[1]["data"] if p["name"] == "a"))
    assert state.text in row.text and "mock-large" in row.text
    assert len(b.all("#providers-table .state")) == 1           # b and a's other model are usable
    b.shot("providers-cooling")
