// Per-output-feature scale and bias after a GEMM on unscaled int8 weights (quantized_gemm.h): the
// epilogue cuBLASLt's bf16 GEMM does not offer for a per-column fp32 scale.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[i, j] = out[i, j] * scales[j] (+ bias[j]), in place, fp32. Device pointers.
// InvalidArgument / Internal; never syncs.
Status scale_columns(float* out,           // [m, n]
                     const float* scales,  // [n]
                     const float* bias,    // [n] or nullptr
                     int64_t m, int64_t n, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
