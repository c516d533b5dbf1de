// CublasGemm for the CUDA emulation build (FERRY_CUDA_EMULATION): the interface of gemm.h on plain
// host loops instead of cuBLASLt, with cuBLASLt's types: bf16/fp16/fp32 inputs, fp32 accumulation
// (CUBLAS_COMPUTE_32F) in k order, the bias added in fp32 before the one rounding to the output type.
// The work is ordered on the wrapper's stream and captured with it (cuda_api.h, Graphs).
// It checks the arguments and the wrapper's contract (shapes, dtypes, bias type, the workspace) so
// that callers can be tested without a GPU; it says nothing about cuBLASLt itself (its algorithms,
// its accumulation order, alignment requirements), which only scripts/gpu-check exercises.
#include "kernels/cuda/gemm.h"

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/emu/half.h"

namespace ferry::kernels::cuda {

struct CublasGemm::Plan {};

namespace {

float load(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kF16: return simt::detail::f16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kBF16: return simt::detail::bf16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.0f;
}

void store(void* p, DType dtype, int64_t i, float v) {
  switch (dtype) {
    case DType::kF32: static_cast<float*>(p)[i] = v; return;
    case DType::kF16: static_cast<uint16_t*>(p)[i] = simt::detail::f32_to_f16_bits(v); return;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = simt::detail::f32_to_bf16_bits(v); return;
  }
}

}  // namespace

CublasGemm::CublasGemm(cudaStream_t stream, size_t workspace_bytes)
    : stream_(stream), workspace_bytes_(workspace_bytes) {}

Result<std::unique_ptr<CublasGemm>> CublasGemm::create(cudaStream_t stream, size_t workspace_bytes) {
  std::unique_ptr<CublasGemm> gemm(new CublasGemm(stream, workspace_bytes));
  if (workspace_bytes > 0) FERRY_CUDA_RETURN_IF_ERROR(cudaMalloc(&gemm->workspace_, workspace_bytes));
  return Result<std::unique_ptr<CublasGemm>>(std::move(gemm));
}

CublasGemm::~CublasGemm() {
  if (workspace_) (void)cudaFree(workspace_);
}

Result<const CublasGemm::Plan*> CublasGemm::plan_for(const PlanKey& key) {
  auto it = plans_.find(key);
  if (it == plans_.end()) it = plans_.emplace(key, std::make_unique<Plan>()).first;
  return static_cast<const Plan*>(it->second.get());
}

Status CublasGemm::matmul(void* out, DType out_dtype, const void* x, const void* w, DType in_dtype,
                          const void* bias, int64_t m, int64_t n, int64_t k) {
  const char* op = "cuda::CublasGemm::matmul";
  FERRY_CUDA_REQUIRE(in_dtype == DType::kBF16 || in_dtype == DType::kF16 || in_dtype == DType::kF32, op);
  FERRY_CUDA_REQUIRE(out_dtype == DType::kF32 || out_dtype == in_dtype, op);
  FERRY_CUDA_REQUIRE(m >= 0 && n > 0 && k > 0, op);
  if (m == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && x && w, op);
  FERRY_CUDA_RETURN_IF_ERROR(cudaPeekAtLastError());  // a sticky fault fails the call, as cuBLAS would
  const PlanKey key{m, n, k, static_cast<int>(in_dtype), static_cast<int>(out_dtype), bias != nullptr};
  if (Result<const Plan*> plan = plan_for(key); !plan.ok()) return plan.status();
  // Ordered on the stream like cublasLtMatmul: run now, or recorded as a host node when the stream
  // captures (the pointers and sizes frozen, the memory read at each replay).
  FERRY_CUDA_RETURN_IF_ERROR(simt::enqueue_host_work(stream_, "cublasLtMatmul", [=] {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        float acc = 0.0f;
        for (int64_t c = 0; c < k; ++c) acc += load(x, in_dtype, i * k + c) * load(w, in_dtype, j * k + c);
        if (bias) acc += load(bias, out_dtype, j);
        store(out, out_dtype, i * n + j, acc);
      }
    }
  }));
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
