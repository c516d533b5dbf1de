// ModelConfig: what ferry needs from a HuggingFace model folder's config.json (and its optional
// generation_config.json) to build and run a decoder.
//
// `architectures[0]` must name an architecture of the registry (model/architecture.h); the common
// keys are parsed here, the architecture's own ones by its configure(). Every failure is a Status
// whose message names the file and the key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {


// A pre-quantized checkpoint's `quantization_config` (HF transformers' field names).
struct QuantizationConfig {
  enum class Method { kNone, kGptq, kAwq };
  Method method = Method::kNone;
  int32_t bits = 0;          // 4 (GPTQ, AWQ) or 8 (GPTQ)
  int64_t group_size = 0;    // input features per scale; 0 when the config says -1 (one group per row)
  bool sym = true;           // GPTQ `sym` (informational: zeros are read from qzeros either way)
  bool desc_act = false;     // GPTQ act-order: accepted only when g_idx turns out to be trivial
  bool gptq_v2 = false;      // checkpoint_format "gptq_v2": zeros stored as is (v1 stores zero - 1)
};

struct ModelConfig {
  std::string architecture_name;  // e.g. "LlamaForCausalLM": the key into the architecture registry
  std::string hidden_act;         // hidden_act (or hidden_activation); the architecture checks it
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;         // num_hidden_layers
  int64_t num_heads = 0;          // num_attention_heads
  int64_t num_kv_heads = 0;       // num_key_value_heads (defaults to num_heads)
  int64_t head_dim = 0;           // head_dim key, else hidden_size / num_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  kernels::RopeParams rope;       // rope_theta and rope_scaling (default, linear, llama3)
  // partial_rotary_factor * head_dim: RoPE turns the first rotary_dim values of each head (pairs
  // (i, i + rotary_dim / 2)) and leaves the rest. head_dim when the key is absent.
  int64_t rotary_dim = 0;
  // rope_scaling type "longrope" (alias "su"; Phi-3 / Phi-3.5): per-frequency divisors of the
  // default inverse frequencies, which kernels::RopeParams (a plain struct) cannot hold. `rope`
  // then keeps theta only; the architecture builds its inverse frequencies from these.
  struct LongRope {
    std::vector<float> short_factor;  // [rotary_dim / 2]
    std::vector<float> long_factor;   // [rotary_dim / 2]
    int64_t original_max_position_embeddings = 0;  // rope_scaling's, else the top-level key, else max_position_embeddings
    float attention_factor = 0.0f;    // rope_scaling.attention_factor; 0 when absent (derived by the architecture)
  };
  std::optional<LongRope> longrope;
  bool tie_word_embeddings = false;
  // Set by the architecture's configure() (model/architecture.h):
  bool qkv_bias = false;          // Qwen2 always; Llama/Mistral/Qwen3 when attention_bias is true
  bool o_bias = false;            // Llama attention_bias also biases o_proj
  bool qk_norm = false;           // Qwen3
  kernels::DType dtype = kernels::DType::kF32;  // torch_dtype (or "dtype")
  std::optional<int64_t> sliding_window;       // the config's key; which layers use it: layer_windows
  // Set by the architecture's configure() for the attention of each layer:
  std::vector<int64_t> layer_windows;  // [num_layers]: keys a query sees in layer l (0 = all), or empty = all everywhere
  float attention_scale = 0.0f;        // q.k multiplier; 0 = 1 / sqrt(head_dim) (Gemma: query_pre_attn_scalar^-0.5)
  float attn_logit_softcap = 0.0f;     // 0 = none (Gemma 2: attn_logit_softcapping)
  float final_logit_softcap = 0.0f;    // 0 = none (Gemma 2: final_logit_softcapping)
  std::optional<kernels::RopeParams> local_rope;  // the sliding layers' RoPE when it differs (Gemma 3)
  std::optional<int32_t> bos_token_id;
  QuantizationConfig quantization;              // kNone for float checkpoints
  std::vector<int32_t> eos_token_ids;           // config.json, replaced by generation_config.json's

  int64_t q_size() const { return num_heads * head_dim; }
  int64_t kv_size() const { return num_kv_heads * head_dim; }
};

// Parses the text of an HF config.json. Unsupported architecture, missing or ill-typed keys and
// inconsistent sizes are InvalidArgument/Unimplemented naming the key.
Result<ModelConfig> parse_model_config(std::string_view json_text);

// Applies the text of a generation_config.json: eos_token_id (int or list) replaces the model's
// eos ids, bos_token_id replaces bos. Other keys (sampling defaults) are ignored here.
Status apply_generation_config(std::string_view json_text, ModelConfig* config);

// Reads <model_dir>/config.json and, when present, <model_dir>/generation_config.json.
Result<ModelConfig> load_model_config(const std::filesystem::path& model_dir);

// Reads a whole small file (configs, index files) into a string.
Result<std::string> read_text_file(const std::filesystem::path& path);

}  // namespace ferry::llm
