-- wrk script: chat.lua's non-streaming chat completion, but the run stops once
-- N responses have arrived (N = the first argument after `--`, default 10000;
-- wrk's -d stays the bound in time). Once the thread has stopped, a line
-- BENCHSTOP goes to stderr: wrk's main thread would sleep out -d before it
-- reports, so bench/bench.py sends it SIGINT then (wrk reports at once).
-- Used by bench/bench.py to count the servers' system calls over a fixed
-- number of requests: with -t1 the count is the thread's, and at most
-- (connections - 1) more requests were in flight when it stopped (the server
-- answered them; wrk did not count them).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "chat.lua")
local limit, seen = 10000, 0
function init(args)
   limit = tonumber(args[1]) or limit
end
function response(status, headers, body)
   seen = seen + 1
   if seen == limit then
      wrk.thread:stop()
      io.stderr:write("BENCHSTOP\n")
      io.stderr:flush()
   end
end
