// Per-head RMSNorm in place on the GPU (Qwen3's q_norm / k_norm): the CUDA twin of
// kernels::head_rms_norm (kernels/kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// For every token t and head h: x[t*token_stride + h*head_dim + (0..head_dim)] =
// rms_norm(that head vector) * weight, fp32 accumulation. Device pointers; head_dim <= 1024.
// Returns InvalidArgument for bad sizes or null pointers, Internal for a failed launch; never syncs.
Status head_rms_norm(float* x,             // [num_tokens, token_stride], heads at [.., num_heads*head_dim]
                     const float* weight,  // [head_dim]
                     int64_t num_tokens, int64_t token_stride, int64_t num_heads, int64_t head_dim,
                     float eps, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
