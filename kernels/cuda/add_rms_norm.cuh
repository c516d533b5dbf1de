// Residual add fused with RMSNorm on the GPU: the CUDA twin of kernels::add_rms_norm and, with no
// delta, of kernels::rms_norm (kernels/kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// With delta != nullptr: residual[r, :] += delta[r, :]; out[r, :] = rms_norm(residual[r, :]) * weight.
// With delta == nullptr: out[r, :] = rms_norm(residual[r, :]) * weight and residual is only read
// (the first layer's input norm and the final norm). rms_norm(x) = x / sqrt(mean(x^2) + eps), the
// mean accumulated in fp32. `out` may alias `delta`, and `residual` only when delta is null (then
// residual is only read). Device pointers.
// Returns InvalidArgument for bad sizes or null pointers, Internal for a failed launch; never syncs.
Status add_rms_norm(float* out,           // [num_rows, dim]
                    float* residual,      // [num_rows, dim], updated in place when delta != nullptr
                    const float* delta,   // [num_rows, dim] or nullptr
                    const float* weight,  // [dim]
                    int64_t num_rows, int64_t dim, float eps, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
