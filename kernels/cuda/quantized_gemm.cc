// int8_matmul, int4_matmul: the choice between the few-rows kernel and the widen + bf16 GEMM path
// (quantized_gemm.h).
#include "kernels/cuda/quantized_gemm.h"

#include "kernels/cuda/cast.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/int4_to_bf16.cuh"
#include "kernels/cuda/int8_to_bf16.cuh"
#include "kernels/cuda/linear_int4.cuh"
#include "kernels/cuda/linear_int8.cuh"
#include "kernels/cuda/scale_columns.cuh"

namespace ferry::kernels::cuda {

size_t quantized_gemm_w16_bytes(int64_t n, int64_t k) { return static_cast<size_t>(n * k) * sizeof(uint16_t); }
size_t quantized_gemm_x16_bytes(int64_t m, int64_t k) { return static_cast<size_t>(m * k) * sizeof(uint16_t); }

namespace {

bool gemm_fits(const QuantizedGemmWorkspace& ws, int64_t m, int64_t n, int64_t k) {
  return ws.w16 != nullptr && ws.x16 != nullptr && ws.w16_bytes >= quantized_gemm_w16_bytes(n, k) &&
         ws.x16_bytes >= quantized_gemm_x16_bytes(m, k);
}

}  // namespace

Status int8_matmul(CublasGemm& gemm, float* out, const float* x, const int8_t* w, const float* scales,
                   const float* bias, int64_t m, int64_t n, int64_t k, const QuantizedGemmWorkspace& ws,
                   int64_t gemv_max_rows) {
  const char* op = "cuda::int8_matmul";
  FERRY_CUDA_REQUIRE(m >= 0 && n > 0 && k > 0, op);
  if (m == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && x && w && scales, op);
  const cudaStream_t stream = gemm.stream();
  if (m <= gemv_max_rows || !gemm_fits(ws, m, n, k)) return linear_int8(out, n, x, w, scales, bias, m, n, k, stream);
  FERRY_RETURN_IF_ERROR(int8_to_bf16(static_cast<uint16_t*>(ws.w16), w, n * k, stream));
  FERRY_RETURN_IF_ERROR(cast(ws.x16, DType::kBF16, x, DType::kF32, m * k, stream));
  FERRY_RETURN_IF_ERROR(gemm.matmul(out, DType::kF32, ws.x16, ws.w16, DType::kBF16, nullptr, m, n, k));
  return scale_columns(out, scales, bias, m, n, stream);
}

Status int4_matmul(CublasGemm& gemm, float* out, const float* x, const uint8_t* packed, const float* scales,
                   const float* zeros, int64_t group_size, const float* bias, int64_t m, int64_t n, int64_t k,
                   const QuantizedGemmWorkspace& ws, int64_t gemv_max_rows) {
  const char* op = "cuda::int4_matmul";
  FERRY_CUDA_REQUIRE(m >= 0 && n > 0 && k > 0, op);
  if (m == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && x && packed && scales, op);
  const cudaStream_t stream = gemm.stream();
  if (m <= gemv_max_rows || !gemm_fits(ws, m, n, k))
    return linear_int4(out, n, x, packed, scales, zeros, group_size, bias, m, n, k, stream);
  FERRY_RETURN_IF_ERROR(int4_to_bf16(static_cast<uint16_t*>(ws.w16), packed, scales, zeros, group_size, n, k, stream));
  FERRY_RETURN_IF_ERROR(cast(ws.x16, DType::kBF16, x, DType::kF32, m * k, stream));
  return gemm.matmul(out, DType::kF32, ws.x16, ws.w16, DType::kBF16, bias, m, n, k);
}

}  // namespace ferry::kernels::cuda
