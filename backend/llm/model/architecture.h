// CausalLM and the architecture registry: one file per model architecture (architectures/*.cc),
// each a device-neutral forward pass written over the operators of kernels/kernels.h.
//
// An architecture says three things about a HuggingFace model type (config.json `architectures[0]`):
//   configure  the architecture's own config.json keys, into ModelConfig (biases, norms, activation,
//              rope variant, soft-caps, sliding windows);
//   plan       every checkpoint tensor it reads, with its shape (checked against the safetensors);
//   create     a CausalLM that loads its weights through a WeightLoader (in the configured weight
//              format) and runs the forward pass.
// Adding an architecture is one file in architectures/ and one line in architectures/registry.cc
// (docs/engine.md walks through it).
//
// A loaded CausalLM is immutable and shared by every engine instance of the model: forward() is
// const and keeps all its scratch in the caller's Workspace, so instances run it concurrently.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <json/json.h>

#include "backend/llm/model/layers.h"
#include "backend/llm/model/model_config.h"
#include "backend/llm/model/weight_loader.h"
#include "common/status.h"

namespace ferry::llm {

class CausalLM {
 public:
  virtual ~CausalLM() = default;

  const ModelConfig& config() const { return config_; }

  // Runs every layer over the step's tokens and leaves the final-normed hidden states of all
  // tokens in ws.hidden() [num_tokens, hidden_size]. The KV of the step's tokens is written to
  // `kv` first. Inputs were validated by the engine.
  virtual void forward(const kernels::Context& ctx, const StepMetadata& meta, const KvCacheView& kv,
                       Workspace& ws) const = 0;

  // Logits of `num_rows` final-normed hidden rows: out[num_rows, vocab] (lm_head, then any
  // final soft-capping the architecture applies).
  virtual void logits(const kernels::Context& ctx, const float* hidden, int64_t num_rows, float* out) const = 0;

  // Weight bytes this model holds in its own buffers plus the mapped ones it reads in place.
  virtual int64_t weight_bytes() const = 0;
  // The format its linear layers were loaded in (WeightLoader::format()).
  kernels::WeightFormat weight_format() const { return weight_format_; }
  void set_weight_format(kernels::WeightFormat f) { weight_format_ = f; }
  // What the load log should say about the format (e.g. matrices that fell back to int8).
  const std::string& load_note() const { return load_note_; }
  void set_load_note(std::string note) { load_note_ = std::move(note); }

 protected:
  explicit CausalLM(const ModelConfig& config) : config_(config) {}
  ModelConfig config_;
  kernels::WeightFormat weight_format_ = kernels::WeightFormat::kF32;
  std::string load_note_;
};

struct ArchitectureInfo {
  const char* name;  // config.json architectures[0], e.g. "LlamaForCausalLM"
  // Reads the architecture's own keys from the parsed config.json into *config (the common keys
  // are already there). Errors name the key.
  Status (*configure)(const Json::Value& root, ModelConfig* config);
  // Every checkpoint tensor the architecture reads, with its shape.
  std::vector<WeightSpec> (*plan)(const ModelConfig& config);
  // Builds the model, loading every planned tensor through `loader`.
  Result<std::unique_ptr<CausalLM>> (*create)(const ModelConfig& config, WeightLoader& loader);
};

// nullptr when no registered architecture has this name.
const ArchitectureInfo* find_architecture(std::string_view name);
// "LlamaForCausalLM, MistralForCausalLM, ..." for error messages.
std::string supported_architectures();

// Loads a model: its weights in `options`' format, through its architecture.
Result<std::shared_ptr<const CausalLM>> load_causal_lm(const ModelConfig& config, const ModelWeights& weights,
                                                       const WeightLoadOptions& options);

}  // namespace ferry::llm
