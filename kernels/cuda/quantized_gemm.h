// The int8- and int4-weight linear layers for any number of rows: the few-rows kernels
// (linear_int8.cuh, linear_int4.cuh) for decode-sized m, and for larger m the weights widened into a
// bf16 workspace, the activations cast to bf16 and cuBLASLt's bf16 GEMM with fp32 accumulation.
// int8: widened exactly (int8 values are bf16 values), the per-row scales (and bias) applied to the
// GEMM's fp32 output. int4: dequantized with its group scales into bf16 (int4_to_bf16.cuh), bias
// added by the GEMM. Host code, like gemm.h: it only enqueues launches and the GEMM on the
// CublasGemm's stream. The reference is kernels::linear with a kInt8 / kInt4 WeightMatrix
// (cpu::linear_reference).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/gemm.h"

namespace ferry::kernels::cuda {

// Up to this many rows run on the few-rows kernels (each 8-row tile reads the int8 weights once: at
// 16 rows that is 2 bytes per weight, below the GEMM path's 1 + 2 + 2 for widening, writing and
// reading bf16; int4's 1 byte is further below). Not measured on a GPU (none has been lent); a guess
// from that byte count.
constexpr int64_t kQuantizedGemvMaxRows = 16;

// Device scratch of the GEMM path, the caller's (allocated once). Either may be null / too small:
// the call then runs the few-rows kernel whatever m is (the engine's lm_head, whose [vocab, hidden]
// matrix the workspace is not sized for, and whose calls carry at most max_num_seqs rows).
struct QuantizedGemmWorkspace {
  void* w16 = nullptr;  // bf16 [n, k] for the widened weights
  size_t w16_bytes = 0;
  void* x16 = nullptr;  // bf16 [m, k] for the activations
  size_t x16_bytes = 0;
};

// Bytes of w16 and x16 the GEMM path needs for these sizes.
size_t quantized_gemm_w16_bytes(int64_t n, int64_t k);
size_t quantized_gemm_x16_bytes(int64_t m, int64_t k);

// out[i, j] = (sum_c x[i, c] * w[j, c]) * scales[j] (+ bias[j]), fp32 x and out, device pointers.
// m <= gemv_max_rows, or a workspace too small for [n, k] and [m, k]: linear_int8 (x exact, fp32
// sums). Otherwise the bf16 GEMM path on gemm's stream (x rounded to bf16: relative error <= 2^-8 per
// element; weights exact; fp32 accumulation). InvalidArgument for bad sizes or null pointers,
// Internal for a CUDA/cuBLAS error; never syncs.
Status int8_matmul(CublasGemm& gemm, float* out,  // [m, n]
                   const float* x,                // [m, k]
                   const int8_t* w,               // [n, k]
                   const float* scales,           // [n]
                   const float* bias,             // [n] or nullptr
                   int64_t m, int64_t n, int64_t k, const QuantizedGemmWorkspace& workspace,
                   int64_t gemv_max_rows = kQuantizedGemvMaxRows);

// out[i, j] = sum_c x[i, c] * (q[j, c] - zero[j, g]) * scale[j, g] (+ bias[j]), g = c / group_size
// (kernels.h's kInt4), fp32 x and out, device pointers. m <= gemv_max_rows, or a workspace too small:
// linear_int4 (x exact, fp32 sums). Otherwise the bf16 GEMM path (x and the dequantized weights each
// rounded to bf16: relative error <= 2^-8 per factor; fp32 accumulation). InvalidArgument for bad
// sizes or null pointers, Internal for a CUDA/cuBLAS error; never syncs.
Status int4_matmul(CublasGemm& gemm, float* out,  // [m, n]
                   const float* x,                // [m, k]
                   const uint8_t* packed,         // [n, k / 2]
                   const float* scales,           // [n, k / group_size]
                   const float* zeros,            // [n, k / group_size] or nullptr
                   int64_t group_size,
                   const float* bias,             // [n] or nullptr
                   int64_t m, int64_t n, int64_t k, const QuantizedGemmWorkspace& workspace,
                   int64_t gemv_max_rows = kQuantizedGemvMaxRows);

}  // namespace ferry::kernels::cuda
