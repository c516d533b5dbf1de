// scheduler_bench: the scheduler's own cost per engine step -- schedule() plus
// update_from_output() -- with N running sequences and a zero-cost fake engine (each sampled token
// is made up), so the figure is pure scheduling and KV bookkeeping overhead. Goal: < 100 us per
// step at 256 running sequences.
//
//   build-dir/perf/scheduler_bench [--benchmark_filter=...] [--benchmark_repetitions=5]
//
// Cases (args: running sequences, churn):
//   churn 0: steady decode; every sequence computes 1 token per step (blocks fill, full ones are
//            hashed into the prefix cache every block_size steps).
//   churn 1: sequences finish after 128 tokens and are replaced at once by new 128-token prompts
//            sharing a 64-token prefix, so admissions, prefix hits, chunked prefill and frees are
//            in the mix (the token budget, 2048, caps prefill per step).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "backend/llm/scheduler/scheduler.h"

namespace ferry::llm {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kPromptLen = 128;

struct Bench {
  std::unique_ptr<Scheduler> sched;
  SchedulerTime now = SchedulerTime{} + std::chrono::hours(1);
  uint64_t next_id = 0;
  int32_t max_tokens = 0;
  std::vector<SequenceResult> results;

  Bench(int32_t num_seqs, int32_t max_tokens_per_request) : max_tokens(max_tokens_per_request) {
    SchedulerConfig config;
    config.max_num_seqs = num_seqs;
    config.max_num_batched_tokens = 2048;
    KvCacheConfig kv;
    kv.block_size = kBlockSize;
    kv.num_blocks = num_seqs * ((kPromptLen + max_tokens + kBlockSize - 1) / kBlockSize + 1);
    kv.salt = kv_cache_salt("bench", 1);
    sched = std::move(Scheduler::create(config, kv).value());
    for (int32_t i = 0; i < num_seqs; ++i) add();
    // Warm up until every sequence decodes.
    while (sched->num_running() < static_cast<size_t>(num_seqs) || sched->num_waiting() > 0) step();
  }

  void add() {
    NewRequest r;
    r.id = next_id++;
    r.prompt.resize(kPromptLen);
    for (int32_t i = 0; i < kPromptLen; ++i) r.prompt[i] = i < 64 ? i : static_cast<int32_t>((r.id * 131 + i) % 32000);
    r.max_tokens = max_tokens;
    r.arrival_time = now;
    if (!sched->add_request(std::move(r)).ok()) std::abort();
  }

  // One engine step with a free "engine": returns how many requests finished.
  size_t step() {
    const SchedulerOutput& out = sched->schedule(now);
    results.resize(out.scheduled.size());
    for (size_t i = 0; i < out.scheduled.size(); ++i) {
      results[i].token = out.scheduled[i].samples ? static_cast<int32_t>((next_id + i) % 32000) : SequenceResult::kNoToken;
      results[i].finish = RequestFinishReason::kNone;
    }
    const size_t done = sched->update_from_output(results).size();
    now += std::chrono::milliseconds(1);
    return done;
  }
};

void BM_SchedulerStep(benchmark::State& state) {
  const int32_t num_seqs = static_cast<int32_t>(state.range(0));
  const bool churn = state.range(1) != 0;
  // Without churn the sequences must outlive the run: a long max_tokens, rebuilt when exhausted.
  const int32_t max_tokens = churn ? 128 : 4096;
  auto bench = std::make_unique<Bench>(num_seqs, max_tokens);
  int64_t steps_left = max_tokens - 16;
  int64_t scheduled = 0;
  for (auto _ : state) {
    if (!churn && --steps_left == 0) {
      state.PauseTiming();
      bench = std::make_unique<Bench>(num_seqs, max_tokens);
      steps_left = max_tokens - 16;
      state.ResumeTiming();
    }
    const size_t done = bench->step();
    for (size_t i = 0; i < done; ++i) bench->add();
    scheduled += static_cast<int64_t>(bench->results.size());
  }
  state.counters["seqs_per_step"] = benchmark::Counter(static_cast<double>(scheduled) / state.iterations());
  state.counters["preemptions"] = static_cast<double>(bench->sched->stats().num_preemptions);
}
BENCHMARK(BM_SchedulerStep)
    ->ArgNames({"running", "churn"})
    ->Args({64, 0})
    ->Args({256, 0})
    ->Args({256, 1})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ferry::llm

BENCHMARK_MAIN();
