// SpeculativeConfig: a model's "speculative" serving key (docs/model-config.md), parsed by
// llm_config.cc. Plain data; no JSON here.
//
// Thread-safety: plain value type.
#pragma once

#include <cstdint>
#include <string>

namespace ferry::llm {

enum class SpeculativeMethod {
  kNone,   // no speculation (the default)
  kNgram,  // prompt lookup: drafts copied from the sequence's own earlier tokens (ngram_proposer.h)
  kDraft,  // a smaller model of the same vocabulary proposes them (backend/llm/draft_proposer.h)
};

struct SpeculativeConfig {
  SpeculativeMethod method = SpeculativeMethod::kNone;
  int32_t num_speculative_tokens = 0;  // k: most drafts verified per decode step, 1..16
  int32_t prompt_lookup_min = 2;       // ngram: shortest suffix that may match, >= 1
  int32_t prompt_lookup_max = 4;       // ngram: longest suffix tried, >= prompt_lookup_min
  std::string draft_model;             // draft: the name of the draft's folder in the repository
  // Adaptive rule (speculation_gate.h): no drafts while more sequences than this run (a big batch
  // keeps the CPU busy, verifying drafts no longer pays; measured in perf/RESULTS.md) ...
  int32_t disable_by_batch_size = 2;
  // ... and a sequence proposes only the drafts whose estimated chance of acceptance exceeds this
  // (speculation_gate.h); kMeasuredRate (the default, "auto"): the break-even chance the instance
  // measures from its own steps (speculation_cost.h), kPriorRate until it has.
  double min_acceptance_rate = kMeasuredRate;

  static constexpr double kMeasuredRate = -1.0;
  static constexpr double kPriorRate = 0.3;

  bool enabled() const { return method != SpeculativeMethod::kNone; }
  bool measured_rate() const { return min_acceptance_rate < 0.0; }
};

// The Prometheus label of a method ("ngram", "draft"); "none" for kNone.
inline const char* speculative_method_name(SpeculativeMethod m) {
  switch (m) {
    case SpeculativeMethod::kNgram: return "ngram";
    case SpeculativeMethod::kDraft: return "draft";
    case SpeculativeMethod::kNone: break;
  }
  return "none";
}

}  // namespace ferry::llm
