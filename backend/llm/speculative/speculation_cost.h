// SpeculationCost: what a draft costs on this instance, measured from its own decode steps, and the
// chance of acceptance above which a draft pays. A verification step computes 1 + k query rows per
// sequence instead of one; on a model whose step is bound by reading its weights the extra rows are
// nearly free (stories260K padded to 258 MB on the CPU: k = 4 costs ~1.3 plain steps), on one whose
// step is compute (a small model, or a big batch on the CPU) each row costs almost as much as a
// sequence (perf/RESULTS.md). A fixed acceptance threshold is wrong for one of them; this class
// replaces it by the measured one.
//
// Model: at batch b, a decode-only step without drafts takes t_b; with D drafts verified in all it
// takes t_b (1 + g_b D). Both are moving averages per batch size over the instance's decode-only
// steps (prefill chunks make a step's time say nothing about drafts). A draft costs g_b t_b; a
// token costs t_b / b in a plain step. So a draft accepted with chance q gains q t_b / b for
// g_b t_b: it pays while q > g_b b, break_even_rate(b), the cost of a draft in plain-step tokens
// (SpeculationGate proposes the drafts whose chance exceeds it). A draft model's round is timed
// into the step that verifies its drafts, so g_b covers proposing as well as verifying.
//
// Until a batch size has both kinds of steps measured, break_even_rate returns the prior (the
// configuration's fallback). Step times are wall clock: on a shared machine they carry its noise,
// which the moving averages (weight kWeight per step) smooth.
//
// Thread-safety: none; owned by an LlmInstance, used by its loop thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ferry::llm {

class SpeculationCost {
 public:
  static constexpr int32_t kMaxBatch = 64;  // batch sizes tracked; larger ones share the last slot
  static constexpr double kWeight = 0.1;    // of the newest step in a moving average

  // prior_rate: break_even_rate's answer until measured (SpeculativeConfig::kPriorRate).
  explicit SpeculationCost(double prior_rate) : prior_(prior_rate) {}

  // One decode-only step of num_seqs sequences that verified num_drafts drafts in all and took
  // `seconds` (a draft model's round included).
  void record_step(int32_t num_seqs, int32_t num_drafts, double seconds);

  // The chance of acceptance above which a draft pays at batch num_seqs (a draft's cost in
  // plain-step tokens); 1 or more: none pays. The prior until measured.
  double break_even_rate(int32_t num_seqs) const;

  // The measured averages (0: not measured yet): a plain step's seconds, a draft's cost as a
  // fraction of it.
  double plain_seconds(int32_t num_seqs) const { return slot(num_seqs).plain; }
  double draft_cost(int32_t num_seqs) const { return slot(num_seqs).draft; }
  bool draft_cost_measured(int32_t num_seqs) const { return slot(num_seqs).has_draft; }

 private:
  struct Slot {
    double plain = 0.0;  // seconds
    double draft = 0.0;  // g: a draft's extra seconds / plain
    bool has_draft = false;
  };
  static int32_t index(int32_t num_seqs);
  const Slot& slot(int32_t num_seqs) const { return slots_[static_cast<size_t>(index(num_seqs))]; }

  double prior_;
  std::array<Slot, kMaxBatch> slots_{};
};

}  // namespace ferry::llm
