// Loading progress end to end (issue 16): a model big enough to take a moment to load (dummy
// weights of a ~270M-parameter Llama, 538 MB as bf16, quantized to int8 at load) is loaded through
// the repository API of a real ferry-server while the test polls the repository index. While it
// loads, its version is LOADING with a reason that names the stage and a percentage that grows;
// once loaded it is READY with no reason; the log has the progress lines.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <thread>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using client::HttpResult;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// 16 layers of 4 x 1024^2 attention and 3 x 1024 x 4096 MLP weights: 268M parameters, a few
// seconds of generating and quantizing on one core (the weight loader is single-threaded).
constexpr const char* kHfConfig = R"({"architectures":["LlamaForCausalLM"],"model_type":"llama",
  "hidden_size":1024,"intermediate_size":4096,"num_hidden_layers":16,"num_attention_heads":8,"num_key_value_heads":8,
  "vocab_size":389,"max_position_embeddings":256,"rms_norm_eps":1e-5,"rope_theta":10000.0,
  "tie_word_embeddings":true,"torch_dtype":"bfloat16","bos_token_id":384,"eos_token_id":385})";

void add_big_model(const std::string& repo) {
  write_file(repo + "/big/config.json", R"({"backend":"llm","load_format":"dummy","weight_dtype":"int8",
    "kv_cache_memory_bytes":16777216})");
  fs::create_directories(repo + "/big/1");
  const fs::path tiny = fs::path(default_repository()) / "tiny-llama" / "1";
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(tiny / f, repo + "/big/1/" + f);
  write_file(repo + "/big/1/config.json", kHfConfig);
}

struct Seen {
  std::string state, reason;
};

TEST(LoadProgress, IndexShowsLoadingWithAGrowingPercentThenReadyWithoutReason) {
  TempDir repo;
  add_big_model(repo.path());
  auto server = ServerProcess::start(repo.path(), {"--model-control-mode", "explicit"});
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());

  HttpResult load;
  std::thread loader([&] {
    HttpClient c(server->http_url());
    load = c.post("/v2/repository/models/big/load", "");
  });
  std::vector<Seen> seen;
  const auto deadline = std::chrono::steady_clock::now() + 240s;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& m : parse(http.post("/v2/repository/index", "").body)) {
      if (m["name"].asString() != "big") continue;
      Seen s{m["state"].asString(), m["reason"].asString()};
      if (seen.empty() || seen.back().state != s.state || seen.back().reason != s.reason) seen.push_back(s);
    }
    if (!seen.empty() && seen.back().state != "LOADING") break;
    std::this_thread::sleep_for(20ms);
  }
  loader.join();
  EXPECT_EQ(load.status, 200) << load.body;
  ASSERT_FALSE(seen.empty());
  std::string history;
  for (const auto& s : seen) history += "\n  " + s.state + " '" + s.reason + "'";

  // Every LOADING reason once the loader has started: the stage, a percentage, the sizes; later
  // ones the rate. The percentage never goes down and does grow.
  const std::regex progress(R"(^loading dummy weights, converting to int8: (\d+) % \((\d+) of 538 MB(, \d+ MB/s)?\)$)");
  std::vector<int> percents;
  bool rate_seen = false, starting_seen = false;
  for (const auto& s : seen) {
    if (s.state != "LOADING" || s.reason.empty()) continue;  // before the first report
    // After the weights: the instances start (KV pools); no weight progress comes after that.
    if (s.reason == "starting 1 instance(s)") {
      starting_seen = true;
      continue;
    }
    ASSERT_FALSE(starting_seen) << s.reason << history;
    std::smatch m;
    ASSERT_TRUE(std::regex_match(s.reason, m, progress)) << s.reason << history;
    percents.push_back(std::stoi(m[1].str()));
    rate_seen = rate_seen || m[3].matched;
  }
  ASSERT_GE(percents.size(), 2u) << history;
  EXPECT_TRUE(std::is_sorted(percents.begin(), percents.end())) << history;
  EXPECT_LT(percents.front(), percents.back()) << history;
  EXPECT_LE(percents.back(), 100) << history;
  EXPECT_TRUE(rate_seen) << history;

  EXPECT_EQ(seen.back().state, "READY") << history;
  EXPECT_EQ(seen.back().reason, "") << history;
  // The log: the first report and the complete one (in between at most one every 5 s).
  EXPECT_TRUE(server->wait_for_log("loading model 'big' version 1: loading dummy weights, converting to int8: 0/538 MB (0 %), 0 of 146 tensors", 1s))
      << server->log();
  EXPECT_TRUE(server->wait_for_log("538/538 MB (100 %), 146 of 146 tensors, ", 1s)) << server->log();
  EXPECT_EQ(http.post("/v2/models/big/generate", R"({"text_input":"a","max_tokens":2})").status, 200);
}

}  // namespace
}  // namespace ferry::testing
