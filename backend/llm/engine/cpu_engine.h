// CpuEngine: the forward pass of a Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) over a
// batch of sequences on the CPU, through the operators of kernels/kernels.h.
//
// One forward() computes, for every sequence of the batch, its query tokens against the paged KV
// cache (writing their K/V into it first), and returns logits. Prefill, chunked prefill and decode
// are the same call with different query lengths; sequences of a batch are independent.
//
// Weights: at create() every matrix is made fp32 (bf16/fp16 converted, dummy values generated);
// q/k/v and gate/up are fused into one matrix each so a layer runs 4 matmuls. An fp32 safetensors
// tensor that needs no fusion is used in place from the mmap (zero copy); the engine keeps a copy
// of the ModelWeights handle, which shares ownership of the mappings.
//
// Thread-safety: forward() is not reentrant (scratch buffers are members); one step at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/llm/engine/forward_batch.h"
#include "backend/llm/engine/kv_cache_storage.h"
#include "backend/llm/model/model_config.h"
#include "backend/llm/model/model_weights.h"
#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

struct CpuEngineOptions {
  kernels::Backend backend = kernels::Backend::kCpu;  // kReference runs the plain-loop oracle
};

class CpuEngine {
 public:
  static Result<std::unique_ptr<CpuEngine>> create(const ModelConfig& config, const ModelWeights& weights,
                                                   CpuEngineOptions options = {});

  const ModelConfig& config() const { return config_; }
  // The cache shape this model needs for `num_blocks` blocks of `block_size` tokens of `dtype`
  // (forward() reads and writes either dtype).
  KvCacheShape kv_cache_shape(int64_t num_blocks, int64_t block_size,
                              kernels::KvCacheDType dtype = kernels::KvCacheDType::kF32) const;

  // Runs one step. InvalidArgument (nothing computed, cache untouched) when the batch is
  // inconsistent: token id out of range, position beyond max_position_embeddings or not matching
  // context_len, block table too short or naming a block outside the cache, a cache of another shape.
  Status forward(const ForwardBatch& batch, KvCacheStorage& cache, ForwardOutput* out);

 private:
  struct LayerParams {
    const float* input_norm;  // [hidden]
    const float* qkv;         // [q_size + 2*kv_size, hidden]: q rows, then k, then v
    const float* qkv_bias;    // [q_size + 2*kv_size] or nullptr
    const float* o;           // [hidden, q_size]
    const float* o_bias;      // [hidden] or nullptr
    const float* q_norm;      // [head_dim] or nullptr (Qwen3)
    const float* k_norm;      // [head_dim] or nullptr
    const float* post_norm;   // [hidden]
    const float* gate_up;     // [2*intermediate, hidden]: gate rows, then up
    const float* down;        // [hidden, intermediate]
  };

  CpuEngine(const ModelConfig& config, CpuEngineOptions options) : config_(config), ctx_{options.backend} {}
  Result<const float*> load(const ModelWeights& w, const std::string& name);
  Result<const float*> load_fused(const ModelWeights& w, const std::vector<std::string>& names);
  Status validate(const ForwardBatch& batch, const KvCacheStorage& cache) const;
  void prepare_metadata(const ForwardBatch& batch, const KvCacheStorage& cache);
  void attention_block(int64_t layer, const int32_t* positions, int64_t num_tokens, KvCacheStorage& cache);
  void mlp_block(int64_t layer, int64_t num_tokens);

  ModelConfig config_;
  kernels::Context ctx_;
  ModelWeights weights_;                         // keeps mmapped tensors alive
  std::vector<std::unique_ptr<float[]>> owned_;  // converted/fused weights
  const float* embed_ = nullptr;                 // [vocab, hidden]
  const float* final_norm_ = nullptr;            // [hidden]
  const float* lm_head_ = nullptr;               // [vocab, hidden] (embed_ when tied)
  std::vector<LayerParams> layers_;
  std::vector<float> inv_freq_;                  // [head_dim/2]

  // Per-step metadata (rebuilt by prepare_metadata).
  std::vector<int32_t> query_start_;   // [num_seqs + 1]
  std::vector<int32_t> context_lens_;  // [num_seqs]
  std::vector<int32_t> block_tables_;  // [num_seqs, max_blocks_]
  int64_t max_blocks_ = 0;
  std::vector<int64_t> slots_;         // [num_tokens]
  std::vector<int32_t> logit_rows_;    // [num_rows]

  // Activations (grown, never shrunk).
  std::vector<float> x_;        // [num_tokens, hidden]: the residual stream
  std::vector<float> h_;        // [num_tokens, hidden]: normed input of a sub-layer
  std::vector<float> qkv_;      // [num_tokens, q_size + 2*kv_size]
  std::vector<float> attn_;     // [num_tokens, q_size]
  std::vector<float> delta_;    // [num_tokens, hidden]: sub-layer output before the residual add
  std::vector<float> gate_up_;  // [num_tokens, 2*intermediate]
  std::vector<float> act_;      // [num_tokens, intermediate]
  std::vector<float> last_;     // [num_rows, hidden]
};

}  // namespace ferry::llm
