// The ZeroMQ frontend against a real ferry-server: request/response, streaming, interleaved
// requests on one socket, cancel (seen by the backend), and malformed messages.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::ZmqClient;
using namespace std::chrono_literals;

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

class ZmqApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    server_ = ServerProcess::start(repo_->path()).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(zmq_.connect(server_->zmq_endpoint()).ok());
  }
  Json::Value next() {
    auto r = zmq_.receive(5000ms);
    return r ? *r : Json::Value("timeout");
  }
  static TempDir* repo_;
  static ServerProcess* server_;
  ZmqClient zmq_;
};
TempDir* ZmqApi::repo_ = nullptr;
ServerProcess* ZmqApi::server_ = nullptr;

TEST_F(ZmqApi, NonStreamingRequestGetsOneFinalResponse) {
  ASSERT_TRUE(zmq_.send(ZmqClient::infer_message("a1", "echo", text_inputs("hello"), Json::Value(), false)).ok());
  auto r = next();
  EXPECT_EQ(r["id"].asString(), "a1");
  EXPECT_TRUE(r["final"].asBool());
  EXPECT_EQ(r["model"].asString(), "echo");
  EXPECT_EQ(r["outputs"][0]["data"][0].asString(), "hello");
  EXPECT_FALSE(zmq_.receive(100ms).has_value()) << "exactly one response";
}

TEST_F(ZmqApi, StreamingRequestsInterleaveOnOneSocket) {
  Json::Value p;
  p["responses"] = 4;
  p["delay_ms"] = 5;
  for (int i = 0; i < 8; ++i) {
    // Built by appending: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string under -O2.
    std::string id = "s", text = "t";
    id += std::to_string(i);
    text += std::to_string(i);
    ASSERT_TRUE(zmq_.send(ZmqClient::infer_message(id, "echo", text_inputs(text), p, true)).ok());
  }
  std::map<std::string, int> counts;
  std::set<std::string> finals;
  while (finals.size() < 8) {
    auto r = next();
    ASSERT_TRUE(r.isObject()) << dump(r);
    std::string id = r["id"].asString();
    ASSERT_FALSE(finals.count(id)) << "response after the final for " << id;
    EXPECT_EQ(r["outputs"][0]["data"][0].asString().substr(1), id.substr(1)) << "response matched to its request";
    ++counts[id];
    if (r["final"].asBool()) finals.insert(id);
  }
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 4) << id;
}

TEST_F(ZmqApi, CancelEndsTheStreamAndTheBackendSeesIt) {
  Json::Value p;
  p["responses"] = 1000;
  p["delay_ms"] = 10;
  ASSERT_TRUE(zmq_.send(ZmqClient::infer_message("c1", "echo", text_inputs("x"), p, true)).ok());
  auto first = next();
  ASSERT_EQ(first["id"].asString(), "c1");
  ASSERT_TRUE(zmq_.send(ZmqClient::cancel_message("c1")).ok());
  Json::Value last;
  for (int i = 0; i < 1000; ++i) {
    last = next();
    if (!last.isObject() || last["final"].asBool()) break;
  }
  ASSERT_TRUE(last["final"].asBool()) << dump(last);
  EXPECT_EQ(last["error"]["code"].asString(), "CANCELLED");
  client::HttpClient http(server_->http_url());
  auto stats = parse(http.get("/v2/models/echo/stats").body);
  EXPECT_GE(stats["model_stats"][0]["backend"]["cancelled"].asInt(), 1);
  // A cancel for a finished or unknown request is harmless and gets no reply.
  ASSERT_TRUE(zmq_.send(ZmqClient::cancel_message("c1")).ok());
  EXPECT_FALSE(zmq_.receive(200ms).has_value());
}

TEST_F(ZmqApi, MalformedMessagesGetAnErrorAndNothingElse) {
  struct Case {
    std::string payload;
    const char* code;
    const char* needle;
  } cases[] = {
      {"not json", "INVALID_ARGUMENT", "malformed JSON"},
      {"[1,2]", "INVALID_ARGUMENT", "JSON object"},
      {R"({"model":"echo"})", "INVALID_ARGUMENT", "'id'"},
      {R"({"id":"m1","type":"dance"})", "INVALID_ARGUMENT", "unknown message type"},
      {R"({"id":"m1b","type":{"x":1}})", "INVALID_ARGUMENT", "'type'"},
      {R"({"id":"m2","model":"nope","inputs":[]})", "INVALID_ARGUMENT", "'inputs'"},
      {R"({"id":"m3","model":"nope","inputs":[{"name":"a","datatype":"INT32","shape":[1],"data":[1]}]})", "NOT_FOUND",
       "unknown model"},
      {R"({"id":"m4","model":"echo","stream":"yes","inputs":[{"name":"a","datatype":"INT32","shape":[1],"data":[1]}]})",
       "INVALID_ARGUMENT", "'stream'"},
      {R"({"id":"m5","model":"echo","inputs":[{"name":"a","datatype":"INT32","shape":[2],"data":[1]}]})",
       "INVALID_ARGUMENT", "2 elements"},
  };
  for (const auto& c : cases) {
    ASSERT_TRUE(zmq_.send_raw(c.payload).ok());
    auto r = next();
    EXPECT_TRUE(r["final"].asBool()) << c.payload;
    EXPECT_TRUE(r["refused"].asBool()) << c.payload;
    EXPECT_EQ(r["error"]["code"].asString(), c.code) << c.payload << " -> " << dump(r);
    EXPECT_NE(r["error"]["message"].asString().find(c.needle), std::string::npos) << dump(r);
    EXPECT_FALSE(zmq_.receive(50ms).has_value()) << "one reply only for " << c.payload;
  }
  // The socket and the server still work.
  ASSERT_TRUE(zmq_.send(ZmqClient::infer_message("ok", "echo", text_inputs("fine"), Json::Value(), false)).ok());
  EXPECT_EQ(next()["outputs"][0]["data"][0].asString(), "fine");
}

TEST_F(ZmqApi, DuplicateIdInFlightIsRefused) {
  Json::Value p;
  p["delay_ms"] = 300;
  ASSERT_TRUE(zmq_.send(ZmqClient::infer_message("dup", "echo", text_inputs("1"), p, false)).ok());
  ASSERT_TRUE(zmq_.send(ZmqClient::infer_message("dup", "echo", text_inputs("2"), p, false)).ok());
  auto a = next();
  EXPECT_EQ(a["error"]["code"].asString(), "INVALID_ARGUMENT") << dump(a);
  auto b = next();
  EXPECT_EQ(b["outputs"][0]["data"][0].asString(), "1");
}

}  // namespace
}  // namespace ferry::testing
