// The two CPU implementations behind kernels/kernels.h: `ref` (plain loops, the oracle) and `cpu`
// (the fast path). Same arguments, layouts and contracts as the declarations in kernels.h, minus
// the Context; the `cpu` operators take the thread pool they split their work over instead (the
// dispatch in kernels.cc resolves Context::pool, nullptr meaning ThreadPool::default_pool()).
// Callers outside kernels/ go through kernels.h. Internal to kernels/.
#pragma once

#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace ferry::kernels {

// The arguments are empty for `ref` and `ThreadPool& pool,` for `cpu` (a leading parameter).
#define FERRY_CPU_KERNEL_DECLS(...)                                                                             \
  void embedding(__VA_ARGS__ float* out, const void* table, DType table_dtype, int64_t vocab_size, int64_t hidden, \
                 const int32_t* token_ids, int64_t num_tokens);                                                 \
  void rms_norm(__VA_ARGS__ float* out, const float* in, const float* weight, int64_t num_rows, int64_t dim,    \
                float eps);                                                                                     \
  void add_rms_norm(__VA_ARGS__ float* out, float* residual, const float* delta, const float* weight,           \
                    int64_t num_rows, int64_t dim, float eps);                                                  \
  void head_rms_norm(__VA_ARGS__ float* x, const float* weight, int64_t num_tokens, int64_t token_stride,       \
                     int64_t num_heads, int64_t head_dim, float eps);                                           \
  void rope(__VA_ARGS__ float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens, \
            int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads,                      \
            int64_t head_dim);                                                                                  \
  void kv_cache_write(__VA_ARGS__ float* k_cache, float* v_cache, const float* k, const float* v,               \
                      const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride,                        \
                      int64_t v_stride, int64_t num_kv_heads, int64_t head_dim);                                \
  void kv_cache_write_bf16(__VA_ARGS__ uint16_t* k_cache, uint16_t* v_cache, const float* k, const float* v,    \
                           const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride,                   \
                           int64_t v_stride, int64_t num_kv_heads, int64_t head_dim);                           \
  void kv_cache_write_int8(__VA_ARGS__ int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales,      \
                           const float* k, const float* v, const int64_t* slot_mapping,                         \
                           int64_t num_tokens, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads,        \
                           int64_t head_dim);                                                                   \
  void paged_attention(__VA_ARGS__ const PagedAttentionArgs& args);                                             \
  void silu_and_mul(__VA_ARGS__ float* out, const float* gate_up, int64_t num_rows, int64_t inter);             \
  void gelu_tanh_and_mul(__VA_ARGS__ float* out, const float* gate_up, int64_t num_rows, int64_t inter);        \
  void gather_rows(__VA_ARGS__ float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t dim); \
  void argmax(__VA_ARGS__ int32_t* out, const float* logits, int64_t num_rows, int64_t vocab);                  \
  void log_softmax(__VA_ARGS__ float* x, int64_t num_rows, int64_t vocab);

// Plain loops: one element at a time, double accumulators, no tricks, no threads.
namespace ref {
FERRY_CPU_KERNEL_DECLS()
void matmul(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t m, int64_t n,
            int64_t k);
}  // namespace ref

// Fast CPU versions.
namespace cpu {
FERRY_CPU_KERNEL_DECLS(ThreadPool& pool, )
void matmul(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t m, int64_t n,
            int64_t k);
// The no-BLAS fp32 matmul (out[m, n] = x[m, k] . w[n, k]^T), exposed so tests cover it in BLAS builds.
void matmul_f32_blocked(float* out, const float* x, const float* w, int64_t m, int64_t n, int64_t k);

// Instruction-set paths of the kCpu attention kernels (kernels/cpu/attention*.cc). The fastest path
// the machine supports (__builtin_cpu_supports) is picked at the first call; tests and benchmarks
// force each path present. set_attention_isa asserts the path is supported, and must not race a
// running paged_attention (a plain global, read once per call).
enum class AttentionIsa : int32_t { kPortable = 0, kAvx2 = 1 };
const char* attention_isa_name(AttentionIsa isa);  // "portable", "avx2"
bool attention_isa_supported(AttentionIsa isa);
AttentionIsa attention_isa();
void set_attention_isa(AttentionIsa isa);
// Whether one-token items with head_dim 8 or 16 and an fp32 cache take the fused decode kernel
// (AttentionKernels::decode_small, where the ISA path has one; default on). Off runs the generic
// three passes, so tests and benchmarks can hold one against the other. Same rules as
// set_attention_isa.
bool attention_fused_decode();
void set_attention_fused_decode(bool on);
}  // namespace cpu

#undef FERRY_CPU_KERNEL_DECLS

}  // namespace ferry::kernels
