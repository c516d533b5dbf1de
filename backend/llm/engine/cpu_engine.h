// CpuEngine: the Engine of a CPU instance. Runs a loaded CausalLM (any registered architecture,
// weights in any format of kernels.h, shared with the model's other instances) over a batch of
// sequences through the kCpu operators of kernels/kernels.h, on its own thread pool (or the
// process-wide one), with its own paged KV cache in host memory (fp32, bf16 or int8) and its own
// sampler.
//
// One step computes, for every sequence of the batch, its query tokens against the paged KV cache
// (writing their K/V into it first), then the logits of each sequence's last token (its last
// 1 + num_draft_tokens with speculative drafts; every token with all_logits), then samples (or
// verifies the drafts). Prefill, chunked prefill and decode are the same call with
// different query lengths; sequences of a batch are independent.
//
// Thread-safety: one step at a time (scratch buffers are members).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/llm/engine/engine.h"
#include "backend/llm/engine/kv_cache_storage.h"
#include "backend/llm/engine/step_layout.h"
#include "backend/llm/model/architecture.h"
#include "backend/llm/model/model_weights.h"
#include "common/status.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace ferry::llm {

struct CpuEngineOptions {
  kernels::Backend backend = kernels::Backend::kCpu;  // kReference runs the plain-loop oracle
  int num_threads = 0;  // > 0: a pool of this many threads for this engine; 0: the process-wide pool
};

class CpuEngine final : public Engine {
 public:
  // An engine over an already loaded model (the serving path: one model, many instances).
  static Result<std::unique_ptr<CpuEngine>> create(std::shared_ptr<const CausalLM> model, CpuEngineOptions options = {});
  // Loads the model from `weights` in `load` format and builds an engine over it (tests, benches).
  static Result<std::unique_ptr<CpuEngine>> create(const ModelConfig& config, const ModelWeights& weights,
                                                   CpuEngineOptions options = {}, const WeightLoadOptions& load = {});

  const ModelConfig& config() const override { return model_->config(); }
  const CausalLM& model() const { return *model_; }
  int64_t kv_block_bytes(int64_t block_size, kernels::KvCacheDType dtype) const override;
  Result<int64_t> allocate_kv_cache(const KvCacheOptions& options) override;
  int64_t num_kv_blocks() const override { return cache_ ? cache_->shape().num_blocks : 0; }
  const KvCacheStorage* kv_cache() const { return cache_.get(); }

  Status step(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, bool return_logits,
              StepOutput* out) override;

 private:
  CpuEngine(std::shared_ptr<const CausalLM> model, CpuEngineOptions options);
  // Fills out->prompt_logprobs for batch.prompt_logprobs (nothing to do, and no work, without).
  void score_prompts(const ForwardBatch& batch, StepOutput* out);

  // Prompt rows projected per lm_head call: bounds the scratch to 16 x vocab floats (2 MB at a
  // 32k vocabulary) however long the prompt chunk.
  static constexpr size_t kPromptRowsPerChunk = 16;

  std::shared_ptr<const CausalLM> model_;
  std::unique_ptr<kernels::ThreadPool> pool_;  // null: the process-wide pool
  kernels::Context ctx_;
  std::unique_ptr<KvCacheStorage> cache_;
  std::vector<LayerKv> kv_layers_;  // [num_layers] views of cache_
  KvCacheView kv_;
  Workspace ws_;
  std::unique_ptr<Sampler> sampler_;

  StepLayout layout_;                  // per-step metadata (rebuilt each step; capacity kept)
  std::vector<float> last_;            // [num_rows, hidden]
  std::vector<float> logits_;          // [num_rows, vocab] when the caller does not want them
  std::vector<SampleResult> run_;      // sample_on_host's scratch
  std::vector<float> prompt_logits_;   // [kPromptRowsPerChunk, vocab]; allocated once prompt logprobs are asked
};

}  // namespace ferry::llm
