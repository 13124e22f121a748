#!/usr/bin/env bash
# `make run`: starts the bundled mock provider on 127.0.0.1:9901 and turnout on
# the demo config (etc/turnout.demo.json, listening on 127.0.0.1:8080) in the
# foreground. Ctrl-C stops both.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
"$build/mockllm" --port 9901 --name demo-mock &
mock=$!
trap 'kill $mock 2>/dev/null; wait $mock 2>/dev/null' EXIT INT TERM
mkdir -p "$build/demo-data"
echo "turnout: try  curl -s localhost:8080/v1/chat/completions -d '{\"model\":\"fast-summariser\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'"
"$build/turnout" -c etc/turnout.demo.json
