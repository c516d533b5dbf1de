// linear() (kernels/cpu/linear*.cc) for every weight format, odd sizes, out_stride and bias, on
// every instruction-set path this CPU has (a path it lacks is reported as skipped), against the
// reference (each row dequantized, then an fp64 dot). Also the quantize/pack/dequantize helpers.
//
// Tolerances (|got - want| per output element, S = sum_c |x_c * w_c| over the row):
//   fp32 accumulation: 1e-6 + 3e-5 * S. The fast paths sum in 8 lanes and 256-long panels, so the
//     worst-case rounding is about (k / 8 + 8) ulps of S (3e-5 S at k = 4096); a dropped or
//     doubled element at k = 4096 moves the result by ~S / 4096 = 2.4e-4 S, eight times more.
//   int8/int4 on the AVX2 decode path (m < kGemmMinRows): x is quantized per block of 32 (scale = amax / 127).
//     The kernel must equal the fp64 dot of the stored weights with that quantized x within the
//     fp32 tolerance above, and the unquantized result within the analytic bound
//     sum_blocks (scale_b / 2) * sum_{c in block} |w_c|, plus the fp32 tolerance.
//   the AMX GEMM (kAmx, m >= its gemm_min_rows, every format but fp32): x is rounded
//     to bf16 (nearest even), and so are fp16 and int4 weights (int4 as (code - zero) * scale);
//     bf16 and int8 weights are used exactly (int8: codes, the row scale applied to the sum). The
//     kernel must equal the fp64 dot of those rounded values within the fp32 tolerance of a chain of
//     k / 2 additions, 1e-6 + max(3e-5, (k / 2 + 16) * 2^-24) * S (tiles add along k serially: a
//     wrong tile index or a dropped k tail is off by ~S / k or more), and the unrounded result within
//     the rounding bound: each rounded operand has relative error <= 2^-8 (bf16 keeps 8 significant
//     bits), so |x w - x' w'| <= (2^-8 * r + 2^-16) |x w| with r rounded operands (1 or 2), summed
//     over the row, plus that fp32 tolerance.
#include "kernels/cpu/linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace ferry::kernels {
namespace {

using cpu::LinearIsa;

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// One matrix in one format, built from fp32 values, with the storage it views.
struct Built {
  WeightMatrix w;
  std::vector<float> f32;
  std::vector<uint16_t> u16;
  std::vector<int8_t> i8;
  std::vector<uint8_t> packed;
  std::vector<float> scales, zeros;
};

struct FormatCase {
  WeightFormat format;
  int64_t group_size;  // int4 only
  bool zeros;          // int4 only: asymmetric
  std::string name() const {
    std::string s = weight_format_name(format);
    if (format == WeightFormat::kInt4) s += "_g" + std::to_string(group_size) + (zeros ? "_zeros" : "_sym");
    return s;
  }
};

void build(const FormatCase& f, const std::vector<float>& src, int64_t n, int64_t k, Built* b) {
  b->w = WeightMatrix{};
  b->w.format = f.format;
  b->w.n = n;
  b->w.k = k;
  switch (f.format) {
    case WeightFormat::kF32:
      b->f32 = src;
      b->w.data = b->f32.data();
      break;
    case WeightFormat::kF16:
    case WeightFormat::kBF16:
      b->u16.resize(src.size());
      for (size_t i = 0; i < src.size(); ++i)
        b->u16[i] = f.format == WeightFormat::kF16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
      b->w.data = b->u16.data();
      break;
    case WeightFormat::kInt8:
      b->i8.resize(src.size());
      b->scales.resize(static_cast<size_t>(n));
      quantize_int8(src.data(), n, k, b->i8.data(), b->scales.data());
      b->w.data = b->i8.data();
      b->w.scales = b->scales.data();
      break;
    case WeightFormat::kInt4: {
      const size_t groups = static_cast<size_t>(n * k / f.group_size);
      b->packed.resize(static_cast<size_t>(weight_data_bytes(WeightFormat::kInt4, n, k)));
      b->scales.resize(groups);
      b->zeros.resize(f.zeros ? groups : 0);
      quantize_int4(src.data(), n, k, f.group_size, b->packed.data(), b->scales.data(),
                    f.zeros ? b->zeros.data() : nullptr);
      b->w.data = b->packed.data();
      b->w.scales = b->scales.data();
      b->w.zeros = f.zeros ? b->zeros.data() : nullptr;
      b->w.group_size = f.group_size;
      break;
    }
  }
}

// x with its first k / 32 * 32 values of each row replaced by their per-32-block int8 quantization.
std::vector<float> quantized_x(const std::vector<float>& x, int64_t m, int64_t k) {
  std::vector<float> out = x;
  const int64_t kq = k / 32 * 32;
  std::vector<int8_t> q(static_cast<size_t>(kq));
  std::vector<float> scales(static_cast<size_t>(kq / 32)), sums(scales.size());
  for (int64_t i = 0; i < m; ++i) {
    cpu::quantize_x_blocks(x.data() + i * k, kq, q.data(), scales.data(), sums.data());
    for (int64_t c = 0; c < kq; ++c) out[i * k + c] = static_cast<float>(q[c]) * scales[c / 32];
  }
  return out;
}

class LinearIsaTest : public ::testing::TestWithParam<LinearIsa> {
 protected:
  void SetUp() override {
    if (!cpu::linear_isa_supported(GetParam()))
      GTEST_SKIP() << "linear path " << cpu::linear_isa_name(GetParam()) << " is absent on this CPU/build";
    saved_ = cpu::linear_isa();
    cpu::set_linear_isa(GetParam());
  }
  void TearDown() override {
    if (cpu::linear_isa_supported(GetParam())) cpu::set_linear_isa(saved_);
  }
  LinearIsa saved_ = LinearIsa::kPortable;
};

// Whether linear() under the current path sends (format, m) to the AMX GEMM.
bool runs_amx_gemm(WeightFormat format, int64_t m) {
  return cpu::linear_isa() == LinearIsa::kAmx && cpu::linear_rounds_to_bf16(format, m);
}

float round_bf16(float v) {
  const uint32_t bits = static_cast<uint32_t>(f32_to_bf16(v)) << 16;
  float r;
  std::memcpy(&r, &bits, 4);
  return r;
}

// How the path under test computes: through linear(), or the AMX GemmFn called directly (any m).
enum class Run { kLinear, kAmxGemm };

// One (format, m, n, k) case: out_stride n + 3 with sentinels in the gap, bias on odd n.
void check_case(const FormatCase& f, int64_t m, int64_t n, int64_t k, ThreadPool* pool, Run run = Run::kLinear) {
  SCOPED_TRACE(f.name() + " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
  const uint32_t seed = static_cast<uint32_t>(m * 7919 + n * 131 + k);
  Built b;
  build(f, random_vec(static_cast<size_t>(n * k), seed), n, k, &b);
  const auto x = random_vec(static_cast<size_t>(m * k), seed + 1);
  const std::vector<float> bias_v = random_vec(static_cast<size_t>(n), seed + 2);
  const float* bias = (n % 2 == 1) ? bias_v.data() : nullptr;
  const int64_t stride = n + 3;
  constexpr float kSentinel = 12345.0f;
  std::vector<float> got(static_cast<size_t>(m * stride), kSentinel), want(got.size(), kSentinel);

  bool amx = false;
  if (run == Run::kAmxGemm) {
    const cpu::LinearArgs args{got.data(), stride, x.data(), &b.w, m, nullptr, nullptr, nullptr};
    ASSERT_TRUE(cpu::linear_gemm_amx()(pool != nullptr ? *pool : ThreadPool::default_pool(), args, bias));
    amx = true;
  } else {
    Context cpu_ctx{Backend::kCpu};
    cpu_ctx.pool = pool;
    linear(cpu_ctx, got.data(), stride, x.data(), b.w, bias, m);
    amx = runs_amx_gemm(f.format, m);
  }

  const bool int_format = f.format == WeightFormat::kInt8 || f.format == WeightFormat::kInt4;
  const int64_t gemm_min_rows = cpu::linear_gemm_min_rows();
  const bool x_quantized = !amx && int_format && cpu::linear_isa() != LinearIsa::kPortable && m < gemm_min_rows;
  std::vector<float> xr = x_quantized ? quantized_x(x, m, k) : x;
  std::vector<float> wd(static_cast<size_t>(n * k));
  dequantize_weight(b.w, wd.data());
  // The AMX GEMM's operands: x, fp16 and int4 weights rounded to bf16 (wr: an fp32 matrix of them).
  const bool w_rounded = amx && (f.format == WeightFormat::kF16 || f.format == WeightFormat::kInt4);
  if (amx)
    for (float& v : xr) v = round_bf16(v);
  std::vector<float> wr;
  WeightMatrix w_ref = b.w;
  if (w_rounded) {
    wr = wd;
    for (float& v : wr) v = round_bf16(v);
    w_ref = WeightMatrix{WeightFormat::kF32, n, k, wr.data(), nullptr, nullptr, 0};
  }
  const std::vector<float>& wu = w_rounded ? wr : wd;  // the weights the kernel multiplies
  linear(Context{Backend::kReference}, want.data(), stride, xr.data(), w_ref, bias, m);
  std::vector<float> exact(got.size(), kSentinel);
  if (x_quantized || amx) linear(Context{Backend::kReference}, exact.data(), stride, x.data(), b.w, bias, m);

  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < stride; ++j) {
      const size_t o = static_cast<size_t>(i * stride + j);
      if (j >= n) {
        ASSERT_EQ(got[o], kSentinel) << "wrote past n at row " << i << " col " << j;
        continue;
      }
      double s_abs = 0.0, q_bound = 0.0;
      for (int64_t c = 0; c < k; ++c) s_abs += std::fabs(static_cast<double>(xr[i * k + c]) * wu[j * k + c]);
      const double fp32_rel = amx ? std::max(3e-5, (static_cast<double>(k) / 2 + 16) * 0x1p-24) : 3e-5;
      const double tol = 1e-6 + fp32_rel * s_abs;
      ASSERT_LE(std::fabs(got[o] - want[o]), tol) << "row " << i << " col " << j << " want " << want[o];
      if (amx) {
        double s_exact = 0.0;
        for (int64_t c = 0; c < k; ++c) s_exact += std::fabs(static_cast<double>(x[i * k + c]) * wd[j * k + c]);
        const double rel = 0x1p-8 * (w_rounded ? 2 : 1) + 0x1p-16;
        ASSERT_LE(std::fabs(got[o] - exact[o]), rel * s_exact + tol) << "row " << i << " col " << j;
        continue;
      }
      if (!x_quantized) continue;
      for (int64_t b0 = 0; b0 + 32 <= k; b0 += 32) {
        double amax = 0.0, wsum = 0.0;
        for (int64_t c = b0; c < b0 + 32; ++c) {
          amax = std::max(amax, std::fabs(static_cast<double>(x[i * k + c])));
          wsum += std::fabs(wd[j * k + c]);
        }
        q_bound += amax / 127.0 / 2.0 * wsum;
      }
      ASSERT_LE(std::fabs(got[o] - exact[o]), q_bound * (1 + 1e-5) + tol) << "row " << i << " col " << j;
    }
  }
}

std::vector<FormatCase> all_formats() {
  std::vector<FormatCase> v = {{WeightFormat::kF32, 0, false},
                               {WeightFormat::kF16, 0, false},
                               {WeightFormat::kBF16, 0, false},
                               {WeightFormat::kInt8, 0, false}};
  for (int64_t g : {32, 64, 128})
    for (bool z : {false, true}) v.push_back({WeightFormat::kInt4, g, z});
  return v;
}

TEST_P(LinearIsaTest, EveryFormatOddSizesAgainstReference) {
  ThreadPool pool(3);  // three chunks on two cores: splits are exercised whatever the machine
  for (const FormatCase& f : all_formats()) {
    // k = 7: shorter than one x-quantization block (int8 runs all in the fp32 tail).
    // k = 172: a small model's FFN input (k % 8 = 4: the masked tail step after 21 full ones).
    for (int64_t k : {7, 32, 96, 130, 172, 4096}) {
      if (f.format == WeightFormat::kInt4 && k % f.group_size != 0) continue;
      for (int64_t n : {1, 7, 33, 257})
        for (int64_t m : {1, 3, 8, 17, 64}) {
          check_case(f, m, n, k, &pool);
          if (HasFatalFailure()) return;
        }
    }
  }
}

TEST_P(LinearIsaTest, EveryDecodeRowCountAndDefaultPool) {
  // m = 1..kDecodeMaxRows each have their own kernel instance; 9 is two decode passes; the last
  // two are the largest decode-path m and the first GEMM. k = 67 gives every instance its k % 8
  // tail (int4 needs whole groups: k = 256 only).
  for (const FormatCase& f : all_formats())
    for (int64_t k : {256, 67}) {
      if (f.format == WeightFormat::kInt4 && k % f.group_size != 0) continue;
      for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 9, 63, 64}) {
        check_case(f, m, 19, k, nullptr);
        if (HasFatalFailure()) return;
      }
    }
}

TEST_P(LinearIsaTest, MatmulIsLinearForFloatDtypes) {
  const int64_t m = 5, n = 37, k = 131;
  const auto w = random_vec(static_cast<size_t>(n * k), 9), x = random_vec(static_cast<size_t>(m * k), 10);
  const auto bias = random_vec(static_cast<size_t>(n), 11);
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]);
  for (auto [ptr, dt] : {std::pair<const void*, DType>{w.data(), DType::kF32}, {wb.data(), DType::kBF16}}) {
    std::vector<float> a(static_cast<size_t>(m * n)), r(a.size());
    matmul(Context{Backend::kCpu}, a.data(), x.data(), ptr, dt, bias.data(), m, n, k);
    matmul(Context{Backend::kReference}, r.data(), x.data(), ptr, dt, bias.data(), m, n, k);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], r[i], 1e-6 + 3e-5 * k) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, LinearIsaTest, ::testing::Values(LinearIsa::kPortable, LinearIsa::kAvx2,
                                                                         LinearIsa::kAvx512, LinearIsa::kAmx),
                         [](const auto& info) { return std::string(cpu::linear_isa_name(info.param)); });

TEST(LinearTest, IsaNameIsAPathThisMachineHas) {
  const std::string name = cpu_isa_name();
  if (std::getenv("FERRY_LINEAR_ISA") != nullptr) GTEST_SKIP() << "FERRY_LINEAR_ISA chooses the path in this run";
  // The default is the widest path the machine has.
  LinearIsa best = LinearIsa::kPortable;
  for (LinearIsa isa : {LinearIsa::kAvx2, LinearIsa::kAvx512, LinearIsa::kAmx})
    if (cpu::linear_isa_supported(isa)) best = isa;
  EXPECT_EQ(name, cpu::linear_isa_name(best));
}

TEST(QuantizeTest, VectorisedXQuantizationMatchesScalarBitForBit) {
  const cpu::LinearKernels* avx2 = cpu::linear_kernels_avx2();
  if (avx2 == nullptr || !cpu::linear_isa_supported(LinearIsa::kAvx2))
    GTEST_SKIP() << "avx2 path absent on this CPU/build";
  const int64_t len = 32 * 37;
  auto x = random_vec(static_cast<size_t>(len), 30, -4.0f, 4.0f);
  for (int64_t c = 64; c < 96; ++c) x[static_cast<size_t>(c)] = 0.0f;  // an all-zero block
  x[5] = 3.5f / 127.0f * 2.5f;  // lands on a .5 tie only if rounding is exact; harmless otherwise
  std::vector<int8_t> q0(static_cast<size_t>(len)), q1(q0.size());
  std::vector<float> s0(static_cast<size_t>(len / 32)), s1(s0.size()), u0(s0.size()), u1(s0.size());
  cpu::quantize_x_blocks(x.data(), len, q0.data(), s0.data(), u0.data());
  avx2->quantize_x(x.data(), len, q1.data(), s1.data(), u1.data());
  EXPECT_EQ(q0, q1);
  EXPECT_EQ(s0, s1);
  EXPECT_EQ(u0, u1);
  EXPECT_EQ(s0[2], 0.0f);
  for (size_t b = 0; b < s0.size(); ++b)
    for (size_t c = 0; c < 32; ++c)
      ASSERT_LE(std::fabs(q0[b * 32 + c] * s0[b] - x[b * 32 + c]), s0[b] * 0.5f * (1 + 1e-5f));
}

TEST(QuantizeTest, Int8RoundTripWithinHalfAStep) {
  const int64_t n = 9, k = 77;
  auto w = random_vec(static_cast<size_t>(n * k), 20, -3.0f, 3.0f);
  for (int64_t c = 0; c < k; ++c) w[static_cast<size_t>(4 * k + c)] = 0.0f;  // an all-zero row
  std::vector<int8_t> q(w.size());
  std::vector<float> scales(static_cast<size_t>(n)), back(w.size());
  quantize_int8(w.data(), n, k, q.data(), scales.data());
  EXPECT_EQ(scales[4], 0.0f);
  WeightMatrix wm{WeightFormat::kInt8, n, k, q.data(), scales.data(), nullptr, 0};
  dequantize_weight(wm, back.data());
  for (int64_t r = 0; r < n; ++r) {
    float amax = 0.0f;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(w[r * k + c]));
    EXPECT_FLOAT_EQ(scales[r], amax / 127.0f);
    for (int64_t c = 0; c < k; ++c) {
      const size_t i = static_cast<size_t>(r * k + c);
      ASSERT_GE(q[i], -127);
      ASSERT_LE(std::fabs(back[i] - w[i]), scales[r] * 0.5f * (1 + 1e-5f)) << r << "," << c;
    }
  }
}

TEST(QuantizeTest, Int4RoundTripWithinHalfAStep) {
  const int64_t n = 5, k = 256;
  auto w = random_vec(static_cast<size_t>(n * k), 21, -2.0f, 1.0f);
  for (int64_t c = 0; c < 32; ++c) w[static_cast<size_t>(c)] = 0.75f;  // a constant group
  for (int64_t g : {32, 64, 128}) {
    for (bool asym : {false, true}) {
      const int64_t groups = n * k / g;
      std::vector<uint8_t> packed(static_cast<size_t>(weight_data_bytes(WeightFormat::kInt4, n, k)));
      std::vector<float> scales(static_cast<size_t>(groups)), zeros(asym ? groups : 0), back(w.size());
      quantize_int4(w.data(), n, k, g, packed.data(), scales.data(), asym ? zeros.data() : nullptr);
      WeightMatrix wm{WeightFormat::kInt4, n, k, packed.data(), scales.data(), asym ? zeros.data() : nullptr, g};
      dequantize_weight(wm, back.data());
      for (size_t i = 0; i < w.size(); ++i) {
        const float scale = scales[i / static_cast<size_t>(g)];
        ASSERT_LE(std::fabs(back[i] - w[i]), scale * 0.5f * (1 + 1e-5f) + 1e-7f)
            << "group " << g << (asym ? " asym" : " sym") << " i " << i;
      }
    }
  }
}

TEST(QuantizeTest, PackInt4CodesReadBack) {
  const int64_t n = 3, k = 96;
  std::vector<uint8_t> codes(static_cast<size_t>(n * k));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>((i * 7 + i / 5) % 16);
  std::vector<uint8_t> packed(static_cast<size_t>(weight_data_bytes(WeightFormat::kInt4, n, k)));
  ASSERT_EQ(packed.size(), codes.size() / 2);
  pack_int4(codes.data(), n, k, packed.data());
  const int64_t g = 32, groups = n * k / g;
  std::vector<float> ones(static_cast<size_t>(groups), 1.0f), zero_pts(static_cast<size_t>(groups), 0.0f);
  std::vector<float> back(codes.size());
  // Scale 1 and zero point 0 read the codes themselves; symmetric (zero point 8) reads code - 8.
  dequantize_weight(WeightMatrix{WeightFormat::kInt4, n, k, packed.data(), ones.data(), zero_pts.data(), g},
                    back.data());
  for (size_t i = 0; i < codes.size(); ++i) ASSERT_EQ(back[i], static_cast<float>(codes[i])) << i;
  dequantize_weight(WeightMatrix{WeightFormat::kInt4, n, k, packed.data(), ones.data(), nullptr, g}, back.data());
  for (size_t i = 0; i < codes.size(); ++i) ASSERT_EQ(back[i], static_cast<float>(codes[i]) - 8.0f) << i;
}

TEST(QuantizeTest, WeightDataBytes) {
  EXPECT_EQ(weight_data_bytes(WeightFormat::kF32, 3, 64), 3 * 64 * 4);
  EXPECT_EQ(weight_data_bytes(WeightFormat::kBF16, 3, 64), 3 * 64 * 2);
  EXPECT_EQ(weight_data_bytes(WeightFormat::kF16, 3, 64), 3 * 64 * 2);
  EXPECT_EQ(weight_data_bytes(WeightFormat::kInt8, 3, 64), 3 * 64);
  EXPECT_EQ(weight_data_bytes(WeightFormat::kInt4, 3, 64), 3 * 32);
  EXPECT_STREQ(weight_format_name(WeightFormat::kInt4), "int4");
}

// The AMX GEMM called directly (whatever kAmx's gemm_min_rows) on the shapes its tiling has edges on:
// m around 16 and 32 (tiles of 16 x rows, 2 x 2 blocks of C), n around 16 and 32 (tiles of 16
// weight rows, units of 32 columns), k = 32 j +- 1 (the zero-padded k tail; int4 needs whole
// groups) and around 512 (blocks of k whose partial sums wait between blocks).
TEST(LinearAmxTest, TileEdgesAgainstReference) {
  if (cpu::linear_gemm_amx() == nullptr) GTEST_SKIP() << "AMX GEMM absent on this CPU/build";
  ThreadPool pool(3);
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= 17; ++m) ms.push_back(m);
  for (int64_t m : {31, 32, 33, 65}) ms.push_back(m);
  for (const FormatCase& f : all_formats()) {
    if (f.format == WeightFormat::kF32) continue;
    for (int64_t k : {31, 32, 33, 63, 64, 65, 128, 256, 257, 511, 512, 513, 544}) {
      if (f.format == WeightFormat::kInt4 && k % f.group_size != 0) continue;
      for (int64_t n : {1, 15, 16, 17, 32, 33})
        for (int64_t m : ms) {
          check_case(f, m, n, k, &pool, Run::kAmxGemm);
          if (HasFatalFailure()) return;
        }
    }
  }
}

TEST(LinearAmxTest, Fp32WeightsAreLeftToTheFp32Gemm) {
  if (cpu::linear_gemm_amx() == nullptr) GTEST_SKIP() << "AMX GEMM absent on this CPU/build";
  const int64_t m = 20, n = 8, k = 64;
  const auto w = random_vec(static_cast<size_t>(n * k), 40), x = random_vec(static_cast<size_t>(m * k), 41);
  std::vector<float> out(static_cast<size_t>(m * n), 7.0f);
  const WeightMatrix wm{WeightFormat::kF32, n, k, w.data(), nullptr, nullptr, 0};
  const cpu::LinearArgs args{out.data(), n, x.data(), &wm, m, nullptr, nullptr, nullptr};
  EXPECT_FALSE(cpu::linear_gemm_amx()(ThreadPool::default_pool(), args, nullptr));
  for (float v : out) ASSERT_EQ(v, 7.0f);
}

// Each output is summed by one tile chain whatever thread runs it: a pool run (x packing and
// columns split over three threads) equals a caller-only one bit for bit.
TEST(LinearAmxTest, PoolAndCallerOnlyRunsAreIdentical) {
  if (cpu::linear_gemm_amx() == nullptr) GTEST_SKIP() << "AMX GEMM absent on this CPU/build";
  ThreadPool pool(3), caller_only(1);
  const int64_t m = 413, n = 301;
  for (const FormatCase& f : all_formats()) {
    if (f.format == WeightFormat::kF32) continue;
    for (int64_t k : {320, 1100}) {  // one k block of 512; three, the last with a k tail
      if (f.format == WeightFormat::kInt4 && k % f.group_size != 0) continue;
      SCOPED_TRACE(f.name() + " k=" + std::to_string(k));
      Built b;
      build(f, random_vec(static_cast<size_t>(n * k), 50), n, k, &b);
      const auto x = random_vec(static_cast<size_t>(m * k), 51);
      const auto bias = random_vec(static_cast<size_t>(n), 52);
      std::vector<float> a(static_cast<size_t>(m * n)), c(a.size());
      ASSERT_TRUE(cpu::linear_gemm_amx()(pool, {a.data(), n, x.data(), &b.w, m, nullptr, nullptr, nullptr},
                                         bias.data()));
      ASSERT_TRUE(cpu::linear_gemm_amx()(caller_only, {c.data(), n, x.data(), &b.w, m, nullptr, nullptr, nullptr},
                                         bias.data()));
      ASSERT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
    }
  }
}

// Sizes at the edges of the AVX-512 decode loops (kernels/cpu/linear_avx512.cc), run on every path:
// its quantized x and int weights go in chunks of 4 blocks of 32 (k = 32 .. 224: a short last
// chunk of 1, 2 or 3 blocks, or none), int4 groups that straddle chunks (96 = 3 blocks) or span
// two (256), and fp32-format columns cut into segments (k = 1037 at m = 8: 512, 512, then 13 in a
// masked step); n = 37 is no multiple of the 4 or 2 weight rows per pass nor of 16-row blocks.
TEST_P(LinearIsaTest, ChunkTailsOddGroupsAndColumnSegments) {
  ThreadPool pool(2);
  std::vector<FormatCase> formats = {{WeightFormat::kF32, 0, false}, {WeightFormat::kBF16, 0, false},
                                     {WeightFormat::kF16, 0, false}, {WeightFormat::kInt8, 0, false}};
  for (int64_t g : {32, 64, 96, 256})
    for (bool z : {false, true}) formats.push_back({WeightFormat::kInt4, g, z});
  for (const FormatCase& f : formats)
    for (int64_t k : {32, 64, 96, 160, 192, 224, 288, 768, 1037}) {
      if (f.format == WeightFormat::kInt4 && k % f.group_size != 0) continue;
      for (int64_t m : {1, 2, 5, 8}) {
        check_case(f, m, 37, k, &pool);
        if (HasFatalFailure()) return;
      }
    }
}

// Where the AVX-512 quantize_x (private layout, see linear_avx512.cc) stores element c of a row of
// len values: chunks of 4 blocks at 128 c; in a chunk of nb blocks, elements 0..15 of each block
// first, then elements 16..31 of each.
int64_t avx512_x_position(int64_t len, int64_t c) {
  const int64_t chunk0 = c / 128 * 128, nb = std::min<int64_t>(4, (len - chunk0) / 32);
  const int64_t block = (c - chunk0) / 32, e = c % 32;
  return chunk0 + (e < 16 ? 16 * block + e : 16 * nb + 16 * block + (e - 16));
}

TEST(QuantizeTest, Avx512XQuantizationMatchesScalarBitForBit) {
  const cpu::LinearKernels* avx512 = cpu::linear_kernels_avx512();
  if (avx512 == nullptr || !cpu::linear_isa_supported(LinearIsa::kAvx512))
    GTEST_SKIP() << "avx512 path absent on this CPU/build";
  // 36 blocks: whole chunks only; 37, 38, 39: a last chunk of 1, 2, 3 blocks; 1: one short chunk.
  for (int64_t num_blocks : {36, 37, 38, 39, 1}) {
    SCOPED_TRACE("blocks " + std::to_string(num_blocks));
    const int64_t len = 32 * num_blocks;
    auto x = random_vec(static_cast<size_t>(len), 31 + static_cast<uint32_t>(num_blocks), -4.0f, 4.0f);
    if (num_blocks > 3)
      for (int64_t c = 64; c < 96; ++c) x[static_cast<size_t>(c)] = 0.0f;  // an all-zero block
    x[5] = 3.5f / 127.0f * 2.5f;
    x[len - 1] = -100.0f;  // the last block's amax: -127 exactly
    std::vector<int8_t> q0(static_cast<size_t>(len)), q1(q0.size(), 99);
    std::vector<float> s0(static_cast<size_t>(num_blocks)), s1(s0.size()), u0(s0.size()), u1(s0.size());
    cpu::quantize_x_blocks(x.data(), len, q0.data(), s0.data(), u0.data());
    avx512->quantize_x(x.data(), len, q1.data(), s1.data(), u1.data());
    EXPECT_EQ(s0, s1);
    EXPECT_EQ(u0, u1);
    std::vector<bool> seen(q1.size(), false);
    for (int64_t c = 0; c < len; ++c) {
      const int64_t pos = avx512_x_position(len, c);
      ASSERT_TRUE(pos >= 0 && pos < len && !seen[static_cast<size_t>(pos)]) << "element " << c << " at " << pos;
      seen[static_cast<size_t>(pos)] = true;
      ASSERT_EQ(q1[static_cast<size_t>(pos)], q0[static_cast<size_t>(c)]) << "element " << c;
    }
  }
}

}  // namespace
}  // namespace ferry::kernels
