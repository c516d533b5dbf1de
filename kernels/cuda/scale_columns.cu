// Column scale and bias: a grid-stride loop over the [m, n] elements.
#include "kernels/cuda/scale_columns.cuh"

#include <algorithm>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"

namespace ferry::kernels::cuda {
namespace {

__global__ void scale_columns_kernel(float* __restrict__ out, const float* __restrict__ scales,
                                     const float* __restrict__ bias, int64_t m, int64_t n) {
  const int64_t total = m * n;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t j = i % n;
    out[i] = out[i] * scales[j] + (bias != nullptr ? bias[j] : 0.0f);
  }
}

}  // namespace

Status scale_columns(float* out, const float* scales, const float* bias, int64_t m, int64_t n, cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(m >= 0 && n > 0, "cuda::scale_columns");
  if (m == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && scales, "cuda::scale_columns");
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((m * n + kThreads - 1) / kThreads, 65536);
  detail::launch_kernel(scale_columns_kernel, static_cast<unsigned>(blocks), kThreads, 0, stream, out, scales, bias,
                        m, n);
  FERRY_CUDA_CHECK_LAUNCH("scale_columns_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
