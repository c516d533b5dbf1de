#!/usr/bin/env bash
# The soak test (tests/integration/soak_test.cc) for longer than the test suite's 60 s: mixed HTTP
# and ZeroMQ load with cancellations, disconnects, bad requests and model reloads in poll mode,
# then the same checks (every good request answered once and correctly, no KV block in use,
# VmRSS growth from the 10 s mark to the end under 20 MiB). Prints the counts and the memory line.
# Bounded: the test's own limit is SECONDS plus setup and drain, and `timeout` stops it at
# SECONDS + 300.
# Usage: perf/soak/run_soak.sh SECONDS [BUILD_DIR (default build)]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:?usage: perf/soak/run_soak.sh SECONDS [BUILD_DIR]}
case $seconds in '' | *[!0-9]*) echo "SECONDS must be a positive integer" >&2; exit 2 ;; esac
build=$(cd "${2:-$root/build}" && pwd)
cmake --build "$build" --target soak_test ferry-server ferry_echo ferry_llm >/dev/null
echo "machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD), soak ${seconds} s"
FERRY_SOAK_SECONDS=$seconds FERRY_BINARY_DIR=$build FERRY_SOURCE_DIR=$root \
  timeout $((seconds + 300)) "$build/tests/soak_test" --gtest_color=no
