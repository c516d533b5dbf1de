// Rotary position embedding in place on the GPU: the CUDA twin of kernels::rope (kernels/kernels.h),
// HF rotate_half layout. Every scaling variant (default, linear, llama3) lives in inv_freq, which
// the host fills once with kernels::rope_inv_freq and uploads at load time.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// Rotates every q head and k head of token t by positions[t] * inv_freq[j] (j < head_dim/2):
//   x'[j] = x[j] cos - x[j + d/2] sin,  x'[j + d/2] = x[j + d/2] cos + x[j] sin.
// The angle and its sine/cosine are computed in double (like the reference: an fp32 angle at
// position 1e5 would be off by ~1e-2 rad), once per (token, j) and shared by all heads.
// head_dim even, <= 1024. Device pointers. Returns InvalidArgument / Internal; never syncs.
Status rope(float* q,                  // [num_tokens, q_stride], heads at [.., num_q_heads*head_dim]
            float* k,                  // [num_tokens, k_stride], heads at [.., num_kv_heads*head_dim]
            const int32_t* positions,  // [num_tokens], >= 0
            const float* inv_freq,     // [head_dim/2]
            int64_t num_tokens, int64_t q_stride, int64_t k_stride, int64_t num_q_heads,
            int64_t num_kv_heads, int64_t head_dim, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
