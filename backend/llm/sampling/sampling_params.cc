#include "backend/llm/sampling/sampling_params.h"

#include <cmath>

namespace ferry::llm {

Status SamplingParams::validate(int32_t vocab_size) const {
  auto bad = [](const std::string& what) { return Status::InvalidArgument(what); };
  if (!std::isfinite(temperature) || temperature < 0.0f) return bad("temperature must be >= 0");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return bad("top_p must be in (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return bad("min_p must be in [0, 1]");
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) {
    return bad("repetition_penalty must be > 0");
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) return bad("presence_penalty must be in [-2, 2]");
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) return bad("frequency_penalty must be in [-2, 2]");
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0 || token >= vocab_size) return bad("logit_bias token id " + std::to_string(token) + " out of range");
    if (!std::isfinite(bias)) return bad("logit_bias values must be finite");
  }
  if (num_logprobs < -1 || num_logprobs > vocab_size) return bad("logprobs must be in [0, vocab size]");
  if (max_tokens < 1) return bad("max_tokens must be >= 1");
  if (min_tokens < 0 || min_tokens > max_tokens) return bad("min_tokens must be in [0, max_tokens]");
  for (int32_t t : stop_token_ids) {
    if (t < 0 || t >= vocab_size) return bad("stop_token_ids entry " + std::to_string(t) + " out of range");
  }
  for (const auto& s : stop) {
    if (s.empty()) return bad("stop strings must not be empty");
  }
  return Status::Ok();
}

}  // namespace ferry::llm
