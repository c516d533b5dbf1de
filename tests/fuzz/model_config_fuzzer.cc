// Fuzzes the model config parsers with the input as a config.json:
//   host::read_model        the serving config of a model folder in a repository (a temporary
//                           repository <scratch>/repository/m/{config.json,1/}),
//   llm::LlmConfig::parse   the llm backend's keys of the same file,
//   llm::parse_model_config a HuggingFace config.json, and apply_generation_config as a
//                           generation_config.json on top of a valid model config.
// Bad input must come back as a Status; crashes, sanitizer reports and exceptions are findings.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "backend/llm/llm_config.h"
#include "backend/llm/model/model_config.h"
#include "host/repository.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr std::string_view kValidModelConfig = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
  "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "eos_token_id": 2})";

const std::filesystem::path& repository() {
  static const std::filesystem::path repo = [] {
    auto r = ferry::fuzz::scratch_dir() / "repository";
    std::filesystem::create_directories(r / "m" / "1");
    std::filesystem::create_directories(r / "m" / "3");
    return r;
  }();
  return repo;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);

  ferry::fuzz::write_file(repository() / "m" / "config.json", text);
  auto spec = ferry::host::read_model(repository().string(), "m");
  if (spec.ok()) {
    FUZZ_CHECK(spec->name == "m" && !spec->backend.empty(), "read_model accepted a spec without a backend");
    for (const auto& v : spec->versions) FUZZ_CHECK(v.version == 1 || v.version == 3, "version %lld", (long long)v.version);
  }

  (void)ferry::llm::LlmConfig::parse(text);

  auto model = ferry::llm::parse_model_config(text);
  if (model.ok()) {
    FUZZ_CHECK(model->num_heads > 0 && model->head_dim > 0 && model->num_kv_heads > 0 && model->hidden_size > 0,
               "parse_model_config accepted non-positive sizes");
    FUZZ_CHECK(model->num_heads % model->num_kv_heads == 0, "heads not a multiple of kv heads");
  }

  static const ferry::llm::ModelConfig base = [] {
    auto c = ferry::llm::parse_model_config(kValidModelConfig);
    FUZZ_CHECK(c.ok(), "base config: %s", c.status().message().c_str());
    return c.value();
  }();
  ferry::llm::ModelConfig with_generation = base;
  (void)ferry::llm::apply_generation_config(text, &with_generation);
  return 0;
}
