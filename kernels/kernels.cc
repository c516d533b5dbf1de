// Dispatch from the device-neutral declarations in kernels.h to an implementation, plus the dtype
// and RoPE host helpers.
#include "kernels/kernels.h"

#include <cmath>
#include <cstring>

#include "common/status.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/thread_pool.h"
#if defined(FERRY_KERNELS_CUDA_DISPATCH)
#include "kernels/cuda/dispatch.h"
#endif

namespace ferry::kernels {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
  }
  FERRY_CHECK(false && "unknown DType");
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

float bf16_to_f32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float f16_to_f32(uint16_t v) {
  const uint32_t sign = (v & 0x8000u) << 16;
  const uint32_t exp = (v >> 10) & 0x1fu;
  uint32_t mant = v & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t f32_to_bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint16_t f32_to_f16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
  if (abs < 0x38800000u) {                        // below the smallest normal half: subnormal or 0
    if (abs < 0x33000000u) return sign;           // < 2^-25 rounds to zero
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14 + (112 - exp) + 1 ... places the value at 2^-24 units
    const uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    uint32_t r = half + ((rem > halfway || (rem == halfway && (half & 1u))) ? 1u : 0u);
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

void convert_to_f32(float* dst, const void* src, DType dtype, size_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    // `src` may be only byte-aligned (safetensors data offsets need not be even), so each element
    // is read with memcpy, which compiles to a plain load.
    case DType::kBF16: {
      const auto* s = static_cast<const unsigned char*>(src);
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, s + i * sizeof(v), sizeof(v));
        dst[i] = bf16_to_f32(v);
      }
      return;
    }
    case DType::kF16: {
      const auto* s = static_cast<const unsigned char*>(src);
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, s + i * sizeof(v), sizeof(v));
        dst[i] = f16_to_f32(v);
      }
      return;
    }
  }
}

void rope_inv_freq(const RopeParams& p, int64_t head_dim, float* inv_freq) {
  const int64_t half = head_dim / 2;
  const double kPi = 3.14159265358979323846;
  for (int64_t j = 0; j < half; ++j) {
    double f = 1.0 / std::pow(static_cast<double>(p.theta), static_cast<double>(2 * j) / head_dim);
    if (p.scaling == RopeScaling::kLinear) {
      f /= p.factor;
    } else if (p.scaling == RopeScaling::kLlama3) {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, a smooth blend between.
      const double old_ctx = static_cast<double>(p.original_max_position_embeddings);
      const double low_freq_wavelen = old_ctx / p.low_freq_factor;
      const double high_freq_wavelen = old_ctx / p.high_freq_factor;
      const double wavelen = 2.0 * kPi / f;
      if (wavelen > low_freq_wavelen) {
        f /= p.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth =
            (old_ctx / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor);
        f = (1.0 - smooth) * f / p.factor + smooth * f;
      }
    }
    inv_freq[j] = static_cast<float>(f);
  }
}

const char* kv_cache_dtype_name(KvCacheDType dtype) {
  switch (dtype) {
    case KvCacheDType::kF32: return "fp32";
    case KvCacheDType::kInt8: return "int8";
    case KvCacheDType::kBF16: return "bf16";
  }
  return "?";
}

int64_t kv_cache_bytes_per_head(KvCacheDType dtype, int64_t head_dim) {
  switch (dtype) {
    case KvCacheDType::kF32: return head_dim * static_cast<int64_t>(sizeof(float));
    case KvCacheDType::kInt8: return head_dim + static_cast<int64_t>(sizeof(float));  // values + scale
    case KvCacheDType::kBF16: return head_dim * static_cast<int64_t>(sizeof(uint16_t));
  }
  FERRY_CHECK(false && "unknown KvCacheDType");
  return 0;
}

// kCuda: kernels/cuda/dispatch.h where the build wires it in (FERRY_KERNELS_CUDA_DISPATCH: today the
// CUDA emulation build only), else not built.
#if defined(FERRY_KERNELS_CUDA_DISPATCH)
#define FERRY_CUDA_CASE(call) \
  case Backend::kCuda: cuda_ops::call; return;
#define FERRY_CUDA_CASE_POOLED(ctx, op, ...) \
  case Backend::kCuda: cuda_ops::op((ctx).stream, __VA_ARGS__); return;
#else
#define FERRY_CUDA_CASE(call) \
  case Backend::kCuda: break;
#define FERRY_CUDA_CASE_POOLED(ctx, op, ...) \
  case Backend::kCuda: break;
#endif

// Every operator dispatches the same way: reference loops, fast CPU, or CUDA (when built).
#define FERRY_DISPATCH(ctx, call)                                   \
  do {                                                              \
    switch ((ctx).backend) {                                        \
      case Backend::kReference: ref::call; return;                  \
      case Backend::kCpu: cpu::call; return;                        \
      FERRY_CUDA_CASE(call)                                         \
    }                                                               \
    FERRY_CHECK(false && "kernels: backend not built into ferry");  \
  } while (0)

// The same for the operators whose kCpu version splits its work over a thread pool (passed first).
#define FERRY_DISPATCH_POOLED(ctx, op, ...)                                                      \
  do {                                                                                           \
    switch ((ctx).backend) {                                                                     \
      case Backend::kReference: ref::op(__VA_ARGS__); return;                                    \
      case Backend::kCpu:                                                                        \
        cpu::op((ctx).pool != nullptr ? *(ctx).pool : ThreadPool::default_pool(), __VA_ARGS__); \
        return;                                                                                  \
      FERRY_CUDA_CASE_POOLED(ctx, op, __VA_ARGS__)                                               \
    }                                                                                            \
    FERRY_CHECK(false && "kernels: backend not built into ferry");                               \
  } while (0)

void embedding(const Context& ctx, float* out, const void* table, DType table_dtype, int64_t vocab_size,
               int64_t hidden, const int32_t* token_ids, int64_t num_tokens) {
  FERRY_DISPATCH_POOLED(ctx, embedding, out, table, table_dtype, vocab_size, hidden, token_ids, num_tokens);
}

void rms_norm(const Context& ctx, float* out, const float* in, const float* weight, int64_t num_rows,
              int64_t dim, float eps) {
  FERRY_DISPATCH_POOLED(ctx, rms_norm, out, in, weight, num_rows, dim, eps);
}

void add_rms_norm(const Context& ctx, float* out, float* residual, const float* delta,
                  const float* weight, int64_t num_rows, int64_t dim, float eps) {
  FERRY_DISPATCH_POOLED(ctx, add_rms_norm, out, residual, delta, weight, num_rows, dim, eps);
}

void head_rms_norm(const Context& ctx, float* x, const float* weight, int64_t num_tokens,
                   int64_t token_stride, int64_t num_heads, int64_t head_dim, float eps) {
  FERRY_DISPATCH_POOLED(ctx, head_rms_norm, x, weight, num_tokens, token_stride, num_heads, head_dim, eps);
}

void rope(const Context& ctx, float* q, float* k, const int32_t* positions, const float* inv_freq,
          int64_t num_tokens, int64_t q_stride, int64_t k_stride, int64_t num_q_heads,
          int64_t num_kv_heads, int64_t head_dim) {
  FERRY_DISPATCH_POOLED(ctx, rope, q, k, positions, inv_freq, num_tokens, q_stride, k_stride, num_q_heads,
                        num_kv_heads, head_dim);
}

void kv_cache_write(const Context& ctx, float* k_cache, float* v_cache, const float* k, const float* v,
                    const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                    int64_t num_kv_heads, int64_t head_dim) {
  FERRY_DISPATCH_POOLED(ctx, kv_cache_write, k_cache, v_cache, k, v, slot_mapping, num_tokens, k_stride,
                        v_stride, num_kv_heads, head_dim);
}

void kv_cache_write_bf16(const Context& ctx, uint16_t* k_cache, uint16_t* v_cache, const float* k, const float* v,
                         const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                         int64_t num_kv_heads, int64_t head_dim) {
  FERRY_DISPATCH_POOLED(ctx, kv_cache_write_bf16, k_cache, v_cache, k, v, slot_mapping, num_tokens, k_stride,
                        v_stride, num_kv_heads, head_dim);
}

void kv_cache_write_int8(const Context& ctx, int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales,
                         const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, int64_t head_dim) {
  FERRY_DISPATCH_POOLED(ctx, kv_cache_write_int8, k_cache, v_cache, k_scales, v_scales, k, v, slot_mapping, num_tokens,
                        k_stride, v_stride, num_kv_heads, head_dim);
}

void paged_attention(const Context& ctx, const PagedAttentionArgs& args) {
  FERRY_CHECK(args.num_kv_heads > 0 && args.num_q_heads % args.num_kv_heads == 0);
  FERRY_CHECK(args.block_size > 0 && args.head_dim > 0);
  FERRY_CHECK(args.kv_dtype != KvCacheDType::kInt8 || (args.k_scales != nullptr && args.v_scales != nullptr));
  FERRY_CHECK(args.sliding_window >= 0 && args.logit_softcap >= 0.0f);
  FERRY_DISPATCH_POOLED(ctx, paged_attention, args);
}

void silu_and_mul(const Context& ctx, float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  FERRY_DISPATCH_POOLED(ctx, silu_and_mul, out, gate_up, num_rows, inter);
}

void gelu_tanh_and_mul(const Context& ctx, float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  FERRY_CHECK(ctx.backend != Backend::kCuda && "gelu_tanh_and_mul: no CUDA kernel yet");
  FERRY_DISPATCH_POOLED(ctx, gelu_tanh_and_mul, out, gate_up, num_rows, inter);
}

namespace {
ThreadPool& pool_of(const Context& ctx) { return ctx.pool != nullptr ? *ctx.pool : ThreadPool::default_pool(); }
}  // namespace

void matmul(const Context& ctx, float* out, const float* x, const void* w, DType w_dtype,
            const float* bias, int64_t m, int64_t n, int64_t k) {
  if (ctx.backend == Backend::kCpu) {
    // The float formats of linear() are exactly matmul's dtypes (fp32 accumulation, any k).
    const WeightFormat format = w_dtype == DType::kF32   ? WeightFormat::kF32
                                : w_dtype == DType::kF16 ? WeightFormat::kF16
                                                         : WeightFormat::kBF16;
    WeightMatrix wm;
    wm.format = format;
    wm.n = n;
    wm.k = k;
    wm.data = w;
    cpu::linear(pool_of(ctx), out, n, x, wm, bias, m);
    return;
  }
  FERRY_DISPATCH(ctx, matmul(out, x, w, w_dtype, bias, m, n, k));
}

const char* weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32: return "fp32";
    case WeightFormat::kF16: return "fp16";
    case WeightFormat::kBF16: return "bf16";
    case WeightFormat::kInt8: return "int8";
    case WeightFormat::kInt4: return "int4";
  }
  return "?";
}

int64_t weight_data_bytes(WeightFormat format, int64_t n, int64_t k) {
  switch (format) {
    case WeightFormat::kF32: return n * k * 4;
    case WeightFormat::kF16:
    case WeightFormat::kBF16: return n * k * 2;
    case WeightFormat::kInt8: return n * k;
    case WeightFormat::kInt4: return n * k / 2;  // k is a multiple of the group size (>= 32)
  }
  FERRY_CHECK(false && "unknown WeightFormat");
  return 0;
}

void linear(const Context& ctx, float* out, int64_t out_stride, const float* x, const WeightMatrix& w,
            const float* bias, int64_t m) {
  switch (ctx.backend) {
    case Backend::kReference: cpu::linear_reference(out, out_stride, x, w, bias, m); return;
    case Backend::kCpu: cpu::linear(pool_of(ctx), out, out_stride, x, w, bias, m); return;
#if defined(FERRY_KERNELS_CUDA_DISPATCH)
    case Backend::kCuda: cuda_ops::linear(ctx.stream, out, out_stride, x, w, bias, m); return;
#else
    case Backend::kCuda: break;
#endif
  }
  FERRY_CHECK(false && "kernels: backend not built into ferry");
}


void cpu_set_num_threads(int num_threads) { ThreadPool::default_pool().resize(num_threads); }

const char* cpu_isa_name() { return cpu::linear_isa_name(cpu::linear_isa()); }

void gather_rows(const Context& ctx, float* out, const float* in, const int32_t* rows, int64_t num_rows,
                 int64_t dim) {
  FERRY_DISPATCH_POOLED(ctx, gather_rows, out, in, rows, num_rows, dim);
}

void argmax(const Context& ctx, int32_t* out, const float* logits, int64_t num_rows, int64_t vocab) {
  FERRY_DISPATCH_POOLED(ctx, argmax, out, logits, num_rows, vocab);
}

void log_softmax(const Context& ctx, float* x, int64_t num_rows, int64_t vocab) {
  FERRY_DISPATCH_POOLED(ctx, log_softmax, x, num_rows, vocab);
}

#undef FERRY_DISPATCH
#undef FERRY_DISPATCH_POOLED
#undef FERRY_CUDA_CASE
#undef FERRY_CUDA_CASE_POOLED

}  // namespace ferry::kernels
