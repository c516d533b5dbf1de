// SpeculationCost: what a draft costs on this instance, measured from its own decode steps, and
// the acceptance rate above which drafts pay. A verification step computes 1 + k query rows per
// sequence instead of one; on a model whose step is bound by reading its weights the extra rows
// are nearly free (stories260K padded to 258 MB on the CPU: k = 4 costs ~1.3 plain steps), on one
// whose step is compute (a small model, or a big batch on the CPU) each row costs almost as much
// as a sequence (perf/RESULTS.md). A fixed acceptance threshold is wrong for one of them; this
// class replaces it by the measured one.
//
// Model: at batch b, a decode-only step without drafts takes t_b; with D drafts verified in all it
// takes t_b (1 + g_b D). Both are moving averages per batch size over the instance's decode-only
// steps (prefill chunks make a step's time say nothing about drafts). A sequence of the batch
// whose drafts are accepted at rate r gains r k tokens for k drafts, which cost g_b k t_b; a
// token costs t_b / b in a plain step. Drafts pay while r k t_b / b > g_b k t_b, i.e. while
// r > g_b b: break_even_rate(b). A draft model's round is timed into the step whose drafts it
// proposed, so g_b covers proposing as well as verifying.
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

  explicit SpeculationCost(double prior_rate = 0.3) : prior_(prior_rate) {}

  // One decode-only step of num_seqs sequences that verified num_drafts drafts in all and took
  // `seconds` (a draft model's round included).
  void record_step(int32_t num_seqs, int32_t num_drafts, double seconds);

  // The acceptance rate (accepted / proposed drafts) above which a sequence's drafts pay at batch
  // num_seqs; above 1: they do not pay at any rate. The prior until measured.
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
