#include "backend/llm/speculative/speculation_gate.h"

#include <algorithm>

namespace ferry::llm {

int32_t SpeculationGate::num_drafts(int32_t max_drafts, double draft_cost) {
  if (max_drafts <= 0) return 0;
  if (draft_cost <= 0.0) return max_drafts;
  if (skip_ > 0) {
    if (--skip_ > 0) return 0;
    // The pause is over: one draft probes whether p rose; the next pause, if any, is longer.
    pause_ = std::min(pause_ * 2, kMaxPause);
    return 1;
  }
  const double p = acceptance();
  int32_t k = 0;
  for (double chance = p; k < max_drafts && chance > draft_cost; chance *= p) ++k;
  if (k > 0) {
    pause_ = kFirstPause;
    return k;
  }
  skip_ = pause_;
  return 0;
}

void SpeculationGate::record(int32_t proposed, int32_t accepted) {
  if (proposed <= 0) return;
  accepted_ = (1.0 - kWeight) * accepted_ + kWeight * accepted;
  rejected_ = (1.0 - kWeight) * rejected_ + kWeight * (accepted < proposed ? 1.0 : 0.0);
}

}  // namespace ferry::llm
