// Continuous batching through a real ferry-server with the trained stories260K model: batched
// greedy answers equal solo answers, prefix caching reuses blocks without changing outputs, a KV
// pool too small for the load preempts and still answers right, priorities order admission, full
// queues answer 429 and expired requests 408, and no KV block is left in use.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/host/exposition_parser.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Serves stories260K under several serving configs, each a model of its own.
class LlmScheduling : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path model = fs::path(testdata_dir()) / "stories260K-hf-format.derived";
    if (!fs::exists(model / "model.safetensors")) {
      skip_reason_ = "reference data missing: " + model.string();
      return;
    }
    repo_ = new TempDir();
    auto add = [&](const std::string& name, const std::string& config) {
      std::error_code ec;
      fs::create_directories(repo_->path() + "/" + name, ec);
      fs::copy(model, repo_->path() + "/" + name + "/1", fs::copy_options::recursive, ec);
      if (ec) setup_error_ = "cannot copy the model: " + ec.message();
      write_file(repo_->path() + "/" + name + "/config.json", config);
    };
    add("batched", R"({"backend":"llm","max_num_seqs":32,"max_num_batched_tokens":256})");
    // 24 blocks of 16 tokens: room for ~2 sequences of 200 tokens, so 6 at once must preempt.
    add("small_pool", R"({"backend":"llm","max_num_seqs":8,"kv_cache_num_blocks":24,"enable_prefix_caching":false})");
    add("one_at_a_time", R"({"backend":"llm","max_num_seqs":1,"max_num_batched_tokens":64,
        "priority_level_config":[{"max_queue_size":4},{"max_queue_size":2},{"max_queue_size":2}]})");
    server_ = ServerProcess::start(repo_->path()).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
  }
  void TearDown() override {
    if (!skip_reason_.empty() || server_ == nullptr) return;
    for (const char* m : {"batched", "small_pool", "one_at_a_time"}) {
      EXPECT_TRUE(eventually([&] { return stats(m)["kv_blocks_used"].asInt() == 0; }, 5000ms))
          << m << " leaks KV blocks: " << dump(stats(m));
      // The idle consistency check ran after each instance's last step (its result is read below).
      EXPECT_TRUE(eventually([&] { return consistency_checked_after_last_step(stats(m)); }, 5000ms))
          << m << ": no consistency check after the last step: " << dump(stats(m));
      // A named copy: a range-for over a member of the temporary stats(m) would read freed memory.
      const Json::Value s = stats(m);
      ASSERT_GT(s["instances"].size(), 0u) << m << ": " << dump(s);
      for (const auto& i : s["instances"]) EXPECT_TRUE(i["consistent"].asBool()) << m << ": " << dump(i);
    }
  }
  Json::Value stats(const std::string& model) {
    HttpClient http(server_->http_url());
    return parse(http.get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
  }
  static std::string greedy_body(const std::string& prompt, int max_tokens) {
    Json::Value b;
    b["text_input"] = prompt;
    b["max_tokens"] = max_tokens;
    b["temperature"] = 0;
    b["ignore_eos"] = true;
    return dump(b);
  }

  static inline std::string skip_reason_;
  static inline std::string setup_error_;
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  std::unique_ptr<HttpClient> http_;
};

const char* kPrompts[] = {"Once upon a time", "The little dog", "Lily and Ben", "One day, a bird",
                          "Tom had a red ball", "The sun was hot", "Mom said", "A big fish"};

TEST_F(LlmScheduling, ThirtyTwoConcurrentGreedyAnswersEqualTheirSoloAnswers) {
  std::vector<std::string> bodies;
  for (int i = 0; i < 32; ++i) bodies.push_back(greedy_body(std::string(kPrompts[i % 8]) + (i >= 8 ? " and" : "") +
                                                                std::string(i / 8, '!'), 24 + i % 5));
  std::vector<Json::Value> solo;
  for (const auto& b : bodies) solo.push_back(parse(http_->post("/v2/models/batched/generate", b).body)["output_ids"]);
  std::vector<Json::Value> together(bodies.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bodies.size(); ++i) {
    threads.emplace_back([&, i] {
      HttpClient http(server_->http_url());
      together[i] = parse(http.post("/v2/models/batched/generate", bodies[i]).body)["output_ids"];
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < bodies.size(); ++i) {
    ASSERT_TRUE(solo[i].isArray()) << bodies[i];
    EXPECT_EQ(together[i], solo[i]) << bodies[i];
  }
  bool batched = false;
  auto metrics = http_->get("/metrics").body;
  // Some step ran more than one sequence: the batch-size histogram has observations above 1.
  Exposition e;
  std::string err;
  ASSERT_TRUE(parse_exposition(metrics, &e, &err)) << err;
  double le1 = e.value("ferry_llm_batch_size_bucket", {{"model", "batched"}, {"le", "1"}});
  double all = e.value("ferry_llm_batch_size_count", {{"model", "batched"}});
  batched = all > le1;
  EXPECT_TRUE(batched) << "no step ran more than one sequence";
}

TEST_F(LlmScheduling, PrefixCacheHitComputesFewerTokensAndGivesTheSameAnswer) {
  std::string prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
  auto first = parse(http_->post("/v2/models/batched/generate", greedy_body(prompt, 16)).body);
  int64_t hits_before = stats("batched")["instances"][0]["prefix_hit_tokens"].asInt64();
  auto second = parse(http_->post("/v2/models/batched/generate", greedy_body(prompt, 16)).body);
  int64_t hits_after = stats("batched")["instances"][0]["prefix_hit_tokens"].asInt64();
  EXPECT_EQ(second["output_ids"], first["output_ids"]);
  // The prompt has > 16 tokens, so at least one full block came from the cache.
  EXPECT_GE(hits_after - hits_before, 16) << dump(stats("batched"));
}

TEST_F(LlmScheduling, ASmallPoolPreemptsAndEveryRequestStillGetsTheRightAnswer) {
  std::vector<std::string> bodies;
  for (int i = 0; i < 6; ++i) bodies.push_back(greedy_body(kPrompts[i], 180));
  std::vector<Json::Value> solo;
  for (const auto& b : bodies) solo.push_back(parse(http_->post("/v2/models/small_pool/generate", b).body)["output_ids"]);
  int64_t preemptions_before = stats("small_pool")["preemptions"].asInt64();
  std::vector<Json::Value> together(bodies.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bodies.size(); ++i) {
    threads.emplace_back([&, i] {
      HttpClient http(server_->http_url());
      together[i] = parse(http.post("/v2/models/small_pool/generate", bodies[i]).body)["output_ids"];
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < bodies.size(); ++i) EXPECT_EQ(together[i], solo[i]) << bodies[i];
  EXPECT_GT(stats("small_pool")["preemptions"].asInt64(), preemptions_before) << dump(stats("small_pool"));
}

TEST_F(LlmScheduling, HighPriorityIsAdmittedBeforeEarlierLowPriority) {
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once upon a time"]}])");
  auto send = [&](const std::string& id, int priority, int max_tokens) {
    Json::Value m = client::ZmqClient::infer_message(id, "one_at_a_time", in, parse(R"({"temperature":0,"ignore_eos":true})"), true);
    m["parameters"]["max_tokens"] = max_tokens;
    m["priority"] = priority;
    ASSERT_TRUE(zmq.send(m).ok());
  };
  // 500 tokens (the longest the 512-position model allows after the prompt): the three requests
  // below must arrive while it still runs, and 120 left only ~15 ms at stories260K's decode speed.
  send("running", 3, 500);
  auto first = zmq.receive(10000ms);  // the long low-priority request now occupies the only slot
  ASSERT_TRUE(first.has_value());
  send("low1", 3, 4);
  send("low2", 3, 4);
  send("high", 1, 4);
  std::vector<std::string> first_token_order;
  std::set<std::string> finals;
  while (finals.size() < 4) {
    auto r = zmq.receive(20000ms);
    ASSERT_TRUE(r.has_value());
    std::string id = (*r)["id"].asString();
    if (id != "running" && std::find(first_token_order.begin(), first_token_order.end(), id) == first_token_order.end()) {
      first_token_order.push_back(id);
    }
    if ((*r)["final"].asBool()) finals.insert(id);
  }
  EXPECT_EQ(first_token_order, (std::vector<std::string>{"high", "low1", "low2"}));
}

TEST_F(LlmScheduling, FullQueuesAnswer429AndExpiredRequests408) {
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once"]}])");
  // Two long requests at the highest level keep the only slot busy for ~1000 decode steps.
  for (const char* id : {"blocker", "blocker2"}) {
    Json::Value blocker = client::ZmqClient::infer_message(id, "one_at_a_time", in,
                                                           parse(R"({"max_tokens":500,"temperature":0,"ignore_eos":true})"), true);
    blocker["priority"] = 1;
    ASSERT_TRUE(zmq.send(blocker).ok());
  }
  ASSERT_TRUE(zmq.receive(10000ms).has_value());  // running: later requests queue

  // Level 2 (priority 2) holds at most 2 waiting requests; the third is refused at once.
  HttpClient h1(server_->http_url()), h2(server_->http_url()), h3(server_->http_url());
  std::string queued = R"({"text_input":"Once","max_tokens":2,"parameters":{"priority":2}})";
  std::thread t1([&] { h1.post("/v2/models/one_at_a_time/generate", queued); });
  std::thread t2([&] { h2.post("/v2/models/one_at_a_time/generate", queued); });
  EXPECT_TRUE(eventually([&] { return stats("one_at_a_time")["waiting"].asInt() == 3; }, 5000ms));  // blocker2 + 2
  auto full = h3.post("/v2/models/one_at_a_time/generate", queued);
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_NE(parse(full.body)["error"].asString().find("queue"), std::string::npos) << full.body;

  // A request whose timeout passes while it waits ends with 408.
  HttpClient h4(server_->http_url());
  auto expired = h4.post("/v2/models/one_at_a_time/generate",
                         R"({"text_input":"Once","max_tokens":2,"parameters":{"priority":1,"timeout":1000}})");
  EXPECT_EQ(expired.status, 408) << expired.body;

  ASSERT_TRUE(zmq.send(client::ZmqClient::cancel_message("blocker")).ok());
  ASSERT_TRUE(zmq.send(client::ZmqClient::cancel_message("blocker2")).ok());
  t1.join();
  t2.join();
}

}  // namespace
}  // namespace ferry::testing
