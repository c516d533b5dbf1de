// ferry::llm::StopChecker: decides when one sequence stops and which of its text may be streamed.
//
// Fed one generated token at a time with the text that token added (from the incremental
// detokenizer; may be empty while a UTF-8 character is incomplete). Stops, in this order:
//   - the token is in stop_token_ids, or is an EOS id and ignore_eos is false: finish "stop"; the
//     token's own text is not emitted (as vLLM);
//   - a stop string occurs in the text (also across token boundaries): finish "stop"; the stop
//     string and anything after it are not emitted (unless include_stop_str_in_output, which keeps
//     the stop string);
//   - max_tokens generated tokens: finish "length".
// Before min_tokens tokens are generated, stop strings are not looked for (the sampler keeps stop
// tokens from being chosen then; see SamplingParams::min_tokens_masked_ids).
// Text that could still be the start of a stop string is held back until it is known not to be;
// when the sequence finishes for any other reason the held-back text is released.
//
// Thread-safety: one StopChecker per sequence, used by one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/llm/sampling/sampling_params.h"

namespace ferry::llm {

enum class FinishReason { kNone, kStop, kLength };

// "stop", "length" or "" (not finished): the OpenAI finish_reason strings.
const char* finish_reason_name(FinishReason reason);

struct StopUpdate {
  std::string text;                      // newly safe to stream (may be empty)
  FinishReason finish = FinishReason::kNone;
  int32_t stop_token = -1;               // the stop/EOS token id, when that stopped the sequence
  std::string stop_string;               // the matched stop string, when that stopped it
  bool finished() const { return finish != FinishReason::kNone; }
};

class StopChecker {
 public:
  // Copies what it needs from params; eos_token_ids are the model's EOS ids.
  StopChecker(const SamplingParams& params, std::span<const int32_t> eos_token_ids);

  // Records the next generated token and the text it added. Must not be called after finished.
  StopUpdate append(int32_t token, std::string_view new_text);

  int32_t num_generated() const { return num_generated_; }
  bool finished() const { return finished_; }
  // Text received but not yet released (a possible stop-string prefix).
  const std::string& held_back() const { return pending_; }

 private:
  std::vector<int32_t> stop_tokens_;  // stop_token_ids + EOS ids unless ignore_eos
  std::vector<std::string> stop_strings_;
  bool include_stop_str_ = false;
  int32_t max_tokens_ = 0;
  int32_t min_tokens_ = 0;
  int32_t num_generated_ = 0;
  bool finished_ = false;
  std::string pending_;
};

}  // namespace ferry::llm
