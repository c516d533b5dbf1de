// Embedding lookup on the GPU: the CUDA twin of kernels::embedding (kernels/kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::kernels::cuda {

// out[t, :] = float(table[token_ids[t], :]) for t < num_tokens. All pointers are device memory.
// table_dtype: kF32, kF16 or kBF16; activations are always fp32 (as on the CPU path). A token id
// outside [0, vocab_size) is a caller bug: its row becomes NaN (the kernel never reads out of
// bounds); the engine validates ids on the host before uploading them.
// Returns InvalidArgument for bad sizes or null pointers, Internal for a failed launch. Enqueues on
// `stream` and returns without synchronizing.
Status embedding(float* out,               // [num_tokens, hidden]
                 const void* table,        // [vocab_size, hidden], table_dtype
                 DType table_dtype, int64_t vocab_size, int64_t hidden,
                 const int32_t* token_ids,  // [num_tokens]
                 int64_t num_tokens, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
