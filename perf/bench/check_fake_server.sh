#!/usr/bin/env bash
# Checks ferry-bench against fake_openai_server.py, whose timings and token counts are known:
# counts, usage, TTFT/ITL/TPOT near what was served, chat streaming, Poisson pacing and failures.
# Usage: perf/bench/check_fake_server.sh [path/to/ferry-bench]   (default build/perf/ferry-bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-$here/../../build/perf/ferry-bench}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

start_server() {  # args for the fake server; sets $port
  python3 "$here/fake_openai_server.py" "$@" >"$tmp/server.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do grep -q '^PORT' "$tmp/server.out" 2>/dev/null && break; sleep 0.1; done
  port=$(awk '/^PORT/ {print $2}' "$tmp/server.out")
}

check() {  # json-file python-expression-over-r message
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2], {}, {"r": r})
print(("ok   " if ok else "FAIL ") + sys.argv[3])
sys.exit(0 if ok else 1)
PY
}

start_server --ttft-ms 20 --itl-ms 5
common=(--base-url "http://127.0.0.1:$port" --model fake --no-progress --input-len 32 --output-len 16)
"$bench" "${common[@]}" --num-prompts 40 --max-concurrency 8 --result-json "$tmp/c8.json" >/dev/null
check "$tmp/c8.json" 'r["completed"] == 40 and r["failed"] == 0' "completions: 40 completed"
check "$tmp/c8.json" 'r["total_output_tokens"] == 640 and r["output_len_mismatches"] == 0' "output tokens from usage"
check "$tmp/c8.json" 'r["total_input_tokens"] == 40 * 32' "prompt of 32 words counted 32 by the server"
check "$tmp/c8.json" '18 <= r["median_ttft_ms"] <= 40' "median TTFT near 20 ms: $(python3 -c "import json;print(round(json.load(open('$tmp/c8.json'))['median_ttft_ms'],1))")"
check "$tmp/c8.json" '4 <= r["median_itl_ms"] <= 15 and 4 <= r["median_tpot_ms"] <= 15' "median ITL and TPOT near 5 ms"
check "$tmp/c8.json" 'r["max_in_flight"] == 8' "at most 8 in flight"

"$bench" "${common[@]}" --endpoint /v1/chat/completions --num-prompts 10 --max-concurrency 2 \
  --range-ratio 0.5 --save-detailed --result-json "$tmp/chat.json" >/dev/null
check "$tmp/chat.json" 'r["completed"] == 10 and r["output_lens"] == r["max_tokens"]' "chat: role delta not counted, lengths drawn"
check "$tmp/chat.json" 'len(set(r["max_tokens"])) > 1 and all(8 <= n <= 24 for n in r["max_tokens"])' "range ratio 0.5 gives 8..24"

"$bench" "${common[@]}" --output-len 2 --num-prompts 40 --request-rate 40 --result-json "$tmp/rate.json" >/dev/null
check "$tmp/rate.json" '0.6 <= r["duration"] <= 2.5' "Poisson at 40/s: 40 requests take about 1 s ($(python3 -c "import json;print(round(json.load(open('$tmp/rate.json'))['duration'],2))") s)"

start_server --ttft-ms 1 --itl-ms 1 --fail-every 5
set +e
"$bench" --base-url "http://127.0.0.1:$port" --model fake --no-progress --input-len 4 --output-len 4 \
  --num-prompts 40 --max-concurrency 4 --result-json "$tmp/fail.json" >/dev/null
rc=$?
set -e
check "$tmp/fail.json" 'r["failed"] == 8 and r["failures_by_kind"] == {"http_500": 8} and r["completed"] == 32' "every 5th request failed: 8 counted as http_500"
[ "$rc" = 2 ] && echo "ok   exit status 2 when some failed" || { echo "FAIL exit status $rc"; exit 1; }
echo "all checks passed"
