// Paged attention, decode: split-K over the context ("flash decoding") on CUDA cores, fp32.
//
// decode_kernel, grid (partitions, q heads, sequences), 4 warps: the block covers positions
// [split * P, min(context_len, (split + 1) * P)), P = kDecodePartitionTokens. Warp w takes every 4th
// position; per position the lanes read K and V coalesced (dims lane, lane + 32, ...), the dot
// product is a warp sum, and the warp keeps a running max / sum / accumulator (log2 units). The
// 4 warps merge in shared memory. With one partition the block writes the output directly;
// otherwise it writes its unnormalized accumulator, max and sum to the workspace and
// decode_reduce_kernel, grid (q heads, sequences), rescales and sums the partitions. A sliding
// window starts each sequence's keys at its first visible position: the partitions wholly before it
// return at once and the reduce skips them. A logit soft-cap transforms each score before the max.
// What it does not do yet: share K/V loads among the q heads of a GQA group (each q head re-reads
// its kv head, relying on L2), vectorized (16-byte) loads, or choose P from the batch size.
#include "kernels/cuda/paged_attention_decode.cuh"

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/paged_kv.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kReduceThreads = 128;

// Workspace: acc [num_seqs, num_q_heads, num_splits, head_dim], then (max, sum) pairs
// [num_seqs, num_q_heads, num_splits, 2].
struct Workspace {
  float* acc;
  float* max_sum;
};

int64_t num_splits_for(int64_t max_context_len) {
  return max_context_len <= kDecodePartitionTokens
             ? 1
             : (max_context_len + kDecodePartitionTokens - 1) / kDecodePartitionTokens;
}

__device__ void write_nan_row(float* out, int64_t head_dim) {
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) out[d] = NAN;
}

template <KvCacheDType kDtype>
__global__ void __launch_bounds__(kThreads) decode_kernel(PagedAttentionArgs a, float q_scale, Workspace ws) {
  __shared__ float q_s[detail::kMaxAttentionHeadDim];
  __shared__ float warp_acc[kWarps][detail::kMaxAttentionHeadDim];
  __shared__ float warp_m[kWarps], warp_l[kWarps];
  const int64_t D = a.head_dim;
  const int64_t s = blockIdx.z, h = blockIdx.y, split = blockIdx.x, num_splits = gridDim.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  const int64_t q_row = a.query_start[s];
  const int64_t query_len = a.query_start[s + 1] - q_row;
  const int64_t context_len = a.context_lens[s];
  float* out = a.out + q_row * a.num_q_heads * D + h * D;
  if (query_len == 0) return;
  if (query_len != 1 || context_len < 1 || context_len > num_splits * kDecodePartitionTokens) {
    if (split == 0) write_nan_row(out, D);  // caller bug, made visible
    return;
  }
  const int64_t first = detail::window_start(context_len - 1, a.sliding_window);  // the query is at context_len - 1
  const int64_t begin = split * kDecodePartitionTokens;
  const int64_t end = min(context_len, begin + kDecodePartitionTokens);
  if (begin >= context_len || end <= first) return;  // block-uniform; the reduce ignores this partition
  const int64_t kvh = h / (a.num_q_heads / a.num_kv_heads);
  const int32_t* table = a.block_tables + s * a.max_blocks_per_seq;

  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) q_s[d] = a.q[q_row * a.q_stride + h * D + d] * q_scale;
  __syncthreads();

  float m = -INFINITY, l = 0.0f, acc[detail::kMaxDimsPerLane];
#pragma unroll
  for (int c = 0; c < detail::kMaxDimsPerLane; ++c) acc[c] = 0.0f;
  const float cap_log2 = a.logit_softcap * detail::kLog2e;
  for (int64_t p = max(begin, first) + warp; p < end; p += kWarps) {
    const int64_t slot = detail::slot_of(table, p, a.block_size, a.num_blocks);
    float dot = 0.0f;
#pragma unroll
    for (int c = 0; c < detail::kMaxDimsPerLane; ++c) {
      const int64_t d = lane + 32 * c;
      if (d < D) dot += q_s[d] * (slot >= 0 ? detail::load_kv<kDtype>(a.k_cache, a.k_scales, slot, kvh,
                                                                     a.num_kv_heads, D, d)
                                            : NAN);
    }
    dot = detail::softcap_log2(detail::warp_sum(dot), cap_log2);
    const float m_new = fmaxf(m, dot);
    const float alpha = exp2f(m - m_new);
    const float w = exp2f(dot - m_new);
    l = l * alpha + w;
    m = m_new;
#pragma unroll
    for (int c = 0; c < detail::kMaxDimsPerLane; ++c) {
      const int64_t d = lane + 32 * c;
      if (d < D && slot >= 0)
        acc[c] = acc[c] * alpha + w * detail::load_kv<kDtype>(a.v_cache, a.v_scales, slot, kvh, a.num_kv_heads, D, d);
    }
  }
#pragma unroll
  for (int c = 0; c < detail::kMaxDimsPerLane; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) warp_acc[warp][d] = acc[c];
  }
  if (lane == 0) warp_m[warp] = m, warp_l[warp] = l;
  __syncthreads();

  float block_m = -INFINITY;
  for (int w = 0; w < kWarps; ++w) block_m = fmaxf(block_m, warp_m[w]);
  float factor[kWarps], block_l = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    factor[w] = warp_m[w] == -INFINITY ? 0.0f : exp2f(warp_m[w] - block_m);
    block_l += warp_l[w] * factor[w];
  }
  const int64_t part = (s * a.num_q_heads + h) * num_splits + split;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) sum += warp_acc[w][d] * factor[w];
    if (num_splits == 1) {
      out[d] = sum / block_l;
    } else {
      ws.acc[part * D + d] = sum;
    }
  }
  if (num_splits > 1 && threadIdx.x == 0) {
    ws.max_sum[2 * part] = block_m;
    ws.max_sum[2 * part + 1] = block_l;
  }
}

__global__ void __launch_bounds__(kReduceThreads)
    decode_reduce_kernel(PagedAttentionArgs a, Workspace ws, int64_t num_splits) {
  FERRY_DYNAMIC_SHARED(float, weight);  // [num_splits]
  __shared__ float scratch[32];
  const int64_t D = a.head_dim;
  const int64_t s = blockIdx.y, h = blockIdx.x;
  const int64_t q_row = a.query_start[s];
  const int64_t context_len = a.context_lens[s];
  if (a.query_start[s + 1] - q_row != 1 || context_len < 1 || context_len > num_splits * kDecodePartitionTokens)
    return;  // the decode kernel wrote NaN (or nothing, for query_len 0)
  // The partitions the decode kernel filled: from the window's first to the context's last.
  const int64_t used = (context_len + kDecodePartitionTokens - 1) / kDecodePartitionTokens;
  const int64_t skipped = detail::window_start(context_len - 1, a.sliding_window) / kDecodePartitionTokens;
  const int64_t base = (s * a.num_q_heads + h) * num_splits;

  float m = -INFINITY;
  for (int64_t i = skipped + threadIdx.x; i < used; i += blockDim.x) m = fmaxf(m, ws.max_sum[2 * (base + i)]);
  m = detail::block_max(m, scratch);
  float l = 0.0f;
  for (int64_t i = skipped + threadIdx.x; i < used; i += blockDim.x) {
    const float mi = ws.max_sum[2 * (base + i)];
    weight[i] = mi == -INFINITY ? 0.0f : exp2f(mi - m);
    l += ws.max_sum[2 * (base + i) + 1] * weight[i];
  }
  l = detail::block_sum(l, scratch);  // its barriers also publish weight[]
  float* out = a.out + q_row * a.num_q_heads * D + h * D;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0.0f;
    for (int64_t i = skipped; i < used; ++i) sum += ws.acc[(base + i) * D + d] * weight[i];
    out[d] = sum / l;
  }
}

template <KvCacheDType kDtype>
Status launch(const PagedAttentionArgs& a, int64_t num_splits, Workspace ws, cudaStream_t stream) {
  const float q_scale = a.scale * detail::kLog2e;
  const dim3 grid(static_cast<unsigned>(num_splits), static_cast<unsigned>(a.num_q_heads),
                  static_cast<unsigned>(a.num_seqs));
  detail::launch_kernel(decode_kernel<kDtype>, grid, kThreads, 0, stream, a, q_scale, ws);
  FERRY_CUDA_CHECK_LAUNCH("paged_attention decode_kernel");
  if (num_splits == 1) return Status::Ok();
  const dim3 reduce_grid(static_cast<unsigned>(a.num_q_heads), static_cast<unsigned>(a.num_seqs));
  detail::launch_kernel(decode_reduce_kernel, reduce_grid, kReduceThreads, sizeof(float) * num_splits, stream, a, ws,
                        num_splits);
  FERRY_CUDA_CHECK_LAUNCH("paged_attention decode_reduce_kernel");
  return Status::Ok();
}

}  // namespace

size_t paged_attention_decode_workspace_bytes(int64_t num_seqs, int64_t num_q_heads, int64_t head_dim,
                                              int64_t max_context_len) {
  const int64_t num_splits = num_splits_for(max_context_len);
  if (num_splits == 1 || num_seqs <= 0 || num_q_heads <= 0 || head_dim <= 0) return 0;
  return sizeof(float) * static_cast<size_t>(num_seqs * num_q_heads * num_splits * (head_dim + 2));
}

Status paged_attention_decode(const PagedAttentionArgs& args, int64_t max_context_len, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "cuda::paged_attention_decode";
  if (Status s = detail::validate_paged_attention(args, op); !s.ok()) return s;
  FERRY_CUDA_REQUIRE(max_context_len >= 1, op);
  if (args.num_seqs == 0 || args.num_tokens == 0) return Status::Ok();
  const int64_t num_splits = num_splits_for(max_context_len);
  FERRY_CUDA_REQUIRE(num_splits <= 8192, op);  // the reduce keeps one weight per split in shared memory
  const size_t needed =
      paged_attention_decode_workspace_bytes(args.num_seqs, args.num_q_heads, args.head_dim, max_context_len);
  FERRY_CUDA_REQUIRE(workspace_bytes >= needed && (needed == 0 || workspace != nullptr), op);
  Workspace ws{nullptr, nullptr};
  if (needed > 0) {
    ws.acc = static_cast<float*>(workspace);
    ws.max_sum = ws.acc + args.num_seqs * args.num_q_heads * num_splits * args.head_dim;
  }
  switch (args.kv_dtype) {
    case KvCacheDType::kInt8: return launch<KvCacheDType::kInt8>(args, num_splits, ws, stream);
    case KvCacheDType::kBF16: return launch<KvCacheDType::kBF16>(args, num_splits, ws, stream);
    case KvCacheDType::kF32: break;
  }
  return launch<KvCacheDType::kF32>(args, num_splits, ws, stream);
}

}  // namespace ferry::kernels::cuda
