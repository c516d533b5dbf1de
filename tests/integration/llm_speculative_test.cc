// Speculative decoding through a real ferry-server. N-gram proposals: greedy answers equal llama2.c's golden
// continuations of stories260K token for token, at batch 1 and 8, with a KV pool small enough to preempt and with
// prefix caching; tiny-llama (dummy weights) answers the same with and without speculation; seeded sampling,
// logprobs, stop tokens and max_tokens are those of plain decoding; a request can opt out, and constrained requests
// do not speculate; drafts are proposed and accepted (metrics); the default adaptive rule measures what a draft
// costs per batch size (stats). Draft models (method "draft"): stories260K and tiny-llama drafting for themselves
// (~all drafts accepted) and with 2-layer drafts give the golden / plain answers at batch 1 and 8, with preemption,
// chunked prefill and prefix caching; seeded sampling reproduces, stops, stop strings, cancels, max_tokens and an
// idle unload hold; a draft of another vocabulary or a missing one is a clear load error. No KV block, of the
// target or of a draft, is left in use.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
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

const char* kGoldenCases[] = {"bos_only_greedy_200", "prompt_once_upon_a_time_greedy_64",
                              "bos_only_greedy_256_default_steps"};

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
    // The adaptive rule as shipped: min_acceptance_rate measured, disable_by_batch_size 2.
    add("stories_auto", stories,
        R"({"backend":"llm","max_num_seqs":8,"speculative":{"method":"ngram","num_speculative_tokens":4}})");
    add("stories_spec_small", stories, std::string(R"({"backend":"llm","max_num_seqs":8,"kv_cache_num_blocks":40,)") + kSpec + "}");
    add("tiny_plain", tiny, R"({"backend":"llm","load_format":"dummy","seed":0,"max_num_seqs":8})");
    add("tiny_spec", tiny, std::string(R"({"backend":"llm","load_format":"dummy","seed":0,"max_num_seqs":8,)") + kSpec + "}");
    add_draft_models(stories, tiny);
    server_ = ServerProcess::start(repo_->path()).release();
  }
  // Drafts: the same models (stories_plain, tiny_plain) and 2-layer copies (served folders whose
  // version 1 says num_hidden_layers 2; safetensors tensors of the other layers are ignored).
  static void add_draft_models(const fs::path& stories, const fs::path& tiny) {
    auto add_layers = [&](const std::string& name, const fs::path& model, const std::string& config) {
      std::error_code ec;
      fs::create_directories(repo_->path() + "/" + name, ec);
      fs::copy(model, repo_->path() + "/" + name + "/1", fs::copy_options::recursive, ec);
      if (ec) setup_error_ = "cannot copy the model: " + ec.message();
      Json::Value hf = parse(read_file(model / "config.json"));
      hf["num_hidden_layers"] = 2;
      write_file(repo_->path() + "/" + name + "/1/config.json", dump(hf));
      write_file(repo_->path() + "/" + name + "/config.json", config);
    };
    add_layers("stories_2layers", stories, R"({"backend":"llm"})");
    add_layers("tiny_2layers", tiny, R"({"backend":"llm","load_format":"dummy","seed":0})");
    auto draft = [](const std::string& name, const std::string& extra = "") {
      return std::string(R"({"backend":"llm","max_num_seqs":8,)") + extra +
             R"("speculative":{"method":"draft","draft_model":")" + name +
             R"(","num_speculative_tokens":4,"disable_by_batch_size":16,"min_acceptance_rate":0}})";
    };
    const std::string tiny_extra = R"("load_format":"dummy","seed":0,)";
    std::error_code ec;
    for (const char* name : {"stories_draft_self", "stories_draft_small", "stories_draft_preempt", "stories_draft_idle",
                             "draft_mismatch", "draft_missing"}) {
      fs::create_directories(repo_->path() + "/" + name, ec);
      fs::copy(stories, repo_->path() + "/" + name + "/1", fs::copy_options::recursive, ec);
    }
    for (const char* name : {"tiny_draft_self", "tiny_draft_small"}) {
      fs::create_directories(repo_->path() + "/" + name, ec);
      fs::copy(tiny, repo_->path() + "/" + name + "/1", fs::copy_options::recursive, ec);
    }
    if (ec) setup_error_ = "cannot copy the model: " + ec.message();
    write_file(repo_->path() + "/stories_draft_self/config.json", draft("stories_plain"));
    write_file(repo_->path() + "/stories_draft_small/config.json", draft("stories_2layers"));
    // 40 blocks preempt 8 sequences; a step budget of 24 tokens chunks the prefill of what the
    // preempted ones recompute, and the draft's catch-up of it (its state went with the preemption).
    write_file(repo_->path() + "/stories_draft_preempt/config.json",
               draft("stories_2layers", R"("kv_cache_num_blocks":40,"max_num_batched_tokens":24,)"));
    write_file(repo_->path() + "/stories_draft_idle/config.json", draft("stories_2layers", R"("idle_unload_seconds":1,)"));
    write_file(repo_->path() + "/tiny_draft_self/config.json", draft("tiny_plain", tiny_extra));
    write_file(repo_->path() + "/tiny_draft_small/config.json", draft("tiny_2layers", tiny_extra));
    write_file(repo_->path() + "/draft_mismatch/config.json", draft("tiny_plain"));
    write_file(repo_->path() + "/draft_missing/config.json", draft("no_such_model"));
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
    for (const char* m : {"stories_plain", "stories_spec", "stories_auto", "stories_spec_small", "tiny_plain", "tiny_spec",
                          "stories_draft_self", "stories_draft_small", "stories_draft_preempt", "stories_draft_idle",
                          "tiny_draft_self", "tiny_draft_small"}) {
      EXPECT_TRUE(eventually([&] { return stats(m)["kv_blocks_used"].asInt() == 0; }, 5000ms))
          << m << " leaks KV blocks: " << dump(stats(m));
      // The idle consistency check ran after each instance's last step (its result is read below).
      EXPECT_TRUE(eventually([&] { return consistency_checked_after_last_step(stats(m)); }, 5000ms))
          << m << ": no consistency check after the last step: " << dump(stats(m));
      const Json::Value st = stats(m);  // kept: a range-for over stats(m)["instances"] would dangle
      for (const auto& i : st["instances"]) {
        EXPECT_TRUE(i["consistent"].asBool()) << m << ": " << dump(i);
        // Draft states go with their requests (ended or preempted): none is left when idle.
        const bool drafts = std::string(m).find("draft") != std::string::npos;
        EXPECT_EQ(i.isMember("draft_kv_blocks_used"), drafts) << m << ": " << dump(i);
        EXPECT_EQ(i["draft_kv_blocks_used"].asInt(), 0) << m << " leaks draft KV blocks: " << dump(i);
        EXPECT_EQ(i["draft_sequences"].asInt(), 0) << m << ": " << dump(i);
      }
    }
  }
  Json::Value stats(const std::string& model) {
    HttpClient http(server_->http_url());
    return parse(http.get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
  }
  double metric(const std::string& name, const std::string& model, const std::string& method = "ngram") {
    Exposition e;
    std::string err;
    EXPECT_TRUE(parse_exposition(http_->get("/metrics").body, &e, &err)) << err;
    return e.value(name, {{"model", model}, {"method", method}});
  }
  // The draft method's proposed and accepted draft totals of `model`.
  std::pair<double, double> draft_counts(const std::string& model) {
    return {metric("ferry_llm_spec_proposed_tokens_total", model, "draft"),
            metric("ferry_llm_spec_accepted_tokens_total", model, "draft")};
  }
  std::vector<Json::Value> golden_bodies(int n, std::vector<Json::Value>* expected) {
    std::vector<Json::Value> bodies;
    for (int i = 0; i < n; ++i) {
      const Json::Value& c = golden_case(kGoldenCases[i % 3]);
      bodies.push_back(golden_body(c));
      expected->push_back(c["generated_token_ids"]);
    }
    return bodies;
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
  // Eight greedy tiny-llama requests of 48 tokens, some of them repetitive.
  static std::vector<Json::Value> tiny_greedy_bodies() {
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
    return bodies;
  }
  // 8 golden requests at once, twice, on a model whose KV pool is too small for them: the answers
  // are the golden ones, requests were preempted, and the prefix cache served some tokens.
  void expect_golden_with_preemption(const std::string& model) {
    const int64_t preemptions_before = stats(model)["preemptions"].asInt64();
    std::vector<Json::Value> expected;
    const std::vector<Json::Value> bodies = golden_bodies(8, &expected);
    for (int round = 0; round < 2; ++round) {  // the second round finds the prompts' blocks cached
      std::vector<Json::Value> got = generate_together(model, bodies);
      for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i]["output_ids"], expected[i]) << "round " << round << " request " << i;
    }
    const Json::Value s = stats(model);
    EXPECT_GT(s["preemptions"].asInt64(), preemptions_before) << dump(s);
    EXPECT_GT(s["instances"][0]["prefix_hit_tokens"].asInt64(), 0) << dump(s);
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
  expect_golden_with_preemption("stories_spec_small");
  EXPECT_GT(metric("ferry_llm_spec_accepted_tokens_total", "stories_spec_small"), 0);
}

TEST_F(LlmSpeculative, TinyLlamaAnswersTheSameWithAndWithoutSpeculationAtBatch1And8) {
  const std::vector<Json::Value> bodies = tiny_greedy_bodies();
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

// The default rule measures what drafts cost from the instance's own steps: after a repetitive
// greedy request at batch 1 (plain steps until its text repeats, then verification steps) the
// stats hold batch 1's plain step time and a draft's cost, whose break-even rate at batch 1 is
// that cost; the answer is still the golden one. Two requests at once add batch 2 (at most
// disable_by_batch_size 2 sequences speculate), where break-even is twice the draft's cost.
TEST_F(LlmSpeculative, TheDefaultRuleMeasuresWhatDraftsCostPerBatchSize) {
  const Json::Value& c = golden_case("bos_only_greedy_200");
  EXPECT_EQ(generate("stories_auto", golden_body(c))["output_ids"], c["generated_token_ids"]);
  EXPECT_GT(metric("ferry_llm_spec_proposed_tokens_total", "stories_auto"), 0);
  std::vector<Json::Value> expected;
  const std::vector<Json::Value> bodies = golden_bodies(2, &expected);
  std::vector<Json::Value> got = generate_together("stories_auto", bodies);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i]["output_ids"], expected[i]) << "request " << i;
  const Json::Value st = stats("stories_auto");
  const Json::Value& cost = st["instances"][0]["speculation_cost"];
  ASSERT_TRUE(cost.isArray()) << dump(st);
  std::map<int, Json::Value> by_batch;
  for (const auto& e : cost) by_batch[e["batch_size"].asInt()] = e;
  ASSERT_TRUE(by_batch.count(1)) << dump(cost);
  const Json::Value& one = by_batch[1];
  EXPECT_GT(one["plain_step_us"].asDouble(), 0.0) << dump(one);
  ASSERT_TRUE(one.isMember("draft_cost")) << "no verification step measured at batch 1: " << dump(cost);
  EXPECT_GE(one["draft_cost"].asDouble(), 0.0);
  EXPECT_DOUBLE_EQ(one["break_even_rate"].asDouble(), one["draft_cost"].asDouble());
  for (const auto& [b, e] : by_batch) {
    EXPECT_LE(b, 2) << "a decode-only step of more sequences than were sent: " << dump(cost);
    if (e.isMember("draft_cost")) {
      EXPECT_DOUBLE_EQ(e["break_even_rate"].asDouble(), b * e["draft_cost"].asDouble());
    }
  }
  // The plain model (no speculation) reports no cost.
  EXPECT_FALSE(stats("stories_plain")["instances"][0].isMember("speculation_cost"));
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

// --- Draft models -----------------------------------------------------------------------------

TEST_F(LlmSpeculative, DraftModelsGiveTheGoldenContinuationsAtBatch1And8) {
  for (const char* model : {"stories_draft_self", "stories_draft_small"}) {
    const auto [proposed_before, accepted_before] = draft_counts(model);
    for (const char* name : kGoldenCases) {
      const Json::Value& c = golden_case(name);
      EXPECT_EQ(generate(model, golden_body(c))["output_ids"], c["generated_token_ids"]) << model << " " << name;
    }
    std::vector<Json::Value> expected;
    std::vector<Json::Value> got = generate_together(model, golden_bodies(8, &expected));
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i]["output_ids"], expected[i]) << model << " request " << i;
    const auto [proposed, accepted] = draft_counts(model);
    EXPECT_GT(proposed - proposed_before, 100) << model;
    if (std::string(model) == "stories_draft_self") {
      // The draft is the target: it proposes the target's own arg max (up to fp32 noise between a
      // one-token and a multi-token step).
      EXPECT_GE((accepted - accepted_before) / (proposed - proposed_before), 0.95) << model;
    } else {
      EXPECT_GT(accepted - accepted_before, 0) << model << ": a 2-layer draft of a story model guesses some tokens";
    }
  }
  EXPECT_GT(metric("ferry_llm_spec_acceptance_length_count", "stories_draft_self", "draft"), 0);
}

TEST_F(LlmSpeculative, DraftModelGreedyEqualsTheGoldenWithPreemptionAndPrefixCaching) {
  expect_golden_with_preemption("stories_draft_preempt");
  EXPECT_GT(draft_counts("stories_draft_preempt").second, 0);
}

TEST_F(LlmSpeculative, TinyLlamaWithDraftModelsAnswersAsWithoutAtBatch1And8) {
  const std::vector<Json::Value> bodies = tiny_greedy_bodies();
  std::vector<Json::Value> plain;
  for (const auto& b : bodies) plain.push_back(generate("tiny_plain", b)["output_ids"]);
  for (const char* model : {"tiny_draft_self", "tiny_draft_small"}) {
    const auto [proposed_before, accepted_before] = draft_counts(model);
    for (size_t i = 0; i < bodies.size(); ++i) {
      EXPECT_EQ(generate(model, bodies[i])["output_ids"], plain[i]) << model << " prompt " << i << " at batch 1";
    }
    std::vector<Json::Value> together = generate_together(model, bodies);
    for (size_t i = 0; i < bodies.size(); ++i) {
      EXPECT_EQ(together[i]["output_ids"], plain[i]) << model << " prompt " << i << " at batch 8";
    }
    const auto [proposed, accepted] = draft_counts(model);
    EXPECT_GT(proposed - proposed_before, 100) << model;
    if (std::string(model) == "tiny_draft_self") {
      EXPECT_GE((accepted - accepted_before) / (proposed - proposed_before), 0.95) << model;
    }
  }
}

TEST_F(LlmSpeculative, DraftModelSeedsReproduceAndStopsHold) {
  const Json::Value& c = golden_case("bos_only_greedy_200");
  for (uint64_t seed : {1u, 2u}) {
    Json::Value b = golden_body(c);
    b["max_tokens"] = 80;
    b["temperature"] = 0.8;
    b["seed"] = seed;
    b["logprobs"] = 1;
    const Json::Value first = generate("stories_draft_small", b), second = generate("stories_draft_small", b);
    EXPECT_EQ(first["output_ids"], second["output_ids"]) << "seed " << seed;
    EXPECT_EQ(first["output_ids"].size(), 80u);
    EXPECT_EQ(first["logprobs"].size(), 80u);
  }
  const Json::Value& golden = c["generated_token_ids"];
  Json::Value s = golden_body(c);
  s["stop_token_ids"].append(golden[90]);
  Json::Value j = generate("stories_draft_small", s);
  Json::ArrayIndex first = 0;
  while (golden[first] != golden[90]) ++first;
  EXPECT_EQ(j["output_ids"].size(), first + 1) << "stop token " << golden[90];
  EXPECT_EQ(j["finish_reason"].asString(), "stop");
  for (int max_tokens : {2, 3, 5, 17}) {
    Json::Value m = golden_body(c);
    m["max_tokens"] = max_tokens;
    Json::Value r = generate("stories_draft_small", m);
    ASSERT_EQ(r["output_ids"].size(), static_cast<Json::ArrayIndex>(max_tokens)) << dump(r);
    for (int k = 0; k < max_tokens; ++k) EXPECT_EQ(r["output_ids"][k], golden[k]);
  }
  Json::Value off = golden_body(c);
  off["speculative"] = false;
  const double before = draft_counts("stories_draft_small").first;
  EXPECT_EQ(generate("stories_draft_small", off)["output_ids"], c["generated_token_ids"]);
  EXPECT_EQ(draft_counts("stories_draft_small").first, before) << "a request that opts out gets no drafts";
}

TEST_F(LlmSpeculative, DraftModelCancelsAndStopStringsFreeTheDraftState) {
  const std::string model = "stories_draft_small";
  auto idle = [&] {
    const Json::Value s = stats(model);
    return s["kv_blocks_used"].asInt() == 0 && s["instances"][0]["draft_sequences"].asInt() == 0 &&
           s["instances"][0]["draft_kv_blocks_used"].asInt() == 0;
  };
  // A client that goes away after three chunks cancels its request mid-speculation.
  int seen = 0;
  http_->post_stream("/v2/models/" + model + "/generate_stream",
                     R"({"text_input":"Once","max_tokens":400,"temperature":0,"ignore_eos":true})",
                     [&](const std::string&) { return ++seen < 3; });
  EXPECT_EQ(seen, 3);
  EXPECT_TRUE(eventually(idle, 5000ms)) << dump(stats(model));
  // A stop string ends the request from the output processor (a cancel inside the instance).
  Json::Value b;
  b["text_input"] = "Once upon a time";
  b["max_tokens"] = 120;
  b["temperature"] = 0;
  b["ignore_eos"] = true;
  const std::string text = generate("stories_plain", b)["text_output"].asString();
  ASSERT_GT(text.size(), 80u) << text;
  const std::string stop = text.substr(60, 8);
  b["stop"] = stop;
  const Json::Value j = generate(model, b);
  EXPECT_EQ(j["text_output"].asString(), text.substr(0, text.find(stop))) << "stop " << stop;
  EXPECT_EQ(j["finish_reason"].asString(), "stop");
  EXPECT_TRUE(eventually(idle, 5000ms)) << dump(stats(model));
}

TEST_F(LlmSpeculative, AnIdleUnloadTakesTheDraftEngineAlongAndTheReloadBringsItBack) {
  const Json::Value& c = golden_case("prompt_once_upon_a_time_greedy_64");
  EXPECT_EQ(generate("stories_draft_idle", golden_body(c))["output_ids"], c["generated_token_ids"]);
  EXPECT_TRUE(eventually([&] { return !stats("stories_draft_idle")["instances"][0]["engine_loaded"].asBool(); }, 5000ms))
      << dump(stats("stories_draft_idle"));
  const double proposed = draft_counts("stories_draft_idle").first;
  EXPECT_EQ(generate("stories_draft_idle", golden_body(c))["output_ids"], c["generated_token_ids"]) << "after the reload";
  EXPECT_GT(draft_counts("stories_draft_idle").first, proposed) << "the reloaded instance drafts again";
}

TEST_F(LlmSpeculative, ADraftOfAnotherVocabularyOrAMissingOneIsAClearLoadError) {
  auto index = parse(http_->post("/v2/repository/index", "{}").body);
  std::map<std::string, std::string> reasons;
  for (const auto& m : index) {
    const std::string name = m["name"].asString();
    if (name != "draft_mismatch" && name != "draft_missing") continue;
    EXPECT_EQ(m["state"].asString(), "UNAVAILABLE") << dump(m);
    reasons[name] = m["reason"].asString();
  }
  ASSERT_EQ(reasons.size(), 2u) << dump(index);
  EXPECT_NE(reasons["draft_mismatch"].find("speculative.draft_model"), std::string::npos) << reasons["draft_mismatch"];
  EXPECT_NE(reasons["draft_mismatch"].find("tokenizer"), std::string::npos) << reasons["draft_mismatch"];
  EXPECT_NE(reasons["draft_missing"].find("no_such_model"), std::string::npos) << reasons["draft_missing"];
  EXPECT_NE(reasons["draft_missing"].find("no folder"), std::string::npos) << reasons["draft_missing"];
}

}  // namespace
}  // namespace ferry::testing
