// int8-weight linear layers on the GPU against the reference kernels::linear with the same kInt8
// WeightMatrix (kernels/cpu/quantize.cc: each row dequantized, then an fp64 dot), on random inputs
// quantized by kernels::quantize_int8 (the CPU engine's quantizer).
// Tolerances, per output element, with S = sum_c |x_c * w_c| over the row (w dequantized):
//   linear_int8 (fp32 x, fp32 sums: each lane sums k / 32 terms, then 5 shuffle levels):
//     1e-6 + 3e-5 S, the bound tests/kernels/linear_test.cc gives fp32 accumulation.
//   int8_matmul's GEMM path (x rounded to bf16, weights exact, cuBLASLt's fp32 accumulation in an
//     order we do not know): 1e-5 + 3e-4 S (k u with u = 2^-24 at k ~ 5000) against the reference
//     fed the same bf16-rounded x, and 1e-5 + 2^-8 S against the unrounded x (rounding each x costs
//     at most 2^-9 of its term).
// Sizes: odd n and k (tails of a block's 8 features and of the 32 lanes' stride), the scalar path
// (k odd) and the vector path (k % 4 == 0), m = 1, 3 (inside one 8-row tile) and 17 (three tiles,
// the last partial; also past kInt8GemvMaxRows, so int8_matmul takes the GEMM path).
#include <cstring>
#include <functional>
#include <string>

#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/linear_int8.cuh"
#include "kernels/kernels.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace ferry::kernels::cuda {
namespace {

using testing::CudaTest;
using testing::DeviceBuffer;
using testing::random_floats;

// (n, k): several blocks of 8 features with a tail; k odd (scalar path) or a multiple of 4 that is
// not a multiple of 128 (vector path with a lane tail). The emulator pays per thread: smaller.
#if defined(FERRY_CUDA_EMULATION)
constexpr std::pair<int64_t, int64_t> kShapes[] = {{77, 1029}, {130, 1028}};
#else
constexpr std::pair<int64_t, int64_t> kShapes[] = {{769, 5125}, {5125, 4100}};
#endif
constexpr int64_t kRowCounts[] = {1, 3, 17};

struct Problem {
  int64_t m, n, k;
  std::vector<float> x, bias, w_deq;
  std::vector<int8_t> q;
  std::vector<float> scales;

  Problem(int64_t m_, int64_t n_, int64_t k_, uint32_t seed) : m(m_), n(n_), k(k_) {
    x = random_floats(m * k, seed);
    bias = random_floats(n, seed + 1);
    const std::vector<float> w = random_floats(n * k, seed + 2, -0.5f, 0.5f);
    q.resize(n * k);
    scales.resize(n);
    quantize_int8(w.data(), n, k, q.data(), scales.data());
    w_deq.resize(n * k);
    dequantize_weight(matrix(), w_deq.data());
  }
  std::string name() const {
    return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
  }
  WeightMatrix matrix() const {
    WeightMatrix wm;
    wm.format = WeightFormat::kInt8;
    wm.n = n;
    wm.k = k;
    wm.data = q.data();
    wm.scales = scales.data();
    return wm;
  }
  std::vector<float> reference(const std::vector<float>& xin, bool with_bias) const {
    std::vector<float> out(m * n);
    linear(Context{Backend::kReference}, out.data(), n, xin.data(), matrix(), with_bias ? bias.data() : nullptr, m);
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
  explicit OnDevice(const Problem& p) : x(p.x), scales(p.scales), bias(p.bias), out(p.m * p.n), w(p.q) {}
  DeviceBuffer<float> x, scales, bias, out;
  DeviceBuffer<int8_t> w;
};

// Every (n, k) of kShapes with every m of kRowCounts, inputs seeded from `seed` on.
void for_each_problem(uint32_t seed, const std::function<void(const Problem&)>& f) {
  for (auto [n, k] : kShapes) {
    for (int64_t m : kRowCounts) f(Problem(m, n, k, seed += 3));
  }
}

std::vector<float> bf16_rounded(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = bf16_to_f32(f32_to_bf16(v[i]));
  return r;
}

void expect_within(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& s,
                   double atol, double rel_s, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    ASSERT_LE(err, atol + rel_s * s[i]) << what << " [" << i << "]: got " << got[i] << " want " << want[i];  // NaN fails
  }
}

using CudaLinearInt8 = CudaTest;

TEST_F(CudaLinearInt8, KernelMatchesReferenceForEveryRowCountWithAndWithoutBias) {
  for_each_problem(100, [&](const Problem& p) {
    const std::vector<double> s = p.magnitude();
    OnDevice d(p);
    for (bool with_bias : {false, true}) {
      FERRY_ASSERT_OK(linear_int8(d.out.get(), p.n, d.x.get(), d.w.get(), d.scales.get(), with_bias ? d.bias.get() : nullptr,
                                  p.m, p.n, p.k, stream_));
      sync();
      expect_within(d.out.download(), p.reference(p.x, with_bias), s, 1e-6, 3e-5, p.name() + (with_bias ? " bias" : ""));
    }
  });
}

// A misaligned x (k % 4 == 0 but the base off by one float) must take the scalar path, not fault.
TEST_F(CudaLinearInt8, MisalignedActivationsUseTheScalarPath) {
  const auto [n, k] = kShapes[1];
  const Problem p(3, n, k, 7);
  std::vector<float> shifted(p.x.size() + 1, 0.0f);
  std::memcpy(shifted.data() + 1, p.x.data(), p.x.size() * sizeof(float));
  DeviceBuffer<float> d_x(shifted), d_scales(p.scales), d_out(3 * n);
  DeviceBuffer<int8_t> d_w(p.q);
  FERRY_ASSERT_OK(linear_int8(d_out.get(), n, d_x.get() + 1, d_w.get(), d_scales.get(), nullptr, 3, n, k, stream_));
  sync();
  expect_within(d_out.download(), p.reference(p.x, false), p.magnitude(), 1e-6, 3e-5, "misaligned x");
}

TEST_F(CudaLinearInt8, MatmulTakesTheGemmPathPastTheRowLimitAndTheKernelOtherwise) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  for_each_problem(300, [&](const Problem& p) {
    const std::vector<double> s = p.magnitude();
    OnDevice d(p);
    DeviceBuffer<uint16_t> w16(p.n * p.k), x16(p.m * p.k);
    const Int8GemmWorkspace ws{w16.get(), int8_gemm_w16_bytes(p.n, p.k), x16.get(), int8_gemm_x16_bytes(p.m, p.k)};
    FERRY_ASSERT_OK(int8_matmul(*gemm.value(), d.out.get(), d.x.get(), d.w.get(), d.scales.get(), d.bias.get(), p.m,
                                p.n, p.k, ws));
    sync();
    const std::vector<float> got = d.out.download();
    if (p.m <= kInt8GemvMaxRows) {
      expect_within(got, p.reference(p.x, true), s, 1e-6, 3e-5, p.name() + " (kernel)");
    } else {
      expect_within(got, p.reference(bf16_rounded(p.x), true), s, 1e-5, 3e-4, p.name() + " (GEMM, bf16 x)");
      expect_within(got, p.reference(p.x, true), s, 1e-5, 1.0 / 256, p.name() + " (GEMM, exact x)");
    }
  });
}

// Without a workspace large enough, m = 17 still runs (on the kernel) and keeps the kernel's exact-x bound.
TEST_F(CudaLinearInt8, MatmulWithoutWorkspaceFallsBackToTheKernel) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  const auto [n, k] = kShapes[0];
  const Problem p(17, n, k, 11);
  OnDevice d(p);
  DeviceBuffer<uint16_t> w16(n * k - 1), x16(17 * k);
  const Int8GemmWorkspace small{w16.get(), int8_gemm_w16_bytes(n, k) - 2, x16.get(), int8_gemm_x16_bytes(17, k)};
  FERRY_ASSERT_OK(int8_matmul(*gemm.value(), d.out.get(), d.x.get(), d.w.get(), d.scales.get(), nullptr, 17, n, k, small));
  sync();
  expect_within(d.out.download(), p.reference(p.x, false), p.magnitude(), 1e-6, 3e-5, "no workspace");
}

TEST_F(CudaLinearInt8, RejectsBadArguments) {
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
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_, 0);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  EXPECT_EQ(int8_matmul(*gemm.value(), f.get(), f.get(), w.get(), f.get(), nullptr, 2, 4, 0, {}).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::kernels::cuda
