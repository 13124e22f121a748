-- wrk script: a streaming chat completion ("stream":true), model bench-sse.
-- wrk reads each SSE response to its end (the proxies answer chunked or with a
-- Content-Length), so one "request" is one whole ~13 KB stream.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-sse","messages":[{"role":"user","content":"Summarise the benchmark in one sentence."}],"stream":true}'
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
