// Every fast CPU operator (Backend::kCpu) against its plain-loop reference (Backend::kReference) on
// random, never-zero inputs with odd sizes. Tolerances are stated per test: the reference
// accumulates in double, the fast path in fp32 (and OpenBLAS reorders sums), so the bound is a
// few fp32 ulps scaled by the reduction length.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
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
  // (1, 301) and (3, 301) stay under the BLAS threshold (blocked loops); (17, 301) takes sgemm and
  // (1, 4096) sgemv (2^18+ multiply-adds) when OpenBLAS is built in.
  for (auto [m, n] : {std::pair<int64_t, int64_t>{1, 301}, {3, 301}, {17, 301}, {1, 4096}}) {
    const int64_t k = 77;
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

// ---------------------------------------------------------------------------------------------
// int8 KV cache.

// A paged batch over shuffled physical blocks: per-sequence block tables, query_start,
// context_lens, and the slot of every query token (plus one trailing padding token, slot -1).
struct PagedBatch {
  struct Seq { int32_t context_len, query_len; };
  int64_t num_kv, num_q, hd, bs, num_blocks, max_blocks;
  std::vector<int32_t> tables, query_start = {0}, context_lens;
  std::vector<int64_t> slots;
  int64_t tokens = 0;

  PagedBatch(int64_t num_kv_, int64_t num_q_, int64_t hd_, int64_t bs_, int64_t num_blocks_, int64_t max_blocks_,
             const std::vector<Seq>& seqs, uint32_t seed)
      : num_kv(num_kv_), num_q(num_q_), hd(hd_), bs(bs_), num_blocks(num_blocks_), max_blocks(max_blocks_) {
    std::vector<int32_t> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
    tables.assign(seqs.size() * max_blocks, -1);
    int next = 0;
    for (size_t s = 0; s < seqs.size(); ++s)
      for (int64_t b = 0; b < (seqs[s].context_len + bs - 1) / bs; ++b) tables[s * max_blocks + b] = perm[next++];
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (int32_t i = 0; i < seqs[s].query_len; ++i) {
        const int32_t pos = seqs[s].context_len - seqs[s].query_len + i;
        slots.push_back(static_cast<int64_t>(tables[s * max_blocks + pos / bs]) * bs + pos % bs);
      }
      query_start.push_back(query_start.back() + seqs[s].query_len);
      context_lens.push_back(seqs[s].context_len);
    }
    tokens = query_start.back();
    slots.push_back(-1);
  }
  int64_t kv_row() const { return num_kv * hd; }
  int64_t num_slots() const { return num_blocks * bs; }

  PagedAttentionArgs args(float* out, const float* q, int64_t q_stride) const {
    PagedAttentionArgs a;
    a.out = out;
    a.q = q;
    a.query_start = query_start.data();
    a.context_lens = context_lens.data();
    a.block_tables = tables.data();
    a.num_seqs = static_cast<int64_t>(context_lens.size());
    a.num_tokens = tokens;
    a.max_blocks_per_seq = max_blocks;
    a.q_stride = q_stride;
    a.num_q_heads = num_q;
    a.num_kv_heads = num_kv;
    a.head_dim = hd;
    a.block_size = bs;
    a.num_blocks = num_blocks;
    a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    return a;
  }
};

// An int8 cache and its scales for every slot of a batch.
struct Int8Cache {
  std::vector<int8_t> k, v;
  std::vector<float> k_scales, v_scales;
  explicit Int8Cache(const PagedBatch& b)
      : k(b.num_slots() * b.kv_row()), v(k.size()), k_scales(b.num_slots() * b.num_kv), v_scales(k_scales.size()) {}
  void write(const Context& ctx, const float* kk, const float* vv, const int64_t* slots, int64_t n, int64_t ks,
             int64_t vs, const PagedBatch& b) {
    kv_cache_write_int8(ctx, k.data(), v.data(), k_scales.data(), v_scales.data(), kk, vv, slots, n, ks, vs, b.num_kv,
                        b.hd);
  }
  void attach(PagedAttentionArgs* a) const {
    a->kv_dtype = KvCacheDType::kInt8;
    a->k_cache = k.data();
    a->v_cache = v.data();
    a->k_scales = k_scales.data();
    a->v_scales = v_scales.data();
  }
};

// Quantization: fast == reference bit for bit (both follow the fp32 recipe in kernels.h), and,
// independently of either, every value reads back within scale/2 of its input, the row's largest
// |x| maps to +-127, an all-zero row has scale 0, and padding tokens write nothing.
TEST(KernelsTest, KvCacheWriteInt8MatchesReferenceAndBound) {
  PagedBatch b(3, 6, 13, 5, 11, 4, {{17, 17}, {9, 4}, {1, 1}}, 21);
  const int64_t kstride = b.kv_row() + 3, vstride = b.kv_row();
  auto k = random_vec((b.tokens + 1) * kstride, 22, -3.0f, 3.0f), v = random_vec((b.tokens + 1) * vstride, 23);
  for (int64_t d = 0; d < b.hd; ++d) k[2 * kstride + b.hd + d] = 0.0f;  // token 2, head 1: all zero
  k[5 * kstride + 7] = 40.0f;                                          // an outlier
  Int8Cache fast(b), ref(b);
  // Sentinel -128: quantization never produces it, so slots still holding it were not written.
  std::fill(fast.k.begin(), fast.k.end(), int8_t{-128});
  std::fill(ref.k.begin(), ref.k.end(), int8_t{-128});
  fast.write(kCpu, k.data(), v.data(), b.slots.data(), b.tokens + 1, kstride, vstride, b);
  ref.write(kRef, k.data(), v.data(), b.slots.data(), b.tokens + 1, kstride, vstride, b);
  EXPECT_EQ(fast.k, ref.k);
  EXPECT_EQ(fast.v, ref.v);
  EXPECT_EQ(fast.k_scales, ref.k_scales);
  EXPECT_EQ(fast.v_scales, ref.v_scales);

  int64_t written = 0;
  for (int64_t t = 0; t < b.tokens; ++t) {
    const int64_t slot = b.slots[t];
    for (int64_t h = 0; h < b.num_kv; ++h) {
      const int64_t row = slot * b.num_kv + h;
      for (const auto& [x, q, scale] : {std::tuple{k.data() + t * kstride, fast.k.data(), fast.k_scales[row]},
                                        std::tuple{v.data() + t * vstride, fast.v.data(), fast.v_scales[row]}}) {
        float amax = 0.0f;
        int max_q = 0;
        for (int64_t d = 0; d < b.hd; ++d) {
          const float in = x[h * b.hd + d];
          const int8_t qd = q[row * b.hd + d];
          amax = std::max(amax, std::fabs(in));
          max_q = std::max(max_q, std::abs(static_cast<int>(qd)));
          ASSERT_LE(std::fabs(qd * scale - in), 0.5f * scale * (1 + 1e-5f) + 1e-30f) << "token " << t << " head " << h;
        }
        ASSERT_FLOAT_EQ(scale, amax / 127.0f);
        ASSERT_EQ(max_q, amax > 0 ? 127 : 0);
        ++written;
      }
    }
  }
  EXPECT_EQ(written, 2 * b.tokens * b.num_kv);
  EXPECT_EQ(fast.k_scales[b.slots[2] * b.num_kv + 1], 0.0f);
  int64_t untouched = 0;
  for (int8_t x : fast.k) untouched += x == -128;
  EXPECT_EQ(untouched, (b.num_slots() - b.tokens) * b.kv_row());
}

// Fast int8 attention against the reference on the same int8 cache (dequantization included), on a
// batch mixing prefill and decode over shuffled blocks, GQA 3:1, odd head_dim and block size.
TEST(KernelsTest, PagedAttentionInt8MatchesReference) {
  PagedBatch b(2, 6, 13, 5, 40, 8, {{17, 17}, {23, 1}, {9, 4}, {1, 1}, {31, 6}}, 13);
  // Fill every slot, then overwrite this step's slots as the engine does.
  std::vector<int64_t> all(b.num_slots());
  std::iota(all.begin(), all.end(), 0);
  auto k_all = random_vec(b.num_slots() * b.kv_row(), 24), v_all = random_vec(b.num_slots() * b.kv_row(), 25);
  auto k_new = random_vec(b.tokens * b.kv_row(), 26), v_new = random_vec(b.tokens * b.kv_row(), 27);
  Int8Cache cache(b);
  cache.write(kCpu, k_all.data(), v_all.data(), all.data(), b.num_slots(), b.kv_row(), b.kv_row(), b);
  cache.write(kCpu, k_new.data(), v_new.data(), b.slots.data(), b.tokens, b.kv_row(), b.kv_row(), b);

  const int64_t qstride = b.num_q * b.hd + 7;
  auto q = random_vec(b.tokens * qstride, 28, -2.0f, 2.0f);
  std::vector<float> out_a(b.tokens * b.num_q * b.hd), out_b(out_a.size());
  PagedAttentionArgs fast = b.args(out_a.data(), q.data(), qstride), ref = b.args(out_b.data(), q.data(), qstride);
  cache.attach(&fast);
  cache.attach(&ref);
  paged_attention(kCpu, fast);
  paged_attention(kRef, ref);
  // As for fp32: fp32 sums against double ones over <= 31 keys of |v| <= 1.
  expect_close(out_a, out_b, 2e-6f, 2e-5f);

  // The first query of sequence 0 sees only position 0: its output is V there, dequantized.
  const int64_t slot0 = static_cast<int64_t>(b.tables[0]) * b.bs;
  for (int64_t h = 0; h < b.num_q; ++h)
    for (int64_t d = 0; d < b.hd; ++d)
      ASSERT_FLOAT_EQ(out_b[h * b.hd + d], cache.v[(slot0 * b.num_kv + h / 3) * b.hd + d] *
                                               cache.v_scales[slot0 * b.num_kv + h / 3]);
}

// int8 attention against fp32 attention on the same K/V (reference kernels for both, so only the
// quantization differs). The bound is derived, not fitted: each key moves a score by at most
// delta = attn_scale * sum|q| * k_scale/2, which scales every softmax weight by a factor within
// e^(+-2 delta), so the output moves by at most v_scale/2 + (e^(2 delta) - 1) * max|v|.
TEST(KernelsTest, PagedAttentionInt8CloseToFp32) {
  // Realistic-ish shapes: head_dim 64 (and an odd 67), long contexts, 16-token blocks.
  for (int64_t hd : {64, 67}) {
    SCOPED_TRACE(hd);
    PagedBatch b(2, 8, hd, 16, 64, 16, {{200, 1}, {97, 33}, {5, 5}, {250, 1}}, 31);
    std::vector<int64_t> all(b.num_slots());
    std::iota(all.begin(), all.end(), 0);
    // K with a few large channels (as trained models have), V in [-1, 1].
    auto k_f32 = random_vec(b.num_slots() * b.kv_row(), 32, -1.0f, 1.0f);
    for (int64_t i = 0; i < static_cast<int64_t>(k_f32.size()); i += b.hd) k_f32[i + 3] *= 6.0f;
    auto v_f32 = random_vec(b.num_slots() * b.kv_row(), 33);
    Int8Cache cache(b);
    cache.write(kCpu, k_f32.data(), v_f32.data(), all.data(), b.num_slots(), b.kv_row(), b.kv_row(), b);

    const int64_t qstride = b.num_q * b.hd;
    auto q = random_vec(b.tokens * qstride, 34, -1.0f, 1.0f);
    std::vector<float> out_f(b.tokens * b.num_q * b.hd), out_q(out_f.size());
    PagedAttentionArgs af = b.args(out_f.data(), q.data(), qstride), aq = b.args(out_q.data(), q.data(), qstride);
    af.k_cache = k_f32.data();
    af.v_cache = v_f32.data();
    cache.attach(&aq);
    paged_attention(kRef, af);
    paged_attention(kRef, aq);

    float max_sum_abs_q = 0, max_k_scale = 0, max_v_scale = 0, max_abs_v = 0;
    for (int64_t t = 0; t < b.tokens * b.num_q; ++t) {
      float sum = 0;
      for (int64_t d = 0; d < b.hd; ++d) sum += std::fabs(q[t * b.hd + d]);
      max_sum_abs_q = std::max(max_sum_abs_q, sum);
    }
    for (float x : cache.k_scales) max_k_scale = std::max(max_k_scale, x);
    for (float x : cache.v_scales) max_v_scale = std::max(max_v_scale, x);
    for (float x : v_f32) max_abs_v = std::max(max_abs_v, std::fabs(x));
    const double delta = af.scale * max_sum_abs_q * max_k_scale / 2;
    const double bound = max_v_scale / 2 + std::expm1(2 * delta) * max_abs_v;
    double max_err = 0, sum_err = 0, sum_abs = 0;
    for (size_t i = 0; i < out_f.size(); ++i) {
      const double e = std::fabs(out_f[i] - out_q[i]);
      max_err = std::max(max_err, e);
      sum_err += e;
      sum_abs += std::fabs(out_f[i]);
    }
    std::printf("int8 vs fp32 attention, head_dim %lld: max abs err %.5f, mean %.6f (mean |out| %.4f), "
                "derived bound %.4f\n",
                static_cast<long long>(hd), max_err, sum_err / out_f.size(), sum_abs / out_f.size(), bound);
    EXPECT_LE(max_err, bound);
    // The worst case is far from typical (measured: max 0.008-0.010, mean 5e-4, for outputs of
    // magnitude ~0.1); these catch a wrong scale or row, which moves outputs by O(0.1).
    EXPECT_LE(max_err, 0.03);
    EXPECT_LE(sum_err / out_f.size(), 2e-3);
  }
}

}  // namespace
}  // namespace ferry::kernels
