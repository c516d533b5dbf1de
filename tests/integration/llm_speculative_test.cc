// Speculative decoding (n-gram proposals) through a real ferry-server: greedy answers equal
// llama2.c's golden continuations of stories260K token for token, at batch 1 and 8, with a KV pool
// small enough to preempt and with prefix caching; tiny-llama (dummy weights) answers the same
// with and without speculation; seeded sampling, logprobs, stop tokens and max_tokens are those of
// plain decoding; a request can opt out, and constrained requests do not speculate; drafts are
// proposed and accepted (metrics); no KV block is left in use; and the "draft" method is refused
// with a clear load error.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "client/http_client.h"
#include "tests/host/exposition_parser.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kSpec =
    R"("speculative":{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_min":2,"prompt_lookup_max":4,)"
    R"("disable_by_batch_size":16,"min_acceptance_rate":0})";

class LlmSpeculative : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path stories = fs::path(testdata_dir()) / "stories260K-hf-format.derived";
    const fs::path golden = fs::path(testdata_dir()) / "llama2c-stories260K" / "golden_outputs.derived.json";
    const fs::path tiny = fs::path(default_repository()) / "tiny-llama" / "1";
    if (!fs::exists(stories / "model.safetensors") || !fs::exists(golden)) {
      skip_reason_ = "reference data missing: " + stories.string() + " or " + golden.string();
      return;
    }
    std::ifstream in(golden);
    std::stringstream ss;
    ss << in.rdbuf();
    golden_ = new Json::Value(parse(ss.str()));
    repo_ = new TempDir();
    auto add = [&](const std::string& name, const fs::path& model, const std::string& config) {
      std::error_code ec;
      fs::create_directories(repo_->path() + "/" + name, ec);
      fs::copy(model, repo_->path() + "/" + name + "/1", fs::copy_options::recursive, ec);
      if (ec) setup_error_ = "cannot copy the model: " + ec.message();
      write_file(repo_->path() + "/" + name + "/config.json", config);
    };
    add("stories_plain", stories, R"({"backend":"llm","max_num_seqs":8})");
    add("stories_spec", stories, std::string(R"({"backend":"llm","max_num_seqs":8,)") + kSpec + "}");
    // 40 blocks of 16 tokens: room for ~3 sequences of 200 tokens, so 8 at once must preempt.
    add("stories_spec_small", stories, std::string(R"({"backend":"llm","max_num_seqs":8,"kv_cache_num_blocks":40,)") + kSpec + "}");
    add("tiny_plain", tiny, R"({"backend":"llm","load_format":"dummy","seed":0,"max_num_seqs":8})");
    add("tiny_spec", tiny, std::string(R"({"backend":"llm","load_format":"dummy","seed":0,"max_num_seqs":8,)") + kSpec + "}");
    add("draft_model", stories, R"({"backend":"llm","speculative":{"method":"draft","draft_model":"stories_plain","num_speculative_tokens":4}})");
    server_ = ServerProcess::start(repo_->path()).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
    delete golden_;
  }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
  }
  void TearDown() override {
    if (!skip_reason_.empty() || server_ == nullptr) return;
    for (const char* m : {"stories_plain", "stories_spec", "stories_spec_small", "tiny_plain", "tiny_spec"}) {
      EXPECT_TRUE(eventually([&] { return stats(m)["kv_blocks_used"].asInt() == 0; }, 5000ms))
          << m << " leaks KV blocks: " << dump(stats(m));
      for (const auto& i : stats(m)["instances"]) EXPECT_TRUE(i["consistent"].asBool()) << m << ": " << dump(i);
    }
  }
  Json::Value stats(const std::string& model) {
    HttpClient http(server_->http_url());
    return parse(http.get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
  }
  double metric(const std::string& name, const std::string& model) {
    Exposition e;
    std::string err;
    EXPECT_TRUE(parse_exposition(http_->get("/metrics").body, &e, &err)) << err;
    return e.value(name, {{"model", model}, {"method", "ngram"}});
  }
  const Json::Value& golden_case(const std::string& name) {
    for (const auto& c : (*golden_)["cases"]) {
      if (c["name"].asString() == name) return c;
    }
    static Json::Value none;
    return none;
  }
  Json::Value golden_body(const Json::Value& c) {
    Json::Value body;
    body["input_ids"] = c["prompt_token_ids"];
    body["max_tokens"] = c["generated_token_ids"].size();
    body["temperature"] = 0;
    body["ignore_eos"] = true;
    return body;
  }
  Json::Value generate(const std::string& model, const Json::Value& body) {
    HttpClient http(server_->http_url());
    auto r = http.post("/v2/models/" + model + "/generate", dump(body));
    EXPECT_EQ(r.status, 200) << r.body;
    return parse(r.body);
  }
  // The bodies sent at once, one thread each; answers in order.
  std::vector<Json::Value> generate_together(const std::string& model, const std::vector<Json::Value>& bodies) {
    std::vector<Json::Value> out(bodies.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < bodies.size(); ++i) threads.emplace_back([&, i] { out[i] = generate(model, bodies[i]); });
    for (auto& t : threads) t.join();
    return out;
  }

  static inline std::string skip_reason_;
  static inline std::string setup_error_;
  static inline Json::Value* golden_ = nullptr;
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  std::unique_ptr<HttpClient> http_;
};

const char* kGoldenCases[] = {"bos_only_greedy_200", "prompt_once_upon_a_time_greedy_64",
                              "bos_only_greedy_256_default_steps"};

TEST_F(LlmSpeculative, GreedyEqualsTheGoldenContinuationsAtBatch1And8) {
  const double proposed_before = metric("ferry_llm_spec_proposed_tokens_total", "stories_spec");
  for (const char* name : kGoldenCases) {
    const Json::Value& c = golden_case(name);
    ASSERT_TRUE(c.isObject()) << name;
    Json::Value j = generate("stories_spec", golden_body(c));
    EXPECT_EQ(j["output_ids"], c["generated_token_ids"]) << name << " at batch 1";
    EXPECT_EQ(j["usage"]["completion_tokens"].asUInt(), c["generated_token_ids"].size());
  }
  std::vector<Json::Value> bodies, expected;
  for (int i = 0; i < 8; ++i) {
    const Json::Value& c = golden_case(kGoldenCases[i % 3]);
    bodies.push_back(golden_body(c));
    expected.push_back(c["generated_token_ids"]);
  }
  std::vector<Json::Value> got = generate_together("stories_spec", bodies);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i]["output_ids"], expected[i]) << "request " << i << " at batch 8";
  const double proposed = metric("ferry_llm_spec_proposed_tokens_total", "stories_spec") - proposed_before;
  const double accepted = metric("ferry_llm_spec_accepted_tokens_total", "stories_spec");
  EXPECT_GT(proposed, 0);
  EXPECT_GT(accepted, 0) << "stories repeat themselves: some n-gram drafts must be right";
  EXPECT_GT(metric("ferry_llm_spec_acceptance_length_count", "stories_spec"), 0);
  EXPECT_GE(metric("ferry_llm_spec_emitted_tokens_total", "stories_spec"),
            metric("ferry_llm_spec_acceptance_length_count", "stories_spec"));
}

TEST_F(LlmSpeculative, GreedyEqualsTheGoldenWithPreemptionAndPrefixCaching) {
  const int64_t preemptions_before = stats("stories_spec_small")["preemptions"].asInt64();
  std::vector<Json::Value> bodies, expected;
  for (int i = 0; i < 8; ++i) {
    const Json::Value& c = golden_case(kGoldenCases[i % 3]);
    bodies.push_back(golden_body(c));
    expected.push_back(c["generated_token_ids"]);
  }
  for (int round = 0; round < 2; ++round) {  // the second round finds the prompts' blocks cached
    std::vector<Json::Value> got = generate_together("stories_spec_small", bodies);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i]["output_ids"], expected[i]) << "round " << round << " request " << i;
  }
  const Json::Value s = stats("stories_spec_small");
  EXPECT_GT(s["preemptions"].asInt64(), preemptions_before) << dump(s);
  EXPECT_GT(s["instances"][0]["prefix_hit_tokens"].asInt64(), 0) << dump(s);
  EXPECT_GT(metric("ferry_llm_spec_accepted_tokens_total", "stories_spec_small"), 0);
}

TEST_F(LlmSpeculative, TinyLlamaAnswersTheSameWithAndWithoutSpeculationAtBatch1And8) {
  const char* prompts[] = {"The ferry crossed the wide river at dawn, and the ferry crossed the river",
                           "one two three one two three one two", "Hello", "a b c d e f g a b c d",
                           "The river", "x y x y x y", "Once upon a time", "the the the"};
  std::vector<Json::Value> bodies;
  for (const char* p : prompts) {
    Json::Value b;
    b["text_input"] = p;
    b["max_tokens"] = 48;
    b["temperature"] = 0;
    b["ignore_eos"] = true;
    bodies.push_back(b);
  }
  std::vector<Json::Value> plain;
  for (const auto& b : bodies) plain.push_back(generate("tiny_plain", b)["output_ids"]);
  for (size_t i = 0; i < bodies.size(); ++i) {
    EXPECT_EQ(generate("tiny_spec", bodies[i])["output_ids"], plain[i]) << "prompt " << i << " at batch 1";
  }
  std::vector<Json::Value> together = generate_together("tiny_spec", bodies);
  for (size_t i = 0; i < bodies.size(); ++i) EXPECT_EQ(together[i]["output_ids"], plain[i]) << "prompt " << i << " at batch 8";
  EXPECT_GT(metric("ferry_llm_spec_proposed_tokens_total", "tiny_spec"), 0);
}

TEST_F(LlmSpeculative, SeededSamplingLogprobsStopTokensAndMaxTokensAreThoseOfPlainDecoding) {
  const Json::Value& c = golden_case("bos_only_greedy_200");
  // Seeded sampling: the same tokens (one RNG draw per emitted token, see Sampler::verify).
  for (uint64_t seed : {1u, 2u, 3u}) {
    Json::Value b = golden_body(c);
    b["max_tokens"] = 120;
    b["temperature"] = 0.7;
    b["seed"] = seed;
    EXPECT_EQ(generate("stories_spec", b)["output_ids"], generate("stories_plain", b)["output_ids"]) << "seed " << seed;
  }
  // Logprobs of the emitted tokens, as without speculation (up to the fp32 noise of a multi-token step).
  Json::Value b = golden_body(c);
  b["max_tokens"] = 60;
  b["logprobs"] = 2;
  Json::Value spec = generate("stories_spec", b), plain = generate("stories_plain", b);
  ASSERT_EQ(spec["logprobs"].size(), 60u) << dump(spec);
  ASSERT_EQ(plain["logprobs"].size(), 60u);
  for (Json::ArrayIndex k = 0; k < 60; ++k) {
    EXPECT_EQ(spec["logprobs"][k]["token_id"], plain["logprobs"][k]["token_id"]) << k;
    EXPECT_NEAR(spec["logprobs"][k]["logprob"].asDouble(), plain["logprobs"][k]["logprob"].asDouble(), 1e-3) << k;
    EXPECT_EQ(spec["logprobs"][k]["top_logprobs"].size(), 2u);
  }
  // A stop token in the middle of an accepted run ends the answer right there.
  const Json::Value& golden = c["generated_token_ids"];
  for (Json::ArrayIndex at : {40u, 90u, 150u}) {
    Json::Value s = golden_body(c);
    s["stop_token_ids"].append(golden[at]);
    Json::Value j = generate("stories_spec", s);
    Json::ArrayIndex first = 0;
    while (golden[first] != golden[at]) ++first;
    ASSERT_EQ(j["output_ids"].size(), first + 1) << "stop token " << golden[at];
    EXPECT_EQ(j["finish_reason"].asString(), "stop");
  }
  // max_tokens: never more than asked, whatever the drafts.
  for (int max_tokens : {1, 2, 3, 5, 17, 33}) {
    Json::Value m = golden_body(c);
    m["max_tokens"] = max_tokens;
    Json::Value j = generate("stories_spec", m);
    Json::Value ids = j["output_ids"];
    if (!ids.isArray()) {  // one id is sent as a scalar (a tensor of shape [1])
      ids = Json::Value(Json::arrayValue);
      ids.append(j["output_ids"]);
    }
    ASSERT_EQ(ids.size(), static_cast<Json::ArrayIndex>(max_tokens)) << dump(j);
    EXPECT_EQ(j["usage"]["completion_tokens"].asInt(), max_tokens);
    for (int k = 0; k < max_tokens; ++k) EXPECT_EQ(ids[k], golden[k]);
    EXPECT_EQ(j["finish_reason"].asString(), "length");
  }
}

TEST_F(LlmSpeculative, ARequestCanOptOut) {
  const Json::Value& c = golden_case("bos_only_greedy_256_default_steps");
  Json::Value b = golden_body(c);
  b["speculative"] = false;
  const double before = metric("ferry_llm_spec_proposed_tokens_total", "stories_spec");
  EXPECT_EQ(generate("stories_spec", b)["output_ids"], c["generated_token_ids"]);
  EXPECT_EQ(metric("ferry_llm_spec_proposed_tokens_total", "stories_spec"), before);
  b["speculative"] = "no";
  auto r = http_->post("/v2/models/stories_spec/generate", dump(b));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("speculative"), std::string::npos) << r.body;
}

TEST_F(LlmSpeculative, ConstrainedRequestsDoNotSpeculate) {
  Json::Value b;
  b["text_input"] = "Once upon a time";
  b["max_tokens"] = 40;
  b["temperature"] = 0;
  b["guided_choice"].append("happy");
  b["guided_choice"].append("a long way home");
  const double before = metric("ferry_llm_spec_proposed_tokens_total", "stories_spec");
  Json::Value j = generate("stories_spec", b);
  const std::string text = j["text_output"].asString();
  EXPECT_TRUE(text == "happy" || text == "a long way home") << dump(j);
  EXPECT_EQ(j["finish_reason"].asString(), "stop");
  EXPECT_EQ(metric("ferry_llm_spec_proposed_tokens_total", "stories_spec"), before);
}

TEST_F(LlmSpeculative, TheDraftMethodIsRefusedWithAClearLoadError) {
  auto index = parse(http_->post("/v2/repository/index", "{}").body);
  bool found = false;
  for (const auto& m : index) {
    if (m["name"].asString() != "draft_model") continue;
    found = true;
    EXPECT_EQ(m["state"].asString(), "UNAVAILABLE") << dump(m);
    EXPECT_NE(m["reason"].asString().find("\"draft\""), std::string::npos) << dump(m);
    EXPECT_NE(m["reason"].asString().find("not implemented"), std::string::npos) << dump(m);
  }
  EXPECT_TRUE(found) << dump(index);
}

}  // namespace
}  // namespace ferry::testing
