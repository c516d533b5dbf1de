// Fast CPU implementations of kernels.h (fp32 compute). Matmul is the linear layer of linear.cc
// (float formats, on the pool); paged attention is in attention.cc. The other ops are loops laid
// out so the compiler vectorises the inner dimension,
// split over the thread pool by rows (tokens) once a call holds enough work to repay the hand-off.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/thread_pool.h"

namespace ferry::kernels {

namespace cpu {

namespace {

// Sum of squares with 8 independent accumulators (vectorisable without -ffast-math).
float sum_squares(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[i + l] * x[i + l];
  float s = 0.0f;
  for (; i < n; ++i) s += x[i] * x[i];
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}


// Same arithmetic as the reference's quantize_row_int8 (kernels.h), bit for bit: the max is exact
// in any order, and adding then subtracting 1.5 * 2^23 rounds |r| < 2^22 to an integer half to even,
// as nearbyint does, in a form the compiler vectorises.
void quantize_row_int8(int8_t* q, float* scale, const float* x, int64_t n) {
  float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) m[l] = std::max(m[l], std::fabs(x[i + l]));
  float amax = 0.0f;
  for (; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  for (int l = 0; l < 8; ++l) amax = std::max(amax, m[l]);
  if (amax == 0.0f) {
    std::memset(q, 0, static_cast<size_t>(n));
    *scale = 0.0f;
    return;
  }
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23
  const float inv = 127.0f / amax;
  for (int64_t d = 0; d < n; ++d) {
    float r = (x[d] * inv + kRoundMagic) - kRoundMagic;
    r = std::min(127.0f, std::max(-127.0f, r));
    q[d] = static_cast<int8_t>(static_cast<int32_t>(r));
  }
  *scale = amax / 127.0f;
}

void scale_row(float* out, const float* in, const float* weight, int64_t dim, float eps) {
  const float inv_rms = 1.0f / std::sqrt(sum_squares(in, dim) / static_cast<float>(dim) + eps);
  for (int64_t j = 0; j < dim; ++j) out[j] = in[j] * inv_rms * weight[j];
}

}  // namespace

// out[m, n] = x[m, k] . w[n, k]^T for fp32 w, without BLAS: 4 rows of w per pass share x's loads.
void matmul_f32_blocked(float* out, const float* x, const float* w, int64_t m, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * k;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const float* w0 = w + j * k;
      float a0[8] = {}, a1[8] = {}, a2[8] = {}, a3[8] = {};
      int64_t l = 0;
      for (; l + 8 <= k; l += 8) {
        for (int u = 0; u < 8; ++u) {
          const float xv = xr[l + u];
          a0[u] += xv * w0[l + u];
          a1[u] += xv * w0[k + l + u];
          a2[u] += xv * w0[2 * k + l + u];
          a3[u] += xv * w0[3 * k + l + u];
        }
      }
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (; l < k; ++l) {
        s0 += xr[l] * w0[l];
        s1 += xr[l] * w0[k + l];
        s2 += xr[l] * w0[2 * k + l];
        s3 += xr[l] * w0[3 * k + l];
      }
      for (int u = 0; u < 8; ++u) {
        s0 += a0[u];
        s1 += a1[u];
        s2 += a2[u];
        s3 += a3[u];
      }
      out[i * n + j] = s0;
      out[i * n + j + 1] = s1;
      out[i * n + j + 2] = s2;
      out[i * n + j + 3] = s3;
    }
    for (; j < n; ++j) out[i * n + j] = dot_f32(xr, w + j * k, k);
  }
}


namespace {

// Minimum rows per chunk of a row-wise op whose rows hold `row_elems` elements of streaming work.
// Handing a chunk to a worker costs ~1-5 us (wake-up, cache misses on its inputs); 16K elements of
// norm or copy work take about as long, so smaller calls (a decode step's norms: 1 row of 2048)
// stay on the caller.
constexpr int64_t kMinChunkElems = 16384;
int64_t min_rows(int64_t row_elems) { return std::max<int64_t>(1, kMinChunkElems / std::max<int64_t>(1, row_elems)); }

}  // namespace

void embedding(ThreadPool& pool, float* out, const void* table, DType table_dtype, int64_t vocab_size,
               int64_t hidden, const int32_t* token_ids, int64_t num_tokens) {
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_size(table_dtype);
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      FERRY_CHECK(token_ids[t] >= 0 && token_ids[t] < vocab_size);
      const char* row = static_cast<const char*>(table) + static_cast<size_t>(token_ids[t]) * row_bytes;
      convert_to_f32(out + t * hidden, row, table_dtype, static_cast<size_t>(hidden));
    }
  };
  pool.parallel_for(num_tokens, rows, min_rows(hidden));
}

void rms_norm(ThreadPool& pool, float* out, const float* in, const float* weight, int64_t num_rows, int64_t dim,
              float eps) {
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) scale_row(out + r * dim, in + r * dim, weight, dim, eps);
  };
  pool.parallel_for(num_rows, rows, min_rows(dim));
}

void add_rms_norm(ThreadPool& pool, float* out, float* residual, const float* delta, const float* weight,
                  int64_t num_rows, int64_t dim, float eps) {
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* res = residual + r * dim;
      const float* d = delta + r * dim;
      for (int64_t j = 0; j < dim; ++j) res[j] += d[j];
      scale_row(out + r * dim, res, weight, dim, eps);
    }
  };
  pool.parallel_for(num_rows, rows, min_rows(2 * dim));
}

void head_rms_norm(ThreadPool& pool, float* x, const float* weight, int64_t num_tokens, int64_t token_stride,
                   int64_t num_heads, int64_t head_dim, float eps) {
  // Items are (token, head) pairs, so a prefill of few tokens with many heads still splits.
  auto heads = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = x + (i / num_heads) * token_stride + (i % num_heads) * head_dim;
      scale_row(row, row, weight, head_dim, eps);
    }
  };
  pool.parallel_for(num_tokens * num_heads, heads, min_rows(head_dim));
}

void rope(ThreadPool& pool, float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens,
          int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  auto tokens = [&](int64_t begin, int64_t end) {
    // Reused per thread: rope runs once per layer per step and must not allocate.
    thread_local std::vector<float> cos_v, sin_v;
    cos_v.resize(static_cast<size_t>(half));
    sin_v.resize(static_cast<size_t>(half));
    auto rotate = [&](float* x) {
      for (int64_t j = 0; j < half; ++j) {
        const float a = x[j], b = x[j + half];
        x[j] = a * cos_v[j] - b * sin_v[j];
        x[j + half] = b * cos_v[j] + a * sin_v[j];
      }
    };
    for (int64_t t = begin; t < end; ++t) {
      // One sin/cos table per token, shared by all heads. The angle is formed in double so that
      // large positions keep their precision (as the reference does).
      for (int64_t j = 0; j < half; ++j) {
        const double angle = static_cast<double>(positions[t]) * inv_freq[j];
        cos_v[j] = static_cast<float>(std::cos(angle));
        sin_v[j] = static_cast<float>(std::sin(angle));
      }
      for (int64_t h = 0; h < num_q_heads; ++h) rotate(q + t * q_stride + h * head_dim);
      for (int64_t h = 0; h < num_kv_heads; ++h) rotate(k + t * k_stride + h * head_dim);
    }
  };
  // A sin/cos pair in double costs ~20 element updates; count it so.
  pool.parallel_for(num_tokens, tokens, min_rows((num_q_heads + num_kv_heads) * head_dim + 20 * half));
}

void kv_cache_write(ThreadPool& pool, float* k_cache, float* v_cache, const float* k, const float* v,
                    const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                    int64_t num_kv_heads, int64_t head_dim) {
  const int64_t row = num_kv_heads * head_dim;
  auto tokens = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;
      std::memcpy(k_cache + slot * row, k + t * k_stride, static_cast<size_t>(row) * sizeof(float));
      std::memcpy(v_cache + slot * row, v + t * v_stride, static_cast<size_t>(row) * sizeof(float));
    }
  };
  pool.parallel_for(num_tokens, tokens, min_rows(2 * row));
}

namespace {

// dst[i] = f32_to_bf16(src[i]) for i < n: the same rounding (to nearest even; NaN kept quiet),
// written without calls or branches so it vectorises.
void f32_to_bf16_row(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, src + i, sizeof bits);
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const uint32_t nan = (bits >> 16) | 0x40u;
    dst[i] = static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

}  // namespace

void kv_cache_write_bf16(ThreadPool& pool, uint16_t* k_cache, uint16_t* v_cache, const float* k, const float* v,
                         const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                         int64_t num_kv_heads, int64_t head_dim) {
  const int64_t row = num_kv_heads * head_dim;
  auto tokens = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;
      f32_to_bf16_row(k_cache + slot * row, k + t * k_stride, row);
      f32_to_bf16_row(v_cache + slot * row, v + t * v_stride, row);
    }
  };
  pool.parallel_for(num_tokens, tokens, min_rows(4 * row));
}

void kv_cache_write_int8(ThreadPool& pool, int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales,
                         const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, int64_t head_dim) {
  auto tokens = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;
      const int64_t row0 = slot * num_kv_heads;  // first (slot, head) row of this token
      for (int64_t h = 0; h < num_kv_heads; ++h) {
        quantize_row_int8(k_cache + (row0 + h) * head_dim, k_scales + row0 + h, k + t * k_stride + h * head_dim,
                          head_dim);
        quantize_row_int8(v_cache + (row0 + h) * head_dim, v_scales + row0 + h, v + t * v_stride + h * head_dim,
                          head_dim);
      }
    }
  };
  pool.parallel_for(num_tokens, tokens, min_rows(4 * num_kv_heads * head_dim));
}

namespace {

// e^x as plain float and integer arithmetic that GCC vectorises (libm's expf is a call per element,
// ~7 ns): x = n ln2 + t with |t| <= ln2 / 2, e^t by its Taylor polynomial to degree 7, 2^n in the
// exponent bits; measured within 1.9e-7 relative of exp over the normal range. n is read from the
// bits of x log2(e) + 1.5 * 2^23 (round half to even) and clamped in integers, and results below
// the normal range are masked to 0: float compares and selects kept GCC 12 from vectorising (it
// will not if-convert a possibly trapping compare). Large x gives inf, NaN stays NaN.
inline float exp_vec(float x) {
  const float r = x * 1.44269504088896341f + 12582912.0f;
  const int32_t n_raw = std::bit_cast<int32_t>(r) - 0x4b400000;
  int32_t n = n_raw < -126 ? -126 : n_raw;
  n = n > 127 ? 127 : n;
  const float nf = static_cast<float>(n);
  const float t = (x - nf * 0.693359375f) - nf * -2.12194440e-4f;  // ln 2 in two parts: nf * hi is exact
  float p = 1.0f / 5040;
  p = p * t + 1.0f / 720;
  p = p * t + 1.0f / 120;
  p = p * t + 1.0f / 24;
  p = p * t + 1.0f / 6;
  p = p * t + 0.5f;
  p = p * t + 1.0f;
  p = p * t + 1.0f;
  const float v = p * std::bit_cast<float>((n + 127) << 23);
  const int32_t keep = -static_cast<int32_t>(n_raw >= -126);  // all ones, or 0 below the normal range
  return std::bit_cast<float>(std::bit_cast<int32_t>(v) & keep);
}

// out[r, j] = act(gate[r, j]) * up[r, j] for a gated MLP, split over the flat [num_rows, inter] index
// space (not rows only: a decode step has one row of ~5632-14336 columns).
template <typename Act>
void gated_act(ThreadPool& pool, float* out, const float* gate_up, int64_t num_rows, int64_t inter, Act act) {
  auto elems = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t r = i / inter, j0 = i % inter;
      const int64_t j1 = std::min(inter, j0 + (end - i));
      const float* g = gate_up + r * 2 * inter;
      const float* u = g + inter;
      float* o = out + r * inter;
      for (int64_t j = j0; j < j1; ++j) o[j] = act(g[j]) * u[j];
      i += j1 - j0;
    }
  };
  // ~1 ns per element with exp_vec: 8192 elements (~5-10 us) repay a hand-off to a worker, so a
  // TinyLlama decode row (5632) stays on the caller and Llama-8B's (14336) splits in two.
  constexpr int64_t kMinElems = 8192;
  pool.parallel_for(num_rows * inter, elems, kMinElems, 8);
}

}  // namespace

void silu_and_mul(ThreadPool& pool, float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  gated_act(pool, out, gate_up, num_rows, inter, [](float g) { return g / (1.0f + exp_vec(-g)); });
}

void gelu_tanh_and_mul(ThreadPool& pool, float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  // 0.5 (1 + tanh(y)) is the logistic function of 2y, so gelu_tanh(g) = g / (1 + e^(-2y)): one exp,
  // no tanh, and no cancellation near y = 0.
  gated_act(pool, out, gate_up, num_rows, inter, [](float g) {
    constexpr float kTwoSqrt2OverPi = 2.0f * 0.7978845608f;
    return g / (1.0f + exp_vec(-kTwoSqrt2OverPi * (g + 0.044715f * g * g * g)));
  });
}

// Direct callers (tests) get the default pool; kernels.h's matmul passes Context::pool to linear.
void matmul(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t m, int64_t n,
            int64_t k) {
  WeightMatrix wm;
  wm.format = w_dtype == DType::kF32 ? WeightFormat::kF32 : w_dtype == DType::kF16 ? WeightFormat::kF16 : WeightFormat::kBF16;
  wm.n = n;
  wm.k = k;
  wm.data = w;
  linear(ThreadPool::default_pool(), out, n, x, wm, bias, m);
}

void gather_rows(ThreadPool& pool, float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t dim) {
  auto copy = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      std::memcpy(out + r * dim, in + static_cast<int64_t>(rows[r]) * dim, static_cast<size_t>(dim) * sizeof(float));
  };
  pool.parallel_for(num_rows, copy, min_rows(dim));
}

namespace {

// Index of the first maximum of row[0..n), n >= 1: the maximum over 8 independent lanes (the
// compiler vectorises the select), then the first index holding it -- 2 cheap passes instead of
// std::max_element's one compare-and-branch chain (~30 us for a 32000-entry vocab). NaNs never win
// (every comparison with them is false), unless row[0] is NaN: then 0, as in the reference.
int64_t argmax_row(const float* row, int64_t n) {
  float m[8];
  for (int l = 0; l < 8; ++l) m[l] = row[0];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) m[l] = row[i + l] > m[l] ? row[i + l] : m[l];
  for (; i < n; ++i) m[0] = row[i] > m[0] ? row[i] : m[0];
  for (int l = 1; l < 8; ++l) m[0] = m[l] > m[0] ? m[l] : m[0];
  for (int64_t j = 0; j < n; ++j)
    if (row[j] == m[0]) return j;
  return 0;
}

}  // namespace

void argmax(ThreadPool& pool, int32_t* out, const float* logits, int64_t num_rows, int64_t vocab) {
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) out[r] = static_cast<int32_t>(argmax_row(logits + r * vocab, vocab));
  };
  pool.parallel_for(num_rows, rows, min_rows(vocab));
}

void log_softmax(ThreadPool& pool, float* x, int64_t num_rows, int64_t vocab) {
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = x + r * vocab;
      const float max_v = *std::max_element(row, row + vocab);
      float sum = 0.0f;
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - max_v);
      const float lse = max_v + std::log(sum);
      for (int64_t j = 0; j < vocab; ++j) row[j] -= lse;
    }
  };
  // exp per element: a row of vocab elements is ~4x the work of a copy.
  pool.parallel_for(num_rows, rows, min_rows(4 * vocab));
}

}  // namespace cpu
}  // namespace ferry::kernels
