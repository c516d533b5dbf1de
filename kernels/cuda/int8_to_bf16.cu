// int8 -> bf16 widening: a grid-stride loop, one element per thread per step.
#include "kernels/cuda/int8_to_bf16.cuh"

#include <algorithm>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

__global__ void int8_to_bf16_kernel(__nv_bfloat16* __restrict__ out, const int8_t* __restrict__ in, int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
    out[i] = __float2bfloat16_rn(static_cast<float>(in[i]));  // exact for |v| <= 128
}

}  // namespace

Status int8_to_bf16(uint16_t* out, const int8_t* in, int64_t count, cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(count >= 0, "cuda::int8_to_bf16");
  if (count == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && in, "cuda::int8_to_bf16");
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((count + kThreads - 1) / kThreads, 65536);
  detail::launch_kernel(int8_to_bf16_kernel, static_cast<unsigned>(blocks), kThreads, 0, stream,
                        reinterpret_cast<__nv_bfloat16*>(out), in, count);
  FERRY_CUDA_CHECK_LAUNCH("int8_to_bf16_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
