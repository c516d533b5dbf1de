// Model instances of the llm backend through a real ferry-server: an instance_group of 2 spreads
// concurrent requests over both instances, idle_unload_seconds frees an idle instance and the next
// request reloads it (a counted cold start), KV warm-up prompts start cached, and a gpu instance
// on this CPU-only engine fails its load with a clear reason while the server stays up.
#include <gtest/gtest.h>

#include <filesystem>

#include "client/http_client.h"
#include "tests/host/exposition_parser.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class LlmInstances : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = fs::path(testdata_dir()) / "stories260K-hf-format.derived";
    if (!fs::exists(model_ / "model.safetensors")) GTEST_SKIP() << "reference data missing: " << model_;
  }
  void add(const std::string& name, const std::string& config) {
    std::error_code ec;
    fs::create_directories(repo_.path() + "/" + name, ec);
    fs::copy(model_, repo_.path() + "/" + name + "/1", fs::copy_options::recursive, ec);
    ASSERT_FALSE(ec) << ec.message();
    write_file(repo_.path() + "/" + name + "/config.json", config);
  }
  Json::Value stats(HttpClient& http, const std::string& model) {
    return parse(http.get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
  }
  fs::path model_;
  TempDir repo_;
};

TEST_F(LlmInstances, RequestsSpreadOverTheInstanceGroup) {
  add("two", R"({"backend":"llm","instance_group":[{"count":2,"kind":"cpu"}],"max_num_seqs":4})");
  auto server = ServerProcess::start(repo_.path());
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      HttpClient h(server->http_url());
      auto r = h.post("/v2/models/two/generate", R"({"text_input":"Once upon a time","max_tokens":60,"ignore_eos":true})");
      if (r.status == 200) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  auto s = stats(http, "two");
  ASSERT_EQ(s["instances"].size(), 2u) << dump(s);
  // Least-loaded routing: with 8 concurrent requests both instances served some.
  EXPECT_GT(s["instances"][0]["finished"].asInt(), 0) << dump(s);
  EXPECT_GT(s["instances"][1]["finished"].asInt(), 0) << dump(s);
}

TEST_F(LlmInstances, IdleInstanceUnloadsAndTheNextRequestReloadsIt) {
  add("idle", R"({"backend":"llm","idle_unload_seconds":1})");
  auto server = ServerProcess::start(repo_.path());
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  std::string body = R"({"text_input":"Once upon a time","max_tokens":20,"temperature":0,"ignore_eos":true})";
  auto before = parse(http.post("/v2/models/idle/generate", body).body);
  ASSERT_TRUE(before["output_ids"].isArray());
  EXPECT_TRUE(eventually([&] { return !stats(http, "idle")["instances"][0]["engine_loaded"].asBool(); }, 5000ms))
      << dump(stats(http, "idle"));
  EXPECT_TRUE(server->wait_for_log("engine and KV cache freed", 1000ms));
  auto after = parse(http.post("/v2/models/idle/generate", body).body);
  EXPECT_EQ(after["output_ids"], before["output_ids"]) << "same answer after the reload";
  EXPECT_TRUE(server->wait_for_log("cold start", 1000ms)) << server->log();
  Exposition e;
  std::string err;
  ASSERT_TRUE(parse_exposition(http.get("/metrics").body, &e, &err)) << err;
  EXPECT_EQ(e.value("ferry_llm_cold_starts_total", {{"model", "idle"}}), 1);
}

TEST_F(LlmInstances, WarmUpPromptsStartInThePrefixCache) {
  const std::string system = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
  add("warm", R"({"backend":"llm","kv_warmup_prompts":[")" + system + R"("]})");
  auto server = ServerProcess::start(repo_.path());
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  int64_t hits_before = stats(http, "warm")["instances"][0]["prefix_hit_tokens"].asInt64();
  Json::Value body;
  body["text_input"] = system + " One day";
  body["max_tokens"] = 4;
  ASSERT_EQ(http.post("/v2/models/warm/generate", dump(body)).status, 200);
  int64_t hits_after = stats(http, "warm")["instances"][0]["prefix_hit_tokens"].asInt64();
  EXPECT_GE(hits_after - hits_before, 16) << "the first request already reused the warm-up prompt's blocks";
}

TEST_F(LlmInstances, GpuInstanceFailsClearlyAndTheServerStaysUp) {
  add("gpu", R"({"backend":"llm","instance_group":[{"count":1,"kind":"gpu","gpus":[0]}]})");
  add("cpu", R"({"backend":"llm"})");
  auto server = ServerProcess::start(repo_.path());
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  auto r = http.get("/v2/models/gpu/ready");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(parse(r.body)["error"].asString().find("instance_group.kind"), std::string::npos) << r.body;
  EXPECT_EQ(http.get("/v2/models/cpu/ready").status, 200);
}

TEST_F(LlmInstances, BadConfigValuesNameTheKey) {
  add("bad1", R"({"backend":"llm","max_num_seqs":0})");
  add("bad2", R"({"backend":"llm","scheduling_policy":"random"})");
  add("bad3", R"({"backend":"llm","priority_level_config":[{"timeout_action":"panic"}]})");
  add("bad4", R"({"backend":"llm","kv_cache_block_size":"16"})");
  add("bad5", R"({"backend":"llm","no_such_key":1})");
  auto server = ServerProcess::start(repo_.path());
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  std::map<std::string, std::string> expected = {{"bad1", "max_num_seqs"}, {"bad2", "scheduling_policy"},
                                                 {"bad3", "timeout_action"}, {"bad4", "kv_cache_block_size"},
                                                 {"bad5", "no_such_key"}};
  for (const auto& [model, key] : expected) {
    auto r = http.get("/v2/models/" + model + "/ready");
    EXPECT_EQ(r.status, 503) << model;
    EXPECT_NE(parse(r.body)["error"].asString().find(key), std::string::npos) << model << ": " << r.body;
  }
}

}  // namespace
}  // namespace ferry::testing
