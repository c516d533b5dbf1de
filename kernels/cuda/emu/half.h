// __half and __nv_bfloat16 for the CUDA emulation build: 16-bit storage types with the conversion
// intrinsics the kernels call (round to nearest even, like the toolkit's __float2half_rn and
// __float2bfloat16_rn; a NaN becomes the canonical 0x7fff as there). Written here from the IEEE
// binary16 / bfloat16 formats, not taken from the toolkit. Host and "device" code alike.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
using half = __half;
using nv_bfloat16 = __nv_bfloat16;

namespace ferry::simt::detail {

inline uint16_t f32_to_f16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t mag = x & 0x7fffffffu;
  if (mag > 0x7f800000u) return 0x7fff;                          // NaN
  if (mag >= 0x477ff000u) return sign | 0x7c00u;                 // >= 65520 rounds to infinity
  if (mag < 0x38800000u) {                                       // below 2^-14: subnormal or zero
    const float scaled = std::bit_cast<float>(mag) * 16777216.0f;  // units of 2^-24, exact
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));   // default rounding: to even
  }
  // Rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to even; a carry out of
  // the mantissa correctly bumps the exponent.
  const uint32_t rounded = mag - (112u << 23) + 0xfffu + ((mag >> 13) & 1u);
  return sign | static_cast<uint16_t>(rounded >> 13);
}

inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t f32_to_bf16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bf16_bits_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

}  // namespace ferry::simt::detail

inline __half __float2half_rn(float f) { return __half{ferry::simt::detail::f32_to_f16_bits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return ferry::simt::detail::f16_bits_to_f32(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{ferry::simt::detail::f32_to_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return ferry::simt::detail::bf16_bits_to_f32(b.bits); }
