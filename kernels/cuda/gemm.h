// GEMMs through cuBLASLt for the linear layers: bf16/fp16 (or fp32) inputs, fp32 accumulation,
// optional bias, fp32 or 16-bit output. Not a kernel of ours: a small owner of the cuBLASLt handle, a workspace and
// the per-shape plans, bound to one stream. The reference is kernels::matmul (kernels/kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::kernels::cuda {

// Owns a cuBLASLt handle, `workspace_bytes` of device memory for it (allocated once in create), and
// a cache of matmul plans (descriptors + the heuristic's algorithm) keyed by shape and dtypes, so a
// steady-state call does no allocation and no heuristic query. Bound to the stream given at
// creation; every matmul is enqueued there and returns without synchronizing.
// Thread-safety: none; one CublasGemm per stream / engine instance. Destroy it only when its stream
// has no work of it pending.
class CublasGemm {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

  // Fails with Internal (and allocates nothing) when cuBLASLt or cudaMalloc fails, e.g. without a GPU.
  static Result<std::unique_ptr<CublasGemm>> create(cudaStream_t stream,
                                                    size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  // HF linear layout: out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), fp32 accumulation.
  // in_dtype: kBF16, kF16 or kF32 (CUBLAS_COMPUTE_32F: plain fp32, no TF32), for both x and w.
  // out_dtype: kF32 or in_dtype; bias (optional) has the
  // out dtype (cuBLASLt's default bias type). Device pointers, 16-byte aligned for the fast
  // kernels. Returns InvalidArgument for unsupported dtypes or sizes, Internal for a cuBLAS failure.
  Status matmul(void* out, DType out_dtype,  // [m, n]
                const void* x,               // [m, k], in_dtype
                const void* w,               // [n, k], in_dtype
                DType in_dtype,
                const void* bias,  // [n], out_dtype, or nullptr
                int64_t m, int64_t n, int64_t k);

  cudaStream_t stream() const { return stream_; }

 private:
  struct Plan;
  using PlanKey = std::tuple<int64_t, int64_t, int64_t, int, int, bool>;  // m, n, k, in, out, bias

  CublasGemm(cudaStream_t stream, size_t workspace_bytes);  // defined where Plan is complete
  Result<const Plan*> plan_for(const PlanKey& key);

  cudaStream_t stream_;
  size_t workspace_bytes_;
  void* workspace_ = nullptr;  // device, workspace_bytes_
  void* handle_ = nullptr;     // cublasLtHandle_t (kept opaque so this header needs no cuBLAS)
  std::map<PlanKey, std::unique_ptr<Plan>> plans_;
};

}  // namespace ferry::kernels::cuda
