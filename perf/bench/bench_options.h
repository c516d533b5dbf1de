// Command-line options of ferry-bench and their parser. Plain data; no I/O beyond the usage text.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace ferry::bench {

enum class ApiKind { kCompletions, kChatCompletions };

struct BenchOptions {
  std::string base_url = "http://127.0.0.1:8000";  // scheme://host:port, no path
  std::string endpoint = "/v1/completions";        // or /v1/chat/completions
  ApiKind api = ApiKind::kCompletions;             // from endpoint: "chat/completions" in it means chat
  std::string model;                               // "model" field of every request (required)

  // Workload: random word prompts, or a prompts file.
  int input_len_tokens = 128;    // random prompts: tokens asked per prompt (about one per word)
  int output_len_tokens = 128;   // max_tokens of every request (a prompts file line may override)
  double range_ratio = 0.0;      // lengths drawn uniformly from [len*(1-r), len*(1+r)], r in [0, 1)
  int prefix_len_tokens = 0;     // random prompts: a shared prefix of this many tokens before each
  std::string tokenizer_dir;     // a HF model folder: cut random prompts to exact token counts
  std::string prompts_file;      // one JSON object ({"prompt": ..., "output_len": N}) or text line per prompt
  uint64_t num_prompts = 1000;
  uint64_t seed = 0;

  // Arrivals: Poisson at request_rate (infinity: all at once), at most max_concurrency in flight.
  double request_rate = 0;       // requests/s; 0 stands for infinity
  int max_concurrency = 0;       // 0: no limit beyond kMaxWorkers
  int num_warmup = 1;            // untimed requests first, one at a time; a failure stops the run

  bool ignore_eos = true;        // send "ignore_eos": true (vLLM extension) so outputs reach max_tokens
  double temperature = 0.0;
  std::string extra_body;        // a JSON object merged into every request body

  std::string label;             // names the run in the report and the JSON
  std::string result_json;       // write the result here as JSON
  bool save_detailed = false;    // add per-request arrays (lengths, TTFT, ITL, errors) to the JSON
  bool progress = true;
};

// Threads that send requests when --max-concurrency is not given: the most in flight at once.
constexpr int kMaxWorkers = 512;

// Fills `options` from argv. Returns InvalidArgument naming the flag on a bad or unknown flag, and
// Cancelled after printing the usage text for --help.
Status parse_options(int argc, char** argv, BenchOptions* options);

}  // namespace ferry::bench
