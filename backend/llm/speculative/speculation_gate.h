// SpeculationGate: one sequence's half of the adaptive rule of speculative decoding. Verifying k
// drafts makes a decode step compute k + 1 tokens instead of one; that pays only while enough of
// them are accepted. The gate keeps a moving average of the sequence's acceptance rate (accepted
// / proposed drafts per verified step) and, when it falls below the threshold, stops proposing
// for a while: 4 decode steps, doubling after each failed retry up to 64, back to 4 once a retry
// is accepted well again. The threshold comes with each result: the configured
// min_acceptance_rate, or by default the break-even rate the instance measured for its current
// batch size (speculation_cost.h). The other half (no drafts in big batches) is the instance's.
//
// Thread-safety: none; owned by the request's RunnerRequest, used by the instance's loop thread.
#pragma once

#include <cstdint>

namespace ferry::llm {

class SpeculationGate {
 public:
  static constexpr int32_t kFirstPause = 4;   // decode steps without drafts after a low average
  static constexpr int32_t kMaxPause = 64;
  static constexpr double kWeight = 0.5;      // of the newest step in the moving average

  // Asked once per decode step: may this sequence propose drafts now? Counts down a pause.
  bool should_propose();
  // The result of a verified step: `proposed` drafts, `accepted` of them (0 proposed: ignored);
  // min_rate: the acceptance rate below which drafts do not pay now.
  void record(int32_t proposed, int32_t accepted, double min_rate);

  double acceptance_average() const { return average_; }
  bool paused() const { return skip_ > 0; }

 private:
  double average_ = 1.0;  // optimistic start: a sequence gets to try
  int32_t skip_ = 0;       // decode steps left in the current pause
  int32_t pause_ = kFirstPause;
  bool retrying_ = false;  // the first verified step after a pause
};

}  // namespace ferry::llm
