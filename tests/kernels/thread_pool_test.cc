// ThreadPool (kernels/cpu/thread_pool.h): coverage of every index exactly once, chunking rules,
// nested calls inline, concurrent callers serialized, resize, and the per-call overhead (printed).
#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace ferry::kernels {
namespace {

// Runs parallel_for(n) and checks every index in [0, n) was visited exactly once, chunks are
// contiguous, at most num_threads() of them, each a multiple of `align` long except the last, and
// (when there are several) at least min_chunk long.
void check_cover(ThreadPool& pool, int64_t n, int64_t min_chunk, int64_t align) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<int> calls{0};
  std::atomic<bool> bad_chunk{false};
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        calls.fetch_add(1);
        if (b >= e || (e != n && (e - b) % align != 0)) bad_chunk = true;
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      },
      min_chunk, align);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " i=" << i;
  EXPECT_FALSE(bad_chunk) << "n=" << n;
  EXPECT_LE(calls.load(), pool.num_threads());
  if (n > 0) {
    EXPECT_GE(calls.load(), 1);
  }
}

TEST(ThreadPoolTest, EveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 4, 7}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 5, 8, 17, 64, 1000, 4099})
      for (int64_t min_chunk : {1, 4, 100})
        for (int64_t align : {1, 8}) check_cover(pool, n, min_chunk, align);
  }
}

TEST(ThreadPoolTest, UsesSeveralThreadsForLargeWork) {
  ThreadPool pool(4);
  std::vector<std::thread::id> ids(4);
  std::atomic<int> slot{0};
  // Each chunk waits until all four started, which only ends if four threads run at once.
  std::atomic<int> started{0};
  pool.parallel_for(4, [&](int64_t, int64_t) {
    ids[static_cast<size_t>(slot.fetch_add(1))] = std::this_thread::get_id();
    started.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 4 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  });
  EXPECT_EQ(started.load(), 4);
  for (int i = 0; i < 4; ++i)
    for (int j = i + 1; j < 4; ++j) EXPECT_NE(ids[i], ids[j]);
}

TEST(ThreadPoolTest, NestedCallsRunInline) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(30 * 40);
  pool.parallel_for(30, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto outer_thread = std::this_thread::get_id();
      pool.parallel_for(40, [&](int64_t b2, int64_t e2) {
        EXPECT_EQ(std::this_thread::get_id(), outer_thread);  // inline on the same thread
        for (int64_t j = b2; j < e2; ++j) hits[static_cast<size_t>(i * 40 + j)].fetch_add(1);
      });
    }
  });
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
}

TEST(ThreadPoolTest, ConcurrentCallersAreSerialized) {
  ThreadPool pool(3);
  constexpr int kCallers = 4, kJobs = 300;
  // The job whose chunks are running now; a chunk that finds another job's marker there overlaps.
  std::atomic<const void*> current{nullptr};
  std::atomic<bool> overlap{false};
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&] {
      for (int j = 0; j < kJobs; ++j) {
        std::atomic<int64_t> items_done{0};
        const void* me = &items_done;
        pool.parallel_for(64, [&](int64_t b, int64_t e) {
          const void* expected = nullptr;
          if (!current.compare_exchange_strong(expected, me) && expected != me) overlap = true;
          int64_t s = 0;
          for (int64_t i = b; i < e; ++i) s += i;
          sum.fetch_add(s);
          // The last chunk to finish clears the marker before parallel_for can return.
          if (items_done.fetch_add(e - b) + (e - b) == 64) current.store(nullptr);
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(sum.load(), int64_t{kCallers} * kJobs * (63 * 64 / 2));
}

TEST(ThreadPoolTest, ResizeAndDefaultPool) {
  ThreadPool pool(2);
  check_cover(pool, 1000, 1, 1);
  pool.resize(5);
  EXPECT_EQ(pool.num_threads(), 5);
  check_cover(pool, 1000, 1, 1);
  pool.resize(1);
  EXPECT_EQ(pool.num_threads(), 1);
  check_cover(pool, 1000, 1, 1);
  EXPECT_GE(ThreadPool::default_pool().num_threads(), 1);
  check_cover(ThreadPool::default_pool(), 777, 3, 8);
}

TEST(ThreadPoolTest, ResizeWhileOtherThreadsSubmit) {
  ThreadPool pool(2);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> bad{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 2; ++c)
    callers.emplace_back([&] {
      while (!stop.load()) {
        std::vector<std::atomic<int>> hits(97);
        pool.parallel_for(97, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (auto& h : hits) bad += h.load() != 1;
      }
    });
  for (int r = 0; r < 40; ++r) pool.resize(1 + r % 4);
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(pool.num_threads(), 4);
}

// Not a pass/fail bound (the machine is shared): prints the cost of back-to-back calls so a
// regression is visible in the test log. Checks only that a long run of calls completes.
TEST(ThreadPoolTest, BackToBackCallOverhead) {
  ThreadPool pool(2);
  std::atomic<int64_t> sink{0};
  constexpr int kCalls = 20000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < kCalls; ++c) pool.parallel_for(2, [&](int64_t b, int64_t e) { sink.fetch_add(e - b); });
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(sink.load(), int64_t{2} * kCalls);
  std::printf("parallel_for(2 threads, trivial body): %.2f us per call\n", us / kCalls);
}

}  // namespace
}  // namespace ferry::kernels
