#include "backend/llm/speculative/speculation_cost.h"

#include <algorithm>

namespace ferry::llm {

namespace {

double blend(double average, double sample) { return average + SpeculationCost::kWeight * (sample - average); }

}  // namespace

int32_t SpeculationCost::index(int32_t num_seqs) { return std::clamp(num_seqs, 1, kMaxBatch) - 1; }

void SpeculationCost::record_step(int32_t num_seqs, int32_t num_drafts, double seconds) {
  if (num_seqs < 1 || num_drafts < 0 || !(seconds > 0.0)) return;
  Slot& s = slots_[static_cast<size_t>(index(num_seqs))];
  if (num_drafts == 0) {
    s.plain = s.plain == 0.0 ? seconds : blend(s.plain, seconds);
    return;
  }
  if (s.plain == 0.0) return;  // nothing to compare with yet
  // One step's estimate, bounded so that a step stretched by the machine (preempted, another
  // process) moves the average by a bounded amount.
  const double g = std::clamp((seconds / s.plain - 1.0) / num_drafts, 0.0, 2.0);
  s.draft = s.has_draft ? blend(s.draft, g) : g;
  s.has_draft = true;
}

double SpeculationCost::break_even_rate(int32_t num_seqs) const {
  const Slot& s = slot(num_seqs);
  if (!s.has_draft) return prior_;
  return s.draft * std::clamp(num_seqs, 1, kMaxBatch);
}

}  // namespace ferry::llm
