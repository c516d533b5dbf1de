// Paged attention, prefill: a flash-attention-style kernel on CUDA cores (fp32 throughout).
//
// Grid: (query tiles of kTileQ tokens, q heads, sequences); 4 warps per block, each owning 4 of
// the tile's queries. For each tile of kTileK cached positions up to the tile's last query position
// the block stages K and V (dequantized to fp32) in shared memory; lane j scores key j against the
// warp's 4 queries, the warp updates its running max / sum (online softmax, log2 units) and
// accumulates p.V with lane j owning dims j, j+32, ... (<= 8 registers per query).
// Shared memory: q [kTileQ, D], k [kTileK, D + 1] (padded: lane j reads row j), v [kTileK, D]:
// 41 KiB at D = 128, 80 KiB at D = 256 (opted in above 48 KiB).
// What it does not do yet: tensor cores (bf16/fp16 mma), sharing one K/V tile among the q heads of
// a GQA group, and skipping the wasted blocks of short sequences in a batch with one long one.
#include "kernels/cuda/paged_attention_prefill.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/paged_kv.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kTileQ = 16;
constexpr int kTileK = 32;
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = kTileQ / kWarps;

size_t shared_bytes(int64_t head_dim) {
  return sizeof(float) * static_cast<size_t>(kTileQ * head_dim + kTileK * (head_dim + 1) + kTileK * head_dim);
}

template <KvCacheDType kDtype>
__global__ void __launch_bounds__(kThreads) prefill_kernel(PagedAttentionArgs a, float q_scale) {
  FERRY_DYNAMIC_SHARED(float, smem);
  const int64_t D = a.head_dim;
  float* q_s = smem;                     // [kTileQ, D], pre-scaled by scale * log2(e)
  float* k_s = q_s + kTileQ * D;         // [kTileK, D + 1]
  float* v_s = k_s + kTileK * (D + 1);   // [kTileK, D]
  const int64_t s = blockIdx.z, h = blockIdx.y;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  const int64_t q_begin = a.query_start[s];
  const int64_t query_len = a.query_start[s + 1] - q_begin;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kTileQ;  // first query of this tile
  if (q0 >= query_len) return;                                    // block-uniform
  const int64_t rows = min(static_cast<int64_t>(kTileQ), query_len - q0);
  const int64_t first_pos = a.context_lens[s] - query_len + q0;  // position of query q0
  const int64_t out_stride = a.num_q_heads * D;
  if (first_pos < 0) {  // context_len < query_len: a caller bug, made visible
    for (int64_t i = threadIdx.x; i < rows * D; i += blockDim.x)
      a.out[(q_begin + q0 + i / D) * out_stride + h * D + i % D] = NAN;
    return;
  }
  const int64_t last_pos = first_pos + rows - 1;
  const int64_t kvh = h / (a.num_q_heads / a.num_kv_heads);
  const int32_t* table = a.block_tables + s * a.max_blocks_per_seq;

  for (int64_t i = threadIdx.x; i < kTileQ * D; i += blockDim.x) {
    const int64_t r = i / D, d = i % D;
    q_s[i] = r < rows ? a.q[(q_begin + q0 + r) * a.q_stride + h * D + d] * q_scale : 0.0f;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][detail::kMaxDimsPerLane];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < detail::kMaxDimsPerLane; ++c) acc[i][c] = 0.0f;
  }

  // Key tiles from the first one the tile's first query sees (sliding window) to its last query.
  const float cap_log2 = a.logit_softcap * detail::kLog2e;
  for (int64_t t0 = detail::window_start(first_pos, a.sliding_window) / kTileK * kTileK; t0 <= last_pos;
       t0 += kTileK) {
    __syncthreads();  // q_s is written / the previous tile is consumed
    for (int j = warp; j < kTileK; j += kWarps) {
      const int64_t p = t0 + j;
      const int64_t slot = p <= last_pos ? detail::slot_of(table, p, a.block_size, a.num_blocks) : -2;
      for (int64_t d = lane; d < D; d += 32) {
        float kv = 0.0f, vv = 0.0f;  // beyond the last query: masked below
        if (slot >= 0) {
          kv = detail::load_kv<kDtype>(a.k_cache, a.k_scales, slot, kvh, a.num_kv_heads, D, d);
          vv = detail::load_kv<kDtype>(a.v_cache, a.v_scales, slot, kvh, a.num_kv_heads, D, d);
        } else if (slot == -1) {
          kv = vv = NAN;
        }
        k_s[j * (D + 1) + d] = kv;
        v_s[j * D + d] = vv;
      }
    }
    __syncthreads();

    float score[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) score[i] = 0.0f;
    for (int64_t d = 0; d < D; ++d) {
      const float kd = k_s[lane * (D + 1) + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) score[i] += q_s[(warp * kRowsPerWarp + i) * D + d] * kd;
    }

    const int64_t key_pos = t0 + lane;
    float p[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int64_t r = warp * kRowsPerWarp + i;
      const bool valid = r < rows && key_pos <= first_pos + r &&
                         key_pos >= detail::window_start(first_pos + r, a.sliding_window);
      const float sc = valid ? detail::softcap_log2(score[i], cap_log2) : -INFINITY;
      const float m_new = fmaxf(m[i], detail::warp_max(sc));
      p[i] = 0.0f;
      if (m_new == -INFINITY) continue;  // warp-uniform: nothing visible yet for this query
      const float alpha = exp2f(m[i] - m_new);
      p[i] = valid ? exp2f(sc - m_new) : 0.0f;
      l[i] = l[i] * alpha + detail::warp_sum(p[i]);
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < detail::kMaxDimsPerLane; ++c) acc[i][c] *= alpha;
    }

    for (int j = 0; j < kTileK; ++j) {
      float pj[kRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) pj[i] = __shfl_sync(detail::kFullMask, p[i], j);
#pragma unroll
      for (int c = 0; c < detail::kMaxDimsPerLane; ++c) {
        const int64_t d = lane + 32 * c;
        if (d < D) {
          const float vd = v_s[j * D + d];
#pragma unroll
          for (int i = 0; i < kRowsPerWarp; ++i) acc[i][c] += pj[i] * vd;
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t r = warp * kRowsPerWarp + i;
    if (r >= rows) continue;
    const float inv_l = 1.0f / l[i];
    float* out = a.out + (q_begin + q0 + r) * out_stride + h * D;
#pragma unroll
    for (int c = 0; c < detail::kMaxDimsPerLane; ++c) {
      const int64_t d = lane + 32 * c;
      if (d < D) out[d] = acc[i][c] * inv_l;
    }
  }
}

template <KvCacheDType kDtype>
Status launch(const PagedAttentionArgs& a, int64_t num_q_tiles, cudaStream_t stream) {
  const size_t smem = shared_bytes(a.head_dim);
  if (smem > 48 * 1024) {
    FERRY_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(prefill_kernel<kDtype>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    static_cast<int>(smem)));
  }
  const dim3 grid(static_cast<unsigned>(num_q_tiles), static_cast<unsigned>(a.num_q_heads),
                  static_cast<unsigned>(a.num_seqs));
  detail::launch_kernel(prefill_kernel<kDtype>, grid, kThreads, smem, stream, a, a.scale * detail::kLog2e);
  FERRY_CUDA_CHECK_LAUNCH("paged_attention prefill_kernel");
  return Status::Ok();
}

}  // namespace

Status paged_attention_prefill(const PagedAttentionArgs& args, int64_t max_query_len, cudaStream_t stream) {
  const char* op = "cuda::paged_attention_prefill";
  if (Status s = detail::validate_paged_attention(args, op); !s.ok()) return s;
  FERRY_CUDA_REQUIRE(max_query_len >= 0 && max_query_len <= args.num_tokens, op);
  if (args.num_seqs == 0 || args.num_tokens == 0 || max_query_len == 0) return Status::Ok();
  const int64_t num_q_tiles = (max_query_len + kTileQ - 1) / kTileQ;
  FERRY_CUDA_REQUIRE(num_q_tiles <= INT_MAX, op);
  switch (args.kv_dtype) {
    case KvCacheDType::kInt8: return launch<KvCacheDType::kInt8>(args, num_q_tiles, stream);
    case KvCacheDType::kBF16: return launch<KvCacheDType::kBF16>(args, num_q_tiles, stream);
    case KvCacheDType::kF32: break;
  }
  return launch<KvCacheDType::kF32>(args, num_q_tiles, stream);
}

}  // namespace ferry::kernels::cuda
