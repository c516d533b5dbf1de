#include "backend/llm/model/layers.h"

#include <cmath>

#include "common/status.h"
#include "kernels/cpu/thread_pool.h"

namespace ferry::llm {

namespace k = ferry::kernels;

Status ModelEnds::load(WeightLoader& w, bool tie_word_embeddings, float norm_add) {
  FERRY_ASSIGN_OR_RETURN(embed, w.table("model.embed_tokens.weight"));
  FERRY_ASSIGN_OR_RETURN(final_norm, w.vector("model.norm.weight", norm_add));
  FERRY_ASSIGN_OR_RETURN(lm_head, w.matrix(tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"));
  return Status::Ok();
}

float* Workspace::get(Buffer b, int64_t floats) {
  std::vector<float>& buf = buffers_[b];
  if (static_cast<int64_t>(buf.size()) < floats) buf.resize(static_cast<size_t>(floats));
  return buf.data();
}

void softcap(const k::Context& ctx, float* x, int64_t n, float cap) {
  FERRY_CHECK(ctx.backend != k::Backend::kCuda && "softcap: no CUDA operator yet");
  auto run = [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] = cap * std::tanh(x[i] / cap);
  };
  if (ctx.backend == k::Backend::kReference) {
    run(0, n);
    return;
  }
  // A decode step of a 256k vocabulary is ~5 ms of tanh on one core: split it.
  k::ThreadPool& pool = ctx.pool != nullptr ? *ctx.pool : k::ThreadPool::default_pool();
  pool.parallel_for(n, run, /*min_chunk=*/16384);
}

void scale_head_prefix(const k::Context& ctx, float* x, int64_t num_tokens, int64_t stride, int64_t num_heads,
                       int64_t head_dim, int64_t dims, float factor) {
  FERRY_CHECK(ctx.backend != k::Backend::kCuda && "scale_head_prefix: no CUDA operator yet");
  for (int64_t t = 0; t < num_tokens; ++t)
    for (int64_t h = 0; h < num_heads; ++h)
      for (int64_t d = 0; d < dims; ++d) x[t * stride + h * head_dim + d] *= factor;
}

void rope_partial(const k::Context& ctx, float* q, float* kk, const int32_t* positions, const float* inv_freq,
                  int64_t num_tokens, int64_t qkv_stride, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                  int64_t rotary_dim) {
  if (rotary_dim == head_dim) {
    k::rope(ctx, q, kk, positions, inv_freq, num_tokens, qkv_stride, qkv_stride, num_heads, num_kv_heads, head_dim);
    return;
  }
  // One call per head: the kernel's heads are head_dim apart, here only their first rotary_dim
  // values turn, so each call sees one "head" of rotary_dim values at that head's offset.
  for (int64_t h = 0; h < num_heads; ++h) {
    const bool with_k = h < num_kv_heads;
    k::rope(ctx, q + h * head_dim, with_k ? kk + h * head_dim : kk, positions, inv_freq, num_tokens, qkv_stride,
            qkv_stride, 1, with_k ? 1 : 0, rotary_dim);
  }
}

void attention(const k::Context& ctx, const StepMetadata& meta, const KvCacheView& kv, int64_t layer,
               const AttentionParams& p, float* q, float* kk, float* v, int64_t qkv_stride, float* out) {
  const LayerKv& c = kv.layers[layer];
  switch (kv.dtype) {
    case k::KvCacheDType::kInt8:
      k::kv_cache_write_int8(ctx, static_cast<int8_t*>(c.k), static_cast<int8_t*>(c.v), c.k_scales, c.v_scales, kk, v,
                             meta.slots, meta.num_tokens, qkv_stride, qkv_stride, p.num_kv_heads, p.head_dim);
      break;
    case k::KvCacheDType::kBF16:
      k::kv_cache_write_bf16(ctx, static_cast<uint16_t*>(c.k), static_cast<uint16_t*>(c.v), kk, v, meta.slots,
                             meta.num_tokens, qkv_stride, qkv_stride, p.num_kv_heads, p.head_dim);
      break;
    case k::KvCacheDType::kF32:
      k::kv_cache_write(ctx, static_cast<float*>(c.k), static_cast<float*>(c.v), kk, v, meta.slots, meta.num_tokens,
                        qkv_stride, qkv_stride, p.num_kv_heads, p.head_dim);
      break;
  }
  k::PagedAttentionArgs a;
  a.kv_dtype = kv.dtype;
  a.k_cache = c.k;
  a.v_cache = c.v;
  a.k_scales = c.k_scales;
  a.v_scales = c.v_scales;
  a.out = out;
  a.q = q;
  a.query_start = meta.query_start;
  a.context_lens = meta.context_lens;
  a.block_tables = meta.block_tables;
  a.num_seqs = meta.num_seqs;
  a.num_tokens = meta.num_tokens;
  a.max_blocks_per_seq = meta.max_blocks_per_seq;
  a.q_stride = qkv_stride;
  a.num_q_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.head_dim = p.head_dim;
  a.block_size = kv.block_size;
  a.num_blocks = kv.num_blocks;
  a.scale = p.scale;
  a.sliding_window = p.sliding_window;
  a.logit_softcap = p.logit_softcap;
  k::paged_attention(ctx, a);
}

}  // namespace ferry::llm
