-- wrk script: a non-streaming chat completion whose message content is 200 KB
-- (204,800 bytes of ASCII), model bench-chat; used by `make -C bench scale`.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-chat","messages":[{"role":"user","content":"' ..
           string.rep("Summarise the benchmark in one sentence. ", 5000):sub(1, 204800) .. '"}]}'
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
