#!/usr/bin/env bash
# ferry on CPU under ferry-bench: the trained test model (stories260K, served as a HuggingFace
# drop-in folder of a temporary repository) and the default model (model_repository/tiny-llama),
# each at concurrency 1, 8 and 32, input 64 / output 64 tokens (exact, by the model's tokenizer).
# Prints the machine line and one markdown table row per run; the JSON results stay in OUT_DIR.
# Usage: perf/bench/run_cpu_bench.sh [BUILD_DIR (default build)] [OUT_DIR (default a temp dir)]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
out=${2:-$(mktemp -d)}
mkdir -p "$out"
testdata=${FERRY_TESTDATA:-$root/../shared/testdata}
repo=$(mktemp -d)
ln -s "$testdata/stories260K-hf-format.derived" "$repo/stories260K"
ln -s "$root/model_repository/tiny-llama" "$repo/tiny-llama"
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$repo"; }
trap cleanup EXIT

echo "machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- host backend || echo ' + uncommitted changes in host/ or backend/')"
"$build/host/ferry-server" --model-repository "$repo" --http-port 0 --metrics-port 0 --zmq-endpoint tcp://127.0.0.1:0 \
  --log-level info >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q 'HTTP server listening' "$out/server.log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$out/server.log" | head -1)
for _ in $(seq 100); do
  [ "$(grep -c 'is READY' "$out/server.log")" -ge 2 ] && break; sleep 0.1
done

echo "| model | C | prompts | req/s | out tok/s | TTFT med / p99 (ms) | TPOT med / p99 (ms) | ITL med / p99 (ms) | E2E med / p99 (ms) | failed |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for model in stories260K tiny-llama; do
  tok="$repo/$model"
  [ -f "$tok/tokenizer.json" ] || tok="$repo/$model/1"
  for c in 1 8 32; do
    n=$((c == 1 ? 32 : c * 16))
    "$build/perf/ferry-bench" --base-url "$url" --model "$model" --tokenizer "$tok" --input-len 64 --output-len 64 \
      --num-prompts "$n" --max-concurrency "$c" --warmup 2 --no-progress --label "$model c=$c" \
      --result-json "$out/$model-c$c.json" >"$out/$model-c$c.txt" 2>&1 || true
    python3 - "$out/$model-c$c.json" "$model" "$c" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda k: "%.1f / %.1f" % (r["median_%s_ms" % k], r["p99_%s_ms" % k])
print("| %s | %s | %s | %.1f | %.0f | %s | %s | %s | %s | %d |" % (sys.argv[2], sys.argv[3], sys.argv[4],
      r["request_throughput"], r["output_throughput"], f("ttft"), f("tpot"), f("itl"), f("e2el"), r["failed"]))
PY
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); results in $out"
