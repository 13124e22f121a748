#!/usr/bin/env bash
# CPU time per proxied 2 KB chat request (DESIGN.md's method): utime+stime of the
# turnout process from /proc over N requests sent by wrk at C connections, divided
# by the requests completed. mockllm is the upstream. Everything listens on
# 127.0.0.1 and is stopped by PID; the run is bounded by DURATION seconds.
# usage: bench/cpu-per-request.sh [BUILD_DIR] [DURATION_S] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
duration=${2:-10}
conns=${3:-32}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

taskset -c 1 "$build/mockllm" --no-log --port 0 --port-file "$tmp/mock.port" >/dev/null &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/mock.port" ] && break; sleep 0.1; done
mport=$(cat "$tmp/mock.port")
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/seed.json" <<JSON
{"providers":[{"name":"mock","base_url":"http://127.0.0.1:$mport/v1","models":[{"name":"mock-small","bare_alias":true}]}],
 "routes":[{"name":"fast-summariser","targets":[{"provider":"mock","model":"mock-small"}]}]}
JSON
cat > "$tmp/config.json" <<JSON
{"listen":"127.0.0.1:$port","workers":1,"data_dir":"$tmp/data","require_key":false,
 "log":{"access":"off"},"seed":"$tmp/seed.json"}
JSON
taskset -c 1 "$build/turnout" -c "$tmp/config.json" 2>"$tmp/turnout.err" &
tpid=$!
pids+=($tpid)
for _ in $(seq 50); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

# a 2 KB chat body
content=$(head -c 1900 /dev/zero | tr '\0' 'x')
body="{\"model\":\"fast-summariser\",\"messages\":[{\"role\":\"user\",\"content\":\"$content\"}],\"temperature\":0.2}"
cat > "$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
ticks() { awk '{print $14 + $15}' "/proc/$tpid/stat"; }
hz=$(getconf CLK_TCK)
wrk -t1 -c4 -d2s -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null  # warm-up
t0=$(ticks)
out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${duration}s" -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/chat/completions")
t1=$(ticks)
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
echo "$out"
awk -v a="$t0" -v b="$t1" -v hz="$hz" -v n="$reqs" -v bad="${non2xx:-0}" 'BEGIN {
  printf "body bytes: %d\nrequests: %d (non-2xx: %d)\nturnout cpu: %.2f s\ncpu per request: %.1f us\n",
         '"${#body}"', n, bad, (b-a)/hz, (b-a)/hz/n*1e6 }'
