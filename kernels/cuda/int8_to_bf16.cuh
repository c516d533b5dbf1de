// Widening of int8 weights to bf16 for the GEMM path of int8_linear (quantized_gemm.h). Exact: every
// int8 value in [-128, 127] is a bf16 (8 significant bits), so no scale is applied here; the row
// scales come after the GEMM (scale_columns.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[i] = bf16(in[i]) for i < count (bf16 bits). Device pointers. InvalidArgument / Internal; never syncs.
Status int8_to_bf16(uint16_t* out,      // [count] bf16 bits
                    const int8_t* in,   // [count]
                    int64_t count, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
