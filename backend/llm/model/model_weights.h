// ModelWeights: the checked set of tensors a Llama-family model needs, from safetensors or from a
// seeded `dummy` generator.
//
// Design: loading first builds a *plan* -- every expected tensor's HF name and shape, derived from
// the ModelConfig alone. For the safetensors format each planned tensor is then matched against the
// mmapped files (present, supported dtype, exact shape; all failures name the tensor) and exposed
// as a TensorView into the mapping (zero copy). For the dummy format nothing is allocated at load:
// a planned tensor's values are produced on demand by read_f32(), deterministically from (seed,
// tensor name), so an 8B-shaped model "loads" in microseconds with a few KB of memory and only an
// engine that asks for the values pays for them.
//
// Thread-safety: immutable after load; read_f32() and view() may be called concurrently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/llm/model/model_config.h"
#include "backend/llm/model/quantized_checkpoint.h"
#include "backend/llm/model/safetensors.h"

namespace ferry::llm {

enum class LoadFormat { kSafetensors, kDummy };

struct WeightSpec {
  std::string name;            // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // e.g. [num_heads * head_dim, hidden_size]
  int64_t numel() const;
};

// The HF tensor names of layer `layer` (e.g. layer_tensor_name(3, "mlp.up_proj.weight")).
std::string layer_tensor_name(int64_t layer, const std::string& suffix);

// Every tensor the configured architecture reads, with its shape. `lm_head.weight` is absent when
// tie_word_embeddings is set (the engine uses model.embed_tokens.weight).
std::vector<WeightSpec> plan_weights(const ModelConfig& config);

class ModelWeights {
 public:
  // Opens the safetensors of `model_dir` and checks the plan against them.
  static Result<ModelWeights> load_safetensors(const ModelConfig& config, const std::filesystem::path& model_dir);
  // Checks the plan against an already opened store (tests; unusual layouts).
  static Result<ModelWeights> from_store(const ModelConfig& config, std::shared_ptr<const TensorStore> store);
  // Random weights of the configured shape; no memory is allocated until read_f32().
  static ModelWeights dummy(const ModelConfig& config, uint64_t seed);

  LoadFormat format() const { return format_; }
  // The dtype dummy weights stand for (the HF config's torch_dtype); kF32 for safetensors.
  kernels::DType dummy_dtype() const { return dummy_dtype_; }
  // The checkpoint's quantization_config (method kNone for float checkpoints).
  const QuantizationConfig& quantization() const { return quantization_; }
  const std::vector<WeightSpec>& specs() const { return specs_; }
  const WeightSpec* spec(const std::string& name) const;
  int64_t num_parameters() const;

  // The mapped tensor (safetensors format only; nullptr for dummy or unknown names, and for
  // matrices a GPTQ/AWQ checkpoint stores quantized).
  const TensorView* view(const std::string& name) const;
  // The quantized form of a planned matrix in a GPTQ/AWQ checkpoint; nullptr when stored in float.
  const QuantizedTensor* quantized(const std::string& name) const;

  // Writes the tensor's values as fp32 into dst[numel] (converting bf16/fp16, dequantizing GPTQ/AWQ,
  // or generating dummy values). NotFound for a name that is not in the plan.
  Status read_f32(const std::string& name, float* dst) const;

 private:
  LoadFormat format_ = LoadFormat::kDummy;
  uint64_t seed_ = 0;
  kernels::DType dummy_dtype_ = kernels::DType::kF32;
  QuantizationConfig quantization_;
  std::vector<WeightSpec> specs_;
  std::shared_ptr<const TensorStore> store_;  // safetensors only
  std::map<std::string, QuantizedTensor> quantized_;  // GPTQ/AWQ matrices by planned name
};

}  // namespace ferry::llm
