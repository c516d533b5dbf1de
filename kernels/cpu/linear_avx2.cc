// AVX2 + FMA + F16C inner loops of the kCpu linear layer (design in linear.h). This file alone is
// compiled with -mavx2 -mfma -mf16c (kernels/CMakeLists.txt); linear.cc calls it only after
// __builtin_cpu_supports said the CPU has all three. Builds without those flags get nullptr.
#include "kernels/cpu/linear.h"
#include "kernels/cpu/avx2_util.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace ferry::kernels::cpu {

namespace {

using avx2::hsum;
using avx2::hsum4;

// 8 consecutive weights of a float-format row, widened to fp32. `row` is the row's first byte.
template <WeightFormat F>
inline __m256 load8(const unsigned char* row, int64_t c) {
  if constexpr (F == WeightFormat::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c);
  } else if constexpr (F == WeightFormat::kF16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c)));
  } else {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
}

template <WeightFormat F>
inline float load1(const unsigned char* row, int64_t c) {
  if constexpr (F == WeightFormat::kF32) {
    float v;
    std::memcpy(&v, row + 4 * c, 4);
    return v;
  } else {
    uint16_t v;
    std::memcpy(&v, row + 2 * c, 2);
    return F == WeightFormat::kF16 ? f16_to_f32(v) : bf16_to_f32(v);
  }
}

// Lanes l < n all ones, the rest zero (n in 0..8): the mask of a k % 8 tail.
inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The last k % 8 weights of a row, widened, zero padded to 8 lanes.
template <WeightFormat F>
inline __m256 load_tail(const unsigned char* row, int64_t c, int64_t n, __m256i mask) {
  if constexpr (F == WeightFormat::kF32) {
    return _mm256_maskload_ps(reinterpret_cast<const float*>(row) + c, mask);
  } else {
    alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t u = 0; u < n; ++u) t[u] = load1<F>(row, c + u);
    return _mm256_load_ps(t);
  }
}

// R weight rows j .. j+R-1 against M rows of x (x and out already offset to the first of them):
// R*M accumulators, each weight vector loaded once and used M times, each x vector loaded once per
// step and used R times (R + M loads per R * M FMAs). The k % 8 tail runs as one more step on
// zero-padded (masked) vectors, and R = 4 rows reduce together (hsum4) into one 4-wide store.
template <WeightFormat F, int M, int R>
void float_rows(const LinearArgs& a, const float* x, float* out, int64_t j) {
  const int64_t k = a.w->k, k8 = k & ~int64_t{7};
  const int64_t row_bytes = k * (F == WeightFormat::kF32 ? 4 : 2);
  const auto* base = static_cast<const unsigned char*>(a.w->data) + j * row_bytes;
  __m256 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm256_setzero_ps();
  const auto step = [&](const __m256 (&wv)[R], const __m256 (&xv)[M]) {
    for (int i = 0; i < M; ++i)
      for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(wv[r], xv[i], acc[r][i]);
  };
  for (int64_t c = 0; c < k8; c += 8) {
    __m256 wv[R], xv[M];
    for (int r = 0; r < R; ++r) wv[r] = load8<F>(base + r * row_bytes, c);
    for (int i = 0; i < M; ++i) xv[i] = _mm256_loadu_ps(x + i * k + c);
    step(wv, xv);
  }
  if (k8 < k) {
    const __m256i mask = tail_mask(k - k8);
    __m256 wv[R], xv[M];
    for (int r = 0; r < R; ++r) wv[r] = load_tail<F>(base + r * row_bytes, k8, k - k8, mask);
    for (int i = 0; i < M; ++i) xv[i] = _mm256_maskload_ps(x + i * k + k8, mask);
    step(wv, xv);
  }
  for (int i = 0; i < M; ++i) {
    if constexpr (R == 4) {
      _mm_storeu_ps(out + i * a.out_stride + j, hsum4(acc[0][i], acc[1][i], acc[2][i], acc[3][i]));
    } else {
      for (int r = 0; r < R; ++r) out[i * a.out_stride + j + r] = hsum(acc[r][i]);
    }
  }
}

// One pass of M <= 3 rows of x over weight rows [j0, j1), 4 weight rows at a time: 4 * M
// accumulators, 4 weight and M x registers fit the 16 ymm registers.
template <WeightFormat F, int M>
void float_pass(const LinearArgs& a, const float* x, float* out, int64_t j0, int64_t j1) {
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) float_rows<F, M, 4>(a, x, out, j);
  for (; j < j1; ++j) float_rows<F, M, 1>(a, x, out, j);
}

// Rows [i0, i0 + P) of x as one pass (P <= 3).
template <WeightFormat F, int P>
void float_pass_at(const LinearArgs& a, int64_t i0, int64_t j0, int64_t j1) {
  float_pass<F, P>(a, a.x + i0 * a.w->k, a.out + i0 * a.out_stride, j0, j1);
}

// m = 1..8 rows of x in passes of at most 3 (sizes as equal as possible: 8 = 3 + 3 + 2) over a
// block of weight rows: the block (<= 48 rows, ~100 KiB at k = 2048 in bf16) is read from DRAM by
// the first pass and from cache by the others, so the weights still stream once while each pass
// keeps its accumulators in registers.
template <WeightFormat F, int M>
void float_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  constexpr int64_t kBlockRows = 48;
  constexpr int kPasses = (M + 2) / 3;
  constexpr int kBig = (M + kPasses - 1) / kPasses;  // the first M % kPasses passes (or all) take kBig
  constexpr int kNumBig = M - (kBig - 1) * kPasses;
  for (int64_t jb = j0; jb < j1; jb += kBlockRows) {
    const int64_t je = std::min(j1, jb + kBlockRows);
    int64_t i0 = 0;
    for (int p = 0; p < kPasses; ++p) {
      if (p < kNumBig) {
        float_pass_at<F, kBig>(a, i0, jb, je);
        i0 += kBig;
      } else if constexpr (kBig > 1) {
        float_pass_at<F, kBig - 1>(a, i0, jb, je);
        i0 += kBig - 1;
      }
    }
  }
}

// int8 weights (per-row scale) against x quantized per 32-block: per block, |w| (unsigned) times x
// with w's sign (maddubs: pairs summed into int16, at most 2 * 127 * 127 < 32767), pairs summed
// into int32 (madd), widened and scaled by the x block's scale. R rows per pass give R * M
// independent accumulator chains (one chain is FMA-latency bound). k % 32 tail in fp32.
template <int M, int R>
void int8_rows(const LinearArgs& a, int64_t j) {
  const int64_t k = a.w->k, kb = k / kQuantBlock, kq = kb * kQuantBlock;
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* w0 = static_cast<const int8_t*>(a.w->data) + j * k;
  __m256 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < kb; ++b) {
    __m256i wv[R], aw[R];
    for (int r = 0; r < R; ++r) {
      wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + r * k + b * kQuantBlock));
      aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
    }
    for (int i = 0; i < M; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x_q + i * kq + b * kQuantBlock));
      const __m256 xs = _mm256_set1_ps(a.x_scales[i * kb + b]);
      for (int r = 0; r < R; ++r) {
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(xv, wv[r])), ones);
        acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), xs, acc[r][i]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const float scale = a.w->scales[j + r];
    for (int i = 0; i < M; ++i) {
      float s = hsum(acc[r][i]);
      for (int64_t c = kq; c < k; ++c) s += a.x[i * k + c] * static_cast<float>(w0[r * k + c]);
      a.out[i * a.out_stride + j + r] = s * scale;
    }
  }
}

template <int M>
void int8_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  constexpr int R = M == 1 ? 4 : (M == 2 ? 2 : 1);
  int64_t j = j0;
  for (; j + R <= j1; j += R) int8_rows<M, R>(a, j);
  for (; j < j1; ++j) int8_rows<M, 1>(a, j);
}

// int4 codes (unsigned 0..15, layout in linear.h) against x quantized per 32-block:
//   sum_c (q_c - z) * s * x_c = s * (sum_b xs_b * sum_{c in b} q_c * xq_c  -  z * sum_b x_sums_b)
// the first term in integers per block (maddubs: 2 * 15 * 127 fits int16), accumulated per group
// without the weight scale (one x-scale broadcast per block serves all R rows), then scaled once
// per group; the zero-point term from the group's sums of the quantized x. So the result is the
// exact dot of the stored weights with the quantized x, up to fp32 rounding.
// Unpacking: the block's 16 bytes broadcast to both 128-bit lanes, shifted by 0 (low lane: elements
// 0..15) or 4 (high lane: 16..31) bits, masked to 4 bits.
template <int M, int R>
void int4_rows(const LinearArgs& a, const int8_t* xq, const float* xs, const float* xsum, float* out, int64_t j) {
  const WeightMatrix& w = *a.w;
  const int64_t k = w.k, kb = k / kQuantBlock, groups = k / w.group_size;
  const int64_t blocks_per_group = w.group_size / kQuantBlock;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i lane_shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  const uint8_t* packed = static_cast<const uint8_t*>(w.data) + j * (k / 2);
  __m256 acc[R][M];
  float zero_term[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) {
      acc[r][i] = _mm256_setzero_ps();
      zero_term[r][i] = 0.0f;
    }
  for (int64_t g = 0; g < groups; ++g) {
    __m256 gacc[R][M];
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < M; ++i) gacc[r][i] = _mm256_setzero_ps();
    float gsum[M];
    for (int i = 0; i < M; ++i) gsum[i] = 0.0f;
    for (int64_t b = g * blocks_per_group; b < (g + 1) * blocks_per_group; ++b) {
      __m256i codes[R];
      for (int r = 0; r < R; ++r) {
        const __m256i raw =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + r * (k / 2) + b * 16)));
        codes[r] = _mm256_and_si256(_mm256_srlv_epi32(raw, lane_shift), low4);
      }
      for (int i = 0; i < M; ++i) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + i * k + b * kQuantBlock));
        const __m256 xsb = _mm256_broadcast_ss(xs + i * kb + b);
        gsum[i] += xsum[i * kb + b];
        for (int r = 0; r < R; ++r) {
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(codes[r], xv), ones);
          gacc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), xsb, gacc[r][i]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const float sg = w.scales[(j + r) * groups + g];
      const float szg = sg * (w.zeros != nullptr ? w.zeros[(j + r) * groups + g] : 8.0f);
      const __m256 sgv = _mm256_set1_ps(sg);
      for (int i = 0; i < M; ++i) {
        acc[r][i] = _mm256_fmadd_ps(gacc[r][i], sgv, acc[r][i]);
        zero_term[r][i] += szg * gsum[i];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) out[i * a.out_stride + j + r] = hsum(acc[r][i]) - zero_term[r][i];
}

template <int M>
void int4_pass(const LinearArgs& a, int64_t i0, int64_t j0, int64_t j1) {
  constexpr int R = M == 1 ? 4 : (M == 2 ? 2 : 1);
  const int64_t k = a.w->k, kb = k / kQuantBlock;
  const int8_t* xq = a.x_q + i0 * k;
  const float* xs = a.x_scales + i0 * kb;
  const float* xsum = a.x_sums + i0 * kb;
  float* out = a.out + i0 * a.out_stride;
  int64_t j = j0;
  for (; j + R <= j1; j += R) int4_rows<M, R>(a, xq, xs, xsum, out, j);
  for (; j < j1; ++j) int4_rows<M, 1>(a, xq, xs, xsum, out, j);
}

// As float_decode_m: passes of at most 4 x rows (2 * R * M accumulators must stay in registers)
// over 48-row blocks, so the weights still come from DRAM once.
template <int M>
void int4_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  constexpr int64_t kBlockRows = 48;
  for (int64_t jb = j0; jb < j1; jb += kBlockRows) {
    const int64_t je = std::min(j1, jb + kBlockRows);
    if constexpr (M <= 4) {
      int4_pass<M>(a, 0, jb, je);
    } else {
      int4_pass<4>(a, 0, jb, je);
      int4_pass<M - 4>(a, 4, jb, je);
    }
  }
}

// Panel packing: one weight row segment widened to fp32, 8 at a time.
void widen_avx2(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, float* out) {
  const auto* bytes = static_cast<const unsigned char*>(w.data);
  const int64_t len8 = len & ~int64_t{7};
  switch (w.format) {
    case WeightFormat::kF32:
      std::memcpy(out, bytes + (row * w.k + c0) * 4, static_cast<size_t>(len) * 4);
      return;
    case WeightFormat::kF16:
    case WeightFormat::kBF16: {
      const unsigned char* base = bytes + row * w.k * 2;
      const bool f16 = w.format == WeightFormat::kF16;
      for (int64_t c = 0; c < len8; c += 8)
        _mm256_storeu_ps(out + c, f16 ? load8<WeightFormat::kF16>(base, c0 + c) : load8<WeightFormat::kBF16>(base, c0 + c));
      for (int64_t c = len8; c < len; ++c)
        out[c] = f16 ? load1<WeightFormat::kF16>(base, c0 + c) : load1<WeightFormat::kBF16>(base, c0 + c);
      return;
    }
    case WeightFormat::kInt8: {
      const int8_t* q = reinterpret_cast<const int8_t*>(bytes) + row * w.k + c0;
      const __m256 s = _mm256_set1_ps(w.scales[row]);
      for (int64_t c = 0; c < len8; c += 8) {
        const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + c)));
        _mm256_storeu_ps(out + c, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
      }
      for (int64_t c = len8; c < len; ++c) out[c] = static_cast<float>(q[c]) * w.scales[row];
      return;
    }
    case WeightFormat::kInt4: {
      // c0 and len are multiples of 32 (linear.h): one group per 32-block.
      const uint8_t* packed = bytes + row * (w.k / 2);
      const int64_t groups = w.k / w.group_size;
      const __m256i low4 = _mm256_set1_epi8(0x0f);
      for (int64_t c = 0; c < len; c += kQuantBlock) {
        const int64_t col = c0 + c, g = row * groups + col / w.group_size;
        const __m256 s = _mm256_set1_ps(w.scales[g]);
        const __m256 z = _mm256_set1_ps(w.zeros != nullptr ? w.zeros[g] : 8.0f);
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + (col / kQuantBlock) * 16));
        const __m256i codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
        alignas(32) uint8_t cb[32];
        _mm256_store_si256(reinterpret_cast<__m256i*>(cb), codes);
        for (int u = 0; u < 4; ++u) {
          const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(cb + 8 * u)));
          _mm256_storeu_ps(out + c + 8 * u, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(v), z), s));
        }
      }
      return;
    }
  }
}

// quantize_x_blocks, vectorised; same fp32 operations in the same order, so the same bits
// (cvtps rounds to nearest even under the default MXCSR, like nearbyint).
void quantize_x_avx2(const float* x, int64_t len, int8_t* q, float* scales, float* sums) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < len / kQuantBlock; ++b) {
    __m256 v[4];
    for (int u = 0; u < 4; ++u) v[u] = _mm256_loadu_ps(x + b * kQuantBlock + 8 * u);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask)),
                             _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    __m256i iv[4];
    for (int u = 0; u < 4; ++u) iv[u] = _mm256_cvtps_epi32(_mm256_mul_ps(v[u], inv));
    const __m256i s4 = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    // packs work within 128-bit lanes: the permute restores element order.
    const __m256i p16a = _mm256_packs_epi32(iv[0], iv[1]), p16b = _mm256_packs_epi32(iv[2], iv[3]);
    const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kQuantBlock), p8);
    scales[b] = amax / 127.0f;
    sums[b] = scales[b] * static_cast<float>(_mm_cvtsi128_si32(s));
  }
}

// Runtime m (1..kDecodeMaxRows) to the template instance.
template <template <int> class K>
void by_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  switch (a.m) {
    case 1: return K<1>::run(a, j0, j1);
    case 2: return K<2>::run(a, j0, j1);
    case 3: return K<3>::run(a, j0, j1);
    case 4: return K<4>::run(a, j0, j1);
    case 5: return K<5>::run(a, j0, j1);
    case 6: return K<6>::run(a, j0, j1);
    case 7: return K<7>::run(a, j0, j1);
    default: return K<8>::run(a, j0, j1);
  }
}
template <WeightFormat F>
struct FloatK {
  template <int M>
  struct K {
    static void run(const LinearArgs& a, int64_t b, int64_t e) { float_decode_m<F, M>(a, b, e); }
  };
};
template <int M>
struct I8K {
  static void run(const LinearArgs& a, int64_t b, int64_t e) { int8_decode_m<M>(a, b, e); }
};
template <int M>
struct I4K {
  static void run(const LinearArgs& a, int64_t b, int64_t e) { int4_decode_m<M>(a, b, e); }
};

// rows x 16 tile: per kk, two weight vectors and `rows` broadcasts of x feed 2 * rows FMAs.
template <int R>
void micro_rows(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc, bool accumulate) {
  __m256 c0[R], c1[R];
  for (int r = 0; r < R; ++r) {
    c0[r] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    c1[r] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t kk = 0; kk < kb; ++kk) {
    const __m256 w0 = _mm256_loadu_ps(wp + kk * kMicroCols);
    const __m256 w1 = _mm256_loadu_ps(wp + kk * kMicroCols + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x + r * ldx + kk);
      c0[r] = _mm256_fmadd_ps(xb, w0, c0[r]);
      c1[r] = _mm256_fmadd_ps(xb, w1, c1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(c + r * ldc, c0[r]);
    _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
  }
}

// The full 6 x 16 tile with its 12 accumulators as named locals: GCC keeps arrays of __m256 in a
// loop on the stack (measured: 25 GFLOP/s with the array form, the FMAs waiting on reloads).
void micro_6x16(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc, bool accumulate) {
#define FERRY_LOAD_ROW(r, a, b)                                              \
  __m256 a = accumulate ? _mm256_loadu_ps(c + (r) * ldc) : _mm256_setzero_ps(); \
  __m256 b = accumulate ? _mm256_loadu_ps(c + (r) * ldc + 8) : _mm256_setzero_ps();
  FERRY_LOAD_ROW(0, a0, b0)
  FERRY_LOAD_ROW(1, a1, b1)
  FERRY_LOAD_ROW(2, a2, b2)
  FERRY_LOAD_ROW(3, a3, b3)
  FERRY_LOAD_ROW(4, a4, b4)
  FERRY_LOAD_ROW(5, a5, b5)
#undef FERRY_LOAD_ROW
  const float* x0 = x;
  const float* x1 = x + ldx;
  const float* x2 = x + 2 * ldx;
  const float* x3 = x + 3 * ldx;
  const float* x4 = x + 4 * ldx;
  const float* x5 = x + 5 * ldx;
  for (int64_t kk = 0; kk < kb; ++kk) {
    const __m256 w0 = _mm256_loadu_ps(wp + kk * kMicroCols);
    const __m256 w1 = _mm256_loadu_ps(wp + kk * kMicroCols + 8);
    __m256 xb = _mm256_broadcast_ss(x0 + kk);
    a0 = _mm256_fmadd_ps(xb, w0, a0);
    b0 = _mm256_fmadd_ps(xb, w1, b0);
    xb = _mm256_broadcast_ss(x1 + kk);
    a1 = _mm256_fmadd_ps(xb, w0, a1);
    b1 = _mm256_fmadd_ps(xb, w1, b1);
    xb = _mm256_broadcast_ss(x2 + kk);
    a2 = _mm256_fmadd_ps(xb, w0, a2);
    b2 = _mm256_fmadd_ps(xb, w1, b2);
    xb = _mm256_broadcast_ss(x3 + kk);
    a3 = _mm256_fmadd_ps(xb, w0, a3);
    b3 = _mm256_fmadd_ps(xb, w1, b3);
    xb = _mm256_broadcast_ss(x4 + kk);
    a4 = _mm256_fmadd_ps(xb, w0, a4);
    b4 = _mm256_fmadd_ps(xb, w1, b4);
    xb = _mm256_broadcast_ss(x5 + kk);
    a5 = _mm256_fmadd_ps(xb, w0, a5);
    b5 = _mm256_fmadd_ps(xb, w1, b5);
  }
#define FERRY_STORE_ROW(r, a, b)              \
  _mm256_storeu_ps(c + (r) * ldc, a);         \
  _mm256_storeu_ps(c + (r) * ldc + 8, b);
  FERRY_STORE_ROW(0, a0, b0)
  FERRY_STORE_ROW(1, a1, b1)
  FERRY_STORE_ROW(2, a2, b2)
  FERRY_STORE_ROW(3, a3, b3)
  FERRY_STORE_ROW(4, a4, b4)
  FERRY_STORE_ROW(5, a5, b5)
#undef FERRY_STORE_ROW
}

void micro_avx2(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc, int64_t rows,
                bool accumulate) {
  switch (rows) {
    case 1: return micro_rows<1>(x, ldx, wp, kb, c, ldc, accumulate);
    case 2: return micro_rows<2>(x, ldx, wp, kb, c, ldc, accumulate);
    case 3: return micro_rows<3>(x, ldx, wp, kb, c, ldc, accumulate);
    case 4: return micro_rows<4>(x, ldx, wp, kb, c, ldc, accumulate);
    case 5: return micro_rows<5>(x, ldx, wp, kb, c, ldc, accumulate);
    default: return micro_6x16(x, ldx, wp, kb, c, ldc, accumulate);
  }
}

static_assert(kMicroRows == 6 && kMicroCols == 16 && kQuantBlock == 32, "loops above are written for these");

const LinearKernels kAvx2Kernels = {
    {by_m<FloatK<WeightFormat::kF32>::K>, by_m<FloatK<WeightFormat::kF16>::K>,
     by_m<FloatK<WeightFormat::kBF16>::K>, by_m<I8K>, by_m<I4K>},
    micro_avx2,
    widen_avx2,
    quantize_x_avx2,
    nullptr,
    kGemmMinRows,
};

}  // namespace

const LinearKernels* linear_kernels_avx2() { return &kAvx2Kernels; }

}  // namespace ferry::kernels::cpu

#else  // no AVX2/FMA/F16C in this build

namespace ferry::kernels::cpu {
const LinearKernels* linear_kernels_avx2() { return nullptr; }
}  // namespace ferry::kernels::cpu

#endif
