// Fuzzes chat-template parsing and rendering with the input as the template source: parse it
// (HF's Jinja settings), then render it with a fixed chat (system, user, assistant with a tool
// call, tool, user), tools, bos/eos tokens and a fixed clock. Hostile templates must end in a
// Status within the render limits (lowered here so each input stays fast; the -timeout of
// scripts/fuzz catches anything that still runs away).
#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/llm/chat_template/chat_template.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace ferry::llm;

const ChatTemplateInputs& fixed_inputs() {
  static const ChatTemplateInputs inputs = [] {
    ChatTemplateInputs in;
    auto messages = value_from_json(R"([
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": "What is 2+2? <|eot_id|> {{ x }}"},
      {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "call_1",
        "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "4"},
      {"role": "user", "content": [{"type": "text", "text": "Thanks"}, {"type": "image"}]}])");
    FUZZ_CHECK(messages.ok(), "messages: %s", messages.status().message().c_str());
    in.messages = messages.value();
    auto tools = value_from_json(R"([{"type": "function", "function": {"name": "add", "description": "Adds",
      "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}])");
    FUZZ_CHECK(tools.ok(), "tools: %s", tools.status().message().c_str());
    in.tools = tools.value();
    in.add_generation_prompt = true;
    in.bos_token = "<s>";
    in.eos_token = "</s>";
    in.now = 1700000000;
    return in;
  }();
  return inputs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ChatTemplateOptions options;
  options.limits.max_steps = 200'000;
  options.limits.max_output_bytes = 1u << 20;
  auto tmpl = ChatTemplate::parse(std::string(reinterpret_cast<const char*>(data), size), options);
  if (!tmpl.ok()) return 0;
  auto out = tmpl->render(fixed_inputs());
  if (out.ok()) FUZZ_CHECK(out->size() <= options.limits.max_output_bytes, "output of %zu bytes over the limit", out->size());
  return 0;
}
