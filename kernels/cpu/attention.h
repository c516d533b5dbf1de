// Internal to kernels/cpu/attention*.cc: the inner loops of the kCpu paged attention, one table of
// function pointers per instruction-set path (portable C++ in attention.cc, AVX2+FMA in
// attention_avx2.cc, compiled with per-file flags and used only when the CPU has them).
//
// The driver (attention.cc) walks the cache in chunks of at most kAttentionChunkKeys keys that are
// contiguous in one block, widens bf16/int8 chunks to fp32 once (so every q head sharing the KV head
// reuses them from L1), and calls these on a tile of R query rows (the q heads of one KV head, times
// a few query tokens in prefill). All pointers are fp32 rows of head_dim values; `*_ld` is the
// distance between consecutive rows, in floats.
#pragma once

#include <cstdint>

namespace ferry::kernels::cpu {

// Keys per chunk: 32 keys of head_dim 128 in fp32 are 16 KiB, so a widened K or V chunk stays in L1.
inline constexpr int64_t kAttentionChunkKeys = 32;

struct AttentionKernels {
  // scores[r * s_ld + j] = dot(q[r * head_dim ..], k[j * k_ld ..]) for r < num_rows, j < n.
  // q is contiguous: [num_rows, head_dim].
  void (*qk)(float* scores, int64_t s_ld, const float* q, int64_t num_rows, const float* k, int64_t k_ld,
             int64_t n, int64_t head_dim);
  // acc[r * head_dim + d] += sum_j p[r * p_ld + j] * v[j * v_ld + d] for r < num_rows, d < head_dim.
  void (*pv)(float* acc, const float* p, int64_t p_ld, int64_t num_rows, const float* v, int64_t v_ld, int64_t n,
             int64_t head_dim);
  // dst[j * head_dim + d] = widen(src[j * src_ld + d]) for j < n: bf16 bit patterns, or int8 values
  // without their scale (the driver applies it to the score or the softmax weight).
  void (*widen_bf16)(float* dst, const uint16_t* src, int64_t src_ld, int64_t n, int64_t head_dim);
  void (*widen_int8)(float* dst, const int8_t* src, int64_t src_ld, int64_t n, int64_t head_dim);
  // x[i] = exp(x[i] - max) for i < n; returns the sum of the new x.
  float (*exp_sum)(float* x, int64_t n, float max);
  // max of x[0..n), n >= 1.
  float (*row_max)(const float* x, int64_t n);
  // One decode item in one call, for head_dim 8 or 16 with an fp32 cache (nullptr: no such path;
  // the driver then runs the three passes above). At these sizes a dot product is one or two FMAs,
  // so calling qk/pv per chunk and passing scores between passes cost more than the arithmetic.
  // Rows r < num_rows are q heads (q: [num_rows, head_dim], already scaled); key j < n lives at
  // k_head + offs[j] and v_head + offs[j] (offs padded to a multiple of 8 with valid offsets);
  // softcap 0 means none. Writes out[r * head_dim + d] = softmax(q_r . K) . V. scores: scratch of
  // num_rows * s_ld floats, s_ld >= n rounded up to 8.
  void (*decode_small)(float* out, const float* q, int64_t num_rows, const float* k_head, const float* v_head,
                       const int64_t* offs, int64_t n, int64_t head_dim, float softcap, float* scores,
                       int64_t s_ld);
};

const AttentionKernels& attention_kernels_portable();
// nullptr when this build has no AVX2 file (non-x86 targets). Call only where the CPU supports AVX2
// and FMA.
const AttentionKernels* attention_kernels_avx2();

}  // namespace ferry::kernels::cpu
