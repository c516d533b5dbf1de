// The two CPU implementations behind kernels/kernels.h: `ref` (plain loops, the oracle) and `cpu`
// (the fast path). Same arguments, layouts and contracts as the declarations in kernels.h, minus
// the Context; callers outside kernels/ go through kernels.h. Internal to kernels/.
#pragma once

#include "kernels/kernels.h"

namespace ferry::kernels {

#define FERRY_CPU_KERNEL_DECLS                                                                         \
  void embedding(float* out, const void* table, DType table_dtype, int64_t vocab_size, int64_t hidden, \
                 const int32_t* token_ids, int64_t num_tokens);                                        \
  void rms_norm(float* out, const float* in, const float* weight, int64_t num_rows, int64_t dim,       \
                float eps);                                                                            \
  void add_rms_norm(float* out, float* residual, const float* delta, const float* weight,              \
                    int64_t num_rows, int64_t dim, float eps);                                         \
  void head_rms_norm(float* x, const float* weight, int64_t num_tokens, int64_t token_stride,          \
                     int64_t num_heads, int64_t head_dim, float eps);                                  \
  void rope(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens,   \
            int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads,             \
            int64_t head_dim);                                                                         \
  void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v,                  \
                      const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride,               \
                      int64_t v_stride, int64_t num_kv_heads, int64_t head_dim);                       \
  void kv_cache_write_int8(int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales,         \
                           const float* k, const float* v, const int64_t* slot_mapping,                \
                           int64_t num_tokens, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, \
                           int64_t head_dim);                                                          \
  void paged_attention(const PagedAttentionArgs& args);                                                \
  void silu_and_mul(float* out, const float* gate_up, int64_t num_rows, int64_t inter);                \
  void matmul(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t m,  \
              int64_t n, int64_t k);                                                                   \
  void gather_rows(float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t dim);   \
  void argmax(int32_t* out, const float* logits, int64_t num_rows, int64_t vocab);                     \
  void log_softmax(float* x, int64_t num_rows, int64_t vocab);

// Plain loops: one element at a time, double accumulators, no tricks.
namespace ref {
FERRY_CPU_KERNEL_DECLS
}  // namespace ref

// Fast CPU versions.
namespace cpu {
FERRY_CPU_KERNEL_DECLS
// The no-BLAS fp32 matmul (out[m, n] = x[m, k] . w[n, k]^T), exposed so tests cover it in BLAS builds.
void matmul_f32_blocked(float* out, const float* x, const float* w, int64_t m, int64_t n, int64_t k);
}  // namespace cpu

#undef FERRY_CPU_KERNEL_DECLS

}  // namespace ferry::kernels
