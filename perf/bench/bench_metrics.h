// The result of a run as vLLM's benchmark_serving defines it, computed from the per-request
// outcomes after the run:
//   request throughput = completed requests / duration
//   output throughput  = sum of output tokens of completed requests / duration
//   total throughput   = (input + output tokens of completed requests) / duration
//   TTFT  per request: send -> first chunk carrying text
//   TPOT  per request with more than one output token: (e2e - TTFT) / (output tokens - 1)
//   ITL   every gap between consecutive content chunks, of all requests pooled
//   E2E   per request: send -> end of stream
// Each distribution is given as mean, median and p99 (linear interpolation between order statistics,
// as numpy.percentile), in milliseconds. Failed requests count only in `failed` and its reasons.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "perf/bench/bench_options.h"
#include "perf/bench/openai_stream.h"

namespace ferry::bench {

struct Distribution {
  double mean_ms = 0, median_ms = 0, p99_ms = 0;
  size_t count = 0;
};

// Sorts `values_s` (seconds) in place and summarizes it in ms; all zeros when empty.
Distribution summarize_distribution(std::vector<double>& values_s);
// p in [0, 100] of sorted values, interpolated linearly.
double percentile_sorted(const std::vector<double>& sorted, double p);

struct BenchResult {
  uint64_t completed = 0;
  uint64_t failed = 0;
  std::map<std::string, uint64_t> failures_by_kind;
  std::string first_error;
  uint64_t output_len_mismatches = 0;  // completed requests whose output tokens != max_tokens (ignore_eos only)
  uint64_t total_input_tokens = 0;
  uint64_t total_output_tokens = 0;
  double duration_s = 0;
  double request_throughput = 0;       // requests/s
  double output_throughput = 0;        // output tokens/s
  double total_token_throughput = 0;   // (input + output) tokens/s
  Distribution ttft, tpot, itl, e2e;
  int max_in_flight = 0;
};

BenchResult summarize(const BenchOptions& options, const std::vector<BenchRequest>& requests,
                      const std::vector<RequestOutcome>& outcomes, double duration_s, int max_in_flight);

std::string result_text(const BenchOptions& options, const BenchResult& result);

// The result, the options it ran with, and when save_detailed the per-request arrays.
Json::Value result_json(const BenchOptions& options, const BenchResult& result,
                        const std::vector<BenchRequest>& requests, const std::vector<RequestOutcome>& outcomes);

}  // namespace ferry::bench
