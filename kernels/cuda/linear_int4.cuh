// The int4-weight linear layer for few rows (decode): the CUDA twin of kernels::linear with a kInt4
// WeightMatrix (kernels/kernels.h: 4-bit codes packed as pack_int4 does, fp32 scales and optional
// zero points per group of 32, 64 or 128 input features), fp32 activations in and out. For many
// rows, int4_matmul (quantized_gemm.h) dequantizes the weights into a bf16 workspace and runs
// cuBLASLt instead.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[i, j] = sum_c x[i, c] * (q[j, c] - zero[j, g(c)]) * scale[j, g(c)] (+ bias[j]) for i < m,
// j < n, g(c) = c / group_size; zeros == nullptr: zero point 8 (symmetric). Products and sums in
// fp32, the group's scale applied once per group and lane. Row i of the result goes to
// out + i * out_stride (out_stride >= n; columns past n untouched). Any m (rows run in tiles of 8
// per block; every tile re-reads the weights). k a multiple of group_size, group_size 32, 64 or 128;
// `packed` 4-byte aligned. Device pointers; out must not overlap x. InvalidArgument for bad sizes or
// pointers, Internal for a CUDA error; never syncs.
Status linear_int4(float* out,             // [m, out_stride]
                   int64_t out_stride,
                   const float* x,         // [m, k]
                   const uint8_t* packed,  // [n, k / 2] (pack_int4's layout)
                   const float* scales,    // [n, k / group_size]
                   const float* zeros,     // [n, k / group_size] or nullptr
                   int64_t group_size,
                   const float* bias,      // [n] or nullptr
                   int64_t m, int64_t n, int64_t k, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
