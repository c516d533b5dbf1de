// The row-wise and element-wise CUDA kernels against the plain-loop references (kernels/cpu), on
// random never-zero inputs with odd sizes, outputs poisoned (NaN) before each run.
// Tolerances (fp32 everywhere; the references accumulate in double):
//   embedding, gather_rows, cast, argmax, residual of add_rms_norm: exact (same fp32 / rounding operations);
//   RMSNorm, head RMSNorm: 1e-6 + 2e-5 |want| (fp32 tree sum of <= 5125 squares, 3 roundings after);
//   RoPE: 1e-6 + 1e-6 |want| (angle, sin/cos and rotation in double, one final rounding);
//   SiLU-and-mul: 1e-6 + 1e-5 |want| (expf is within 2 ulp, then 3 roundings).
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/add_rms_norm.cuh"
#include "kernels/cuda/argmax.cuh"
#include "kernels/cuda/cast.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gather_rows.cuh"
#include "kernels/cuda/head_rms_norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/silu_and_mul.cuh"
#include "kernels/kernels.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace ferry::kernels::cuda {
namespace {

using testing::CudaTest;
using testing::DeviceBuffer;
using testing::expect_close;
using testing::random_floats;

// The table as raw bytes of `dtype` (fp32 values rounded for the 16-bit types).
std::vector<uint8_t> encode(const std::vector<float>& v, DType dtype) {
  std::vector<uint8_t> bytes(v.size() * dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(bytes.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = dtype == DType::kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

using CudaEmbedding = CudaTest;
TEST_F(CudaEmbedding, EveryDtypeMatchesReferenceExactly) {
  for (int64_t hidden : {769, 5125}) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      const int64_t vocab = 1031, num_tokens = 37;
      const std::vector<uint8_t> table = encode(random_floats(vocab * hidden, 1), dtype);
      std::vector<int32_t> ids(num_tokens);
      for (int64_t t = 0; t < num_tokens; ++t) ids[t] = static_cast<int32_t>((t * 7919 + 3) % vocab);
      std::vector<float> want(num_tokens * hidden);
      ref::embedding(want.data(), table.data(), dtype, vocab, hidden, ids.data(), num_tokens);

      DeviceBuffer<uint8_t> d_table(table);
      DeviceBuffer<int32_t> d_ids(ids);
      DeviceBuffer<float> d_out(num_tokens * hidden);
      FERRY_ASSERT_OK(embedding(d_out.get(), d_table.get(), dtype, vocab, hidden, d_ids.get(), num_tokens, stream_));
      sync();
      expect_close(d_out.download(), want, 0.0f, 0.0f, dtype_name(dtype));
    }
  }
}

using CudaAddRmsNorm = CudaTest;
TEST_F(CudaAddRmsNorm, WithAndWithoutDeltaOddSizes) {
  for (int64_t dim : {769, 4096, 5125}) {
    for (bool with_delta : {true, false}) {
      const int64_t rows = 7;
      const float eps = 1e-5f;
      std::vector<float> residual = random_floats(rows * dim, 2, -3.0f, 3.0f);
      const std::vector<float> delta = random_floats(rows * dim, 3);
      const std::vector<float> weight = random_floats(dim, 4, 0.5f, 1.5f);
      DeviceBuffer<float> d_res(residual), d_delta(delta), d_w(weight), d_out(rows * dim);
      std::vector<float> want(rows * dim);
      if (with_delta) {
        ref::add_rms_norm(want.data(), residual.data(), delta.data(), weight.data(), rows, dim, eps);
      } else {
        ref::rms_norm(want.data(), residual.data(), weight.data(), rows, dim, eps);
      }
      FERRY_ASSERT_OK(add_rms_norm(d_out.get(), d_res.get(), with_delta ? d_delta.get() : nullptr, d_w.get(), rows,
                                   dim, eps, stream_));
      sync();
      expect_close(d_out.download(), want, 1e-6f, 2e-5f, "out");
      expect_close(d_res.download(), residual, 0.0f, 0.0f, "residual");
    }
  }
}

TEST_F(CudaAddRmsNorm, RejectsBadArguments) {
  DeviceBuffer<float> buf(16);
  // out aliasing residual: refused with a delta (residual is rewritten), allowed without one.
  EXPECT_FALSE(add_rms_norm(buf.get(), buf.get(), buf.get(), buf.get(), 1, 16, 1e-5f, stream_).ok());
  EXPECT_FALSE(add_rms_norm(nullptr, buf.get(), nullptr, buf.get(), 1, 16, 1e-5f, stream_).ok());
  EXPECT_FALSE(add_rms_norm(buf.get(), buf.get(), nullptr, buf.get(), 1, 0, 1e-5f, stream_).ok());
}

using CudaHeadRmsNorm = CudaTest;
TEST_F(CudaHeadRmsNorm, StridedHeadsLeaveTheGapAlone) {
  for (int64_t head_dim : {64, 128}) {
    const int64_t tokens = 13, heads = 5, stride = heads * head_dim + 3 * head_dim + 1;
    std::vector<float> x = random_floats(tokens * stride, 5, -2.0f, 2.0f);
    const std::vector<float> weight = random_floats(head_dim, 6, 0.5f, 1.5f);
    DeviceBuffer<float> d_x(x), d_w(weight);
    ref::head_rms_norm(x.data(), weight.data(), tokens, stride, heads, head_dim, 1e-6f);
    FERRY_ASSERT_OK(head_rms_norm(d_x.get(), d_w.get(), tokens, stride, heads, head_dim, 1e-6f, stream_));
    sync();
    expect_close(d_x.download(), x, 1e-6f, 2e-5f, "x");  // the gap columns must be bit-equal too
  }
}

using CudaRope = CudaTest;
TEST_F(CudaRope, DefaultAndLlama3ScalingLargePositions) {
  for (int64_t head_dim : {64, 128}) {
    for (RopeScaling scaling : {RopeScaling::kNone, RopeScaling::kLlama3}) {
      RopeParams params;
      params.theta = 500000.0f;
      params.scaling = scaling;
      params.factor = 8.0f;
      std::vector<float> inv_freq(head_dim / 2);
      rope_inv_freq(params, head_dim, inv_freq.data());
      const int64_t tokens = 19, nq = 6, nkv = 2;
      const int64_t q_stride = nq * head_dim + 5, k_stride = nkv * head_dim + 3;
      std::vector<float> q = random_floats(tokens * q_stride, 7), k = random_floats(tokens * k_stride, 8);
      std::vector<int32_t> pos(tokens);
      for (int64_t t = 0; t < tokens; ++t) pos[t] = static_cast<int32_t>((t * 104729) % 131072);
      DeviceBuffer<float> d_q(q), d_k(k), d_f(inv_freq);
      DeviceBuffer<int32_t> d_pos(pos);
      ref::rope(q.data(), k.data(), pos.data(), inv_freq.data(), tokens, q_stride, k_stride, nq, nkv, head_dim);
      FERRY_ASSERT_OK(rope(d_q.get(), d_k.get(), d_pos.get(), d_f.get(), tokens, q_stride, k_stride, nq, nkv,
                           head_dim, stream_));
      sync();
      expect_close(d_q.download(), q, 1e-6f, 1e-6f, "q");
      expect_close(d_k.download(), k, 1e-6f, 1e-6f, "k");
    }
  }
}

using CudaSiluAndMul = CudaTest;
TEST_F(CudaSiluAndMul, OddSizes) {
  for (int64_t inter : {769, 5125}) {
    const int64_t rows = 9;
    const std::vector<float> gate_up = random_floats(rows * 2 * inter, 9, -8.0f, 8.0f);
    std::vector<float> want(rows * inter);
    ref::silu_and_mul(want.data(), gate_up.data(), rows, inter);
    DeviceBuffer<float> d_in(gate_up), d_out(rows * inter);
    FERRY_ASSERT_OK(silu_and_mul(d_out.get(), d_in.get(), rows, inter, stream_));
    sync();
    expect_close(d_out.download(), want, 1e-6f, 1e-5f, "silu_and_mul");
  }
}

using CudaGatherRows = CudaTest;
TEST_F(CudaGatherRows, RepeatedAndOutOfOrderRowsExact) {
  for (int64_t dim : {64, 769, 5125}) {
    const int64_t in_rows = 11;
    const std::vector<float> in = random_floats(in_rows * dim, 12);
    const std::vector<int32_t> rows = {10, 0, 3, 3, 7, 1, 10};
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<float> want(n * dim);
    ref::gather_rows(want.data(), in.data(), rows.data(), n, dim);
    DeviceBuffer<float> d_in(in), d_out(n * dim);
    DeviceBuffer<int32_t> d_rows(rows);
    FERRY_ASSERT_OK(gather_rows(d_out.get(), d_in.get(), d_rows.get(), n, in_rows, dim, stream_));
    sync();
    expect_close(d_out.download(), want, 0.0f, 0.0f, "gather_rows");
  }
}

TEST_F(CudaGatherRows, RowOutsideTheInputGivesNaN) {
  const int64_t dim = 33, in_rows = 2;
  const std::vector<float> in = random_floats(in_rows * dim, 13);
  const std::vector<int32_t> rows = {1, 2, -1};
  DeviceBuffer<float> d_in(in), d_out(3 * dim);
  DeviceBuffer<int32_t> d_rows(rows);
  FERRY_ASSERT_OK(gather_rows(d_out.get(), d_in.get(), d_rows.get(), 3, in_rows, dim, stream_));
  sync();
  const std::vector<float> got = d_out.download();
  for (int64_t j = 0; j < dim; ++j) {
    EXPECT_EQ(got[j], in[dim + j]);
    EXPECT_TRUE(std::isnan(got[dim + j]));
    EXPECT_TRUE(std::isnan(got[2 * dim + j]));
  }
}

using CudaCast = CudaTest;
TEST_F(CudaCast, RoundsLikeTheHostHelpers) {
  const int64_t n = 5125;
  const std::vector<float> x = random_floats(n, 10, -100.0f, 100.0f);
  DeviceBuffer<float> d_x(x), d_back(n);
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    DeviceBuffer<uint16_t> d_h(n);
    FERRY_ASSERT_OK(cast(d_h.get(), dtype, d_x.get(), DType::kF32, n, stream_));
    FERRY_ASSERT_OK(cast(d_back.get(), DType::kF32, d_h.get(), dtype, n, stream_));
    sync();
    const std::vector<uint16_t> got = d_h.download();
    const std::vector<float> back = d_back.download();
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t want = dtype == DType::kF16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
      ASSERT_EQ(got[i], want) << dtype_name(dtype) << " index " << i;
      ASSERT_EQ(back[i], dtype == DType::kF16 ? f16_to_f32(want) : bf16_to_f32(want));
    }
  }
  EXPECT_FALSE(cast(d_back.get(), DType::kF16, d_x.get(), DType::kBF16, n, stream_).ok());
}

using CudaArgmax = CudaTest;
TEST_F(CudaArgmax, LowestIndexWinsTies) {
  for (int64_t vocab : {5125, 128257}) {
    const int64_t rows = 5;
    std::vector<float> logits = random_floats(rows * vocab, 11, -10.0f, 10.0f);
    logits[1 * vocab + 4000] = 50.0f;  // a tie in row 1: index 17 must win
    logits[1 * vocab + 17] = 50.0f;
    logits[3 * vocab + vocab - 1] = 60.0f;  // the last id
    std::vector<int32_t> want(rows);
    ref::argmax(want.data(), logits.data(), rows, vocab);
    DeviceBuffer<float> d_logits(logits);
    DeviceBuffer<int32_t> d_out(rows);
    FERRY_ASSERT_OK(argmax(d_out.get(), d_logits.get(), rows, vocab, stream_));
    sync();
    EXPECT_EQ(d_out.download(), want);
    EXPECT_EQ(want[1], 17);
  }
}

}  // namespace
}  // namespace ferry::kernels::cuda
