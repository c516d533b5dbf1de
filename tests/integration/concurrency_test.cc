// 64 concurrent clients on each frontend against one server; every response must match its request.
#include <gtest/gtest.h>

#include <atomic>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;
constexpr int kClients = 64;
constexpr int kRequestsPerClient = 10;

class Concurrency : public ::testing::Test {
 protected:
  void SetUp() override {
    add_echo_model(repo_.path(), "echo");
    server_ = ServerProcess::start(repo_.path());
    ASSERT_NE(server_, nullptr);
  }
  TempDir repo_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(Concurrency, SixtyFourHttpClientsEachGetTheirOwnAnswers) {
  std::atomic<int> good{0}, bad{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      client::HttpClient http(server_->http_url());
      for (int i = 0; i < kRequestsPerClient; ++i) {
        std::string text = "client " + std::to_string(c) + " request " + std::to_string(i);
        Json::Value p;
        p["delay_ms"] = (c + i) % 3;
        if (i % 2 == 0) {
          auto r = http.post("/v2/models/echo/infer", infer_body(text, p));
          bool ok = r.status == 200 && parse(r.body)["outputs"][0]["data"][0].asString() == text;
          (ok ? good : bad)++;
        } else {
          std::vector<std::string> got;
          p["responses"] = 3;
          Json::Value body;
          body["text_input"] = text;
          body["parameters"] = p;
          auto r = http.post_stream("/v2/models/echo/generate_stream", dump(body), [&](const std::string& d) {
            got.push_back(parse(d)["text_input"].asString());
            return true;
          });
          bool ok = r.status == 200 && got.size() == 3 && got[0] == text && got[2] == text;
          (ok ? good : bad)++;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(good.load(), kClients * kRequestsPerClient);
}

TEST_F(Concurrency, SixtyFourZmqClientsEachGetTheirOwnAnswers) {
  std::atomic<int> good{0}, bad{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      client::ZmqClient zmq;
      if (!zmq.connect(server_->zmq_endpoint()).ok()) {
        bad += kRequestsPerClient;
        return;
      }
      // All of this client's requests in flight at once, streamed, interleaved on one socket.
      Json::Value p;
      p["responses"] = 2;
      p["delay_ms"] = c % 3;
      // Payloads are built by appending: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
      auto payload = [c](const std::string& id) {
        std::string s = "c";
        s += std::to_string(c);
        s += "r";
        s += id;
        return s;
      };
      for (int i = 0; i < kRequestsPerClient; ++i) {
        std::string id = std::to_string(i);
        Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":[""]}])");
        in[0]["data"][0] = payload(id);
        if (!zmq.send(client::ZmqClient::infer_message(id, "echo", in, p, true)).ok()) ++bad;
      }
      std::map<std::string, int> seen;
      int finals = 0;
      while (finals < kRequestsPerClient) {
        auto r = zmq.receive(10000ms);
        if (!r) break;
        std::string id = (*r)["id"].asString();
        if ((*r)["outputs"][0]["data"][0].asString() != payload(id)) {
          ++bad;
          continue;
        }
        ++seen[id];
        if ((*r)["final"].asBool()) {
          ++finals;
          (seen[id] == 2 ? good : bad)++;
        }
      }
      bad += kRequestsPerClient - finals;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(good.load(), kClients * kRequestsPerClient);
}

}  // namespace
}  // namespace ferry::testing
