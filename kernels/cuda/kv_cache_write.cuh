// KV cache write into paged blocks on the GPU: the CUDA twins of kernels::kv_cache_write and
// kernels::kv_cache_write_int8 (kernels/kernels.h defines the cache layouts and the int8 rounding).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// fp32 cache: for token t with 0 <= slot_mapping[t] < num_slots (num_slots = num_blocks *
// block_size), copies k[t] and v[t] (num_kv_heads * head_dim floats each) into that slot. Slot -1
// is padding and skipped; any other out-of-range slot is a caller bug and is skipped too (the kernel
// never writes out of bounds). Slots must be distinct. Device pointers.
// Returns InvalidArgument / Internal; never syncs.
Status kv_cache_write(float* k_cache,               // [num_blocks, block_size, num_kv_heads, head_dim]
                      float* v_cache,               // same
                      const float* k,               // [num_tokens, k_stride], [.., num_kv_heads*head_dim]
                      const float* v,               // [num_tokens, v_stride], same
                      const int64_t* slot_mapping,  // [num_tokens]
                      int64_t num_tokens, int64_t num_slots, int64_t k_stride, int64_t v_stride,
                      int64_t num_kv_heads, int64_t head_dim, cudaStream_t stream);

// int8 cache: as above, but each (token, kv head) row is quantized exactly as the reference does
// (amax over the row, q = rint(x * (127 / amax)) in fp32 with IEEE division, scale = amax / 127), so
// the bytes and scales are bit-identical to kernels::kv_cache_write_int8. head_dim <= 1024.
// As kv_cache_write into a bf16 cache (bf16 bits), each value rounded to nearest even (the reference's
// f32_to_bf16).
Status kv_cache_write_bf16(uint16_t* k_cache,             // [num_blocks, block_size, num_kv_heads, head_dim]
                           uint16_t* v_cache,             // same
                           const float* k,                // [num_tokens, k_stride]
                           const float* v,                // [num_tokens, v_stride]
                           const int64_t* slot_mapping,   // [num_tokens]
                           int64_t num_tokens, int64_t num_slots, int64_t k_stride, int64_t v_stride,
                           int64_t num_kv_heads, int64_t head_dim, cudaStream_t stream);

Status kv_cache_write_int8(int8_t* k_cache,              // [num_blocks, block_size, num_kv_heads, head_dim]
                           int8_t* v_cache,              // same
                           float* k_scales,              // [num_blocks, block_size, num_kv_heads]
                           float* v_scales,              // same
                           const float* k,               // [num_tokens, k_stride]
                           const float* v,               // [num_tokens, v_stride]
                           const int64_t* slot_mapping,  // [num_tokens]
                           int64_t num_tokens, int64_t num_slots, int64_t k_stride, int64_t v_stride,
                           int64_t num_kv_heads, int64_t head_dim, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
