-- Shared by the wrk scripts in this folder (loaded with dofile from each).
-- done() prints ONE line, "BENCHJSON {...}", that bench/bench.py parses instead
-- of wrk's text report:
--   requests     completed responses (any status)
--   duration_us  the run's wall time in microseconds
--   bytes        response bytes read
--   errors       connect/read/write/timeout socket errors and status
--                (responses with status > 399, wrk's "Non-2xx or 3xx")
--   latency      min/mean/p50/p90/p99/p99.9/max in microseconds
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end
