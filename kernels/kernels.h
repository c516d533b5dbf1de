// ferry::kernels: the device-neutral declarations of every operator the LLM engine runs.
//
// Each operator is declared here once. The first argument, a Context, says which implementation runs:
//   kReference  plain loops (kernels/cpu/reference.cc): slow, obviously correct, the oracle in tests;
//   kCpu        the fast CPU implementation (kernels/cpu/cpu_kernels.cc, attention.cc, linear.cc; linear
//               and matmul on our own kernels, split over a ThreadPool);
//   kCuda       kernels/cuda/ (kernels/cuda/dispatch.{h,cc}): routed there in the CUDA emulation build
//               (FERRY_CUDA_EMULATION, docs/cuda.md), where the .cu kernels run on the host; an nvcc
//               build still asserts on kCuda (no engine holds device buffers yet). Operators without a
//               CUDA kernel (gelu, log_softmax, matmul, linear of a float
//               weight format) assert too.
// Signatures take raw pointers, sizes and documented row-major layouts (no STL containers), so a CUDA
// implementation can take device pointers through the very same declarations.
//
// Conventions:
// - Activations, norms weights and outputs are fp32. Tables and weight matrices may be fp32, fp16
//   or bf16 (DType); they are read, never written. The paged KV cache is fp32, bf16, or int8 with
//   scales (KvCacheDType); attention always computes in fp32.
// - Shapes are written [outer, ..., inner] beside each pointer; everything is contiguous unless a
//   `*_stride` argument (in elements) says how far apart consecutive tokens are.
// - Inputs are validated by the caller (the engine checks token ids, slots and block tables at its
//   boundary); the kernels only assert with FERRY_CHECK on broken invariants.
// - Thread-safety: every operator is a pure function of its arguments; concurrent calls on disjoint
//   outputs are safe. The kCpu operators run on Context::pool (or the default pool),
//   whose concurrent callers are serialized.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::kernels {

// Element type of a weight table or matrix. Values match nothing external; never persist them.
enum class DType : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

// Scalar conversions (round to nearest even for the narrowing ones; NaN stays NaN).
float bf16_to_f32(uint16_t v);
float f16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float v);
uint16_t f32_to_f16(float v);
// Converts n elements of `src` (of type `dtype`) to fp32 into dst[n].
void convert_to_f32(float* dst, const void* src, DType dtype, size_t n);

enum class Backend : int32_t { kReference = 0, kCpu = 1, kCuda = 2 };

class ThreadPool;  // kernels/cpu/thread_pool.h

// Where and how an operator runs. `stream` is the cudaStream_t for kCuda, unused on CPU. `pool` is
// the CPU thread pool the kCpu operators split their work over (nullptr: the process-wide default
// pool, sized by cpu_set_num_threads); kReference always runs on the calling thread.
struct Context {
  Backend backend = Backend::kCpu;
  void* stream = nullptr;
  ThreadPool* pool = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Embedding lookup: out[t, :] = table[token_ids[t], :] converted to fp32.
// Every token id must be in [0, vocab_size).
void embedding(const Context& ctx,
               float* out,               // [num_tokens, hidden]
               const void* table,        // [vocab_size, hidden], dtype `table_dtype`
               DType table_dtype, int64_t vocab_size, int64_t hidden,
               const int32_t* token_ids,  // [num_tokens]
               int64_t num_tokens);

// RMSNorm: out[r, :] = in[r, :] / sqrt(mean(in[r, :]^2) + eps) * weight[:]. `out` may alias `in`.
void rms_norm(const Context& ctx,
              float* out,           // [num_rows, dim]
              const float* in,      // [num_rows, dim]
              const float* weight,  // [dim]
              int64_t num_rows, int64_t dim, float eps);

// Fused residual add + RMSNorm (the pre-norm transformer's seam between two sub-layers):
//   residual[r, :] += delta[r, :];  out[r, :] = rms_norm(residual[r, :]) * weight.
// `out` must not alias `residual`; it may alias `delta`.
void add_rms_norm(const Context& ctx,
                  float* out,           // [num_rows, dim]
                  float* residual,      // [num_rows, dim], updated in place
                  const float* delta,   // [num_rows, dim]
                  const float* weight,  // [dim]
                  int64_t num_rows, int64_t dim, float eps);

// Per-head RMSNorm in place (Qwen3's q_norm / k_norm, applied before RoPE): for every token t and
// head h, x[t*token_stride + h*head_dim + (0..head_dim)] = rms_norm(that head vector) * weight.
void head_rms_norm(const Context& ctx,
                   float* x,             // [num_tokens, token_stride], heads at [.., num_heads*head_dim]
                   const float* weight,  // [head_dim]
                   int64_t num_tokens, int64_t token_stride, int64_t num_heads, int64_t head_dim,
                   float eps);

// Rotary position embedding in place, HF's rotate_half layout: within each head, element j is
// rotated with element j + head_dim/2 (j < head_dim/2) by the angle positions[t] * inv_freq[j]:
//   x'[j]       = x[j] * cos - x[j + d/2] * sin
//   x'[j + d/2] = x[j + d/2] * cos + x[j] * sin
// Scaling variants (llama3, linear) live entirely in inv_freq (see rope_inv_freq).
void rope(const Context& ctx,
          float* q,                  // [num_tokens, q_stride], heads at [.., num_q_heads*head_dim]
          float* k,                  // [num_tokens, k_stride], heads at [.., num_kv_heads*head_dim]
          const int32_t* positions,  // [num_tokens], >= 0
          const float* inv_freq,     // [head_dim/2], radians per position
          int64_t num_tokens, int64_t q_stride, int64_t k_stride, int64_t num_q_heads,
          int64_t num_kv_heads, int64_t head_dim);

// RoPE scaling as configured in HF config.json `rope_scaling`.
enum class RopeScaling : int32_t { kNone = 0, kLinear = 1, kLlama3 = 2 };
struct RopeParams {
  float theta = 10000.0f;  // rope_theta
  RopeScaling scaling = RopeScaling::kNone;
  float factor = 1.0f;            // kLinear, kLlama3
  float low_freq_factor = 1.0f;   // kLlama3
  float high_freq_factor = 4.0f;  // kLlama3
  int64_t original_max_position_embeddings = 8192;  // kLlama3
};
// Host helper (not an operator): fills inv_freq[head_dim/2] for the given parameters, computed in
// double precision then rounded to fp32.
void rope_inv_freq(const RopeParams& params, int64_t head_dim, float* inv_freq);

// ---------------------------------------------------------------------------------------------
// Paged KV cache.
//
// Storage per layer (one tensor for K, one for V), by KvCacheDType:
//   kF32:  float  k_cache[num_blocks, block_size, num_kv_heads, head_dim]
//   kBF16: uint16_t k_cache[num_blocks, block_size, num_kv_heads, head_dim], bf16 bit patterns
//          (f32_to_bf16: round to nearest even; no scales). Half the bytes of fp32; a value keeps 8
//          significant bits (relative error <= 2^-8), far below int8's per-row step at typical K/V.
//   kInt8: int8_t k_cache[num_blocks, block_size, num_kv_heads, head_dim]
//          float  k_scales[num_blocks, block_size, num_kv_heads]
// A physical block holds block_size consecutive token positions of one sequence. A sequence's
// block table maps its logical block b (positions b*block_size .. b*block_size+block_size-1) to a
// physical block id. A "slot" is physical_block * block_size + offset_in_block.
//
// int8 quantization is symmetric with one fp32 scale per (slot, kv head), i.e. per block and head,
// refined to each of the block's positions. For the head_dim values x[0..head_dim) of one token and
// head, in fp32 arithmetic:
//   amax = max_d |x[d]|;  scale = amax / 127;  q[d] = round_half_even(x[d] * (127 / amax))
// clamped to [-127, 127] (amax == 0 gives scale 0 and q 0); x[d] is read back as q[d] * scale, within
// scale / 2 of the input. Why per position rather than one scale per (block, head): a block filled
// token by token keeps a valid scale without re-quantizing what it already holds (no double
// rounding), and a token's stored bytes depend only on its own K/V -- so whole, chunked and batched
// prefill, and a prefix block cached by another request, hold bit-identical data. Cost: 4 scale
// bytes per head_dim int8 values, i.e. K+V take 2 * (head_dim + 4) bytes per token and head instead
// of 8 * head_dim (3.76x fewer bytes at head_dim 64, 3.88x at 128, 2.67x at stories260K's 8).
// Accuracy is measured in tests/kernels (attention vs fp32) and tests/llm/engine (stories260K: about
// 4.5x the logit error of a cache rounded to bf16).
enum class KvCacheDType : int32_t { kF32 = 0, kInt8 = 1, kBF16 = 2 };

const char* kv_cache_dtype_name(KvCacheDType dtype);  // "fp32", "int8", "bf16"
// Bytes one token position takes in one layer's K (or V) cache for one KV head, scale included.
int64_t kv_cache_bytes_per_head(KvCacheDType dtype, int64_t head_dim);

// KV cache write (fp32 cache): for token t with slot_mapping[t] >= 0, copies k[t] and v[t] into
// that slot. Tokens with slot -1 are skipped (padding). Slots must be < num_blocks * block_size and
// distinct.
void kv_cache_write(const Context& ctx,
                    float* k_cache,              // [num_blocks, block_size, num_kv_heads, head_dim]
                    float* v_cache,              // same
                    const float* k,              // [num_tokens, k_stride], [.., num_kv_heads*head_dim]
                    const float* v,              // [num_tokens, v_stride], same
                    const int64_t* slot_mapping,  // [num_tokens]
                    int64_t num_tokens, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads,
                    int64_t head_dim);

// KV cache write (bf16 cache): as kv_cache_write, each value rounded to bf16 (f32_to_bf16).
// kCpu and kReference only for now (a kCuda context asserts).
void kv_cache_write_bf16(const Context& ctx,
                         uint16_t* k_cache,            // [num_blocks, block_size, num_kv_heads, head_dim]
                         uint16_t* v_cache,            // same
                         const float* k,               // [num_tokens, k_stride], [.., num_kv_heads*head_dim]
                         const float* v,               // [num_tokens, v_stride], same
                         const int64_t* slot_mapping,  // [num_tokens]
                         int64_t num_tokens, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads,
                         int64_t head_dim);

// KV cache write (int8 cache): as kv_cache_write, but each (token, kv head) row of k and of v is
// quantized as described above into the slot's int8 values and its scale.
void kv_cache_write_int8(const Context& ctx,
                         int8_t* k_cache,             // [num_blocks, block_size, num_kv_heads, head_dim]
                         int8_t* v_cache,             // same
                         float* k_scales,             // [num_blocks, block_size, num_kv_heads]
                         float* v_scales,             // same
                         const float* k,              // [num_tokens, k_stride], [.., num_kv_heads*head_dim]
                         const float* v,              // [num_tokens, v_stride], same
                         const int64_t* slot_mapping,  // [num_tokens]
                         int64_t num_tokens, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads,
                         int64_t head_dim);

// Paged attention over a batch of sequences with variable query and context lengths (prefill and
// decode are the same call: decode is query_len 1).
//
// Sequence s owns query tokens query_start[s] .. query_start[s+1]-1 of q/out (query_len_s), and its
// context is the context_lens[s] tokens already written to the cache (this step's keys included:
// write the cache first). Its query token i sits at position context_lens[s] - query_len_s + i and
// attends causally to cached positions 0..that position. Head h of q uses KV head
// h / (num_q_heads / num_kv_heads) (GQA; num_q_heads must be a multiple of num_kv_heads).
// out = softmax(q . k^T * scale) . v, the softmax in fp32 with max subtraction. An int8 cache is
// dequantized on the fly (k = q_k * k_scale, v = q_v * v_scale), never materialised in fp32; a bf16
// cache is widened on the fly.
// kCpu splits the work over the pool by (sequence, kv head, tile of query tokens), so the q heads
// that share a KV head read it from memory once.
// Two optional variations (kCpu and kReference only for now: a kCuda context asserts both unset):
//   sliding_window w > 0: the query at position p attends only to positions (p - w, p], i.e. its
//     last w keys itself included (Mistral, Gemma's local layers, Phi-3; HF's sliding-window mask).
//     The blocks before the window are still read from the block table's range, never freed here.
//   logit_softcap c > 0: each score s = q . k * scale becomes c * tanh(s / c) before the softmax
//     (Gemma 2's attn_logit_softcapping).
struct PagedAttentionArgs {
  float* out;                       // [num_tokens, num_q_heads * head_dim]
  const float* q;                   // [num_tokens, q_stride], heads at [.., num_q_heads*head_dim]
  const void* k_cache;              // [num_blocks, block_size, num_kv_heads, head_dim], kv_dtype
  const void* v_cache;              // same
  const float* k_scales = nullptr;  // kInt8 only: [num_blocks, block_size, num_kv_heads]
  const float* v_scales = nullptr;  // same
  KvCacheDType kv_dtype = KvCacheDType::kF32;
  const int32_t* query_start;       // [num_seqs + 1], query_start[0] = 0, last = num_tokens
  const int32_t* context_lens;      // [num_seqs], >= that sequence's query_len
  const int32_t* block_tables;      // [num_seqs, max_blocks_per_seq], physical block ids
  int64_t num_seqs = 0;
  int64_t num_tokens = 0;
  int64_t max_blocks_per_seq = 0;
  int64_t q_stride = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;
  int64_t num_blocks = 0;           // only for bounds assertions
  float scale = 1.0f;               // usually 1/sqrt(head_dim)
  int64_t sliding_window = 0;       // 0: every earlier key; else keys at (p - sliding_window, p]
  float logit_softcap = 0.0f;       // 0: none; else scores become c * tanh(score / c)
};
void paged_attention(const Context& ctx, const PagedAttentionArgs& args);

// ---------------------------------------------------------------------------------------------
// SwiGLU: out[r, j] = silu(gate_up[r, j]) * gate_up[r, inter + j], silu(x) = x / (1 + exp(-x)).
void silu_and_mul(const Context& ctx,
                  float* out,            // [num_rows, inter]
                  const float* gate_up,  // [num_rows, 2 * inter]: gate half, then up half
                  int64_t num_rows, int64_t inter);

// GeGLU (Gemma's MLP, HF's gelu_pytorch_tanh): out[r, j] = gelu_tanh(gate_up[r, j]) * gate_up[r,
// inter + j], gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Same layout as
// silu_and_mul. kCpu and kReference only for now (a kCuda context asserts).
void gelu_tanh_and_mul(const Context& ctx,
                       float* out,            // [num_rows, inter]
                       const float* gate_up,  // [num_rows, 2 * inter]: gate half, then up half
                       int64_t num_rows, int64_t inter);

// Linear layer in HF layout: out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]).
// kCpu: linear() with the matching float WeightFormat (see there).
void matmul(const Context& ctx,
            float* out,         // [m, n]
            const float* x,     // [m, k]
            const void* w,      // [n, k], dtype `w_dtype`
            DType w_dtype,
            const float* bias,  // [n] or nullptr
            int64_t m, int64_t n, int64_t k);

// ---------------------------------------------------------------------------------------------
// Weight matrices of linear layers, in every storage format the engine keeps.
//
// A WeightMatrix is a view (never owns) of one [n, k] matrix in HF orientation (n output features,
// k input features). Formats and their memory layout (the packing functions below produce the
// quantized ones; nothing else should depend on their byte layout):
//   kF32 / kF16 / kBF16: data = [n, k] elements of that type, row-major (e.g. straight from a
//                        safetensors mapping, zero copy).
//   kInt8: symmetric per output channel. data = int8 [n, k] in [-127, 127], scales = float [n];
//          w[r][c] = data[r][c] * scales[r].
//   kInt4: groups of `group_size` consecutive input features (32, 64 or 128; k a multiple of it),
//          4-bit codes q in [0, 15], scales = float [n, k / group_size], zeros = float
//          [n, k / group_size] or nullptr (symmetric: zero point 8); w[r][c] = (q - zero) * scale.
//          data holds the codes as packed by pack_int4 (n * k / 2 bytes; layout private to kernels).
enum class WeightFormat : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2, kInt8 = 3, kInt4 = 4 };
const char* weight_format_name(WeightFormat format);  // "fp32", "fp16", "bf16", "int8", "int4"

struct WeightMatrix {
  WeightFormat format = WeightFormat::kF32;
  int64_t n = 0;  // rows: output features
  int64_t k = 0;  // columns: input features
  const void* data = nullptr;
  const float* scales = nullptr;  // kInt8: [n]; kInt4: [n, k / group_size]
  const float* zeros = nullptr;   // kInt4 only, optional: [n, k / group_size]
  int64_t group_size = 0;         // kInt4 only
};
// Bytes of `data` for a matrix of this format and shape (scales and zeros not included).
int64_t weight_data_bytes(WeightFormat format, int64_t n, int64_t k);

// Host helpers that build quantized matrices from fp32 values w[n, k] (round to nearest, ties to
// even; results are deterministic and the same on every backend). The caller owns the outputs:
//   quantize_int8: q[n * k], scales[n]; scale = max_c |w[r][c]| / 127 (0 for an all-zero row).
//   quantize_int4: packed[weight_data_bytes(kInt4, n, k)], scales and (when zeros != nullptr,
//                  asymmetric: min/max per group) zeros [n, k / group_size]; symmetric otherwise
//                  (scale = amax / 7, codes clamped to [0, 15] around zero point 8).
//   pack_int4: packs codes already computed elsewhere (GPTQ/AWQ checkpoints): codes[n * k] each in
//              [0, 15], row-major, into packed[weight_data_bytes(kInt4, n, k)].
void quantize_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scales);
void quantize_int4(const float* w, int64_t n, int64_t k, int64_t group_size, uint8_t* packed, float* scales,
                   float* zeros);
void pack_int4(const uint8_t* codes, int64_t n, int64_t k, uint8_t* packed);
// Reads a matrix back as fp32 into out[n, k] (tests, accuracy reports).
void dequantize_weight(const WeightMatrix& w, float* out);

// Linear layer: out[i, j] = sum_c x[i, c] * w[j][c] (+ bias[j]) for i < m, j < w.n, writing row i
// of the result at out + i * out_stride (out_stride >= w.n; lets q, k and v land side by side in
// one buffer). fp32 accumulation for float formats. kCpu on AVX2, m < 64 (decode): int8/int4 weights
// meet x quantized to int8 per block of 32 inputs (scale = amax / 127, so each x value is off by at
// most scale / 2; kernels/cpu/linear.h); the result is the exact dot with that x up to fp32 rounding.
// Larger m, and the portable path, widen the weights to fp32 instead. Bounds: tests/kernels/linear_test.
// kCuda (emulation build): int8 weights only, cuda::linear_int8 (x in fp32, sums in fp32).
void linear(const Context& ctx,
            float* out,            // [m, out_stride]
            int64_t out_stride,
            const float* x,        // [m, w.k]
            const WeightMatrix& w,
            const float* bias,     // [w.n] or nullptr
            int64_t m);

// Copies selected rows: out[i, :] = in[rows[i], :].
void gather_rows(const Context& ctx,
                 float* out,           // [num_rows, dim]
                 const float* in,      // [*, dim]
                 const int32_t* rows,  // [num_rows]
                 int64_t num_rows, int64_t dim);

// Greedy choice per row: out[r] = argmax_j logits[r, j], the lowest index winning ties.
void argmax(const Context& ctx,
            int32_t* out,          // [num_rows]
            const float* logits,   // [num_rows, vocab]
            int64_t num_rows, int64_t vocab);

// Row-wise log-softmax in place (for logprobs): x[r, :] -= logsumexp(x[r, :]).
void log_softmax(const Context& ctx,
                 float* x,  // [num_rows, vocab]
                 int64_t num_rows, int64_t vocab);

// Threads of the process-wide default CPU pool (Context::pool == nullptr); 0 picks the cores this
// process may run on. Pools of their own (ThreadPool) are sized when made.
void cpu_set_num_threads(int num_threads);
// The instruction-set path the kCpu operators picked at run time, e.g. "avx512-vnni", "avx2", "portable".
const char* cpu_isa_name();

}  // namespace ferry::kernels
