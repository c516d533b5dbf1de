// Sampling: one block of 1024 threads per row. Every filter is a threshold on p = exp(z - max z),
// found by bisection over the fp32 bit patterns of (0, 1] (about 30 block-wide passes each for top_k
// and top_p; positive floats order like their bits). Probabilities are recomputed from the logits
// on each pass (the row stays in L2) instead of being staged, so nothing is allocated.
// The draw: each thread owns a contiguous chunk of ids, a block-wide exclusive scan of the chunk
// masses finds the chunk holding u * mass, and that thread walks it.
#include "kernels/cuda/sampling.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr uint32_t kOneBits = 0x3f800000u;  // 1.0f

__host__ __device__ inline uint32_t mul_hi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// Philox4x32-10, first output word only.
__host__ __device__ inline float philox_uniform(uint64_t seed, uint64_t offset) {
  uint32_t c0 = static_cast<uint32_t>(offset), c1 = static_cast<uint32_t>(offset >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = mul_hi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = mul_hi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return static_cast<float>((c0 >> 8) + 1) * (1.0f / 16777216.0f);
}

struct Row {
  const float* logits;
  int64_t vocab;
  float inv_t;
  float max_z;
  __device__ float prob(int64_t j) const { return expf(logits[j] * inv_t - max_z); }
};

// Sum over kept ids (p >= tau) of p (mass) or of 1 (count).
template <bool kMass>
__device__ float reduce_ge(const Row& row, float tau, float* scratch) {
  float acc = 0.0f;
  for (int64_t j = threadIdx.x; j < row.vocab; j += blockDim.x) {
    const float p = row.prob(j);
    if (p >= tau) acc += kMass ? p : 1.0f;
  }
  return detail::block_sum(acc, scratch);
}

// Largest bit pattern b in [lo, kOneBits] with reduce_ge(float(b)) >= goal, given that lo satisfies it.
template <bool kMass>
__device__ uint32_t bisect(const Row& row, uint32_t lo, float goal, float* scratch) {
  uint32_t hi = kOneBits + 1;  // p <= 1, so nothing is >= float(kOneBits + 1)
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (reduce_ge<kMass>(row, __uint_as_float(mid), scratch) >= goal) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Exclusive prefix sum over the block (thread order); every thread gets its own prefix.
__device__ float block_exclusive_scan(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float inclusive = v;
  for (int offset = 1; offset < 32; offset <<= 1) {
    const float up = __shfl_up_sync(detail::kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += up;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    float total = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : 0.0f;
    for (int offset = 1; offset < 32; offset <<= 1) {
      const float up = __shfl_up_sync(detail::kFullMask, total, offset);
      if (lane >= offset) total += up;
    }
    scratch[lane] = total;  // inclusive over warps
  }
  __syncthreads();
  return (warp > 0 ? scratch[warp - 1] : 0.0f) + inclusive - v;
}

__device__ int32_t greedy(const float* logits, int64_t vocab, float* scratch_v, int32_t* scratch_i) {
  float best_v = -INFINITY;
  int32_t best_i = INT_MAX;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = logits[j];
    if (v > best_v) best_v = v, best_i = static_cast<int32_t>(j);  // ascending j: first max kept
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float v = __shfl_xor_sync(detail::kFullMask, best_v, offset);
    const int32_t i = __shfl_xor_sync(detail::kFullMask, best_i, offset);
    if (v > best_v || (v == best_v && i < best_i)) best_v = v, best_i = i;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch_v[warp] = best_v, scratch_i[warp] = best_i;
  __syncthreads();
  best_v = scratch_v[0], best_i = scratch_i[0];
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
    if (scratch_v[w] > best_v || (scratch_v[w] == best_v && scratch_i[w] < best_i))
      best_v = scratch_v[w], best_i = scratch_i[w];
  return best_i == INT_MAX ? 0 : best_i;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(int32_t* out, const float* __restrict__ logits, const SamplingRowParams* __restrict__ params,
                  int64_t vocab) {
  __shared__ float scratch[32];
  __shared__ int32_t scratch_i[32];
  __shared__ int32_t winner, last_kept;
  const int64_t r = blockIdx.x;
  const SamplingRowParams prm = params[r];
  const float* row_logits = logits + r * vocab;
  if (!(prm.temperature >= 1e-5f)) {  // NaN temperature too
    const int32_t best = greedy(row_logits, vocab, scratch, scratch_i);
    if (threadIdx.x == 0) out[r] = best;
    return;
  }
  Row row{row_logits, vocab, 1.0f / prm.temperature, 0.0f};
  float max_z = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) max_z = fmaxf(max_z, row_logits[j] * row.inv_t);
  row.max_z = detail::block_max(max_z, scratch);

  // Thresholds on p, applied in the sampler's order: min_p, then top_k, then top_p.
  uint32_t tau = prm.min_p > 0.0f ? __float_as_uint(fminf(prm.min_p, 1.0f)) : 0u;
  if (prm.top_k > 0 && prm.top_k < vocab) {
    const float kept = reduce_ge<false>(row, __uint_as_float(tau), scratch);
    if (kept > static_cast<float>(prm.top_k)) tau = bisect<false>(row, tau, static_cast<float>(prm.top_k), scratch);
  }
  if (prm.top_p > 0.0f && prm.top_p < 1.0f) {
    const float mass = reduce_ge<true>(row, __uint_as_float(tau), scratch);
    tau = bisect<true>(row, tau, prm.top_p * mass, scratch);
  }
  const float threshold = __uint_as_float(tau);

  // The draw: chunk of ids per thread, scan of chunk masses, walk of the chunk that holds the target.
  const int64_t chunk = (vocab + blockDim.x - 1) / blockDim.x;
  const int64_t begin = min(vocab, threadIdx.x * chunk), end = min(vocab, begin + chunk);
  float local = 0.0f;
  int32_t my_last = -1;
  for (int64_t j = begin; j < end; ++j) {
    const float p = row.prob(j);
    if (p >= threshold) local += p, my_last = static_cast<int32_t>(j);
  }
  if (threadIdx.x == 0) winner = INT_MAX, last_kept = -1;
  const float prefix = block_exclusive_scan(local, scratch);  // its barriers publish winner/last_kept
  const float total = detail::block_sum(local, scratch);
  const float target = philox_uniform(prm.seed, prm.offset) * total;
  if (my_last >= 0) atomicMax(&last_kept, my_last);
  if (local > 0.0f && prefix < target && target <= prefix + local) {
    float running = prefix;
    int32_t pick = my_last;
    for (int64_t j = begin; j < end; ++j) {
      const float p = row.prob(j);
      if (p < threshold) continue;
      running += p;
      if (running >= target) {
        pick = static_cast<int32_t>(j);
        break;
      }
    }
    atomicMin(&winner, pick);
  }
  __syncthreads();
  if (threadIdx.x == 0) out[r] = winner != INT_MAX ? winner : (last_kept >= 0 ? last_kept : 0);
}

}  // namespace

float sampling_uniform(uint64_t seed, uint64_t offset) { return philox_uniform(seed, offset); }

Status sample(int32_t* out, const float* logits, const SamplingRowParams* params, int64_t num_rows, int64_t vocab,
              cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(num_rows >= 0 && num_rows <= INT_MAX, "cuda::sample");
  FERRY_CUDA_REQUIRE(vocab > 0 && vocab < (int64_t{1} << 24), "cuda::sample");
  if (num_rows == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && logits && params, "cuda::sample");
  detail::launch_kernel(sample_kernel, static_cast<unsigned>(num_rows), kThreads, 0, stream, out, logits, params,
                        vocab);
  FERRY_CUDA_CHECK_LAUNCH("sample_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
