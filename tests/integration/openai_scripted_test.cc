// Tool calling on /v1/chat/completions, the Responses API (/v1/responses) and requests without a
// model, against a real ferry-server.
// The models are served by the scripted_llm test backend (backend/testing/scripted_llm.cc), which
// speaks the LLM protocol with predictable replies: a model's tool-call format comes from its
// metadata, and the host must turn each format into OpenAI tool_calls, stream them as OpenAI does,
// send tool results back through the chat, and constrain tool_choice "required" / named calls.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;

constexpr const char* kTools = R"([{"type":"function","function":{"name":"get_weather",
    "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}])";

void add_scripted(const std::string& repo, const std::string& name, const std::string& format) {
  write_file(repo + "/" + name + "/config.json",
             R"({"backend":"scripted_llm")" + (format.empty() ? std::string() : R"(,"tool_call_parser":")" + format + "\"") + "}");
  write_file(repo + "/" + name + "/1/.keep", "");
}

class ScriptedLlm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_scripted(repo_->path(), "qwen", "hermes");
    add_scripted(repo_->path(), "llama", "llama3_json");
    add_scripted(repo_->path(), "mistral", "mistral");
    add_scripted(repo_->path(), "plain", "");
    server_ = ServerProcess::start(repo_->path(), {"--backend-directory", build_dir() + "/test_backends"}).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
  }
  Json::Value chat(const std::string& body) {
    auto r = http_->post("/v1/chat/completions", body);
    EXPECT_EQ(r.status, 200) << body << " -> " << r.body;
    return parse(r.body);
  }
  // The streamed chunks of a chat, [DONE] left out.
  std::vector<Json::Value> chunks(const std::string& body) {
    std::vector<Json::Value> out;
    bool done = false;
    auto r = http_->post_stream("/v1/chat/completions", body, [&](const std::string& d) {
      if (d == "[DONE]") done = true;
      else out.push_back(parse(d));
      return true;
    });
    EXPECT_EQ(r.status, 200) << body;
    EXPECT_TRUE(done);
    return out;
  }
  static std::string ask(const std::string& model, const std::string& extra = "") {
    return R"({"model":")" + model + R"(","messages":[{"role":"user","content":"Paris"}],"tools":)" + kTools + extra + "}";
  }

  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  std::unique_ptr<HttpClient> http_;
};

TEST_F(ScriptedLlm, EachFormatBecomesToolCallsAndTheResultGoesBack) {
  for (const char* model : {"qwen", "llama", "mistral"}) {
    Json::Value j = chat(ask(model));
    const Json::Value& c = j["choices"][0];
    EXPECT_EQ(c["finish_reason"].asString(), "tool_calls") << model << ": " << dump(j);
    EXPECT_TRUE(c["message"]["content"].isNull()) << model << ": " << dump(j);
    ASSERT_EQ(c["message"]["tool_calls"].size(), 1u) << model << ": " << dump(j);
    const Json::Value& call = c["message"]["tool_calls"][0];
    EXPECT_EQ(call["id"].asString().rfind("call_", 0), 0u);
    EXPECT_EQ(call["type"].asString(), "function");
    EXPECT_EQ(call["function"]["name"].asString(), "get_weather");
    EXPECT_EQ(parse(call["function"]["arguments"].asString())["city"].asString(), "Paris") << model;

    // The round trip: the assistant's call and the tool's answer go back; the reply is text.
    Json::Value assistant = c["message"];
    Json::Value tool;
    tool["role"] = "tool";
    tool["tool_call_id"] = call["id"];
    tool["content"] = "sunny, 21 C";
    Json::Value body = parse(ask(model));
    body["messages"].append(assistant);
    body["messages"].append(tool);
    Json::Value answer = chat(dump(body));
    EXPECT_EQ(answer["choices"][0]["finish_reason"].asString(), "stop") << dump(answer);
    EXPECT_EQ(answer["choices"][0]["message"]["content"].asString(), "The tool said: sunny, 21 C");
    EXPECT_FALSE(answer["choices"][0]["message"].isMember("tool_calls"));
  }
}

TEST_F(ScriptedLlm, StreamedCallsArriveAsArgumentDeltas) {
  for (const char* model : {"qwen", "llama", "mistral"}) {
    std::string content, name, id, arguments, finish;
    int calls_seen = 0;
    for (const Json::Value& chunk : chunks(ask(model, R"(,"stream":true)"))) {
      ASSERT_EQ(chunk["object"].asString(), "chat.completion.chunk");
      const Json::Value& c = chunk["choices"][0];
      const Json::Value& d = c["delta"];
      content += d["content"].asString();
      for (const auto& t : d["tool_calls"]) {
        EXPECT_EQ(t["index"].asInt(), 0);
        if (t.isMember("id")) {
          ++calls_seen;
          id = t["id"].asString();
          name = t["function"]["name"].asString();
        }
        arguments += t["function"]["arguments"].asString();
      }
      if (!c["finish_reason"].isNull()) finish = c["finish_reason"].asString();
    }
    EXPECT_EQ(content, "") << model << ": the call's text is not streamed as content";
    EXPECT_EQ(calls_seen, 1) << model;
    EXPECT_EQ(id.rfind("call_", 0), 0u) << model;
    EXPECT_EQ(name, "get_weather") << model;
    EXPECT_EQ(parse(arguments)["city"].asString(), "Paris") << model << ": " << arguments;
    EXPECT_EQ(finish, "tool_calls") << model;
  }
}

TEST_F(ScriptedLlm, ToolChoiceRequiredNamedAndNone) {
  // required and a named function: the backend is asked for JSON (guided_json) and the reply parses
  // as the call, whatever the model's own format.
  for (const char* choice : {R"("required")", R"({"type":"function","function":{"name":"get_weather"}})"}) {
    for (const char* model : {"qwen", "plain"}) {
      Json::Value j = chat(ask(model, std::string(R"(,"tool_choice":)") + choice));
      const Json::Value& calls = j["choices"][0]["message"]["tool_calls"];
      ASSERT_EQ(calls.size(), 1u) << choice << " " << model << ": " << dump(j);
      EXPECT_EQ(calls[0]["function"]["name"].asString(), "get_weather");
      EXPECT_EQ(parse(calls[0]["function"]["arguments"].asString())["city"].asString(), "Paris");
      EXPECT_EQ(j["choices"][0]["finish_reason"].asString(), "tool_calls");
    }
  }
  // none: the reply is content, even when it looks like a call.
  Json::Value none = chat(ask("qwen", R"(,"tool_choice":"none")"));
  EXPECT_FALSE(none["choices"][0]["message"].isMember("tool_calls")) << dump(none);
  EXPECT_NE(none["choices"][0]["message"]["content"].asString().find("<tool_call>"), std::string::npos);
  EXPECT_EQ(none["choices"][0]["finish_reason"].asString(), "stop");
  // auto on a model without a tool-call format is refused, naming the field.
  auto r = http_->post("/v1/chat/completions", ask("plain"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(parse(r.body)["error"]["param"].asString(), "tool_choice") << r.body;
  // Without tools the reply is plain text.
  Json::Value plain = chat(R"({"model":"qwen","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(plain["choices"][0]["message"]["content"].asString(), "You said: hi");
}

TEST_F(ScriptedLlm, ARequestWithoutModelNeedsExactlyOneLanguageModel) {
  // Four language models here: a 400 that lists them.
  auto r = http_->post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(r.status, 400) << r.body;
  const Json::Value e = parse(r.body)["error"];
  EXPECT_EQ(e["param"].asString(), "model") << r.body;
  for (const char* name : {"qwen", "llama", "mistral", "plain"}) {
    EXPECT_NE(e["message"].asString().find(name), std::string::npos) << r.body;
  }
  // One language model (beside a model of another backend): it serves the request.
  TempDir one;
  add_scripted(one.path(), "only", "hermes");
  write_file(one.path() + "/other/config.json", R"({"backend":"old_minor"})");
  write_file(one.path() + "/other/1/.keep", "");
  auto server = ServerProcess::start(one.path(), {"--backend-directory", build_dir() + "/test_backends"});
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  auto chat = http.post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(parse(chat.body)["model"].asString(), "only");
  auto completion = http.post("/v1/completions", R"({"prompt":"hello"})");
  EXPECT_EQ(completion.status, 200) << completion.body;
  EXPECT_EQ(parse(completion.body)["choices"][0]["text"].asString(), "You said: hello");
}

TEST_F(ScriptedLlm, ResponsesApiAnswersTextWholeAndStreamed) {
  auto r = http_->post("/v1/responses", R"({"model":"qwen","input":"hello","instructions":"Be brief."})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json::Value j = parse(r.body);
  EXPECT_EQ(j["object"].asString(), "response");
  EXPECT_EQ(j["id"].asString().rfind("resp_", 0), 0u);
  EXPECT_EQ(j["status"].asString(), "completed");
  EXPECT_EQ(j["model"].asString(), "qwen");
  EXPECT_EQ(j["instructions"].asString(), "Be brief.");
  ASSERT_EQ(j["output"].size(), 1u) << r.body;
  const Json::Value& item = j["output"][0];
  EXPECT_EQ(item["type"].asString(), "message");
  EXPECT_EQ(item["role"].asString(), "assistant");
  EXPECT_EQ(item["content"][0]["type"].asString(), "output_text");
  EXPECT_EQ(item["content"][0]["text"].asString(), "You said: hello");
  EXPECT_GT(j["usage"]["input_tokens"].asInt(), 0);
  EXPECT_EQ(j["usage"]["total_tokens"].asInt(), j["usage"]["input_tokens"].asInt() + j["usage"]["output_tokens"].asInt());

  // A list of messages, content parts included; max_output_tokens cuts it short: "incomplete".
  auto cut = parse(http_->post("/v1/responses", R"({"model":"qwen","max_output_tokens":2,"input":[
      {"role":"user","content":[{"type":"input_text","text":"a long question"}]}]})").body);
  EXPECT_EQ(cut["status"].asString(), "incomplete") << dump(cut);
  EXPECT_EQ(cut["incomplete_details"]["reason"].asString(), "max_output_tokens");
  EXPECT_EQ(cut["output"][0]["content"][0]["text"].asString(), "You said") << "2 pieces of 4 bytes";

  // Streamed: the events in OpenAI's order; the deltas join to the text of the last event's response.
  std::vector<std::string> types;
  std::string deltas;
  Json::Value last;
  auto s = http_->post_stream("/v1/responses", R"({"model":"qwen","input":"streaming","stream":true})",
                              [&](const std::string& d) {
                                Json::Value e = parse(d);
                                EXPECT_EQ(e["sequence_number"].asUInt(), types.size());
                                types.push_back(e["type"].asString());
                                if (types.back() == "response.output_text.delta") deltas += e["delta"].asString();
                                last = e;
                                return true;
                              });
  EXPECT_EQ(s.status, 200);
  ASSERT_GE(types.size(), 9u);
  const std::vector<std::string> head = {"response.created", "response.in_progress", "response.output_item.added",
                                         "response.content_part.added", "response.output_text.delta"};
  EXPECT_EQ(std::vector<std::string>(types.begin(), types.begin() + 5), head);
  const std::vector<std::string> tail = {"response.output_text.done", "response.content_part.done",
                                         "response.output_item.done", "response.completed"};
  EXPECT_EQ(std::vector<std::string>(types.end() - 4, types.end()), tail);
  EXPECT_EQ(deltas, "You said: streaming");
  EXPECT_EQ(last["response"]["output"][0]["content"][0]["text"].asString(), deltas);
  EXPECT_EQ(last["response"]["status"].asString(), "completed");

  for (const char* bad : {R"({"model":"qwen"})", R"({"model":"qwen","input":"x","previous_response_id":"resp_1"})",
                          R"({"model":"qwen","input":[{"type":"input_image","image_url":"x"}]})"}) {
    auto e = http_->post("/v1/responses", bad);
    EXPECT_EQ(e.status, 400) << bad << " -> " << e.body;
  }
}

// The official openai npm SDK (tests/web/openai_sdk_test.mjs) against this server: a tool call round
// trip and the Responses API, streamed and not. Skips without node or tests/web's node_modules.
TEST_F(ScriptedLlm, OfficialNodeSdk) {
  const std::string web = source_dir() + "/tests/web";
  if (std::system("command -v node >/dev/null 2>&1") != 0) GTEST_SKIP() << "node not installed (scripts/setup installs nodejs)";
  if (!std::filesystem::exists(web + "/node_modules/openai")) {
    GTEST_SKIP() << "the openai package is not installed in tests/web (scripts/setup runs npm ci there)";
  }
  auto [out, rc] = run_command("node '" + web + "/openai_sdk_test.mjs' --url " + server_->http_url() + " --model qwen");
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace ferry::testing
