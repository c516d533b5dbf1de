// AMX (tiles, bf16) GEMM of the kCpu linear layer for prefill-sized m (design in linear.h). This
// file alone is compiled with -mamx-tile -mamx-bf16 (kernels/CMakeLists.txt); linear_gemm_amx()
// returns it only after CPUID and the kernel (arch_prctl) allowed this process to use the tiles.
//
// The product is computed transposed, C^T = W . X^T, so that the weights are the A operand of
// _tile_dpbf16ps (rows = output columns j, 32 consecutive k per tile row: a bf16 weight matrix with
// k % 32 == 0 is loaded by the tiles straight from where it is stored) and x is the B operand, which
// wants pairs of k interleaved per x row (the "VNNI" layout):
//   xp   (bf16) [m_pad / 16][k_pad / 32][16 (k pairs)][16 (x rows)][2]: each 1 KiB tile contiguous,
//        built once per call by the caller's pool from x rounded to bf16 (round to nearest even).
//   A    (bf16) 32 weight rows x k_pad: the stored bf16 rows, or a worker's panel of them widened
//        (fp16), converted exactly (int8 codes; the row scale is applied to the result) or
//        dequantized and rounded ((code - zero) * scale for int4), zero padded in k and rows.
//   C^T  (fp32) 2 x 2 tiles of 16 weight rows x 16 x rows, accumulated over all of k in the tile
//        registers, then transposed (16 x 16 in zmm registers), scaled, biased and stored.
// Tiles: C 0..3 (C[a][b] = 2a + b), A 4..5, B 6..7, all 16 rows x 64 bytes.
// Work: units of 32 output columns over the pool (as run_gemm); each chunk configures the tiles
// and releases them before it returns, so a pool thread holds no tile state between calls.
// Error: each x (and fp16/int4 weight) value carries the bf16 rounding (relative <= 2^-8); products
// are exact in fp32 and summed in fp32 along k (a chain of k / 2 additions per element).
#include "kernels/cpu/linear.h"

// GCC 12 warns inside the AVX-512 intrinsics that start from _mm512_undefined_*() (GCC PR 105593,
// fixed in GCC 13); the warning points into the header, so it is silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels/cpu/cpu_util.h"

namespace ferry::kernels::cpu {
namespace {

constexpr int64_t kTileRows = 16;  // rows of every tile; x rows (columns) of a C tile
constexpr int64_t kTileK = 32;     // bf16 values of k per A tile row (64 bytes)
constexpr int64_t kTileElems = kTileRows * kTileK;  // bf16 values per A or B tile (1 KiB)
constexpr int64_t kUnitCols = 32;  // output columns per work unit: two A tiles
// Weights of the units run together over each 32 rows of x: about half of a 2 MiB L2.
constexpr int64_t kGroupBytes = 1 << 20;
constexpr int64_t kMaxGroupUnits = 16;
// Below this many multiply-adds a chunk is not handed to another thread (as kMinChunkMacs in
// linear.cc: ~128K take a few us, about what a hand-off costs).
constexpr int64_t kMinChunkMacs = 128 << 10;
// Linux asm/prctl.h and asm/fpu/xstate.h: ask for the AMX tile data state component.
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];  // bytes per row of tile t
  uint8_t rows[16];
};

// Every tile 16 rows x 64 bytes (palette 1); tiles 8..15 do not exist.
TileConfig make_tile_config() {
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = kTileRows;
  }
  return cfg;
}

// r[i] dword j <- r[j] dword i (unpack 32, unpack 64, then 128-bit lane shuffles twice).
inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

inline __mmask16 low_mask16(int64_t len) {
  return len >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << std::max<int64_t>(len, 0)) - 1);
}

// 32 fp32 values (lo = elements 0..15, hi = 16..31) rounded to bf16 (nearest even) in one zmm.
inline __m512i to_bf16(__m512 lo, __m512 hi) { return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)); }

// xp tiles of x rows [i0, i0 + rows) (rows <= 16; the others zero): one tile per 32 of k, k tail zero.
void pack_x_rows(const float* x, int64_t k, int64_t rows, int64_t k_steps, uint16_t* dst) {
  for (int64_t s = 0; s < k_steps; ++s) {
    const int64_t c0 = s * kTileK;
    const __mmask16 mlo = low_mask16(k - c0), mhi = low_mask16(k - c0 - 16);
    __m512i r[16];
    for (int64_t i = 0; i < 16; ++i) {
      if (i >= rows) {
        r[i] = _mm512_setzero_si512();
        continue;
      }
      const float* xr = x + i * k + c0;
      r[i] = to_bf16(_mm512_maskz_loadu_ps(mlo, xr), _mm512_maskz_loadu_ps(mhi, xr + 16));
    }
    // r[i] holds the 16 k pairs of x row i; tile row p wants pair p of the 16 rows.
    transpose16x16(r);
    for (int64_t p = 0; p < 16; ++p) _mm512_storeu_si512(dst + s * kTileElems + p * 32, r[p]);
  }
}

// Weight row `row` as k_pad bf16 values (zero past k) into dst. int8: the codes (exact in bf16).
void widen_row_bf16(const WeightMatrix& w, int64_t row, int64_t k_pad, uint16_t* dst) {
  const auto* bytes = static_cast<const unsigned char*>(w.data);
  const int64_t k = w.k;
  switch (w.format) {
    case WeightFormat::kBF16:
      std::memcpy(dst, bytes + row * k * 2, static_cast<size_t>(k) * 2);
      std::memset(dst + k, 0, static_cast<size_t>(k_pad - k) * 2);
      return;
    case WeightFormat::kF16: {
      const auto* src = reinterpret_cast<const uint16_t*>(bytes) + row * k;
      for (int64_t c = 0; c < k_pad; c += 32) {
        const __mmask16 mlo = low_mask16(k - c), mhi = low_mask16(k - c - 16);
        const __m512 lo = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mlo, src + c));
        const __m512 hi = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mhi, src + c + 16));
        _mm512_storeu_si512(dst + c, to_bf16(lo, hi));
      }
      return;
    }
    case WeightFormat::kInt8: {
      const auto* src = reinterpret_cast<const int8_t*>(bytes) + row * k;
      for (int64_t c = 0; c < k_pad; c += 32) {
        const __mmask16 mlo = low_mask16(k - c), mhi = low_mask16(k - c - 16);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mlo, src + c)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mhi, src + c + 16)));
        _mm512_storeu_si512(dst + c, to_bf16(lo, hi));
      }
      return;
    }
    case WeightFormat::kInt4: {
      // k is a multiple of group_size (>= 32), so k_pad == k and every 32 codes share a group.
      const uint8_t* packed = bytes + row * (k / 2);
      const int64_t groups = k / w.group_size;
      const __m512i nibble = _mm512_set1_epi32(15);
      for (int64_t c = 0; c < k; c += 32) {
        const int64_t g = row * groups + c / w.group_size;
        const __m512 zero = _mm512_set1_ps(w.zeros != nullptr ? w.zeros[g] : 8.0f);
        const __m512 scale = _mm512_set1_ps(w.scales[g]);
        const __m512i codes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + c / 2)));
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(codes, nibble));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(codes, 4));
        _mm512_storeu_si512(dst + c, to_bf16(_mm512_mul_ps(_mm512_sub_ps(lo, zero), scale),
                                             _mm512_mul_ps(_mm512_sub_ps(hi, zero), scale)));
      }
      return;
    }
    case WeightFormat::kF32:
      break;
  }
}

// C^T tiles for na (1, 2) x 16 weight rows of a (row stride lda_bytes) and nb (1, 2) x 16 x rows
// (b: their xp tiles; the second block k_steps tiles further) over all of k, stored to c[NA * NB][256].
template <int NA, int NB>
void tile_block(const uint16_t* a, int64_t lda_bytes, const uint16_t* b, int64_t k_steps, float* c) {
  const int64_t lda = lda_bytes / 2;
  const uint16_t* b1 = b + k_steps * kTileElems;
  _tile_zero(0);
  if constexpr (NB == 2) _tile_zero(1);
  if constexpr (NA == 2) _tile_zero(2);
  if constexpr (NA == 2 && NB == 2) _tile_zero(3);
  for (int64_t s = 0; s < k_steps; ++s) {
    _tile_loadd(4, a + s * kTileK, lda_bytes);
    _tile_loadd(6, b + s * kTileElems, 64);
    if constexpr (NB == 2) _tile_loadd(7, b1 + s * kTileElems, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NB == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (NA == 2) {
      _tile_loadd(5, a + kTileRows * lda + s * kTileK, lda_bytes);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (NB == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  // C[a][b] to c[(a * NB + b) * 256].
  _tile_stored(0, c, 64);
  if constexpr (NB == 2) _tile_stored(1, c + 256, 64);
  if constexpr (NA == 2) _tile_stored(2, c + NB * 256, 64);
  if constexpr (NA == 2 && NB == 2) _tile_stored(3, c + 768, 64);
}

// out[i0 + i, j0 + j] = ct[j][i] * scale[j] + bias[j] for i < rows_i, j < cols (ct: one C^T tile).
void store_tile(const float* ct, float* out, int64_t out_stride, int64_t rows_i, int64_t cols, const float* scales,
                const float* bias) {
  __m512i r[16];
  for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_si512(ct + j * 16);
  transpose16x16(r);
  const __mmask16 mask = low_mask16(cols);
  const __m512 scale = scales != nullptr ? _mm512_maskz_loadu_ps(mask, scales) : _mm512_set1_ps(1.0f);
  const __m512 add = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
  for (int64_t i = 0; i < rows_i; ++i)
    _mm512_mask_storeu_ps(out + i * out_stride, mask, _mm512_fmadd_ps(_mm512_castsi512_ps(r[i]), scale, add));
}

struct Packed {
  const uint16_t* xp;  // see the top of the file
  int64_t m_pad, k_pad, k_steps;
};

// The A operand of one unit, output columns [j0, j0 + cols): na tiles of 16 weight rows.
struct UnitA {
  const uint16_t* a;
  int64_t lda_bytes;
  int64_t j0, cols;
  int na;
};

// bf16 rows with k % 32 == 0 in whole tiles are read in place; the others are widened into
// panel[kUnitCols][ld] with ld = k_pad + 32 (one more tile row of k: a stride of a multiple of 4 KiB
// would put the 16 rows a tile load reads in one L1 set).
UnitA prepare_unit(const WeightMatrix& w, int64_t k_pad, int64_t j0, uint16_t* panel) {
  UnitA u;
  u.j0 = j0;
  u.cols = std::min(kUnitCols, w.n - j0);
  u.na = u.cols > kTileRows ? 2 : 1;
  if (w.format == WeightFormat::kBF16 && w.k % kTileK == 0 && u.cols == u.na * kTileRows) {
    u.a = static_cast<const uint16_t*>(w.data) + j0 * w.k;
    u.lda_bytes = w.k * 2;
    return u;
  }
  const int64_t ld = k_pad + kTileK;
  for (int64_t r = 0; r < u.na * kTileRows; ++r) {
    uint16_t* dst = panel + r * ld;
    if (r < u.cols)
      widen_row_bf16(w, j0 + r, k_pad, dst);
    else
      std::memset(dst, 0, static_cast<size_t>(k_pad) * 2);
  }
  u.a = panel;
  u.lda_bytes = ld * 2;
  return u;
}

// One unit's columns for x rows [i0, i0 + 32) (16 when the padded m ends there).
void gemm_block(const LinearArgs& a, const Packed& p, const float* bias, const UnitA& u, int64_t i0) {
  const WeightMatrix& w = *a.w;
  const int nb = p.m_pad - i0 > kTileRows ? 2 : 1;
  const uint16_t* b = p.xp + (i0 / kTileRows) * p.k_steps * kTileElems;
  alignas(64) float ct[4 * 256];
  if (u.na == 2 && nb == 2) tile_block<2, 2>(u.a, u.lda_bytes, b, p.k_steps, ct);
  else if (u.na == 2) tile_block<2, 1>(u.a, u.lda_bytes, b, p.k_steps, ct);
  else if (nb == 2) tile_block<1, 2>(u.a, u.lda_bytes, b, p.k_steps, ct);
  else tile_block<1, 1>(u.a, u.lda_bytes, b, p.k_steps, ct);
  for (int ta = 0; ta < u.na; ++ta)
    for (int tb = 0; tb < nb; ++tb) {
      const int64_t j = u.j0 + ta * kTileRows, it = i0 + tb * kTileRows;
      store_tile(ct + (ta * nb + tb) * 256, a.out + it * a.out_stride + j, a.out_stride,
                 std::min(kTileRows, a.m - it), std::min(kTileRows, u.cols - ta * kTileRows),
                 w.format == WeightFormat::kInt8 ? w.scales + j : nullptr, bias != nullptr ? bias + j : nullptr);
    }
}

// Units [u0, u1) in groups whose weights (A) stay in L2 while every 32 rows of x (B) meet all the
// group's units: x is then read from farther away once per group rather than once per unit.
void gemm_units(const LinearArgs& a, const Packed& p, const float* bias, int64_t u0, int64_t u1) {
  const int64_t ld = p.k_pad + kTileK;
  const int64_t group = std::clamp<int64_t>(kGroupBytes / (kUnitCols * ld * 2), 1, kMaxGroupUnits);
  thread_local std::vector<uint16_t> panels;  // [group][kUnitCols][ld]; grown, never shrunk
  if (panels.size() < static_cast<size_t>(group * kUnitCols * ld))
    panels.resize(static_cast<size_t>(group * kUnitCols * ld));
  UnitA units[kMaxGroupUnits];
  for (int64_t g0 = u0; g0 < u1; g0 += group) {
    const int64_t num = std::min(group, u1 - g0);
    for (int64_t g = 0; g < num; ++g)
      units[g] = prepare_unit(*a.w, p.k_pad, (g0 + g) * kUnitCols, panels.data() + g * kUnitCols * ld);
    for (int64_t i0 = 0; i0 < p.m_pad; i0 += 2 * kTileRows)
      for (int64_t g = 0; g < num; ++g) gemm_block(a, p, bias, units[g], i0);
  }
}

bool gemm_amx(ThreadPool& pool, const LinearArgs& a, const float* bias) {
  const WeightMatrix& w = *a.w;
  if (w.format == WeightFormat::kF32) return false;  // fp32 weights keep the exact fp32 GEMM
  Packed p;
  p.m_pad = (a.m + kTileRows - 1) / kTileRows * kTileRows;
  p.k_steps = (w.k + kTileK - 1) / kTileK;
  p.k_pad = p.k_steps * kTileK;
  // The caller's x tiles, read by every worker during the call. Grown, never shrunk.
  thread_local std::vector<uint16_t> xp;
  if (xp.size() < static_cast<size_t>(p.m_pad * p.k_pad)) xp.resize(static_cast<size_t>(p.m_pad * p.k_pad));
  uint16_t* const xp_data = xp.data();  // the workers' own thread_local xp is another buffer
  p.xp = xp_data;
  const int64_t num_row_blocks = p.m_pad / kTileRows;
  pool.parallel_for(
      num_row_blocks,
      [&](int64_t b0, int64_t b1) {
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t i0 = blk * kTileRows;
          pack_x_rows(a.x + i0 * w.k, w.k, std::min(kTileRows, a.m - i0), p.k_steps,
                      xp_data + blk * p.k_steps * kTileElems);
        }
      },
      std::max<int64_t>(1, (int64_t{64} << 10) / (kTileRows * p.k_pad)));

  const int64_t num_units = (w.n + kUnitCols - 1) / kUnitCols;
  const int64_t min_units = std::max<int64_t>(1, kMinChunkMacs / (kUnitCols * p.m_pad * p.k_pad));
  pool.parallel_for(
      num_units,
      [&](int64_t u0, int64_t u1) {
        static const TileConfig cfg = make_tile_config();
        _tile_loadconfig(&cfg);
        gemm_units(a, p, bias, u0, u1);
        _tile_release();
      },
      min_units);
  return true;
}

// CPUID (AMX-TILE, AMX-BF16, and the AVX-512 F/BW/VL/BF16 the packing loops use), then the
// kernel's permission to use the tile data state in this process.
bool amx_usable() {
#if defined(__linux__) && defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool amx_tile = (edx & (1u << 24)) != 0, amx_bf16 = (edx & (1u << 22)) != 0;
  if (!amx_tile || !amx_bf16) return false;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !cpu_has_avx512_bf16())
    return false;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

}  // namespace

GemmFn linear_gemm_amx() {
  static const bool usable = amx_usable();  // once per process (thread-safe static)
  return usable ? gemm_amx : nullptr;
}

}  // namespace ferry::kernels::cpu
