// int4 -> bf16 dequantization: a grid-stride loop over the packed bytes, one byte (two weights) per
// thread per step. Byte i of a 16-byte block holds element i (low nibble) and i + 16 (high nibble)
// of its 32-element block (pack_int4).
#include "kernels/cuda/int4_to_bf16.cuh"

#include <algorithm>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

__global__ void int4_to_bf16_kernel(__nv_bfloat16* __restrict__ out, const uint8_t* __restrict__ packed,
                                    const float* __restrict__ scales, const float* __restrict__ zeros,
                                    int64_t group_size, int64_t k, int64_t num_bytes) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t row_bytes = k / 2, groups = k / group_size;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < num_bytes; i += stride) {
    const int64_t j = i / row_bytes, byte = i % row_bytes;
    const int64_t c = (byte / 16) * 32 + byte % 16;  // the low nibble's element; c + 16 the high one's
    const int64_t g = j * groups + c / group_size;
    const float scale = scales[g], zero = zeros != nullptr ? zeros[g] : 8.0f;
    const uint32_t v = packed[i];
    out[j * k + c] = __float2bfloat16_rn((static_cast<float>(v & 15u) - zero) * scale);
    out[j * k + c + 16] = __float2bfloat16_rn((static_cast<float>(v >> 4) - zero) * scale);
  }
}

}  // namespace

Status int4_to_bf16(uint16_t* out, const uint8_t* packed, const float* scales, const float* zeros,
                    int64_t group_size, int64_t n, int64_t k, cudaStream_t stream) {
  const char* op = "cuda::int4_to_bf16";
  FERRY_CUDA_REQUIRE(n >= 0 && k >= 0, op);
  FERRY_CUDA_REQUIRE((group_size == 32 || group_size == 64 || group_size == 128) && k % group_size == 0, op);
  if (n == 0 || k == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && packed && scales, op);
  constexpr int kThreads = 256;
  const int64_t num_bytes = n * (k / 2);
  const int64_t blocks = std::min<int64_t>((num_bytes + kThreads - 1) / kThreads, 65536);
  detail::launch_kernel(int4_to_bf16_kernel, static_cast<unsigned>(blocks), kThreads, 0, stream,
                        reinterpret_cast<__nv_bfloat16*>(out), packed, scales, zeros, group_size, k, num_bytes);
  FERRY_CUDA_CHECK_LAUNCH("int4_to_bf16_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
