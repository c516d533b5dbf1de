// Backend::kCuda of kernels/kernels.h: the operators with kernels.h's signatures (the Context's
// stream passed first, as a void*), each calling its launcher in kernels/cuda. kernels.cc
// dispatches here when built with FERRY_KERNELS_CUDA_DISPATCH, which today is the CUDA emulation
// build only (FERRY_CUDA_EMULATION, this file compiled against the emulator): there "device"
// pointers are host pointers, so the table test (tests/kernels/ops_test) runs its kCuda rows on
// host buffers. The nvcc library is not wired in yet: the engine that would call it with device
// buffers does not exist (docs/cuda.md).
//
// Contract, as kernels.h's: arguments are the caller's to validate; a launcher that refuses them
// (or a CUDA error) is a broken invariant and aborts through FERRY_CHECK with the launcher's
// message. Work is enqueued on the stream (the emulator runs it before returning). Operators
// without a CUDA kernel (gelu_tanh_and_mul, log_softmax, the bf16 KV cache, the
// sliding window and soft-cap of paged_attention, matmul, linear of any format but int8) abort with
// a message saying so.
// No CUDA types here, so kernels.cc needs no CUDA headers.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace ferry::kernels::cuda_ops {

void embedding(void* stream, float* out, const void* table, DType table_dtype, int64_t vocab_size, int64_t hidden,
               const int32_t* token_ids, int64_t num_tokens);
void rms_norm(void* stream, float* out, const float* in, const float* weight, int64_t num_rows, int64_t dim,
              float eps);
void add_rms_norm(void* stream, float* out, float* residual, const float* delta, const float* weight,
                  int64_t num_rows, int64_t dim, float eps);
void head_rms_norm(void* stream, float* x, const float* weight, int64_t num_tokens, int64_t token_stride,
                   int64_t num_heads, int64_t head_dim, float eps);
void rope(void* stream, float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens,
          int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim);
void kv_cache_write(void* stream, float* k_cache, float* v_cache, const float* k, const float* v,
                    const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                    int64_t num_kv_heads, int64_t head_dim);
void kv_cache_write_bf16(void* stream, uint16_t* k_cache, uint16_t* v_cache, const float* k, const float* v,
                         const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                         int64_t num_kv_heads, int64_t head_dim);
void kv_cache_write_int8(void* stream, int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales,
                         const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, int64_t head_dim);
void paged_attention(void* stream, const PagedAttentionArgs& args);
void silu_and_mul(void* stream, float* out, const float* gate_up, int64_t num_rows, int64_t inter);
void gelu_tanh_and_mul(void* stream, float* out, const float* gate_up, int64_t num_rows, int64_t inter);
void gather_rows(void* stream, float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t dim);
void argmax(void* stream, int32_t* out, const float* logits, int64_t num_rows, int64_t vocab);
void log_softmax(void* stream, float* x, int64_t num_rows, int64_t vocab);
// int8 weights only (cuda::linear_int8: fp32 x, as kernels.h's linear); other formats abort.
void linear(void* stream, float* out, int64_t out_stride, const float* x, const WeightMatrix& w, const float* bias,
            int64_t m);
// No stream: it only reports that it has no CUDA kernel (kernels.cc calls it as the others' call).
void matmul(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t m, int64_t n,
            int64_t k);

}  // namespace ferry::kernels::cuda_ops
