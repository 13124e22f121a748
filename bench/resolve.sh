#!/usr/bin/env bash
# Resolution cost against a small and a large store, and turnout's start-up
# time on the large one.  usage: bash bench/resolve.sh [BIG] [POOLS]
# (defaults 1000000 routes, 1000 glob pools). Prints one JSON object per
# store and round, then the medians and the exact-lookup ratios big/small,
# and saves that under bench/results/. The stores are built under build/bench-resolve and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
big=${1:-1000000}
pools=${2:-1000}
make -s build/bench_resolve build/turnout >/dev/null
work=build/bench-resolve
rm -rf "$work" && mkdir -p "$work" bench/results
trap 'rm -rf "$work"' EXIT

# each store is built in one process and measured in another, as a
# restarted gateway would read it
# rounds (3), each in a fresh process, alternating small and big; the
# medians are reported
build/bench_resolve build "$work/small" 100 "$pools"
big_import=$(build/bench_resolve build "$work/big" "$big" "$pools")
echo "$big_import"
small_runs=() big_runs=()
for round in 1 2 3; do
    small_runs+=("$(build/bench_resolve measure "$work/small" 100 "$pools")")
    big_runs+=("$(build/bench_resolve measure "$work/big" "$big" "$pools")")
    echo "round $round: ${small_runs[-1]} ${big_runs[-1]}"
done
median() {   # median of each field over the JSON objects given
    /usr/bin/python3 -c '
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
print(json.dumps({k: statistics.median(r[k] for r in runs) for k in runs[0]}))' "$@"
}
small_json=$(median "${small_runs[@]}")
big_json=$(median "${big_runs[@]}")

# start-up: from exec to the first 200 on /healthz, on the big store
port=$((20000 + RANDOM % 10000))
cat > "$work/turnout.json" <<JSON
{"listen": "127.0.0.1:$port", "workers": 2, "data_dir": "big", "require_key": false,
 "admin": {"listen": "127.0.0.1:$((port + 1))"}, "store": {"map_size_mb": 8192},
 "log": {"level": "info", "access": "off"}}
JSON
t0=$(date +%s%N)
build/turnout -c "$work/turnout.json" 2>"$work/turnout.err" &
pid=$!
for _ in $(seq 1 500); do
    if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
    sleep 0.01
done
t1=$(date +%s%N)
kill -TERM "$pid"; wait "$pid" || true
startup_ms=$(( (t1 - t0) / 1000000 ))

result=$(/usr/bin/python3 - "$small_json" "$big_json" "$startup_ms" "$big_import" <<'PY'
import json, sys
small, big, startup = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
big["import_s"] = json.loads(sys.argv[4])["import_s"]
out = {"small": small, "big": big, "exact_ratio_big_over_small": round(big["exact_us"] / small["exact_us"], 3),
       "exact_cold_ratio_big_over_small": round(big["exact_cold_us"] / small["exact_cold_us"], 3),
       "exact_hot_ratio_big_over_small": round(big["exact_hot_us"] / small["exact_hot_us"], 3),
       "turnout_startup_ms_big_store": startup}
print(json.dumps(out))
PY
)
echo "$result"
echo "$result" > "bench/results/resolve-$(date -u +%Y%m%dT%H%M%SZ).json"
