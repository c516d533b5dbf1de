// DraftProposer: speculative decoding's "draft" method for one instance. A small model of the
// target's vocabulary (DraftModel, draft_model.h) runs on its own engine (a CpuEngine, or a
// CudaEngine for a gpu target), with its own paged
// KV cache, and proposes the next k tokens of each speculating sequence; the target then verifies
// them in one step (Sampler::verify).
//
// One propose() call is one round for a batch of sequences, all in lockstep:
//   step 0  each sequence's tokens the draft has not computed yet (its whole prompt the first
//           time; afterwards the one or two tokens the target emitted since) -> the first draft;
//   step r  each sequence's draft r-1 -> draft r, for r < k.
// A greedy request's draft is the arg max of the draft's processed logits (what the target would
// pick if the draft were right). A sampled request's draft is drawn from the draft's own
// distribution q under the request's sampling params (distribution(), with its own RNG stream),
// and q goes with it, since the target's rejection rule needs the full q.
//
// Draft KV: per sequence a block table over the engine's pool and the count of positions whose
// K/V are valid. They are the sequence's tokens, then the drafts of the last round; at the next
// round the drafts the target kept (a prefix of them, found by comparing with the sequence's new
// tokens) stay valid and the rest are rolled back: their positions are recomputed. Blocks come
// from a free list; when it runs dry, the state of the sequence idle longest (not in the current
// round) is evicted (it catches up later), and a sequence that still finds no room gets no drafts
// this round. A catch-up larger than max_catch_up_tokens (a long prompt) is spread over rounds
// without drafts. release() frees a sequence's state: the instance calls it when a request ends
// or is preempted. Drafts never change what the target emits, only how fast: a wrong or stale
// draft state costs acceptance, never correctness.
//
// Allocation: the batch, logits and history buffers are members, reused each round; a new
// sequence allocates its state once.
//
// Thread-safety: none; the instance's loop thread alone uses it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/llm/engine/cpu_engine.h"
#include "backend/llm/sampling/sampler.h"
#include "backend/llm/sampling/sampling_params.h"
#include "backend/llm/sampling/sampling_rng.h"
#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

// One sequence of a round. The pointers are borrowed for the call.
struct DraftJob {
  uint64_t id = 0;                   // the request; its draft state is kept under this id
  std::span<const int32_t> tokens;   // prompt + generated tokens, all known (>= 1)
  int32_t num_prompt_tokens = 0;
  int32_t num_drafts = 0;            // k wanted, >= 1
  const SamplingParams* params = nullptr;
  SamplingRng* rng = nullptr;        // the draft's own stream (sampled requests draw from it)
  std::vector<int32_t>* drafts = nullptr;  // out: 0..k proposed tokens
  std::vector<float>* probs = nullptr;     // out: sampled requests: q, [drafts->size(), vocab]; else empty
};

struct DraftProposerOptions {
  int64_t num_blocks = 0;        // the draft's KV pool
  int64_t block_size = 16;       // tokens per block
  kernels::KvCacheDType kv_dtype = kernels::KvCacheDType::kF32;
  int num_threads = 0;           // CpuEngineOptions::num_threads
  int32_t max_catch_up_tokens = 2048;  // tokens of all catch-ups in one round's first step
};

class DraftProposer {
 public:
  // InvalidArgument / ResourceExhausted when the engine or its KV pool cannot be made.
  static Result<std::unique_ptr<DraftProposer>> create(std::shared_ptr<const CausalLM> draft,
                                                       const DraftProposerOptions& options);
  // The same over an engine already made (a CudaEngine for a gpu target): its KV pool is allocated
  // here from `options` (num_threads unused).
  static Result<std::unique_ptr<DraftProposer>> create(std::unique_ptr<Engine> engine,
                                                       const DraftProposerOptions& options);

  // One round for `jobs` (distinct ids): fills each job's drafts (and probs). A job may get none
  // (no KV room, a catch-up still in progress, past the draft's context). On an engine error every
  // job gets none, the states stay valid, and the error is returned.
  Status propose(std::span<const DraftJob> jobs);
  // Frees the draft state of request `id` (none: nothing happens).
  void release(uint64_t id);

  int64_t num_blocks() const { return engine_->num_kv_blocks(); }
  int64_t num_blocks_used() const { return num_blocks() - static_cast<int64_t>(free_blocks_.size()); }
  size_t num_sequences() const { return states_.size(); }
  int32_t vocab_size() const { return sampler_.vocab_size(); }

 private:
  struct SeqState {
    std::vector<int32_t> blocks;  // block table
    int32_t num_computed = 0;     // positions [0, this) hold valid K/V
    int32_t base_len = 0;         // the sequence's length when `drafts` were proposed
    std::vector<int32_t> drafts;  // the last round's drafts (their K/V follow base_len)
    uint64_t last_round = 0;      // the last round that used this state (eviction order)
  };
  // A sequence of the current round.
  struct Active {
    const DraftJob* job = nullptr;
    SeqState* state = nullptr;
    int32_t len = 0;        // job->tokens.size()
    int32_t k = 0;          // drafts to propose
    int32_t begin = 0;      // step 0 computes tokens [begin, end)
    int32_t end = 0;
    bool proposes = false;  // end == len: the catch-up completes and drafts follow
  };

  DraftProposer(std::unique_ptr<Engine> engine, int64_t block_size, int32_t max_catch_up_tokens);

  // Positions of `s` whose K/V still hold `tokens` (and may be kept), < tokens.size().
  static int32_t valid_prefix(const SeqState& s, std::span<const int32_t> tokens);
  bool plan(const DraftJob& job, int32_t* budget);  // adds the job to active_ when it can run
  bool ensure_blocks(SeqState* s, int32_t context_len);
  bool evict_idle();
  Status run_step(int32_t r);  // step r of the round (see the header comment)
  void take_draft(const Active& a, std::span<const float> logits);
  void finish_round();

  std::unique_ptr<Engine> engine_;
  const int64_t block_size_;
  const int32_t max_catch_up_tokens_;
  const int32_t max_positions_;  // the draft's context (max_position_embeddings)
  Sampler sampler_;
  std::unordered_map<uint64_t, SeqState> states_;
  std::vector<int32_t> free_blocks_;
  uint64_t round_ = 0;

  // Per round / step, reused.
  std::vector<Active> active_;
  std::vector<size_t> stepping_;         // indices into active_ of this step's sequences
  std::vector<int32_t> token_ids_;       // [num_tokens]
  std::vector<int32_t> positions_;       // [num_tokens]
  std::vector<SequenceInput> inputs_;    // [num_seqs]
  StepOutput out_;
  std::vector<float> point_mass_;        // [vocab] a greedy request's distribution
  std::vector<int32_t> history_;         // generated tokens + drafts, for penalties / min_tokens
};

}  // namespace ferry::llm
