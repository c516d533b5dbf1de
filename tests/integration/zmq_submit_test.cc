// The ZeroMQ socket thread never waits for a backend's submit: while a long prompt is being
// tokenized for one client, another client's request is answered, and a cancel sent right behind
// its request (while that request may still be in submit) still cancels it.
#include <gtest/gtest.h>

#include <filesystem>

#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::ZmqClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

Json::Value text_inputs(const std::string& text) {
  Json::Value in;
  in["name"] = "text_input";
  in["datatype"] = "BYTES";
  in["shape"].append(1);
  in["data"].append(text);
  Json::Value list(Json::arrayValue);
  list.append(in);
  return list;
}

class ZmqSubmit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    fs::copy(fs::path(default_repository()) / "tiny-llama", repo_->path() + "/tiny-llama", fs::copy_options::recursive);
    server_ = ServerProcess::start(repo_->path()).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static TempDir* repo_;
  static ServerProcess* server_;
};
TempDir* ZmqSubmit::repo_ = nullptr;
ServerProcess* ZmqSubmit::server_ = nullptr;

TEST_F(ZmqSubmit, AnotherClientIsAnsweredWhileALongPromptIsTokenized) {
  ZmqClient slow, quick;
  ASSERT_TRUE(slow.connect(server_->zmq_endpoint()).ok());
  ASSERT_TRUE(quick.connect(server_->zmq_endpoint()).ok());
  // Tokenizing ~200 KB of varied text takes the backend hundreds of milliseconds (its whole cost is
  // in submit: a tokenize task answers from there); an echo request takes about one.
  std::string text;
  for (int i = 0; text.size() < 200000; ++i) text += "The ferry number " + std::to_string(i * 7919) + " left the pier. ";
  Json::Value tokenize;
  tokenize["task"] = "tokenize";
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(slow.send(ZmqClient::infer_message("long" + std::to_string(i), "tiny-llama", text_inputs(text), tokenize,
                                                   false)).ok());
  }
  ASSERT_TRUE(quick.send(ZmqClient::infer_message("q", "echo", text_inputs("hi"), Json::Value(), false)).ok());

  auto answer = quick.receive(10000ms);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ((*answer)["id"].asString(), "q");
  // Before the change the socket thread ran the three submits first, and their answers were
  // queued before the echo request was even read.
  EXPECT_FALSE(slow.receive(0ms).has_value()) << "the long prompts were answered before the short request";
  for (int i = 0; i < 3; ++i) {
    auto r = slow.receive(30000ms);
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE((*r)["final"].asBool()) << dump(*r);
    EXPECT_FALSE((*r).isMember("error")) << dump(*r);
  }
}

TEST_F(ZmqSubmit, CancelRightBehindTheRequestCancelsIt) {
  ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value p;
  p["max_tokens"] = 3000;
  p["ignore_eos"] = true;
  for (int i = 0; i < 5; ++i) {
    std::string id = "c";
    id += std::to_string(i);  // (not "c" + ...: GCC 12 warns falsely on that, -Wrestrict)
    ASSERT_TRUE(zmq.send(ZmqClient::infer_message(id, "tiny-llama", text_inputs("The ferry"), p, false)).ok());
    ASSERT_TRUE(zmq.send(ZmqClient::cancel_message(id)).ok());
    auto r = zmq.receive(20000ms);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ((*r)["id"].asString(), id);
    EXPECT_EQ((*r)["error"]["code"].asString(), "CANCELLED") << dump(*r);
  }
}

}  // namespace
}  // namespace ferry::testing
