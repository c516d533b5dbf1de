// Conversion kernel: a grid-stride loop, one element per thread per step.
#include "kernels/cuda/cast.cuh"

#include <algorithm>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

template <typename Dst, typename Src>
__global__ void cast_kernel(Dst* __restrict__ dst, const Src* __restrict__ src, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    store(dst, i, detail::load_f32(src, i));
}

template <typename Dst, typename Src>
Status launch(void* dst, const void* src, int64_t n, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65536);
  detail::launch_kernel(cast_kernel<Dst, Src>, static_cast<unsigned>(blocks), kThreads, 0, stream,
                        static_cast<Dst*>(dst), static_cast<const Src*>(src), n);
  FERRY_CUDA_CHECK_LAUNCH("cast_kernel");
  return Status::Ok();
}

}  // namespace

Status cast(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(n >= 0, "cuda::cast");
  if (n == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(dst && src, "cuda::cast");
  if (src_dtype == DType::kF32) {
    switch (dst_dtype) {
      case DType::kF32: return launch<float, float>(dst, src, n, stream);
      case DType::kF16: return launch<__half, float>(dst, src, n, stream);
      case DType::kBF16: return launch<__nv_bfloat16, float>(dst, src, n, stream);
    }
  } else if (dst_dtype == DType::kF32) {
    if (src_dtype == DType::kF16) return launch<float, __half>(dst, src, n, stream);
    if (src_dtype == DType::kBF16) return launch<float, __nv_bfloat16>(dst, src, n, stream);
  }
  return Status::InvalidArgument("cuda::cast: unsupported dtype pair");
}

}  // namespace ferry::kernels::cuda
