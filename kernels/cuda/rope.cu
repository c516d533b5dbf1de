// RoPE: one block per token; thread j computes sincos(position * inv_freq[j]) once and rotates
// element pair (j, j + d/2) of every q and k head (consecutive threads touch consecutive floats).
#include "kernels/cuda/rope.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"

namespace ferry::kernels::cuda {
namespace {

__device__ __forceinline__ void rotate_pair(float* x, int64_t j, int64_t half, double c, double s) {
  const double a = x[j], b = x[j + half];
  x[j] = static_cast<float>(a * c - b * s);
  x[j + half] = static_cast<float>(b * c + a * s);
}

__global__ void rope_kernel(float* q, float* k, const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq, int64_t q_stride, int64_t k_stride,
                            int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim) {
  const int64_t t = blockIdx.x;
  const int64_t half = head_dim / 2;
  const double position = static_cast<double>(positions[t]);
  float* q_row = q + t * q_stride;
  float* k_row = k + t * k_stride;
  for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
    double s, c;
    sincos(position * static_cast<double>(inv_freq[j]), &s, &c);
    for (int64_t h = 0; h < num_q_heads; ++h) rotate_pair(q_row + h * head_dim, j, half, c, s);
    for (int64_t h = 0; h < num_kv_heads; ++h) rotate_pair(k_row + h * head_dim, j, half, c, s);
  }
}

}  // namespace

Status rope(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens,
            int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim,
            cudaStream_t stream) {
  const char* op = "cuda::rope";
  FERRY_CUDA_REQUIRE(num_tokens >= 0 && num_tokens <= INT_MAX, op);
  FERRY_CUDA_REQUIRE(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 1024, op);
  FERRY_CUDA_REQUIRE(num_q_heads >= 0 && num_kv_heads >= 0, op);
  FERRY_CUDA_REQUIRE(q_stride >= num_q_heads * head_dim && k_stride >= num_kv_heads * head_dim, op);
  if (num_tokens == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE((q || num_q_heads == 0) && (k || num_kv_heads == 0) && positions && inv_freq, op);
  const int64_t half = head_dim / 2;
  const unsigned threads = half <= 32 ? 32 : half <= 64 ? 64 : 128;
  detail::launch_kernel(rope_kernel, static_cast<unsigned>(num_tokens), threads, 0, stream, q, k, positions, inv_freq,
                        q_stride, k_stride, num_q_heads, num_kv_heads, head_dim);
  FERRY_CUDA_CHECK_LAUNCH("rope_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
