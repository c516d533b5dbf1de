// Fused residual add + RMSNorm: one block per row. Pass 1 adds the delta, stores the new residual
// and accumulates the sum of squares; after the block reduction, pass 2 re-reads the row (each
// thread reads back only what it wrote, so no extra barrier) and writes the normalized output.
#include "kernels/cuda/add_rms_norm.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

template <bool kAdd>
__global__ void add_rms_norm_kernel(float* out, float* residual, const float* delta,
                                    const float* __restrict__ weight, int64_t dim, float eps) {
  __shared__ float scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float sum_sq = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    float x = residual[base + j];
    if constexpr (kAdd) {
      x += delta[base + j];
      residual[base + j] = x;
    }
    sum_sq += x * x;
  }
  sum_sq = detail::block_sum(sum_sq, scratch);
  const float inv_rms = 1.0f / sqrtf(sum_sq / static_cast<float>(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) out[base + j] = residual[base + j] * inv_rms * weight[j];
}

}  // namespace

Status add_rms_norm(float* out, float* residual, const float* delta, const float* weight, int64_t num_rows,
                    int64_t dim, float eps, cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(num_rows >= 0 && num_rows <= INT_MAX && dim > 0, "cuda::add_rms_norm");
  FERRY_CUDA_REQUIRE(eps >= 0.0f, "cuda::add_rms_norm");
  if (num_rows == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && residual && weight, "cuda::add_rms_norm");
  // Without a delta the residual is only read, and each thread writes out[j] after its own last read
  // of residual[j]: out may alias it then (kernels::rms_norm allows out == in).
  FERRY_CUDA_REQUIRE(out != residual || delta == nullptr, "cuda::add_rms_norm");
  const dim3 grid(static_cast<unsigned>(num_rows));
  const unsigned threads = dim >= 2048 ? 512 : dim >= 512 ? 256 : 128;
  if (delta) {
    detail::launch_kernel(add_rms_norm_kernel<true>, grid, threads, 0, stream, out, residual, delta, weight, dim,
                          eps);
  } else {
    detail::launch_kernel(add_rms_norm_kernel<false>, grid, threads, 0, stream, out, residual, nullptr, weight,
                          dim, eps);
  }
  FERRY_CUDA_CHECK_LAUNCH("add_rms_norm_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
