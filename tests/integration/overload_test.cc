// Overload against a real ferry-server: tiny-llama with one sequence slot and a queue of 2. With
// the slot and the queue taken, a flood of requests over every protocol (KServe generate and
// generate_stream, OpenAI completions and chat, ZeroMQ) is refused with 429 and a JSON error at
// once, while /v2/health/live, /v2/health/ready and /metrics keep answering 200. Afterwards no KV
// block is in use and the model serves again.
//
// The bounds are on the latency of a refusal and of a health check, not on throughput: a refusal
// must not wait for the queue (500 ms is generous: it is ~1 ms when the machine is idle).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <cstdio>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using client::ZmqClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr double kRefusalBoundMs = 500;
constexpr double kHealthBoundMs = 1000;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Json::Value backend_stats(const ServerProcess& server) {
  HttpClient http(server.http_url());
  return parse(http.get("/v2/models/tiny-llama/stats").body)["model_stats"][0]["backend"];
}

// A long greedy generation over ZeroMQ that keeps the slot (or a queue place) taken.
Json::Value long_request(const std::string& id) {
  return ZmqClient::infer_message(id, "tiny-llama",
                                  parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once"]}])"),
                                  parse(R"({"max_tokens":4000,"temperature":0,"ignore_eos":true})"), true);
}

TEST(Overload, BeyondTheQueueRequestsGet429FastAndHealthKeepsAnswering) {
  TempDir repo;
  fs::copy(fs::path(default_repository()) / "tiny-llama", repo.path() + "/tiny-llama", fs::copy_options::recursive);
  // One sequence at a time, one priority level whose queue holds 2; one matmul thread leaves the
  // other cores to the frontends, as a loaded server's would be.
  write_file(repo.path() + "/tiny-llama/config.json",
             R"({"backend":"llm","load_format":"dummy","seed":0,"max_num_seqs":1,"num_threads":1,
                 "kv_cache_memory_bytes":16777216,"priority_levels":1,
                 "priority_level_config":[{"max_queue_size":2}]})");
  auto server = ServerProcess::start(repo.path());
  ASSERT_NE(server, nullptr);

  // The slot: a stream that has started. Then the queue: two more that wait behind it.
  ZmqClient holder;
  ASSERT_TRUE(holder.connect(server->zmq_endpoint()).ok());
  ASSERT_TRUE(holder.send(long_request("running")).ok());
  auto first = holder.receive(10000ms);
  ASSERT_TRUE(first.has_value());
  ASSERT_FALSE(first->isMember("error")) << dump(*first);
  for (const char* id : {"queued1", "queued2"}) ASSERT_TRUE(holder.send(long_request(id)).ok());
  ASSERT_TRUE(eventually([&] { return backend_stats(*server)["waiting"].asInt() == 2; }, 5000ms))
      << dump(backend_stats(*server));

  // Health and metrics, polled through the flood.
  std::atomic<bool> flooding{true};
  std::atomic<int> health_checks{0}, health_failures{0};
  std::atomic<double> worst_health_ms{0};
  std::thread health([&] {
    HttpClient http(server->http_url());
    while (flooding) {
      for (const char* path : {"/v2/health/live", "/v2/health/ready", "/metrics"}) {
        auto t0 = Clock::now();
        auto r = http.get(path);
        double ms = ms_since(t0);
        if (ms > worst_health_ms) worst_health_ms = ms;
        ++health_checks;
        if (r.status != 200) ++health_failures;
      }
    }
  });

  // The flood: every protocol, from many clients at once.
  constexpr int kClients = 16, kRequestsPerClient = 25;
  std::mutex mu;
  std::vector<double> refusal_ms;
  std::vector<std::string> unexpected;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      HttpClient http(server->http_url());
      ZmqClient zmq;
      if (!zmq.connect(server->zmq_endpoint()).ok()) return;
      for (int i = 0; i < kRequestsPerClient; ++i) {
        const int kind = (c + i) % 5;
        long status = 0;
        Json::Value error;
        auto t0 = Clock::now();
        if (kind == 0) {
          auto r = http.post("/v2/models/tiny-llama/generate", R"({"text_input":"Once","max_tokens":8})");
          status = r.status;
          error = parse(r.body)["error"];
        } else if (kind == 1) {
          // A stream refused before it started is a plain JSON error, not an event stream.
          auto r = http.post("/v2/models/tiny-llama/generate_stream", R"({"text_input":"Once","max_tokens":8})");
          status = r.status;
          error = parse(r.body)["error"];
        } else if (kind == 2) {
          auto r = http.post("/v1/completions", R"({"model":"tiny-llama","prompt":"Once","max_tokens":8})");
          status = r.status;
          error = parse(r.body)["error"]["message"];
        } else if (kind == 3) {
          auto r = http.post("/v1/chat/completions",
                             R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true})");
          status = r.status;
          error = parse(r.body)["error"]["message"];
        } else {
          std::string id = "flood-" + std::to_string(c) + "-" + std::to_string(i);
          Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once"]}])");
          std::optional<Json::Value> r;
          if (zmq.send(ZmqClient::infer_message(id, "tiny-llama", in, parse(R"({"max_tokens":8})"), false)).ok()) {
            r = zmq.receive(5000ms);
          }
          status = r ? (*r)["error"]["status"].asInt() : 0;
          error = r ? (*r)["error"]["message"] : Json::Value();
        }
        double ms = ms_since(t0);
        std::lock_guard<std::mutex> lock(mu);
        if (status == 429 && error.isString() && !error.asString().empty()) {
          refusal_ms.push_back(ms);
        } else {
          unexpected.push_back("kind " + std::to_string(kind) + ": status " + std::to_string(status) + " " + dump(error));
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  flooding = false;
  health.join();

  EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " not refused with 429, first: " << unexpected.front();
  ASSERT_FALSE(refusal_ms.empty());
  std::sort(refusal_ms.begin(), refusal_ms.end());
  double p50 = refusal_ms[refusal_ms.size() / 2], worst = refusal_ms.back();
  std::printf("429 refusals: %zu, latency median %.2f ms, max %.2f ms; health checks: %d, max %.2f ms\n",
              refusal_ms.size(), p50, worst, health_checks.load(), worst_health_ms.load());
  EXPECT_LT(worst, kRefusalBoundMs);
  EXPECT_GT(health_checks.load(), 0);
  EXPECT_EQ(health_failures.load(), 0);
  EXPECT_LT(worst_health_ms.load(), kHealthBoundMs);
  // The holder's requests were never disturbed: the running one is still streaming.
  auto stats = backend_stats(*server);
  EXPECT_EQ(stats["waiting"].asInt(), 2) << dump(stats);

  // Cancel what holds the slot and the queue: each ends once, with CANCELLED; no block stays used.
  for (const char* id : {"queued2", "queued1", "running"}) ASSERT_TRUE(holder.send(ZmqClient::cancel_message(id)).ok());
  std::set<std::string> finals;
  auto deadline = Clock::now() + 20s;
  while (finals.size() < 3 && Clock::now() < deadline) {
    auto r = holder.receive(1000ms);
    if (!r || !(*r)["final"].asBool()) continue;
    EXPECT_TRUE(finals.insert((*r)["id"].asString()).second) << "two finals for " << dump(*r);
    EXPECT_EQ((*r)["error"]["code"].asString(), "CANCELLED") << dump(*r);
  }
  EXPECT_EQ(finals.size(), 3u);
  EXPECT_TRUE(eventually([&] { return backend_stats(*server)["kv_blocks_used"].asInt() == 0; }, 5000ms))
      << dump(backend_stats(*server));
  HttpClient http(server->http_url());
  auto after = http.post("/v1/completions", R"({"model":"tiny-llama","prompt":"Once","max_tokens":4})");
  EXPECT_EQ(after.status, 200) << after.body;
}

}  // namespace
}  // namespace ferry::testing
