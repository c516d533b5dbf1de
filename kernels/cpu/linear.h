// kCpu linear layer (kernels.h `linear`) for every WeightFormat: the driver (linear.cc), the
// portable inner loops (linear.cc) and the AVX2+FMA+F16C ones (linear_avx2.cc). Internal to kernels/.
//
// Two regimes, chosen by m (rows of x):
//   decode  (m < kGemmMinRows, in passes of kDecodeMaxRows rows): each weight row is streamed once
//           from memory for all the rows of x of a pass
//           (memory bound). Float formats widen 8 weights at a time and FMA them into m fp32
//           accumulators. On the AVX2 path int8/int4 weights meet x quantized to int8 per block of
//           32 values (symmetric, scale = amax / 127) in integer dot products (maddubs + madd), then
//           scaled: the result is the exact dot of the stored weights with that quantized x
//           (x error <= scale / 2 per element), the tail k % 32 of an int8 row in fp32.
//   prefill (larger m): a blocked GEMM. Each thread owns a range of output columns; it widens a
//           panel of kPanelCols weight rows x kPanelK inputs to fp32 once (layout [kPanelK][16] per
//           16 columns) and runs a 6 x 16 register-blocked micro-kernel over all m rows on it.
// Work is split over output rows (columns of out) on the pool, one job per call, in chunks of at
// least ~128K multiply-adds (smaller calls run on the caller: a hand-off costs more).
//
// Thread-safety: linear() may be called from any thread (scratch is thread-local: the caller's
// quantized x, each worker's panel); calls on one pool are serialized by the pool. The ISA choice
// is a process-wide setting read once per call (set_linear_isa is for tests and benchmarks).
// Shapes: any m, n, k >= 0; for int4, k a multiple of group_size (32, 64 or 128, asserted).
#pragma once

#include <cstdint>

#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace ferry::kernels::cpu {

constexpr int64_t kDecodeMaxRows = 8;
// Below this m the decode kernels run on 8 rows at a time (weights streamed m / 8 times) rather than
// the GEMM, whose fp32 panel packing does not pay off over few rows. Measured on one Zen 3 core
// (loaded machine, +-30 %), 512x2048: m = 9 through the GEMM 1.67 ms vs 2 x 0.41 ms as two decode
// passes; decode passes ~50 GFLOP/s at m = 40, the GEMM ~35 at m = 64 and ~47 at m = 96..128.
constexpr int64_t kGemmMinRows = 64;
constexpr int64_t kQuantBlock = 32;  // x values per int8 scale (int8/int4 decode on AVX2)
constexpr int64_t kPanelK = 256;     // inputs per packed panel (a 16-column slab is 16 KiB of fp32)
constexpr int64_t kPanelCols = 64;   // output columns per packed panel (64 KiB: L2 resident)
constexpr int64_t kMicroRows = 6;    // micro-kernel tile: 6 rows of x ...
constexpr int64_t kMicroCols = 16;   // ... by 16 output columns (12 ymm accumulators)

// Everything an inner loop needs. x_q/x_scales/x_sums are filled by the driver (AVX2 int formats).
struct LinearArgs {
  float* out;          // [m, out_stride]
  int64_t out_stride;
  const float* x;      // [m, k]
  const WeightMatrix* w;
  int64_t m;
  const int8_t* x_q;       // [m, k_blocks * 32]: x quantized per block of 32 (k_blocks = k / 32)
  const float* x_scales;   // [m, k_blocks]
  const float* x_sums;     // [m, k_blocks]: scale * sum of the block's codes (int4 zero points)
};

// Decode: out[i, j] = x[i, :] . w[j, :] for i < m (<= kDecodeMaxRows), j in [j0, j1). No bias.
using DecodeFn = void (*)(const LinearArgs& a, int64_t j0, int64_t j1);
// Micro-kernel on a packed panel: c[r, 0..16) (+)= sum_kk x[r * ldx + kk] * wp[kk * 16 + (0..16)]
// for r < rows (1..kMicroRows), kk < kb; `accumulate` false overwrites c.
using MicroFn = void (*)(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc,
                         int64_t rows, bool accumulate);

// A whole prefill-sized linear layer (m >= the table's gemm_min_rows) over the pool, bias included:
// out[i, j] = x[i, :] . w[j, :] + bias[j]. Returns false when it does not take this weight format
// (the driver then runs the blocked fp32 GEMM below).
using GemmFn = bool (*)(ThreadPool& pool, const LinearArgs& a, const float* bias);

// Widens w[row, c0 .. c0 + len) to fp32 (as dequantize_segment, which is the portable one).
using WidenFn = void (*)(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, float* out);
// As quantize_x_blocks, bit for bit.
using QuantizeXFn = void (*)(const float* x, int64_t len, int8_t* q, float* scales, float* sums);

struct LinearKernels {
  DecodeFn decode[5];       // indexed by WeightFormat
  MicroFn micro;
  WidenFn widen;            // panel packing
  QuantizeXFn quantize_x;   // nullptr: decode of int8/int4 reads x in fp32 (x_q etc. unset)
  GemmFn gemm;              // nullptr: none (the blocked fp32 GEMM from kGemmMinRows rows)
  int64_t gemm_min_rows;    // m from which `gemm` is tried; formats it declines use kGemmMinRows
};

// The paths, each a superset of the one before on x86: kAvx512 is AVX-512 F/BW/VL/VNNI/BF16
// decode and GEMM loops; kAmx is kAvx512 with prefill-sized layers on AMX tiles (bf16).
enum class LinearIsa : int32_t { kPortable = 0, kAvx2 = 1, kAvx512 = 2, kAmx = 3 };
const char* linear_isa_name(LinearIsa isa);  // "portable", "avx2", "avx512", "amx"
bool linear_isa_supported(LinearIsa isa);
LinearIsa linear_isa();
// Forces a path (tests, benchmarks); asserts it is supported. Must not race a running linear().
void set_linear_isa(LinearIsa isa);

void linear(ThreadPool& pool, float* out, int64_t out_stride, const float* x, const WeightMatrix& w,
            const float* bias, int64_t m);

// Whether linear() on the current path computes (format, m) at bf16 precision: x, and 16-bit
// weights, rounded to bf16 (relative error <= 2^-8 each), fp32 sums -- the AMX GEMM, which takes
// every format but fp32 from the table's gemm_min_rows on. Tests and accuracy reports use it.
bool linear_rounds_to_bf16(WeightFormat format, int64_t m);
// The current path's gemm_min_rows: from it the formats its GEMM takes leave the decode kernels
// (the others, and paths without a GEMM of their own, at kGemmMinRows).
int64_t linear_gemm_min_rows();

// Widens w[row, c0 .. c0 + len) to fp32 (any format; for int4, c0 and len multiples of 32).
void dequantize_segment(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, float* out);

// Quantizes x[0, len) (len a multiple of 32) per block of 32: q, scales[len / 32], sums[len / 32].
// Per block: amax = max |x|, inv = 127 / amax (0 when amax is 0), q = round_half_even(x * inv) in
// fp32, scale = amax / 127, sum = scale * (sum of q).
void quantize_x_blocks(const float* x, int64_t len, int8_t* q, float* scales, float* sums);

// int4 code c (0..15) of element `col` of a packed row: 16 bytes per 32 codes, element i of a block
// in the low nibble of byte i (i < 16) or the high nibble of byte i - 16.
inline uint8_t int4_code(const uint8_t* packed_row, int64_t col) {
  const uint8_t b = packed_row[(col >> 5) * 16 + (col & 15)];
  return (col & 16) ? static_cast<uint8_t>(b >> 4) : static_cast<uint8_t>(b & 15);
}

// Backend::kReference linear: each weight row widened to fp32 (dequantize_segment), then a plain
// fp64 dot with each row of x, rounded to fp32, plus bias. The oracle of the tests.
void linear_reference(float* out, int64_t out_stride, const float* x, const WeightMatrix& w, const float* bias,
                      int64_t m);

// The AVX2 kernels, or nullptr when this build has no AVX2 code (non-x86).
const LinearKernels* linear_kernels_avx2();
// The AVX-512 kernels (linear_avx512.cc), or nullptr when this build has none.
const LinearKernels* linear_kernels_avx512();
// The AMX GEMM (linear_amx.cc), or nullptr when this build has none or the CPU / kernel does not let
// this process use AMX tiles (CPUID, then arch_prctl(ARCH_REQ_XCOMP_PERM) once per process).
GemmFn linear_gemm_amx();

}  // namespace ferry::kernels::cpu
