// Fuzzes chat-template rendering with real templates and fuzzed messages: the templates of
// $FERRY_TESTDATA/chat-templates (llama.cpp's model templates and the tokenizer_config.json ones)
// are parsed once; each input is byte 0 = which template and flags (bit 7: add_generation_prompt),
// then JSON text that becomes the `messages` variable (any JSON, not only a list of dicts, as a
// broken request could send before validation). The JSON side is checked too:
// value_from_json(value_to_json(v)) equals v.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "backend/llm/chat_template/chat_template.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace ferry::llm;
namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<ChatTemplate> load_templates() {
  ChatTemplateOptions options;
  options.limits.max_steps = 200'000;
  options.limits.max_output_bytes = 1u << 20;
  std::vector<fs::path> files;
  const fs::path dir = fs::path(ferry::fuzz::testdata_dir()) / "chat-templates";
  for (const char* sub : {"llamacpp-models-templates", "tokenizer_configs"}) {
    for (const auto& e : fs::directory_iterator(dir / sub)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<ChatTemplate> out;
  for (const auto& f : files) {
    std::string source;
    if (f.extension() == ".jinja") {
      source = read(f);
    } else if (f.extension() == ".json") {
      auto cfg = parse_tokenizer_chat_config(read(f));
      if (!cfg.ok()) continue;
      source = cfg->chat_template;
    } else {
      continue;
    }
    auto t = ChatTemplate::parse(source, options);
    if (t.ok()) out.push_back(std::move(t).value());
  }
  FUZZ_CHECK(out.size() >= 10, "only %zu chat templates under %s", out.size(), dir.c_str());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<ChatTemplate> templates = load_templates();
  if (size == 0) return 0;
  auto messages = value_from_json(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  if (!messages.ok()) return 0;

  auto text = value_to_json(messages.value());
  FUZZ_CHECK(text.ok(), "value_to_json failed on parsed JSON: %s", text.status().message().c_str());
  auto again = value_from_json(text.value());
  FUZZ_CHECK(again.ok() && again->equals(messages.value()), "JSON round trip changed the value: %s", text->c_str());

  ChatTemplateInputs in;
  in.messages = messages.value();
  in.add_generation_prompt = data[0] & 0x80;
  in.bos_token = "<|begin_of_text|>";
  in.eos_token = "<|eot_id|>";
  in.now = 1700000000;
  (void)templates[(data[0] & 0x7f) % templates.size()].render(in);
  return 0;
}
