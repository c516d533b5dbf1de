// paged_attention's two optional variations (kernels.h, PagedAttentionArgs): sliding_window (a query
// at position p sees keys (p - w, p]) and logit_softcap (scores become c * tanh(s / c)).
//   1. The reference against a dense attention written here from the definition (one contiguous
//      sequence, explicit mask), so the reference is not its own oracle for the new semantics.
//   2. kCpu (every attention ISA path present, 1 and 3 threads) against the reference, on paged
//      batches with shuffled blocks, windows smaller than, equal to and larger than the context,
//      windows starting mid-block, prefill, chunked prefill and decode rows, fp32/bf16/int8 caches.
//   3. Window 1: every output row is exactly its own token's V.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace ferry::kernels {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A paged batch: sequence s has context_len[s] tokens in the cache, the last query_len[s] of them
// this step's queries. Blocks are handed out in a shuffled order so no sequence is contiguous.
struct Batch {
  int64_t num_q, num_kv, hd, bs;
  std::vector<int32_t> context_lens, query_start{0}, block_tables;
  int64_t max_blocks = 0, num_blocks = 0, tokens = 0;
  std::vector<float> k32, v32;          // [num_blocks, bs, num_kv, hd]
  std::vector<uint16_t> k16, v16;
  std::vector<int8_t> k8, v8;
  std::vector<float> k_scales, v_scales;  // [num_blocks, bs, num_kv]
  std::vector<float> q;                   // [tokens, q_stride]
  int64_t q_stride = 0;

  Batch(int64_t nq, int64_t nkv, int64_t head_dim, int64_t block_size,
        const std::vector<std::pair<int32_t, int32_t>>& seqs /* (context_len, query_len) */, uint32_t seed)
      : num_q(nq), num_kv(nkv), hd(head_dim), bs(block_size) {
    for (auto [ctx, ql] : seqs) {
      context_lens.push_back(ctx);
      query_start.push_back(query_start.back() + ql);
      max_blocks = std::max<int64_t>(max_blocks, (ctx + bs - 1) / bs);
      num_blocks += (ctx + bs - 1) / bs;
    }
    tokens = query_start.back();
    std::vector<int32_t> order(static_cast<size_t>(num_blocks));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    block_tables.assign(seqs.size() * static_cast<size_t>(max_blocks), 0);
    size_t next = 0;
    for (size_t s = 0; s < seqs.size(); ++s)
      for (int64_t b = 0; b < (seqs[s].first + bs - 1) / bs; ++b) block_tables[s * max_blocks + b] = order[next++];
    const size_t elems = static_cast<size_t>(num_blocks * bs * num_kv * hd);
    k32 = random_floats(elems, seed + 1);
    v32 = random_floats(elems, seed + 2);
    for (float x : k32) k16.push_back(f32_to_bf16(x));
    for (float x : v32) v16.push_back(f32_to_bf16(x));
    std::mt19937 rng(seed + 3);
    std::uniform_int_distribution<int> code(-127, 127);
    for (size_t i = 0; i < elems; ++i) {
      k8.push_back(static_cast<int8_t>(code(rng)));
      v8.push_back(static_cast<int8_t>(code(rng)));
    }
    k_scales = random_floats(static_cast<size_t>(num_blocks * bs * num_kv), seed + 4, 0.001f, 0.03f);
    v_scales = random_floats(static_cast<size_t>(num_blocks * bs * num_kv), seed + 5, 0.001f, 0.03f);
    q_stride = num_q * hd + 3;
    // Large enough scores that a soft-cap of a few units bites.
    q = random_floats(static_cast<size_t>(tokens * q_stride), seed + 6, -3.0f, 3.0f);
  }

  PagedAttentionArgs args(float* out, KvCacheDType dt, int64_t window, float softcap) const {
    PagedAttentionArgs a;
    a.out = out;
    a.q = q.data();
    a.kv_dtype = dt;
    switch (dt) {
      case KvCacheDType::kF32: a.k_cache = k32.data(); a.v_cache = v32.data(); break;
      case KvCacheDType::kBF16: a.k_cache = k16.data(); a.v_cache = v16.data(); break;
      case KvCacheDType::kInt8:
        a.k_cache = k8.data();
        a.v_cache = v8.data();
        a.k_scales = k_scales.data();
        a.v_scales = v_scales.data();
        break;
    }
    a.query_start = query_start.data();
    a.context_lens = context_lens.data();
    a.block_tables = block_tables.data();
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
    a.sliding_window = window;
    a.logit_softcap = softcap;
    return a;
  }

  // fp32 K or V of sequence s at position p, KV head g: [hd].
  const float* kv32(const std::vector<float>& cache, int64_t s, int64_t p, int64_t g) const {
    const int64_t slot = block_tables[s * max_blocks + p / bs] * bs + p % bs;
    return cache.data() + (slot * num_kv + g) * hd;
  }
};

// Dense attention of sequence s straight from the definition, in double: softmax over the keys
// (p - window, p] of c * tanh(q.k * scale / c) (or q.k * scale), weighted sum of V.
std::vector<float> dense_attention(const Batch& b, int64_t s, int64_t window, float softcap) {
  const int64_t ql = b.query_start[s + 1] - b.query_start[s];
  const int64_t ctx = b.context_lens[s];
  const double scale = 1.0 / std::sqrt(static_cast<double>(b.hd));
  std::vector<float> out(static_cast<size_t>(ql * b.num_q * b.hd));
  for (int64_t i = 0; i < ql; ++i) {
    const int64_t pos = ctx - ql + i;
    for (int64_t h = 0; h < b.num_q; ++h) {
      const int64_t g = h / (b.num_q / b.num_kv);
      const float* q = b.q.data() + (b.query_start[s] + i) * b.q_stride + h * b.hd;
      std::vector<double> w(static_cast<size_t>(pos + 1), 0.0);
      std::vector<bool> seen(static_cast<size_t>(pos + 1), false);
      double max = -1e300;
      for (int64_t p = 0; p <= pos; ++p) {
        if (window > 0 && p <= pos - window) continue;  // outside (pos - window, pos]
        const float* k = b.kv32(b.k32, s, p, g);
        double dot = 0;
        for (int64_t d = 0; d < b.hd; ++d) dot += static_cast<double>(q[d]) * k[d];
        double x = dot * scale;
        if (softcap > 0) x = softcap * std::tanh(x / softcap);
        w[p] = x;
        seen[p] = true;
        max = std::max(max, x);
      }
      double sum = 0;
      for (int64_t p = 0; p <= pos; ++p) {
        w[p] = seen[p] ? std::exp(w[p] - max) : 0.0;
        sum += w[p];
      }
      for (int64_t d = 0; d < b.hd; ++d) {
        double acc = 0;
        for (int64_t p = 0; p <= pos; ++p)
          if (seen[p]) acc += w[p] * b.kv32(b.v32, s, p, g)[d];
        out[(i * b.num_q + h) * b.hd + d] = static_cast<float>(acc / sum);
      }
    }
  }
  return out;
}

struct Shape {
  const char* name;
  int64_t num_q, num_kv, hd, bs;
  std::vector<std::pair<int32_t, int32_t>> seqs;
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {
      {"prefill_gqa2_bs5", 4, 2, 16, 5, {{23, 23}}},
      {"chunked_and_decode_bs4", 6, 3, 13, 4, {{37, 9}, {50, 1}, {8, 8}, {1, 1}}},
      {"long_decode_mha_bs16", 2, 2, 64, 16, {{300, 1}, {130, 3}}},
      {"gqa8_prefill_bs7", 8, 1, 32, 7, {{70, 40}}},
      // One-token items with head_dim 8 or 16 take the fused decode path (decode_small) on AVX2:
      // groups of 6 (rows 4 + 2), 3 and 1, keys past a multiple of 8, blocks of 16 and of 5.
      {"decode_hd8_gqa6_bs16", 12, 2, 8, 16, {{70, 1}, {9, 1}, {1, 1}, {33, 1}}},
      {"decode_hd16_gqa3_bs5", 6, 2, 16, 5, {{41, 1}, {8, 1}, {2, 1}}},
      {"decode_hd8_mha_bs16", 4, 4, 8, 16, {{17, 1}, {130, 1}}},
  };
  return s;
}

const std::vector<int64_t> kWindows = {0, 1, 2, 7, 16, 29, 1000};
const std::vector<float> kSoftcaps = {0.0f, 0.5f, 3.0f, 50.0f};

// Reference vs the definition: the reference sums in double like the dense one, so only the
// fp32 inputs/outputs round (~1e-7 relative); 1e-6 absolute on outputs bounded by max|v| = 1.
TEST(AttentionWindowTest, ReferenceMatchesDenseDefinition) {
  for (const Shape& sh : shapes()) {
    Batch b(sh.num_q, sh.num_kv, sh.hd, sh.bs, sh.seqs, 11);
    for (int64_t w : kWindows) {
      for (float c : kSoftcaps) {
        std::vector<float> out(static_cast<size_t>(b.tokens * b.num_q * b.hd), -7.0f);
        paged_attention(Context{Backend::kReference}, b.args(out.data(), KvCacheDType::kF32, w, c));
        for (int64_t s = 0; s < static_cast<int64_t>(b.context_lens.size()); ++s) {
          const auto want = dense_attention(b, s, w, c);
          const float* got = out.data() + b.query_start[s] * b.num_q * b.hd;
          for (size_t i = 0; i < want.size(); ++i)
            ASSERT_NEAR(got[i], want[i], 1e-6f) << sh.name << " window " << w << " softcap " << c << " seq " << s;
        }
      }
    }
  }
}

// The variations must change the result (else the two tests above could pass on a no-op).
TEST(AttentionWindowTest, WindowAndSoftcapChangeTheOutput) {
  Batch b(4, 2, 16, 5, {{23, 23}}, 5);
  auto run = [&](int64_t w, float c) {
    std::vector<float> out(static_cast<size_t>(b.tokens * b.num_q * b.hd));
    paged_attention(Context{Backend::kReference}, b.args(out.data(), KvCacheDType::kF32, w, c));
    return out;
  };
  const auto full = run(0, 0.0f);
  auto max_diff = [](const std::vector<float>& x, const std::vector<float>& y) {
    float m = 0;
    for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
    return m;
  };
  EXPECT_GT(max_diff(full, run(7, 0.0f)), 1e-2f);
  EXPECT_GT(max_diff(full, run(0, 0.5f)), 1e-2f);
  EXPECT_EQ(max_diff(full, run(23, 0.0f)), 0.0f);  // a window covering the context is no window
}

// Window 1: softmax over one key is 1, so out = that token's V (exact in fp32).
TEST(AttentionWindowTest, WindowOneReturnsOwnValue) {
  Batch b(4, 2, 8, 3, {{10, 10}, {6, 1}}, 7);
  for (Backend be : {Backend::kReference, Backend::kCpu}) {
    std::vector<float> out(static_cast<size_t>(b.tokens * b.num_q * b.hd));
    paged_attention(Context{be}, b.args(out.data(), KvCacheDType::kF32, 1, 0.0f));
    for (int64_t s = 0; s < 2; ++s) {
      const int64_t ql = b.query_start[s + 1] - b.query_start[s];
      for (int64_t i = 0; i < ql; ++i)
        for (int64_t h = 0; h < b.num_q; ++h) {
          const float* v = b.kv32(b.v32, s, b.context_lens[s] - ql + i, h / 2);
          const float* o = out.data() + ((b.query_start[s] + i) * b.num_q + h) * b.hd;
          for (int64_t d = 0; d < b.hd; ++d) ASSERT_EQ(o[d], v[d]) << "backend " << static_cast<int>(be);
        }
    }
  }
}

// kCpu vs the reference, as in ops_test's attention cases: fp32 sums against double ones over up to
// 300 keys, outputs convex combinations of |v| <= 1 (int8: <= 127 * 0.03): 5e-5 (int8 1e-4)
// absolute plus 1e-4 relative.
TEST(AttentionWindowTest, CpuMatchesReference) {
  struct Path {
    cpu::AttentionIsa isa;
    int threads;
    bool fused;  // one-token head_dim 8/16 fp32 items through decode_small (AVX2), or the three passes
  };
  const std::vector<Path> paths = {{cpu::AttentionIsa::kPortable, 1, true}, {cpu::AttentionIsa::kPortable, 3, true},
                                   {cpu::AttentionIsa::kAvx2, 1, true},     {cpu::AttentionIsa::kAvx2, 3, true},
                                   {cpu::AttentionIsa::kAvx2, 1, false}};
  const cpu::AttentionIsa saved = cpu::attention_isa();
  int runs = 0;
  for (const Path& path : paths) {
    if (!cpu::attention_isa_supported(path.isa)) continue;
    ThreadPool pool(path.threads);
    cpu::set_attention_isa(path.isa);
    cpu::set_attention_fused_decode(path.fused);
    for (const Shape& sh : shapes()) {
      Batch b(sh.num_q, sh.num_kv, sh.hd, sh.bs, sh.seqs, 3);
      for (KvCacheDType dt : {KvCacheDType::kF32, KvCacheDType::kBF16, KvCacheDType::kInt8}) {
        for (int64_t w : kWindows) {
          for (float c : kSoftcaps) {
            const size_t n = static_cast<size_t>(b.tokens * b.num_q * b.hd);
            std::vector<float> want(n, -7.0f), got(n, -7.0f);
            paged_attention(Context{Backend::kReference}, b.args(want.data(), dt, w, c));
            paged_attention(Context{Backend::kCpu, nullptr, &pool}, b.args(got.data(), dt, w, c));
            const float atol = dt == KvCacheDType::kInt8 ? 1e-4f : 5e-5f;
            for (size_t i = 0; i < n; ++i)
              ASSERT_LE(std::fabs(got[i] - want[i]), atol + 1e-4f * std::fabs(want[i]))
                  << sh.name << " " << kv_cache_dtype_name(dt) << " window " << w << " softcap " << c << " isa "
                  << cpu::attention_isa_name(path.isa) << " threads " << path.threads << " fused " << path.fused
                  << " [" << i << "]";
            ++runs;
          }
        }
      }
    }
  }
  cpu::set_attention_isa(saved);
  cpu::set_attention_fused_decode(true);
  EXPECT_GT(runs, 0);
}

}  // namespace
}  // namespace ferry::kernels
