// Greedy choice on the GPU: the CUDA twin of kernels::argmax (kernels/kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// out[r] = argmax_j logits[r, j], the lowest index winning ties. NaN logits are never chosen (a row
// of only NaN gives 0); the reference differs only when logits[r, 0] is NaN. Device pointers.
// Returns InvalidArgument / Internal; never syncs.
Status argmax(int32_t* out,         // [num_rows]
              const float* logits,  // [num_rows, vocab]
              int64_t num_rows, int64_t vocab, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
