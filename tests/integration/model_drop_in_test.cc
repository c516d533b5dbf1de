// Dropping an LLM model into a polled repository while its weight file is still being written:
// the folder is loaded only once its files have stopped changing, and a model that failed to load
// (its file was cut short for longer than a poll) is retried when its files change.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A one-layer Llama over the tiny-llama tokenizer (389 tokens): small enough that its weights are
// ~35 KB, big enough to be a real safetensors file that the backend checks tensor by tensor.
constexpr const char* kHfConfig = R"({"architectures":["LlamaForCausalLM"],"model_type":"llama",
  "hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":2,
  "vocab_size":389,"max_position_embeddings":256,"rms_norm_eps":1e-5,"rope_theta":10000.0,
  "tie_word_embeddings":true,"torch_dtype":"float32","bos_token_id":384,"eos_token_id":385})";

std::string weights_bytes() {
  using llm::testing::FakeTensor;
  std::vector<FakeTensor> t = {{"model.embed_tokens.weight", "F32", {389, 16}}, {"model.norm.weight", "F32", {16}}};
  const std::string l = "model.layers.0.";
  for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) t.push_back({l + "self_attn." + n + ".weight", "F32", {16, 16}});
  t.push_back({l + "input_layernorm.weight", "F32", {16}});
  t.push_back({l + "post_attention_layernorm.weight", "F32", {16}});
  t.push_back({l + "mlp.gate_proj.weight", "F32", {32, 16}});
  t.push_back({l + "mlp.up_proj.weight", "F32", {32, 16}});
  t.push_back({l + "mlp.down_proj.weight", "F32", {16, 32}});
  TempDir scratch;
  llm::testing::write_safetensors(scratch / "w.safetensors", t);
  std::ifstream in(scratch / "w.safetensors", std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Everything of model `name` but its weights: serving config, HF config, tokenizer.
void add_model_without_weights(const std::string& repo, const std::string& name) {
  write_file(repo + "/" + name + "/config.json", R"({"backend":"llm","kv_cache_memory_bytes":1048576})");
  const fs::path tiny = fs::path(default_repository()) / "tiny-llama" / "1";
  fs::create_directories(repo + "/" + name + "/1");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(tiny / f, repo + "/" + name + "/1/" + f);
  write_file(repo + "/" + name + "/1/config.json", kHfConfig);
}

std::string state_of(HttpClient& http, const std::string& name) {
  for (const auto& m : parse(http.post("/v2/repository/index", "").body)) {
    if (m["name"].asString() == name) return m["state"].asString() + " " + m["reason"].asString();
  }
  return "";
}

TEST(ModelDropIn, LoadsOnlyOnceFilesStopChangingAndRetriesAFailedLoadWhenFilesChange) {
  TempDir repo;
  auto server = ServerProcess::start(repo.path(), {"--model-control-mode", "poll", "--repository-poll-secs", "1"});
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  const std::string weights = weights_bytes();
  ASSERT_GT(weights.size(), 30000u);

  // "slow": written in 10 pieces over ~3.5 s, a piece every 350 ms, so every poll (1 s) in between
  // sees a file that is still growing.
  add_model_without_weights(repo.path(), "slow");
  // "stalled": half written, then nothing for 3.5 s (several polls: loaded and refused as cut
  // short), then completed.
  add_model_without_weights(repo.path(), "stalled");
  std::thread slow_writer([&] {
    std::ofstream out(repo / "slow/1/model.safetensors", std::ios::binary);
    const size_t piece = weights.size() / 10 + 1;
    for (size_t at = 0; at < weights.size(); at += piece) {
      out.write(weights.data() + at, static_cast<std::streamsize>(std::min(piece, weights.size() - at)));
      out.flush();
      std::this_thread::sleep_for(350ms);
    }
  });
  {
    std::ofstream out(repo / "stalled/1/model.safetensors", std::ios::binary);
    out.write(weights.data(), static_cast<std::streamsize>(weights.size() / 2));
  }
  EXPECT_TRUE(eventually([&] { return state_of(http, "stalled").rfind("UNAVAILABLE", 0) == 0; }, 4000ms))
      << state_of(http, "stalled") << "\n" << server->log();
  slow_writer.join();
  {
    std::ofstream out(repo / "stalled/1/model.safetensors", std::ios::binary | std::ios::app);
    out.write(weights.data() + weights.size() / 2, static_cast<std::streamsize>(weights.size() - weights.size() / 2));
  }

  EXPECT_TRUE(eventually([&] { return http.get("/v2/models/slow/ready").status == 200; }, 5000ms))
      << state_of(http, "slow") << "\n" << server->log();
  EXPECT_TRUE(eventually([&] { return http.get("/v2/models/stalled/ready").status == 200; }, 5000ms))
      << state_of(http, "stalled") << "\n" << server->log();
  // The growing file was never handed to the backend.
  EXPECT_EQ(server->log().find("model 'slow' version 1 failed to load"), std::string::npos) << server->log();
}

}  // namespace
}  // namespace ferry::testing
