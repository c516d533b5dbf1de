// The int8-weight linear layer for few rows (decode): the CUDA twin of kernels::linear with a
// kInt8 WeightMatrix (kernels/kernels.h), fp32 activations in and out. For many rows (prefill),
// int8_linear (quantized_gemm.h) widens the weights into a bf16 workspace and runs cuBLASLt instead.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[i, j] = (sum_c x[i, c] * w[j, c]) * scales[j] (+ bias[j]) for i < m, j < n: int8 weights
// widened in registers, products and sums in fp32, the row's scale applied once at the end.
// Row i of the result goes to out + i * out_stride (out_stride >= n, as kernels::linear; the
// columns past n are left untouched). Any m (rows run in tiles of 8 per block; every tile re-reads
// the weights, so large m belongs to int8_matmul's GEMM path). Device pointers; out must not overlap
// x. Returns InvalidArgument for bad sizes or null pointers, Internal for a CUDA error; never syncs.
Status linear_int8(float* out,            // [m, out_stride]
                   int64_t out_stride,
                   const float* x,        // [m, k]
                   const int8_t* w,       // [n, k], values in [-127, 127]
                   const float* scales,   // [n]
                   const float* bias,     // [n] or nullptr
                   int64_t m, int64_t n, int64_t k, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
