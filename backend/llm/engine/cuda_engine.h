// CudaEngine: the Engine of a GPU instance, for the Llama family (LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM) with fp32, bf16, fp16, int8 or int4 weights
// (quantized at load, or a GPTQ/AWQ checkpoint's codes as stored).
//
// Unlike CpuEngine it does not run the shared CausalLM: that forward pass reads host memory
// through kernels.h, while this engine keeps everything on the device and calls the launchers of
// kernels/cuda directly (the same operator order as architectures/llama.cc, with q|k|v and gate|up
// fused into one GEMM each). What it holds, all allocated when it is created or when its KV cache
// is allocated, so that a step allocates no device memory (on the host, only the first step of a
// new token count builds a cuBLASLt plan, and host-side vectors grow to their largest step):
//   weights      uploaded once from the checkpoint (ModelWeights) in the weight dtype: per layer
//                the fused [q+2kv, hidden] and [2*inter, hidden] matrices, o and down, fp32 norms
//                and biases; the embedding table in the weight dtype (the lm_head when tied).
//                int8 / int4: the matrices (the lm_head too, tied or not) exactly as CpuEngine's
//                WeightLoader builds them (int8 codes + a scale per row; packed int4 codes + scales
//                and zeros per group), on the device; the embedding table in the dtype CpuEngine
//                reads it in;
//   activations  fp32 buffers for `max_num_tokens` tokens (plus a 16-bit copy of a GEMM's input
//                when the weights are 16-bit or quantized: cuBLASLt multiplies two operands of one
//                type; quantized ones also a bf16 copy of the largest layer matrix, for steps of more rows than
//                quantized_gemv_max_rows: kernels/cuda/quantized_gemm.h);
//   metadata     device copies of the step's token ids, positions, slots, query starts, context
//                lengths and logit rows (packed in one buffer) and block tables, staged in
//                page-locked host memory: two host-to-device copies per step; the device-sampled
//                tokens come back into page-locked memory too, and the device sampling entries go
//                out from it (max_num_seqs of each);
//   host logits  page-locked [max_num_seqs, vocab] fp32 for the rows sampled on the host (skipped,
//                and pageable memory used, when the driver refuses that much);
//   workspaces   the split-K decode attention's (for max_num_seqs sequences of up to
//                decode_context_tokens) and cuBLASLt's;
//   KV cache     fp32, bf16 or int8 (+ scales) per layer, sized from KvCacheOptions.
// Linear layers run on cuda::CublasGemm (fp32 accumulation); int8 / int4 ones on cuda::int8_matmul /
// int4_matmul. Attention uses the decode kernel when
// every sequence has one query token and its workspace suffices, else the prefill kernel.
//
// CUDA graphs (options.cuda_graphs): a decode step (one query token per sequence, contexts within
// decode_context_tokens) is padded to its batch-size bucket and replays that bucket's graph of the
// forward pass and the logits (cuda_graphs.h), captured at the bucket's first decode step; its
// metadata is copied into the buffers the graph reads before each replay. Other steps launch their
// kernels. The engine's stream is non-blocking, so no other thread's legacy-stream work can
// invalidate a capture.
//
// Sampling, per sequence. A plain one (no logit_bias, penalties, min_tokens block, allowed-token
// mask, logprobs or drafts) is sampled on the device: greedy or temperature / min_p / top_k / top_p
// by cuda::sample, with the u the engine draws from the sequence's own SamplingRng (the one draw
// Sampler::sample would make), so a seeded request gets the tokens CpuEngine gives it; a step of
// plain greedy sequences only uses the arg max kernel; only token ids come back. Every other
// sequence's logits rows are copied to page-locked memory (max_num_seqs rows, allocated at load;
// pageable memory beyond that or when it was refused) and sampled there by the CPU Sampler
// (sampler.h), exactly as CpuEngine does. return_logits copies all logits rows to the host too.
//
// Refused at creation (Unimplemented, naming what is missing): other architectures, int4 checkpoint
// group sizes the kernels lack, final logit soft-capping, an attention scale other than
// 1/sqrt(head_dim), partial / longrope / local RoPE, an odd head_dim or one over 256 (check_supported).
//
// Which "device": the CUDA runtime this file is built against. In the emulation build
// (FERRY_CUDA_EMULATION) that is the SIMT emulator on the host (docs/cuda.md); nothing of this
// engine has run on a GPU yet.
//
// Each engine holds its own copy of the weights (instances on one device do not share them yet).
//
// Thread-safety: one step at a time (the instance's loop thread). Each engine has its own stream.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/llm/engine/engine.h"
#include "backend/llm/model/model_weights.h"
#include "backend/llm/model/weight_loader.h"
#include "common/status.h"

namespace ferry::llm {

struct CudaEngineOptions {
  int device = 0;
  // kAuto: the checkpoint's torch_dtype (fp32, bf16 or fp16), or a GPTQ/AWQ checkpoint's own
  // precision (4-bit codes as stored, 8-bit as per-row int8); kF32, kBF16, kF16 convert at upload;
  // kInt8 / kInt4 quantize at load exactly as CpuEngine's WeightLoader does (its matrices are the
  // ones uploaded), including an int4 matrix whose input features fit no group kept in int8.
  WeightDType weight_dtype = WeightDType::kAuto;
  int64_t weight_group_size = 32;   // kInt4: 32, 64 or 128 input features per scale
  bool weight_zero_points = false;  // kInt4: asymmetric groups
  int64_t max_num_tokens = 512;  // most tokens one step may carry (activation buffers' rows)
  int64_t max_num_seqs = 64;     // most sequences one step may carry (also logits rows per GEMM)
  // Contexts up to this length decode through the split-K decode kernel (its workspace is sized
  // for it); a longer decode falls back to the prefill kernel. 0: min(max_position_embeddings, 8192).
  int64_t decode_context_tokens = 0;
  // int8 / int4 weights: GEMMs of up to this many rows run on their kernels, larger ones widen the
  // weights to bf16 for cuBLASLt (kernels/cuda/quantized_gemm.h). 0: kQuantizedGemvMaxRows (16). Tests set
  // max_num_tokens to keep every step on the kernel.
  int64_t quantized_gemv_max_rows = 0;
  // Decode steps (every sequence one query token, no drafts, not all_logits, contexts within
  // decode_context_tokens) replay a CUDA graph of the forward pass and the logits, captured at the
  // first decode step of each batch-size bucket (DecodeGraphs: 1, 2, 4, multiples of 8, max_num_seqs)
  // and rebuilt after allocate_kv_cache; the batch is padded to its bucket. false: every step
  // launches its kernels (docs/cuda.md, "CUDA graphs").
  bool cuda_graphs = true;
};

class CudaEngine final : public Engine {
 public:
  // Uploads the model in `weights` to device `options.device` and builds the engine.
  // Unimplemented for what the engine does not run (see above); Internal / ResourceExhausted for a
  // CUDA failure (no device, out of memory).
  static Result<std::unique_ptr<CudaEngine>> create(const ModelConfig& config, const ModelWeights& weights,
                                                    const CudaEngineOptions& options = {});
  // Whether create() would accept this model (Ok, or the Unimplemented it would return). Touches
  // no device.
  static Status check_supported(const ModelConfig& config, const ModelWeights& weights, WeightDType weight_dtype);
  // The device bytes create() and allocate_kv_cache() with blocks of `block_size` tokens would
  // allocate besides the KV pool itself: weights, activations, workspaces (cuBLASLt's included),
  // block tables. Computed without a device and without reading tensor values; what create()
  // would refuse is refused the same way.
  static Result<int64_t> planned_device_bytes(const ModelConfig& config, const ModelWeights& weights,
                                              const CudaEngineOptions& options, int64_t block_size);

  ~CudaEngine() override;
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  const ModelConfig& config() const override;
  int64_t kv_block_bytes(int64_t block_size, kernels::KvCacheDType dtype) const override;
  Result<int64_t> allocate_kv_cache(const KvCacheOptions& options) override;
  int64_t num_kv_blocks() const override;
  // Fails with InvalidArgument (nothing computed) also for a batch of more than max_num_tokens
  // tokens or max_num_seqs sequences.
  Status step(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, bool return_logits,
              StepOutput* out) override;

  kernels::WeightFormat weight_format() const;
  // Device memory this engine holds: weights, activations, workspaces, KV cache.
  int64_t device_bytes() const;
  // The part of it that holds the weights (int8: codes + scales; norms, biases, embedding, RoPE table).
  int64_t weight_bytes() const;
  // Sequences sampled on the device (cuda::sample, or the arg max kernel when a step is all plain
  // greedy) and on the host (the CPU Sampler: bias, penalties, masks, logprobs, drafts), summed
  // over all steps; one step can add to both.
  int64_t device_sampled_seqs() const;
  int64_t host_sampled_seqs() const;
  // CUDA graphs (options.cuda_graphs): captures since creation (rebuilds after allocate_kv_cache
  // included), decode steps that replayed a graph (the capturing step included), graphs held now.
  int64_t graphs_captured() const;
  int64_t graph_replays() const;
  int64_t graphs_held() const;

 private:
  struct State;
  explicit CudaEngine(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace ferry::llm
