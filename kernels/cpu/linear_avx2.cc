// AVX2 + FMA + F16C inner loops of the kCpu linear layer (design in linear.h). This file alone is
// compiled with -mavx2 -mfma -mf16c (kernels/CMakeLists.txt); linear.cc calls it only after
// __builtin_cpu_supports said the CPU has all three. Builds without those flags get nullptr.
#include "kernels/cpu/linear.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#include <cstring>

namespace ferry::kernels::cpu {

namespace {

inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

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

// R weight rows j .. j+R-1 against M rows of x: R*M accumulators, each weight vector loaded once
// and used M times, each x vector (L1 resident) loaded once per step and used R times.
template <WeightFormat F, int M, int R>
void float_rows(const LinearArgs& a, int64_t j) {
  const int64_t k = a.w->k, k8 = k & ~int64_t{7};
  const int64_t row_bytes = k * (F == WeightFormat::kF32 ? 4 : 2);
  const auto* base = static_cast<const unsigned char*>(a.w->data) + j * row_bytes;
  __m256 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm256_setzero_ps();
  for (int64_t c = 0; c < k8; c += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load8<F>(base + r * row_bytes, c);
    for (int i = 0; i < M; ++i) {
      const __m256 xv = _mm256_loadu_ps(a.x + i * k + c);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < M; ++i) {
      float s = hsum(acc[r][i]);
      for (int64_t c = k8; c < k; ++c) s += a.x[i * k + c] * load1<F>(base + r * row_bytes, c);
      a.out[i * a.out_stride + j + r] = s;
    }
  }
}

template <WeightFormat F, int M>
void float_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  // Rows per pass: enough independent accumulator chains to hide FMA latency, within 16 ymm.
  constexpr int R = M <= 2 ? 4 : (M <= 4 ? 2 : 1);
  int64_t j = j0;
  for (; j + R <= j1; j += R) float_rows<F, M, R>(a, j);
  for (; j < j1; ++j) float_rows<F, M, 1>(a, j);
}

// int8 weights (per-row scale) against x quantized per 32-block: per block, |w| (unsigned) times x
// with w's sign (maddubs: pairs summed into int16, at most 2 * 127 * 127 < 32767), pairs summed
// into int32 (madd), widened and scaled by the x block's scale. k % 32 tail in fp32.
template <int M>
void int8_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  const int64_t k = a.w->k, kb = k / kQuantBlock, kq = kb * kQuantBlock;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t j = j0; j < j1; ++j) {
    const int8_t* wr = static_cast<const int8_t*>(a.w->data) + j * k;
    __m256 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < kb; ++b) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + b * kQuantBlock));
      const __m256i aw = _mm256_sign_epi8(wv, wv);
      for (int i = 0; i < M; ++i) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x_q + i * kq + b * kQuantBlock));
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv)), ones);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(a.x_scales[i * kb + b]), acc[i]);
      }
    }
    const float scale = a.w->scales[j];
    for (int i = 0; i < M; ++i) {
      float s = hsum(acc[i]);
      for (int64_t c = kq; c < k; ++c) s += a.x[i * k + c] * static_cast<float>(wr[c]);
      a.out[i * a.out_stride + j] = s * scale;
    }
  }
}

// int4 codes (unsigned 0..15, layout in linear.h) against x quantized per 32-block:
//   sum_c (q_c - z) * s * x_c = s * (sum_b xs_b * sum_{c in b} q_c * xq_c  -  z * sum_b x_sums_b)
// the first term in integers per block (maddubs: 2 * 15 * 127 fits int16), the zero-point term
// from the per-block sums of the quantized x, so the result is exact for the quantized x.
template <int M>
void int4_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  const WeightMatrix& w = *a.w;
  const int64_t k = w.k, kb = k / kQuantBlock, groups = k / w.group_size;
  const int64_t blocks_per_group = w.group_size / kQuantBlock;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int64_t j = j0; j < j1; ++j) {
    const uint8_t* packed = static_cast<const uint8_t*>(w.data) + j * (k / 2);
    __m256 acc[M];
    float zero_term[M];
    for (int i = 0; i < M; ++i) {
      acc[i] = _mm256_setzero_ps();
      zero_term[i] = 0.0f;
    }
    for (int64_t g = 0; g < groups; ++g) {
      const float sg = w.scales[j * groups + g];
      const float zg = w.zeros != nullptr ? w.zeros[j * groups + g] : 8.0f;
      for (int64_t b = g * blocks_per_group; b < (g + 1) * blocks_per_group; ++b) {
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + b * 16));
        const __m256i codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
        for (int i = 0; i < M; ++i) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x_q + i * k + b * kQuantBlock));
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, xv), ones);
          acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(a.x_scales[i * kb + b] * sg), acc[i]);
          zero_term[i] += sg * zg * a.x_sums[i * kb + b];
        }
      }
    }
    for (int i = 0; i < M; ++i) a.out[i * a.out_stride + j] = hsum(acc[i]) - zero_term[i];
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
template <int M> struct F32K { static void run(const LinearArgs& a, int64_t b, int64_t e) { float_decode_m<WeightFormat::kF32, M>(a, b, e); } };
template <int M> struct F16K { static void run(const LinearArgs& a, int64_t b, int64_t e) { float_decode_m<WeightFormat::kF16, M>(a, b, e); } };
template <int M> struct BF16K { static void run(const LinearArgs& a, int64_t b, int64_t e) { float_decode_m<WeightFormat::kBF16, M>(a, b, e); } };
template <int M> struct I8K { static void run(const LinearArgs& a, int64_t b, int64_t e) { int8_decode_m<M>(a, b, e); } };
template <int M> struct I4K { static void run(const LinearArgs& a, int64_t b, int64_t e) { int4_decode_m<M>(a, b, e); } };

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

void micro_avx2(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc, int64_t rows,
                bool accumulate) {
  switch (rows) {
    case 1: return micro_rows<1>(x, ldx, wp, kb, c, ldc, accumulate);
    case 2: return micro_rows<2>(x, ldx, wp, kb, c, ldc, accumulate);
    case 3: return micro_rows<3>(x, ldx, wp, kb, c, ldc, accumulate);
    case 4: return micro_rows<4>(x, ldx, wp, kb, c, ldc, accumulate);
    case 5: return micro_rows<5>(x, ldx, wp, kb, c, ldc, accumulate);
    default: return micro_rows<6>(x, ldx, wp, kb, c, ldc, accumulate);
  }
}

static_assert(kMicroRows == 6 && kMicroCols == 16 && kQuantBlock == 32, "loops above are written for these");

const LinearKernels kAvx2Kernels = {
    {by_m<F32K>, by_m<F16K>, by_m<BF16K>, by_m<I8K>, by_m<I4K>},
    micro_avx2,
    true,
};

}  // namespace

const LinearKernels* linear_kernels_avx2() { return &kAvx2Kernels; }

}  // namespace ferry::kernels::cpu

#else  // no AVX2/FMA/F16C in this build

namespace ferry::kernels::cpu {
const LinearKernels* linear_kernels_avx2() { return nullptr; }
}  // namespace ferry::kernels::cpu

#endif
