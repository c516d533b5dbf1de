// The int8-weight linear layer for any number of rows: the few-rows kernel (linear_int8.cuh) for
// decode-sized m, and for larger m the weights widened into a bf16 workspace (exactly: int8 values
// are bf16 values), the activations cast to bf16, cuBLASLt's bf16 GEMM with fp32 accumulation, and
// the per-row scales (and bias) applied to its fp32 output. Host code, like gemm.h: it only
// enqueues launches and the GEMM on the CublasGemm's stream. The reference is kernels::linear with a
// kInt8 WeightMatrix (cpu::linear_reference).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/gemm.h"

namespace ferry::kernels::cuda {

// Up to this many rows run on linear_int8 (each 8-row tile reads the int8 weights once: at 16 rows
// that is 2 bytes per weight, below the GEMM path's 1 + 2 + 2 for widening, writing and reading
// bf16). Not measured on a GPU (none has been lent); a guess from that byte count.
constexpr int64_t kInt8GemvMaxRows = 16;

// Device scratch of the GEMM path, the caller's (allocated once). Either may be null / too small:
// the call then runs the few-rows kernel whatever m is (the engine's lm_head, whose [vocab, hidden]
// matrix the workspace is not sized for, and whose calls carry at most max_num_seqs rows).
struct Int8GemmWorkspace {
  void* w16 = nullptr;  // bf16 [n, k] for the widened weights
  size_t w16_bytes = 0;
  void* x16 = nullptr;  // bf16 [m, k] for the activations
  size_t x16_bytes = 0;
};

// Bytes of w16 and x16 the GEMM path needs for these sizes.
size_t int8_gemm_w16_bytes(int64_t n, int64_t k);
size_t int8_gemm_x16_bytes(int64_t m, int64_t k);

// out[i, j] = (sum_c x[i, c] * w[j, c]) * scales[j] (+ bias[j]), fp32 x and out, device pointers.
// m <= gemv_max_rows, or a workspace too small for [n, k] and [m, k]: linear_int8 (x exact, fp32
// sums). Otherwise the bf16 GEMM path on gemm's stream (x rounded to bf16: relative error <= 2^-9 per
// element; weights exact; fp32 accumulation). InvalidArgument for bad sizes or null pointers,
// Internal for a CUDA/cuBLAS error; never syncs.
Status int8_matmul(CublasGemm& gemm, float* out,  // [m, n]
                   const float* x,                // [m, k]
                   const int8_t* w,               // [n, k]
                   const float* scales,           // [n]
                   const float* bias,             // [n] or nullptr
                   int64_t m, int64_t n, int64_t k, const Int8GemmWorkspace& workspace,
                   int64_t gemv_max_rows = kInt8GemvMaxRows);

}  // namespace ferry::kernels::cuda
