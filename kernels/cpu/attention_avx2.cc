// AVX2 + FMA inner loops of the kCpu paged attention (interface in attention.h). This file alone is
// compiled with -mavx2 -mfma (kernels/CMakeLists.txt); attention.cc calls it only after
// __builtin_cpu_supports said the CPU has both. Builds without those flags (non-x86) get nullptr.
#include "kernels/cpu/attention.h"
#include "kernels/cpu/avx2_util.h"

#if defined(__AVX2__) && defined(__FMA__)

#include <immintrin.h>

#include <cmath>
#include <cstring>

namespace ferry::kernels::cpu {

namespace {

using avx2::exp_neg;
using avx2::hsum;
using avx2::hsum4;

// {sum(a[0]), ..., sum(a[7])}: the eight lane sums of eight vectors in one vector, 9 instructions
// (hadd pairs, then the two 128-bit halves added).
inline __m256 hsum8(const __m256 (&a)[8]) {
  const __m256 t01 = _mm256_hadd_ps(a[0], a[1]), t23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t45 = _mm256_hadd_ps(a[4], a[5]), t67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 lo = _mm256_hadd_ps(t01, t23), hi = _mm256_hadd_ps(t45, t67);  // per lane: 0123 | 4567
  return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
}

// Small head_dim (8 or 16): a dot product is one or two FMAs, so reducing each key's 8 lanes on its
// own (hsum4: ~1.5 instructions per score) would cost as much as the products. Instead eight keys
// are reduced together (hsum8) into one 8-wide store of scores, and q stays in registers. Keys
// past the last multiple of 8 are reduced one by one.
template <int64_t kHd>
void qk_small_avx2(float* scores, int64_t s_ld, const float* q, int64_t num_rows, const float* k, int64_t k_ld,
                   int64_t n) {
  constexpr int kVecs = kHd / 8;
  for (int64_t r = 0; r < num_rows; ++r) {
    __m256 qv[kVecs];
    for (int u = 0; u < kVecs; ++u) qv[u] = _mm256_loadu_ps(q + r * kHd + 8 * u);
    float* out = scores + r * s_ld;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      __m256 acc[8];
      for (int t = 0; t < 8; ++t) {
        const float* kj = k + (j + t) * k_ld;
        acc[t] = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kj));
        for (int u = 1; u < kVecs; ++u) acc[t] = _mm256_fmadd_ps(qv[u], _mm256_loadu_ps(kj + 8 * u), acc[t]);
      }
      _mm256_storeu_ps(out + j, hsum8(acc));
    }
    for (; j < n; ++j) {
      const float* kj = k + j * k_ld;
      __m256 acc = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kj));
      for (int u = 1; u < kVecs; ++u) acc = _mm256_fmadd_ps(qv[u], _mm256_loadu_ps(kj + 8 * u), acc);
      out[j] = hsum(acc);
    }
  }
}

// Scores of two q rows against four keys per step: 6 loads feed 8 FMAs, so the loop runs at the FMA
// rate rather than the load rate. head_dim tails (head_dim % 8) are added in scalar.
void qk_avx2(float* scores, int64_t s_ld, const float* q, int64_t num_rows, const float* k, int64_t k_ld,
             int64_t n, int64_t hd) {
  if (hd == 8) return qk_small_avx2<8>(scores, s_ld, q, num_rows, k, k_ld, n);
  if (hd == 16) return qk_small_avx2<16>(scores, s_ld, q, num_rows, k, k_ld, n);
  const int64_t hd8 = hd & ~int64_t{7};
  int64_t r = 0;
  for (; r + 2 <= num_rows; r += 2) {
    const float* q0 = q + r * hd;
    const float* q1 = q0 + hd;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const float* k0 = k + j * k_ld;
      const float* k1 = k0 + k_ld;
      const float* k2 = k1 + k_ld;
      const float* k3 = k2 + k_ld;
      __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
      __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
      for (int64_t d = 0; d < hd8; d += 8) {
        const __m256 x0 = _mm256_loadu_ps(q0 + d), x1 = _mm256_loadu_ps(q1 + d);
        __m256 kv = _mm256_loadu_ps(k0 + d);
        a00 = _mm256_fmadd_ps(x0, kv, a00);
        a10 = _mm256_fmadd_ps(x1, kv, a10);
        kv = _mm256_loadu_ps(k1 + d);
        a01 = _mm256_fmadd_ps(x0, kv, a01);
        a11 = _mm256_fmadd_ps(x1, kv, a11);
        kv = _mm256_loadu_ps(k2 + d);
        a02 = _mm256_fmadd_ps(x0, kv, a02);
        a12 = _mm256_fmadd_ps(x1, kv, a12);
        kv = _mm256_loadu_ps(k3 + d);
        a03 = _mm256_fmadd_ps(x0, kv, a03);
        a13 = _mm256_fmadd_ps(x1, kv, a13);
      }
      __m128 s0 = hsum4(a00, a01, a02, a03), s1 = hsum4(a10, a11, a12, a13);
      if (hd8 < hd) {
        float t0[4] = {0, 0, 0, 0}, t1[4] = {0, 0, 0, 0};
        for (int u = 0; u < 4; ++u)
          for (int64_t d = hd8; d < hd; ++d) {
            t0[u] += q0[d] * k[(j + u) * k_ld + d];
            t1[u] += q1[d] * k[(j + u) * k_ld + d];
          }
        s0 = _mm_add_ps(s0, _mm_loadu_ps(t0));
        s1 = _mm_add_ps(s1, _mm_loadu_ps(t1));
      }
      _mm_storeu_ps(scores + r * s_ld + j, s0);
      _mm_storeu_ps(scores + (r + 1) * s_ld + j, s1);
    }
    for (; j < n; ++j) {
      const float* kj = k + j * k_ld;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0;
      for (int64_t d = 0; d < hd8; d += 8) {
        const __m256 kv = _mm256_loadu_ps(kj + d);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + d), kv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + d), kv, a1);
      }
      float s0 = hsum(a0), s1 = hsum(a1);
      for (int64_t d = hd8; d < hd; ++d) {
        s0 += q0[d] * kj[d];
        s1 += q1[d] * kj[d];
      }
      scores[r * s_ld + j] = s0;
      scores[(r + 1) * s_ld + j] = s1;
    }
  }
  for (; r < num_rows; ++r) {  // an odd last row
    const float* q0 = q + r * hd;
    for (int64_t j = 0; j < n; ++j) {
      const float* kj = k + j * k_ld;
      __m256 a0 = _mm256_setzero_ps();
      for (int64_t d = 0; d < hd8; d += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + d), _mm256_loadu_ps(kj + d), a0);
      float s0 = hsum(a0);
      for (int64_t d = hd8; d < hd; ++d) s0 += q0[d] * kj[d];
      scores[r * s_ld + j] = s0;
    }
  }
}

// acc rows += p . V, two rows at a time over 32 columns (8 accumulators), so each V load feeds two
// FMAs; then 8-column and scalar tails.
void pv_avx2(float* acc, const float* p, int64_t p_ld, int64_t num_rows, const float* v, int64_t v_ld, int64_t n,
             int64_t hd) {
  int64_t r = 0;
  for (; r + 2 <= num_rows; r += 2) {
    float* o0 = acc + r * hd;
    float* o1 = o0 + hd;
    const float* p0 = p + r * p_ld;
    const float* p1 = p0 + p_ld;
    int64_t d = 0;
    for (; d + 32 <= hd; d += 32) {
      __m256 b00 = _mm256_loadu_ps(o0 + d), b01 = _mm256_loadu_ps(o0 + d + 8);
      __m256 b02 = _mm256_loadu_ps(o0 + d + 16), b03 = _mm256_loadu_ps(o0 + d + 24);
      __m256 b10 = _mm256_loadu_ps(o1 + d), b11 = _mm256_loadu_ps(o1 + d + 8);
      __m256 b12 = _mm256_loadu_ps(o1 + d + 16), b13 = _mm256_loadu_ps(o1 + d + 24);
      for (int64_t j = 0; j < n; ++j) {
        const float* vj = v + j * v_ld + d;
        const __m256 w0 = _mm256_broadcast_ss(p0 + j), w1 = _mm256_broadcast_ss(p1 + j);
        __m256 x = _mm256_loadu_ps(vj);
        b00 = _mm256_fmadd_ps(w0, x, b00);
        b10 = _mm256_fmadd_ps(w1, x, b10);
        x = _mm256_loadu_ps(vj + 8);
        b01 = _mm256_fmadd_ps(w0, x, b01);
        b11 = _mm256_fmadd_ps(w1, x, b11);
        x = _mm256_loadu_ps(vj + 16);
        b02 = _mm256_fmadd_ps(w0, x, b02);
        b12 = _mm256_fmadd_ps(w1, x, b12);
        x = _mm256_loadu_ps(vj + 24);
        b03 = _mm256_fmadd_ps(w0, x, b03);
        b13 = _mm256_fmadd_ps(w1, x, b13);
      }
      _mm256_storeu_ps(o0 + d, b00);
      _mm256_storeu_ps(o0 + d + 8, b01);
      _mm256_storeu_ps(o0 + d + 16, b02);
      _mm256_storeu_ps(o0 + d + 24, b03);
      _mm256_storeu_ps(o1 + d, b10);
      _mm256_storeu_ps(o1 + d + 8, b11);
      _mm256_storeu_ps(o1 + d + 16, b12);
      _mm256_storeu_ps(o1 + d + 24, b13);
    }
    for (; d + 8 <= hd; d += 8) {
      __m256 b0 = _mm256_loadu_ps(o0 + d), b1 = _mm256_loadu_ps(o1 + d);
      for (int64_t j = 0; j < n; ++j) {
        const __m256 x = _mm256_loadu_ps(v + j * v_ld + d);
        b0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + j), x, b0);
        b1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p1 + j), x, b1);
      }
      _mm256_storeu_ps(o0 + d, b0);
      _mm256_storeu_ps(o1 + d, b1);
    }
    for (; d < hd; ++d) {
      float s0 = o0[d], s1 = o1[d];
      for (int64_t j = 0; j < n; ++j) {
        s0 += p0[j] * v[j * v_ld + d];
        s1 += p1[j] * v[j * v_ld + d];
      }
      o0[d] = s0;
      o1[d] = s1;
    }
  }
  for (; r < num_rows; ++r) {  // an odd last row
    float* o0 = acc + r * hd;
    const float* p0 = p + r * p_ld;
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
      __m256 b0 = _mm256_loadu_ps(o0 + d);
      for (int64_t j = 0; j < n; ++j)
        b0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + j), _mm256_loadu_ps(v + j * v_ld + d), b0);
      _mm256_storeu_ps(o0 + d, b0);
    }
    for (; d < hd; ++d) {
      float s0 = o0[d];
      for (int64_t j = 0; j < n; ++j) s0 += p0[j] * v[j * v_ld + d];
      o0[d] = s0;
    }
  }
}

void widen_bf16_avx2(float* dst, const uint16_t* src, int64_t src_ld, int64_t n, int64_t hd) {
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* s = src + j * src_ld;
    float* o = dst + j * hd;
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + d)));
      _mm256_storeu_ps(o + d, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; d < hd; ++d) {
      const uint32_t bits = static_cast<uint32_t>(s[d]) << 16;
      std::memcpy(o + d, &bits, sizeof(float));
    }
  }
}

void widen_int8_avx2(float* dst, const int8_t* src, int64_t src_ld, int64_t n, int64_t hd) {
  for (int64_t j = 0; j < n; ++j) {
    const int8_t* s = src + j * src_ld;
    float* o = dst + j * hd;
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
      const __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + d)));
      _mm256_storeu_ps(o + d, _mm256_cvtepi32_ps(w));
    }
    for (; d < hd; ++d) o[d] = static_cast<float>(s[d]);
  }
}

float exp_sum_avx2(float* x, int64_t n, float max) {
  const __m256 vmax = _mm256_set1_ps(max);
  __m256 sum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  float s = hsum(sum);
  if (i < n) {  // the tail through the same polynomial, so every weight rounds the same way
    float tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t rest = n - i;
    for (int64_t u = 0; u < 8; ++u) tail[u] = u < rest ? x[i + u] - max : -100.0f;
    _mm256_storeu_ps(tail, exp_neg(_mm256_loadu_ps(tail)));
    for (int64_t u = 0; u < rest; ++u) {
      x[i + u] = tail[u];
      s += tail[u];
    }
  }
  return s;
}

// max of x[0..n), n >= 1: two 8-lane running maxima (independent chains), then the tail.
float row_max_avx2(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  if (i + 8 <= n) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    i += 8;
  }
  m0 = _mm256_max_ps(m0, m1);
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  float r = _mm_cvtss_f32(m);
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

// ---- decode, head_dim 8 or 16, fp32 cache: one call per (sequence, KV head) ----------------------

// Scores of every row against keys [0, n) (n a multiple of 8 here: offs is padded): eight keys
// reduced together per row (hsum8), the keys' rows reloaded from L1 per q row. Taken for a group of
// one row (MHA); two or more rows share a transpose instead (below).
template <int kHd>
void decode_scores(float* scores, int64_t s_ld, const float* q, int64_t num_rows, const float* k_head,
                   const int64_t* offs, int64_t n) {
  constexpr int kVecs = kHd / 8;
  for (int64_t j = 0; j < n; j += 8) {
    const float* kr[8];
    for (int t = 0; t < 8; ++t) kr[t] = k_head + offs[j + t];
    for (int64_t r = 0; r < num_rows; ++r) {
      const float* qr = q + r * kHd;
      __m256 acc[8];
      for (int t = 0; t < 8; ++t) {
        acc[t] = _mm256_mul_ps(_mm256_loadu_ps(qr), _mm256_loadu_ps(kr[t]));
        for (int u = 1; u < kVecs; ++u)
          acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(qr + 8 * u), _mm256_loadu_ps(kr[t] + 8 * u), acc[t]);
      }
      _mm256_storeu_ps(scores + r * s_ld + j, hsum8(acc));
    }
  }
}

// The same scores for two or more rows: eight keys' rows transposed (dimension d of the eight keys in
// one vector: loads, 128-bit inserts, then unpacks and shuffles within 128-bit lanes, ~2 shuffles
// per key and 8 dimensions) serve every row, each row then costing one FMA per dimension with its
// q value broadcast. hsum8 instead costs ~14 shuffles per row and 8 keys.
template <int kHd>
void decode_scores_transposed(float* scores, int64_t s_ld, const float* q, int64_t num_rows, const float* k_head,
                              const int64_t* offs, int64_t n) {
  constexpr int kVecs = kHd / 8;
  constexpr int64_t kChunkRows = 8;
  __m256 qb[kChunkRows][kHd];  // q values broadcast, per row and dimension
  for (int64_t r0 = 0; r0 < num_rows; r0 += kChunkRows) {
    const int64_t rows = num_rows - r0 < kChunkRows ? num_rows - r0 : kChunkRows;
    for (int64_t r = 0; r < rows; ++r)
      for (int d = 0; d < kHd; ++d) qb[r][d] = _mm256_broadcast_ss(q + (r0 + r) * kHd + d);
    for (int64_t j = 0; j < n; j += 8) {
      const float* kr[8];
      for (int t = 0; t < 8; ++t) kr[t] = k_head + offs[j + t];
      __m256 kt[kHd];  // kt[d][t] = key t's dimension d
      for (int u = 0; u < kVecs; ++u)
        for (int h = 0; h < 2; ++h) {  // dimensions 8u + 4h .. + 3
          const int c = 8 * u + 4 * h;
          __m256 t4[4];
          for (int t = 0; t < 4; ++t)
            t4[t] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(kr[t] + c)), _mm_loadu_ps(kr[t + 4] + c), 1);
          const __m256 u0 = _mm256_unpacklo_ps(t4[0], t4[1]), u1 = _mm256_unpackhi_ps(t4[0], t4[1]);
          const __m256 u2 = _mm256_unpacklo_ps(t4[2], t4[3]), u3 = _mm256_unpackhi_ps(t4[2], t4[3]);
          kt[c + 0] = _mm256_shuffle_ps(u0, u2, 0x44);
          kt[c + 1] = _mm256_shuffle_ps(u0, u2, 0xEE);
          kt[c + 2] = _mm256_shuffle_ps(u1, u3, 0x44);
          kt[c + 3] = _mm256_shuffle_ps(u1, u3, 0xEE);
        }
      for (int64_t r = 0; r < rows; ++r) {
        __m256 a0 = _mm256_mul_ps(qb[r][0], kt[0]), a1 = _mm256_mul_ps(qb[r][1], kt[1]);
        for (int d = 2; d < kHd; d += 2) {
          a0 = _mm256_fmadd_ps(qb[r][d], kt[d], a0);
          a1 = _mm256_fmadd_ps(qb[r][d + 1], kt[d + 1], a1);
        }
        _mm256_storeu_ps(scores + (r0 + r) * s_ld + j, _mm256_add_ps(a0, a1));
      }
    }
  }
}

// out rows [kRows, kHd] = (p rows . V) * inv[r]: each V row loaded once for the kRows rows; even and
// odd keys go to separate accumulators so consecutive FMAs do not wait on each other.
template <int kHd, int kRows>
void decode_weighted_sum(float* out, const float* p, int64_t s_ld, const float* v_head, const int64_t* offs,
                         int64_t n, const float* inv) {
  constexpr int kVecs = kHd / 8;
  __m256 a0[kRows][kVecs], a1[kRows][kVecs];
  for (int r = 0; r < kRows; ++r)
    for (int u = 0; u < kVecs; ++u) a0[r][u] = a1[r][u] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 <= n; j += 2) {
    const float* v0 = v_head + offs[j];
    const float* v1 = v_head + offs[j + 1];
    __m256 x0[kVecs], x1[kVecs];
    for (int u = 0; u < kVecs; ++u) {
      x0[u] = _mm256_loadu_ps(v0 + 8 * u);
      x1[u] = _mm256_loadu_ps(v1 + 8 * u);
    }
    for (int r = 0; r < kRows; ++r) {
      const __m256 w0 = _mm256_broadcast_ss(p + r * s_ld + j), w1 = _mm256_broadcast_ss(p + r * s_ld + j + 1);
      for (int u = 0; u < kVecs; ++u) {
        a0[r][u] = _mm256_fmadd_ps(w0, x0[u], a0[r][u]);
        a1[r][u] = _mm256_fmadd_ps(w1, x1[u], a1[r][u]);
      }
    }
  }
  if (j < n) {
    const float* v0 = v_head + offs[j];
    for (int r = 0; r < kRows; ++r) {
      const __m256 w0 = _mm256_broadcast_ss(p + r * s_ld + j);
      for (int u = 0; u < kVecs; ++u) a0[r][u] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(v0 + 8 * u), a0[r][u]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const __m256 scale = _mm256_set1_ps(inv[r]);
    for (int u = 0; u < kVecs; ++u)
      _mm256_storeu_ps(out + r * kHd + 8 * u, _mm256_mul_ps(_mm256_add_ps(a0[r][u], a1[r][u]), scale));
  }
}

template <int kHd>
void decode_small_hd(float* out, const float* q, int64_t num_rows, const float* k_head, const float* v_head,
                     const int64_t* offs, int64_t n, float softcap, float* scores, int64_t s_ld) {
  if (num_rows >= 2)
    decode_scores_transposed<kHd>(scores, s_ld, q, num_rows, k_head, offs, (n + 7) & ~int64_t{7});
  else
    decode_scores<kHd>(scores, s_ld, q, num_rows, k_head, offs, (n + 7) & ~int64_t{7});
  float inv[4];
  for (int64_t r0 = 0; r0 < num_rows; r0 += 4) {
    const int64_t rows = num_rows - r0 < 4 ? num_rows - r0 : 4;
    for (int64_t i = 0; i < rows; ++i) {
      float* row = scores + (r0 + i) * s_ld;
      if (softcap > 0.0f)
        for (int64_t j = 0; j < n; ++j) row[j] = softcap * std::tanh(row[j] / softcap);
      inv[i] = 1.0f / exp_sum_avx2(row, n, row_max_avx2(row, n));
    }
    const float* p = scores + r0 * s_ld;
    float* o = out + r0 * kHd;
    switch (rows) {
      case 4: decode_weighted_sum<kHd, 4>(o, p, s_ld, v_head, offs, n, inv); break;
      case 3: decode_weighted_sum<kHd, 3>(o, p, s_ld, v_head, offs, n, inv); break;
      case 2: decode_weighted_sum<kHd, 2>(o, p, s_ld, v_head, offs, n, inv); break;
      default: decode_weighted_sum<kHd, 1>(o, p, s_ld, v_head, offs, n, inv); break;
    }
  }
}

void decode_small_avx2(float* out, const float* q, int64_t num_rows, const float* k_head, const float* v_head,
                       const int64_t* offs, int64_t n, int64_t hd, float softcap, float* scores, int64_t s_ld) {
  if (hd == 8) return decode_small_hd<8>(out, q, num_rows, k_head, v_head, offs, n, softcap, scores, s_ld);
  decode_small_hd<16>(out, q, num_rows, k_head, v_head, offs, n, softcap, scores, s_ld);
}

}  // namespace

const AttentionKernels* attention_kernels_avx2() {
  static const AttentionKernels k{qk_avx2,      pv_avx2,      widen_bf16_avx2,  widen_int8_avx2,
                                  exp_sum_avx2, row_max_avx2, decode_small_avx2};
  return &k;
}

}  // namespace ferry::kernels::cpu

#else  // no AVX2/FMA flags for this file: the path does not exist in this build

namespace ferry::kernels::cpu {
const AttentionKernels* attention_kernels_avx2() { return nullptr; }
}  // namespace ferry::kernels::cpu

#endif
