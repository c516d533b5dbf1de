// The requests a benchmark run sends: prompt text and max_tokens for each, built before the run
// from random words (optionally cut to exact token counts by a HF tokenizer) or from a prompts file.
// Deterministic for a given seed. Plain data; reads only the files named in the options.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "perf/bench/bench_options.h"

namespace ferry::bench {

struct BenchRequest {
  std::string prompt;
  int expected_input_tokens = 0;  // what the workload asked for (or counted); the server's usage wins
  int output_len_tokens = 0;      // max_tokens
};

// Builds options.num_prompts requests. InvalidArgument / NotFound naming the file on a bad prompts
// file or tokenizer folder.
Result<std::vector<BenchRequest>> build_workload(const BenchOptions& options);

// Poisson arrival offsets in seconds from the start, one per request (exponential gaps of mean
// 1/rate); all zeros when rate is 0 (infinity).
std::vector<double> arrival_offsets_s(uint64_t num_requests, double rate, uint64_t seed);

}  // namespace ferry::bench
