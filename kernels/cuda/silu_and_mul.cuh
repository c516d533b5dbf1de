// SwiGLU activation on the GPU: the CUDA twin of kernels::silu_and_mul (kernels/kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[r, j] = silu(gate_up[r, j]) * gate_up[r, inter + j], silu(x) = x / (1 + exp(-x)), fp32.
// Device pointers; `out` must not overlap `gate_up`. Returns InvalidArgument / Internal; never syncs.
Status silu_and_mul(float* out,            // [num_rows, inter]
                    const float* gate_up,  // [num_rows, 2 * inter]: gate half, then up half
                    int64_t num_rows, int64_t inter, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
