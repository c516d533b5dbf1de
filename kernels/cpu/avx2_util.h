// Inline AVX2 + FMA helpers shared by the files compiled with those flags (attention_avx2.cc,
// linear_avx2.cc): horizontal sums and exp. Include only from such a file; elsewhere this header is
// empty.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)

#include <immintrin.h>

namespace ferry::kernels::cpu::avx2 {

// The sum of a's 8 lanes.
inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// {sum(a), sum(b), sum(c), sum(d)} of 8 lanes each, in 5 instructions (4 separate reductions take
// ~24): at small k or head_dim the reductions cost as much as the products.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// exp(x) for x <= 0, 8 lanes: x = m ln2 + t with |t| <= ln2/2, exp(t) by its Taylor polynomial to
// degree 7 (truncation error t^8/8! < 6e-9 relative, below fp32's 6e-8 ulp), 2^m built in the
// exponent bits. Below -87.3 the result would be subnormal: returned as 0.
inline __m256 exp_neg(__m256 x) {
  const __m256 kLog2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 kLn2Hi = _mm256_set1_ps(0.693359375f);  // ln 2 split so m * kLn2Hi is exact
  const __m256 kLn2Lo = _mm256_set1_ps(-2.12194440e-4f);
  const __m256 kMin = _mm256_set1_ps(-87.3f);
  const __m256 too_small = _mm256_cmp_ps(x, kMin, _CMP_LT_OQ);
  x = _mm256_max_ps(x, kMin);
  const __m256 m = _mm256_round_ps(_mm256_mul_ps(x, kLog2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 t = _mm256_fnmadd_ps(m, kLn2Hi, x);
  t = _mm256_fnmadd_ps(m, kLn2Lo, t);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(m), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(too_small, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

}  // namespace ferry::kernels::cpu::avx2

#endif
