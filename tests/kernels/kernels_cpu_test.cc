// Every fast CPU operator (Backend::kCpu) against its plain-loop reference (Backend::kReference) on
// random, never-zero inputs with odd sizes. Tolerances are stated per test: the reference
// accumulates in double, the fast path in fp32 (and OpenBLAS reorders sums), so the bound is a
// few fp32 ulps scaled by the reduction length.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/kernels.h"

namespace ferry::kernels {
namespace {

const Context kRef{Backend::kReference};
const Context kCpu{Backend::kCpu};

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = dist(rng);
    if (x == 0.0f) x = 0.5f;
  }
  return v;
}

// max |a-b| / (atol + rtol*|b|) <= 1 elementwise.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float atol, float rtol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::fabs(got[i] - want[i]), atol + rtol * std::fabs(want[i]))
        << "index " << i << ": got " << got[i] << " want " << want[i];
  }
}

TEST(DTypeTest, ConversionsRoundTrip) {
  for (float v : {1.0f, -2.5f, 0.333333f, 65504.0f, 1e-6f, -3.0e-5f, 123.456f}) {
    EXPECT_NEAR(bf16_to_f32(f32_to_bf16(v)), v, std::fabs(v) * (1.0f / 256));
    EXPECT_NEAR(f16_to_f32(f32_to_f16(v)), v, std::max(std::fabs(v) * (1.0f / 2048), 6e-8f));
  }
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
}

TEST(KernelsTest, EmbeddingAllDtypes) {
  const int64_t vocab = 37, hidden = 19, n = 11;
  auto table = random_vec(vocab * hidden, 1);
  std::vector<uint16_t> t16(table.size()), tb16(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    t16[i] = f32_to_f16(table[i]);
    tb16[i] = f32_to_bf16(table[i]);
  }
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7 + 3) % vocab);
  for (auto [ptr, dt] : {std::pair<const void*, DType>{table.data(), DType::kF32}, {t16.data(), DType::kF16},
                         {tb16.data(), DType::kBF16}}) {
    std::vector<float> a(n * hidden), b(n * hidden);
    embedding(kCpu, a.data(), ptr, dt, vocab, hidden, ids.data(), n);
    embedding(kRef, b.data(), ptr, dt, vocab, hidden, ids.data(), n);
    expect_close(a, b, 0, 0);  // exact: both convert the same bits
    // and the fp32 table agrees with the source values
    if (dt == DType::kF32) {
      EXPECT_EQ(a[hidden * 2 + 5], table[ids[2] * hidden + 5]);
    }
  }
}

TEST(KernelsTest, RmsNormAndFusedAdd) {
  const int64_t rows = 7, dim = 301;
  auto x = random_vec(rows * dim, 2), w = random_vec(dim, 3, 0.5f, 1.5f), d = random_vec(rows * dim, 4);
  std::vector<float> a(x.size()), b(x.size());
  rms_norm(kCpu, a.data(), x.data(), w.data(), rows, dim, 1e-5f);
  rms_norm(kRef, b.data(), x.data(), w.data(), rows, dim, 1e-5f);
  expect_close(a, b, 1e-6f, 1e-5f);

  auto res_a = x, res_b = x;
  add_rms_norm(kCpu, a.data(), res_a.data(), d.data(), w.data(), rows, dim, 1e-6f);
  add_rms_norm(kRef, b.data(), res_b.data(), d.data(), w.data(), rows, dim, 1e-6f);
  expect_close(res_a, res_b, 0, 0);
  expect_close(a, b, 1e-6f, 1e-5f);
  for (int64_t i = 0; i < rows * dim; ++i) ASSERT_EQ(res_a[i], x[i] + d[i]);
}

TEST(KernelsTest, HeadRmsNormWithStride) {
  const int64_t tokens = 5, heads = 3, hd = 22, stride = heads * hd + 17;
  auto x = random_vec(tokens * stride, 5), w = random_vec(hd, 6, 0.5f, 1.5f);
  auto a = x, b = x;
  head_rms_norm(kCpu, a.data(), w.data(), tokens, stride, heads, hd, 1e-6f);
  head_rms_norm(kRef, b.data(), w.data(), tokens, stride, heads, hd, 1e-6f);
  expect_close(a, b, 1e-6f, 1e-5f);
  for (int64_t t = 0; t < tokens; ++t)  // the tail past the heads is untouched
    for (int64_t j = heads * hd; j < stride; ++j) ASSERT_EQ(a[t * stride + j], x[t * stride + j]);
}

TEST(KernelsTest, RopeDefaultAndLlama3) {
  const int64_t tokens = 9, qh = 6, kh = 2, hd = 18, qs = qh * hd + 3 * hd, ks = qs;
  std::vector<int32_t> pos = {0, 1, 2, 17, 100, 513, 4095, 9000, 131000};
  for (RopeScaling scaling : {RopeScaling::kNone, RopeScaling::kLlama3, RopeScaling::kLinear}) {
    RopeParams p;
    p.theta = 500000.0f;
    p.scaling = scaling;
    p.factor = 8.0f;
    p.original_max_position_embeddings = 8192;
    std::vector<float> inv(hd / 2);
    rope_inv_freq(p, hd, inv.data());
    auto buf = random_vec(tokens * qs, 7);
    auto a = buf, b = buf;
    // q at offset 0, k right after the q heads (as in a fused qkv row)
    rope(kCpu, a.data(), a.data() + qh * hd, pos.data(), inv.data(), tokens, qs, ks, qh, kh, hd);
    rope(kRef, b.data(), b.data() + qh * hd, pos.data(), inv.data(), tokens, qs, ks, qh, kh, hd);
    expect_close(a, b, 2e-6f, 1e-5f);
  }
}

TEST(KernelsTest, RopeInvFreqLlama3MatchesFormula) {
  // Values checked by hand from the published Llama 3.1 rule: high frequencies unchanged, the
  // lowest ones divided by factor.
  RopeParams p;
  p.theta = 500000.0f;
  p.scaling = RopeScaling::kLlama3;
  p.factor = 8.0f;
  p.low_freq_factor = 1.0f;
  p.high_freq_factor = 4.0f;
  p.original_max_position_embeddings = 8192;
  const int64_t hd = 128;
  std::vector<float> inv(hd / 2);
  rope_inv_freq(p, hd, inv.data());
  EXPECT_FLOAT_EQ(inv[0], 1.0f);  // wavelength 2*pi << 2048: kept
  const double base_last = 1.0 / std::pow(500000.0, 126.0 / 128.0);
  EXPECT_NEAR(inv[63], base_last / 8.0, base_last * 1e-6);  // wavelength >> 8192: divided by 8
}

TEST(KernelsTest, SiluAndMul) {
  const int64_t rows = 5, inter = 173;
  auto x = random_vec(rows * 2 * inter, 8, -6.0f, 6.0f);
  std::vector<float> a(rows * inter), b(rows * inter);
  silu_and_mul(kCpu, a.data(), x.data(), rows, inter);
  silu_and_mul(kRef, b.data(), x.data(), rows, inter);
  expect_close(a, b, 1e-6f, 1e-5f);
}

TEST(KernelsTest, MatmulAllDtypesWithBias) {
  for (int64_t m : {1, 3, 17}) {
    const int64_t n = 301, k = 77;
    auto x = random_vec(m * k, 9), w = random_vec(n * k, 10), bias = random_vec(n, 11);
    std::vector<uint16_t> w16(w.size()), wb16(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      w16[i] = f32_to_f16(w[i]);
      wb16[i] = f32_to_bf16(w[i]);
    }
    for (auto [ptr, dt] : {std::pair<const void*, DType>{w.data(), DType::kF32}, {w16.data(), DType::kF16},
                           {wb16.data(), DType::kBF16}}) {
      for (const float* bp : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
        std::vector<float> a(m * n), b(m * n);
        matmul(kCpu, a.data(), x.data(), ptr, dt, bp, m, n, k);
        matmul(kRef, b.data(), x.data(), ptr, dt, bp, m, n, k);
        // |sum| of k=77 products of magnitude <= 1: fp32 reordering error well under 1e-4.
        expect_close(a, b, 1e-4f, 1e-5f);
      }
    }
  }
}

TEST(KernelsTest, BlockedMatmulWithoutBlas) {
  const int64_t m = 3, n = 203, k = 91;
  auto x = random_vec(m * k, 19), w = random_vec(n * k, 20);
  std::vector<float> a(m * n), b(m * n);
  cpu::matmul_f32_blocked(a.data(), x.data(), w.data(), m, n, k);
  matmul(kRef, b.data(), x.data(), w.data(), DType::kF32, nullptr, m, n, k);
  expect_close(a, b, 1e-4f, 1e-5f);
}

TEST(KernelsTest, GatherArgmaxLogSoftmax) {
  const int64_t rows = 6, vocab = 1031;
  auto x = random_vec(rows * vocab, 12, -5.0f, 5.0f);
  x[2 * vocab + 100] = 9.0f;  // a tie: the lower index must win
  x[2 * vocab + 700] = 9.0f;
  std::vector<int32_t> a(rows), b(rows);
  argmax(kCpu, a.data(), x.data(), rows, vocab);
  argmax(kRef, b.data(), x.data(), rows, vocab);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a[2], 100);

  auto la = x, lb = x;
  log_softmax(kCpu, la.data(), rows, vocab);
  log_softmax(kRef, lb.data(), rows, vocab);
  expect_close(la, lb, 1e-5f, 1e-5f);

  std::vector<int32_t> idx = {5, 0, 3};
  std::vector<float> ga(3 * vocab), gb(3 * vocab);
  gather_rows(kCpu, ga.data(), x.data(), idx.data(), 3, vocab);
  gather_rows(kRef, gb.data(), x.data(), idx.data(), 3, vocab);
  expect_close(ga, gb, 0, 0);
  EXPECT_EQ(ga[vocab + 1], x[1]);
}

// A batch of sequences with prefill (many queries, some with earlier context) and decode (one
// query) mixed, scattered over shuffled physical blocks, GQA 3:1, odd head_dim and block size.
TEST(KernelsTest, KvCacheWriteAndPagedAttention) {
  const int64_t num_kv = 2, num_q = 6, hd = 13, bs = 5, num_blocks = 40, max_blocks = 8;
  const int64_t kv_row = num_kv * hd;
  struct Seq { int32_t context_len, query_len; };
  const std::vector<Seq> seqs = {{17, 17}, {23, 1}, {9, 4}, {1, 1}, {31, 6}};
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(13));
  std::vector<int32_t> tables(seqs.size() * max_blocks, -1);
  int next = 0;
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int64_t b = 0; b < (seqs[s].context_len + bs - 1) / bs; ++b) tables[s * max_blocks + b] = perm[next++];

  // Earlier context goes straight into the cache; this step's tokens go through kv_cache_write.
  auto k_cache = random_vec(num_blocks * bs * kv_row, 14), v_cache = random_vec(num_blocks * bs * kv_row, 15);
  std::vector<int32_t> query_start = {0}, context_lens;
  std::vector<int64_t> slots;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int32_t i = 0; i < seqs[s].query_len; ++i) {
      const int32_t pos = seqs[s].context_len - seqs[s].query_len + i;
      slots.push_back(static_cast<int64_t>(tables[s * max_blocks + pos / bs]) * bs + pos % bs);
    }
    query_start.push_back(query_start.back() + seqs[s].query_len);
    context_lens.push_back(seqs[s].context_len);
  }
  const int64_t tokens = query_start.back();
  slots.push_back(-1);  // a padding token that must not be written
  const int64_t kstride = kv_row + 3;
  auto k_new = random_vec((tokens + 1) * kstride, 16), v_new = random_vec((tokens + 1) * kv_row, 17);

  auto kc_a = k_cache, vc_a = v_cache, kc_b = k_cache, vc_b = v_cache;
  kv_cache_write(kCpu, kc_a.data(), vc_a.data(), k_new.data(), v_new.data(), slots.data(), tokens + 1, kstride,
                 kv_row, num_kv, hd);
  kv_cache_write(kRef, kc_b.data(), vc_b.data(), k_new.data(), v_new.data(), slots.data(), tokens + 1, kstride,
                 kv_row, num_kv, hd);
  expect_close(kc_a, kc_b, 0, 0);
  expect_close(vc_a, vc_b, 0, 0);
  EXPECT_EQ(kc_a[slots[3] * kv_row + 4], k_new[3 * kstride + 4]);

  const int64_t qstride = num_q * hd + 7;
  auto q = random_vec(tokens * qstride, 18, -2.0f, 2.0f);
  std::vector<float> out_a(tokens * num_q * hd), out_b(out_a.size());
  PagedAttentionArgs args;
  args.q = q.data();
  args.k_cache = kc_a.data();
  args.v_cache = vc_a.data();
  args.query_start = query_start.data();
  args.context_lens = context_lens.data();
  args.block_tables = tables.data();
  args.num_seqs = static_cast<int64_t>(seqs.size());
  args.num_tokens = tokens;
  args.max_blocks_per_seq = max_blocks;
  args.q_stride = qstride;
  args.num_q_heads = num_q;
  args.num_kv_heads = num_kv;
  args.head_dim = hd;
  args.block_size = bs;
  args.num_blocks = num_blocks;
  args.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  args.out = out_a.data();
  paged_attention(kCpu, args);
  args.out = out_b.data();
  paged_attention(kRef, args);
  expect_close(out_a, out_b, 2e-6f, 2e-5f);

  // Independent check of the causal rule for one token: the first query of sequence 0 sees only
  // position 0, so its output is exactly V at position 0 of its KV head.
  for (int64_t h = 0; h < num_q; ++h)
    for (int64_t d = 0; d < hd; ++d)
      ASSERT_FLOAT_EQ(out_b[h * hd + d], vc_a[tables[0] * bs * kv_row + (h / 3) * hd + d]);
}

}  // namespace
}  // namespace ferry::kernels
