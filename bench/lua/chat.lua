-- wrk script: a non-streaming chat completion, model bench-chat.
-- The same bytes go to turnout, the nginx proxy and the mock directly (nginx
-- ignores the body; turnout routes on "model").
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-chat","messages":[{"role":"user","content":"Summarise the benchmark in one sentence."}]}'
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
