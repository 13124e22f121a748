"""EUrouter's provider preferences (require_parameters, quantizations, max_retention_days, the residency
sets), GET /v1/eu-residency and the what-if dry-run (route_id / route_name, models, provider overrides)."""
import json
import uuid

from harness import seed_for
from test_resolver import CHAT, add_route


def tg(provider, model="m", **extra):
    return dict({"provider": provider, "model": model}, **extra)


def three(env):
    """Providers a, b, c (one mock each) serving model m, declared differently:
    a: DE, keeps nothing, fp8, supports tools + temperature + language;
    b: FR and US, 30 days, int4, supports temperature;
    c: CH, retention unknown, no quantization, declares no parameters."""
    mocks = [env.mock(name=n) for n in "abc"]
    seed = seed_for(*mocks)
    a, b, c = seed["providers"]
    a.update(region="DE", retention_days=0)
    a["models"] = [{"name": "m", "quantization": "fp8",
                    "supported_parameters": ["tools", "temperature", "language"]}]
    b.update(region=["FR", "US"], retention_days=30)
    b["models"] = [{"name": "m", "quantization": "int4", "supported_parameters": ["temperature"]}]
    c.update(region="CH")
    c["models"] = [{"name": "m"}]
    return mocks, env.turnout(seed)


def dry(t, **body):
    st, d = t.admin("POST", "/v1/model-routes/dry-run", body)
    assert st == 200, d
    return d


def usable(d):
    return [c["provider"] for c in d["candidates"] if c["available"]]


def filtered(d):
    return {c["provider"]: c["filter"] for c in d["candidates"] if c["state"] == "filtered"}


def served_by(mocks, t, model, **extra):
    """Sends one chat request; returns the provider header, checking that
    only that provider's mock saw a request."""
    for m in mocks:
        m.clear()
    st, h, body = t.chat(model, **extra)
    assert st == 200, body
    got = h["x-turnout-provider"]
    assert [m.name for m in mocks if m.log()] == [got]
    return got


def test_require_parameters(env):
    mocks, t = three(env)
    # c first: without the preference it would serve everything
    add_route(t, name="rp", provider={"require_parameters": True}, targets=[tg("c"), tg("b"), tg("a")])
    add_route(t, name="plain", targets=[tg("c"), tg("b"), tg("a")])
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert served_by(mocks, t, "rp", tools=tools, temperature=0.2) == "a"
    assert served_by(mocks, t, "rp", temperature=0.2) == "b"
    # nothing declares top_p: no provider is left
    st, h, body = t.chat("rp", top_p=0.5)
    assert st == 503 and json.loads(body)["error"]["code"] == "no_upstream", body
    # not parameters: the model, the content, stream, stream_options, user
    assert served_by(mocks, t, "rp", user="u1", stream=False) == "c"
    # a route without the preference ignores parameters
    assert served_by(mocks, t, "plain", tools=tools) == "c"
    # an escaped key is the same parameter
    for m in mocks:
        m.clear()
    raw = b'{"model":"rp","messages":[],"t\\u006fols":[]}'
    st, h, _ = t.request("POST", CHAT, raw, {"Content-Type": "application/json"})
    assert st == 200 and h["x-turnout-provider"] == "a"
    # the dry-run takes the request's parameters as a list and says who was filtered
    d = dry(t, model="rp", parameters=["tools"])
    assert usable(d) == ["a"] and filtered(d) == {"c": "require_parameters", "b": "require_parameters"}, d
    assert d["provider_count"] == 1 and d["providers"] == ["a"]
    assert d["effective_preferences"] == {"require_parameters": True}
    d = dry(t, model="rp", parameters=["temperature", "messages", "model"])
    assert usable(d) == ["b", "a"] and filtered(d) == {"c": "require_parameters"}
    assert usable(dry(t, model="rp")) == ["c", "b", "a"]      # no parameters given: none required


def test_require_parameters_multipart(env):
    mocks, t = three(env)
    add_route(t, name="stt", endpoint="audio_transcription", provider={"require_parameters": True},
              targets=[tg("c"), tg("b"), tg("a")])

    def transcribe(*fields):
        boundary = "----t" + uuid.uuid4().hex
        parts = [b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                 b"Content-Type: audio/wav\r\n\r\nRIFF\r\n",
                 b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\nstt\r\n']
        for name, value in fields:
            parts.append(b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="' + name.encode() +
                         b'"\r\n\r\n' + value.encode() + b"\r\n")
        parts.append(b"--" + boundary.encode() + b"--\r\n")
        st, h, body = t.request("POST", "/v1/audio/transcriptions", b"".join(parts),
                                {"Content-Type": "multipart/form-data; boundary=" + boundary})
        assert st == 200, body
        return h["x-turnout-provider"]

    assert transcribe() == "c"                                    # file and model are not parameters
    assert transcribe(("language", "de")) == "a"
    assert transcribe(("temperature", "0")) == "b"


def test_quantizations_and_retention(env):
    mocks, t = three(env)
    cases = [({"quantizations": ["fp8"]}, ["a"], {"b": "quantizations", "c": "quantizations"}),
             ({"quantizations": ["int4", "unknown"]}, ["c", "b"], {"a": "quantizations"}),
             ({"max_retention_days": 0}, ["a"], {"b": "max_retention_days", "c": "max_retention_days"}),
             ({"max_retention_days": 30}, ["b", "a"], {"c": "max_retention_days"}),
             ({"max_retention_days": 29, "quantizations": ["fp8", "int4"]}, ["a"],
              {"b": "max_retention_days", "c": "max_retention_days"})]
    for i, (prefs, want, why) in enumerate(cases):
        add_route(t, name="q%d" % i, provider=prefs, targets=[tg("c"), tg("b"), tg("a")])
        d = dry(t, model="q%d" % i)
        assert usable(d) == want and filtered(d) == why, (prefs, d)
        assert served_by(mocks, t, "q%d" % i) == want[0], prefs


def test_residency_sets(env):
    mocks, t = three(env)
    cases = [("eu", ["a"]), ("EEA", ["a"]), ("eu_adequate", ["c", "b", "a"]), (["DE", "ch"], ["c", "a"]),
             (["FR"], []), (["FR", "US"], ["b"]), (["eea", "CH"], ["c", "a"]), ("DE", ["a"])]
    for i, (want_region, want) in enumerate(cases):
        add_route(t, name="r%d" % i, provider={"data_residency": want_region}, targets=[tg("c"), tg("b"), tg("a")])
        d = dry(t, model="r%d" % i)
        assert usable(d) == want, (want_region, d)
        assert all(f == "data_residency" for f in filtered(d).values()) and len(filtered(d)) == 3 - len(want)
        if want:
            assert served_by(mocks, t, "r%d" % i) == want[0], want_region
    # a provider that names no region is never resident; one named by a set is within the sets holding it
    st, _ = t.admin("POST", "/v1/providers", {"name": "nowhere", "base_url": mocks[0].base_url,
                                              "models": [{"name": "m"}]})
    st, _ = t.admin("POST", "/v1/providers", {"name": "eu-wide", "base_url": mocks[0].base_url, "region": "eu",
                                              "models": [{"name": "m"}]})
    add_route(t, name="sets", provider={"data_residency": "eea"}, targets=[tg("nowhere"), tg("eu-wide")])
    d = dry(t, model="sets")
    assert usable(d) == ["eu-wide"] and filtered(d) == {"nowhere": "data_residency"}

    st, r = t.admin("GET", "/v1/eu-residency")
    assert st == 200
    eu, eea, adequate = (r[k] for k in ("eu_countries", "eea_countries", "eu_adequate_countries"))
    assert len(eu) == 27 and len(eea) == 30 and len(adequate) == 45
    codes = lambda lst: {c["code"] for c in lst}
    assert {"DE": "Germany"}.items() <= {c["code"]: c["name"] for c in eu}.items()
    assert codes(eea) - codes(eu) == {"IS", "LI", "NO"}
    assert codes(adequate) - codes(eea) == {"AD", "AR", "CA", "FO", "GG", "IL", "IM", "JP", "JE", "NZ", "KR", "CH",
                                            "GB", "US", "UY"}
    assert t.admin("POST", "/v1/eu-residency", {})[0] == 405
    assert t.request("GET", "/v1/eu-residency")[0] == 404      # admin API only


def test_preference_fields_are_validated(env):
    a = env.mock(name="a")
    t = env.turnout(seed_for(a))
    base = {"base_url": a.base_url}
    for body, field in [({"region": []}, "region"), ({"region": 5}, "region"),
                        ({"retention_days": -1}, "retention_days"),
                        ({"models": [{"name": "m", "quantization": "q3"}]}, "models[0].quantization"),
                        ({"models": [{"name": "m", "supported_parameters": "tools"}]}, "models[0].supported_parameters")]:
        st, err = t.admin("POST", "/v1/providers", dict(base, name="p", **body))
        assert st == 400 and err["error"]["param"] == field, (body, err)
    for prefs, field in [({"require_parameters": "yes"}, "provider.require_parameters"),
                         ({"quantizations": ["fp7"]}, "provider.quantizations"),
                         ({"quantizations": "fp8"}, "provider.quantizations"),
                         ({"max_retention_days": -1}, "provider.max_retention_days"),
                         ({"max_retention_days": 1.5}, "provider.max_retention_days"),
                         ({"data_residency": [1]}, "provider.data_residency")]:
        st, err = t.admin("POST", "/v1/model-routes", {"name": "x", "provider": prefs, "targets": [tg("a")]})
        assert st == 400 and err["error"]["param"] == field, (prefs, err)
    st, p = t.admin("POST", "/v1/providers", dict(base, name="ok", region=["DE", "AT"], retention_days=7,
                                                  models=[{"name": "m", "quantization": "bf16",
                                                           "supported_parameters": ["tools"]}]))
    assert st == 201 and p["region"] == ["DE", "AT"] and p["retention_days"] == 7
    st, p = t.admin("PATCH", "/v1/providers/" + p["id"], {"region": "FR"})
    assert st == 200 and p["region"] == "FR"


def test_what_if_dry_run(env):
    mocks, t = three(env)
    rp = add_route(t, name="chain", provider={"require_parameters": True, "order": ["b"]},
                   targets=[tg("c"), tg("b"), tg("a")])
    add_route(t, name="eu-only", provider={"data_residency": "eu"}, targets=[tg("c"), tg("b"), tg("a")])
    add_route(t, name="other", targets=[tg("c", "other-m")])
    add_route(t, name="emb", endpoint="embeddings", targets=[tg("a", "e")])

    # route_id: that route, even for a model that would never reach it
    d = dry(t, route_id=rp["id"], model="other", parameters=["temperature"])
    assert d["rule"] == "explicit" and d["route"]["name"] == "chain" and d["model"] == "other"
    assert usable(d) == ["b", "a"] and filtered(d) == {"c": "require_parameters"}
    assert d["effective_preferences"] == {"require_parameters": True, "order": ["b"]}
    # route_name, no model: the route as its own name reaches it
    d = dry(t, route_name="eu-only")
    assert d["model"] == "eu-only" and d["route"]["id"] and usable(d) == ["a"]
    # the route's endpoint kind is the default
    d = dry(t, route_name="emb")
    assert d["endpoint"] == "embeddings" and d["status"] == 200 and usable(d) == ["a"]
    # provider: overrides merged over the route's; the answer shows them merged
    d = dry(t, route_name="chain", provider={"require_parameters": False, "data_residency": "eu_adequate",
                                             "quantizations": ["int4", "fp8"], "order": None},
            parameters=["tools"])
    assert d["effective_preferences"] == {"require_parameters": False, "data_residency": "eu_adequate",
                                          "quantizations": ["int4", "fp8"]}, d
    assert usable(d) == ["b", "a"] and filtered(d) == {"c": "quantizations"}
    d = dry(t, model="eu-only", provider={"data_residency": "eu_adequate"})     # without a route given
    assert usable(d) == ["c", "b", "a"] and d["effective_preferences"] == {"data_residency": "eu_adequate"}
    # the stored route is unchanged
    st, rec = t.admin("GET", "/v1/model-routes/" + rp["id"])
    assert rec["provider"] == {"require_parameters": True, "order": ["b"]}

    # models: a fallback chain, one result per model; one of them has no provider
    d = dry(t, models=["nothing-here", "eu-only", "chain"], parameters=["tools"])
    assert [r["model"] for r in d["results"]] == ["nothing-here", "eu-only", "chain"]
    none, eu, chain = d["results"]
    assert none["status"] == 404 and none["provider_count"] == 0 and none["providers"] == []
    assert none["route"] is None and none["effective_preferences"] is None
    assert eu["provider_count"] == 1 and eu["providers"] == ["a"] and eu["route"]["name"] == "eu-only"
    assert eu["effective_preferences"] == {"data_residency": "eu"}
    assert chain["providers"] == ["a"] and filtered(chain) == {"b": "require_parameters", "c": "require_parameters"}
    assert d["summary"] == {"total_models": 3, "models_with_providers": 2}
    assert d["selected_model"] == "eu-only" and d["effective_preferences"] is None
    # models through one route, with an override that leaves nothing for one of them
    d = dry(t, route_id=rp["id"], models=["x", "y"], provider={"only": ["c"]}, parameters=["tools"])
    assert [r["provider_count"] for r in d["results"]] == [0, 0]
    assert d["summary"] == {"total_models": 2, "models_with_providers": 0} and d["selected_model"] is None
    assert d["effective_preferences"] == {"require_parameters": True, "order": ["b"], "only": ["c"]}
    assert filtered(d["results"][0]) == {"a": "only", "b": "only", "c": "require_parameters"}

    # errors name the field
    for body, status, field in [({"model": "x", "models": ["y"]}, 400, "models"),
                                ({"models": []}, 400, "models"), ({"models": "x"}, 400, "models"),
                                ({"models": ["x", 5]}, 400, "models"),
                                ({"model": "x", "provider": {"sort": "cost"}}, 400, "provider.sort"),
                                ({"model": "x", "provider": []}, 400, "provider"),
                                ({"model": "x", "parameters": "tools"}, 400, "parameters"),
                                ({"route_id": rp["id"], "route_name": "chain"}, 400, "route_name"),
                                ({"route_id": 5}, 400, "route_id"),
                                ({"route_id": str(uuid.uuid4())}, 404, None),
                                ({"route_name": "absent"}, 404, None), ({"endpoint": "chat"}, 400, "model")]:
        st, err = t.admin("POST", "/v1/model-routes/dry-run", body)
        assert st == status and err["error"]["param"] == field, (body, err)
    # a tenant admin tests its own tenant's routes only
    st, tk = t.admin("POST", "/v1/keys", {"role": "tenant_admin", "tenant": "acme"})
    mine = add_route(t, name="acme-r", scope="tenant:acme", targets=[tg("a")])
    assert t.admin("POST", "/v1/model-routes/dry-run", {"route_id": mine["id"]}, key=tk["secret"])[0] == 200
    assert t.admin("POST", "/v1/model-routes/dry-run", {"route_id": rp["id"]}, key=tk["secret"])[0] == 404
    # nothing was called
    assert all(m.stats()["requests"] == 0 for m in mocks)
