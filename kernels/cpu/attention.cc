// kCpu paged attention (kernels.h, paged_attention) for fp32, bf16 and int8 caches: the driver that
// splits the batch over the thread pool, plus the portable inner loops and the ISA choice. The AVX2
// inner loops live in attention_avx2.cc.
//
// Work item = (sequence, KV head, tile of query tokens). Its R rows are the q heads sharing that KV
// head (the GQA group) for each query token of the tile, so each K/V chunk is read from memory once
// per item and reused from L1 by all R rows. Per item, two passes over the cache with a scores
// buffer between them (thread-local scratch, grown once, never freed):
//   1. scores[r, p] = (q_r * scale) . k_p            (int8: times k_scale[p], once per key and row)
//   2. softmax per row over its causal keys (soft-capped first when asked); weights outside a row's
//      keys (past its position, or before its sliding window) are zeroed
//   3. acc[r, :] += p[r, p] * v_p                     (int8: p times v_scale[p] first)
// then out = acc / sum. Decode reads K and V once: the loop is bandwidth-bound when the inner
// kernels keep up (see perf/kernels/attention_bench.cc and perf/RESULTS.md).
// A one-token item with head_dim 8 or 16 and an fp32 cache (small models' decode) goes instead
// through one AttentionKernels::decode_small call over the gathered key offsets, where the ISA has
// one (AVX2): there the per-chunk calls of the three passes cost more than the arithmetic.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/cpu/cpu_kernels.h"

namespace ferry::kernels::cpu {

namespace {

// ---- portable inner loops (dot_f32: cpu_util.h) -----------------------------------------------

void qk_portable(float* scores, int64_t s_ld, const float* q, int64_t num_rows, const float* k, int64_t k_ld,
                 int64_t n, int64_t hd) {
  for (int64_t r = 0; r < num_rows; ++r)
    for (int64_t j = 0; j < n; ++j) scores[r * s_ld + j] = dot_f32(q + r * hd, k + j * k_ld, hd);
}

void pv_portable(float* acc, const float* p, int64_t p_ld, int64_t num_rows, const float* v, int64_t v_ld,
                 int64_t n, int64_t hd) {
  for (int64_t r = 0; r < num_rows; ++r) {
    float* out = acc + r * hd;
    for (int64_t j = 0; j < n; ++j) {
      const float w = p[r * p_ld + j];
      const float* vj = v + j * v_ld;
      for (int64_t d = 0; d < hd; ++d) out[d] += w * vj[d];
    }
  }
}

void widen_bf16_portable(float* dst, const uint16_t* src, int64_t src_ld, int64_t n, int64_t hd) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) dst[j * hd + d] = bf16_to_f32(src[j * src_ld + d]);
}

void widen_int8_portable(float* dst, const int8_t* src, int64_t src_ld, int64_t n, int64_t hd) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) dst[j * hd + d] = static_cast<float>(src[j * src_ld + d]);
}

float exp_sum_portable(float* x, int64_t n, float max) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  return sum;
}

// max of x[0..n), n >= 1, with 8 independent lanes: a single running max is one maxss per key
// behind the previous one (latency-bound; it was ~13% of a decode call).
float max_of(const float* x, int64_t n) {
  float m[8];
  for (int l = 0; l < 8; ++l) m[l] = x[0];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
  for (; i < n; ++i) m[0] = x[i] > m[0] ? x[i] : m[0];
  for (int l = 1; l < 8; ++l) m[0] = m[l] > m[0] ? m[l] : m[0];
  return m[0];
}

// ---- ISA choice ---------------------------------------------------------------------------------


AttentionIsa best_isa() {
  return attention_isa_supported(AttentionIsa::kAvx2) ? AttentionIsa::kAvx2 : AttentionIsa::kPortable;
}

// Relaxed: a test or benchmark sets it between calls; every call reads it once.
std::atomic<AttentionIsa> g_isa{best_isa()};
std::atomic<bool> g_fused_decode{true};

const AttentionKernels& kernels_for(AttentionIsa isa) {
  if (isa == AttentionIsa::kAvx2) return *attention_kernels_avx2();
  return attention_kernels_portable();
}

// ---- driver -------------------------------------------------------------------------------------

// Rows per work item: enough to amortise one read of a K/V chunk over ~16 dot products, few enough
// that a decode step (one query token) keeps one item per (sequence, KV head).
constexpr int64_t kTileRows = 16;
// Below this many multiply-adds (q.k plus p.v over the whole batch) a call runs on the caller:
// handing work to the pool costs a few microseconds (more on a busy machine, where a worker that
// claimed a chunk can be descheduled), which ~256K multiply-adds (~15-30 us with the softmax and the
// driver) repay. stories260K decodes 8 sequences of 128 keys (131K) on the caller, 32 (524K) split.
constexpr int64_t kMinParallelMacs = 1 << 18;
// How far ahead of the chunk being processed the driver prefetches K/V rows, in keys: 64 keys are
// 4-32 KiB of one KV head (int8 head_dim 64 .. fp32 head_dim 128), about what DRAM latency times
// one core's bandwidth needs in flight.
constexpr int64_t kPrefetchKeys = 64;

// Thread-local scratch of one work item, grown to the largest item seen and then reused.
struct Scratch {
  std::vector<float> q;       // [R, head_dim]: q rows times the softmax scale
  std::vector<float> scores;  // [R, s_ld]: scores, then softmax weights
  std::vector<float> acc;     // [R, head_dim]
  std::vector<float> kv;      // [kAttentionChunkKeys, head_dim]: a widened K or V chunk
  std::vector<float> inv_sum;  // [R]
  std::vector<int64_t> offs;   // decode_small: each key's row offset in its cache, in floats
  // Which keys `offs` holds: those of call `offs_call`, sequence `offs_seq`, positions [lo, hi). A
  // sequence's KV heads are consecutive items, usually on one thread: they share the walk.
  uint64_t offs_call = 0;
  int64_t offs_seq = -1, offs_lo = 0, offs_hi = 0;
};

// Numbers paged_attention calls, so a thread's cached key offsets never outlive theirs (a block
// table may hold other blocks at the same address next call).
std::atomic<uint64_t> g_call_id{0};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

template <typename T>
void grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// The geometry of one call, shared by its work items.
struct Plan {
  const PagedAttentionArgs* a;
  const AttentionKernels* kern;
  int64_t group;     // q heads per KV head
  int64_t tile_tokens;  // query tokens per work item
  int64_t kv_row;    // num_kv_heads * head_dim: distance between consecutive slots, in elements
  // AttentionKernels::decode_small when this call may use it (fp32 cache, head_dim 8 or 16, on);
  // else nullptr.
  decltype(AttentionKernels::decode_small) decode_small;
  uint64_t call_id;  // this call's number (g_call_id)
};

// Points `*rows` at n keys (or values) of KV head g starting at slot0, widening bf16/int8 into
// `buf`; returns the row stride.
int64_t chunk_rows(const Plan& pl, const void* cache, int64_t slot0, int64_t g, int64_t n, float* buf,
                   const float** rows) {
  const PagedAttentionArgs& a = *pl.a;
  const int64_t offset = (slot0 * a.num_kv_heads + g) * a.head_dim;
  switch (a.kv_dtype) {
    case KvCacheDType::kF32:
      *rows = static_cast<const float*>(cache) + offset;
      return pl.kv_row;
    case KvCacheDType::kBF16:
      pl.kern->widen_bf16(buf, static_cast<const uint16_t*>(cache) + offset, pl.kv_row, n, a.head_dim);
      break;
    case KvCacheDType::kInt8:
      pl.kern->widen_int8(buf, static_cast<const int8_t*>(cache) + offset, pl.kv_row, n, a.head_dim);
      break;
  }
  *rows = buf;
  return a.head_dim;
}

// The first key position a query at `position` attends to: 0, or the start of its sliding window
// (position - window, position].
int64_t first_key(const PagedAttentionArgs& a, int64_t position) {
  return a.sliding_window > 0 ? std::max<int64_t>(0, position - a.sliding_window + 1) : 0;
}

// A one-token item through AttentionKernels::decode_small: the keys' row offsets are gathered once
// (one walk of the block table, shared by K and V), then one call does scores, softmax and the sum.
void decode_small_item(const Plan& pl, int64_t s, int64_t g, int64_t i0, int64_t key_lo, int64_t key_hi,
                       Scratch& sc) {
  const PagedAttentionArgs& a = *pl.a;
  const int64_t hd = a.head_dim;
  const int64_t q_begin = a.query_start[s];
  const int32_t* table = a.block_tables + s * a.max_blocks_per_seq;
  const int64_t n = key_hi - key_lo, padded = (n + 7) & ~int64_t{7};
  grow(sc.scores, pl.group * padded);
  if (sc.offs_call != pl.call_id || sc.offs_seq != s || sc.offs_lo != key_lo || sc.offs_hi != key_hi) {
    grow(sc.offs, padded);
    int64_t* offs = sc.offs.data();
    for (int64_t p0 = key_lo, i = 0; p0 < key_hi;) {
      const int64_t block = table[p0 / a.block_size];
      FERRY_CHECK(block >= 0 && block < a.num_blocks);
      const int64_t in_block = p0 % a.block_size, count = std::min(a.block_size - in_block, key_hi - p0);
      int64_t off = (block * a.block_size + in_block) * pl.kv_row;
      for (int64_t t = 0; t < count; ++t, off += pl.kv_row) offs[i++] = off;
      p0 += count;
    }
    for (int64_t i = n; i < padded; ++i) offs[i] = offs[n - 1];
    sc.offs_call = pl.call_id;
    sc.offs_seq = s;
    sc.offs_lo = key_lo;
    sc.offs_hi = key_hi;
  }
  const int64_t* offs = sc.offs.data();
  float* q = sc.q.data();
  const float* src = a.q + (q_begin + i0) * a.q_stride + g * pl.group * hd;
  for (int64_t i = 0; i < pl.group * hd; ++i) q[i] = src[i] * a.scale;
  float* out = a.out + (q_begin + i0) * a.num_q_heads * hd + g * pl.group * hd;
  pl.decode_small(out, q, pl.group, static_cast<const float*>(a.k_cache) + g * hd,
                  static_cast<const float*>(a.v_cache) + g * hd, offs, n, hd, a.logit_softcap, sc.scores.data(),
                  padded);
}

// One work item: sequence s, KV head g, query tokens [i0, i1) of that sequence.
void attend_item(const Plan& pl, int64_t s, int64_t g, int64_t i0, int64_t i1) {
  const PagedAttentionArgs& a = *pl.a;
  const AttentionKernels& kern = *pl.kern;
  const int64_t hd = a.head_dim;
  const int64_t q_begin = a.query_start[s];
  const int64_t query_len = a.query_start[s + 1] - q_begin;
  const int64_t context_len = a.context_lens[s];
  const int32_t* table = a.block_tables + s * a.max_blocks_per_seq;
  const bool int8 = a.kv_dtype == KvCacheDType::kInt8;
  const int64_t num_rows = (i1 - i0) * pl.group;   // row r = (token i0 + r / group, head g*group + r % group)
  const int64_t max_keys = context_len - query_len + i1;  // the tile's last token sees the most keys
  // With a sliding window the tile's first token has the earliest first key; keys before it are
  // never read. Score column j holds key key_lo + j.
  const int64_t key_lo = first_key(a, context_len - query_len + i0);
  const int64_t s_ld = (max_keys - key_lo + 7) & ~int64_t{7};

  Scratch& sc = scratch();
  grow(sc.q, num_rows * hd);
  if (i1 - i0 == 1 && pl.decode_small != nullptr) {
    decode_small_item(pl, s, g, i0, key_lo, max_keys, sc);
    return;
  }
  grow(sc.scores, num_rows * s_ld);
  grow(sc.acc, num_rows * hd);
  grow(sc.kv, kAttentionChunkKeys * hd);
  grow(sc.inv_sum, num_rows);
  float* q = sc.q.data();
  float* scores = sc.scores.data();
  float* acc = sc.acc.data();
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* src = a.q + (q_begin + i0 + r / pl.group) * a.q_stride + (g * pl.group + r % pl.group) * hd;
    for (int64_t d = 0; d < hd; ++d) q[r * hd + d] = src[d] * a.scale;
  }

  // Chunks of keys contiguous in one block: [p0, p0 + n) at slots slot0 .. slot0 + n - 1. While a
  // chunk is processed, the rows kPrefetchKeys further on are prefetched: physical blocks are
  // scattered and one KV head's rows are strided, so the hardware prefetcher alone leaves a
  // single-threaded decode waiting on DRAM latency rather than bandwidth.
  const int64_t row_bytes = a.head_dim * (a.kv_dtype == KvCacheDType::kF32 ? 4 : a.kv_dtype == KvCacheDType::kBF16 ? 2 : 1);
  const int64_t slot_bytes = row_bytes * a.num_kv_heads;
  // Prefetches the rows of keys [p, end): per block, a pointer walk (no division per key).
  auto prefetch_rows = [&](const char* head0, int64_t p, int64_t end) {
    while (p < end) {
      const int64_t in_block = p % a.block_size, n = std::min(a.block_size - in_block, end - p);
      const char* row = head0 + (table[p / a.block_size] * a.block_size + in_block) * slot_bytes;
      for (int64_t i = 0; i < n; ++i, row += slot_bytes)
        for (int64_t byte = 0; byte < row_bytes; byte += 64) __builtin_prefetch(row + byte);
      p += n;
    }
  };
  auto for_each_chunk = [&](const void* cache, auto&& body) {
    const char* head0 = static_cast<const char*>(cache) + g * row_bytes;
    for (int64_t p0 = key_lo; p0 < max_keys;) {
      const int64_t block = table[p0 / a.block_size];
      FERRY_CHECK(block >= 0 && block < a.num_blocks);
      const int64_t offset = p0 % a.block_size;
      const int64_t n = std::min({kAttentionChunkKeys, a.block_size - offset, max_keys - p0});
      prefetch_rows(head0, p0 + kPrefetchKeys, std::min(p0 + kPrefetchKeys + n, max_keys));
      body(p0, block * a.block_size + offset, n);
      p0 += n;
    }
  };

  // Pass 1: scores.
  for_each_chunk(a.k_cache, [&](int64_t p0, int64_t slot0, int64_t n) {
    const float* k = nullptr;
    const int64_t k_ld = chunk_rows(pl, a.k_cache, slot0, g, n, sc.kv.data(), &k);
    kern.qk(scores + (p0 - key_lo), s_ld, q, num_rows, k, k_ld, n, hd);
    if (int8) {
      const float* ks = a.k_scales + slot0 * a.num_kv_heads + g;
      for (int64_t r = 0; r < num_rows; ++r)
        for (int64_t j = 0; j < n; ++j) scores[r * s_ld + (p0 - key_lo) + j] *= ks[j * a.num_kv_heads];
    }
  });

  // Pass 2: softmax per row over its keys [lo, hi) (causal, and inside its window); zero weights
  // for the keys it must not see.
  const float cap = a.logit_softcap;
  for (int64_t r = 0; r < num_rows; ++r) {
    float* row = scores + r * s_ld;
    const int64_t position = context_len - query_len + i0 + r / pl.group;
    const int64_t lo = first_key(a, position) - key_lo, hi = position + 1 - key_lo;
    if (cap > 0.0f)
      for (int64_t p = lo; p < hi; ++p) row[p] = cap * std::tanh(row[p] / cap);
    sc.inv_sum[static_cast<size_t>(r)] = 1.0f / kern.exp_sum(row + lo, hi - lo, kern.row_max(row + lo, hi - lo));
    std::fill(row, row + lo, 0.0f);
    std::fill(row + hi, row + (max_keys - key_lo), 0.0f);
  }

  // Pass 3: weighted sum of V.
  std::fill(acc, acc + num_rows * hd, 0.0f);
  for_each_chunk(a.v_cache, [&](int64_t p0, int64_t slot0, int64_t n) {
    if (int8) {
      const float* vs = a.v_scales + slot0 * a.num_kv_heads + g;
      for (int64_t r = 0; r < num_rows; ++r)
        for (int64_t j = 0; j < n; ++j) scores[r * s_ld + (p0 - key_lo) + j] *= vs[j * a.num_kv_heads];
    }
    const float* v = nullptr;
    const int64_t v_ld = chunk_rows(pl, a.v_cache, slot0, g, n, sc.kv.data(), &v);
    kern.pv(acc, scores + (p0 - key_lo), s_ld, num_rows, v, v_ld, n, hd);
  });

  for (int64_t r = 0; r < num_rows; ++r) {
    float* out = a.out + (q_begin + i0 + r / pl.group) * a.num_q_heads * hd + (g * pl.group + r % pl.group) * hd;
    const float inv = sc.inv_sum[static_cast<size_t>(r)];
    for (int64_t d = 0; d < hd; ++d) out[d] = acc[r * hd + d] * inv;
  }
}

}  // namespace

const AttentionKernels& attention_kernels_portable() {
  static const AttentionKernels k{qk_portable,      pv_portable, widen_bf16_portable, widen_int8_portable,
                                  exp_sum_portable, max_of,      nullptr};
  return k;
}

const char* attention_isa_name(AttentionIsa isa) {
  switch (isa) {
    case AttentionIsa::kPortable: return "portable";
    case AttentionIsa::kAvx2: return "avx2";
  }
  return "?";
}

bool attention_isa_supported(AttentionIsa isa) {
  switch (isa) {
    case AttentionIsa::kPortable: return true;
    case AttentionIsa::kAvx2: return attention_kernels_avx2() != nullptr && cpu_has_avx2_fma();
  }
  return false;
}

AttentionIsa attention_isa() { return g_isa.load(std::memory_order_relaxed); }

void set_attention_isa(AttentionIsa isa) {
  FERRY_CHECK(attention_isa_supported(isa));
  g_isa.store(isa, std::memory_order_relaxed);
}

bool attention_fused_decode() { return g_fused_decode.load(std::memory_order_relaxed); }

void set_attention_fused_decode(bool on) { g_fused_decode.store(on, std::memory_order_relaxed); }

void paged_attention(ThreadPool& pool, const PagedAttentionArgs& a) {
  Plan pl;
  pl.a = &a;
  pl.kern = &kernels_for(attention_isa());
  pl.call_id = g_call_id.fetch_add(1, std::memory_order_relaxed) + 1;
  const bool fused = attention_fused_decode();
  pl.decode_small = fused && a.kv_dtype == KvCacheDType::kF32 && (a.head_dim == 8 || a.head_dim == 16)
                        ? pl.kern->decode_small
                        : nullptr;
  pl.group = a.num_q_heads / a.num_kv_heads;
  pl.tile_tokens = std::max<int64_t>(1, kTileRows / pl.group);
  pl.kv_row = a.num_kv_heads * a.head_dim;

  // Items are numbered sequence by sequence: item_start[s] is the first item of sequence s, whose
  // items run KV head by KV head, tile by tile. Also estimates the work, to decide on threads.
  thread_local std::vector<int64_t> item_start;
  item_start.resize(static_cast<size_t>(a.num_seqs + 1));
  item_start[0] = 0;
  int64_t macs = 0;
  for (int64_t s = 0; s < a.num_seqs; ++s) {
    const int64_t query_len = a.query_start[s + 1] - a.query_start[s];
    FERRY_CHECK(query_len >= 0 && a.context_lens[s] >= query_len);
    const int64_t tiles = (query_len + pl.tile_tokens - 1) / pl.tile_tokens;
    item_start[static_cast<size_t>(s + 1)] = item_start[static_cast<size_t>(s)] + tiles * a.num_kv_heads;
    macs += 2 * query_len * a.num_q_heads * a.context_lens[s] * a.head_dim;
  }
  const int64_t num_items = item_start[static_cast<size_t>(a.num_seqs)];
  const int64_t* starts = item_start.data();

  auto run = [&](int64_t begin, int64_t end) {
    int64_t s = std::upper_bound(starts, starts + a.num_seqs + 1, begin) - starts - 1;
    for (int64_t item = begin; item < end; ++item) {
      while (item >= starts[s + 1]) ++s;
      const int64_t query_len = a.query_start[s + 1] - a.query_start[s];
      const int64_t tiles = (query_len + pl.tile_tokens - 1) / pl.tile_tokens;
      const int64_t local = item - starts[s];
      const int64_t g = local / tiles;
      const int64_t i0 = (local % tiles) * pl.tile_tokens;
      attend_item(pl, s, g, i0, std::min(query_len, i0 + pl.tile_tokens));
    }
  };
  pool.parallel_for(num_items, run, macs < kMinParallelMacs ? std::max<int64_t>(num_items, 1) : 1);
}

}  // namespace ferry::kernels::cpu
