// int8-weight GEMV-style kernel: a warp per output feature j, a block of 8 warps (8 consecutive
// features) per tile of up to kRowsPerTile rows of x. Each lane walks the row of w in steps of 32
// (the vector path: 4 int8 weights in one 32-bit load and 4 activations in one float4, when k and
// the pointers allow), keeps one fp32 partial sum per x row in registers, and the warp sums them
// with shuffles; lane 0 applies the row scale and bias. Weights are read once per row tile; x rows
// are re-read by each warp of the block (from L1/L2: 8 rows of a few thousand floats).
#include "kernels/cuda/linear_int8.cuh"

#include <climits>
#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;  // output features per block
constexpr int kRowsPerTile = 8;    // x rows per block: partial sums held in registers

template <bool kVector>
__global__ void linear_int8_kernel(float* __restrict__ out, int64_t out_stride, const float* __restrict__ x,
                                   const int8_t* __restrict__ w,
                                   const float* __restrict__ scales, const float* __restrict__ bias, int64_t m,
                                   int64_t n, int64_t k) {
  const int lane = threadIdx.x & 31;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (j >= n) return;  // the whole warp leaves together: no shuffle names an exited lane
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kRowsPerTile;
  const int rows = static_cast<int>(m - row0 < kRowsPerTile ? m - row0 : kRowsPerTile);
  const float* xt = x + row0 * k;
  const int8_t* wr = w + j * k;
  float acc[kRowsPerTile];
#pragma unroll
  for (int r = 0; r < kRowsPerTile; ++r) acc[r] = 0.0f;
  if constexpr (kVector) {
    const int64_t k4 = k / 4;
    const int32_t* w4 = reinterpret_cast<const int32_t*>(wr);
    for (int64_t c = lane; c < k4; c += 32) {
      const int32_t packed = w4[c];
      // Little-endian bytes: element 4c + b is byte b of the word.
      const float w0 = static_cast<float>(static_cast<int8_t>(packed & 0xff));
      const float w1 = static_cast<float>(static_cast<int8_t>((packed >> 8) & 0xff));
      const float w2 = static_cast<float>(static_cast<int8_t>((packed >> 16) & 0xff));
      const float w3 = static_cast<float>(static_cast<int8_t>((packed >> 24) & 0xff));
#pragma unroll
      for (int r = 0; r < kRowsPerTile; ++r) {
        if (r < rows) {
          const float4 xv = reinterpret_cast<const float4*>(xt + r * k)[c];
          acc[r] += xv.x * w0 + xv.y * w1 + xv.z * w2 + xv.w * w3;
        }
      }
    }
  } else {
    for (int64_t c = lane; c < k; c += 32) {
      const float wv = static_cast<float>(wr[c]);
#pragma unroll
      for (int r = 0; r < kRowsPerTile; ++r) {
        if (r < rows) acc[r] += xt[r * k + c] * wv;
      }
    }
  }
  const float scale = scales[j];
  const float b = bias != nullptr ? bias[j] : 0.0f;
#pragma unroll
  for (int r = 0; r < kRowsPerTile; ++r) {
    if (r < rows) {  // `rows` is the same for every lane: the shuffles stay converged
      const float sum = detail::warp_sum(acc[r]);
      if (lane == 0) out[(row0 + r) * out_stride + j] = sum * scale + b;
    }
  }
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

Status linear_int8(float* out, int64_t out_stride, const float* x, const int8_t* w, const float* scales,
                   const float* bias, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  const char* op = "cuda::linear_int8";
  FERRY_CUDA_REQUIRE(m >= 0 && n > 0 && k > 0 && out_stride >= n, op);
  FERRY_CUDA_REQUIRE((n + kWarpsPerBlock - 1) / kWarpsPerBlock <= INT_MAX, op);
  FERRY_CUDA_REQUIRE((m + kRowsPerTile - 1) / kRowsPerTile <= 65535, op);
  if (m == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && x && w && scales, op);
  const dim3 grid(static_cast<unsigned>((n + kWarpsPerBlock - 1) / kWarpsPerBlock),
                  static_cast<unsigned>((m + kRowsPerTile - 1) / kRowsPerTile));
  const unsigned threads = 32 * kWarpsPerBlock;
  // Rows of w start 4-byte aligned and rows of x 16-byte aligned when k % 4 == 0 and the bases are.
  if (k % 4 == 0 && aligned(w, 4) && aligned(x, 16)) {
    detail::launch_kernel(linear_int8_kernel<true>, grid, threads, 0, stream, out, out_stride, x, w, scales, bias, m,
                          n, k);
  } else {
    detail::launch_kernel(linear_int8_kernel<false>, grid, threads, 0, stream, out, out_stride, x, w, scales, bias, m,
                          n, k);
  }
  FERRY_CUDA_CHECK_LAUNCH("linear_int8_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
