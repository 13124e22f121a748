#!/usr/bin/env bash
# Runs the unit tests and the integration suite (plain; the upstream tests again through
# libcurl; the client side again over TLS) against the binaries in BUILD_DIR
# (default build/san, the ASan+UBSan build made by `make test`); memory figures
# are measured on the optimised build in RELEASE_BUILD (default build). Ends with one
# "N passed, N failed" line and exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
build=${1:-build/san}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0 failed=0

for t in "$build"/unit/test_*; do
    [ -x "$t" ] || continue
    if out=$("$t" 2>&1); then
        passed=$((passed + 1)); echo "ok   unit/$(basename "$t")"
    else
        failed=$((failed + 1)); echo "FAIL unit/$(basename "$t")"; echo "$out" | tail -30
    fi
done
echo "unit: $passed passed, $failed failed"

# suite NAME LOG COMMAND...: runs one suite's runner, its output also in LOG,
# and adds its "NAME: N passed, N failed" line to the totals (a runner that
# did not get to that line counts as a failure).
suite() {
    local name=$1 log=$2 line
    shift 2
    if "$@" | tee "$log"; then :; fi
    line=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed" "$log" | tail -1)
    if [ -n "$line" ]; then
        passed=$((passed + $(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')))
        failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')))
    else
        failed=$((failed + 1)); echo "FAIL $name ($log): the runner did not finish"
    fi
}

# integration LOG [run.py options]: one run of the integration suite.
integration() {
    local log=$1
    shift
    suite integration "$log" /usr/bin/python3 test/integration/run.py --build-dir "$build" \
        --release-dir "${RELEASE_BUILD:-build}" "$@"
}

integration "$build/integration.log"
# The upstream behaviour once more through libcurl (upstream.client "curl",
# what https:// providers use), where the two clients could differ.
integration "$build/integration-curl.log" --upstream-client curl \
    -k test_upstream_http,test_stream_ends,test_dialects,test_streaming,test_failover,test_timeouts,test_endpoints,test_resilience,test_usage
# The client side once more over TLS (every turnout's data port speaks it; the
# harness's clients and the tests' raw sockets speak it too): the edge's
# framing, limits and client timeouts, streaming with backpressure, client
# disconnects aborting the upstream, graceful stop. run.py --tls prints the
# tests it leaves out, and why.
integration "$build/integration-tls.log" --tls \
    -k test_edge.,test_http_edge.,test_http_edge_rfc.,test_timeouts.,test_streaming.,test_basic.,test_errors.,test_lifecycle.,test_endpoints.,test_stream_ends.,test_limits.,test_keys.,test_reload.,test_dialects.
# The dashboard in headless Chromium (test/browser): sign-in, forms and field
# errors, the switch against the data plane, text-only records, the control
# loop; its files' headers and weight. Screenshots go to build/ui-shots/.
suite browser "$build/browser.log" /usr/bin/python3 test/browser/run.py --build-dir "$build"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
