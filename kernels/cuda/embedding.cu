// Embedding lookup: one block per token, threads stride over the hidden dimension (coalesced).
#include "kernels/cuda/embedding.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

template <typename T>
__global__ void embedding_kernel(float* __restrict__ out, const T* __restrict__ table, int64_t vocab_size,
                                 int64_t hidden, const int32_t* __restrict__ token_ids) {
  const int64_t t = blockIdx.x;
  const int32_t id = token_ids[t];
  float* row_out = out + t * hidden;
  if (id < 0 || id >= vocab_size) {
    for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) row_out[j] = NAN;
    return;
  }
  const T* row = table + static_cast<int64_t>(id) * hidden;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) row_out[j] = detail::load_f32(row, j);
}

}  // namespace

Status embedding(float* out, const void* table, DType table_dtype, int64_t vocab_size, int64_t hidden,
                 const int32_t* token_ids, int64_t num_tokens, cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(num_tokens >= 0 && num_tokens <= INT_MAX, "cuda::embedding");
  FERRY_CUDA_REQUIRE(vocab_size > 0 && hidden > 0, "cuda::embedding");
  if (num_tokens == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && table && token_ids, "cuda::embedding");
  const dim3 grid(static_cast<unsigned>(num_tokens));
  const unsigned threads = hidden >= 256 ? 256 : 128;
  switch (table_dtype) {
    case DType::kF32:
      detail::launch_kernel(embedding_kernel<float>, grid, threads, 0, stream, out, static_cast<const float*>(table),
                            vocab_size, hidden, token_ids);
      break;
    case DType::kF16:
      detail::launch_kernel(embedding_kernel<__half>, grid, threads, 0, stream, out, static_cast<const __half*>(table),
                            vocab_size, hidden, token_ids);
      break;
    case DType::kBF16:
      detail::launch_kernel(embedding_kernel<__nv_bfloat16>, grid, threads, 0, stream, out,
                            static_cast<const __nv_bfloat16*>(table), vocab_size, hidden, token_ids);
      break;
    default: return Status::InvalidArgument("cuda::embedding: unknown table dtype");
  }
  FERRY_CUDA_CHECK_LAUNCH("embedding_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
