// Internal to kernels/cpu: small pieces every CPU operator file uses -- the portable fp32 dot
// product and the run-time CPU feature checks the ISA dispatch of each operator family asks.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace ferry::kernels::cpu {

// sum_i a[i] * b[i] with 8 independent accumulators, so the compiler vectorises it without
// -ffast-math; the summation order is fixed (results are reproducible across calls).
inline float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = 0.0f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

// AVX2 and FMA, as the *_avx2.cc files are compiled for.
inline bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// F16C from CPUID leaf 1, ECX bit 29: clang 14's __builtin_cpu_supports does not know "f16c".
inline bool cpu_has_f16c() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
#else
  return false;
#endif
}

// AVX512_VNNI from CPUID leaf 7 sub-leaf 0, ECX bit 11.
inline bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 11)) != 0;
#else
  return false;
#endif
}

// AVX512_BF16 from CPUID leaf 7 sub-leaf 1, EAX bit 5 (not every compiler's
// __builtin_cpu_supports knows "avx512bf16").
inline bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 5)) != 0;
#else
  return false;
#endif
}

}  // namespace ferry::kernels::cpu
