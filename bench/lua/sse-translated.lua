-- wrk script: the streaming chat completion of sse.lua, sent to the route
-- bench-anth-sse, whose provider speaks Anthropic's Messages API: turnout
-- translates the request to POST /sse/v1/messages and the Anthropic event
-- stream back, event by event, to chat.completion.chunk events and [DONE].
-- One "request" is one whole stream. Only the model name differs from sse.lua's.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-anth-sse","messages":[{"role":"user","content":"Summarise the benchmark in one sentence."}],"stream":true}'
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
