// SpeculationGate: one sequence's half of the adaptive rule of speculative decoding: how many
// drafts to propose at each decode step. Verifying k drafts makes the step compute k + 1 tokens;
// a draft pays when the chance that it is accepted exceeds what it costs.
//
// The gate estimates p, the chance that a draft is accepted given that the ones before it were
// (acceptance stops at the first rejection: the i-th draft is accepted with chance p^i), from
// moving sums of accepted drafts and of rejections over the sequence's verified steps (a step that
// accepted all its drafts counts no rejection). Given the cost of a draft in plain-step tokens
// (the instance's measured break-even rate, speculation_cost.h, or the configured
// min_acceptance_rate), the i-th draft adds p^i - cost expected tokens, so the gate proposes the
// largest k (up to the configured k) with p^k > cost. When that is none, the sequence pauses and
// probes with one draft after 4 decode steps, then after 8, 16, ... up to 64 while p stays low:
// a probe costs one draft, and one lucky probe moves p only by kWeight. The start is optimistic
// (p = 1). A cost of 0 (min_acceptance_rate 0) always proposes the full k.
//
// Thread-safety: none; owned by the request's RunnerRequest, used by the instance's loop thread.
#pragma once

#include <cstdint>

namespace ferry::llm {

class SpeculationGate {
 public:
  static constexpr int32_t kFirstPause = 4;  // decode steps before the first probe
  static constexpr int32_t kMaxPause = 64;
  static constexpr double kWeight = 0.3;     // of the newest verified step in the moving sums

  // Asked once per decode step: how many drafts (0..max_drafts) to propose now, each costing
  // `draft_cost` plain-step tokens. Counts down a pause.
  int32_t num_drafts(int32_t max_drafts, double draft_cost);
  // The result of a verified step: `proposed` drafts, `accepted` of them (0 proposed: ignored).
  void record(int32_t proposed, int32_t accepted);

  double acceptance() const { return accepted_ / (accepted_ + rejected_); }  // p
  bool paused() const { return skip_ > 0; }

 private:
  double accepted_ = 1.0;  // moving sums: p starts at 1 (a sequence gets to try)
  double rejected_ = 0.0;
  int32_t skip_ = 0;       // decode steps left in the current pause
  int32_t pause_ = kFirstPause;
};

}  // namespace ferry::llm
