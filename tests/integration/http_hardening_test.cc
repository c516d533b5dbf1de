// Hardening of the HTTP layer against one hostile client (issue 12, part A), on a real
// ferry-server: JSON nested deep enough to overflow a civetweb worker's stack, at every JSON entry
// point (HTTP endpoints, ZeroMQ, config files); the server must answer 400 and keep serving.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/zmq_client.h"
#include "common/json_parse.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/raw_http.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// {"<key>": [[...[1]...]]} whose deepest nesting (the object included) is `depth` >= 1.
std::string nested_object(const std::string& key, int depth) {
  std::string s = "{\"" + key + "\":";
  s.append(static_cast<size_t>(depth - 1), '[');
  s += '1';
  s.append(static_cast<size_t>(depth - 1), ']');
  s += '}';
  return s;
}

// The depths every entry point is tried with: shallow, at and just over the limit, and the depths
// that crashed the server before the limit (198 overflowed a 100 KiB worker stack).
std::vector<int> depths_to_try() { return {1, 2, 50, kMaxJsonDepth, kMaxJsonDepth + 1, 198, 1000, 100000}; }

class JsonDepth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    fs::copy(fs::path(default_repository()) / "tiny-llama", repo_->path() + "/tiny-llama", fs::copy_options::recursive);
    write_file(repo_->path() + "/tiny-llama/config.json",
               R"({"backend":"llm","load_format":"dummy","seed":0,"max_model_len":64,"kv_cache_num_blocks":16})");
    // A model whose config.json nests 1000 deep: it fails to load, and nothing else does.
    add_echo_model(repo_->path(), "deep-config", {1}, nested_object("backend", 1000));
    server_ = ServerProcess::start(repo_->path()).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static bool alive() { return raw_http(server_->http_port(), "GET", "/v2/health/live").status == 200; }
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(JsonDepth, EveryHttpJsonEndpointRefusesDeepBodiesWith400AndKeepsServing) {
  struct Endpoint {
    const char* path;
    const char* key;  // the body's top-level key that holds the nesting
    bool openai;      // OpenAI's error object instead of KServe's {"error": "..."}
  };
  const Endpoint endpoints[] = {
      {"/v2/models/echo/infer", "inputs", false},
      {"/v2/models/echo/generate", "text_input", false},
      {"/v2/models/echo/generate_stream", "text_input", false},
      {"/v2/models/tiny-llama/generate", "text_input", false},
      {"/v2/models/tiny-llama/generate_stream", "text_input", false},
      {"/v2/repository/index", "ready", false},
      {"/v2/repository/models/echo/load", "parameters", false},
      {"/v1/completions", "prompt", true},
      {"/v1/chat/completions", "messages", true},
      {"/tokenize", "prompt", true},
      {"/detokenize", "tokens", true},
  };
  for (const Endpoint& e : endpoints) {
    for (int depth : depths_to_try()) {
      SCOPED_TRACE(std::string(e.path) + " depth " + std::to_string(depth));
      auto r = raw_http(server_->http_port(), "POST", e.path, "Content-Type: application/json\r\n",
                        nested_object(e.key, depth));
      ASSERT_NE(r.status, 0) << "no answer: the server crashed?\n" << server_->log().substr(0, 4000);
      Json::Value body = parse(r.body);
      std::string message = e.openai ? body["error"]["message"].asString() : body["error"].asString();
      if (depth > kMaxJsonDepth) {
        EXPECT_EQ(r.status, 400) << r.body;
        EXPECT_NE(message.find("deeper than " + std::to_string(kMaxJsonDepth)), std::string::npos) << r.body;
        if (e.openai) {
          EXPECT_EQ(body["error"]["type"].asString(), "invalid_request_error") << r.body;
        }
      } else {
        // Within the limit the body is parsed; what the endpoint makes of it is not this test's concern.
        EXPECT_EQ(message.find("deeper than"), std::string::npos) << r.body;
      }
      ASSERT_TRUE(alive());
    }
  }
}

TEST_F(JsonDepth, ZmqRefusesDeepMessagesWith400AndKeepsServing) {
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  for (int depth : depths_to_try()) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    std::string message = nested_object("inputs", depth);
    message.insert(1, R"("id":"deep","type":"infer","model":"echo",)");
    ASSERT_TRUE(zmq.send_raw(message).ok());
    auto reply = zmq.receive(10s);
    ASSERT_TRUE(reply.has_value()) << "no reply";
    const std::string error = (*reply)["error"]["message"].asString();
    if (depth > kMaxJsonDepth) {
      EXPECT_EQ((*reply)["error"]["status"].asInt(), 400) << dump(*reply);
      EXPECT_NE(error.find("deeper than"), std::string::npos) << dump(*reply);
    } else {
      EXPECT_EQ(error.find("deeper than"), std::string::npos) << dump(*reply);
    }
    ASSERT_TRUE(alive());
  }
}

TEST_F(JsonDepth, ADeepConfigFileFailsItsModelOnly) {
  auto index = raw_http(server_->http_port(), "POST", "/v2/repository/index");
  ASSERT_EQ(index.status, 200) << index.body;
  bool found = false;
  for (const auto& m : parse(index.body)) {
    if (m["name"].asString() == "deep-config") {
      found = true;
      EXPECT_EQ(m["state"].asString(), "UNAVAILABLE") << dump(m);
      EXPECT_NE(m["reason"].asString().find("deeper than"), std::string::npos) << dump(m);
    }
    if (m["name"].asString() == "echo") {
      EXPECT_EQ(m["state"].asString(), "READY") << dump(m);
    }
  }
  EXPECT_TRUE(found) << index.body;
  EXPECT_TRUE(alive());
}

}  // namespace
}  // namespace ferry::testing
