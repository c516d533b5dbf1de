// ThreadPool: persistent workers that spin briefly, then sleep on a futex (Linux), so a
// decode step's ~50 parallel_for calls each cost a few microseconds instead of a thread wake-up.
//
// One job at a time. A job is n items cut into num_chunks contiguous chunks (at most num_threads).
// The caller and the workers claim chunks from one atomic word that carries the job's sequence
// number, its chunk count and the next chunk to hand out, so a worker that wakes late for a job the
// caller already finished claims nothing, and never a chunk of the next job with stale bounds (the
// bound is checked inside the word, not read from fields the next job may be rewriting). The caller runs chunks too
// and only waits for chunks other threads claimed, which keeps a slow-to-wake worker off the
// critical path on a loaded machine.
#include "kernels/cpu/thread_pool.h"

#include <pthread.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRY_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define FERRY_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define FERRY_CPU_RELAX() ((void)0)
#endif

namespace ferry::kernels {

namespace {

// How long an idle worker spins for the next job before sleeping on the futex. Consecutive
// parallel_for calls within one decode step are a few to a few tens of microseconds apart (the
// inline operators between them), so 50 us keeps the workers awake through a step. It was 200 us:
// a small model's step (stories260K, 8 sequences: ~300 us, one job split per step) then woke the
// worker once per step and it burned 200 us of a core after each 10 us job, ~30 % more CPU per
// step on 2 cores, taken from the server's other threads (perf/RESULTS.md).
// While it spins, the worker yields its core (sched_yield) every 64 pauses: in a server the other
// threads (HTTP writers, the output processor, a local client) are often runnable, and a spinning
// worker held the core they needed. stories260K at 32 streams: 14-18 % more tokens/s and 13-14 %
// less server CPU per token than a plain spin; no change in engine_bench, where nothing else runs
// (perf/RESULTS.md, 2026-12-03). A caller waiting for chunks does not yield: it is on the step's
// critical path, and a yielded thread may wait a whole time slice to run again.
constexpr auto kWorkerSpin = std::chrono::microseconds(50);
// How long a caller spins for the chunks other threads are still running before sleeping: those
// end soon, and a caller put to sleep pays a futex wake-up on the critical path.
constexpr auto kCallerSpin = std::chrono::microseconds(200);

// True on pool workers and on a caller while it runs its share of a job: parallel_for then runs
// inline (no deadlock on the job lock, no oversubscription), whichever pool it is called on.
thread_local bool t_inside_job = false;

// Raw futex rather than std::atomic::wait: libstdc++ 12's wait/notify was seen to lose a wake-up
// here (a worker slept through notify_all at shutdown). The kernel checks *word == expected
// atomically with going to sleep, so a change made before the wake cannot be missed.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

int cores_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// Spins until pred() or `budget` elapses; returns pred(). The clock is read every 64 spins (a pause is
// tens of cycles; a clock read is ~20 ns); with `yield`, sched_yield is called there too.
template <typename Pred>
bool spin_until(std::chrono::microseconds budget, Pred pred, bool yield = false) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      FERRY_CPU_RELAX();
    }
    if (yield) sched_yield();
    if (std::chrono::steady_clock::now() >= deadline) return pred();
  }
}

}  // namespace

struct ThreadPool::Impl {
  // Atomic because run() reads it before taking job_mu (resize writes it under job_mu). A stale
  // value is harmless: chunks are claimed, so any number of them completes with any worker count.
  std::atomic<int> num_threads{1};
  std::vector<std::thread> workers;

  std::mutex job_mu;  // held by the caller for a whole job: concurrent callers are serialized

  // The job. Written by the caller (holding job_mu) before `claim` publishes it; read by a thread
  // only after it claimed a chunk of it, which keeps them stable (the caller does not return, and so
  // does not rewrite them, before every chunk is done).
  Body body = nullptr;
  void* fn = nullptr;
  int64_t n = 0;
  int64_t chunk = 0;       // items per chunk (the last one may be shorter)
  uint32_t num_chunks = 0;  // as in `claim`; the caller's copy

  // (job sequence << 32) | (num_chunks << 16) | next chunk index to hand out.
  std::atomic<uint64_t> claim{0};
  static uint64_t claim_word(uint32_t job_seq, uint32_t chunks) {
    return (static_cast<uint64_t>(job_seq) << 32) | (static_cast<uint64_t>(chunks) << 16);
  }
  // Bumped once per job (and at shutdown) to wake the workers; they sleep on it.
  std::atomic<uint32_t> wake{0};
  std::atomic<int32_t> sleeping_workers{0};
  std::atomic<bool> stop{false};
  // Chunks finished in the current job; the caller sleeps on it when the spin runs out.
  std::atomic<uint32_t> done{0};
  std::atomic<bool> caller_sleeping{false};
  uint32_t seq = 0;  // the caller's job counter (under job_mu)

  // Claims and runs chunks of job `job_seq` until none are left; returns how many it ran and, when
  // it ran any, sets *job_chunks to the job's num_chunks (read while the job's fields are stable).
  uint32_t run_chunks(uint32_t job_seq, uint32_t* job_chunks) {
    uint32_t ran = 0;
    uint64_t c = claim.load(std::memory_order_acquire);
    for (;;) {
      if (static_cast<uint32_t>(c >> 32) != job_seq) break;
      const uint32_t idx = static_cast<uint32_t>(c & 0xffff);
      const uint32_t chunks = static_cast<uint32_t>((c >> 16) & 0xffff);
      if (idx >= chunks) break;
      if (!claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        continue;
      const int64_t begin = static_cast<int64_t>(idx) * chunk;
      *job_chunks = chunks;
      body(fn, begin, std::min(n, begin + chunk));
      ++ran;
      c = claim.load(std::memory_order_acquire);
    }
    return ran;
  }

  // `seen` is the value of `wake` when the pool started, read before the thread was made: a worker
  // that is slow to start must still notice a job (or a shutdown) published meanwhile.
  void worker_loop(uint32_t seen) {
    t_inside_job = true;
    for (;;) {
      if (!spin_until(kWorkerSpin, [&] { return wake.load(std::memory_order_acquire) != seen; }, true)) {
        sleeping_workers.fetch_add(1, std::memory_order_seq_cst);
        futex_wait(&wake, seen);
        sleeping_workers.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = wake.load(std::memory_order_acquire);
      if (stop.load(std::memory_order_acquire)) return;
      const uint32_t job_seq = static_cast<uint32_t>(claim.load(std::memory_order_acquire) >> 32);
      uint32_t job_chunks = 0;
      const uint32_t ran = run_chunks(job_seq, &job_chunks);
      if (ran == 0) continue;
      // After this add the caller may return and start the next job: only locals from here on.
      // seq_cst pairs with the caller's store of caller_sleeping then re-check of `done`.
      const uint32_t total = done.fetch_add(ran, std::memory_order_seq_cst) + ran;
      if (total == job_chunks && caller_sleeping.load(std::memory_order_seq_cst)) futex_wake_all(&done);
    }
  }

  void start(int threads) {
    const int count = std::min(threads <= 0 ? cores_available() : threads, 0xffff);
    num_threads.store(count, std::memory_order_relaxed);
    stop.store(false);
    workers.reserve(static_cast<size_t>(count - 1));
    const uint32_t seen = wake.load();
    for (int i = 1; i < count; ++i) {
      workers.emplace_back([this, seen] {
        pthread_setname_np(pthread_self(), "cpu-pool");
        worker_loop(seen);
      });
    }
  }

  void shutdown() {
    stop.store(true, std::memory_order_seq_cst);
    wake.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(&wake);
    for (auto& t : workers) t.join();
    workers.clear();
  }
};

ThreadPool::ThreadPool(int num_threads) : impl_(new Impl) { impl_->start(num_threads); }

ThreadPool::~ThreadPool() {
  impl_->shutdown();
  delete impl_;
}

int ThreadPool::num_threads() const { return impl_->num_threads.load(std::memory_order_relaxed); }

void ThreadPool::resize(int num_threads) {
  FERRY_CHECK(!t_inside_job && "ThreadPool::resize from inside a parallel_for");
  std::lock_guard<std::mutex> lock(impl_->job_mu);
  const int want = num_threads <= 0 ? cores_available() : num_threads;
  if (want == impl_->num_threads.load(std::memory_order_relaxed)) return;
  impl_->shutdown();
  impl_->start(want);
}

ThreadPool& ThreadPool::default_pool() {
  static ThreadPool pool(0);
  return pool;
}

void ThreadPool::run(int64_t n, int64_t min_chunk, int64_t align, Body body, void* fn) {
  if (n <= 0) return;
  Impl& p = *impl_;
  min_chunk = std::max<int64_t>(1, min_chunk);
  align = std::max<int64_t>(1, align);
  const int threads = p.num_threads.load(std::memory_order_relaxed);
  if (t_inside_job || threads == 1 || n < 2 * min_chunk) {
    body(fn, 0, n);
    return;
  }
  // Chunk size: an even share per thread, at least min_chunk, rounded up to `align`.
  const int64_t max_chunks = std::min<int64_t>(threads, n / min_chunk);
  int64_t chunk = std::max(min_chunk, (n + max_chunks - 1) / max_chunks);
  chunk = (chunk + align - 1) / align * align;
  const int64_t num_chunks = (n + chunk - 1) / chunk;  // <= num_threads, so < 2^16 (claim word)
  if (num_chunks <= 1) {
    body(fn, 0, n);
    return;
  }

  std::lock_guard<std::mutex> lock(p.job_mu);
  t_inside_job = true;
  p.body = body;
  p.fn = fn;
  p.n = n;
  p.chunk = chunk;
  p.num_chunks = static_cast<uint32_t>(num_chunks);
  p.done.store(0, std::memory_order_relaxed);
  const uint32_t job_seq = ++p.seq;
  p.claim.store(Impl::claim_word(job_seq, p.num_chunks), std::memory_order_release);
  p.wake.fetch_add(1, std::memory_order_seq_cst);
  if (p.sleeping_workers.load(std::memory_order_seq_cst) > 0) futex_wake_all(&p.wake);

  uint32_t job_chunks = 0;
  const uint32_t ran = p.run_chunks(job_seq, &job_chunks);
  const uint32_t total = p.done.fetch_add(ran, std::memory_order_acq_rel) + ran;
  if (total != p.num_chunks) {
    const auto all_done = [&] { return p.done.load(std::memory_order_acquire) == p.num_chunks; };
    if (!spin_until(kCallerSpin, all_done)) {
      p.caller_sleeping.store(true, std::memory_order_seq_cst);
      for (uint32_t d; (d = p.done.load(std::memory_order_seq_cst)) != p.num_chunks;) futex_wait(&p.done, d);
      p.caller_sleeping.store(false, std::memory_order_relaxed);
    }
  }
  t_inside_job = false;
}

}  // namespace ferry::kernels
