// Host helpers of kernels.h that build and read back quantized weight matrices (quantize_int8,
// quantize_int4, pack_int4, dequantize_weight), and the reference linear that reads them. The int4
// byte layout is the one in kernels/cpu/linear.h (int4_code).
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/linear.h"
#include "kernels/kernels.h"

namespace ferry::kernels {

namespace {

// Round to nearest, ties to even, in double so the result does not depend on fp32 contraction.
int32_t round_even(double v) { return static_cast<int32_t>(std::nearbyint(v)); }

// Scale and zero point of one group of int4 values (see quantize_int4 in kernels.h).
void int4_group_params(const float* w, int64_t len, bool asymmetric, float* scale, float* zero) {
  float lo = w[0], hi = w[0];
  for (int64_t c = 1; c < len; ++c) {
    lo = std::min(lo, w[c]);
    hi = std::max(hi, w[c]);
  }
  if (!asymmetric) {
    *scale = std::max(std::fabs(lo), std::fabs(hi)) / 7.0f;
    *zero = 8.0f;
    return;
  }
  if (hi > lo) {
    // Codes 0 and 15 land exactly on min and max: the zero point is a float, not rounded.
    *scale = (hi - lo) / 15.0f;
    *zero = -lo / *scale;
  } else {
    // A constant group: +-1 step around zero point 8 represents it exactly (0 gives scale 0).
    *scale = std::fabs(hi);
    *zero = 8.0f;
  }
}

}  // namespace

void quantize_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scales) {
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    float amax = 0.0f;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(row[c]));
    const float scale = amax / 127.0f;
    scales[r] = scale;
    for (int64_t c = 0; c < k; ++c) {
      const int32_t v = scale > 0.0f ? round_even(static_cast<double>(row[c]) / scale) : 0;
      q[r * k + c] = static_cast<int8_t>(std::clamp(v, -127, 127));
    }
  }
}

void quantize_int4(const float* w, int64_t n, int64_t k, int64_t group_size, uint8_t* packed, float* scales,
                   float* zeros) {
  FERRY_CHECK(group_size >= 32 && group_size % 32 == 0 && k % group_size == 0);
  const int64_t groups = k / group_size;
  std::vector<uint8_t> codes(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = w + r * k + g * group_size;
      float scale, zero;
      int4_group_params(src, group_size, zeros != nullptr, &scale, &zero);
      scales[r * groups + g] = scale;
      if (zeros != nullptr) zeros[r * groups + g] = zero;
      for (int64_t c = 0; c < group_size; ++c) {
        const int32_t v = scale > 0.0f ? round_even(static_cast<double>(src[c]) / scale + zero)
                                       : static_cast<int32_t>(zero);
        codes[static_cast<size_t>(g * group_size + c)] = static_cast<uint8_t>(std::clamp(v, 0, 15));
      }
    }
    pack_int4(codes.data(), 1, k, packed + r * (k / 2));
  }
}

void pack_int4(const uint8_t* codes, int64_t n, int64_t k, uint8_t* packed) {
  FERRY_CHECK(k % 32 == 0);
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* src = codes + r * k;
    uint8_t* dst = packed + r * (k / 2);
    for (int64_t b = 0; b < k / 32; ++b)
      for (int64_t i = 0; i < 16; ++i)
        dst[b * 16 + i] = static_cast<uint8_t>((src[b * 32 + i] & 15) | ((src[b * 32 + 16 + i] & 15) << 4));
  }
}

void dequantize_weight(const WeightMatrix& w, float* out) {
  for (int64_t r = 0; r < w.n; ++r) cpu::dequantize_segment(w, r, 0, w.k, out + r * w.k);
}

namespace cpu {

void linear_reference(float* out, int64_t out_stride, const float* x, const WeightMatrix& w, const float* bias,
                      int64_t m) {
  std::vector<float> row(static_cast<size_t>(w.k));
  for (int64_t j = 0; j < w.n; ++j) {
    dequantize_segment(w, j, 0, w.k, row.data());
    for (int64_t i = 0; i < m; ++i) {
      double s = bias != nullptr ? bias[j] : 0.0;
      for (int64_t c = 0; c < w.k; ++c) s += static_cast<double>(x[i * w.k + c]) * row[static_cast<size_t>(c)];
      out[i * out_stride + j] = static_cast<float>(s);
    }
  }
}

}  // namespace cpu
}  // namespace ferry::kernels
