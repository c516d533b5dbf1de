// Host code only (compiled by the C++ compiler, not nvcc).
// CublasGemm: row-major out[m, n] = x[m, k] . w[n, k]^T computed as the column-major product
// out^T[n, m] = op_T(W)[n, k] . X[k, m], where W is w viewed column-major as [k, n] (ld k) and X is
// x viewed as [k, m] (ld k); D is [n, m] with ld n, i.e. row-major [m, n]. The bias epilogue adds
// bias[n] along D's rows, which are the output features.
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>

#include "kernels/cuda/cuda_check.cuh"

namespace ferry::kernels::cuda {

struct CublasGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

}  // namespace

CublasGemm::CublasGemm(cudaStream_t stream, size_t workspace_bytes)
    : stream_(stream), workspace_bytes_(workspace_bytes) {}

Result<std::unique_ptr<CublasGemm>> CublasGemm::create(cudaStream_t stream, size_t workspace_bytes) {
  std::unique_ptr<CublasGemm> gemm(new CublasGemm(stream, workspace_bytes));
  cublasLtHandle_t handle = nullptr;
  FERRY_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
  gemm->handle_ = handle;
  if (workspace_bytes > 0) FERRY_CUDA_RETURN_IF_ERROR(cudaMalloc(&gemm->workspace_, workspace_bytes));
  return Result<std::unique_ptr<CublasGemm>>(std::move(gemm));
}

CublasGemm::~CublasGemm() {
  plans_.clear();
  // Destructors cannot report; a failure here leaves nothing the caller could act on.
  if (workspace_) (void)cudaFree(workspace_);
  if (handle_) (void)cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

Result<const CublasGemm::Plan*> CublasGemm::plan_for(const PlanKey& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return static_cast<const Plan*>(it->second.get());
  const auto [m, n, k, in_type, out_type, has_bias] = key;
  auto plan = std::make_unique<Plan>();
  FERRY_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  FERRY_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a));
  FERRY_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b));
  if (has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    FERRY_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  }
  const auto in = static_cast<cudaDataType_t>(in_type), out = static_cast<cudaDataType_t>(out_type);
  FERRY_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, in, k, n, k));
  FERRY_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, in, k, m, k));
  FERRY_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d, out, n, m, n));

  cublasLtMatmulPreference_t pref = nullptr;
  FERRY_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t max_ws = workspace_bytes_;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws,
                                                           sizeof max_ws);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a, plan->b,
                                        plan->d, plan->d, pref, 1, &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  FERRY_CUBLAS_RETURN_IF_ERROR(st);
  if (found == 0) return Status::Unimplemented("cuda::CublasGemm: cuBLASLt has no algorithm for this shape/dtype");
  plan->algo = result.algo;
  const Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

Status CublasGemm::matmul(void* out, DType out_dtype, const void* x, const void* w, DType in_dtype,
                          const void* bias, int64_t m, int64_t n, int64_t k) {
  const char* op = "cuda::CublasGemm::matmul";
  FERRY_CUDA_REQUIRE(in_dtype == DType::kBF16 || in_dtype == DType::kF16 || in_dtype == DType::kF32, op);
  FERRY_CUDA_REQUIRE(out_dtype == DType::kF32 || out_dtype == in_dtype, op);
  FERRY_CUDA_REQUIRE(m >= 0 && n > 0 && k > 0, op);
  if (m == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && x && w, op);
  const PlanKey key{m, n, k, static_cast<int>(cuda_type(in_dtype)), static_cast<int>(cuda_type(out_dtype)),
                    bias != nullptr};
  Result<const Plan*> plan = plan_for(key);
  if (!plan.ok()) return plan.status();
  const Plan* p = plan.value();
  if (bias) {
    FERRY_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  }
  const float alpha = 1.0f, beta = 0.0f;
  FERRY_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), p->desc, &alpha, w, p->a, x,
                                              p->b, &beta, out, p->d, out, p->d, &p->algo, workspace_,
                                              workspace_bytes_, stream_));
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
