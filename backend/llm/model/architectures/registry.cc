// The list of every architecture ferry runs. A new architecture adds its table here.
#include <span>

#include "backend/llm/model/architectures/architectures.h"

namespace ferry::llm {
namespace {

constexpr std::span<const ArchitectureInfo> kTables[] = {
    kLlamaArchitectures,
    kPhi3Architectures,
    kGemmaArchitectures,
};

}  // namespace

const ArchitectureInfo* find_architecture(std::string_view name) {
  for (auto table : kTables)
    for (const ArchitectureInfo& a : table)
      if (name == a.name) return &a;
  return nullptr;
}

std::string supported_architectures() {
  std::string out;
  for (auto table : kTables) {
    for (const ArchitectureInfo& a : table) {
      if (!out.empty()) out += ", ";
      out += a.name;
    }
  }
  return out;
}

Result<std::shared_ptr<const CausalLM>> load_causal_lm(const ModelConfig& config, const ModelWeights& weights,
                                                       const WeightLoadOptions& options) {
  const ArchitectureInfo* arch = find_architecture(config.architecture_name);
  if (arch == nullptr) return Status::Unimplemented("architecture '" + config.architecture_name + "' is not supported");
  try {
    WeightLoader loader(weights, options);
    auto model = arch->create(config, loader);
    if (!model.ok()) return model.status();
    loader.arena()->release_converted();
    model.value()->set_weight_format(loader.format());
    if (!loader.arena()->fallbacks().empty()) {
      model.value()->set_load_note("int4 matrices kept in int8 (input features not a multiple of 32): " +
                                   loader.arena()->fallbacks());
    }
    return std::shared_ptr<const CausalLM>(std::move(model).value());
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("not enough memory for the weights of " + config.architecture_name);
  }
}

}  // namespace ferry::llm
