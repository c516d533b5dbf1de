// CublasGemm against the reference matmul (kernels/cpu/reference.cc, double accumulation) with the
// same bf16/fp16-rounded inputs. Tolerances (|x|, |w| < 1, k up to 5125, so |out| < ~3 sqrt(k)):
//   fp32 out: 1e-3 + 1e-3 |want| (fp32 accumulation in cuBLAS's order);
//   fp16 out: 2e-2 + 2e-3 |want| (plus the output rounding, half an fp16 ulp = 2^-11 relative);
//   bf16 out: 5e-2 + 1e-2 |want| (half a bf16 ulp = 2^-8 relative).
// fp32 inputs (plain CUBLAS_COMPUTE_32F) with fp32 out: 1e-3 + 1e-3 |want|.
#include <tuple>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/gemm.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace ferry::kernels::cuda {
namespace {

using testing::CudaTest;
using testing::DeviceBuffer;
using testing::expect_close;
using testing::random_floats;

uint16_t to_half_bits(float v, DType dtype) { return dtype == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v); }
float from_half_bits(uint16_t v, DType dtype) { return dtype == DType::kF16 ? f16_to_f32(v) : bf16_to_f32(v); }

// (m, n, k). The emulation build's stand-in is a plain loop: smaller shapes, still odd.
#if defined(FERRY_CUDA_EMULATION)
constexpr std::tuple<int64_t, int64_t, int64_t> kShapes[] = {{1, 769, 1029}, {7, 129, 768}, {33, 64, 257}};
#else
constexpr std::tuple<int64_t, int64_t, int64_t> kShapes[] = {{1, 769, 5125}, {7, 5125, 768}, {33, 1024, 4096}};
#endif

using CudaGemm = CudaTest;
TEST_F(CudaGemm, Bf16AndFp16WithAndWithoutBias) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  for (DType in : {DType::kBF16, DType::kF16}) {
    for (DType out_dtype : {DType::kF32, in}) {
      for (bool with_bias : {false, true}) {
        for (auto [m, n, k] : kShapes) {
          const std::vector<float> xf = random_floats(m * k, 30), wf = random_floats(n * k, 31);
          const std::vector<float> bf = random_floats(n, 32);
          std::vector<uint16_t> x16(m * k), w16(n * k), b16(n);
          std::vector<float> x_rounded(m * k), bias_rounded(n);
          for (int64_t i = 0; i < m * k; ++i) x16[i] = to_half_bits(xf[i], in), x_rounded[i] = from_half_bits(x16[i], in);
          for (int64_t i = 0; i < n * k; ++i) w16[i] = to_half_bits(wf[i], in);
          for (int64_t i = 0; i < n; ++i)
            b16[i] = to_half_bits(bf[i], in), bias_rounded[i] = out_dtype == DType::kF32 ? bf[i] : from_half_bits(b16[i], in);
          std::vector<float> want(m * n);
          ref::matmul(want.data(), x_rounded.data(), w16.data(), in, with_bias ? bias_rounded.data() : nullptr, m, n, k);

          DeviceBuffer<uint16_t> d_x(x16), d_w(w16), d_b16(b16);
          DeviceBuffer<float> d_bf(bf), d_out32(m * n);
          DeviceBuffer<uint16_t> d_out16(m * n);
          const bool f32_out = out_dtype == DType::kF32;
          const void* bias = !with_bias ? nullptr : f32_out ? static_cast<const void*>(d_bf.get()) : d_b16.get();
          void* out = f32_out ? static_cast<void*>(d_out32.get()) : d_out16.get();
          FERRY_ASSERT_OK(gemm.value()->matmul(out, out_dtype, d_x.get(), d_w.get(), in, bias, m, n, k));
          sync();
          std::vector<float> got(m * n);
          if (f32_out) {
            got = d_out32.download();
          } else {
            const std::vector<uint16_t> raw = d_out16.download();
            for (int64_t i = 0; i < m * n; ++i) got[i] = from_half_bits(raw[i], in);
          }
          const float atol = f32_out ? 1e-3f : in == DType::kF16 ? 2e-2f : 5e-2f;
          const float rtol = f32_out ? 1e-3f : in == DType::kF16 ? 2e-3f : 1e-2f;
          expect_close(got, want, atol, rtol, dtype_name(in));
        }
      }
    }
  }
}

// fp32 in and out (CudaEngine's fp32 weights): the same tolerance as the 16-bit inputs' fp32 output.
TEST_F(CudaGemm, Fp32WithAndWithoutBias) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  for (bool with_bias : {false, true}) {
    for (auto [m, n, k] : kShapes) {
      const std::vector<float> x = random_floats(m * k, 40), w = random_floats(n * k, 41), b = random_floats(n, 42);
      std::vector<float> want(m * n);
      ref::matmul(want.data(), x.data(), w.data(), DType::kF32, with_bias ? b.data() : nullptr, m, n, k);
      DeviceBuffer<float> d_x(x), d_w(w), d_b(b), d_out(m * n);
      FERRY_ASSERT_OK(gemm.value()->matmul(d_out.get(), DType::kF32, d_x.get(), d_w.get(), DType::kF32,
                                           with_bias ? d_b.get() : nullptr, m, n, k));
      sync();
      expect_close(d_out.download(), want, 1e-3f, 1e-3f, "fp32");
    }
  }
}

TEST_F(CudaGemm, RejectsUnsupportedDtypes) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_, 0);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  DeviceBuffer<float> buf(64);
  EXPECT_EQ(gemm.value()->matmul(buf.get(), DType::kBF16, buf.get(), buf.get(), DType::kF32, nullptr, 2, 2, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gemm.value()->matmul(buf.get(), DType::kF16, buf.get(), buf.get(), DType::kBF16, nullptr, 2, 2, 2).code(),
            StatusCode::kInvalidArgument);
}

// A GEMM captured into a CUDA graph (what CudaEngine does for decode steps) reads its operands at
// each replay: changing x between replays changes the output. The first matmul of a shape builds its
// plan during the capture, which must stay legal there (no allocation, no synchronization).
TEST_F(CudaGemm, CapturedMatmulReadsItsInputsAtReplay) {
  Result<std::unique_ptr<CublasGemm>> gemm = CublasGemm::create(stream_);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  constexpr int64_t m = 3, n = 65, k = 129;
  const std::vector<float> w = random_floats(n * k, 50), b = random_floats(n, 51);
  DeviceBuffer<float> d_x(m * k), d_w(w), d_b(b), d_out(m * n);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  FERRY_ASSERT_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  const Status captured = gemm.value()->matmul(d_out.get(), DType::kF32, d_x.get(), d_w.get(), DType::kF32, d_b.get(), m, n, k);
  FERRY_ASSERT_CUDA(cudaStreamEndCapture(stream_, &graph));
  FERRY_ASSERT_OK(captured);
  FERRY_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (uint32_t seed : {52u, 53u, 54u}) {
    const std::vector<float> x = random_floats(m * k, seed);
    d_x.upload(x);
    FERRY_ASSERT_CUDA(cudaGraphLaunch(exec, stream_));
    sync();
    std::vector<float> want(m * n);
    ref::matmul(want.data(), x.data(), w.data(), DType::kF32, b.data(), m, n, k);
    expect_close(d_out.download(), want, 1e-3f, 1e-3f, "captured fp32 GEMM");
  }
  FERRY_ASSERT_CUDA(cudaGraphExecDestroy(exec));
  FERRY_ASSERT_CUDA(cudaGraphDestroy(graph));
}

}  // namespace
}  // namespace ferry::kernels::cuda
