// AMX (tiles, bf16) GEMM of the kCpu linear layer for prefill-sized m (design in linear.h). This
// file alone is compiled with -mamx-tile -mamx-bf16 (kernels/CMakeLists.txt); linear_gemm_amx()
// returns it only after CPUID and the kernel (arch_prctl) allowed this process to use the tiles.
//
// The product is computed transposed, C^T = W . X^T, so that the weights are the A operand of
// _tile_dpbf16ps (rows = output columns j, 32 consecutive k per tile row: weight rows as stored,
// no transposition) and x is the B operand, which wants pairs of k interleaved per x row (the
// "VNNI" layout):
//   xp   (bf16) [m_pad / 16][k_pad / 32][16 (k pairs)][16 (x rows)][2]: each 1 KiB tile contiguous,
//        built once per call by the caller's pool from x rounded to bf16 (round to nearest even).
//   A    (bf16) a worker's panel of 32 weight rows x 512 k (one k block): bf16 rows copied, fp16
//        rounded, int8 codes converted exactly (the row scale is applied to the result), int4
//        dequantized and rounded ((code - zero) * scale); zero padded in k and rows.
//   C^T  (fp32) 2 x 2 tiles of 16 weight rows x 16 x rows over one k block, kept between blocks in
//        a worker's buffer, then transposed (16 x 16 in zmm registers), scaled, biased and stored.
// Tiles: C 0..3, A 4..5, B 6..7, all 16 rows x 64 bytes. Blocking in gemm_units().
// Work: units of 32 output columns over the pool (as run_gemm); each chunk configures the tiles
// and releases them before it returns, so a pool thread holds no tile state between calls.
// Error: each x (and fp16/int4 weight) value carries the bf16 rounding (relative <= 2^-8); products
// are exact in fp32 and summed in fp32 along k (a chain of k / 2 additions per element).
// Speed (2026-12-02, one core of the Xeon VM this was written on): ~580 GFLOP/s for the 2 x 2 tile
// loop on L1-resident tiles (a micro-benchmark), ~340 GFLOP/s for a 512 x 2048 x 2048 layer.
#include "kernels/cpu/linear.h"

// GCC 12 warns inside the AVX-512 intrinsics that start from _mm512_undefined_*() (GCC PR 105593,
// fixed in GCC 13); the warning points into the header, so it is silenced for the header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

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
// k per block: 16 tile steps (512 values); a unit's panel for one block is 32 KiB (L1).
constexpr int64_t kBlockSteps = 16;
// Partial sums of the units run together (a quarter of a 2 MiB L2; 8 units at m = 512).
constexpr int64_t kGroupAccBytes = 512 << 10;
constexpr int64_t kMaxGroupUnits = 64;
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

// w[row, c0 .. c0 + len) as bf16 into dst[len] (len a multiple of 32; zero past k). int8: the codes
// (exact in bf16); int4: (code - zero) * scale rounded; fp16: rounded; bf16: copied.
void widen_row_bf16(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, uint16_t* dst) {
  const auto* bytes = static_cast<const unsigned char*>(w.data);
  const int64_t k = w.k;
  switch (w.format) {
    case WeightFormat::kBF16: {
      const int64_t live = std::min(len, k - c0);
      std::memcpy(dst, bytes + (row * k + c0) * 2, static_cast<size_t>(live) * 2);
      std::memset(dst + live, 0, static_cast<size_t>(len - live) * 2);
      return;
    }
    case WeightFormat::kF16: {
      const auto* src = reinterpret_cast<const uint16_t*>(bytes) + row * k;
      for (int64_t c = c0; c < c0 + len; c += 32) {
        const __mmask16 mlo = low_mask16(k - c), mhi = low_mask16(k - c - 16);
        const __m512 lo = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mlo, src + c));
        const __m512 hi = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mhi, src + c + 16));
        _mm512_storeu_si512(dst + (c - c0), to_bf16(lo, hi));
      }
      return;
    }
    case WeightFormat::kInt8: {
      const auto* src = reinterpret_cast<const int8_t*>(bytes) + row * k;
      for (int64_t c = c0; c < c0 + len; c += 32) {
        const __mmask16 mlo = low_mask16(k - c), mhi = low_mask16(k - c - 16);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mlo, src + c)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mhi, src + c + 16)));
        _mm512_storeu_si512(dst + (c - c0), to_bf16(lo, hi));
      }
      return;
    }
    case WeightFormat::kInt4: {
      // k is a multiple of group_size (>= 32): no tail, and every 32 codes share a group.
      const uint8_t* packed = bytes + row * (k / 2);
      const int64_t groups = k / w.group_size;
      const __m512i nibble = _mm512_set1_epi32(15);
      for (int64_t c = c0; c < c0 + len; c += 32) {
        const int64_t g = row * groups + c / w.group_size;
        const __m512 zero = _mm512_set1_ps(w.zeros != nullptr ? w.zeros[g] : 8.0f);
        const __m512 scale = _mm512_set1_ps(w.scales[g]);
        const __m512i codes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + c / 2)));
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(codes, nibble));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(codes, 4));
        _mm512_storeu_si512(dst + (c - c0), to_bf16(_mm512_mul_ps(_mm512_sub_ps(lo, zero), scale),
                                                    _mm512_mul_ps(_mm512_sub_ps(hi, zero), scale)));
      }
      return;
    }
    case WeightFormat::kF32:
      break;
  }
}

// C^T tiles for NA (1, 2) x 16 weight rows of a (row stride lda_bytes) and NB (1, 2) x 16 x rows
// (b: their xp tiles; the second 16 rows b_next tiles further) over ks steps of 32 k. c[NA * NB][256]
// (C[ta][tb] at (ta * NB + tb) * 256) holds the sums so far (read unless `first`) and gets the new ones.
template <int NA, int NB>
void tile_block(const uint16_t* a, int64_t lda_bytes, const uint16_t* b, int64_t b_next, int64_t ks, bool first,
                float* c) {
  const int64_t lda = lda_bytes / 2;
  const uint16_t* b1 = b + b_next * kTileElems;
  if (first) {
    _tile_zero(0);
    if constexpr (NB == 2) _tile_zero(1);
    if constexpr (NA == 2) _tile_zero(2);
    if constexpr (NA == 2 && NB == 2) _tile_zero(3);
  } else {
    _tile_loadd(0, c, 64);
    if constexpr (NB == 2) _tile_loadd(1, c + 256, 64);
    if constexpr (NA == 2) _tile_loadd(2, c + NB * 256, 64);
    if constexpr (NA == 2 && NB == 2) _tile_loadd(3, c + 768, 64);
  }
  for (int64_t s = 0; s < ks; ++s) {
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

// Weight rows [j0, j0 + cols) x k [c0, c0 + 32 ks) as bf16 into panel[2 * 16][ld] (rows past cols zero).
void pack_panel(const WeightMatrix& w, int64_t j0, int64_t cols, int64_t na, int64_t c0, int64_t ks, int64_t ld,
                uint16_t* panel) {
  for (int64_t r = 0; r < na * kTileRows; ++r) {
    uint16_t* dst = panel + r * ld;
    if (r < cols)
      widen_row_bf16(w, j0 + r, c0, ks * kTileK, dst);
    else
      std::memset(dst, 0, static_cast<size_t>(ks * kTileK) * 2);
  }
}

// Units [u0, u1) (32 output columns each), in groups. For each block of kBlockSteps * 32 of k, the
// x tiles of that block (m_pad x 512 bf16: 512 KiB at m = 512) stay in L2 while each unit of the
// group packs its weights for the block into a panel that stays in L1 (32 x 512 bf16 = 32 KiB) and
// runs every 32 rows of x on it; partial sums wait in acc (L2) between blocks. Weights are read
// from memory once, x once per group and block.
void gemm_units(const LinearArgs& a, const Packed& p, const float* bias, int64_t u0, int64_t u1) {
  const WeightMatrix& w = *a.w;
  const int64_t num_row_pairs = (p.m_pad + 2 * kTileRows - 1) / (2 * kTileRows);
  const int64_t unit_acc = num_row_pairs * 4 * 256;  // floats of partial sums per unit
  const int64_t group = std::clamp<int64_t>(kGroupAccBytes / (unit_acc * 4), 1, kMaxGroupUnits);
  // One more tile row of k per panel row: a stride of a multiple of 4 KiB would put the 16 rows a
  // tile load reads in one L1 set.
  const int64_t ld = kBlockSteps * kTileK + kTileK;
  thread_local std::vector<uint16_t> panel;  // [32][ld]; grown, never shrunk
  thread_local std::vector<float> acc;       // [group][num_row_pairs][4][256]
  if (panel.size() < static_cast<size_t>(kUnitCols * ld)) panel.resize(static_cast<size_t>(kUnitCols * ld));
  if (acc.size() < static_cast<size_t>(group * unit_acc)) acc.resize(static_cast<size_t>(group * unit_acc));
  for (int64_t g0 = u0; g0 < u1; g0 += group) {
    const int64_t g1 = std::min(u1, g0 + group);
    for (int64_t s0 = 0; s0 < p.k_steps; s0 += kBlockSteps) {
      const int64_t ks = std::min(kBlockSteps, p.k_steps - s0);
      const bool first = s0 == 0, last = s0 + ks == p.k_steps;
      for (int64_t u = g0; u < g1; ++u) {
        const int64_t j0 = u * kUnitCols, cols = std::min(kUnitCols, w.n - j0);
        const int na = cols > kTileRows ? 2 : 1;
        pack_panel(w, j0, cols, na, s0 * kTileK, ks, ld, panel.data());
        float* unit_c = acc.data() + (u - g0) * unit_acc;
        for (int64_t pair = 0; pair < num_row_pairs; ++pair) {
          const int64_t i0 = pair * 2 * kTileRows;
          const int nb = p.m_pad - i0 > kTileRows ? 2 : 1;
          const uint16_t* b = p.xp + ((i0 / kTileRows) * p.k_steps + s0) * kTileElems;
          float* c = unit_c + pair * 4 * 256;
          if (na == 2 && nb == 2) tile_block<2, 2>(panel.data(), ld * 2, b, p.k_steps, ks, first, c);
          else if (na == 2) tile_block<2, 1>(panel.data(), ld * 2, b, p.k_steps, ks, first, c);
          else if (nb == 2) tile_block<1, 2>(panel.data(), ld * 2, b, p.k_steps, ks, first, c);
          else tile_block<1, 1>(panel.data(), ld * 2, b, p.k_steps, ks, first, c);
          if (!last) continue;
          for (int ta = 0; ta < na; ++ta)
            for (int tb = 0; tb < nb; ++tb) {
              const int64_t j = j0 + ta * kTileRows, it = i0 + tb * kTileRows;
              store_tile(c + (ta * nb + tb) * 256, a.out + it * a.out_stride + j, a.out_stride,
                         std::min(kTileRows, a.m - it), std::min(kTileRows, cols - ta * kTileRows),
                         w.format == WeightFormat::kInt8 ? w.scales + j : nullptr,
                         bias != nullptr ? bias + j : nullptr);
            }
        }
      }
    }
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
