#!/usr/bin/env bash
# Runs each libFuzzer driver (built by `make fuzz-bins` into DIR) for SECONDS,
# starting from its seeds in test/fuzz/corpus/NAME (every seed is run first,
# so the corpus is replayed too) and growing DIR/corpus-NAME. Prints one
# line of figures per driver and ends with "fuzz: N drivers, N clean"; a
# crash, leak, sanitizer report or timeout fails it, with the input left
# as DIR/NAME-crash-* and the end of the driver's log shown.
# usage: run-fuzz.sh DIR SECONDS NAME...
set -u
cd "$(dirname "$0")/.."
dir=$1 secs=$2
shift 2
clean=0 total=0
for n in "$@"; do
    total=$((total + 1))
    mkdir -p "$dir/corpus-$n"
    log=$dir/$n.log
    if "$dir/fuzz_$n" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$dir/$n-" "$dir/corpus-$n" "test/fuzz/corpus/$n" >"$log" 2>&1; then
        clean=$((clean + 1))
        runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
        echo "fuzz: $n clean, ${runs:-?} runs in ${secs} s, coverage ${cov:-?} edges"
    else
        echo "fuzz: $n FAILED (log $log):"
        tail -40 "$log"
    fi
done
echo "fuzz: $total drivers, $clean clean"
[ "$clean" -eq "$total" ]
