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
  kernels::RopeParams rope;       // rope_theta and rope_scaling
  bool tie_word_embeddings = false;
  // Set by the architecture's configure() (model/architecture.h):
  bool qkv_bias = false;          // Qwen2 always; Llama/Mistral/Qwen3 when attention_bias is true
  bool o_bias = false;            // Llama attention_bias also biases o_proj
  bool qk_norm = false;           // Qwen3
  kernels::DType dtype = kernels::DType::kF32;  // torch_dtype (or "dtype")
  std::optional<int64_t> sliding_window;       // recorded, not applied (see above)
  std::optional<int32_t> bos_token_id;
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
