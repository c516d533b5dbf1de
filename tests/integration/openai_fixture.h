// The fixture of the OpenAI-endpoint integration tests (openai_api_test.cc,
// openai_prompt_logprobs_test.cc): one real ferry-server per test binary serving the trained
// stories260K checkpoint as `stories` (a drop-in HF folder; tests that need it skip without it), a
// copy of the default repository's tiny-llama (it has a chat template), and `one_at_a_time`
// (tiny-llama, one sequence at a time with short queues, for the 429 and 408 answers); with
// helpers to post, read a stream's events and the backend's stats.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {

inline constexpr const char* kPrompt = "Once upon a time";

class OpenAiApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    const std::filesystem::path stories = std::filesystem::path(testdata_dir()) / "stories260K-hf-format.derived";
    if (std::filesystem::exists(stories / "model.safetensors")) {
      std::filesystem::copy(stories, repo_->path() + "/stories", std::filesystem::copy_options::recursive);  // a drop-in HF snapshot
    } else {
      stories_missing_ = "reference data missing: " + stories.string();
    }
    const std::filesystem::path tiny = std::filesystem::path(default_repository()) / "tiny-llama";
    std::filesystem::copy(tiny, repo_->path() + "/tiny-llama", std::filesystem::copy_options::recursive);
    // One sequence at a time with short queues: for the 429 and 408 answers.
    std::filesystem::create_directories(repo_->path() + "/one_at_a_time/1");
    std::filesystem::copy(tiny / "1", repo_->path() + "/one_at_a_time/1", std::filesystem::copy_options::recursive);
    write_file(repo_->path() + "/one_at_a_time/config.json",
               R"({"backend":"llm","load_format":"dummy","seed":0,"max_num_seqs":1,"kv_cache_memory_bytes":67108864,
                   "priority_level_config":[{"max_queue_size":4},{"max_queue_size":2},{"max_queue_size":2}]})");
    server_ = ServerProcess::start(repo_->path(), {"--http-max-body-bytes", "65536"}).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<client::HttpClient>(server_->http_url());
  }
  bool stories() { return stories_missing_.empty(); }

  client::HttpResult post(const std::string& path, const std::string& body) { return http_->post(path, body); }
  Json::Value post_json(const std::string& path, const std::string& body) {
    auto r = http_->post(path, body);
    EXPECT_EQ(r.status, 200) << path << " " << body << " -> " << r.body;
    return parse(r.body);
  }
  // The data of each event of a stream, [DONE] included.
  std::vector<std::string> events(const std::string& path, const std::string& body) {
    std::vector<std::string> out;
    auto r = http_->post_stream(path, body, [&](const std::string& d) {
      out.push_back(d);
      return true;
    });
    EXPECT_EQ(r.status, 200) << body;
    EXPECT_EQ(r.content_type.rfind("text/event-stream", 0), 0u) << r.content_type;
    return out;
  }
  Json::Value backend_stats(const std::string& model) {
    return parse(http_->get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
  }
  // A completion body for stories with `extra` fields merged in.
  // `base` with the fields of the JSON object text "{extra}" set over it.
  static std::string with(const std::string& base, const std::string& extra) {
    Json::Value b = parse(base), e = parse("{" + extra + "}");
    for (const auto& k : e.getMemberNames()) b[k] = e[k];
    return dump(b);
  }
  // A greedy completion body for stories, with `extra` fields set over it.
  static std::string completion(const std::string& extra = "") {
    return with(R"({"model":"stories","prompt":"Once upon a time","max_tokens":20,"temperature":0,"ignore_eos":true})",
                extra);
  }
  static std::string chat(const std::string& extra = "") {
    return with(R"({"model":"tiny-llama","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":"Hello!"}],"max_tokens":6,"temperature":0})",
                extra);
  }

  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  static inline std::string stories_missing_;
  std::unique_ptr<client::HttpClient> http_;
};

#define NEED_STORIES() \
  if (!stories()) GTEST_SKIP() << stories_missing_

}  // namespace ferry::testing
