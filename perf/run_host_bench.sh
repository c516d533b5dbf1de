#!/usr/bin/env bash
# Host overhead benchmark: starts one ferry-server (echo model only, free ports), then runs
# ferry-loadgen over the matrix
#   echo infer over HTTP (KServe v2), echo infer over ZeroMQ, bare GET /v2/health/live over HTTP
# at each concurrency, ROUNDS times interleaved, stops the server, and prints a markdown table of the
# median round of each cell (by req/s) plus the ratios the project tracks:
#   HTTP echo infer / HTTP health floor, and ZeroMQ echo infer / HTTP echo infer, per concurrency.
# Every response is checked by ferry-loadgen; any error is shown in the table.
#
# Usage: perf/run_host_bench.sh [BUILD_DIR]          (default BUILD_DIR: build-perf in the repo root)
# Environment: REQUESTS (20000 per run), WARMUP (1000), ROUNDS (5), CONCURRENCY ("1 16 64"),
#              PAYLOAD_BYTES (16), KEEP_DIR (keep the per-run JSON and the server log there).
# Needs: ferry-server, libferry_echo.so and ferry-loadgen built in BUILD_DIR; jq.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-perf}"
requests="${REQUESTS:-20000}"
warmup="${WARMUP:-1000}"
rounds="${ROUNDS:-5}"
concurrency="${CONCURRENCY:-1 16 64}"
payload="${PAYLOAD_BYTES:-16}"
server_bin="$build/host/ferry-server"
loadgen="$build/perf/loadgen/ferry-loadgen"

for f in "$server_bin" "$loadgen" "$build/backends/libferry_echo.so"; do
  if [[ ! -e "$f" ]]; then
    echo "missing $f; build it: cmake --build $build --target ferry-server ferry_echo ferry-loadgen" >&2
    exit 1
  fi
done
command -v jq > /dev/null || { echo "jq is needed to tabulate the results" >&2; exit 1; }

work="${KEEP_DIR:-$(mktemp -d)}"
mkdir -p "$work"
server_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2> /dev/null; then
    kill -TERM "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
  fi
  [[ -n "${KEEP_DIR:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

"$server_bin" --model-repository "$root/model_repository" --model-control-mode explicit --load-model echo \
  --http-port 0 --metrics-port 0 --zmq-endpoint tcp://127.0.0.1:0 --log-level info > "$work/server.log" 2>&1 &
server_pid=$!

http_url="" zmq_endpoint=""
for _ in $(seq 1 300); do
  http_url="$(sed -n 's/.*HTTP server listening on \(http:[^ ]*\).*/\1/p' "$work/server.log" | head -n1)"
  zmq_endpoint="$(sed -n 's/.*ZeroMQ server bound to \(tcp:[^ ]*\).*/\1/p' "$work/server.log" | head -n1)"
  [[ -n "$http_url" && -n "$zmq_endpoint" ]] && break
  kill -0 "$server_pid" 2> /dev/null || { cat "$work/server.log" >&2; echo "ferry-server exited" >&2; exit 1; }
  sleep 0.1
done
if [[ -z "$http_url" || -z "$zmq_endpoint" ]]; then
  cat "$work/server.log" >&2
  echo "ferry-server did not report its ports" >&2
  exit 1
fi
echo "server pid $server_pid: $http_url, $zmq_endpoint; results in $work" >&2

ticks_per_s="$(getconf CLK_TCK)"
# User + system CPU ticks of the server so far (fields 14 and 15 of /proc/PID/stat, after the comm).
server_ticks() { sed 's/^.*) //' "/proc/$server_pid/stat" | awk '{ print $12 + $13 }'; }

# The matrix: name|loadgen flags.
cells=()
for c in $concurrency; do
  cells+=("http-infer-c$c|--protocol http --url $http_url --concurrency $c")
  cells+=("zmq-infer-c$c|--protocol zmq --endpoint $zmq_endpoint --concurrency $c")
  cells+=("http-health-c$c|--protocol http --url $http_url --path /v2/health/live --concurrency $c")
done

failed=0
for round in $(seq 1 "$rounds"); do
  for cell in "${cells[@]}"; do
    name="${cell%%|*}"
    flags="${cell#*|}"
    out="$work/$name-r$round.json"
    before="$(server_ticks)"
    # shellcheck disable=SC2086  # flags are word lists on purpose
    if ! "$loadgen" $flags --model echo --requests "$requests" --warmup "$warmup" --payload-bytes "$payload" \
      --label "round $round/$rounds $name" --json-out "$out" > "$work/$name-r$round.txt"; then
      failed=1
      echo "errors in $name round $round:" >&2
      cat "$work/$name-r$round.txt" >&2
    fi
    after="$(server_ticks)"
    # Server CPU per request of the timed phase and its warm-up (the warm-up is small beside it).
    jq --argjson t "$((after - before))" --argjson hz "$ticks_per_s" --argjson n "$((requests + warmup))" \
      '. + {server_cpu_us_per_req: ($t / $hz * 1e6 / $n)}' "$out" > "$out.tmp" && mv "$out.tmp" "$out"
  done
done

kill -TERM "$server_pid" 2> /dev/null || true
wait "$server_pid" 2> /dev/null || true
server_pid=""

# The median round of each cell by req/s (the lower middle one when ROUNDS is even).
median() { jq -s 'sort_by(.requests_per_s) | .[(length - 1) / 2 | floor]' "$work/$1"-r*.json; }

echo
echo "ferry-loadgen, $requests requests per run after $warmup warm-up, payload $payload B, median of $rounds rounds;"
echo "CPU us/req: CPU time of the loadgen / the server per request (both share this machine's $(nproc) cores)."
echo
echo "| transport | request | C | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | loadgen CPU us/req | server CPU us/req | req/s of the rounds |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for cell in "${cells[@]}"; do
  name="${cell%%|*}"
  all="$(jq -s -r 'map(.requests_per_s | round | tostring) | join(", ")' "$work/$name"-r*.json)"
  median "$name" | jq -r --arg all "$all" '"| \(.protocol | ascii_upcase | sub("ZMQ"; "ZeroMQ")) | \(.target) | \(.concurrency) | \(.requests_per_s | round) | \(.latency_ms.p50 * 1000 | round / 1000) | \(.latency_ms.p90 * 1000 | round / 1000) | \(.latency_ms.p99 * 1000 | round / 1000) | \(.latency_ms.max * 1000 | round / 1000) | \(.errors) | \(.client_cpu_s * 1e6 / (.ok + .errors) | round) | \(.server_cpu_us_per_req | round) | \($all) |"'
done

echo
# Under CPU contention req/s swings from round to round; CPU per request holds better. The CPU-based
# ratio is what req/s would be if the machine were CPU-bound: (loadgen + server CPU/req) of one over
# the other's.
echo "| C | HTTP echo infer / HTTP health floor, req/s (goal >= 0.60) | same, by CPU/req | ZeroMQ echo infer / HTTP echo infer, req/s (goal > 1) | same, by CPU/req |"
echo "|---:|---:|---:|---:|---:|"
cpu_per_req='.client_cpu_s * 1e6 / (.ok + .errors) + .server_cpu_us_per_req'
for c in $concurrency; do
  http="$(median "http-infer-c$c" | jq '.requests_per_s')"
  zmq="$(median "zmq-infer-c$c" | jq '.requests_per_s')"
  health="$(median "http-health-c$c" | jq '.requests_per_s')"
  http_cpu="$(median "http-infer-c$c" | jq "$cpu_per_req")"
  zmq_cpu="$(median "zmq-infer-c$c" | jq "$cpu_per_req")"
  health_cpu="$(median "http-health-c$c" | jq "$cpu_per_req")"
  jq -n -r --argjson h "$http" --argjson z "$zmq" --argjson f "$health" --arg c "$c" \
    --argjson hc "$http_cpu" --argjson zc "$zmq_cpu" --argjson fc "$health_cpu" \
    '"| \($c) | \($h / $f * 100 | round / 100) | \($fc / $hc * 100 | round / 100) | \($z / $h * 100 | round / 100) | \($hc / $zc * 100 | round / 100) |"'
done
exit "$failed"
