// Argmax: one block per row; each thread scans a strided slice, then a (value, index) reduction
// through shuffles and shared memory keeps the larger value, the lower index on ties.
#include "kernels/cuda/argmax.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ bool better(float v, int32_t i, float best_v, int32_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

__global__ void argmax_kernel(int32_t* out, const float* __restrict__ logits, int64_t vocab) {
  __shared__ float s_val[kThreads / 32];
  __shared__ int32_t s_idx[kThreads / 32];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float best_v = -INFINITY;
  int32_t best_i = INT_MAX;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = row[j];
    if (better(v, static_cast<int32_t>(j), best_v, best_i)) best_v = v, best_i = static_cast<int32_t>(j);
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float v = __shfl_xor_sync(detail::kFullMask, best_v, offset);
    const int32_t i = __shfl_xor_sync(detail::kFullMask, best_i, offset);
    if (better(v, i, best_v, best_i)) best_v = v, best_i = i;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) s_val[warp] = best_v, s_idx[warp] = best_i;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w)
      if (better(s_val[w], s_idx[w], best_v, best_i)) best_v = s_val[w], best_i = s_idx[w];
    out[blockIdx.x] = best_i == INT_MAX ? 0 : best_i;  // INT_MAX: every logit was NaN
  }
}

}  // namespace

Status argmax(int32_t* out, const float* logits, int64_t num_rows, int64_t vocab, cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(num_rows >= 0 && num_rows <= INT_MAX, "cuda::argmax");
  FERRY_CUDA_REQUIRE(vocab > 0 && vocab < INT_MAX, "cuda::argmax");
  if (num_rows == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && logits, "cuda::argmax");
  detail::launch_kernel(argmax_kernel, static_cast<unsigned>(num_rows), kThreads, 0, stream, out, logits, vocab);
  FERRY_CUDA_CHECK_LAUNCH("argmax_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
