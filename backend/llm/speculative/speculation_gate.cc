#include "backend/llm/speculative/speculation_gate.h"

#include <algorithm>

namespace ferry::llm {

bool SpeculationGate::should_propose() {
  if (skip_ == 0) return true;
  --skip_;
  return false;
}

void SpeculationGate::record(int32_t proposed, int32_t accepted, double min_rate) {
  if (proposed <= 0) return;
  const double rate = static_cast<double>(accepted) / proposed;
  if (retrying_) {
    // One step decides a retry: a good one restarts the average, a bad one pauses longer.
    retrying_ = false;
    if (rate >= min_rate) {
      average_ = rate;
      pause_ = kFirstPause;
    } else {
      pause_ = std::min(pause_ * 2, kMaxPause);
      skip_ = pause_;
      retrying_ = true;
    }
    return;
  }
  average_ = (1.0 - kWeight) * average_ + kWeight * rate;
  if (average_ < min_rate) {
    skip_ = pause_;
    retrying_ = true;
  }
}

}  // namespace ferry::llm
