// ThreadPool: the persistent CPU worker threads every kCpu operator splits its work over (matmul
// over output rows, attention over sequence x head, norms over rows). One pool per process by
// default (default_pool()), or one per engine instance (Context::pool) when instances must not
// share cores.
//
// parallel_for(n, fn) calls fn(begin, end) on disjoint ranges covering [0, n), on the pool's workers
// and the calling thread, and returns when all are done. No allocation per call. Small n (or a pool
// of one thread) runs inline on the caller.
//
// Thread-safety: parallel_for may be called from any thread; calls from different threads on the
// same pool are serialized (one job at a time; a caller waits for the previous job). Calling
// parallel_for from inside fn runs the inner loop inline (no deadlock, no oversubscription), on any
// pool. fn must not throw (an exception escaping a worker terminates the process).
//
// Cost: workers spin ~50 us after a job before sleeping on a futex, so back-to-back calls (a
// decode step) start in about a microsecond, and an idle pool uses no CPU.
#pragma once

#include <cstdint>
#include <type_traits>

namespace ferry::kernels {

class ThreadPool {
 public:
  // num_threads counts the caller: a pool of N runs N-1 workers. 0 = the cores this process may use.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const;
  // Joins the workers and starts num_threads - 1 new ones (0 = the cores this process may use).
  // Waits for a running job; must not be called from inside parallel_for (asserts).
  void resize(int num_threads);
  // Splits [0, n) into at most num_threads() contiguous chunks of at least `min_chunk` items
  // (rounded to multiples of `align`, e.g. 8 rows for SIMD-friendly tiles), in order.
  // fn is called as fn(int64_t begin, int64_t end); it is referenced, never copied (no allocation).
  template <typename Fn>
  void parallel_for(int64_t n, Fn&& fn, int64_t min_chunk = 1, int64_t align = 1) {
    using F = std::remove_reference_t<Fn>;
    run(n, min_chunk, align, [](void* f, int64_t b, int64_t e) { (*static_cast<F*>(f))(b, e); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // The process-wide pool used when Context::pool is nullptr.
  static ThreadPool& default_pool();

 private:
  using Body = void (*)(void* fn, int64_t begin, int64_t end);
  void run(int64_t n, int64_t min_chunk, int64_t align, Body body, void* fn);

  struct Impl;
  Impl* impl_;
};

}  // namespace ferry::kernels
