// Prompt logprobs on the engine's side: checking a batch's PromptLogprobsInput entries, and scoring
// one logits row against the prompt token that follows it. An engine projects the hidden states
// of the scored tokens a few rows at a time (never the whole prompt's logits at once: 2k tokens x
// 32k vocabulary would be 256 MB of fp32) and keeps only what score_prompt_row returns.
//
// Thread-safety: plain functions; the scratch belongs to the caller (the engine's step thread).
#pragma once

#include <cstdint>
#include <span>

#include "backend/llm/engine/forward_batch.h"
#include "backend/llm/sampling/sampler.h"
#include "common/status.h"

namespace ferry::llm {

// The most alternatives a scored prompt token may ask for (the frontends allow 20, as vLLM's
// default max_logprobs).
inline constexpr int32_t kMaxPromptLogprobs = 20;

// InvalidArgument naming the entry for prompt logprobs the engines must not compute: a sequence
// index outside the batch, a scored run outside the sequence's known query tokens (its drafts
// excluded), a target outside the vocabulary, num_top outside [0, kMaxPromptLogprobs], or together
// with all_logits. OK for an empty list.
Status validate_prompt_logprobs(const ForwardBatch& batch, int32_t vocab_size);

// Scores one row: out->token = target, out->logprob = log_softmax(logits)[target] (raw logits, in
// double precision like Sampler's logprobs), out->rank = 1 + the number of tokens with a larger
// logit, and out->top_logprobs = the num_top most likely tokens, most likely first (ties: lower id
// first). Logprobs below kMinLogprob are clamped to it (JSON has no -inf). One pass for the max,
// one for the normalizer, one for the rank and the top-k (a sorted buffer of num_top, so
// O(vocab * num_top) at worst and about O(vocab) in practice); out->top_logprobs keeps its capacity.
void score_prompt_row(std::span<const float> logits, int32_t target, int32_t num_top, SampleResult* out);

inline constexpr float kMinLogprob = -9999.0f;  // vLLM's clamp for -inf

}  // namespace ferry::llm
