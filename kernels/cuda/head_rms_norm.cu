// Per-head RMSNorm: one warp per (token, head) vector; lanes stride over head_dim.
#include "kernels/cuda/head_rms_norm.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

__global__ void head_rms_norm_kernel(float* x, const float* __restrict__ weight, int64_t num_vectors,
                                     int64_t token_stride, int64_t num_heads, int64_t head_dim, float eps) {
  const int64_t v = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (v >= num_vectors) return;  // warp-uniform
  const int lane = threadIdx.x & 31;
  float* row = x + (v / num_heads) * token_stride + (v % num_heads) * head_dim;
  float sum_sq = 0.0f;
  for (int64_t d = lane; d < head_dim; d += 32) sum_sq += row[d] * row[d];
  sum_sq = detail::warp_sum(sum_sq);
  const float inv_rms = 1.0f / sqrtf(sum_sq / static_cast<float>(head_dim) + eps);
  for (int64_t d = lane; d < head_dim; d += 32) row[d] = row[d] * inv_rms * weight[d];
}

}  // namespace

Status head_rms_norm(float* x, const float* weight, int64_t num_tokens, int64_t token_stride, int64_t num_heads,
                     int64_t head_dim, float eps, cudaStream_t stream) {
  const char* op = "cuda::head_rms_norm";
  FERRY_CUDA_REQUIRE(num_tokens >= 0 && num_heads > 0 && head_dim > 0 && head_dim <= 1024, op);
  FERRY_CUDA_REQUIRE(token_stride >= num_heads * head_dim && eps >= 0.0f, op);
  if (num_tokens == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(x && weight, op);
  const int64_t num_vectors = num_tokens * num_heads;
  const int64_t num_blocks = (num_vectors + kWarpsPerBlock - 1) / kWarpsPerBlock;
  FERRY_CUDA_REQUIRE(num_blocks <= INT_MAX, op);
  detail::launch_kernel(head_rms_norm_kernel, static_cast<unsigned>(num_blocks), kWarpsPerBlock * 32, 0, stream,
                        x, weight, num_vectors, token_stride, num_heads, head_dim, eps);
  FERRY_CUDA_CHECK_LAUNCH("head_rms_norm_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
