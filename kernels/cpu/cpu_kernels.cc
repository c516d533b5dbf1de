// Fast CPU implementations of kernels.h (fp32 compute). Matmul goes to OpenBLAS sgemm/sgemv when
// the build found it (FERRY_HAVE_OPENBLAS), otherwise to register-blocked loops; the other ops are
// single-threaded loops laid out so the compiler vectorises the inner dimension.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/cpu_kernels.h"

#if defined(FERRY_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace ferry::kernels {

bool cpu_matmul_uses_blas() {
#if defined(FERRY_HAVE_OPENBLAS)
  return true;
#else
  return false;
#endif
}

void cpu_set_num_threads(int num_threads) {
#if defined(FERRY_HAVE_OPENBLAS)
  openblas_set_num_threads(num_threads);
#else
  (void)num_threads;
#endif
}

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

float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = 0.0f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

// dot() against int8 values; the caller applies the row's scale once.
float dot(const float* a, const int8_t* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * static_cast<float>(b[i + l]);
  float s = 0.0f;
  for (; i < n; ++i) s += a[i] * static_cast<float>(b[i]);
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

// out[0..n) += w * v[0..n), for fp32 or int8 v (w then carries the row's scale).
template <typename T>
void axpy(float* out, float w, const T* v, int64_t n) {
  for (int64_t d = 0; d < n; ++d) out[d] += w * static_cast<float>(v[d]);
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
    for (; j < n; ++j) out[i * n + j] = dot(xr, w + j * k, k);
  }
}

namespace {

// Below this many multiply-adds a call is cheaper in our single-threaded loops than in OpenBLAS,
// whose thread hand-off costs tens of microseconds (and far more on a loaded machine): measured on
// stories260K (64x64 .. 512x64 matrices), decode went from 262 to ~2500 tokens/s.
constexpr int64_t kBlasMinMacs = int64_t{1} << 18;

// out[m, n] (row stride ldo) = x[m, k] . w[n, k]^T, fp32.
void matmul_f32(float* out, int64_t ldo, const float* x, const float* w, int64_t m, int64_t n, int64_t k) {
#if defined(FERRY_HAVE_OPENBLAS)
  if (m * n * k < kBlasMinMacs) {
    for (int64_t i = 0; i < m; ++i) matmul_f32_blocked(out + i * ldo, x + i * k, w, 1, n, k);
  } else if (m == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f, w,
                static_cast<int>(k), x, 1, 0.0f, out, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, x, static_cast<int>(k), w, static_cast<int>(k), 0.0f, out,
                static_cast<int>(ldo));
  }
#else
  if (ldo == n) {
    matmul_f32_blocked(out, x, w, m, n, k);
  } else {
    std::vector<float> tmp(static_cast<size_t>(m * n));
    matmul_f32_blocked(tmp.data(), x, w, m, n, k);
    for (int64_t i = 0; i < m; ++i) std::memcpy(out + i * ldo, tmp.data() + i * n, n * sizeof(float));
  }
#endif
}

}  // namespace

void embedding(float* out, const void* table, DType table_dtype, int64_t vocab_size, int64_t hidden,
               const int32_t* token_ids, int64_t num_tokens) {
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_size(table_dtype);
  for (int64_t t = 0; t < num_tokens; ++t) {
    FERRY_CHECK(token_ids[t] >= 0 && token_ids[t] < vocab_size);
    const char* row = static_cast<const char*>(table) + static_cast<size_t>(token_ids[t]) * row_bytes;
    convert_to_f32(out + t * hidden, row, table_dtype, static_cast<size_t>(hidden));
  }
}

void rms_norm(float* out, const float* in, const float* weight, int64_t num_rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < num_rows; ++r) scale_row(out + r * dim, in + r * dim, weight, dim, eps);
}

void add_rms_norm(float* out, float* residual, const float* delta, const float* weight, int64_t num_rows,
                  int64_t dim, float eps) {
  for (int64_t r = 0; r < num_rows; ++r) {
    float* res = residual + r * dim;
    const float* d = delta + r * dim;
    for (int64_t j = 0; j < dim; ++j) res[j] += d[j];
    scale_row(out + r * dim, res, weight, dim, eps);
  }
}

void head_rms_norm(float* x, const float* weight, int64_t num_tokens, int64_t token_stride, int64_t num_heads,
                   int64_t head_dim, float eps) {
  for (int64_t t = 0; t < num_tokens; ++t)
    for (int64_t h = 0; h < num_heads; ++h) {
      float* row = x + t * token_stride + h * head_dim;
      scale_row(row, row, weight, head_dim, eps);
    }
}

void rope(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens,
          int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
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
  for (int64_t t = 0; t < num_tokens; ++t) {
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
}

void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v, const int64_t* slot_mapping,
                    int64_t num_tokens, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, int64_t head_dim) {
  const int64_t row = num_kv_heads * head_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    std::memcpy(k_cache + slot * row, k + t * k_stride, static_cast<size_t>(row) * sizeof(float));
    std::memcpy(v_cache + slot * row, v + t * v_stride, static_cast<size_t>(row) * sizeof(float));
  }
}

void kv_cache_write_int8(int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales, const float* k,
                         const float* v, const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride,
                         int64_t v_stride, int64_t num_kv_heads, int64_t head_dim) {
  for (int64_t t = 0; t < num_tokens; ++t) {
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
}

namespace {

// For each sequence, query token and q head: scores over the context walked block by block (each
// block's keys are contiguous per position), one max/exp/sum pass, then V accumulated row-wise.
// T is the cache element: float, or int8_t whose per-(slot, head) scale is applied once per row
// (to the dot product for K, to the softmax weight for V).
template <typename T>
void paged_attention_impl(const PagedAttentionArgs& a) {
  constexpr bool kQuantized = std::is_same_v<T, int8_t>;
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  const int64_t group = a.num_q_heads / a.num_kv_heads;
  const int64_t kv_row = a.num_kv_heads * a.head_dim;
  const int64_t hd = a.head_dim;
  thread_local std::vector<float> scores;  // reused: attention runs once per layer per step
  for (int64_t s = 0; s < a.num_seqs; ++s) {
    const int64_t q_begin = a.query_start[s];
    const int64_t query_len = a.query_start[s + 1] - q_begin;
    const int64_t context_len = a.context_lens[s];
    FERRY_CHECK(query_len >= 0 && context_len >= query_len);
    const int32_t* table = a.block_tables + s * a.max_blocks_per_seq;
    scores.resize(static_cast<size_t>(context_len));
    for (int64_t i = 0; i < query_len; ++i) {
      const int64_t num_keys = context_len - query_len + i + 1;  // causal: positions 0..position
      for (int64_t h = 0; h < a.num_q_heads; ++h) {
        const float* q = a.q + (q_begin + i) * a.q_stride + h * hd;
        const int64_t kvh = h / group;
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t p0 = 0; p0 < num_keys; p0 += a.block_size) {
          const int64_t block = table[p0 / a.block_size];
          FERRY_CHECK(block >= 0 && block < a.num_blocks);
          const T* keys = k_cache + block * a.block_size * kv_row + kvh * hd;
          const int64_t n = std::min(a.block_size, num_keys - p0);
          for (int64_t p = 0; p < n; ++p) {
            float sc = dot(q, keys + p * kv_row, hd) * a.scale;
            if constexpr (kQuantized) sc *= a.k_scales[(block * a.block_size + p) * a.num_kv_heads + kvh];
            scores[p0 + p] = sc;
            max_score = std::max(max_score, sc);
          }
        }
        float denom = 0.0f;
        for (int64_t p = 0; p < num_keys; ++p) {
          scores[p] = std::exp(scores[p] - max_score);
          denom += scores[p];
        }
        float* out = a.out + (q_begin + i) * a.num_q_heads * hd + h * hd;
        std::fill(out, out + hd, 0.0f);
        for (int64_t p0 = 0; p0 < num_keys; p0 += a.block_size) {
          const int64_t block = table[p0 / a.block_size];
          const T* values = v_cache + block * a.block_size * kv_row + kvh * hd;
          const int64_t n = std::min(a.block_size, num_keys - p0);
          for (int64_t p = 0; p < n; ++p) {
            float w = scores[p0 + p];
            if constexpr (kQuantized) w *= a.v_scales[(block * a.block_size + p) * a.num_kv_heads + kvh];
            axpy(out, w, values + p * kv_row, hd);
          }
        }
        const float inv = 1.0f / denom;
        for (int64_t d = 0; d < hd; ++d) out[d] *= inv;
      }
    }
  }
}

}  // namespace

void paged_attention(const PagedAttentionArgs& a) {
  switch (a.kv_dtype) {
    case KvCacheDType::kF32: paged_attention_impl<float>(a); return;
    case KvCacheDType::kInt8: paged_attention_impl<int8_t>(a); return;
  }
  FERRY_CHECK(false && "paged_attention: unknown KvCacheDType");
}

void silu_and_mul(float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* g = gate_up + r * 2 * inter;
    const float* u = g + inter;
    float* o = out + r * inter;
    for (int64_t j = 0; j < inter; ++j) o[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
  }
}

void matmul(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t m, int64_t n,
            int64_t k) {
  if (w_dtype == DType::kF32) {
    matmul_f32(out, n, x, static_cast<const float*>(w), m, n, k);
  } else {
    // Narrow weights: convert a panel of rows at a time to fp32, then the fp32 path on the panel.
    constexpr int64_t kPanelRows = 256;
    thread_local std::vector<float> panel;
    panel.resize(static_cast<size_t>(std::min(n, kPanelRows) * k));
    const size_t elem = dtype_size(w_dtype);
    for (int64_t j0 = 0; j0 < n; j0 += kPanelRows) {
      const int64_t rows = std::min(kPanelRows, n - j0);
      convert_to_f32(panel.data(), static_cast<const char*>(w) + static_cast<size_t>(j0 * k) * elem, w_dtype,
                     static_cast<size_t>(rows * k));
      if (m == 1) {
        matmul_f32(out + j0, rows, x, panel.data(), 1, rows, k);
      } else {
        matmul_f32(out + j0, n, x, panel.data(), m, rows, k);
      }
    }
  }
  if (bias != nullptr)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] += bias[j];
}

void gather_rows(float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t dim) {
  for (int64_t r = 0; r < num_rows; ++r)
    std::memcpy(out + r * dim, in + static_cast<int64_t>(rows[r]) * dim, static_cast<size_t>(dim) * sizeof(float));
}

void argmax(int32_t* out, const float* logits, int64_t num_rows, int64_t vocab) {
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* row = logits + r * vocab;
    out[r] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);  // first maximum wins
  }
}

void log_softmax(float* x, int64_t num_rows, int64_t vocab) {
  for (int64_t r = 0; r < num_rows; ++r) {
    float* row = x + r * vocab;
    const float max_v = *std::max_element(row, row + vocab);
    float sum = 0.0f;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - max_v);
    const float lse = max_v + std::log(sum);
    for (int64_t j = 0; j < vocab; ++j) row[j] -= lse;
  }
}

}  // namespace cpu
}  // namespace ferry::kernels
