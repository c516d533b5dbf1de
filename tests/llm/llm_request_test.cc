// parse_llm_request (backend/llm/llm_request.h): the LLM protocol's request parameters as the
// backend reads them. Tools and tool calls reach the chat template as HF's apply_chat_template
// passes them (checked with Qwen3's real template and tokenizer, from the shared test data), a
// chat may fill the context window, and min_tokens / logit_bias / prompt_logprobs / max_tokens 0
// are read and checked.
#include "backend/llm/llm_request.h"

#include "backend/llm/llm_config.h"

#include <gtest/gtest.h>
#include <json/json.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/llm_protocol.h"
#include "common/test_paths.h"

namespace ferry::llm {
namespace {

namespace fs = std::filesystem;
namespace proto = llm_protocol;

struct Qwen {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chat_template;
};

// Qwen3's tokenizer and chat template, or null members when the test data is absent.
Qwen load_qwen() {
  Qwen q;
  const fs::path dir = fs::path(testing::testdata_dir()) / "hf-tokenizer-qwen3";
  if (!fs::exists(dir / "tokenizer.json")) return q;
  auto tok = Tokenizer::load(dir);
  EXPECT_TRUE(tok.ok()) << tok.status().to_string();
  if (!tok.ok()) return q;
  q.tokenizer = std::move(tok).value();
  auto tmpl = ChatTemplate::parse(q.tokenizer->chat_template());
  EXPECT_TRUE(tmpl.ok()) << tmpl.status().to_string();
  if (tmpl.ok()) q.chat_template = std::make_unique<ChatTemplate>(std::move(tmpl.value()));
  return q;
}

Result<LlmRequest> parse(const Qwen& q, const std::string& params, int64_t max_model_len = 0) {
  ferry_request r{};
  r.struct_size = sizeof(r);
  r.parameters_json = params.c_str();
  return parse_llm_request(r, *q.tokenizer, q.chat_template.get(), 151936, max_model_len);
}

TEST(LlmRequest, ToolsAndToolCallsReachTheChatTemplate) {
  Qwen q = load_qwen();
  if (!q.chat_template) GTEST_SKIP() << "reference data missing: hf-tokenizer-qwen3";
  const std::string params = R"({"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",
      "parameters":{"type":"object","properties":{"unit":{"enum":["C","F"]},"city":{"type":"string"}}}}}],
      "messages":[{"role":"user","content":"Weather in Paris?"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
          "function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
        {"role":"tool","tool_call_id":"call_1","content":"sunny"}],"max_tokens":4})";
  auto r = parse(q, params);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const std::string prompt = q.tokenizer->decode(r->prompt_ids, false);
  // The tool, as the template writes it with tojson: in HF's order (type, function: name,
  // description, parameters) and the parameters' properties as the request wrote them (unit
  // before city), not in the sorted order of a Json::Value.
  EXPECT_NE(prompt.find("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
                        "\"Weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"unit\": {\"enum\": [\"C\", "
                        "\"F\"]}, \"city\": {\"type\": \"string\"}}}}}\n</tools>"),
            std::string::npos)
      << prompt;
  // The call's arguments (sent as a JSON text) reach the template as an object, as vLLM passes them.
  EXPECT_NE(prompt.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"),
            std::string::npos)
      << prompt;
  EXPECT_NE(prompt.find("<tool_response>\nsunny\n</tool_response>"), std::string::npos) << prompt;

  // Without tools the template's tool section is absent.
  auto plain = parse(q, R"({"messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(q.tokenizer->decode(plain->prompt_ids, false).find("<tools>"), std::string::npos);

  for (const char* bad : {R"({"tools":[{"type":"function"}],"messages":[{"role":"user","content":"x"}]})",
                          R"({"messages":[{"role":"user","content":"x","tool_calls":[]}]})",
                          R"({"messages":[{"role":"assistant","content":"","tool_calls":[{"function":{}}]}]})"}) {
    EXPECT_FALSE(parse(q, bad).ok()) << bad;
  }
}

TEST(LlmRequest, AChatMayFillTheContextWindow) {
  Qwen q = load_qwen();
  if (!q.chat_template) GTEST_SKIP() << "reference data missing: hf-tokenizer-qwen3";
  const std::string chat = R"("messages":[{"role":"user","content":"Hello there"}])";
  auto counted = parse(q, "{" + chat + R"(,"task":"tokenize"})");
  ASSERT_TRUE(counted.ok());
  const int64_t prompt = static_cast<int64_t>(counted->prompt_ids.size());

  auto filled = parse(q, "{" + chat + "," + "\"" + proto::kMaxTokensToWindow + "\":true}", 100);
  ASSERT_TRUE(filled.ok()) << filled.status().to_string();
  EXPECT_EQ(filled->sampling.max_tokens, 100 - prompt);
  auto given = parse(q, "{" + chat + R"(,"max_tokens":7,")" + proto::kMaxTokensToWindow + "\":true}", 100);
  ASSERT_TRUE(given.ok());
  EXPECT_EQ(given->sampling.max_tokens, 7) << "a given max_tokens wins";
  auto plain = parse(q, "{" + chat + "}", 100);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->sampling.max_tokens, 16) << "without the flag, the backend's default";
  auto full = parse(q, "{" + chat + ",\"" + proto::kMaxTokensToWindow + "\":true}", prompt);
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.status().message().find("no room"), std::string::npos) << full.status().to_string();
}

TEST(LlmRequest, MinTokensAndLogitBias) {
  Qwen q = load_qwen();
  if (!q.chat_template) GTEST_SKIP() << "reference data missing: hf-tokenizer-qwen3";
  auto r = parse(q, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":8,"min_tokens":3,
      "logit_bias":{"5":-100,"17":2.5}})");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->sampling.min_tokens, 3);
  auto bias = r->sampling.logit_bias;
  std::sort(bias.begin(), bias.end());
  EXPECT_EQ(bias, (std::vector<std::pair<int32_t, float>>{{5, -100.0f}, {17, 2.5f}}));
  for (const char* bad : {R"("max_tokens":2,"min_tokens":3)", R"("logit_bias":{"x":1})", R"("logit_bias":{"5":101})",
                          R"("logit_bias":[1])", R"("logit_bias":{"999999999":1})"}) {
    auto b = parse(q, std::string(R"({"messages":[{"role":"user","content":"x"}],)") + bad + "}");
    EXPECT_FALSE(b.ok()) << bad;
  }
}

// prompt_logprobs in [0, 20]; max_tokens 0 is a prompt-only request scheduled with one token.
TEST(LlmRequest, PromptLogprobsAndMaxTokensZero) {
  Qwen q = load_qwen();
  if (!q.chat_template) GTEST_SKIP() << "reference data missing: hf-tokenizer-qwen3";
  const std::string chat = R"("messages":[{"role":"user","content":"x"}])";
  auto r = parse(q, "{" + chat + R"(,"max_tokens":0,"prompt_logprobs":3})", 100);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->sampling.num_prompt_logprobs, 3);
  EXPECT_TRUE(r->prompt_only);
  EXPECT_EQ(r->sampling.max_tokens, 1);
  auto plain = parse(q, "{" + chat + R"(,"max_tokens":2})");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->sampling.num_prompt_logprobs, -1);
  EXPECT_FALSE(plain->prompt_only);
  for (const char* bad : {R"("prompt_logprobs":-1)", R"("prompt_logprobs":21)", R"("prompt_logprobs":"2")",
                          R"("max_tokens":-1)"}) {
    auto b = parse(q, "{" + chat + "," + bad + "}");
    ASSERT_FALSE(b.ok()) << bad;
    const std::string field = std::string(bad).substr(1, std::string(bad).find('"', 1) - 1);
    EXPECT_NE(b.status().message().find("'" + field + "'"), std::string::npos) << b.status().to_string();
  }
}

// The format a model's metadata declares: the config key, or the template's markers ("auto"),
// checked on the real templates of the shared test data where they are present.
TEST(LlmConfig, StreamIntervalDefaultsToOneAndIsBounded) {
  auto plain = LlmConfig::parse("{}");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain.value().stream_interval, 1);
  auto four = LlmConfig::parse(R"({"stream_interval":4})");
  ASSERT_TRUE(four.ok()) << four.status().to_string();
  EXPECT_EQ(four.value().stream_interval, 4);
  for (const char* bad : {R"({"stream_interval":0})", R"({"stream_interval":"2"})", R"({"stream_interval":2000})"}) {
    auto r = LlmConfig::parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("stream_interval"), std::string::npos) << r.status().message();
  }
}

// cuda_graphs reaches the gpu engines' options (CudaEngineOptions::cuda_graphs), on by default.
TEST(LlmConfig, CudaGraphsDefaultsToOnAndReachesTheGpuEngineOptions) {
  auto plain = LlmConfig::parse("{}");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(gpu_engine_options(plain.value(), 0).cuda_graphs);
  auto off = LlmConfig::parse(R"({"cuda_graphs":false})");
  ASSERT_TRUE(off.ok()) << off.status().to_string();
  EXPECT_FALSE(gpu_engine_options(off.value(), 0).cuda_graphs);
  auto bad = LlmConfig::parse(R"({"cuda_graphs":"no"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'cuda_graphs'"), std::string::npos) << bad.status().message();
}

TEST(LlmConfig, ToolCallParserFromConfigOrTemplate) {
  EXPECT_EQ(resolve_tool_call_parser("mistral", "<tool_call>"), "mistral") << "the config key wins";
  EXPECT_EQ(resolve_tool_call_parser("none", "<tool_call>"), "");
  EXPECT_EQ(resolve_tool_call_parser("auto", "{{ messages }}"), "");
  auto config = LlmConfig::parse(R"({"tool_call_parser":"hermes"})");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->tool_call_parser, "hermes");
  auto bad = LlmConfig::parse(R"({"tool_call_parser":"xml"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'tool_call_parser'"), std::string::npos);

  const fs::path dir = fs::path(testing::testdata_dir()) / "chat-templates" / "llamacpp-models-templates";
  if (!fs::exists(dir)) GTEST_SKIP() << "reference data missing: " << dir.string();
  const std::pair<const char*, const char*> models[] = {
      {"Qwen-Qwen2.5-7B-Instruct.jinja", "hermes"},
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "hermes"},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3_json"},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3_json"},
      {"meta-llama-Llama-3.3-70B-Instruct.jinja", "llama3_json"},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral"},
      {"google-gemma-2-2b-it.jinja", ""},
  };
  for (const auto& [file, want] : models) {
    std::ifstream in(dir / file, std::ios::binary);
    ASSERT_TRUE(in) << file;
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_EQ(resolve_tool_call_parser("auto", text.str()), want) << file;
  }
}

}  // namespace
}  // namespace ferry::llm
