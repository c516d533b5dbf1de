// attention_bench: kCpu paged attention for one decode step (one sequence, one query token) at long
// context, per KV cache dtype, ISA path and thread count, reported as GB/s of KV cache read -- the
// figure to hold against the machine's memory read bandwidth (perf/bandwidth), since decode
// attention reads every cached K and V byte once and does ~2 flops per fp32 element read.
//
//   build-dir/perf/attention_bench [--benchmark_filter=...] [--benchmark_repetitions=5]
//
// Args: context (cached tokens), head_dim, dtype (0 fp32, 1 bf16, 2 int8), isa (0 portable, 1 avx2),
// threads, dram (1: caches rotated as below; 0: one layer of 128 keys read again and again, so it
// stays in L2 -- the kernel's compute ceiling, not a decode figure). head_dim 64 is TinyLlama (32 q heads, 4 KV heads); head_dim 128 is Llama-3-8B-like (32 q
// heads, 8 KV heads). Block size 16, physical blocks shuffled.
//
// With dram=1 each iteration reads a different "layer" of a set of caches of >= 128 MiB in total (4x the 32 MiB
// L3 of the machine this was written on), as a real decode step does between its weight reads, so
// the KV comes from DRAM rather than from the last-level cache. Counters: kv_read = KV bytes read per
// second (K + V values, int8 scales included; G = 1e9); the time column is one call.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace ferry::kernels {
namespace {

constexpr int64_t kBlockSize = 16;
constexpr int64_t kMinTotalBytes = int64_t{128} << 20;
constexpr int64_t kMaxLayers = 64;

struct Layer {
  std::vector<float> k32, v32;
  std::vector<uint16_t> k16, v16;
  std::vector<int8_t> k8, v8;
  std::vector<float> k_scales, v_scales;
};

// Arguments of one decode step (one query token per sequence, 16-token blocks, fp32 unless the caller
// changes it; caches attached by the caller).
PagedAttentionArgs decode_batch_args(float* out, const float* q, const int32_t* query_start, const int32_t* context_lens,
                                     const int32_t* block_tables, int64_t num_seqs, int64_t max_blocks_per_seq,
                                     int64_t num_q, int64_t num_kv, int64_t hd, int64_t num_blocks) {
  PagedAttentionArgs a;
  a.out = out;
  a.q = q;
  a.query_start = query_start;
  a.context_lens = context_lens;
  a.block_tables = block_tables;
  a.num_seqs = num_seqs;
  a.num_tokens = num_seqs;
  a.max_blocks_per_seq = max_blocks_per_seq;
  a.q_stride = num_q * hd;
  a.num_q_heads = num_q;
  a.num_kv_heads = num_kv;
  a.head_dim = hd;
  a.block_size = kBlockSize;
  a.num_blocks = num_blocks;
  a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  return a;
}

void BM_DecodeAttention(benchmark::State& state) {
  const int64_t context = state.range(0);
  const int64_t hd = state.range(1);
  const auto dtype = static_cast<KvCacheDType>(state.range(2) == 0 ? 0 : state.range(2) == 1 ? 2 : 1);
  const auto isa = static_cast<cpu::AttentionIsa>(state.range(3));
  const int threads = static_cast<int>(state.range(4));
  const bool dram = state.range(5) != 0;
  if (!cpu::attention_isa_supported(isa)) {
    state.SkipWithError("ISA path not supported on this CPU");
    return;
  }
  const int64_t num_q = 32, num_kv = hd == 64 ? 4 : 8;
  const int64_t num_blocks = (context + kBlockSize - 1) / kBlockSize;
  const int64_t elems = num_blocks * kBlockSize * num_kv * hd;
  const int64_t rows = num_blocks * kBlockSize * num_kv;
  // KV bytes one call reads: context positions x KV heads x (K + V), scales included.
  const int64_t bytes_read = 2 * context * num_kv * kv_cache_bytes_per_head(dtype, hd);
  const int64_t layer_bytes = 2 * num_blocks * kBlockSize * num_kv * kv_cache_bytes_per_head(dtype, hd);
  const int64_t num_layers =
      dram ? std::clamp<int64_t>((kMinTotalBytes + layer_bytes - 1) / layer_bytes, 1, kMaxLayers) : 1;

  // Values in [-1, 1) from a 32-bit LCG: mt19937 took most of the set-up time for 128 MiB.
  uint32_t lcg = 1;
  auto dist = [&lcg](auto&) {
    lcg = lcg * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<int32_t>(lcg)) * (1.0f / 2147483648.0f);
  };
  std::mt19937 rng(1);
  std::vector<Layer> layers(static_cast<size_t>(num_layers));
  for (Layer& l : layers) {
    switch (dtype) {
      case KvCacheDType::kF32:
        l.k32.resize(elems);
        l.v32.resize(elems);
        for (int64_t i = 0; i < elems; ++i) l.k32[i] = dist(rng), l.v32[i] = dist(rng);
        break;
      case KvCacheDType::kBF16:
        l.k16.resize(elems);
        l.v16.resize(elems);
        for (int64_t i = 0; i < elems; ++i) l.k16[i] = f32_to_bf16(dist(rng)), l.v16[i] = f32_to_bf16(dist(rng));
        break;
      case KvCacheDType::kInt8:
        l.k8.resize(elems);
        l.v8.resize(elems);
        for (int64_t i = 0; i < elems; ++i)
          l.k8[i] = static_cast<int8_t>(dist(rng) * 127), l.v8[i] = static_cast<int8_t>(dist(rng) * 127);
        l.k_scales.assign(rows, 0.01f);
        l.v_scales.assign(rows, 0.01f);
        break;
    }
  }
  std::vector<int32_t> table(num_blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  std::vector<float> q(num_q * hd), out(num_q * hd);
  for (float& x : q) x = dist(rng);
  const int32_t query_start[2] = {0, 1};
  const int32_t context_lens[1] = {static_cast<int32_t>(context)};

  PagedAttentionArgs a = decode_batch_args(out.data(), q.data(), query_start, context_lens, table.data(), 1, num_blocks,
                                           num_q, num_kv, hd, num_blocks);
  a.kv_dtype = dtype;

  ThreadPool pool(threads);
  const Context ctx{Backend::kCpu, nullptr, &pool};
  const cpu::AttentionIsa saved = cpu::attention_isa();
  cpu::set_attention_isa(isa);
  size_t next = 0;
  for (auto _ : state) {
    const Layer& l = layers[next];
    next = next + 1 == layers.size() ? 0 : next + 1;
    a.k_cache = dtype == KvCacheDType::kF32 ? static_cast<const void*>(l.k32.data())
                : dtype == KvCacheDType::kBF16 ? static_cast<const void*>(l.k16.data())
                                                : static_cast<const void*>(l.k8.data());
    a.v_cache = dtype == KvCacheDType::kF32 ? static_cast<const void*>(l.v32.data())
                : dtype == KvCacheDType::kBF16 ? static_cast<const void*>(l.v16.data())
                                                : static_cast<const void*>(l.v8.data());
    a.k_scales = l.k_scales.empty() ? nullptr : l.k_scales.data();
    a.v_scales = l.v_scales.empty() ? nullptr : l.v_scales.data();
    paged_attention(ctx, a);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  cpu::set_attention_isa(saved);
  state.counters["kv_read"] = benchmark::Counter(static_cast<double>(bytes_read), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(kv_cache_dtype_name(dtype)) + " " + cpu::attention_isa_name(isa) + " " +
                 std::to_string(threads) + "t " + (dram ? "dram" : "cached") + " layers=" +
                 std::to_string(num_layers));
}

void decode_args(benchmark::internal::Benchmark* b) {
  for (int64_t hd : {64, 128})
    for (int64_t ctx : {512, 2048, 4096})
      for (int64_t dt : {0, 1, 2})
        for (int64_t isa : {1, 0})
          for (int64_t threads : {1, 2}) {
            if (isa == 0 && (hd != 64 || ctx != 4096)) continue;  // portable: one comparison point
            b->Args({ctx, hd, dt, isa, threads, 1});
            // Compute ceiling: 128 keys of fp32 K+V are 256 KiB, inside one core's L2.
            if (ctx == 512 && hd == 64) b->Args({128, hd, dt, isa, threads, 0});
          }
  b->ArgNames({"ctx", "hd", "dtype", "isa", "threads", "dram"});
  b->Unit(benchmark::kMicrosecond);
  b->UseRealTime();  // the work runs on the pool's threads too: CPU time of the caller alone would lie
}

BENCHMARK(BM_DecodeAttention)->Apply(decode_args);

// One decode step's attention over a batch of a small model: stories260K's shape (8 q / 4 KV heads
// of head_dim 8, fp32 cache, 16-token blocks shuffled), `batch` sequences of `ctx` cached tokens
// each, one query token per sequence; the cache (a few MiB) stays in L2/L3 as in the server.
// Args: batch, ctx, fused (1: the fused decode kernel, 0: the generic three passes), threads.
// Counter: key_rows = (query head, key) pairs per second.
void BM_SmallModelDecodeBatch(benchmark::State& state) {
  const int64_t batch = state.range(0), context = state.range(1);
  const bool fused = state.range(2) != 0;
  const int threads = static_cast<int>(state.range(3));
  constexpr int64_t kQ = 8, kKv = 4, kHd = 8;
  const int64_t blocks_per_seq = (context + kBlockSize - 1) / kBlockSize, num_blocks = batch * blocks_per_seq;
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> k(num_blocks * kBlockSize * kKv * kHd), v(k.size()), q(batch * kQ * kHd), out(q.size());
  for (float& x : k) x = dist(rng);
  for (float& x : v) x = dist(rng);
  for (float& x : q) x = dist(rng);
  std::vector<int32_t> table(num_blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  std::vector<int32_t> query_start(batch + 1), context_lens(batch, static_cast<int32_t>(context));
  std::iota(query_start.begin(), query_start.end(), 0);

  PagedAttentionArgs a = decode_batch_args(out.data(), q.data(), query_start.data(), context_lens.data(), table.data(),
                                           batch, blocks_per_seq, kQ, kKv, kHd, num_blocks);
  a.k_cache = k.data();
  a.v_cache = v.data();

  ThreadPool pool(threads);
  const Context ctx{Backend::kCpu, nullptr, &pool};
  const bool saved = cpu::attention_fused_decode();
  cpu::set_attention_fused_decode(fused);
  for (auto _ : state) {
    paged_attention(ctx, a);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  cpu::set_attention_fused_decode(saved);
  state.counters["key_rows"] = benchmark::Counter(static_cast<double>(batch * kQ * context),
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(fused ? "fused" : "three passes") + " " + cpu::attention_isa_name(cpu::attention_isa()));
}
BENCHMARK(BM_SmallModelDecodeBatch)
    ->ArgsProduct({{1, 32}, {128}, {0, 1}, {1}})
    ->ArgNames({"batch", "ctx", "fused", "threads"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// The small operators of one decode step of a TinyLlama-1.1B-shaped model (hidden 2048, 32 q / 4 KV
// heads of 64, intermediate 5632, vocab 32000), one token: each must stay on the caller (or split
// cheaply), since a step calls ~200 of them. Arg: threads of the pool. Time = one call.
enum class SmallOp { kRmsNorm, kAddRmsNorm, kRope, kSiluAndMul, kKvWriteF32, kKvWriteInt8, kArgmax, kEmbedding };
void BM_DecodeSmallOp(benchmark::State& state, SmallOp op) {
  constexpr int64_t kHidden = 2048, kQHeads = 32, kKvHeads = 4, kHeadDim = 64, kInter = 5632, kVocab = 32000;
  ThreadPool pool(static_cast<int>(state.range(0)));
  const Context ctx{Backend::kCpu, nullptr, &pool};
  std::vector<float> x(kVocab * 2, 0.5f), res(kHidden, 0.25f), w(kHidden, 1.0f), out(kVocab * 2);
  std::vector<float> inv(kHeadDim / 2, 0.01f), kc(64 * kKvHeads * kHeadDim), vc(kc.size()), scales(64 * kKvHeads);
  std::vector<int8_t> kc8(kc.size()), vc8(kc.size());
  std::vector<uint16_t> table(1000 * kHidden, 0x3f80);
  const int32_t pos = 1000, token = 7;
  const int64_t slot = 5;
  int32_t idx = 0;
  for (auto _ : state) {
    switch (op) {
      case SmallOp::kRmsNorm: rms_norm(ctx, out.data(), x.data(), w.data(), 1, kHidden, 1e-5f); break;
      case SmallOp::kAddRmsNorm: add_rms_norm(ctx, out.data(), res.data(), x.data(), w.data(), 1, kHidden, 1e-5f); break;
      case SmallOp::kRope:
        rope(ctx, x.data(), x.data() + kQHeads * kHeadDim, &pos, inv.data(), 1, kHidden + 2 * kKvHeads * kHeadDim,
             kHidden + 2 * kKvHeads * kHeadDim, kQHeads, kKvHeads, kHeadDim);
        break;
      case SmallOp::kSiluAndMul: silu_and_mul(ctx, out.data(), x.data(), 1, kInter); break;
      case SmallOp::kKvWriteF32:
        kv_cache_write(ctx, kc.data(), vc.data(), x.data(), x.data(), &slot, 1, kHidden, kHidden, kKvHeads, kHeadDim);
        break;
      case SmallOp::kKvWriteInt8:
        kv_cache_write_int8(ctx, kc8.data(), vc8.data(), scales.data(), scales.data(), x.data(), x.data(), &slot, 1,
                            kHidden, kHidden, kKvHeads, kHeadDim);
        break;
      case SmallOp::kArgmax: argmax(ctx, &idx, x.data(), 1, kVocab); break;
      case SmallOp::kEmbedding: embedding(ctx, out.data(), table.data(), DType::kBF16, 1000, kHidden, &token, 1); break;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK_CAPTURE(BM_DecodeSmallOp, rms_norm_1x2048, SmallOp::kRmsNorm)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeSmallOp, add_rms_norm_1x2048, SmallOp::kAddRmsNorm)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeSmallOp, rope_1tok_32q4kv64, SmallOp::kRope)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeSmallOp, silu_and_mul_1x5632, SmallOp::kSiluAndMul)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeSmallOp, kv_cache_write_f32_1tok, SmallOp::kKvWriteF32)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeSmallOp, kv_cache_write_int8_1tok, SmallOp::kKvWriteInt8)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeSmallOp, argmax_1x32000, SmallOp::kArgmax)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeSmallOp, embedding_bf16_1x2048, SmallOp::kEmbedding)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace
}  // namespace ferry::kernels

BENCHMARK_MAIN();
