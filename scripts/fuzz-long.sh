#!/usr/bin/env bash
# The long fuzzing runs: each driver (built by `make fuzz-bins` into DIR) runs
# until it has used CPU_SECONDS of CPU time in all (user + system, read from
# /proc/PID/stat, so a run sharing the machine still gets its full share),
# then is interrupted and its figures printed: executions, coverage,
# features, corpus size, CPU and wall time.
#
# A run can be stopped (SIGTERM or SIGINT to this script: the driver is
# interrupted, its figures kept) and started again with the same arguments:
# what each driver has used so far is kept in DIR/NAME.long (CPU seconds,
# executions, wall seconds), and a driver that has had its time is skipped.
# Do not SIGSTOP a driver instead: its -timeout runs on wall time and would
# call the pause a hang. Drivers start from the committed seeds and what
# DIR's corpus already holds. A crash, leak, sanitizer report or timeout
# stops the driver, leaves its input as DIR/NAME-* and marks it FAILED.
# Drivers run one after another, at nice 10.
# usage: fuzz-long.sh DIR CPU_SECONDS NAME...
set -u
cd "$(dirname "$0")/.."
dir=$1 budget=$2
shift 2
tck=$(getconf CLK_TCK)
pid=
stop=0
trap 'stop=1; [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null' INT TERM

for n in "$@"; do
    [ "$stop" = 1 ] && break
    mkdir -p "$dir/corpus-$n"
    log=$dir/$n.long.log
    read -r used runs_before wall_before 2>/dev/null <"$dir/$n.long" || { used=0 runs_before=0 wall_before=0; }
    if [ "$used" -ge "$budget" ]; then
        echo "fuzz-long: $n done before: cpu ${used} s, ${runs_before} runs"
        continue
    fi
    start=$(date +%s)
    nice -n 10 "$dir/fuzz_$n" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$dir/$n-" "$dir/corpus-$n" "test/fuzz/corpus/$n" >"$log.run" 2>&1 &
    pid=$!
    cpu=0
    while kill -0 "$pid" 2>/dev/null; do
        # fields 14 and 15 of /proc/PID/stat: utime and stime in clock ticks
        read -r -a st <"/proc/$pid/stat" 2>/dev/null || break
        cpu=$(( (st[13] + st[14]) / tck ))
        if [ $((used + cpu)) -ge "$budget" ]; then
            kill -INT "$pid"
            break
        fi
        sleep 5
    done
    wait "$pid"
    rc=$?
    while kill -0 "$pid" 2>/dev/null; do    # (a signal to this script ends the wait early)
        wait "$pid"
        rc=$?
    done
    pid=
    cat "$log.run" >>"$log"
    wall=$(( $(date +%s) - start ))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log.run" | tail -1 | grep -o '[0-9]*$')
    echo "$((used + cpu)) $((runs_before + ${runs:-0})) $((wall_before + wall))" >"$dir/$n.long"
    read -r used runs_all wall_all <"$dir/$n.long"
    cov=$(grep -o 'cov: [0-9]*' "$log.run" | tail -1 | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' "$log.run" | tail -1 | grep -o '[0-9]*')
    corp=$(ls "$dir/corpus-$n" | wc -l)
    # libFuzzer prints its final stats when interrupted (exit 72); a finding
    # exits otherwise and leaves an artifact
    if ls "$dir/$n-"* >/dev/null 2>&1 || [ -z "$runs" ]; then
        echo "fuzz-long: $n FAILED (rc $rc, log $log)"
        tail -n 30 "$log.run"
    else
        echo "fuzz-long: $n clean, ${runs_all} runs, coverage ${cov:-?} edges, ${ft:-?} features, corpus $corp, cpu ${used} s, wall ${wall_all} s"
    fi
done
