// int4-weight GEMV-style kernel: a warp per output feature j, a block of 8 warps (8 consecutive
// features) per tile of up to kRowsPerTile rows of x. The packed row is read one 32-bit word per
// lane per step (a warp reads 128 consecutive bytes: 256 weights). pack_int4 keeps element i of a
// 32-element block in the low nibble of byte i (i < 16) or the high nibble of byte i - 16, so the
// word at byte 4s of block b holds elements 32b + 4s + {0..3} (low nibbles) and 32b + 16 + 4s +
// {0..3} (high nibbles): two runs of 4 consecutive activations (float4 loads when x is 16-byte
// aligned). Per word and row a lane sums q * x and x, then adds scale * (sum_qx - zero * sum_x): the
// eight weights of a word lie in one group (groups are whole blocks). The warp sums with shuffles;
// lane 0 adds the bias.
#include "kernels/cuda/linear_int4.cuh"

#include <climits>
#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;  // output features per block
constexpr int kRowsPerTile = 8;    // x rows per block: partial sums held in registers

template <bool kVectorX>
__device__ __forceinline__ float4 load4(const float* p) {
  if constexpr (kVectorX) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    return make_float4(p[0], p[1], p[2], p[3]);
  }
}

template <bool kVectorX>
__global__ void linear_int4_kernel(float* __restrict__ out, int64_t out_stride, const float* __restrict__ x,
                                   const uint8_t* __restrict__ packed, const float* __restrict__ scales,
                                   const float* __restrict__ zeros, int64_t group_size,
                                   const float* __restrict__ bias, int64_t m, int64_t n, int64_t k) {
  const int lane = threadIdx.x & 31;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (j >= n) return;  // the whole warp leaves together: no shuffle names an exited lane
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kRowsPerTile;
  const int rows = static_cast<int>(m - row0 < kRowsPerTile ? m - row0 : kRowsPerTile);
  const float* xt = x + row0 * k;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(packed + j * (k / 2));
  const int64_t groups = k / group_size;
  const float* row_scales = scales + j * groups;
  const float* row_zeros = zeros != nullptr ? zeros + j * groups : nullptr;
  float acc[kRowsPerTile];
#pragma unroll
  for (int r = 0; r < kRowsPerTile; ++r) acc[r] = 0.0f;
  const int64_t num_words = k / 8;
  for (int64_t wi = lane; wi < num_words; wi += 32) {
    const uint32_t word = words[wi];
    const int64_t c0 = (wi >> 2) * 32 + (wi & 3) * 4;  // first low-nibble element; +16 for the high ones
    const int64_t g = c0 / group_size;
    const float scale = row_scales[g];
    const float zero = row_zeros != nullptr ? row_zeros[g] : 8.0f;
    float q[8];
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      q[b] = static_cast<float>((word >> (8 * b)) & 15u);
      q[4 + b] = static_cast<float>((word >> (8 * b + 4)) & 15u);
    }
#pragma unroll
    for (int r = 0; r < kRowsPerTile; ++r) {
      if (r < rows) {
        const float4 lo = load4<kVectorX>(xt + r * k + c0);
        const float4 hi = load4<kVectorX>(xt + r * k + c0 + 16);
        const float qx = q[0] * lo.x + q[1] * lo.y + q[2] * lo.z + q[3] * lo.w + q[4] * hi.x + q[5] * hi.y +
                         q[6] * hi.z + q[7] * hi.w;
        const float sx = (lo.x + lo.y) + (lo.z + lo.w) + (hi.x + hi.y) + (hi.z + hi.w);
        acc[r] += scale * (qx - zero * sx);
      }
    }
  }
  const float b = bias != nullptr ? bias[j] : 0.0f;
#pragma unroll
  for (int r = 0; r < kRowsPerTile; ++r) {
    if (r < rows) {  // `rows` is the same for every lane: the shuffles stay converged
      const float sum = detail::warp_sum(acc[r]);
      if (lane == 0) out[(row0 + r) * out_stride + j] = sum + b;
    }
  }
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

Status linear_int4(float* out, int64_t out_stride, const float* x, const uint8_t* packed, const float* scales,
                   const float* zeros, int64_t group_size, const float* bias, int64_t m, int64_t n, int64_t k,
                   cudaStream_t stream) {
  const char* op = "cuda::linear_int4";
  FERRY_CUDA_REQUIRE(m >= 0 && n > 0 && k > 0 && out_stride >= n, op);
  FERRY_CUDA_REQUIRE((group_size == 32 || group_size == 64 || group_size == 128) && k % group_size == 0, op);
  FERRY_CUDA_REQUIRE((n + kWarpsPerBlock - 1) / kWarpsPerBlock <= INT_MAX, op);
  FERRY_CUDA_REQUIRE((m + kRowsPerTile - 1) / kRowsPerTile <= 65535, op);
  if (m == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && x && packed && scales && aligned(packed, 4), op);
  const dim3 grid(static_cast<unsigned>((n + kWarpsPerBlock - 1) / kWarpsPerBlock),
                  static_cast<unsigned>((m + kRowsPerTile - 1) / kRowsPerTile));
  const unsigned threads = 32 * kWarpsPerBlock;
  // Every run of 4 activations starts at a multiple of 4 (k % 32 == 0): float4 when x is aligned.
  if (aligned(x, 16)) {
    detail::launch_kernel(linear_int4_kernel<true>, grid, threads, 0, stream, out, out_stride, x, packed, scales,
                          zeros, group_size, bias, m, n, k);
  } else {
    detail::launch_kernel(linear_int4_kernel<false>, grid, threads, 0, stream, out, out_stride, x, packed, scales,
                          zeros, group_size, bias, m, n, k);
  }
  FERRY_CUDA_CHECK_LAUNCH("linear_int4_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
