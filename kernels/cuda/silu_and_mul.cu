// SiLU-and-mul: one block per row, threads stride over the intermediate dimension.
#include "kernels/cuda/silu_and_mul.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"

namespace ferry::kernels::cuda {
namespace {

__global__ void silu_and_mul_kernel(float* __restrict__ out, const float* __restrict__ gate_up, int64_t inter) {
  const int64_t r = blockIdx.x;
  const float* gate = gate_up + r * 2 * inter;
  const float* up = gate + inter;
  for (int64_t j = threadIdx.x; j < inter; j += blockDim.x) {
    const float g = gate[j];
    out[r * inter + j] = g / (1.0f + expf(-g)) * up[j];
  }
}

}  // namespace

Status silu_and_mul(float* out, const float* gate_up, int64_t num_rows, int64_t inter, cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(num_rows >= 0 && num_rows <= INT_MAX && inter > 0, "cuda::silu_and_mul");
  if (num_rows == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && gate_up, "cuda::silu_and_mul");
  const unsigned threads = inter >= 1024 ? 512 : 128;
  detail::launch_kernel(silu_and_mul_kernel, static_cast<unsigned>(num_rows), threads, 0, stream, out, gate_up, inter);
  FERRY_CUDA_CHECK_LAUNCH("silu_and_mul_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
