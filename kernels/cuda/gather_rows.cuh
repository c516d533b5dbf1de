// Row gather on the GPU: the CUDA twin of kernels::gather_rows (kernels/kernels.h). The engine uses
// it to pick the rows whose logits are wanted (each sequence's last token) before the lm_head GEMM.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[i, :] = in[rows[i], :] for i < num_rows, fp32. Device pointers; `out` must not overlap `in`.
// A row id outside [0, num_in_rows) (device data the host cannot check without a sync) gives a NaN
// row instead of an out-of-bounds read. Returns InvalidArgument / Internal; never syncs.
Status gather_rows(float* out,           // [num_rows, dim]
                   const float* in,      // [num_in_rows, dim]
                   const int32_t* rows,  // [num_rows]
                   int64_t num_rows, int64_t num_in_rows, int64_t dim, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
