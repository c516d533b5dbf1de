// Where the reference data (../shared/testdata) is: FERRY_TESTDATA from the environment, else the
// directory CMake was configured with (FERRY_TESTDATA_DEFAULT_DIR); empty when neither is set.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "backend/llm/model/model_config.h"
#include "backend/llm/model/model_weights.h"

namespace ferry::llm {

inline std::filesystem::path testdata() {
  const char* root = std::getenv("FERRY_TESTDATA");
  if (root != nullptr && *root != '\0') return root;
#ifdef FERRY_TESTDATA_DEFAULT_DIR
  return FERRY_TESTDATA_DEFAULT_DIR;
#else
  return {};
#endif
}

struct LoadedModel {
  ModelConfig config;
  ModelWeights weights;
};

// The trained stories260K checkpoint (testdata()/stories260K-hf-format.derived), or nullopt with
// `*why` saying what is missing (tests skip with it).
inline std::optional<LoadedModel> load_stories(std::string* why) {
  const auto dir = testdata() / "stories260K-hf-format.derived";
  if (testdata().empty() || !std::filesystem::exists(dir / "model.safetensors")) {
    *why = "stories260K-hf-format.derived not found (FERRY_TESTDATA=" + testdata().string() + ")";
    return std::nullopt;
  }
  auto config = load_model_config(dir);
  FERRY_CHECK(config.ok());
  auto weights = ModelWeights::load_safetensors(config.value(), dir);
  FERRY_CHECK(weights.ok());
  return LoadedModel{config.value(), std::move(weights).value()};
}

}  // namespace ferry::llm
