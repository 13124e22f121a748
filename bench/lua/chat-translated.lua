-- wrk script: the non-streaming chat completion of chat.lua, sent to the route
-- bench-anth-chat, whose provider speaks Anthropic's Messages API (protocol
-- anthropic): turnout translates the request to POST /v1/messages and the
-- Anthropic answer back to a chat.completion. Only the model name differs
-- from chat.lua's body.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-anth-chat","messages":[{"role":"user","content":"Summarise the benchmark in one sentence."}]}'
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
