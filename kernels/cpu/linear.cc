// kCpu linear: the driver (regime choice, x quantization, split over the pool, panel packing, bias)
// and the portable inner loops. The AVX2 loops are in linear_avx2.cc; see linear.h for the design.
#include "kernels/cpu/linear.h"
#include "kernels/cpu/cpu_util.h"


#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/status.h"

namespace ferry::kernels::cpu {

namespace {

// ---------------------------------------------------------------------------------------------
// Portable loops: plain C++ the compiler vectorises for the baseline ISA (SSE2 on x86-64).

// Dot product with 8 independent partial sums (vectorisable without -ffast-math).
float dot8(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = 0.0f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

// Every format: widen one weight row to fp32 (thread-local row buffer), then m dot products. The
// row (k * 4 bytes) stays in L1/L2 across the m rows of x.
void decode_portable(const LinearArgs& a, int64_t j0, int64_t j1) {
  const int64_t k = a.w->k;
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(k));
  for (int64_t j = j0; j < j1; ++j) {
    dequantize_segment(*a.w, j, 0, k, row.data());
    for (int64_t i = 0; i < a.m; ++i) a.out[i * a.out_stride + j] = dot8(a.x + i * k, row.data(), k);
  }
}

void micro_portable(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc,
                    int64_t rows, bool accumulate) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc[kMicroCols];
    for (int64_t j = 0; j < kMicroCols; ++j) acc[j] = accumulate ? c[r * ldc + j] : 0.0f;
    const float* xr = x + r * ldx;
    for (int64_t kk = 0; kk < kb; ++kk) {
      const float xv = xr[kk];
      for (int64_t j = 0; j < kMicroCols; ++j) acc[j] += xv * wp[kk * kMicroCols + j];
    }
    for (int64_t j = 0; j < kMicroCols; ++j) c[r * ldc + j] = acc[j];
  }
}

const LinearKernels kPortableKernels = {
    {decode_portable, decode_portable, decode_portable, decode_portable, decode_portable},
    micro_portable,
    dequantize_segment,
    nullptr,
    nullptr,
    kGemmMinRows,
};

// ---------------------------------------------------------------------------------------------
// ISA choice.

bool cpu_has_avx2_fma_f16c() { return cpu_has_avx2_fma() && cpu_has_f16c(); }

bool cpu_has_avx512_linear() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         cpu_has_avx512_vnni() && cpu_has_avx512_bf16() && cpu_has_avx2_fma_f16c();
#else
  return false;
#endif
}

// The widest path the machine has, or the one FERRY_LINEAR_ISA names ("portable", "avx2", "avx512",
// "amx") when the machine has it: benchmarks compare paths in one build with it.
LinearIsa best_isa() {
  if (const char* want = std::getenv("FERRY_LINEAR_ISA"); want != nullptr)
    for (LinearIsa isa : {LinearIsa::kPortable, LinearIsa::kAvx2, LinearIsa::kAvx512, LinearIsa::kAmx})
      if (std::strcmp(want, linear_isa_name(isa)) == 0 && linear_isa_supported(isa)) return isa;
  for (LinearIsa isa : {LinearIsa::kAmx, LinearIsa::kAvx512, LinearIsa::kAvx2})
    if (linear_isa_supported(isa)) return isa;
  return LinearIsa::kPortable;
}

std::atomic<LinearIsa> g_isa{best_isa()};

// kAmx: the AVX-512 table (AVX2 in builds without one) with the AMX GEMM for prefill-sized layers.
// The GEMM from 32 rows. Against the AVX2 decode passes it won from 16 rows for every format
// (2048x2048, weights from DRAM, 2 threads of a shared Xeon VM, medians of 3, AMX GEMM vs AVX2:
// m = 8 fp16 1.28 vs 2.26 ms, bf16 2.00 vs 1.42, int8 1.00 vs 0.92, int4 0.82 vs 2.04; m = 16 fp16
// 1.27 vs 2.82, bf16 2.03 vs 2.94, int8 0.97 vs 3.07, int4 0.71 vs 4.07), but the AVX-512 decode
// passes are 2-4x faster than AVX2's at m = 8: whole TinyLlama int8 decode steps of 24 rows took
// 231-270 ms on AVX-512 passes against 331-352 on AMX, and of 32 rows 319-362 against 329-332
// (engine_bench, two interleaved runs, 2026-12-02 23:42 UTC).
const LinearKernels& amx_kernels() {
  static const LinearKernels table = [] {
    LinearKernels t = linear_kernels_avx512() != nullptr ? *linear_kernels_avx512() : *linear_kernels_avx2();
    t.gemm = linear_gemm_amx();
    t.gemm_min_rows = 32;
    return t;
  }();
  return table;
}

const LinearKernels& kernels_for(LinearIsa isa) {
  switch (isa) {
    case LinearIsa::kPortable: return kPortableKernels;
    case LinearIsa::kAvx2: return *linear_kernels_avx2();
    case LinearIsa::kAvx512: return *linear_kernels_avx512();
    case LinearIsa::kAmx: return amx_kernels();
  }
  return kPortableKernels;
}

// ---------------------------------------------------------------------------------------------
// Driver.

// Rows of the quantized x (decode of int8/int4 on paths that take it), owned by the calling thread
// and read by the workers during the call; grown, never shrunk (no allocation in steady state).
struct XQuant {
  std::vector<int8_t> q;
  std::vector<float> scales, sums;
};

// Below this many multiply-adds a chunk of a linear layer is not handed to another thread: ~128K
// take 5-10 us on one core, about what a hand-off costs on a busy machine (wake-up, the chunk's
// inputs pulled into another core's cache). A small model's decode step (stories260K: 64 x 344 at
// m = 8 is 176K) then stays on the caller; TinyLlama's (2048 x 2048 at m = 1: 4M) still splits.
constexpr int64_t kMinChunkMacs = 128 << 10;

// All m (< kGemmMinRows) rows in one job: each chunk of output columns runs the decode kernel on
// passes of kDecodeMaxRows rows (its weight rows stream once per pass, from cache after the first).
void run_decode(ThreadPool& pool, const LinearKernels& kern, const LinearArgs& a, const float* bias) {
  const WeightMatrix& w = *a.w;
  const bool int_format = w.format == WeightFormat::kInt8 || w.format == WeightFormat::kInt4;
  const int64_t k_blocks = w.k / kQuantBlock;
  LinearArgs all = a;
  if (kern.quantize_x != nullptr && int_format && k_blocks > 0) {
    thread_local XQuant xq;
    const int64_t kq = k_blocks * kQuantBlock;
    xq.q.resize(static_cast<size_t>(a.m * kq));
    xq.scales.resize(static_cast<size_t>(a.m * k_blocks));
    xq.sums.resize(static_cast<size_t>(a.m * k_blocks));
    for (int64_t i = 0; i < a.m; ++i)
      kern.quantize_x(a.x + i * w.k, kq, xq.q.data() + i * kq, xq.scales.data() + i * k_blocks,
                      xq.sums.data() + i * k_blocks);
    all.x_q = xq.q.data();
    all.x_scales = xq.scales.data();
    all.x_sums = xq.sums.data();
  }
  const DecodeFn decode = kern.decode[static_cast<int>(w.format)];
  // Chunks of at least ~32 KiB of weights (a memory-bound m = 1 pass is not split below the
  // hand-off cost) and at least kMinChunkMacs of work.
  const int64_t row_bytes = std::max<int64_t>(1, weight_data_bytes(w.format, 1, w.k));
  const int64_t min_rows = std::max({int64_t{1}, (int64_t{32} << 10) / row_bytes, kMinChunkMacs / (a.m * w.k)});
  pool.parallel_for(
      w.n,
      [&](int64_t j0, int64_t j1) {
        for (int64_t i0 = 0; i0 < all.m; i0 += kDecodeMaxRows) {
          LinearArgs sub = all;
          sub.out = all.out + i0 * all.out_stride;
          sub.x = all.x + i0 * w.k;
          sub.m = std::min(kDecodeMaxRows, all.m - i0);
          if (all.x_q != nullptr) {
            sub.x_q = all.x_q + i0 * k_blocks * kQuantBlock;
            sub.x_scales = all.x_scales + i0 * k_blocks;
            sub.x_sums = all.x_sums + i0 * k_blocks;
          }
          decode(sub, j0, j1);
        }
        if (bias != nullptr)
          for (int64_t i = 0; i < all.m; ++i)
            for (int64_t j = j0; j < j1; ++j) all.out[i * all.out_stride + j] += bias[j];
      },
      min_rows, 8);
}

// Widens columns [j0, j0 + cols) x inputs [k0, k0 + kb) of w into panel[p][kk][16] (zero padded).
void pack_panel(WidenFn widen, const WeightMatrix& w, int64_t j0, int64_t cols, int64_t k0, int64_t kb,
                float* panel) {
  thread_local std::vector<float> seg;
  seg.resize(static_cast<size_t>(kPanelK));
  const int64_t num_slabs = (cols + kMicroCols - 1) / kMicroCols;
  for (int64_t p = 0; p < num_slabs; ++p) {
    float* slab = panel + p * kPanelK * kMicroCols;
    for (int64_t c = 0; c < kMicroCols; ++c) {
      const int64_t col = p * kMicroCols + c;
      if (col < cols) {
        widen(w, j0 + col, k0, kb, seg.data());
        for (int64_t kk = 0; kk < kb; ++kk) slab[kk * kMicroCols + c] = seg[kk];
      } else {
        for (int64_t kk = 0; kk < kb; ++kk) slab[kk * kMicroCols + c] = 0.0f;
      }
    }
  }
}

// out[:, j0 .. j1) for all m rows, j1 - j0 <= kPanelCols.
void gemm_columns(const LinearArgs& a, const LinearKernels& kern, int64_t j0, int64_t j1) {
  const WeightMatrix& w = *a.w;
  thread_local std::vector<float> panel;
  panel.resize(static_cast<size_t>(kPanelK * kPanelCols));
  const int64_t cols = j1 - j0;
  const int64_t num_slabs = (cols + kMicroCols - 1) / kMicroCols;
  for (int64_t k0 = 0; k0 < w.k; k0 += kPanelK) {
    const int64_t kb = std::min(kPanelK, w.k - k0);
    pack_panel(kern.widen, w, j0, cols, k0, kb, panel.data());
    for (int64_t i0 = 0; i0 < a.m; i0 += kMicroRows) {
      const int64_t rows = std::min(kMicroRows, a.m - i0);
      const float* xt = a.x + i0 * w.k + k0;
      for (int64_t p = 0; p < num_slabs; ++p) {
        const float* slab = panel.data() + p * kPanelK * kMicroCols;
        float* c = a.out + i0 * a.out_stride + j0 + p * kMicroCols;
        const int64_t ncols = std::min(kMicroCols, cols - p * kMicroCols);
        if (ncols == kMicroCols) {
          kern.micro(xt, w.k, slab, kb, c, a.out_stride, rows, k0 > 0);
          continue;
        }
        // Last, narrow slab: run on a full-width tile, copy the live columns.
        float tile[kMicroRows * kMicroCols] = {};
        if (k0 > 0)
          for (int64_t r = 0; r < rows; ++r) std::memcpy(tile + r * kMicroCols, c + r * a.out_stride, ncols * 4);
        kern.micro(xt, w.k, slab, kb, tile, kMicroCols, rows, k0 > 0);
        for (int64_t r = 0; r < rows; ++r) std::memcpy(c + r * a.out_stride, tile + r * kMicroCols, ncols * 4);
      }
    }
  }
}

void run_gemm(ThreadPool& pool, const LinearKernels& kern, const LinearArgs& a, const float* bias) {
  const int64_t n = a.w->n;
  const int64_t num_units = (n + kPanelCols - 1) / kPanelCols;
  pool.parallel_for(num_units, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t j0 = u * kPanelCols, j1 = std::min(n, j0 + kPanelCols);
      gemm_columns(a, kern, j0, j1);
      if (bias != nullptr)
        for (int64_t i = 0; i < a.m; ++i)
          for (int64_t j = j0; j < j1; ++j) a.out[i * a.out_stride + j] += bias[j];
    }
  });
}

}  // namespace

const char* linear_isa_name(LinearIsa isa) {
  switch (isa) {
    case LinearIsa::kPortable: return "portable";
    case LinearIsa::kAvx2: return "avx2";
    case LinearIsa::kAvx512: return "avx512";
    case LinearIsa::kAmx: return "amx";
  }
  return "?";
}

bool linear_isa_supported(LinearIsa isa) {
  switch (isa) {
    case LinearIsa::kPortable: return true;
    case LinearIsa::kAvx2: return linear_kernels_avx2() != nullptr && cpu_has_avx2_fma_f16c();
    case LinearIsa::kAvx512: return linear_kernels_avx512() != nullptr && cpu_has_avx512_linear();
    case LinearIsa::kAmx:
      return (linear_kernels_avx512() != nullptr ? linear_isa_supported(LinearIsa::kAvx512)
                                                 : linear_isa_supported(LinearIsa::kAvx2)) &&
             linear_gemm_amx() != nullptr;
  }
  return false;
}

LinearIsa linear_isa() { return g_isa.load(std::memory_order_relaxed); }

void set_linear_isa(LinearIsa isa) {
  FERRY_CHECK(linear_isa_supported(isa));
  g_isa.store(isa, std::memory_order_relaxed);
}

bool linear_rounds_to_bf16(WeightFormat format, int64_t m) {
  const LinearKernels& kern = kernels_for(linear_isa());
  return kern.gemm != nullptr && format != WeightFormat::kF32 && m >= kern.gemm_min_rows;
}

int64_t linear_gemm_min_rows() { return kernels_for(linear_isa()).gemm_min_rows; }

void dequantize_segment(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, float* out) {
  const auto* bytes = static_cast<const unsigned char*>(w.data);
  switch (w.format) {
    case WeightFormat::kF32:
      std::memcpy(out, bytes + (row * w.k + c0) * 4, static_cast<size_t>(len) * 4);
      return;
    case WeightFormat::kF16:
      convert_to_f32(out, bytes + (row * w.k + c0) * 2, DType::kF16, static_cast<size_t>(len));
      return;
    case WeightFormat::kBF16:
      convert_to_f32(out, bytes + (row * w.k + c0) * 2, DType::kBF16, static_cast<size_t>(len));
      return;
    case WeightFormat::kInt8: {
      const auto* q = reinterpret_cast<const int8_t*>(bytes) + row * w.k + c0;
      const float s = w.scales[row];
      for (int64_t c = 0; c < len; ++c) out[c] = static_cast<float>(q[c]) * s;
      return;
    }
    case WeightFormat::kInt4: {
      const uint8_t* packed = bytes + row * (w.k / 2);
      const int64_t groups = w.k / w.group_size;
      for (int64_t c = 0; c < len; ++c) {
        const int64_t col = c0 + c;
        const int64_t g = row * groups + col / w.group_size;
        const float zero = w.zeros != nullptr ? w.zeros[g] : 8.0f;
        out[c] = (static_cast<float>(int4_code(packed, col)) - zero) * w.scales[g];
      }
      return;
    }
  }
  FERRY_CHECK(false && "unknown WeightFormat");
}

void quantize_x_blocks(const float* x, int64_t len, int8_t* q, float* scales, float* sums) {
  for (int64_t b = 0; b < len / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    float amax = 0.0f;
    for (int64_t c = 0; c < kQuantBlock; ++c) amax = std::max(amax, std::fabs(xb[c]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int64_t c = 0; c < kQuantBlock; ++c) {
      const int32_t v = static_cast<int32_t>(std::nearbyint(xb[c] * inv));
      const int32_t clamped = std::min(127, std::max(-127, v));
      q[b * kQuantBlock + c] = static_cast<int8_t>(clamped);
      sum += clamped;
    }
    scales[b] = amax / 127.0f;
    sums[b] = scales[b] * static_cast<float>(sum);
  }
}

void linear(ThreadPool& pool, float* out, int64_t out_stride, const float* x, const WeightMatrix& w,
            const float* bias, int64_t m) {
  FERRY_CHECK(out_stride >= w.n && w.n >= 0 && w.k >= 0 && m >= 0);
  FERRY_CHECK(w.format != WeightFormat::kInt4 ||
              (w.group_size >= 32 && w.group_size % 32 == 0 && w.k % w.group_size == 0));
  if (m == 0 || w.n == 0) return;
  if (w.k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < w.n; ++j) out[i * out_stride + j] = bias != nullptr ? bias[j] : 0.0f;
    return;
  }
  const LinearKernels& kern = kernels_for(linear_isa());
  LinearArgs a{out, out_stride, x, &w, m, nullptr, nullptr, nullptr};
  // The table's own GEMM from its gemm_min_rows on, for the formats it takes (AMX: all but fp32);
  // the others keep the fp32 blocked GEMM's threshold, below which the decode kernels run on 8 rows
  // at a time (the weights stream once per 8).
  if (kern.gemm != nullptr && m >= kern.gemm_min_rows && kern.gemm(pool, a, bias)) return;
  if (m >= kGemmMinRows) {
    run_gemm(pool, kern, a, bias);
    return;
  }
  run_decode(pool, kern, a, bias);
}

}  // namespace ferry::kernels::cpu
