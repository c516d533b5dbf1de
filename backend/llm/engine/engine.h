// Engine: what one serving instance runs its steps on. CpuEngine implements it now, CudaEngine
// next; the instance's loop and model runner see only this interface.
//
// An engine is built over a loaded model (CausalLM, shared by every instance of the model: the
// weights exist once) and owns what is per instance: its KV cache storage (host memory for the
// CPU, device memory for a GPU), sized by the engine from a byte budget, its scratch
// activations, and its sampler. One step() runs the forward pass of a ForwardBatch and samples
// the sequences that asked for a token, returning the sampled tokens (and the logprobs asked for);
// logits leave the engine only when the caller asks (return_logits), so a GPU engine can keep
// them on the device.
//
// Thread-safety: one step at a time per engine (the instance's loop thread); engines of the same
// model run concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/llm/engine/forward_batch.h"
#include "backend/llm/model/model_config.h"
#include "backend/llm/sampling/sampler.h"
#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

struct KvCacheOptions {
  int64_t budget_bytes = 0;  // memory for the pool; used when num_blocks is 0
  int64_t num_blocks = 0;    // an exact block count instead of a budget
  int64_t block_size = 16;   // tokens per block
  kernels::KvCacheDType dtype = kernels::KvCacheDType::kF32;
};

struct StepOutput {
  // One per sequence of the batch; token -1 for sequences that did not sample this step. For a
  // sequence with drafts: the first token it emits.
  std::vector<SampleResult> samples;
  // Speculative decoding: sequence s emits samples[s], then extra[extra_begin[s] + j] for
  // j < num_extra[s] (accepted drafts and the token after the last of them, in order).
  // extra_begin[s] is the number of draft tokens of the sequences before s; both vectors have one
  // entry per sequence (num_extra 0 for sequences without drafts).
  std::vector<SampleResult> extra;
  std::vector<int32_t> extra_begin;
  std::vector<int32_t> num_extra;
  // Filled only when the step asked for logits.
  ForwardOutput logits;
  // One per scored token of batch.prompt_logprobs, entry after entry: token = the prompt token
  // scored, its raw logprob and rank, and the entry's num_top alternatives (sampler.h's meanings).
  // Empty when the batch asks for none.
  std::vector<SampleResult> prompt_logprobs;
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const ModelConfig& config() const = 0;

  // Bytes one KV block of `block_size` tokens takes (K and V of every layer, scales included).
  virtual int64_t kv_block_bytes(int64_t block_size, kernels::KvCacheDType dtype) const = 0;
  // Allocates the KV cache (replacing any earlier one; its contents are lost). Returns the number
  // of blocks: options.num_blocks, or as many as fit options.budget_bytes. InvalidArgument when
  // not one block fits, ResourceExhausted when the memory is not there.
  virtual Result<int64_t> allocate_kv_cache(const KvCacheOptions& options) = 0;
  virtual int64_t num_kv_blocks() const = 0;

  // One step. `sampling` has one entry per sequence of the batch; an entry whose params is null
  // does not sample (a prefill chunk that has not reached the prompt's end). A sequence with
  // num_draft_tokens > 0 (speculative decoding) must sample: its k + 1 logits rows are verified
  // (Sampler::verify) and it emits 1 to k + 1 tokens (samples, then extra). With return_logits,
  // out->logits holds the rows the batch asked for (ForwardBatch::all_logits).
  // InvalidArgument (nothing computed, cache untouched) for an inconsistent batch: token id out of
  // range, position beyond the model's context or not matching context_len, block table too short
  // or naming a block outside the cache, num_draft_tokens outside [0, query_len) or with
  // all_logits, drafts on a sequence that does not sample, no KV cache allocated, prompt logprobs
  // that do not fit their sequence's query (validate_prompt_logprobs).
  virtual Status step(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, bool return_logits,
                      StepOutput* out) = 0;

  // The forward pass alone: the logits rows the batch asks for (tests, scoring, benchmarks).
  Status forward(const ForwardBatch& batch, ForwardOutput* out) {
    StepOutput step_out;
    step_out.logits = std::move(*out);
    Status s = step(batch, {}, true, &step_out);
    *out = std::move(step_out.logits);
    return s;
  }
};

}  // namespace ferry::llm
