// kernels.h's Backend::kCuda on the launchers of kernels/cuda (see dispatch.h).
#include "kernels/cuda/dispatch.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <limits>

#include "common/status.h"
#include "kernels/cuda/add_rms_norm.cuh"
#include "kernels/cuda/argmax.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gather_rows.cuh"
#include "kernels/cuda/head_rms_norm.cuh"
#include "kernels/cuda/kv_cache_write.cuh"
#include "kernels/cuda/linear_int4.cuh"
#include "kernels/cuda/linear_int8.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/silu_and_mul.cuh"

namespace ferry::kernels::cuda_ops {
namespace {

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

void check(const Status& status, const char* op) {
  if (status.ok()) return;
  std::fprintf(stderr, "kernels: kCuda %s: %s\n", op, status.to_string().c_str());
  FERRY_CHECK(false && "kernels: a kCuda launcher failed");
}

[[noreturn]] void unsupported(const char* op) {
  std::fprintf(stderr, "kernels: %s has no CUDA kernel yet\n", op);
  FERRY_CHECK(false && "kernels: no CUDA kernel for this operator");
  __builtin_unreachable();
}

// kernels.h's cache writes take no slot count (slots are the caller's to keep in range), the
// launchers do (they skip slots past it): no bound here.
constexpr int64_t kAnySlot = std::numeric_limits<int64_t>::max();

}  // namespace

void embedding(void* stream, float* out, const void* table, DType table_dtype, int64_t vocab_size, int64_t hidden,
               const int32_t* token_ids, int64_t num_tokens) {
  check(cuda::embedding(out, table, table_dtype, vocab_size, hidden, token_ids, num_tokens, as_stream(stream)),
        "embedding");
}

// RMSNorm is add_rms_norm without a delta: the residual is then only read, and out may alias it.
void rms_norm(void* stream, float* out, const float* in, const float* weight, int64_t num_rows, int64_t dim,
              float eps) {
  check(cuda::add_rms_norm(out, const_cast<float*>(in), nullptr, weight, num_rows, dim, eps, as_stream(stream)),
        "rms_norm");
}

void add_rms_norm(void* stream, float* out, float* residual, const float* delta, const float* weight,
                  int64_t num_rows, int64_t dim, float eps) {
  check(cuda::add_rms_norm(out, residual, delta, weight, num_rows, dim, eps, as_stream(stream)), "add_rms_norm");
}

void head_rms_norm(void* stream, float* x, const float* weight, int64_t num_tokens, int64_t token_stride,
                   int64_t num_heads, int64_t head_dim, float eps) {
  check(cuda::head_rms_norm(x, weight, num_tokens, token_stride, num_heads, head_dim, eps, as_stream(stream)),
        "head_rms_norm");
}

void rope(void* stream, float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens,
          int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim) {
  check(cuda::rope(q, k, positions, inv_freq, num_tokens, q_stride, k_stride, num_q_heads, num_kv_heads, head_dim,
                   as_stream(stream)),
        "rope");
}

void kv_cache_write(void* stream, float* k_cache, float* v_cache, const float* k, const float* v,
                    const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                    int64_t num_kv_heads, int64_t head_dim) {
  check(cuda::kv_cache_write(k_cache, v_cache, k, v, slot_mapping, num_tokens, kAnySlot, k_stride, v_stride,
                             num_kv_heads, head_dim, as_stream(stream)),
        "kv_cache_write");
}

void kv_cache_write_bf16(void* stream, uint16_t* k_cache, uint16_t* v_cache, const float* k, const float* v,
                         const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                         int64_t num_kv_heads, int64_t head_dim) {
  check(cuda::kv_cache_write_bf16(k_cache, v_cache, k, v, slot_mapping, num_tokens, kAnySlot, k_stride, v_stride,
                                  num_kv_heads, head_dim, as_stream(stream)),
        "kv_cache_write_bf16");
}

void kv_cache_write_int8(void* stream, int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales,
                         const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, int64_t head_dim) {
  check(cuda::kv_cache_write_int8(k_cache, v_cache, k_scales, v_scales, k, v, slot_mapping, num_tokens, kAnySlot,
                                  k_stride, v_stride, num_kv_heads, head_dim, as_stream(stream)),
        "kv_cache_write_int8");
}

// One call serves prefill and decode here, like kernels.h's: the prefill kernel handles any query
// length. The host cannot know the longest query without reading device memory, so the grid is
// sized for num_tokens (tiles past a sequence's end return at once). The split-K decode kernel
// needs max_context_len and a workspace that kernels.h's call does not carry; the engine will call
// it directly.
void paged_attention(void* stream, const PagedAttentionArgs& args) {
  check(cuda::paged_attention_prefill(args, args.num_tokens, as_stream(stream)), "paged_attention");
}

void silu_and_mul(void* stream, float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  check(cuda::silu_and_mul(out, gate_up, num_rows, inter, as_stream(stream)), "silu_and_mul");
}

void gelu_tanh_and_mul(void*, float*, const float*, int64_t, int64_t) { unsupported("gelu_tanh_and_mul"); }

// kernels.h's gather_rows takes no input row count (rows are the caller's to keep in range): no bound.
void gather_rows(void* stream, float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t dim) {
  check(cuda::gather_rows(out, in, rows, num_rows, std::numeric_limits<int64_t>::max() / dim, dim, as_stream(stream)),
        "gather_rows");
}

void argmax(void* stream, int32_t* out, const float* logits, int64_t num_rows, int64_t vocab) {
  check(cuda::argmax(out, logits, num_rows, vocab, as_stream(stream)), "argmax");
}

void log_softmax(void*, float*, int64_t, int64_t) { unsupported("log_softmax"); }

void linear(void* stream, float* out, int64_t out_stride, const float* x, const WeightMatrix& w, const float* bias,
            int64_t m) {
  if (w.format == WeightFormat::kInt4) {
    check(cuda::linear_int4(out, out_stride, x, static_cast<const uint8_t*>(w.data), w.scales, w.zeros, w.group_size,
                            bias, m, w.n, w.k, as_stream(stream)),
          "linear");
    return;
  }
  if (w.format != WeightFormat::kInt8)
    unsupported("linear (int8 and int4 weights only; 16-bit ones through cuda::CublasGemm)");
  check(cuda::linear_int8(out, out_stride, x, static_cast<const int8_t*>(w.data), w.scales, bias, m, w.n, w.k,
                          as_stream(stream)),
        "linear");
}

// fp32 activations times a 16-bit weight: CublasGemm takes both operands in the same 16-bit type,
// so this needs a cast of x first (the engine's job, with a buffer it owns).
void matmul(float*, const float*, const void*, DType, const float*, int64_t, int64_t, int64_t) {
  unsupported("matmul (fp32 x; use cuda::CublasGemm with 16-bit activations)");
}

}  // namespace ferry::kernels::cuda_ops
