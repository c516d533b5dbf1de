// Building blocks the architectures' forward passes share (vLLM's model_executor/layers, in
// small): the step's attention metadata, a view of the paged KV cache, the scratch workspace, and
// the attention sub-layer (write this step's K/V into the cache, then paged attention).
//
// Everything here is device-neutral: pointers are whatever memory the kernels::Context's backend
// computes on, and every computation goes through kernels.h.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/llm/model/weight_loader.h"
#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

// The two ends every decoder shares: the token embedding table, the final norm and the lm_head
// (the embedding table itself when tie_word_embeddings).
struct ModelEnds {
  WeightLoader::Table embed;          // [vocab, hidden], read in place
  const float* final_norm = nullptr;  // [hidden]
  kernels::WeightMatrix lm_head;      // [vocab, hidden]
  // Loads model.embed_tokens.weight, model.norm.weight (+ norm_add per element: Gemma's 1 + w) and
  // lm_head.weight (or the embedding when tied).
  Status load(WeightLoader& w, bool tie_word_embeddings, float norm_add = 0.0f);
};

// One step's token layout, built by the engine from a validated ForwardBatch.
struct StepMetadata {
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  const int32_t* token_ids = nullptr;     // [num_tokens]
  const int32_t* positions = nullptr;     // [num_tokens]
  const int64_t* slots = nullptr;         // [num_tokens]: cache slot of each token's K/V
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  int64_t max_blocks_per_seq = 0;
};

// The paged KV cache as the kernels see it: per layer, K and V (and int8 scales).
struct LayerKv {
  void* k = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim] of `dtype`
  void* v = nullptr;
  float* k_scales = nullptr;  // kInt8 only: [num_blocks, block_size, num_kv_heads]
  float* v_scales = nullptr;
};
struct KvCacheView {
  kernels::KvCacheDType dtype = kernels::KvCacheDType::kF32;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
  const LayerKv* layers = nullptr;  // [num_layers]
};

// Scratch activations of one step, grown on demand and never shrunk (no allocation once the
// largest step has run). One Workspace per engine instance; a forward pass owns it for its call.
class Workspace {
 public:
  enum Buffer { kResidual, kHidden, kQkv, kAttn, kDelta, kGateUp, kAct, kExtra, kNumBuffers };
  // At least `floats` fp32 values; contents are kept between calls with the same buffer.
  float* get(Buffer b, int64_t floats);
  float* hidden() { return buffers_[kHidden].data(); }

 private:
  std::vector<float> buffers_[kNumBuffers];
};

// RoPE over the first rotary_dim values of every q and k head (pairs (i, i + rotary_dim / 2); the
// rest of each head is left as is: partial_rotary_factor). rotary_dim == head_dim is the plain
// kernels::rope; inv_freq is [rotary_dim / 2].
void rope_partial(const kernels::Context& ctx, float* q, float* k, const int32_t* positions, const float* inv_freq,
                  int64_t num_tokens, int64_t qkv_stride, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                  int64_t rotary_dim);

// Soft-capping in place: x[i] = cap * tanh(x[i] / cap) for i < n (Gemma 2's final_logit_softcapping
// on the logits). kernels.h has no operator for it yet, so this runs on the CPU (kCpu split over the
// context's pool, kReference on the caller) and a kCuda context asserts.
void softcap(const kernels::Context& ctx, float* x, int64_t n, float cap);

// x[t * stride + h * head_dim + d] *= factor for every token t < num_tokens, head h < num_heads and
// d < dims: scales the first `dims` values of each head (Phi-3's longrope attention factor on the
// rotated part only, with partial rotary). CPU only like softcap (a kCuda context asserts).
void scale_head_prefix(const kernels::Context& ctx, float* x, int64_t num_tokens, int64_t stride, int64_t num_heads,
                       int64_t head_dim, int64_t dims, float factor);

// The attention sub-layer after the projections: writes the step's K/V into layer `layer` of the
// cache, then computes paged attention of q into out. q, k, v are token-major with row stride
// `qkv_stride` (they may be three column ranges of one fused buffer).
struct AttentionParams {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  float scale = 1.0f;
  int64_t sliding_window = 0;  // 0: every earlier key; else the last sliding_window keys (kernels.h)
  float logit_softcap = 0.0f;  // 0: none; else scores become c * tanh(score / c)
};
void attention(const kernels::Context& ctx, const StepMetadata& meta, const KvCacheView& kv, int64_t layer,
               const AttentionParams& p, float* q, float* k, float* v, int64_t qkv_stride,
               float* out /* [num_tokens, num_heads * head_dim] */);

}  // namespace ferry::llm
