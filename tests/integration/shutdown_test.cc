// SIGTERM during streams: in-flight requests finish (or end with a clear error after the shutdown
// timeout, or at once on a second SIGTERM), new requests are refused, and the server exits 0.
#include <gtest/gtest.h>

#include <signal.h>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;

TEST(Shutdown, SigtermLetsAStreamFinishThenExitsZero) {
  TempDir repo;
  add_echo_model(repo.path(), "echo");
  auto server = ServerProcess::start(repo.path(), {"--shutdown-timeout", "20"});
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  std::vector<Json::Value> events;
  std::thread stopper;
  auto r = http.post_stream("/v2/models/echo/generate_stream",
                            R"({"text_input":"s","parameters":{"responses":8,"delay_ms":100}})",
                            [&](const std::string& d) {
                              events.push_back(parse(d));
                              if (events.size() == 1) {
                                stopper = std::thread([&] { kill(server->pid(), SIGTERM); });
                              }
                              if (events.size() == 2) {
                                // Draining: new requests are refused while the stream goes on.
                                HttpClient other(server->http_url());
                                EXPECT_EQ(other.post("/v2/models/echo/infer", infer_body("late")).status, 503);
                              }
                              return true;
                            });
  stopper.join();
  EXPECT_EQ(r.status, 200);
  ASSERT_EQ(events.size(), 8u) << "the in-flight stream finished";
  EXPECT_EQ(events.back()["finish_reason"].asString(), "stop");
  EXPECT_EQ(server->stop(SIGTERM, 10000ms), 0) << server->log();
}

TEST(Shutdown, StreamsPastTheTimeoutEndWithAnErrorAndTheServerExitsZero) {
  TempDir repo;
  add_echo_model(repo.path(), "echo");
  auto server = ServerProcess::start(repo.path(), {"--shutdown-timeout", "1"});
  ASSERT_NE(server, nullptr);
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["x"]}])");
  Json::Value p = parse(R"({"responses":1000,"delay_ms":50})");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("long", "echo", in, p, true)).ok());
  ASSERT_TRUE(zmq.receive(5000ms).has_value());
  auto t0 = std::chrono::steady_clock::now();
  kill(server->pid(), SIGTERM);
  Json::Value last;
  while (auto r = zmq.receive(5000ms)) {
    last = *r;
    if (last["final"].asBool()) break;
  }
  EXPECT_TRUE(last["final"].asBool()) << dump(last);
  EXPECT_EQ(last["error"]["code"].asString(), "CANCELLED") << dump(last);
  EXPECT_EQ(server->stop(SIGTERM, 10000ms), 0) << server->log();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
}

// A second SIGTERM during the drain is logged and ends it at once: the stream that would have had
// 30 s more ends CANCELLED right away and the server exits 0.
TEST(Shutdown, SecondSigtermEndsTheDrainAtOnce) {
  TempDir repo;
  add_echo_model(repo.path(), "echo");
  auto server = ServerProcess::start(repo.path(), {"--shutdown-timeout", "30"});
  ASSERT_NE(server, nullptr);
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["x"]}])");
  Json::Value p = parse(R"({"responses":1000,"delay_ms":50})");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("long", "echo", in, p, true)).ok());
  ASSERT_TRUE(zmq.receive(5000ms).has_value());
  kill(server->pid(), SIGTERM);
  ASSERT_TRUE(server->wait_for_log("shutting down: draining", 5000ms)) << server->log();
  // Still draining: the stream goes on.
  auto during = zmq.receive(2000ms);
  ASSERT_TRUE(during.has_value());
  EXPECT_FALSE((*during)["final"].asBool()) << dump(*during);
  auto t0 = std::chrono::steady_clock::now();
  kill(server->pid(), SIGTERM);
  Json::Value last;
  while (auto r = zmq.receive(5000ms)) {
    last = *r;
    if (last["final"].asBool()) break;
  }
  EXPECT_TRUE(last["final"].asBool()) << dump(last);
  EXPECT_EQ(last["error"]["code"].asString(), "CANCELLED") << dump(last);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "the second SIGTERM did not end the 30 s drain";
  EXPECT_EQ(server->stop(SIGTERM, 10000ms), 0) << server->log();
  EXPECT_NE(server->log().find("second SIGTERM while draining"), std::string::npos) << server->log();
}

}  // namespace
}  // namespace ferry::testing
