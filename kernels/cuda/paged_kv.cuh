// Shared by the two paged-attention kernels (prefill and decode): argument validation at the
// launcher boundary and the device-side read of one cached K or V element, fp32, bf16, or int8 with
// its per-(slot, kv head) scale (layouts in kernels/kernels.h). Internal to kernels/cuda.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/kernels.h"

namespace ferry::kernels::cuda::detail {

// The kernels keep head_dim / 32 accumulators per lane in registers.
constexpr int64_t kMaxAttentionHeadDim = 256;
constexpr int kMaxDimsPerLane = static_cast<int>(kMaxAttentionHeadDim / 32);

// Scores are kept in log2 units so the kernels can use exp2f: q is pre-multiplied by scale * log2(e).
constexpr float kLog2e = 1.4426950408889634f;

inline Status validate_paged_attention(const PagedAttentionArgs& a, const char* op) {
  FERRY_CUDA_REQUIRE(a.num_seqs >= 0 && a.num_seqs <= 65535, op);
  FERRY_CUDA_REQUIRE(a.num_tokens >= 0, op);
  FERRY_CUDA_REQUIRE(a.num_q_heads > 0 && a.num_q_heads <= 65535 && a.num_kv_heads > 0, op);
  FERRY_CUDA_REQUIRE(a.num_q_heads % a.num_kv_heads == 0, op);
  FERRY_CUDA_REQUIRE(a.head_dim > 0 && a.head_dim <= kMaxAttentionHeadDim, op);
  FERRY_CUDA_REQUIRE(a.q_stride >= a.num_q_heads * a.head_dim, op);
  FERRY_CUDA_REQUIRE(a.block_size > 0 && a.num_blocks > 0 && a.max_blocks_per_seq > 0, op);
  FERRY_CUDA_REQUIRE(a.kv_dtype == KvCacheDType::kF32 || a.kv_dtype == KvCacheDType::kInt8 ||
                         a.kv_dtype == KvCacheDType::kBF16,
                     op);
  if (a.num_seqs == 0 || a.num_tokens == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(a.out && a.q && a.k_cache && a.v_cache && a.query_start && a.context_lens && a.block_tables,
                     op);
  FERRY_CUDA_REQUIRE(a.kv_dtype != KvCacheDType::kInt8 || (a.k_scales && a.v_scales), op);
  return Status::Ok();
}

// Element d of kv head `kvh` at `slot`, as fp32.
template <KvCacheDType kDtype>
__device__ __forceinline__ float load_kv(const void* cache, const float* scales, int64_t slot, int64_t kvh,
                                         int64_t num_kv_heads, int64_t head_dim, int64_t d) {
  const int64_t row = slot * num_kv_heads + kvh;
  if constexpr (kDtype == KvCacheDType::kInt8) {
    return static_cast<float>(static_cast<const int8_t*>(cache)[row * head_dim + d]) * scales[row];
  } else if constexpr (kDtype == KvCacheDType::kBF16) {
    return __bfloat162float(static_cast<const __nv_bfloat16*>(cache)[row * head_dim + d]);
  } else {
    return static_cast<const float*>(cache)[row * head_dim + d];
  }
}

// A score kept in log2 units (s * log2(e)) after logit soft-capping (kernels.h: s -> c tanh(s / c)),
// in the same units: cap_log2 = c * log2(e); 0 leaves the score as it is.
__device__ __forceinline__ float softcap_log2(float score, float cap_log2) {
  return cap_log2 > 0.0f ? cap_log2 * tanhf(score / cap_log2) : score;
}

// The first position a query at `position` sees under a sliding window of `window` keys (0: none).
__device__ __forceinline__ int64_t window_start(int64_t position, int64_t window) {
  return window > 0 && position - window + 1 > 0 ? position - window + 1 : 0;
}

// The slot of logical position p of a sequence, or -1 when its block id is out of range (a caller
// bug: the kernels then produce NaN instead of reading out of bounds).
__device__ __forceinline__ int64_t slot_of(const int32_t* table, int64_t p, int64_t block_size,
                                           int64_t num_blocks) {
  const int64_t block = table[p / block_size];
  if (block < 0 || block >= num_blocks) return -1;
  return block * block_size + p % block_size;
}

}  // namespace ferry::kernels::cuda::detail
