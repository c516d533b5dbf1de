// ForwardBatch: one engine step's input -- any number of sequences, each contributing a run of
// query tokens (a prompt or a chunk of it, or one token when decoding) against its paged KV cache.
// Views only: the caller owns every array and keeps it alive for the call.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ferry::llm {

struct SequenceInput {
  int32_t query_start = 0;  // index of this sequence's first token in ForwardBatch::token_ids
  int32_t query_len = 0;    // tokens computed this step (>= 1)
  int32_t context_len = 0;  // tokens in the cache once this step has run (earlier ones + query_len)
  std::span<const int32_t> block_table;  // physical block of logical block b; must cover context_len
  // Speculative decoding: the last num_draft_tokens query tokens are proposed tokens to verify
  // (0 <= num_draft_tokens < query_len). The sequence then has num_draft_tokens + 1 logits rows (its
  // last query tokens'), and a sampling step verifies the drafts (Sampler::verify) instead of
  // sampling one token. Their K/V are written like any query token's; the caller keeps the accepted
  // positions and overwrites or frees the rest.
  int32_t num_draft_tokens = 0;
};

// Prompt logprobs of one sequence of the batch (vLLM's prompt_logprobs): query tokens
// first .. first + targets.size() - 1 of the sequence are each scored against the token that follows
// them in the prompt, targets[i] for query token first + i, with the num_top most likely tokens.
// The engine returns one SampleResult per scored token (StepOutput::prompt_logprobs).
struct PromptLogprobsInput {
  int32_t sequence = 0;               // index into ForwardBatch::sequences
  int32_t first = 0;                  // first scored query token, within the sequence's query
  std::span<const int32_t> targets;   // the token that follows each scored query token
  int32_t num_top = 0;                // alternatives per scored token, >= 0
};

struct ForwardBatch {
  std::span<const int32_t> token_ids;  // [num_tokens]; sequences' runs are contiguous, in order
  std::span<const int32_t> positions;  // [num_tokens]; token i of a sequence is at context_len - query_len + i
  std::span<const SequenceInput> sequences;  // [num_seqs]
  bool all_logits = false;  // false: logits of each sequence's last 1 + num_draft_tokens tokens; true: of every token
  // The sequences that asked for prompt logprobs (usually none: nothing extra is computed then).
  std::span<const PromptLogprobsInput> prompt_logprobs = {};
};

struct ForwardOutput {
  std::vector<float> logits;  // [num_rows, vocab]: num_rows = sum of (1 + num_draft_tokens), or num_tokens with all_logits
  int64_t num_rows = 0;
  int64_t vocab = 0;
  const float* row(int64_t r) const { return logits.data() + r * vocab; }
};

}  // namespace ferry::llm
