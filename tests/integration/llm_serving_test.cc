// The llm backend through a real ferry-server: the trained stories260K checkpoint (dropped into
// the repository as a plain HuggingFace folder) must generate exactly llama2.c's golden greedy
// continuations, its logprobs must match the golden logits, streaming must add up to the
// non-streamed answer, cancellation must free the KV blocks, and bad requests get clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class LlmServing : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path model = fs::path(testdata_dir()) / "stories260K-hf-format.derived";
    const fs::path golden = fs::path(testdata_dir()) / "llama2c-stories260K" / "golden_outputs.derived.json";
    if (!fs::exists(model / "model.safetensors") || !fs::exists(golden)) {
      skip_reason_ = "reference data missing: " + model.string() + " or " + golden.string();
      return;
    }
    std::ifstream in(golden);
    std::stringstream ss;
    ss << in.rdbuf();
    golden_ = new Json::Value(parse(ss.str()));
    repo_ = new TempDir();
    fs::copy(model, repo_->path() + "/stories", fs::copy_options::recursive);  // a drop-in HF snapshot
    server_ = ServerProcess::start(repo_->path()).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
    delete golden_;
  }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
  }
  const Json::Value& golden_case(const std::string& name) {
    for (const auto& c : (*golden_)["cases"]) {
      if (c["name"].asString() == name) return c;
    }
    static Json::Value none;
    return none;
  }
  Json::Value backend_stats() {
    return parse(http_->get("/v2/models/stories/stats").body)["model_stats"][0]["backend"];
  }

  static inline std::string skip_reason_;
  static inline Json::Value* golden_ = nullptr;
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  std::unique_ptr<HttpClient> http_;
};

TEST_F(LlmServing, GreedyGenerationEqualsTheGoldenContinuations) {
  for (const char* name : {"bos_only_greedy_200", "prompt_once_upon_a_time_greedy_64", "bos_only_greedy_256_default_steps"}) {
    const Json::Value& c = golden_case(name);
    ASSERT_TRUE(c.isObject()) << name;
    Json::Value body;
    body["input_ids"] = c["prompt_token_ids"];
    body["max_tokens"] = c["generated_token_ids"].size();
    body["temperature"] = 0;
    body["ignore_eos"] = true;
    auto r = http_->post("/v2/models/stories/generate", dump(body));
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = parse(r.body);
    EXPECT_EQ(j["output_ids"], c["generated_token_ids"]) << name;
    EXPECT_EQ(j["usage"]["completion_tokens"].asUInt(), c["generated_token_ids"].size());
    EXPECT_EQ(j["finish_reason"].asString(), "length");
  }
}

TEST_F(LlmServing, TextPromptIsTokenizedWithBosAndDecodes) {
  const Json::Value& c = golden_case("prompt_once_upon_a_time_greedy_64");
  Json::Value body;
  body["text_input"] = c["prompt"];
  body["max_tokens"] = c["generated_token_ids"].size();
  body["temperature"] = 0;
  body["ignore_eos"] = true;
  auto j = parse(http_->post("/v2/models/stories/generate", dump(body)).body);
  EXPECT_EQ(j["output_ids"], c["generated_token_ids"]);
  EXPECT_EQ(j["usage"]["prompt_tokens"].asUInt(), c["prompt_token_ids"].size()) << "BOS + 4 prompt tokens";
  // llama2.c prints the prompt and then the continuation; ours is the continuation alone.
  std::string expected = c["stdout_text"].asString();
  std::string got = j["text_output"].asString();
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(c["prompt"].asString() + got, expected);
}

TEST_F(LlmServing, LogprobsMatchTheGoldenLogits) {
  // Tolerance: 1e-3 on log-probabilities (the engine test checks raw logits to 1e-4).
  const Json::Value& c = golden_case("bos_only_greedy_200");
  Json::Value body;
  body["input_ids"] = c["prompt_token_ids"];
  body["max_tokens"] = 8;
  body["temperature"] = 0;
  body["ignore_eos"] = true;
  body["logprobs"] = 3;
  auto j = parse(http_->post("/v2/models/stories/generate", dump(body)).body);
  ASSERT_TRUE(j["logprobs"].isArray()) << dump(j);
  int checked = 0;
  const int prompt_len = static_cast<int>(c["prompt_token_ids"].size());
  for (const auto& at : c["logits_at_position"]) {
    int k = at["pos"].asInt() - (prompt_len - 1);  // generated token k came from this position
    if (k < 0 || k >= static_cast<int>(j["logprobs"].size())) continue;
    std::vector<double> logits;
    for (const auto& x : at["logits"]) logits.push_back(x.asDouble());
    double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
    for (double x : logits) sum += std::exp(x - mx);
    const Json::Value& lp = j["logprobs"][k];
    int token = lp["token_id"].asInt();
    double expected = logits[token] - mx - std::log(sum);
    EXPECT_NEAR(lp["logprob"].asDouble(), expected, 1e-3) << "position " << at["pos"];
    ASSERT_EQ(lp["top_logprobs"].size(), 3u);
    EXPECT_EQ(lp["top_logprobs"][0]["token_id"].asInt(), token) << "greedy picks the top token";
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no golden logits overlap the generated positions";
}

TEST_F(LlmServing, StreamingDeltasAddUpToTheWholeAnswerOnBothFrontends) {
  std::string body = R"({"text_input":"Once upon a time","max_tokens":40,"temperature":0,"ignore_eos":true})";
  auto whole = parse(http_->post("/v2/models/stories/generate", body).body);
  std::string streamed;
  Json::Value ids(Json::arrayValue);
  std::string finish;
  int events = 0;
  http_->post_stream("/v2/models/stories/generate_stream", body, [&](const std::string& d) {
    ++events;
    auto e = parse(d);
    streamed += e["text_output"].asString();
    if (e["output_ids"].isArray()) for (const auto& x : e["output_ids"]) ids.append(x);
    else ids.append(e["output_ids"]);
    if (e.isMember("finish_reason")) finish = e["finish_reason"].asString();
    return true;
  });
  EXPECT_EQ(streamed, whole["text_output"].asString());
  EXPECT_EQ(ids, whole["output_ids"]);
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(events, 40) << "one event per generated token, not one at the end";

  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once upon a time"]}])");
  Json::Value p = parse(R"({"max_tokens":40,"temperature":0,"ignore_eos":true})");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("z", "stories", in, p, true)).ok());
  Json::Value last;
  auto zmq_text = zmq.receive_text(10000ms, &last);
  ASSERT_TRUE(zmq_text.has_value()) << dump(last);
  EXPECT_EQ(*zmq_text, whole["text_output"].asString());
}

TEST_F(LlmServing, StopStringsAndSeedsBehave) {
  auto whole = parse(http_->post("/v2/models/stories/generate",
                                 R"({"text_input":"Once upon a time","max_tokens":40,"temperature":0})").body);
  std::string text = whole["text_output"].asString();
  ASSERT_NE(text.find("Lily"), std::string::npos) << text;
  auto stopped = parse(http_->post("/v2/models/stories/generate",
                                   R"({"text_input":"Once upon a time","max_tokens":40,"temperature":0,"stop":["Lily"]})").body);
  EXPECT_EQ(stopped["finish_reason"].asString(), "stop");
  EXPECT_EQ(stopped["text_output"].asString(), text.substr(0, text.find("Lily")));
  // TensorRT-LLM's parameter names work on the generate endpoint too.
  auto trt = parse(http_->post("/v2/models/stories/generate",
                               R"({"text_input":"Once upon a time","max_tokens":40,"temperature":0,"stop_words":["Lily"],"runtime_top_k":1})").body);
  EXPECT_EQ(trt["text_output"], stopped["text_output"]);
  std::string sampled = R"({"text_input":"Once","max_tokens":30,"temperature":1.0,"top_p":0.9,"seed":7})";
  auto a = parse(http_->post("/v2/models/stories/generate", sampled).body);
  auto b = parse(http_->post("/v2/models/stories/generate", sampled).body);
  EXPECT_EQ(a["output_ids"], b["output_ids"]) << "same seed, same tokens";
}

TEST_F(LlmServing, BadRequestsGetClearErrorsAndNothingLeaks) {
  struct Case {
    std::string body;
    const char* needle;
  } cases[] = {
      {R"({"text_input":"Once","max_tokens":600})", "context window of 512"},
      {R"({"text_input":"Once","temperature":"hot"})", "'temperature'"},
      {R"({"text_input":"Once","top_p":0})", "'top_p'"},
      {R"({"text_input":"Once","max_tokens":-1})", "'max_tokens'"},
      {R"({"text_input":"Once","stop":[1]})", "'stop'"},
      {R"({"input_ids":[1,99999]})", "outside the vocabulary"},
      {R"({"max_tokens":3})", "exactly one"},
      {R"({"text_input":"Once","messages":[{"role":"user","content":"hi"}]})", "exactly one"},
      {R"({"messages":[{"role":"user","content":"hi"}]})", "no chat template"},
  };
  for (const auto& c : cases) {
    auto r = http_->post("/v2/models/stories/generate", c.body);
    EXPECT_EQ(r.status, 400) << c.body << " -> " << r.body;
    EXPECT_NE(parse(r.body)["error"].asString().find(c.needle), std::string::npos) << c.body << " -> " << r.body;
  }
  EXPECT_EQ(backend_stats()["kv_blocks_used"].asInt(), 0);
}

TEST_F(LlmServing, CancelAndDisconnectFreeTheKvBlocks) {
  int seen = 0;
  http_->post_stream("/v2/models/stories/generate_stream",
                     R"({"text_input":"Once","max_tokens":400,"temperature":0,"ignore_eos":true})",
                     [&](const std::string&) { return ++seen < 3; });
  EXPECT_EQ(seen, 3);
  EXPECT_TRUE(eventually([&] { return backend_stats()["kv_blocks_used"].asInt() == 0 && backend_stats()["running"].asInt() == 0; }, 5000ms))
      << dump(backend_stats());

  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"input_ids","datatype":"INT32","shape":[1],"data":[1]}])");
  Json::Value p = parse(R"({"max_tokens":400,"temperature":0,"ignore_eos":true})");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("c", "stories", in, p, true)).ok());
  ASSERT_TRUE(zmq.receive(10000ms).has_value());
  ASSERT_TRUE(zmq.send(client::ZmqClient::cancel_message("c")).ok());
  Json::Value last;
  while (auto r = zmq.receive(10000ms)) {
    last = *r;
    if (last["final"].asBool()) break;
  }
  EXPECT_EQ(last["error"]["code"].asString(), "CANCELLED") << dump(last);
  EXPECT_TRUE(eventually([&] { return backend_stats()["kv_blocks_used"].asInt() == 0; }, 5000ms));
}

TEST_F(LlmServing, ConcurrentRequestsAreBatchedAndEachGetsItsOwnAnswer) {
  // Greedy answers must not depend on what else is in the batch.
  const Json::Value& c = golden_case("prompt_once_upon_a_time_greedy_64");
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      HttpClient http(server_->http_url());
      Json::Value body;
      body["input_ids"] = c["prompt_token_ids"];
      body["max_tokens"] = 20 + t;  // different lengths: sequences leave the batch at different steps
      body["temperature"] = 0;
      body["ignore_eos"] = true;
      auto j = parse(http.post("/v2/models/stories/generate", dump(body)).body);
      bool ok = j["output_ids"].size() == static_cast<unsigned>(20 + t);
      for (int i = 0; ok && i < 20 + t; ++i) ok = j["output_ids"][i] == c["generated_token_ids"][i];
      if (ok) ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 8);
  EXPECT_EQ(backend_stats()["kv_blocks_used"].asInt(), 0);
}

}  // namespace
}  // namespace ferry::testing
