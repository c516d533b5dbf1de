// AVX-512 (F, BW, VL, DQ, VNNI, BF16) inner loops of the kCpu linear layer (design in linear.h).
// This file alone is compiled with those flags (kernels/CMakeLists.txt); linear.cc calls it only
// after CPUID said the CPU has them all. Builds without the flags get nullptr. Not for AMX tiles
// (linear_amx.cc) nor for the driver (linear.cc).
//
// Decode (m <= kDecodeMaxRows, all m rows of x in one pass: 32 zmm registers hold R * M
// accumulators for R weight rows, so each weight vector is loaded and widened once per pass):
//   fp32 / fp16 / bf16: 16 weights widened to fp32 per step, FMA with x in fp32 (x never rounded).
//   int8 / int4: x quantized per 32-block (quantize_x_blocks' values) in a private order, so that
//     one 64-byte vector of weight bytes meets x in one VNNI dot (vpdpbusd) without shuffles:
//
//     x_q row layout: chunks of 4 blocks (128 values; the last chunk may hold nb = 1..3 blocks).
//     Chunk c starts at byte 128 c and holds [elements 0..15 of each of its nb blocks]
//     [elements 16..31 of each of its nb blocks], block order kept: 16 nb + 16 nb bytes.
//
//   int4: the 64 packed bytes of 4 blocks hold elements 0..15 of each block in their low nibbles
//     and 16..31 in their high ones (int4_code), i.e. exactly the two halves of an x chunk:
//     codes = (bytes & 15) and (bytes >> 4 & 15), two vpdpbusd (codes unsigned, x signed). Each
//     int32 lane then holds 4 products of one block (lanes 4b..4b+3: block b of the chunk), scaled
//     per lane by x scale * weight group scale. The zero points, sum_g s_g z_g sum_{b in g} x_sum_b,
//     come off the same accumulator from the x block sums. Result: the exact dot of the stored
//     weights with the quantized x, up to fp32 rounding (as on the AVX2 path).
//   int8: the 128 weight bytes of 4 blocks are regrouped (two vshufi64x2, shared by the M rows of x)
//     into the same two halves; vpdpbusd needs one unsigned side, so x is flipped to x + 128
//     (one xor per x vector, shared by the R weight rows) and 128 * sum(w) per 4 weights (two more
//     vpdpbusd per weight row, shared by the M rows) seeds the accumulator negated. k % 32 in fp32.
#include "kernels/cpu/linear.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__AVX512VNNI__) && defined(__AVX512BF16__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

// GCC 12's AVX-512 intrinsics start many results from _mm512_undefined_*() (a self-initialised
// local), which -Wuninitialized reports at every inlined use (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace ferry::kernels::cpu {

namespace {

// Software prefetch distance of the weight streams, in bytes ahead of the load (every row of a pass
// prefetches its own line; the rows of a pass and the next pass are contiguous, so this runs
// ahead over all of them). Measured (TinyLlama 5632 x 2048, 2 threads, BM_DecodeRoofline, two
// interleaved rounds): none / 4096 / 8192 bytes gave int4 m = 1 14-16 / 24 / 24-28 GB/s, int8
// m = 1 17-19 / 17-20 / 21-23, bf16 m = 8 12-13 / 11-13 / 16; bf16 m = 1 unchanged (~27).
constexpr int64_t kPrefetchBytes = 8192;
constexpr int64_t kChunkBlocks = 4;  // x blocks per quantized-x chunk (128 values)

inline void prefetch(const void* p, int64_t ahead = kPrefetchBytes) {
  _mm_prefetch(static_cast<const char*>(p) + ahead, _MM_HINT_T0);
}

// Makes the compiler keep v in a register. A vector of x used by R weight rows is otherwise
// reloaded as a memory operand of each of the R FMAs / dot products (GCC 12 folds the load into
// every use): R times the L1 traffic, measured ~20 % slower at m = 8 in bf16.
inline void keep_in_register(__m512& v) { asm("" : "+v"(v)); }
inline void keep_in_register(__m512i& v) { asm("" : "+v"(v)); }

template <int R, int M>
inline void set_zero(__m512 (&acc)[R][M]) {
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
}

// Lanes l < n set (n in 0..16).
inline __mmask16 mask16(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline __mmask64 mask64(int64_t n) { return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; }

// 16 consecutive weights of a float-format row from column c, widened to fp32; lanes >= n zero.
template <WeightFormat F>
inline __m512 load16(const unsigned char* row, int64_t c, __mmask16 mask) {
  if constexpr (F == WeightFormat::kF32) {
    return _mm512_maskz_loadu_ps(mask, reinterpret_cast<const float*>(row) + c);
  } else if constexpr (F == WeightFormat::kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row + 2 * c));
  } else {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + 2 * c));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
}
template <WeightFormat F>
inline __m512 load16(const unsigned char* row, int64_t c) {
  if constexpr (F == WeightFormat::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + c);
  } else if constexpr (F == WeightFormat::kF16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c)));
  } else {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
}

// R weight rows j .. j+R-1 against the M rows of x over columns [c0, c1): R * M accumulators, each
// weight vector loaded and widened once and used M times. A tail shorter than 16 (only at c1 = k)
// is one more, masked, step. `add`: out += the partial dots (a later column segment).
template <WeightFormat F, int M, int R>
void float_rows(const LinearArgs& a, int64_t j, int64_t c0, int64_t c1, bool add) {
  constexpr int64_t kBytes = F == WeightFormat::kF32 ? 4 : 2;
  const int64_t k = a.w->k, c16 = c0 + ((c1 - c0) & ~int64_t{15});
  const int64_t row_bytes = k * kBytes;
  const auto* base = static_cast<const unsigned char*>(a.w->data) + j * row_bytes;
  const float* x = a.x;
  __m512 acc[R][M];
  set_zero(acc);
  for (int64_t c = c0; c < c16; c += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load16<F>(base + r * row_bytes, c);
    for (int r = 0; r < R; ++r) prefetch(base + r * row_bytes + c * kBytes);
    for (int i = 0; i < M; ++i) {
      __m512 xv = _mm512_loadu_ps(x + i * k + c);
      if constexpr (R > 1) keep_in_register(xv);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  }
  if (c16 < c1) {
    const __mmask16 mask = mask16(c1 - c16);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load16<F>(base + r * row_bytes, c16, mask);
    for (int i = 0; i < M; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + i * k + c16);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  }
  for (int i = 0; i < M; ++i)
    for (int r = 0; r < R; ++r) {
      float& o = a.out[i * a.out_stride + j + r];
      o = (add ? o : 0.0f) + _mm512_reduce_add_ps(acc[r][i]);
    }
}

// Weight rows per pass: R * M accumulators plus R weight vectors within the 32 registers, and at
// least 4 independent FMA chains when M is small.
template <int M>
constexpr int rows_per_pass() {
  return M <= 2 ? 4 : 2;
}

// x rows are reloaded once per weight row of a pass (R times per weight vector): they must stay
// in L1. When the M rows of x exceed kXSegmentBytes (M = 8 at k > 512 in fp32) the columns are
// cut into segments whose x fits, over blocks of kSegmentRows weight rows: each block's weights
// (64 KiB in bf16 at k = 2048) are read from DRAM once, a segment at a time, and each output
// takes one partial sum per segment. Measured (BM_Linear bf16, m = 8, 2 threads, shapes
// 2048x2048 / 5632x2048 / 2048x5632, one noisy run each): segments of 16 KiB 9.8 / 9.9 / 8.4 GB/s
// of weights, 32 KiB 8.2 / 9.2 / 8.1, none 7.9 / 8.4 / 8.0. The loop stays compute bound at m = 8.
constexpr int64_t kXSegmentBytes = 16 << 10;
constexpr int64_t kSegmentRows = 16;

template <WeightFormat F, int M>
void float_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  constexpr int R = rows_per_pass<M>();
  const int64_t k = a.w->k;
  const int64_t seg = std::max<int64_t>(256, kXSegmentBytes / (4 * M) / 16 * 16);
  const auto pass = [&](int64_t jb, int64_t je, int64_t c0, int64_t c1, bool add) {
    int64_t j = jb;
    for (; j + R <= je; j += R) float_rows<F, M, R>(a, j, c0, c1, add);
    for (; j < je; ++j) float_rows<F, M, 1>(a, j, c0, c1, add);
  };
  if (k <= seg) {
    pass(j0, j1, 0, k, false);
    return;
  }
  for (int64_t jb = j0; jb < j1; jb += kSegmentRows) {
    const int64_t je = std::min(j1, jb + kSegmentRows);
    for (int64_t c0 = 0; c0 < k; c0 += seg) pass(jb, je, c0, std::min(k, c0 + seg), c0 > 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Quantized x (layout in the file comment).

// The x scales of chunk blocks b0 .. b0 + nb - 1, each repeated over its 4 int32 lanes (kFull:
// nb == 4).
template <bool kFull>
inline __m512 chunk_x_scales(const float* scales, int64_t b0, int64_t nb) {
  const __m512i lane_block = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m128 s = kFull ? _mm_loadu_ps(scales + b0) : _mm_maskz_loadu_ps(mask16(nb), scales + b0);
  return _mm512_permutexvar_ps(lane_block, _mm512_castps128_ps512(s));
}

// The two halves of a quantized-x chunk (zeros past a short chunk's 16 nb bytes).
template <bool kFull>
inline void load_x_chunk(const int8_t* row, int64_t b0, int64_t nb, __m512i* lo, __m512i* hi) {
  const int8_t* p = row + b0 * kQuantBlock;
  if constexpr (kFull) {
    *lo = _mm512_loadu_si512(p);
    *hi = _mm512_loadu_si512(p + 64);
  } else {
    const __mmask64 mask = mask64(16 * nb);
    *lo = _mm512_maskz_loadu_epi8(mask, p);
    *hi = _mm512_maskz_loadu_epi8(mask, p + 16 * nb);
  }
}

// int8: R weight rows against M rows of x (see the file comment), then the k % 32 tail in fp32
// and the per-row weight scale.
template <int M, int R>
void int8_rows(const LinearArgs& a, int64_t j) {
  const int64_t k = a.w->k, kb = k / kQuantBlock, kq = kb * kQuantBlock;
  const int8_t* w0 = static_cast<const int8_t*>(a.w->data) + j * k;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[R][M];
  set_zero(acc);
  // One chunk of blocks b0 .. b0 + nb - 1; kFull (nb == 4) without masks. Two instances, so that
  // the main loop has no branch (GCC spills the accumulators around one).
  const auto chunk = [&](int64_t b0, auto full) {
    constexpr bool kFull = decltype(full)::value;
    const int64_t nb = kFull ? kChunkBlocks : kb - b0;
    __m512i wlo[R], whi[R], seed[R];
    for (int r = 0; r < R; ++r) {
      const int8_t* p = w0 + r * k + b0 * kQuantBlock;
      prefetch(p);
      prefetch(p + 64);
      __m512i v0, v1;
      if constexpr (kFull) {
        v0 = _mm512_loadu_si512(p);
        v1 = _mm512_loadu_si512(p + 64);
      } else {
        v0 = _mm512_maskz_loadu_epi8(mask64(32 * nb), p);
        v1 = _mm512_maskz_loadu_epi8(mask64(std::max<int64_t>(0, 32 * nb - 64)), p + 64);
      }
      // 128-bit lanes: v0 = [b0 lo, b0 hi, b1 lo, b1 hi], v1 = the same for b2, b3.
      wlo[r] = _mm512_shuffle_i64x2(v0, v1, 0x88);
      whi[r] = _mm512_shuffle_i64x2(v0, v1, 0xdd);
      const __m512i bias = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, wlo[r]), flip, whi[r]);
      seed[r] = _mm512_sub_epi32(_mm512_setzero_si512(), bias);
    }
    for (int i = 0; i < M; ++i) {
      __m512i xlo, xhi;
      load_x_chunk<kFull>(a.x_q + i * kq, b0, nb, &xlo, &xhi);
      xlo = _mm512_xor_si512(xlo, flip);
      xhi = _mm512_xor_si512(xhi, flip);
      if constexpr (R > 1) {
        keep_in_register(xlo);
        keep_in_register(xhi);
      }
      const __m512 xs = chunk_x_scales<kFull>(a.x_scales + i * kb, b0, nb);
      for (int r = 0; r < R; ++r) {
        const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(seed[r], xlo, wlo[r]), xhi, whi[r]);
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), xs, acc[r][i]);
      }
    }
  };
  const int64_t kb_full = kb / kChunkBlocks * kChunkBlocks;
  for (int64_t b0 = 0; b0 < kb_full; b0 += kChunkBlocks) chunk(b0, std::true_type{});
  if (kb_full < kb) chunk(kb_full, std::false_type{});
  for (int64_t c = kq; c < k; c += 16) {
    const __mmask16 mask = mask16(std::min<int64_t>(16, k - c));
    __m512 wv[R];
    for (int r = 0; r < R; ++r)
      wv[r] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, w0 + r * k + c)));
    for (int i = 0; i < M; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, a.x + i * k + c);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float scale = a.w->scales[j + r];
    for (int i = 0; i < M; ++i) a.out[i * a.out_stride + j + r] = _mm512_reduce_add_ps(acc[r][i]) * scale;
  }
}

template <int M>
void int8_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  constexpr int R = rows_per_pass<M>();
  int64_t j = j0;
  for (; j + R <= j1; j += R) int8_rows<M, R>(a, j);
  for (; j < j1; ++j) int8_rows<M, 1>(a, j);
}

// int4 group scales of one chunk: the groups its blocks fall in, first_group + 0..3, and for each
// int32 lane (4 per block) which of them (any group size that is a multiple of 32).
struct Int4Chunk {
  __m512i lane_group;  // 0..3 per lane
  int64_t first_group;
  __mmask16 groups;    // which of first_group + 0..3 exist
};

// Per-call tables of the worker: the chunks of a row and, per row of x, the sums of x_sums over
// each weight group (zero-point term).
struct Int4Tables {
  std::vector<Int4Chunk> chunks;
  std::vector<float> group_sums;  // [m, groups]
};

void build_int4_tables(const LinearArgs& a, Int4Tables* t) {
  const WeightMatrix& w = *a.w;
  const int64_t kb = w.k / kQuantBlock, groups = w.k / w.group_size, blocks_per_group = w.group_size / kQuantBlock;
  t->chunks.resize(static_cast<size_t>((kb + kChunkBlocks - 1) / kChunkBlocks));
  for (size_t ch = 0; ch < t->chunks.size(); ++ch) {
    const int64_t b0 = static_cast<int64_t>(ch) * kChunkBlocks, g0 = b0 / blocks_per_group;
    alignas(64) int32_t lanes[16];
    for (int l = 0; l < 16; ++l) lanes[l] = static_cast<int32_t>((b0 + l / 4) / blocks_per_group - g0);
    t->chunks[ch] = {_mm512_load_si512(lanes), g0, mask16(std::min<int64_t>(4, groups - g0))};
  }
  t->group_sums.assign(static_cast<size_t>(a.m * groups), 0.0f);
  for (int64_t i = 0; i < a.m; ++i)
    for (int64_t b = 0; b < kb; ++b) t->group_sums[i * groups + b / blocks_per_group] += a.x_sums[i * kb + b];
}

// int4: R weight rows against M rows of x (file comment). Per chunk and (row, x row): two
// vpdpbusd, a conversion, the lane scales' product and an FMA; the zero points at the end.
template <int M, int R>
void int4_rows(const LinearArgs& a, const Int4Tables& t, int64_t j) {
  const WeightMatrix& w = *a.w;
  const int64_t k = w.k, kb = k / kQuantBlock, groups = k / w.group_size;
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const uint8_t* packed = static_cast<const uint8_t*>(w.data) + j * (k / 2);
  const float* wscales = w.scales + j * groups;
  __m512 acc[R][M];
  set_zero(acc);
  // One chunk of blocks b0 .. b0 + nb - 1; kFull (nb == 4) without masks (see int8_rows).
  const auto chunk = [&](int64_t b0, auto full) {
    constexpr bool kFull = decltype(full)::value;
    const int64_t nb = kFull ? kChunkBlocks : kb - b0;
    const Int4Chunk& info = t.chunks[static_cast<size_t>(b0 / kChunkBlocks)];
    __m512i lo[R], hi[R];
    __m512 ws[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = packed + r * (k / 2) + b0 * 16;
      prefetch(p);
      // The group scales run at most a quarter as fast (g32: 4 bytes per 16 weight bytes).
      prefetch(wscales + r * groups + info.first_group, kPrefetchBytes / 4);
      const __m512i raw = kFull ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(mask64(16 * nb), p);
      lo[r] = _mm512_and_si512(raw, low4);
      hi[r] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
      const __m128 g = _mm_maskz_loadu_ps(info.groups, wscales + r * groups + info.first_group);
      ws[r] = _mm512_permutexvar_ps(info.lane_group, _mm512_castps128_ps512(g));
    }
    for (int i = 0; i < M; ++i) {
      __m512i xlo, xhi;
      load_x_chunk<kFull>(a.x_q + i * k, b0, nb, &xlo, &xhi);
      if constexpr (R > 1) {
        keep_in_register(xlo);
        keep_in_register(xhi);
      }
      const __m512 xs = chunk_x_scales<kFull>(a.x_scales + i * kb, b0, nb);
      for (int r = 0; r < R; ++r) {
        const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xlo), hi[r], xhi);
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(ws[r], xs), acc[r][i]);
      }
    }
  };
  const int64_t kb_full = kb / kChunkBlocks * kChunkBlocks;
  for (int64_t b0 = 0; b0 < kb_full; b0 += kChunkBlocks) chunk(b0, std::true_type{});
  if (kb_full < kb) chunk(kb_full, std::false_type{});
  // Zero points: acc -= s_g * z_g * (sum of the x block sums of group g), 16 groups a step.
  const __m512 eight = _mm512_set1_ps(8.0f);
  for (int64_t g = 0; g < groups; g += 16) {
    const __mmask16 mask = mask16(std::min<int64_t>(16, groups - g));
    __m512 sz[R];
    for (int r = 0; r < R; ++r) {
      const __m512 s = _mm512_maskz_loadu_ps(mask, wscales + r * groups + g);
      sz[r] = _mm512_mul_ps(s, w.zeros != nullptr ? _mm512_maskz_loadu_ps(mask, w.zeros + (j + r) * groups + g) : eight);
    }
    for (int i = 0; i < M; ++i) {
      const __m512 gs = _mm512_maskz_loadu_ps(mask, t.group_sums.data() + i * groups + g);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm512_fnmadd_ps(sz[r], gs, acc[r][i]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) a.out[i * a.out_stride + j + r] = _mm512_reduce_add_ps(acc[r][i]);
}

// The calling worker's tables. Not inlined: GCC would otherwise fold the thread_local's address
// into the kernels as a constant and look it up (__tls_get_addr, a call that clobbers every zmm
// register) inside the chunk loop.
__attribute__((noinline)) Int4Tables& worker_int4_tables() {
  thread_local Int4Tables t;
  return t;
}

template <int M>
void int4_decode_m(const LinearArgs& a, int64_t j0, int64_t j1) {
  Int4Tables& t = worker_int4_tables();
  build_int4_tables(a, &t);
  constexpr int R = rows_per_pass<M>();
  int64_t j = j0;
  for (; j + R <= j1; j += R) int4_rows<M, R>(a, t, j);
  for (; j < j1; ++j) int4_rows<M, 1>(a, t, j);
}

// quantize_x_blocks' values (same fp32 operations in the same order: cvtps rounds to nearest even
// under the default MXCSR, like nearbyint), stored in the chunk layout of the file comment.
void quantize_x_avx512(const float* x, int64_t len, int8_t* q, float* scales, float* sums) {
  const int64_t kb = len / kQuantBlock;
  const __m512i lim = _mm512_set1_epi32(127), neg_lim = _mm512_set1_epi32(-127);
  for (int64_t b0 = 0; b0 < kb; b0 += kChunkBlocks) {
    const int64_t nb = std::min(kChunkBlocks, kb - b0);
    int8_t* chunk = q + b0 * kQuantBlock;
    for (int64_t u = 0; u < nb; ++u) {
      const int64_t b = b0 + u;
      const __m512 v0 = _mm512_loadu_ps(x + b * kQuantBlock), v1 = _mm512_loadu_ps(x + b * kQuantBlock + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
      const __m512i i0 = _mm512_max_epi32(neg_lim, _mm512_min_epi32(lim, _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv))));
      const __m512i i1 = _mm512_max_epi32(neg_lim, _mm512_min_epi32(lim, _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv))));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(chunk + 16 * u), _mm512_cvtepi32_epi8(i0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(chunk + 16 * nb + 16 * u), _mm512_cvtepi32_epi8(i1));
      scales[b] = amax / 127.0f;
      sums[b] = scales[b] * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1)));
    }
  }
}

// Panel packing: w[row, c0 .. c0 + len) to fp32, 16 values a step (masked last step) for the
// per-element formats; int4 a 32-block (one group scale) at a time: c0 and len are multiples of 32
// there (linear.h).
template <WeightFormat F>
void widen_row(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, float* out) {
  const auto* bytes = static_cast<const unsigned char*>(w.data);
  for (int64_t c = 0; c < len; c += 16) {
    const __mmask16 mask = mask16(std::min<int64_t>(16, len - c));
    __m512 v;
    if constexpr (F == WeightFormat::kInt8) {
      const auto* q = reinterpret_cast<const int8_t*>(bytes) + row * w.k + c0 + c;
      v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, q))),
                        _mm512_set1_ps(w.scales[row]));
    } else {
      v = load16<F>(bytes + row * w.k * (F == WeightFormat::kF32 ? 4 : 2), c0 + c, mask);
    }
    _mm512_mask_storeu_ps(out + c, mask, v);
  }
}

void widen_int4_row(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, float* out) {
  const uint8_t* packed = static_cast<const uint8_t*>(w.data) + row * (w.k / 2);
  const float* scales = w.scales + row * (w.k / w.group_size);
  const float* zeros = w.zeros != nullptr ? w.zeros + row * (w.k / w.group_size) : nullptr;
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (int64_t col = c0; col < c0 + len; col += kQuantBlock) {
    const int64_t g = col / w.group_size;
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + col / 2));
    // Low nibbles: elements 0..15 of the block; high nibbles: 16..31.
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(raw, low4)));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(raw, 4), low4)));
    const __m512 zero = _mm512_set1_ps(zeros != nullptr ? zeros[g] : 8.0f), scale = _mm512_set1_ps(scales[g]);
    _mm512_storeu_ps(out + (col - c0), _mm512_mul_ps(_mm512_sub_ps(lo, zero), scale));
    _mm512_storeu_ps(out + (col - c0) + 16, _mm512_mul_ps(_mm512_sub_ps(hi, zero), scale));
  }
}

void widen_avx512(const WeightMatrix& w, int64_t row, int64_t c0, int64_t len, float* out) {
  switch (w.format) {
    case WeightFormat::kF32: return widen_row<WeightFormat::kF32>(w, row, c0, len, out);
    case WeightFormat::kF16: return widen_row<WeightFormat::kF16>(w, row, c0, len, out);
    case WeightFormat::kBF16: return widen_row<WeightFormat::kBF16>(w, row, c0, len, out);
    case WeightFormat::kInt8: return widen_row<WeightFormat::kInt8>(w, row, c0, len, out);
    case WeightFormat::kInt4: return widen_int4_row(w, row, c0, len, out);
  }
}

// Blocked-GEMM micro-kernel, R (1..kMicroRows) x 16 columns: one zmm per row, two accumulator sets
// (even and odd kk) so that 2 R FMA chains hide the FMA latency, summed at the end.
template <int R>
void micro_rows(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc, bool accumulate) {
  static_assert(kMicroCols == 16, "one zmm per row of the tile");
  __m512 even[R], odd[R];
  for (int r = 0; r < R; ++r) {
    even[r] = accumulate ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    odd[r] = _mm512_setzero_ps();
  }
  int64_t kk = 0;
  for (; kk + 2 <= kb; kk += 2) {
    const __m512 w0 = _mm512_loadu_ps(wp + kk * kMicroCols);
    const __m512 w1 = _mm512_loadu_ps(wp + (kk + 1) * kMicroCols);
    for (int r = 0; r < R; ++r) {
      even[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ldx + kk]), w0, even[r]);
      odd[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ldx + kk + 1]), w1, odd[r]);
    }
  }
  if (kk < kb) {
    const __m512 w0 = _mm512_loadu_ps(wp + kk * kMicroCols);
    for (int r = 0; r < R; ++r) even[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ldx + kk]), w0, even[r]);
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(c + r * ldc, _mm512_add_ps(even[r], odd[r]));
}

void micro_avx512(const float* x, int64_t ldx, const float* wp, int64_t kb, float* c, int64_t ldc, int64_t rows,
                  bool accumulate) {
  switch (rows) {
    case 1: return micro_rows<1>(x, ldx, wp, kb, c, ldc, accumulate);
    case 2: return micro_rows<2>(x, ldx, wp, kb, c, ldc, accumulate);
    case 3: return micro_rows<3>(x, ldx, wp, kb, c, ldc, accumulate);
    case 4: return micro_rows<4>(x, ldx, wp, kb, c, ldc, accumulate);
    case 5: return micro_rows<5>(x, ldx, wp, kb, c, ldc, accumulate);
    default: return micro_rows<6>(x, ldx, wp, kb, c, ldc, accumulate);
  }
}

// The decode kernel of each m = 1..kDecodeMaxRows (Family::run<M>), indexed by m - 1.
template <class Family, size_t... I>
void decode_by_m(const LinearArgs& a, int64_t j0, int64_t j1, std::index_sequence<I...>) {
  static constexpr DecodeFn kByM[] = {&Family::template run<static_cast<int>(I) + 1>...};
  kByM[a.m - 1](a, j0, j1);
}
template <class Family>
void decode(const LinearArgs& a, int64_t j0, int64_t j1) {
  decode_by_m<Family>(a, j0, j1, std::make_index_sequence<kDecodeMaxRows>{});
}
template <WeightFormat F>
struct FloatDecode {
  template <int M>
  static void run(const LinearArgs& a, int64_t j0, int64_t j1) { float_decode_m<F, M>(a, j0, j1); }
};
struct Int8Decode {
  template <int M>
  static void run(const LinearArgs& a, int64_t j0, int64_t j1) { int8_decode_m<M>(a, j0, j1); }
};
struct Int4Decode {
  template <int M>
  static void run(const LinearArgs& a, int64_t j0, int64_t j1) { int4_decode_m<M>(a, j0, j1); }
};

static_assert(kMicroRows == 6 && kMicroCols == 16 && kQuantBlock == 32 && kDecodeMaxRows == 8,
              "loops above are written for these");

const LinearKernels kAvx512Kernels = {
    {decode<FloatDecode<WeightFormat::kF32>>, decode<FloatDecode<WeightFormat::kF16>>,
     decode<FloatDecode<WeightFormat::kBF16>>, decode<Int8Decode>, decode<Int4Decode>},
    micro_avx512,
    widen_avx512,
    quantize_x_avx512,
    nullptr,
    kGemmMinRows,
};

}  // namespace

const LinearKernels* linear_kernels_avx512() { return &kAvx512Kernels; }

}  // namespace ferry::kernels::cpu

#else  // no AVX-512 in this build

namespace ferry::kernels::cpu {
const LinearKernels* linear_kernels_avx512() { return nullptr; }
}  // namespace ferry::kernels::cpu

#endif
