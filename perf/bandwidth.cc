// bandwidth: measured memory read bandwidth of this machine with 1..T threads, the denominator of the
// decode roofline in perf/RESULTS.md (batch-1 decode reads every weight byte once per token, so
// tokens/s <= read bandwidth / weight bytes).
//
// Not a test. Usage: bandwidth [--mib N (buffer size, default 1024)] [--threads T (max, default 2)]
//                              [--reps R (passes per measurement, default 5)] [--rounds K (default 5)]
// Each thread reads its own contiguous slice of one buffer (allocated and written first, so every
// page is resident) with 256-bit AVX2 loads summed into 4 accumulators (or plain 64-bit loads on
// CPUs without AVX2), like a matrix-vector product streams a weight matrix. A measurement is R
// passes over the whole buffer; its bandwidth = R * buffer bytes / wall time (GB = 1e9 bytes, and
// GiB/s beside it). K measurements per thread count, interleaved (1, 2, 1, 2, ...); prints each
// and the median and best. Use a buffer far larger than the last-level cache (default 1 GiB).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Sums a slice (bytes a multiple of 128) so the loads cannot be elided: 256-bit AVX2 loads where the
// CPU has them (chosen at run time; the build needs no -march), 64-bit loads otherwise.
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t read_slice_avx2(const uint8_t* p, size_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < bytes; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a0);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
const bool kHaveAvx2 = __builtin_cpu_supports("avx2");
#else
const bool kHaveAvx2 = false;
#endif

uint64_t read_slice(const uint8_t* p, size_t bytes) {
#if defined(__x86_64__)
  if (kHaveAvx2) return read_slice_avx2(p, bytes);
#endif
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const uint64_t* q = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < bytes / 8; i += 4) {
    s0 += q[i];
    s1 += q[i + 1];
    s2 += q[i + 2];
    s3 += q[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

// One measurement: `threads` threads, each reading its slice `reps` times; returns GB/s (1e9).
double measure(const uint8_t* buf, size_t bytes, int threads, int reps, uint64_t* sink) {
  const size_t slice = (bytes / threads) & ~static_cast<size_t>(127);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<uint64_t> sums(threads * 8, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      uint64_t s = 0;
      for (int r = 0; r < reps; ++r) s += read_slice(buf + t * slice, slice);
      sums[t * 8] = s;
    });
  }
  while (ready.load() < threads) {
  }
  const double t0 = now_s();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double dt = now_s() - t0;
  for (int t = 0; t < threads; ++t) *sink += sums[t * 8];
  return static_cast<double>(slice) * threads * reps / dt / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 1024;
  int max_threads = 2, reps = 5, rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char* a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (!std::strcmp(a, "--mib")) mib = static_cast<size_t>(v);
    else if (!std::strcmp(a, "--threads")) max_threads = v;
    else if (!std::strcmp(a, "--reps")) reps = v;
    else if (!std::strcmp(a, "--rounds")) rounds = v;
    else {
      std::fprintf(stderr, "usage: bandwidth [--mib N] [--threads T] [--reps R] [--rounds K]\n");
      return 2;
    }
  }
  if ((argc - 1) % 2 != 0 || mib < 1 || max_threads < 1 || reps < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: bandwidth [--mib N] [--threads T] [--reps R] [--rounds K]\n");
    return 2;
  }
  const size_t bytes = mib << 20;
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
  if (buf == nullptr) {
    std::fprintf(stderr, "bandwidth: cannot allocate %zu MiB\n", mib);
    return 1;
  }
  for (size_t i = 0; i < bytes; ++i) buf[i] = static_cast<uint8_t>(i * 131 + 7);

  uint64_t sink = 0;
  std::vector<std::vector<double>> gbs(max_threads + 1);
  measure(buf, bytes, 1, 1, &sink);  // warm-up
  const char* kind = kHaveAvx2 ? "AVX2 256-bit loads" : "64-bit loads";
  std::printf("buffer %zu MiB, %d passes per measurement, %s\n", mib, reps, kind);
  for (int r = 0; r < rounds; ++r) {
    for (int t = 1; t <= max_threads; ++t) {
      const double g = measure(buf, bytes, t, reps, &sink);
      gbs[t].push_back(g);
      std::printf("round %d threads %d: %.2f GB/s\n", r + 1, t, g);
    }
  }
  for (int t = 1; t <= max_threads; ++t) {
    std::vector<double> v = gbs[t];
    std::sort(v.begin(), v.end());
    const double med = v[v.size() / 2];
    std::printf("threads %d: median %.2f GB/s (%.2f GiB/s), best %.2f GB/s, worst %.2f GB/s\n", t, med,
                med * 1e9 / (1 << 30), v.back(), v.front());
  }
  std::fprintf(stderr, "(checksum %llu)\n", static_cast<unsigned long long>(sink));
  std::free(buf);
  return 0;
}
