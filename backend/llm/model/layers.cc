#include "backend/llm/model/layers.h"

namespace ferry::llm {

namespace k = ferry::kernels;

float* Workspace::get(Buffer b, int64_t floats) {
  std::vector<float>& buf = buffers_[b];
  if (static_cast<int64_t>(buf.size()) < floats) buf.resize(static_cast<size_t>(floats));
  return buf.data();
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
  k::paged_attention(ctx, a);
}

}  // namespace ferry::llm
