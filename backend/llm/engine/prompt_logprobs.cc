#include "backend/llm/engine/prompt_logprobs.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace ferry::llm {

Status validate_prompt_logprobs(const ForwardBatch& batch, int32_t vocab_size) {
  if (batch.prompt_logprobs.empty()) return Status::Ok();
  if (batch.all_logits) return Status::InvalidArgument("batch: prompt logprobs cannot be combined with all_logits");
  for (size_t e = 0; e < batch.prompt_logprobs.size(); ++e) {
    const PromptLogprobsInput& p = batch.prompt_logprobs[e];
    auto bad = [e](const std::string& what) {
      return Status::InvalidArgument("batch: prompt logprobs entry " + std::to_string(e) + ": " + what);
    };
    if (p.sequence < 0 || static_cast<size_t>(p.sequence) >= batch.sequences.size()) return bad("no such sequence");
    const SequenceInput& q = batch.sequences[static_cast<size_t>(p.sequence)];
    const int64_t known = q.query_len - q.num_draft_tokens;
    if (p.first < 0 || p.first + static_cast<int64_t>(p.targets.size()) > known) {
      return bad("the scored tokens must be among the sequence's known query tokens");
    }
    if (p.num_top < 0 || p.num_top > kMaxPromptLogprobs) {
      return bad("num_top must be in [0, " + std::to_string(kMaxPromptLogprobs) + "]");
    }
    for (int32_t t : p.targets) {
      if (t < 0 || t >= vocab_size) return bad("target token " + std::to_string(t) + " out of range");
    }
  }
  return Status::Ok();
}

void score_prompt_row(std::span<const float> logits, int32_t target, int32_t num_top, SampleResult* out) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double total = 0.0;
  for (float l : logits) total += std::exp(static_cast<double>(l - max_logit));
  const double log_z = static_cast<double>(max_logit) + std::log(total);
  auto logprob = [log_z](float l) {
    return std::max(kMinLogprob, static_cast<float>(static_cast<double>(l) - log_z));
  };
  const float chosen = logits[static_cast<size_t>(target)];
  out->token = target;
  out->logprob = logprob(chosen);
  // The top num_top ids in top_logprobs, kept sorted by logit (descending; ids ascending on ties,
  // which the scan order gives: a later id enters only when strictly larger). Their logprob
  // fields hold raw logits until the end.
  std::vector<TokenLogprob>& top = out->top_logprobs;
  top.clear();
  const size_t k = std::min(static_cast<size_t>(num_top), logits.size());
  int32_t rank = 1;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    rank += l > chosen ? 1 : 0;
    if (k == 0 || (top.size() == k && !(l > top.back().logprob))) continue;
    if (top.size() < k) top.push_back({});
    size_t at = top.size() - 1;
    while (at > 0 && l > top[at - 1].logprob) {
      top[at] = top[at - 1];
      --at;
    }
    top[at] = {static_cast<int32_t>(i), l};
  }
  out->rank = rank;
  for (TokenLogprob& t : top) t.logprob = logprob(t.logprob);
}

}  // namespace ferry::llm
