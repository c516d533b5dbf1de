// int8- and int4-weight linear layers on the GPU against the reference kernels::linear with the same
// WeightMatrix (kernels/cpu/quantize.cc: each row dequantized, then an fp64 dot), on random inputs
// quantized by kernels::quantize_int8 / quantize_int4 (the CPU engine's quantizers).
// Tolerances, per output element, with S = sum_c |x_c * w_c| over the row (w dequantized):
//   linear_int8 / linear_int4 (fp32 x, fp32 sums: each lane sums k / 32 or k / 256 terms, then 5
//     shuffle levels): 1e-6 + 3e-5 S, the bound tests/kernels/linear_test.cc gives fp32 accumulation.
//   The GEMM paths (x rounded to bf16; int8 weights exact, int4 weights dequantized and rounded to
//     bf16; cuBLASLt's fp32 accumulation in an order we do not know): int8 1e-5 + 3e-4 S (k u with
//     u = 2^-24 at k ~ 5000) against the reference fed the same bf16-rounded x; int4 against the
//     reference with bf16-rounded x and weights, the same bound; and 1e-5 + 2^-8 S (int8) or 2^-7 S
//     (int4: two roundings) against the unrounded inputs (each rounding costs at most 2^-8 of a term).
// Sizes: odd n (tails of a block's 8 features), int8 with k odd (scalar path) or a multiple of 4
// that is not a multiple of 128 (vector path with a lane tail), int4 with k an odd number of
// 128-wide groups (the 32 lanes' words end mid-stride) in groups of 32, 64, 128, with and without
// zero points; m = 1, 3 (inside one 8-row tile) and 17 (three tiles, the last partial; also past
// kQuantizedGemvMaxRows, so the matmul functions take the GEMM path).
#include <cstring>
#include <functional>
#include <string>

#include "kernels/cuda/linear_int4.cuh"
#include "kernels/cuda/linear_int8.cuh"
#include "kernels/cuda/quantized_gemm.h"
#include "kernels/kernels.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace ferry::kernels::cuda {
namespace {

using testing::CudaTest;
using testing::DeviceBuffer;
using testing::random_floats;

// (n, k) per format. The emulator pays per thread: smaller.
#if defined(FERRY_CUDA_EMULATION)
constexpr std::pair<int64_t, int64_t> kInt8Shapes[] = {{77, 1029}, {130, 1028}};
constexpr std::pair<int64_t, int64_t> kInt4Shapes[] = {{77, 1152}, {130, 384}};
#else
constexpr std::pair<int64_t, int64_t> kInt8Shapes[] = {{769, 5125}, {5125, 4100}};
constexpr std::pair<int64_t, int64_t> kInt4Shapes[] = {{769, 5248}, {5125, 4224}};
#endif
constexpr int64_t kRowCounts[] = {1, 3, 17};

// How one matrix is stored: int8, or int4 with a group size and zero points or not.
struct Storage {
  WeightFormat format = WeightFormat::kInt8;
  int64_t group_size = 0;
  bool zero_points = false;
  std::string name() const {
    if (format == WeightFormat::kInt8) return "int8";
    return "int4 g" + std::to_string(group_size) + (zero_points ? " zeros" : "");
  }
};

std::vector<Storage> all_storages() {
  std::vector<Storage> v = {{WeightFormat::kInt8, 0, false}};
  for (int64_t g : {32, 64, 128})
    for (bool z : {false, true}) v.push_back({WeightFormat::kInt4, g, z});
  return v;
}

std::vector<float> bf16_rounded(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = bf16_to_f32(f32_to_bf16(v[i]));
  return r;
}

struct Problem {
  Storage st;
  int64_t m, n, k;
  std::vector<float> x, bias, w_deq;
  std::vector<uint8_t> data;  // int8 codes or packed int4 codes
  std::vector<float> scales, zeros;

  Problem(const Storage& s, int64_t m_, int64_t n_, int64_t k_, uint32_t seed) : st(s), m(m_), n(n_), k(k_) {
    x = random_floats(m * k, seed);
    bias = random_floats(n, seed + 1);
    const std::vector<float> w = random_floats(n * k, seed + 2, -0.5f, 0.5f);
    data.resize(static_cast<size_t>(weight_data_bytes(st.format, n, k)));
    if (st.format == WeightFormat::kInt8) {
      scales.resize(n);
      quantize_int8(w.data(), n, k, reinterpret_cast<int8_t*>(data.data()), scales.data());
    } else {
      scales.resize(n * (k / st.group_size));
      if (st.zero_points) zeros.resize(scales.size());
      quantize_int4(w.data(), n, k, st.group_size, data.data(), scales.data(), st.zero_points ? zeros.data() : nullptr);
    }
    w_deq.resize(n * k);
    dequantize_weight(matrix(), w_deq.data());
  }
  std::string name() const {
    return st.name() + " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
  }
  WeightMatrix matrix() const {
    WeightMatrix wm;
    wm.format = st.format;
    wm.n = n;
    wm.k = k;
    wm.data = data.data();
    wm.scales = scales.data();
    wm.zeros = zeros.empty() ? nullptr : zeros.data();
    wm.group_size = st.group_size;
    return wm;
  }
  std::vector<float> reference(const std::vector<float>& xin, bool with_bias) const {
    std::vector<float> out(m * n);
    linear(Context{Backend::kReference}, out.data(), n, xin.data(), matrix(), with_bias ? bias.data() : nullptr, m);
    return out;
  }
  // The reference with the dequantized weights rounded to bf16 (what int4's GEMM path multiplies).
  std::vector<float> reference_bf16_weights(const std::vector<float>& xin) const {
    const std::vector<float> w16 = bf16_rounded(w_deq);
    WeightMatrix wm;
    wm.format = WeightFormat::kF32;
    wm.n = n;
    wm.k = k;
    wm.data = w16.data();
    std::vector<float> out(m * n);
    linear(Context{Backend::kReference}, out.data(), n, xin.data(), wm, bias.data(), m);
    return out;
  }
  // S[i, j] = sum_c |x[i, c] * w[j, c]|.
  std::vector<double> magnitude() const {
    std::vector<double> s(m * n, 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < k; ++c) s[i * n + j] += std::fabs(static_cast<double>(x[i * k + c]) * w_deq[j * k + c]);
    return s;
  }
};

// A problem's inputs on the device, and a poisoned output.
struct OnDevice {
  explicit OnDevice(const Problem& p)
      : x(p.x), scales(p.scales), bias(p.bias), out(p.m * p.n), zeros(p.zeros.empty() ? 1 : p.zeros.size()), w(p.data) {
    if (!p.zeros.empty()) zeros.upload(p.zeros);
  }
  DeviceBuffer<float> x, scales, bias, out, zeros;
  DeviceBuffer<uint8_t> w;
};

// The few-rows kernel of the problem's format.
Status run_kernel(const Problem& p, OnDevice& d, float* out, const float* x, const float* bias, cudaStream_t stream) {
  if (p.st.format == WeightFormat::kInt8)
    return linear_int8(out, p.n, x, reinterpret_cast<const int8_t*>(d.w.get()), d.scales.get(), bias, p.m, p.n, p.k,
                       stream);
  return linear_int4(out, p.n, x, d.w.get(), d.scales.get(), p.zeros.empty() ? nullptr : d.zeros.get(),
                     p.st.group_size, bias, p.m, p.n, p.k, stream);
}

// The matmul function (kernel or GEMM path) of the problem's format.
Status run_matmul(CublasGemm& gemm, const Problem& p, OnDevice& d, const QuantizedGemmWorkspace& ws,
                  const float* bias) {
  if (p.st.format == WeightFormat::kInt8)
    return int8_matmul(gemm, d.out.get(), d.x.get(), reinterpret_cast<const int8_t*>(d.w.get()), d.scales.get(), bias,
                       p.m, p.n, p.k, ws);
  return int4_matmul(gemm, d.out.get(), d.x.get(), d.w.get(), d.scales.get(), p.zeros.empty() ? nullptr : d.zeros.get(),
                     p.st.group_size, bias, p.m, p.n, p.k, ws);
}

// Every storage with every (n, k) of its shapes and every m of kRowCounts, seeded from `seed` on.
void for_each_problem(uint32_t seed, const std::function<void(const Problem&)>& f) {
  for (const Storage& st : all_storages()) {
    const auto& shapes = st.format == WeightFormat::kInt8 ? kInt8Shapes : kInt4Shapes;
    for (auto [n, k] : shapes) {
      if (st.format == WeightFormat::kInt4 && k % st.group_size != 0) continue;
      for (int64_t m : kRowCounts) f(Problem(st, m, n, k, seed += 3));
    }
  }
}

void expect_within(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& s,
                   double atol, double rel_s, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    ASSERT_LE(err, atol + rel_s * s[i]) << what << " [" << i << "]: got " << got[i] << " want " << want[i];  // NaN fails
  }
}

using CudaQuantizedLinear = CudaTest;

TEST_F(CudaQuantizedLinear, KernelsMatchReferenceForEveryRowCountWithAndWithoutBias) {
  for_each_problem(100, [&](const Problem& p) {
    const std::vector<double> s = p.magnitude();
    OnDevice d(p);
    for (bool with_bias : {false, true}) {
      FERRY_ASSERT_OK(run_kernel(p, d, d.out.get(), d.x.get(), with_bias ? d.bias.get() : nullptr, stream_));
      sync();
      expect_within(d.out.download(), p.reference(p.x, with_bias), s, 1e-6, 3e-5, p.name() + (with_bias ? " bias" : ""));
    }
  });
}

// A misaligned x (the base off by one float) must take the scalar path, not fault.
TEST_F(CudaQuantizedLinear, MisalignedActivationsUseTheScalarPath) {
  for (const Storage& st : {Storage{WeightFormat::kInt8, 0, false}, Storage{WeightFormat::kInt4, 64, true}}) {
    const auto [n, k] = st.format == WeightFormat::kInt8 ? kInt8Shapes[1] : kInt4Shapes[1];
    const Problem p(st, 3, n, k, 7);
    std::vector<float> shifted(p.x.size() + 1, 0.0f);
    std::memcpy(shifted.data() + 1, p.x.data(), p.x.size() * sizeof(float));
    OnDevice d(p);
    DeviceBuffer<float> d_x(shifted);
    FERRY_ASSERT_OK(run_kernel(p, d, d.out.get(), d_x.get() + 1, nullptr, stream_));
    sync();
    expect_within(d.out.download(), p.reference(p.x, false), p.magnitude(), 1e-6, 3e-5, p.name() + " misaligned x");
  }
}

TEST_F(CudaQuantizedLinear, MatmulTakesTheGemmPathPastTheRowLimitAndTheKernelOtherwise) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  for_each_problem(300, [&](const Problem& p) {
    const std::vector<double> s = p.magnitude();
    OnDevice d(p);
    DeviceBuffer<uint16_t> w16(p.n * p.k), x16(p.m * p.k);
    const QuantizedGemmWorkspace ws{w16.get(), quantized_gemm_w16_bytes(p.n, p.k), x16.get(),
                                    quantized_gemm_x16_bytes(p.m, p.k)};
    FERRY_ASSERT_OK(run_matmul(*gemm.value(), p, d, ws, d.bias.get()));
    sync();
    const std::vector<float> got = d.out.download();
    if (p.m <= kQuantizedGemvMaxRows) {
      expect_within(got, p.reference(p.x, true), s, 1e-6, 3e-5, p.name() + " (kernel)");
    } else if (p.st.format == WeightFormat::kInt8) {
      expect_within(got, p.reference(bf16_rounded(p.x), true), s, 1e-5, 3e-4, p.name() + " (GEMM, bf16 x)");
      expect_within(got, p.reference(p.x, true), s, 1e-5, 1.0 / 256, p.name() + " (GEMM, exact x)");
    } else {
      expect_within(got, p.reference_bf16_weights(bf16_rounded(p.x)), s, 1e-5, 3e-4, p.name() + " (GEMM, bf16 x, w)");
      expect_within(got, p.reference(p.x, true), s, 1e-5, 1.0 / 128, p.name() + " (GEMM, exact x)");
    }
  });
}

// Without a workspace large enough, m = 17 still runs (on the kernel) and keeps the kernel's exact-x bound.
TEST_F(CudaQuantizedLinear, MatmulWithoutWorkspaceFallsBackToTheKernel) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  for (const Storage& st : {Storage{WeightFormat::kInt8, 0, false}, Storage{WeightFormat::kInt4, 32, false}}) {
    const auto [n, k] = st.format == WeightFormat::kInt8 ? kInt8Shapes[0] : kInt4Shapes[0];
    const Problem p(st, 17, n, k, 11);
    OnDevice d(p);
    DeviceBuffer<uint16_t> w16(n * k - 1), x16(17 * k);
    const QuantizedGemmWorkspace small{w16.get(), quantized_gemm_w16_bytes(n, k) - 2, x16.get(),
                                       quantized_gemm_x16_bytes(17, k)};
    FERRY_ASSERT_OK(run_matmul(*gemm.value(), p, d, small, nullptr));
    sync();
    expect_within(d.out.download(), p.reference(p.x, false), p.magnitude(), 1e-6, 3e-5, p.name() + " no workspace");
  }
}

TEST_F(CudaQuantizedLinear, RejectsBadArguments) {
  DeviceBuffer<float> f(64);
  DeviceBuffer<int8_t> w(64);
  EXPECT_EQ(linear_int8(f.get(), 4, f.get(), w.get(), f.get(), nullptr, 2, 0, 4, stream_).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(linear_int8(f.get(), 3, f.get(), w.get(), f.get(), nullptr, 2, 4, 4, stream_).code(),
            StatusCode::kInvalidArgument);  // out_stride < n
  EXPECT_EQ(linear_int8(f.get(), 4, nullptr, w.get(), f.get(), nullptr, 2, 4, 4, stream_).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(linear_int8(f.get(), 4, f.get(), w.get(), nullptr, nullptr, 2, 4, 4, stream_).code(),
            StatusCode::kInvalidArgument);
  FERRY_ASSERT_OK(linear_int8(nullptr, 4, nullptr, nullptr, nullptr, nullptr, 0, 4, 4, stream_));  // m = 0: nothing
  DeviceBuffer<uint8_t> p(64);
  EXPECT_EQ(linear_int4(f.get(), 4, f.get(), p.get(), f.get(), nullptr, 48, nullptr, 2, 4, 96, stream_).code(),
            StatusCode::kInvalidArgument);  // group size 48
  EXPECT_EQ(linear_int4(f.get(), 4, f.get(), p.get(), f.get(), nullptr, 32, nullptr, 2, 4, 40, stream_).code(),
            StatusCode::kInvalidArgument);  // k not a multiple of the group
  EXPECT_EQ(linear_int4(f.get(), 4, f.get(), p.get() + 1, f.get(), nullptr, 32, nullptr, 2, 4, 32, stream_).code(),
            StatusCode::kInvalidArgument);  // packed rows not 4-byte aligned
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_, 0);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  EXPECT_EQ(int8_matmul(*gemm.value(), f.get(), f.get(), w.get(), f.get(), nullptr, 2, 4, 0, {}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(int4_matmul(*gemm.value(), f.get(), f.get(), p.get(), nullptr, nullptr, 32, nullptr, 2, 4, 32, {}).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::kernels::cuda
