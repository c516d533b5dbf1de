// The endpoints that reach the LLM backend agree: KServe generate accepts and refuses the same chat
// messages and seeds as /v1/chat/completions; /v1 lists and serves only models that speak the LLM
// protocol (echo gets a clear error, not an empty completion); legacy logprobs give N distinct
// alternatives even when several decode to the same text; prompts far over the context window are
// refused before they cost a full tokenization.
#include <gtest/gtest.h>

#include <filesystem>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
namespace fs = std::filesystem;

class EndpointAgreement : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    fs::copy(fs::path(default_repository()) / "tiny-llama", repo_->path() + "/tiny-llama", fs::copy_options::recursive);
    server_ = ServerProcess::start(repo_->path()).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
  }
  static TempDir* repo_;
  static ServerProcess* server_;
  std::unique_ptr<HttpClient> http_;
};
TempDir* EndpointAgreement::repo_ = nullptr;
ServerProcess* EndpointAgreement::server_ = nullptr;

TEST_F(EndpointAgreement, GenerateAndChatAcceptAndRefuseTheSameMessagesAndSeeds) {
  struct Case {
    const char* messages;
    const char* seed;  // JSON, or null for none
    bool ok;
  } cases[] = {
      {R"([{"role":"user","content":"hi"}])", nullptr, true},
      {R"([{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}])", nullptr,
       true},
      {R"([{"role":"user","content":"hi"}])", "-5", true},
      {R"([{"role":"user","content":"hi"}])", "18446744073709551615", true},
      {R"([{"role":"wizard","content":"hi"}])", nullptr, false},
      {R"([{"role":"user","content":5}])", nullptr, false},
      {R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}])", nullptr, false},
      {R"([{"role":"assistant","content":null,"tool_calls":[{"id":"1"}]}])", nullptr, false},
      {R"([{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function",
          "function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","content":"ok"}])",
       nullptr, true},
      {R"([{"role":"user","content":"hi","tool_calls":[{"id":"1","type":"function","function":{"name":"f"}}]}])", nullptr,
       false},
      {R"([])", nullptr, false},
      {R"([{"role":"user","content":"hi"}])", "1.5", false},
      {R"([{"role":"user","content":"hi"}])", "\"7\"", false},
      {R"([{"role":"user","content":"hi"}])", "true", false},
  };
  for (const auto& c : cases) {
    const std::string seed = c.seed ? std::string(R"(,"seed":)") + c.seed : "";
    const std::string chat_body =
        std::string(R"({"model":"tiny-llama","max_tokens":2,"messages":)") + c.messages + seed + "}";
    const std::string generate_body = std::string(R"({"max_tokens":2,"messages":)") + c.messages + seed + "}";
    auto chat = http_->post("/v1/chat/completions", chat_body);
    auto generate = http_->post("/v2/models/tiny-llama/generate", generate_body);
    SCOPED_TRACE(chat_body);
    EXPECT_EQ(chat.status, c.ok ? 200 : 400) << chat.body;
    EXPECT_EQ(generate.status, c.ok ? 200 : 400) << generate.body;
    if (!c.ok) {
      // The same words on both: one validation.
      EXPECT_EQ(parse(chat.body)["error"]["message"].asString(), parse(generate.body)["error"].asString());
    }
  }
}

TEST_F(EndpointAgreement, V1ServesOnlyLanguageModels) {
  auto models = parse(http_->get("/v1/models").body);
  ASSERT_EQ(models["data"].size(), 1u) << dump(models);
  EXPECT_EQ(models["data"][0]["id"].asString(), "tiny-llama");
  auto one = http_->get("/v1/models/echo");
  EXPECT_EQ(one.status, 404) << one.body;
  const std::pair<const char*, const char*> requests[] = {
      {"/v1/completions", R"({"model":"echo","prompt":"hi"})"},
      {"/v1/chat/completions", R"({"model":"echo","messages":[{"role":"user","content":"hi"}]})"},
      {"/tokenize", R"({"model":"echo","prompt":"hi"})"},
  };
  for (const auto& [path, body] : requests) {
    auto r = http_->post(path, body);
    EXPECT_EQ(r.status, 400) << path << " " << r.body;
    EXPECT_NE(parse(r.body)["error"]["message"].asString().find("not a language model"), std::string::npos) << r.body;
  }
  // The echo model itself is fine on its own endpoints.
  EXPECT_EQ(http_->post("/v2/models/echo/infer", infer_body("x")).status, 200);
}

TEST_F(EndpointAgreement, LegacyLogprobsKeepNDistinctAlternatives) {
  // tiny-llama's vocabulary is mostly single bytes: among its 20 most likely tokens several are
  // halves of UTF-8 characters, which all read "\ufffd".
  auto r = http_->post("/v1/completions",
                       R"({"model":"tiny-llama","prompt":"The ferry","max_tokens":8,"logprobs":20,"temperature":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value body = parse(r.body);
  const Json::Value& top = body["choices"][0]["logprobs"]["top_logprobs"];
  ASSERT_EQ(top.size(), 8u) << r.body;
  int with_bytes = 0;
  for (const auto& t : top) {
    EXPECT_GE(t.size(), 20u) << dump(t);
    for (const auto& key : t.getMemberNames()) with_bytes += key.rfind("token_id:", 0) == 0;
  }
  EXPECT_GT(with_bytes, 0) << "the case this test is about did not come up: " << r.body;
}

// A prompt far over the context window is refused without being tokenized in full: over 64 bytes
// per token of the window before tokenizing, under that once the count passes the window.
TEST_F(EndpointAgreement, PromptsOverTheWindowAreRefusedEarlyWithContextLengthExceeded) {
  std::string huge;
  while (huge.size() < (1u << 20)) huge += "The ferry carries cars across the water. ";
  auto r = http_->post("/v1/completions", R"({"model":"tiny-llama","max_tokens":4,"prompt":")" + huge + R"("})");
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 300);
  auto e = parse(r.body)["error"];
  EXPECT_EQ(e["code"].asString(), "context_length_exceeded") << r.body.substr(0, 300);
  EXPECT_NE(e["message"].asString().find("more than any prompt that fits the context window of 4096"), std::string::npos)
      << e["message"].asString();

  const std::string long_prompt = huge.substr(0, 200000);  // under 4096 * 64 bytes, far over 4096 tokens
  r = http_->post("/v2/models/tiny-llama/generate", R"({"max_tokens":4,"text_input":")" + long_prompt + R"("})");
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 300);
  EXPECT_NE(parse(r.body)["error"].asString().find("the prompt has at least"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_NE(parse(r.body)["error"].asString().find("context window of 4096"), std::string::npos) << r.body.substr(0, 300);
  // Nothing else changed: a prompt that fits is served.
  EXPECT_EQ(http_->post("/v1/completions", R"({"model":"tiny-llama","max_tokens":2,"prompt":"The ferry"})").status, 200);
}

}  // namespace
}  // namespace ferry::testing
