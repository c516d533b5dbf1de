// A kind "gpu" instance served by a real ferry-server on the CUDA emulator: the emulation build
// (FERRY_CUDA_EMULATION) serves kind gpu when FERRY_CUDA_EMULATED_DEVICE=1 is in the server's
// environment (gpu_engine.h), so the whole serving path (scheduler, KV pool, model runner, output
// processor, both frontends) runs over CudaEngine and the CUDA kernels, emulated. One server holds
// stories260K twice: "gpu" (instance_group kind gpu) and "cpu" (the CPU engine), and the gpu one
// must give llama2.c's golden greedy continuation on /v2 generate and /v1/completions (also to
// concurrent requests batched together) and its golden logprobs, stream deltas that add up to the
// whole answer, draw the cpu instance's tokens under a seed, cut at stop strings, and free its KV
// blocks on cancel and disconnect. A third model sizes its pool by kv_cache_memory_fraction. Builds without emulation skip (a build
// with nvcc and a GPU serves kind gpu for real; nothing here needs the emulator's opt-in there).
// Sizes are small for CI: stories260K (5 layers, hidden 64), a 4 MiB KV pool, 256-token steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class LlmGpuEmulated : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
#if !defined(FERRY_TEST_CUDA_EMULATION)
    skip_reason_ = "built without FERRY_CUDA_EMULATION: no emulated device to serve kind gpu on";
    return;
#endif
    const fs::path model = fs::path(testdata_dir()) / "stories260K-hf-format.derived";
    const fs::path golden = fs::path(testdata_dir()) / "llama2c-stories260K" / "golden_outputs.derived.json";
    if (!fs::exists(model / "model.safetensors") || !fs::exists(golden)) {
      skip_reason_ = "reference data missing: " + model.string() + " or " + golden.string();
      return;
    }
    golden_ = read_json_file(golden);
    repo_ = new TempDir();
    const std::string sizes = R"("kv_cache_memory_bytes":4194304,"max_num_batched_tokens":256,"max_num_seqs":8)";
    add_model("gpu", R"({"backend":"llm","instance_group":[{"count":1,"kind":"gpu","gpus":[0]}],)" + sizes + "}", model);
    add_model("cpu", R"({"backend":"llm",)" + sizes + "}", model);
    // int4 with a group size and zero points that are not the defaults, on both kinds; the gpu one
    // without CUDA graphs (every other gpu model replays its decode steps' graphs).
    const std::string int4 = R"("weight_dtype":"int4","weight_group_size":64,"weight_zero_points":true,)";
    add_model("gpu_int4", R"({"backend":"llm","instance_group":[{"kind":"gpu"}],"cuda_graphs":false,)" + int4 + sizes + "}",
              model);
    add_model("cpu_int4", R"({"backend":"llm",)" + int4 + sizes + "}", model);
    // Speculative decoding with a draft model on a gpu instance: the "cpu" folder (stories260K) drafts
    // for itself, on its own CudaEngine.
    add_model("gpu_draft", R"({"backend":"llm","instance_group":[{"kind":"gpu"}],)" + sizes +
                               R"(,"speculative":{"method":"draft","draft_model":"cpu","num_speculative_tokens":3,)"
                               R"("disable_by_batch_size":8,"min_acceptance_rate":0}})",
              model);
    // The KV pool as 2 % of the emulated device's free memory (1 GiB in all), and the key refused on cpu.
    add_model("gpu_fraction", R"({"backend":"llm","instance_group":[{"kind":"gpu"}],"kv_cache_memory_fraction":0.02,)"
                                  R"("max_num_batched_tokens":256,"max_num_seqs":8})", model);
    add_model("cpu_fraction", R"({"backend":"llm","kv_cache_memory_fraction":0.5})", model);
    model_config_ = read_json_file(model / "config.json");
    // The server process inherits the opt-in; unset again so that nothing else here depends on it.
    // The cpu instances on the portable linear path, which keeps activations in fp32 as the gpu
    // kernels do (the SIMD paths quantize them per block for int4 decode).
    setenv("FERRY_CUDA_EMULATED_DEVICE", "1", 1);
    setenv("FERRY_LINEAR_ISA", "portable", 1);
    server_ = ServerProcess::start(repo_->path()).release();
    unsetenv("FERRY_CUDA_EMULATED_DEVICE");
    unsetenv("FERRY_LINEAR_ISA");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  static void add_model(const std::string& name, const std::string& config, const fs::path& model) {
    fs::create_directories(repo_->path() + "/" + name);
    fs::copy(model, repo_->path() + "/" + name + "/1", fs::copy_options::recursive);
    write_file(repo_->path() + "/" + name + "/config.json", config);
  }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
    ASSERT_EQ(http_->get("/v2/models/gpu/ready").status, 200) << http_->get("/v2/models/gpu/ready").body;
  }
  void TearDown() override {
    if (!http_) return;
    EXPECT_TRUE(eventually([&] { return stats("gpu")["kv_blocks_used"].asInt() == 0; }, 5000ms)) << dump(stats("gpu"));
  }
  Json::Value stats(const std::string& model) {
    return parse(http_->get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
  }
  // A greedy KServe generate body over token ids, max_tokens long whatever the model says (ignore_eos).
  static Json::Value greedy_body(const Json::Value& input_ids, Json::UInt max_tokens) {
    Json::Value body;
    body["input_ids"] = input_ids;
    body["max_tokens"] = max_tokens;
    body["temperature"] = 0;
    body["ignore_eos"] = true;
    return body;
  }
  Json::Value post_json(const std::string& path, const std::string& body) {
    auto r = http_->post(path, body);
    EXPECT_EQ(r.status, 200) << path << " " << body << " -> " << r.body;
    return parse(r.body);
  }

  static inline std::string skip_reason_;
  static inline Json::Value golden_;
  static inline Json::Value model_config_;
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  std::unique_ptr<HttpClient> http_;
};

TEST_F(LlmGpuEmulated, GreedyGoldenContinuationOnGenerateAndCompletions) {
  const Json::Value& c = golden_case(golden_, "prompt_once_upon_a_time_greedy_64");
  ASSERT_TRUE(c.isObject());
  Json::Value body = greedy_body(c["prompt_token_ids"], c["generated_token_ids"].size());
  auto j = post_json("/v2/models/gpu/generate", dump(body));
  EXPECT_EQ(j["output_ids"], c["generated_token_ids"]);
  EXPECT_EQ(j["finish_reason"].asString(), "length");

  // The first 16 tokens of the same continuation (fewer emulated steps): a prefix of llama2.c's text,
  // which is the prompt followed by the continuation.
  Json::Value completion;
  completion["model"] = "gpu";
  completion["prompt"] = c["prompt"];
  completion["max_tokens"] = 16;
  completion["temperature"] = 0;
  completion["ignore_eos"] = true;
  auto v1 = post_json("/v1/completions", dump(completion));
  const std::string text = v1["choices"][0]["text"].asString();
  EXPECT_GT(text.size(), 16u) << dump(v1);
  EXPECT_EQ(c["stdout_text"].asString().rfind(c["prompt"].asString() + text, 0), 0u) << dump(v1);
  EXPECT_EQ(v1["usage"]["completion_tokens"].asInt(), 16);
  EXPECT_GT(stats("gpu")["instances"][0]["finished"].asInt(), 0) << "the gpu instance answered";
}

TEST_F(LlmGpuEmulated, StreamedDeltasAddUpOnGenerateAndCompletions) {
  const std::string body = R"({"text_input":"Once upon a time","max_tokens":16,"temperature":0,"ignore_eos":true})";
  auto whole = post_json("/v2/models/gpu/generate", body);
  std::string streamed;
  int events = 0;
  http_->post_stream("/v2/models/gpu/generate_stream", body, [&](const std::string& d) {
    ++events;
    streamed += parse(d)["text_output"].asString();
    return true;
  });
  EXPECT_EQ(streamed, whole["text_output"].asString());
  EXPECT_EQ(events, 16) << "one event per generated token";

  const std::string completion =
      R"({"model":"gpu","prompt":"Once upon a time","max_tokens":16,"temperature":0,"ignore_eos":true)";
  const std::string text = post_json("/v1/completions", completion + "}")["choices"][0]["text"].asString();
  EXPECT_EQ(text, whole["text_output"].asString());
  std::string sse_text;
  std::string last;
  http_->post_stream("/v1/completions", completion + R"(,"stream":true})", [&](const std::string& d) {
    last = d;
    if (d != "[DONE]") sse_text += parse(d)["choices"][0]["text"].asString();
    return true;
  });
  EXPECT_EQ(last, "[DONE]");
  EXPECT_EQ(sse_text, text);
}

TEST_F(LlmGpuEmulated, SeededSamplingDrawsTheCpuInstancesTokens) {
  // Both engines feed the same host Sampler; their logits agree to ~1e-6 (llm_cuda_engine_test).
  for (const char* params : {R"("temperature":1.0,"top_p":0.9,"seed":7)", R"("temperature":0.8,"top_k":20,"seed":123)"}) {
    const std::string body = std::string(R"({"text_input":"Once","max_tokens":20,)") + params + "}";
    auto gpu = post_json("/v2/models/gpu/generate", body);
    auto cpu = post_json("/v2/models/cpu/generate", body);
    ASSERT_TRUE(gpu["output_ids"].isArray()) << dump(gpu);
    EXPECT_EQ(gpu["output_ids"], cpu["output_ids"]) << params;
    EXPECT_EQ(gpu["text_output"], cpu["text_output"]) << params;
  }
}

// Logprobs go through the host Sampler on the gpu engine's logits: llama2.c's golden logits give
// them (1e-3, as llm_serving_test on the cpu engine).
TEST_F(LlmGpuEmulated, LogprobsMatchTheGoldenLogits) {
  const Json::Value& c = golden_case(golden_, "bos_only_greedy_200");
  Json::Value body = greedy_body(c["prompt_token_ids"], 8);
  body["logprobs"] = 2;
  auto j = post_json("/v2/models/gpu/generate", dump(body));
  ASSERT_TRUE(j["logprobs"].isArray()) << dump(j);
  int checked = 0;
  const int prompt_len = static_cast<int>(c["prompt_token_ids"].size());
  for (const auto& at : c["logits_at_position"]) {
    const int k = at["pos"].asInt() - (prompt_len - 1);  // generated token k came from this position
    if (k < 0 || k >= static_cast<int>(j["logprobs"].size())) continue;
    std::vector<double> logits;
    for (const auto& x : at["logits"]) logits.push_back(x.asDouble());
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (double x : logits) sum += std::exp(x - mx);
    const Json::Value& lp = j["logprobs"][k];
    EXPECT_NEAR(lp["logprob"].asDouble(), logits[lp["token_id"].asInt()] - mx - std::log(sum), 1e-3) << at["pos"];
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no golden logits overlap the generated positions";
}

// An int4 gpu instance loads the model config's group size and zero points (as the cpu instance
// does: both build the matrices with WeightLoader) and answers as the cpu int4 instance: same
// greedy tokens, logprobs within 1e-4 (a short prompt: every GEMM on the int4 kernel, fp32 x).
TEST_F(LlmGpuEmulated, Int4InstanceUsesTheConfiguredGroupsAndAnswersAsTheCpuInstance) {
  const Json::Value& c = golden_case(golden_, "prompt_once_upon_a_time_greedy_64");
  Json::Value body = greedy_body(c["prompt_token_ids"], 12);
  body["logprobs"] = 1;
  const Json::Value gpu = post_json("/v2/models/gpu_int4/generate", dump(body));
  const Json::Value cpu = post_json("/v2/models/cpu_int4/generate", dump(body));
  ASSERT_EQ(gpu["output_ids"].size(), 12u) << dump(gpu);
  EXPECT_EQ(gpu["output_ids"], cpu["output_ids"]);
  ASSERT_EQ(gpu["logprobs"].size(), cpu["logprobs"].size());
  for (Json::ArrayIndex i = 0; i < gpu["logprobs"].size(); ++i)
    EXPECT_NEAR(gpu["logprobs"][i]["logprob"].asDouble(), cpu["logprobs"][i]["logprob"].asDouble(), 1e-4) << i;
}

// The draft method on a gpu instance: the draft runs on its own CudaEngine; greedy output with
// speculation is the golden continuation token for token, the drafts were proposed and (drafting
// for itself, over the same weights) accepted, and its draft KV blocks go back to zero.
TEST_F(LlmGpuEmulated, DraftModelSpeculationOnTheGpuKeepsTheGreedyGolden) {
  const Json::Value& c = golden_case(golden_, "prompt_once_upon_a_time_greedy_64");
  Json::Value body = greedy_body(c["prompt_token_ids"], 24);
  const Json::Value j = post_json("/v2/models/gpu_draft/generate", dump(body));
  ASSERT_EQ(j["output_ids"].size(), 24u) << dump(j);
  for (Json::ArrayIndex i = 0; i < 24; ++i) EXPECT_EQ(j["output_ids"][i], c["generated_token_ids"][i]) << i;
  const std::string metrics = http_->get("/metrics").body;
  auto counter = [&](const std::string& name) {
    const std::string key = name + "{";
    for (size_t at = metrics.find(key); at != std::string::npos; at = metrics.find(key, at + 1)) {
      const size_t end = metrics.find('\n', at);
      const std::string line = metrics.substr(at, end - at);
      if (line.find("model=\"gpu_draft\"") != std::string::npos && line.find("method=\"draft\"") != std::string::npos)
        return std::stod(line.substr(line.rfind(' ') + 1));
    }
    return -1.0;
  };
  const double proposed = counter("ferry_llm_spec_proposed_tokens_total");
  const double accepted = counter("ferry_llm_spec_accepted_tokens_total");
  EXPECT_GT(proposed, 0) << metrics;
  EXPECT_GT(accepted, 0.5 * proposed) << "a model drafting for itself greedily should see most drafts accepted";
  EXPECT_TRUE(eventually([&] { return stats("gpu_draft")["kv_blocks_used"].asInt() == 0; }, 5000ms));
  const Json::Value st = stats("gpu_draft");
  ASSERT_EQ(st["instances"].size(), 1u) << dump(st);
  ASSERT_TRUE(st["instances"][0].isMember("draft_kv_blocks_used")) << dump(st);
  EXPECT_EQ(st["instances"][0]["draft_kv_blocks_used"].asInt(), 0) << dump(st);
}

// Sequences batched in one step on the gpu engine (several decodes per step, joining and leaving
// at different steps) each get their own greedy answer: the golden continuation's prefix.
TEST_F(LlmGpuEmulated, ConcurrentRequestsAreBatchedAndEachGetsItsOwnAnswer) {
  const Json::Value& c = golden_case(golden_, "prompt_once_upon_a_time_greedy_64");
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      HttpClient http(server_->http_url());
      Json::Value body;
      body["input_ids"] = c["prompt_token_ids"];
      body["max_tokens"] = 8 + 2 * t;
      body["temperature"] = 0;
      body["ignore_eos"] = true;
      auto j = parse(http.post("/v2/models/gpu/generate", dump(body)).body);
      bool ok = j["output_ids"].size() == static_cast<unsigned>(8 + 2 * t);
      for (int i = 0; ok && i < 8 + 2 * t; ++i) ok = j["output_ids"][i] == c["generated_token_ids"][i];
      if (ok) ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 4);
}

TEST_F(LlmGpuEmulated, StopStringsCutTheAnswer) {
  // The greedy continuation of "Once upon a time" is llama2.c's golden text (the test above).
  const Json::Value& c = golden_case(golden_, "prompt_once_upon_a_time_greedy_64");
  const std::string text = c["stdout_text"].asString().substr(c["prompt"].asString().size());
  ASSERT_NE(text.find("Lily"), std::string::npos) << text;
  auto stopped = post_json("/v2/models/gpu/generate",
                           R"({"text_input":"Once upon a time","max_tokens":64,"temperature":0,"stop":["Lily"]})");
  EXPECT_EQ(stopped["finish_reason"].asString(), "stop");
  EXPECT_EQ(stopped["text_output"].asString(), text.substr(0, text.find("Lily")));
}

// kv_cache_memory_fraction 0.02: the pool is 2 % of what was free at load after the engine's own
// allocations. The other gpu model's engine, its 4 MiB pool and this engine (each with cuBLASLt's
// 32 MiB workspace) take well under 256 MiB of the emulated 1 GiB, hence the bounds.
TEST_F(LlmGpuEmulated, KvPoolIsAFractionOfTheFreeDeviceMemory) {
  ASSERT_EQ(http_->get("/v2/models/gpu_fraction/ready").status, 200) << http_->get("/v2/models/gpu_fraction/ready").body;
  const Json::Value& m = model_config_;
  const int64_t block_bytes = 2 * m["num_hidden_layers"].asInt64() * 16 * m["num_key_value_heads"].asInt64() *
                              m["head_dim"].asInt64() * 4;  // K and V, fp32, 16 tokens
  const int64_t blocks = stats("gpu_fraction")["kv_blocks_total"].asInt64();
  const double gib = 1 << 30;
  EXPECT_LE(blocks * block_bytes, 0.02 * gib) << blocks << " blocks of " << block_bytes << " bytes";
  EXPECT_GE(blocks * block_bytes, 0.02 * (gib - (256 << 20)) - block_bytes) << blocks << " blocks";
  Json::Value body;
  body["input_ids"] = golden_case(golden_, "prompt_once_upon_a_time_greedy_64")["prompt_token_ids"];
  body["max_tokens"] = 8;
  body["temperature"] = 0;
  auto j = post_json("/v2/models/gpu_fraction/generate", dump(body));
  ASSERT_EQ(j["output_ids"].size(), 8u) << dump(j);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(j["output_ids"][i], golden_case(golden_, "prompt_once_upon_a_time_greedy_64")["generated_token_ids"][i]);
  EXPECT_TRUE(eventually([&] { return stats("gpu_fraction")["kv_blocks_used"].asInt() == 0; }, 5000ms));

  auto r = http_->get("/v2/models/cpu_fraction/ready");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(parse(r.body)["error"].asString().find("kv_cache_memory_fraction"), std::string::npos) << r.body;
}

TEST_F(LlmGpuEmulated, CancelAndDisconnectFreeTheKvBlocks) {
  int seen = 0;
  http_->post_stream("/v2/models/gpu/generate_stream",
                     R"({"text_input":"Once","max_tokens":400,"temperature":0,"ignore_eos":true})",
                     [&](const std::string&) { return ++seen < 3; });
  EXPECT_EQ(seen, 3);
  EXPECT_TRUE(eventually([&] { return stats("gpu")["kv_blocks_used"].asInt() == 0 && stats("gpu")["running"].asInt() == 0; },
                         5000ms))
      << dump(stats("gpu"));

  const Json::Value last = zmq_cancel_after_first_response(server_->zmq_endpoint(), "gpu", "c");
  EXPECT_EQ(last["error"]["code"].asString(), "CANCELLED") << dump(last);
  EXPECT_GE(stats("gpu")["cancelled"].asInt(), 2) << dump(stats("gpu"));
}

}  // namespace
}  // namespace ferry::testing
