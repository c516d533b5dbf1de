// Dequantization of int4 weights to bf16 for the GEMM path of int4_matmul (quantized_gemm.h):
// unlike int8 (exact codes, scales after the GEMM), int4 scales change along k (per group), so they
// are applied here and the product rounded to bf16 (relative error <= 2^-8 per weight).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[j, c] = bf16((q[j, c] - zero[j, g]) * scale[j, g]), g = c / group_size, zero 8 when zeros is
// nullptr; q as packed by pack_int4. k a multiple of group_size (32, 64 or 128). Device pointers.
// InvalidArgument / Internal; never syncs.
Status int4_to_bf16(uint16_t* out,           // [n, k] bf16 bits
                    const uint8_t* packed,   // [n, k / 2]
                    const float* scales,     // [n, k / group_size]
                    const float* zeros,      // [n, k / group_size] or nullptr
                    int64_t group_size, int64_t n, int64_t k, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
