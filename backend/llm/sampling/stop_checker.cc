#include "backend/llm/sampling/stop_checker.h"

#include <algorithm>

#include "common/status.h"

namespace ferry::llm {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kNone: return "";
  }
  return "";
}

StopChecker::StopChecker(const SamplingParams& params, std::span<const int32_t> eos_token_ids)
    : stop_tokens_(params.stop_token_ids.begin(), params.stop_token_ids.end()),
      stop_strings_(params.stop),
      include_stop_str_(params.include_stop_str_in_output),
      max_tokens_(params.max_tokens),
      min_tokens_(params.min_tokens) {
  if (!params.ignore_eos) stop_tokens_.insert(stop_tokens_.end(), eos_token_ids.begin(), eos_token_ids.end());
  std::erase_if(stop_strings_, [](const std::string& s) { return s.empty(); });
}

namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
size_t held_suffix_length(std::string_view text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& s : stops) {
    size_t max_len = std::min(text.size(), s.size() - 1);
    for (size_t len = max_len; len > best; --len) {
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        best = len;
        break;
      }
    }
  }
  return best;
}

}  // namespace

StopUpdate StopChecker::append(int32_t token, std::string_view new_text) {
  FERRY_CHECK(!finished_);
  StopUpdate u;
  ++num_generated_;
  if (std::find(stop_tokens_.begin(), stop_tokens_.end(), token) != stop_tokens_.end()) {
    u.finish = FinishReason::kStop;
    u.stop_token = token;
    u.text = std::move(pending_);
    pending_.clear();
    finished_ = true;
    return u;
  }
  pending_.append(new_text);
  if (num_generated_ < min_tokens_) {
    // Too short to stop on a string (vLLM's rule): the text so far is released unchecked.
    u.text = std::move(pending_);
    pending_.clear();
    return u;
  }
  // Earliest stop-string match wins (ties: the longer string, for a deterministic answer).
  size_t match_pos = std::string::npos;
  const std::string* match = nullptr;
  for (const auto& s : stop_strings_) {
    size_t p = pending_.find(s);
    if (p == std::string::npos) continue;
    if (p < match_pos || (p == match_pos && s.size() > match->size())) {
      match_pos = p;
      match = &s;
    }
  }
  if (match) {
    u.finish = FinishReason::kStop;
    u.stop_string = *match;
    u.text = pending_.substr(0, match_pos + (include_stop_str_ ? match->size() : 0));
    pending_.clear();
    finished_ = true;
    return u;
  }
  if (num_generated_ >= max_tokens_) {
    u.finish = FinishReason::kLength;
    u.text = std::move(pending_);
    pending_.clear();
    finished_ = true;
    return u;
  }
  size_t hold = held_suffix_length(pending_, stop_strings_);
  u.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return u;
}

}  // namespace ferry::llm
