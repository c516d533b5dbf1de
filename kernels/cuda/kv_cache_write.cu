// KV cache writes. fp32 / bf16: one block per token copying (bf16: rounding to nearest even, as
// f32_to_bf16) its K and V rows. int8: one warp per
// (token, kv head) row: a warp max for amax, then the same fp32 operations as the reference
// (__fdiv_rn / __fmul_rn / rintf spell out the IEEE rounding so no compiler flag can change it).
#include "kernels/cuda/kv_cache_write.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }

template <typename T>
__global__ void kv_cache_write_kernel(T* k_cache, T* v_cache, const float* __restrict__ k,
                                      const float* __restrict__ v, const int64_t* __restrict__ slot_mapping,
                                      int64_t num_slots, int64_t k_stride, int64_t v_stride, int64_t row) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0 || slot >= num_slots) return;
  for (int64_t j = threadIdx.x; j < row; j += blockDim.x) {
    store(k_cache + slot * row + j, k[t * k_stride + j]);
    store(v_cache + slot * row + j, v[t * v_stride + j]);
  }
}

// Quantizes one row with one warp, as the reference's quantize_row_int8.
__device__ void quantize_row(int8_t* q, float* scale, const float* x, int64_t n, int lane) {
  float amax = 0.0f;
  for (int64_t d = lane; d < n; d += 32) amax = fmaxf(amax, fabsf(x[d]));
  amax = detail::warp_max(amax);
  if (amax == 0.0f) {
    for (int64_t d = lane; d < n; d += 32) q[d] = 0;
    if (lane == 0) *scale = 0.0f;
    return;
  }
  const float inv = __fdiv_rn(127.0f, amax);
  for (int64_t d = lane; d < n; d += 32) {
    const float r = rintf(__fmul_rn(x[d], inv));  // half to even, like std::nearbyint
    q[d] = static_cast<int8_t>(fminf(127.0f, fmaxf(-127.0f, r)));
  }
  if (lane == 0) *scale = __fdiv_rn(amax, 127.0f);
}

__global__ void kv_cache_write_int8_kernel(int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales,
                                           const float* __restrict__ k, const float* __restrict__ v,
                                           const int64_t* __restrict__ slot_mapping, int64_t num_rows,
                                           int64_t num_slots, int64_t k_stride, int64_t v_stride,
                                           int64_t num_kv_heads, int64_t head_dim) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (r >= num_rows) return;  // warp-uniform
  const int64_t t = r / num_kv_heads, h = r % num_kv_heads;
  const int64_t slot = slot_mapping[t];
  if (slot < 0 || slot >= num_slots) return;
  const int lane = threadIdx.x & 31;
  const int64_t dst = slot * num_kv_heads + h;  // [num_slots, num_kv_heads] rows of head_dim
  quantize_row(k_cache + dst * head_dim, k_scales + dst, k + t * k_stride + h * head_dim, head_dim, lane);
  quantize_row(v_cache + dst * head_dim, v_scales + dst, v + t * v_stride + h * head_dim, head_dim, lane);
}

Status validate(const char* op, int64_t num_tokens, int64_t num_slots, int64_t k_stride, int64_t v_stride,
                int64_t num_kv_heads, int64_t head_dim) {
  FERRY_CUDA_REQUIRE(num_tokens >= 0 && num_tokens <= INT_MAX && num_slots > 0, op);
  FERRY_CUDA_REQUIRE(num_kv_heads > 0 && head_dim > 0 && head_dim <= 1024, op);
  FERRY_CUDA_REQUIRE(k_stride >= num_kv_heads * head_dim && v_stride >= num_kv_heads * head_dim, op);
  return Status::Ok();
}

template <typename T>
Status write_rows(const char* op, T* k_cache, T* v_cache, const float* k, const float* v, const int64_t* slot_mapping,
                  int64_t num_tokens, int64_t num_slots, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads,
                  int64_t head_dim, cudaStream_t stream) {
  if (Status s = validate(op, num_tokens, num_slots, k_stride, v_stride, num_kv_heads, head_dim); !s.ok())
    return s;
  if (num_tokens == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(k_cache && v_cache && k && v && slot_mapping, op);
  const int64_t row = num_kv_heads * head_dim;
  const unsigned threads = row >= 512 ? 256 : 128;
  detail::launch_kernel(kv_cache_write_kernel<T>, static_cast<unsigned>(num_tokens), threads, 0, stream,
                        k_cache, v_cache, k, v, slot_mapping, num_slots, k_stride, v_stride, row);
  FERRY_CUDA_CHECK_LAUNCH("kv_cache_write_kernel");
  return Status::Ok();
}

}  // namespace

Status kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v, const int64_t* slot_mapping,
                      int64_t num_tokens, int64_t num_slots, int64_t k_stride, int64_t v_stride,
                      int64_t num_kv_heads, int64_t head_dim, cudaStream_t stream) {
  return write_rows("cuda::kv_cache_write", k_cache, v_cache, k, v, slot_mapping, num_tokens, num_slots, k_stride,
                    v_stride, num_kv_heads, head_dim, stream);
}

Status kv_cache_write_bf16(uint16_t* k_cache, uint16_t* v_cache, const float* k, const float* v,
                           const int64_t* slot_mapping, int64_t num_tokens, int64_t num_slots, int64_t k_stride,
                           int64_t v_stride, int64_t num_kv_heads, int64_t head_dim, cudaStream_t stream) {
  return write_rows("cuda::kv_cache_write_bf16", reinterpret_cast<__nv_bfloat16*>(k_cache),
                    reinterpret_cast<__nv_bfloat16*>(v_cache), k, v, slot_mapping, num_tokens, num_slots, k_stride,
                    v_stride, num_kv_heads, head_dim, stream);
}

Status kv_cache_write_int8(int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales, const float* k,
                           const float* v, const int64_t* slot_mapping, int64_t num_tokens, int64_t num_slots,
                           int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, int64_t head_dim,
                           cudaStream_t stream) {
  const char* op = "cuda::kv_cache_write_int8";
  if (Status s = validate(op, num_tokens, num_slots, k_stride, v_stride, num_kv_heads, head_dim); !s.ok())
    return s;
  if (num_tokens == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(k_cache && v_cache && k_scales && v_scales && k && v && slot_mapping, op);
  const int64_t num_rows = num_tokens * num_kv_heads;
  const int64_t blocks = (num_rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  FERRY_CUDA_REQUIRE(blocks <= INT_MAX, op);
  detail::launch_kernel(kv_cache_write_int8_kernel, static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream,
                        k_cache, v_cache, k_scales, v_scales, k, v, slot_mapping, num_rows, num_slots, k_stride,
                        v_stride, num_kv_heads, head_dim);
  FERRY_CUDA_CHECK_LAUNCH("kv_cache_write_int8_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
