// ferry::llm::SamplingParams: how one request picks its tokens and when it stops. Plain data with
// OpenAI / vLLM meanings; parsed from request JSON elsewhere (this part has no JSON code).
//
// Thread-safety: plain value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

struct SamplingParams {
  // --- token choice (see sampler.h for the order in which these apply) ---
  float temperature = 1.0f;          // 0 (or < 1e-5): greedy
  int32_t top_k = 0;                 // <= 0 or >= vocab: off
  float top_p = 1.0f;                // (0, 1]; 1: off
  float min_p = 0.0f;                // [0, 1]; 0: off. Keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;   // > 0; 1: off. HF/vLLM: over prompt + generated tokens
  float presence_penalty = 0.0f;     // [-2, 2]; OpenAI: over generated tokens
  float frequency_penalty = 0.0f;    // [-2, 2]; OpenAI: over generated tokens
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> added to its logit
  std::optional<uint64_t> seed;      // same seed, same logits -> same tokens; absent: random
  int32_t num_logprobs = -1;         // -1: none; 0: the chosen token's; N: chosen + top N
  // vLLM's prompt_logprobs: -1 none; N >= 0: each prompt token's logprob (after the first) and the
  // top N at its position (computed by the engine during prefill, not by the sampler).
  int32_t num_prompt_logprobs = -1;

  // --- stopping (see stop_checker.h) ---
  int32_t max_tokens = 16;                   // >= 1; finish reason "length" when reached
  int32_t min_tokens = 0;                    // [0, max_tokens]; no stop token or string ends fewer
  std::vector<int32_t> stop_token_ids;       // finish reason "stop"
  std::vector<std::string> stop;             // stop strings (matched on detokenized text)
  bool ignore_eos = false;                   // true: EOS ids do not stop the sequence
  bool include_stop_str_in_output = false;   // vLLM's flag: keep the matched stop string
  // The ids the sampler masks while fewer than min_tokens tokens are generated: stop_token_ids
  // and the model's EOS ids unless ignore_eos. Filled by whoever knows the EOS ids (RunnerRequest).
  std::vector<int32_t> min_tokens_masked_ids;

  // Checks ranges against the vocabulary size. The message names the offending field.
  Status validate(int32_t vocab_size) const;
  bool is_greedy() const { return temperature < 1e-5f; }
  // Any of the repetition / presence / frequency penalties is on (they read the token history).
  bool has_penalties() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
};

}  // namespace ferry::llm
