// Every operator of kernels.h, on every backend present, against the
// plain-loop reference (Backend::kReference, the oracle), in the manner of llama.cpp's
// test-backend-ops: one table of cases, each a name with its sizes (odd ones included: 1, 7, 33,
// 769), a function that builds seeded random inputs, runs the operator on a given Context and returns
// its outputs, and the tolerance for its dtype. Each case runs on each backend:
//   cpu-<isa>-<n>t  kCpu with the attention ISA path forced (portable; avx2 where the CPU has it,
//                   reported skipped otherwise) on a pool of n threads (1, and 3 so chunks are uneven);
//   cuda            kCuda on the CUDA emulator where built with it, else skipped: see cuda_skip_reason().
// The linear layers are here for their CUDA kernel (int8 weights) only: kCpu's linear has its own
// test with its own bounds (tests/kernels/linear_test.cc: on AVX2 it quantizes x for small m), so
// the cpu rows of those cases skip.
// Outputs that the operator does not write (padding slots, the tail of a strided row) are returned
// too, so "left untouched" is compared as well. Tolerances: the reference accumulates in double, the
// fast path in fp32, so a bound is a few fp32 ulps (6e-8 relative) times the reduction length; the
// value and its reason sit beside each case family.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace ferry::kernels {
namespace {

// ---- the table's vocabulary ----------------------------------------------------------------------

struct Tolerance {
  float atol = 0.0f;  // |got - want| <= atol + rtol * |want|, elementwise
  float rtol = 0.0f;
};
constexpr Tolerance kExact{0.0f, 0.0f};

// One output array of a run, widened to float (ints, bf16 bits and int8 values convert exactly).
struct Output {
  std::string name;
  std::vector<float> values;
};
using Outputs = std::vector<Output>;

struct OpCase {
  std::string name;  // "<op>_<dtype>_<sizes>"; letters, digits and '_' only (gtest names)
  std::function<Outputs(const Context&)> run;
  Tolerance tol;
};

template <typename T>
std::vector<float> widen(const std::vector<T>& v) {
  return std::vector<float>(v.begin(), v.end());
}

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::string dims(std::initializer_list<int64_t> sizes) {
  std::string s;
  for (int64_t x : sizes) {
    if (!s.empty()) s.push_back('x');
    s.append(std::to_string(x));
  }
  return s;
}

// ---- element-wise and row-wise operators ---------------------------------------------------------

// Row norms sum dim squares in fp32 (vs double): relative error ~dim * 6e-8 / 2 on the scale; 1e-5
// covers dim 769 with margin, the atol covers values near 0.
constexpr Tolerance kNormTol{1e-6f, 1e-5f};

void add_norm_cases(std::vector<OpCase>& t) {
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 1}, {1, 769}, {7, 33}, {33, 769}, {769, 7}}) {
    t.push_back({"rms_norm_f32_" + dims({rows, dim}),
                 [=](const Context& ctx) {
                   auto x = random_floats(rows * dim, 1), w = random_floats(dim, 2, 0.5f, 1.5f);
                   std::vector<float> out(rows * dim);
                   rms_norm(ctx, out.data(), x.data(), w.data(), rows, dim, 1e-5f);
                   return Outputs{{"out", out}};
                 },
                 kNormTol});
    t.push_back({"add_rms_norm_f32_" + dims({rows, dim}),
                 [=](const Context& ctx) {
                   auto res = random_floats(rows * dim, 3), d = random_floats(rows * dim, 4);
                   auto w = random_floats(dim, 5, 0.5f, 1.5f);
                   std::vector<float> out(rows * dim);
                   add_rms_norm(ctx, out.data(), res.data(), d.data(), w.data(), rows, dim, 1e-6f);
                   return Outputs{{"out", out}, {"residual", res}};  // residual: one fp32 add, exact
                 },
                 kNormTol});
  }
  // Heads inside a longer row (qkv layout): the columns past the heads must stay untouched.
  for (auto [tokens, heads, hd] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {1, 32, 128}, {7, 3, 33},
                                   {33, 8, 64}}) {
    t.push_back({"head_rms_norm_f32_" + dims({tokens, heads, hd}),
                 [=](const Context& ctx) {
                   const int64_t stride = heads * hd + 17;
                   auto x = random_floats(tokens * stride, 6), w = random_floats(hd, 7, 0.5f, 1.5f);
                   head_rms_norm(ctx, x.data(), w.data(), tokens, stride, heads, hd, 1e-6f);
                   return Outputs{{"x", x}};
                 },
                 kNormTol});
  }
}

void add_embedding_cases(std::vector<OpCase>& t) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (auto [tokens, hidden] : {std::pair<int64_t, int64_t>{1, 1}, {1, 769}, {7, 33}, {33, 769}}) {
      t.push_back({std::string("embedding_") + dtype_name(dt) + "_" + dims({tokens, hidden}),
                   [=](const Context& ctx) {
                     const int64_t vocab = 37;
                     auto table = random_floats(vocab * hidden, 8);
                     std::vector<uint16_t> narrow(table.size());
                     for (size_t i = 0; i < table.size(); ++i)
                       narrow[i] = dt == DType::kF16 ? f32_to_f16(table[i]) : f32_to_bf16(table[i]);
                     const void* data = dt == DType::kF32 ? static_cast<const void*>(table.data()) : narrow.data();
                     std::vector<int32_t> ids(tokens);
                     for (int64_t i = 0; i < tokens; ++i) ids[i] = static_cast<int32_t>((i * 7 + 3) % vocab);
                     std::vector<float> out(tokens * hidden);
                     embedding(ctx, out.data(), data, dt, vocab, hidden, ids.data(), tokens);
                     return Outputs{{"out", out}};
                   },
                   kExact});  // both convert the same bits
    }
  }
}

void add_rope_cases(std::vector<OpCase>& t) {
  struct Shape { int64_t tokens, q_heads, kv_heads, hd; };
  for (Shape s : {Shape{1, 1, 1, 2}, Shape{1, 32, 4, 64}, Shape{7, 6, 2, 18}, Shape{33, 8, 8, 128}}) {
    for (RopeScaling scaling : {RopeScaling::kNone, RopeScaling::kLlama3}) {
      t.push_back({std::string("rope_") + (scaling == RopeScaling::kNone ? "plain" : "llama3") + "_" +
                       dims({s.tokens, s.q_heads, s.kv_heads, s.hd}),
                   [=](const Context& ctx) {
                     RopeParams p;
                     p.theta = 500000.0f;
                     p.scaling = scaling;
                     p.factor = 8.0f;
                     std::vector<float> inv(s.hd / 2);
                     rope_inv_freq(p, s.hd, inv.data());
                     // q then k in one fused row with a gap after them, as a qkv projection writes.
                     const int64_t stride = (s.q_heads + 2 * s.kv_heads) * s.hd + 3;
                     auto x = random_floats(s.tokens * stride, 9);
                     std::vector<int32_t> pos(s.tokens);
                     for (int64_t i = 0; i < s.tokens; ++i) pos[i] = static_cast<int32_t>((i * 997 + i * i * 31) % 131072);
                     rope(ctx, x.data(), x.data() + s.q_heads * s.hd, pos.data(), inv.data(), s.tokens, stride,
                          stride, s.q_heads, s.kv_heads, s.hd);
                     return Outputs{{"qk", x}};
                   },
                   // sin/cos in double on both sides, rounded to fp32 here: 2 roundings of |x| <= 1.
                   Tolerance{2e-6f, 1e-5f}});
    }
  }
}

void add_activation_cases(std::vector<OpCase>& t) {
  // range 8: the usual activations; range 120: past where e^-x leaves the fp32 normal range both ways.
  for (auto [rows, inter, range] : {std::tuple<int64_t, int64_t, float>{1, 1, 8.0f}, {1, 769, 8.0f}, {7, 33, 8.0f},
                                    {33, 769, 8.0f}, {1, 5632, 8.0f}, {7, 769, 120.0f}}) {
    const std::string size = dims({rows, inter}) + (range > 8.0f ? "_wide" : "");
    t.push_back({"silu_and_mul_f32_" + size,
                 [=](const Context& ctx) {
                   auto x = random_floats(rows * 2 * inter, 10, -range, range);
                   std::vector<float> out(rows * inter);
                   silu_and_mul(ctx, out.data(), x.data(), rows, inter);
                   return Outputs{{"out", out}};
                 },
                 Tolerance{1e-6f, 1e-5f}});  // fp32 exp (libm or cpu's polynomial, 1.9e-7): a few ulps
    t.push_back({"gelu_tanh_and_mul_f32_" + size,
                 [=](const Context& ctx) {
                   auto x = random_floats(rows * 2 * inter, 11, -range, range);
                   std::vector<float> out(rows * inter);
                   gelu_tanh_and_mul(ctx, out.data(), x.data(), rows, inter);
                   return Outputs{{"out", out}};
                 },
                 // fp32 exp of the cubic's argument: ~1e-6 relative on |out| up to range^2.
                 Tolerance{2e-6f, 2e-5f}});
  }
}

void add_vocab_cases(std::vector<OpCase>& t) {
  for (auto [rows, vocab] : {std::pair<int64_t, int64_t>{1, 1}, {1, 769}, {7, 33}, {33, 769}, {2, 32000}}) {
    t.push_back({"argmax_f32_" + dims({rows, vocab}),
                 [=](const Context& ctx) {
                   auto x = random_floats(rows * vocab, 12, -5.0f, 5.0f);
                   if (vocab > 20) x[vocab - 1] = x[vocab - 2] = 9.0f;  // a tie in row 0: the lower index wins
                   if (rows > 1 && vocab > 20) x[vocab + 5] = std::nanf("");  // row 1: a NaN never wins
                   std::vector<int32_t> out(rows);
                   argmax(ctx, out.data(), x.data(), rows, vocab);
                   return Outputs{{"index", widen(out)}};
                 },
                 kExact});
    t.push_back({"log_softmax_f32_" + dims({rows, vocab}),
                 [=](const Context& ctx) {
                   auto x = random_floats(rows * vocab, 13, -5.0f, 5.0f);
                   log_softmax(ctx, x.data(), rows, vocab);
                   return Outputs{{"x", x}};
                 },
                 // fp32 sum of vocab exps: relative error ~vocab * 6e-8 in the sum, absolute in the log.
                 Tolerance{static_cast<float>(2e-6 + vocab * 6e-8), 1e-6f}});
    t.push_back({"gather_rows_f32_" + dims({rows, vocab}),
                 [=](const Context& ctx) {
                   auto x = random_floats(rows * vocab, 14);
                   std::vector<int32_t> idx(2 * rows + 1);
                   for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>((i * 5 + 1) % rows);
                   std::vector<float> out(idx.size() * vocab);
                   gather_rows(ctx, out.data(), x.data(), idx.data(), static_cast<int64_t>(idx.size()), vocab);
                   return Outputs{{"out", out}};
                 },
                 kExact});
  }
}

// ---- paged KV cache ------------------------------------------------------------------------------

// A batch of sequences over shuffled physical blocks; each sequence's earlier context is already in
// the cache and its query tokens are the last query_len positions.
struct PagedBatch {
  struct Seq { int32_t context_len, query_len; };
  int64_t num_q, num_kv, hd, bs, num_blocks, max_blocks = 0;
  std::vector<int32_t> tables, query_start{0}, context_lens;
  std::vector<int64_t> slots;  // of the query tokens, then one padding token (-1)
  int64_t tokens = 0;

  PagedBatch(int64_t num_q_, int64_t num_kv_, int64_t hd_, int64_t bs_, const std::vector<Seq>& seqs, uint32_t seed)
      : num_q(num_q_), num_kv(num_kv_), hd(hd_), bs(bs_) {
    int64_t needed = 0;
    for (const Seq& s : seqs) {
      const int64_t blocks = (s.context_len + bs - 1) / bs;
      needed += blocks;
      max_blocks = std::max(max_blocks, blocks);
    }
    num_blocks = needed + 3;  // a few blocks no sequence owns
    std::vector<int32_t> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
    tables.assign(seqs.size() * std::max<int64_t>(max_blocks, 1), -1);
    int next = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (int64_t b = 0; b < (seqs[s].context_len + bs - 1) / bs; ++b) tables[s * max_blocks + b] = perm[next++];
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
  int64_t cache_elems() const { return num_blocks * bs * kv_row(); }
  int64_t num_rows() const { return num_blocks * bs * num_kv; }  // (slot, kv head) rows

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

void add_kv_write_cases(std::vector<OpCase>& t) {
  struct Shape { int64_t num_kv, hd, bs; std::vector<PagedBatch::Seq> seqs; };
  const std::vector<Shape> shapes = {{1, 1, 1, {{1, 1}}},
                                     {4, 64, 16, {{33, 33}, {7, 1}}},
                                     {3, 13, 5, {{17, 17}, {9, 4}, {1, 1}}},
                                     {2, 769, 7, {{7, 7}}}};
  for (const Shape& sh : shapes) {
    const std::string size = dims({sh.num_kv, sh.hd, sh.bs, static_cast<int64_t>(sh.seqs.size())});
    // Inputs: strided k (extra columns), contiguous v, one padding token that must write nothing.
    auto inputs = [sh](std::vector<float>* k, std::vector<float>* v, int64_t* k_stride) {
      PagedBatch b(sh.num_kv, sh.num_kv, sh.hd, sh.bs, sh.seqs, 15);
      *k_stride = b.kv_row() + 3;
      *k = random_floats((b.tokens + 1) * *k_stride, 16, -3.0f, 3.0f);
      *v = random_floats((b.tokens + 1) * b.kv_row(), 17);
      return b;
    };
    t.push_back({"kv_cache_write_f32_" + size,
                 [=](const Context& ctx) {
                   std::vector<float> k, v;
                   int64_t ks;
                   PagedBatch b = inputs(&k, &v, &ks);
                   std::vector<float> kc(b.cache_elems(), -7.0f), vc(b.cache_elems(), -7.0f);
                   kv_cache_write(ctx, kc.data(), vc.data(), k.data(), v.data(), b.slots.data(), b.tokens + 1, ks,
                                  b.kv_row(), b.num_kv, b.hd);
                   return Outputs{{"k_cache", kc}, {"v_cache", vc}};
                 },
                 kExact});
    t.push_back({"kv_cache_write_bf16_" + size,
                 [=](const Context& ctx) {
                   std::vector<float> k, v;
                   int64_t ks;
                   PagedBatch b = inputs(&k, &v, &ks);
                   std::vector<uint16_t> kc(b.cache_elems(), 0xdead), vc(b.cache_elems(), 0xdead);
                   kv_cache_write_bf16(ctx, kc.data(), vc.data(), k.data(), v.data(), b.slots.data(), b.tokens + 1,
                                       ks, b.kv_row(), b.num_kv, b.hd);
                   return Outputs{{"k_cache_bits", widen(kc)}, {"v_cache_bits", widen(vc)}};
                 },
                 kExact});  // the bits: round to nearest even on both sides
    t.push_back({"kv_cache_write_int8_" + size,
                 [=](const Context& ctx) {
                   std::vector<float> k, v;
                   int64_t ks;
                   PagedBatch b = inputs(&k, &v, &ks);
                   std::vector<int8_t> kc(b.cache_elems(), -128), vc(b.cache_elems(), -128);
                   std::vector<float> ksc(b.num_rows(), -1.0f), vsc(b.num_rows(), -1.0f);
                   kv_cache_write_int8(ctx, kc.data(), vc.data(), ksc.data(), vsc.data(), k.data(), v.data(),
                                       b.slots.data(), b.tokens + 1, ks, b.kv_row(), b.num_kv, b.hd);
                   return Outputs{{"k_cache", widen(kc)}, {"v_cache", widen(vc)}, {"k_scales", ksc}, {"v_scales", vsc}};
                 },
                 kExact});  // kernels.h's fp32 recipe, bit for bit
  }
}

// The cache of one dtype, filled at every slot with seeded values (what earlier steps wrote).
struct FilledCache {
  std::vector<float> k32, v32;
  std::vector<uint16_t> k16, v16;
  std::vector<int8_t> k8, v8;
  std::vector<float> k_scales, v_scales;

  FilledCache(const PagedBatch& b, KvCacheDType dt) {
    const auto k = random_floats(b.cache_elems(), 18), v = random_floats(b.cache_elems(), 19);
    if (dt == KvCacheDType::kF32) {
      k32 = k;
      v32 = v;
    } else if (dt == KvCacheDType::kBF16) {
      for (float x : k) k16.push_back(f32_to_bf16(x));
      for (float x : v) v16.push_back(f32_to_bf16(x));
    } else {
      std::mt19937 rng(20);
      std::uniform_int_distribution<int> q(-127, 127);
      for (size_t i = 0; i < k.size(); ++i) {
        k8.push_back(static_cast<int8_t>(q(rng)));
        v8.push_back(static_cast<int8_t>(q(rng)));
      }
      k_scales = random_floats(b.num_rows(), 21, 0.001f, 0.02f);
      v_scales = random_floats(b.num_rows(), 22, 0.001f, 0.02f);
    }
  }
  void attach(PagedAttentionArgs* a, KvCacheDType dt) const {
    a->kv_dtype = dt;
    switch (dt) {
      case KvCacheDType::kF32: a->k_cache = k32.data(); a->v_cache = v32.data(); break;
      case KvCacheDType::kBF16: a->k_cache = k16.data(); a->v_cache = v16.data(); break;
      case KvCacheDType::kInt8:
        a->k_cache = k8.data();
        a->v_cache = v8.data();
        a->k_scales = k_scales.data();
        a->v_scales = v_scales.data();
        break;
    }
  }
};

void add_attention_cases(std::vector<OpCase>& t) {
  struct Shape {
    const char* what;
    int64_t num_q, num_kv, hd, bs;
    std::vector<PagedBatch::Seq> seqs;
  };
  const std::vector<Shape> shapes = {
      {"one_key", 1, 1, 1, 1, {{1, 1}}},
      {"decode_tinyllama", 32, 4, 64, 16, {{769, 1}, {33, 1}, {1, 1}, {7, 1}}},
      {"decode_hd128_mha", 4, 4, 128, 16, {{300, 1}}},
      {"prefill_gqa3_odd", 6, 2, 13, 5, {{17, 17}, {23, 1}, {9, 4}, {1, 1}, {31, 6}}},
      {"prefill_gqa8_long", 8, 1, 64, 7, {{97, 33}, {40, 0}, {250, 1}}},
      {"mixed_hd33", 4, 2, 33, 3, {{33, 7}, {2, 2}}},
      // The small-head_dim path (head_dim 8 and 16: eight keys reduced together), with every tail of
      // keys past a multiple of 8, in decode and prefill tiles; stories260K's shape first.
      {"decode_hd8_gqa2", 8, 4, 8, 16, {{129, 1}, {1, 1}, {17, 1}, {64, 1}, {8, 1}, {203, 1}}},
      {"prefill_hd8_gqa3", 6, 2, 8, 5, {{23, 9}, {7, 1}, {14, 14}}},
      {"mixed_hd16", 4, 2, 16, 16, {{41, 3}, {9, 1}, {100, 1}}},
  };
  for (const Shape& sh : shapes) {
    for (KvCacheDType dt : {KvCacheDType::kF32, KvCacheDType::kBF16, KvCacheDType::kInt8}) {
      t.push_back({std::string("paged_attention_") + kv_cache_dtype_name(dt) + "_" + sh.what,
                   [sh, dt](const Context& ctx) {
                     PagedBatch b(sh.num_q, sh.num_kv, sh.hd, sh.bs, sh.seqs, 23);
                     FilledCache cache(b, dt);
                     const int64_t q_stride = b.num_q * b.hd + 5;
                     auto q = random_floats(b.tokens * q_stride, 24, -2.0f, 2.0f);
                     std::vector<float> out(b.tokens * b.num_q * b.hd, -7.0f);
                     PagedAttentionArgs a = b.args(out.data(), q.data(), q_stride);
                     cache.attach(&a, dt);
                     paged_attention(ctx, a);
                     return Outputs{{"out", out}};
                   },
                   // Outputs are convex combinations of |v| <= 1 (int8: <= 127 * 0.02 = 2.54). fp32
                   // sums over up to 769 keys against double ones: worst n * 6e-8 = 4.6e-5 of max|v|;
                   // measured max ~1e-6.
                   Tolerance{dt == KvCacheDType::kInt8 ? 1e-4f : 5e-5f, 1e-4f}});
    }
  }
}

// int8 weights (kernels.h kInt8, quantized by quantize_int8), fp32 x; out_stride > n with the
// padding returned, so it must stay untouched. m 1, 3 and 17 (one and three 8-row tiles of the CUDA
// kernel), k odd (its scalar path) and a multiple of 4 (its vector path). fp32 sums of up to 1029
// terms of |x w| <= 0.5 against the reference's double: 1e-4 + 1e-4 |want|.
void add_linear_cases(std::vector<OpCase>& t) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 77, 1029}, {3, 130, 1028}, {17, 33, 257}}) {
    for (bool with_bias : {false, true}) {
      t.push_back({std::string("linear_int8_") + (with_bias ? "bias_" : "") + dims({m, n, k}),
                   [=](const Context& ctx) {
                     const std::vector<float> w = random_floats(n * k, 70, -0.5f, 0.5f);
                     std::vector<int8_t> q(n * k);
                     std::vector<float> scales(n);
                     quantize_int8(w.data(), n, k, q.data(), scales.data());
                     const WeightMatrix wm{WeightFormat::kInt8, n, k, q.data(), scales.data(), nullptr, 0};
                     const std::vector<float> x = random_floats(m * k, 71), bias = random_floats(n, 72);
                     const int64_t stride = n + 3;
                     std::vector<float> out(m * stride, 7.0f);
                     linear(ctx, out.data(), stride, x.data(), wm, with_bias ? bias.data() : nullptr, m);
                     return Outputs{{"out", out}};
                   },
                   Tolerance{1e-4f, 1e-4f}});
    }
  }
  // int4 weights (kernels.h kInt4, quantize_int4) in groups of 32 (symmetric) and 128 (zero points):
  // fp32 sums of up to 1152 terms, the same bound.
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 77, 1152}, {17, 33, 256}}) {
    for (auto [group, zeros] : {std::pair<int64_t, bool>{32, false}, {128, true}}) {
      t.push_back({"linear_int4_g" + std::to_string(group) + (zeros ? "_zeros_" : "_") + dims({m, n, k}),
                   [=](const Context& ctx) {
                     const std::vector<float> w = random_floats(n * k, 73, -0.5f, 0.5f);
                     std::vector<uint8_t> packed(static_cast<size_t>(weight_data_bytes(WeightFormat::kInt4, n, k)));
                     std::vector<float> scales(n * (k / group)), zero_points(zeros ? scales.size() : 0);
                     quantize_int4(w.data(), n, k, group, packed.data(), scales.data(),
                                   zeros ? zero_points.data() : nullptr);
                     const WeightMatrix wm{WeightFormat::kInt4, n, k, packed.data(), scales.data(),
                                           zeros ? zero_points.data() : nullptr, group};
                     const std::vector<float> x = random_floats(m * k, 74), bias = random_floats(n, 75);
                     const int64_t stride = n + 3;
                     std::vector<float> out(m * stride, 7.0f);
                     linear(ctx, out.data(), stride, x.data(), wm, bias.data(), m);
                     return Outputs{{"out", out}};
                   },
                   Tolerance{1e-4f, 1e-4f}});
    }
  }
}

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> t;
    add_embedding_cases(t);
    add_norm_cases(t);
    add_rope_cases(t);
    add_activation_cases(t);
    add_vocab_cases(t);
    add_kv_write_cases(t);
    add_attention_cases(t);
    add_linear_cases(t);
    return t;
  }();
  return cases;
}

// ---- backends ------------------------------------------------------------------------------------

struct BackendUnderTest {
  std::string name;
  Backend backend;
  cpu::AttentionIsa isa = cpu::AttentionIsa::kPortable;
  int num_threads = 1;
};

const std::vector<BackendUnderTest>& backends() {
  static const std::vector<BackendUnderTest> list = {
      {"cpu_portable_1t", Backend::kCpu, cpu::AttentionIsa::kPortable, 1},
      {"cpu_portable_3t", Backend::kCpu, cpu::AttentionIsa::kPortable, 3},
      {"cpu_avx2_1t", Backend::kCpu, cpu::AttentionIsa::kAvx2, 1},
      {"cpu_avx2_3t", Backend::kCpu, cpu::AttentionIsa::kAvx2, 3},
      {"cuda", Backend::kCuda},
  };
  return list;
}

// Why a kCuda row does not run here ("" when it runs). kernels.h dispatches Backend::kCuda to
// kernels/cuda in the CUDA emulation build (FERRY_TEST_CUDA_DISPATCH), where device pointers are
// host pointers, so the table's host buffers serve as they are; there the operators without a CUDA
// kernel are skipped. The nvcc build does not dispatch kCuda yet (CUDA kernels: kernels_cuda_test).
std::string cuda_skip_reason([[maybe_unused]] const std::string& case_name) {
#if defined(FERRY_TEST_CUDA_DISPATCH)
  for (const char* op :
       {"gelu_tanh_and_mul", "log_softmax"})
    if (case_name.rfind(op, 0) == 0) return std::string(op) + ": no CUDA kernel yet";
  return "";
#elif defined(FERRY_TEST_HAVE_CUDA)
  return "kernels.h does not dispatch Backend::kCuda yet (CUDA kernels: see kernels_cuda_test)";
#else
  return "built without CUDA (FERRY_CUDA=OFF or no nvcc)";
#endif
}

// ---- the test ------------------------------------------------------------------------------------

class OpsTest : public ::testing::TestWithParam<std::tuple<size_t, size_t>> {};

TEST_P(OpsTest, MatchesReference) {
  const OpCase& c = op_cases()[std::get<0>(GetParam())];
  const BackendUnderTest& be = backends()[std::get<1>(GetParam())];
  if (be.backend == Backend::kCuda && !cuda_skip_reason(c.name).empty()) GTEST_SKIP() << cuda_skip_reason(c.name);
  if (be.backend == Backend::kCpu && c.name.rfind("linear_", 0) == 0)
    GTEST_SKIP() << "kCpu linear: tests/kernels/linear_test.cc, with its own bounds";
  if (!cpu::attention_isa_supported(be.isa))
    GTEST_SKIP() << "this CPU (or build) lacks the " << cpu::attention_isa_name(be.isa) << " path";

  const Outputs want = c.run(Context{Backend::kReference});
  ThreadPool pool(be.num_threads);
  const cpu::AttentionIsa saved = cpu::attention_isa();
  cpu::set_attention_isa(be.isa);
  const Outputs got = c.run(Context{be.backend, nullptr, &pool});
  cpu::set_attention_isa(saved);

  ASSERT_EQ(got.size(), want.size());
  for (size_t o = 0; o < got.size(); ++o) {
    const std::vector<float>& g = got[o].values;
    const std::vector<float>& w = want[o].values;
    ASSERT_EQ(g.size(), w.size()) << got[o].name;
    double max_err = 0.0;
    for (size_t i = 0; i < g.size(); ++i) {
      const double err = std::fabs(static_cast<double>(g[i]) - w[i]);
      max_err = std::max(max_err, err);
      ASSERT_LE(err, c.tol.atol + c.tol.rtol * std::fabs(w[i]))  // false for NaN too
          << got[o].name << "[" << i << "]: got " << g[i] << " want " << w[i];
    }
    char err_text[32];
    std::snprintf(err_text, sizeof err_text, "%.3g", max_err);
    RecordProperty(got[o].name + "_max_abs_err", err_text);  // in the --gtest_output=xml report
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, OpsTest, ::testing::Combine(::testing::Range<size_t>(0, op_cases().size()),
                                       ::testing::Range<size_t>(0, backends().size())),
    [](const ::testing::TestParamInfo<std::tuple<size_t, size_t>>& info) {
      return op_cases()[std::get<0>(info.param)].name + "__" + backends()[std::get<1>(info.param)].name;
    });

// The table's names must be unique and gtest-safe; a duplicate would silently shadow a case.
TEST(OpsTableTest, CaseNamesAreUniqueIdentifiers) {
  std::vector<std::string> names;
  for (const OpCase& c : op_cases()) {
    for (char ch : c.name) ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') << c.name;
    names.push_back(c.name);
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
}

}  // namespace
}  // namespace ferry::kernels
