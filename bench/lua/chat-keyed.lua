-- wrk script: chat.lua's non-streaming chat completion from a caller with a
-- key: the first argument after `--` is its secret, sent as a bearer token.
-- bench/bench.py runs it against a turnout that requires keys, with a key of
-- no budget or limit and one with a budget and an rpm limit (the metering
-- rows).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "chat.lua")
function init(args)
   wrk.headers["Authorization"] = "Bearer " .. args[1]
end
