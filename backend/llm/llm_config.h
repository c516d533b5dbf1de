// LlmConfig: the llm backend's keys in a model's serving config.json (docs/model-config.md).
// Parsed strictly: an unknown key or a bad value is an error naming the key.
//
//   "load_format"       "auto" (safetensors in the version folder) | "dummy" (random weights of the
//                       HF config's shape from "seed"; no weight files)         default "auto"
//   "seed"              seed of the dummy weights                               default 0
//   "max_num_seqs"      sequences decoded together in one step, >= 1            default 16
//   "max_model_len"     context limit in tokens (prompt + generated)            default: the model's
//                                                                               max_position_embeddings
//   "kv_cache_block_size"   tokens per KV block                                 default 16
//   "kv_cache_num_blocks"   KV blocks in the pool (0: sized from kv_cache_memory_bytes)   default 0
//   "kv_cache_memory_bytes" KV pool budget on CPU                               default 268435456
//   "kv_cache_memory_fraction" kind gpu: the KV pools take this fraction (0, 1] of the device
//                       memory free at load after the engines' own (llm_model.cc, gpu_kv_pool_bytes)   default: off
//   "kv_cache_dtype"    "auto" (fp32 on CPU) | "fp32" | "bf16" (2x the blocks) | "int8" (symmetric,
//                       one scale per token and KV head; ~3.8x the blocks at head_dim 64-128)
//                                                                               default "auto"
//   "weight_dtype"      "auto" (the checkpoint's) | "fp32" | "bf16" | "fp16" | "int8" (per output
//                       channel) | "int4" (groups, see weight_group_size)       default "auto"
//   "weight_group_size" int4 group: 32, 64 or 128 input features                default 32
//   "weight_zero_points" int4 groups with zero points (min/max) instead of symmetric   default false
//   "num_threads"       CPU threads of each instance's own pool (0: the process-wide pool, all
//                       cores)                                                  default 0
//   "instance_group"    [{"count": N, "kind": "cpu"|"gpu", "gpus": [ids]}]     default one cpu instance
//   "idle_unload_seconds"   an instance idle this long frees its engine and KV cache (0: never) default 0
//   "enable_prefix_caching" reuse cached KV blocks of equal prompt prefixes     default true
//   "cuda_graphs"       kind gpu: decode steps replay a CUDA graph per batch-size bucket   default true
//   "kv_warmup_prompts" prompts prefilled at load so their prefix blocks start cached   default []
//   "stream_interval"   a streamed response carries up to this many tokens: the first token at once,
//                       then one response per N tokens (and the last)         default 1
//   "max_num_batched_tokens" token budget of one step (>= max_num_seqs)        default 2048
//   "long_prefill_token_threshold"  most prompt tokens of one request per step (0: budget) default 0
//   "scheduling_policy" "fcfs" | "priority" | "shortest_prompt_first"          default "priority"
//   "priority_levels"   number of levels (1..64)                              default 3
//   "default_priority"  ABI priority of requests that give none (0: middle level)   default 0
//   "priority_level_config" [{"queue_timeout_ms", "timeout_action": "reject"|"keep_waiting",
//                             "max_queue_size"}], one per level, highest first    default: none
//   "max_queue_delay_ms" batching window applied only when the instance is idle  default 0
//   "speculative"       {"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_min": a,
//                       "prompt_lookup_max": b, "disable_by_batch_size": n, "min_acceptance_rate": r|"auto"}
//                       or {"method": "draft", "draft_model": "<folder of the repository>",
//                       "num_speculative_tokens": k, ...}: speculative decoding   default: off
//   "tool_call_parser"  how the model writes tool calls (vLLM's names): "auto" (from the chat
//                       template), "none", "llama3_json", "hermes", "mistral"    default "auto"
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/llm/engine/gpu_engine.h"
#include "backend/llm/model/weight_loader.h"
#include "backend/llm/scheduler/scheduler_config.h"
#include "backend/llm/speculative/speculative_config.h"
#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

struct LlmConfig {
  bool dummy_weights = false;
  uint64_t seed = 0;
  int32_t max_num_seqs = 16;
  int64_t max_model_len = 0;  // 0: the model's max_position_embeddings
  int32_t kv_cache_block_size = 16;
  int64_t kv_cache_num_blocks = 0;
  int64_t kv_cache_memory_bytes = int64_t{256} << 20;
  double kv_cache_memory_fraction = 0.0;  // 0: off (kv_cache_memory_bytes / kv_cache_num_blocks)
  kernels::KvCacheDType kv_cache_dtype = kernels::KvCacheDType::kF32;  // "auto" on CPU
  WeightLoadOptions weights;
  int32_t num_threads = 0;
  int32_t num_instances = 1;
  bool gpu = false;                // instance_group kind gpu
  std::vector<int32_t> gpu_ids;
  int64_t idle_unload_seconds = 0;
  bool enable_prefix_caching = true;
  bool cuda_graphs = true;         // kind gpu: decode steps replay CUDA graphs
  std::vector<std::string> kv_warmup_prompts;
  int32_t stream_interval = 1;
  std::string tool_call_parser = "auto";
  SchedulerConfig scheduler;       // max_num_seqs lives here too (scheduler.max_num_seqs)
  SpeculativeConfig speculative;

  static Result<LlmConfig> parse(const std::string& json);
};

// The engine options of instance `instance` of a kind gpu group: device gpus[instance % count]
// (device 0 when gpus is empty), the weight dtype, and the scheduler's per-step limits.
GpuEngineOptions gpu_engine_options(const LlmConfig& config, int instance);
// The same for the draft model of speculative method "draft" on instance `instance`: the target's
// device and batch limits, the draft's own weight format (`draft_load`).
GpuEngineOptions draft_gpu_engine_options(const LlmConfig& config, const WeightLoadOptions& draft_load, int instance);

// The tool-call format a model's metadata declares: `configured` ("tool_call_parser") unless it is
// "auto", in which case the chat template's markers decide (vLLM's parser names): <tool_call> is
// Qwen2.5 / Qwen3 / Hermes ("hermes"), [TOOL_CALLS] Mistral ("mistral"), <|python_tag|> or the
// ipython role Llama 3.1-3.3 ("llama3_json"). "" for "none" or no marker.
std::string resolve_tool_call_parser(const std::string& configured, const std::string& chat_template);

}  // namespace ferry::llm
