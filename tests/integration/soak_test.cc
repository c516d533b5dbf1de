// Soak: one ferry-server in poll mode under a mixed load for FERRY_SOAK_SECONDS (default 60).
//
//   - HTTP against echo: infer, generate, generate_stream (several events), some streams left early
//     (client disconnect), and requests to echo2 / echo3 while they reload or come and go;
//   - HTTP against tiny-llama: KServe generate and generate_stream, OpenAI completions and chat,
//     streamed and not, greedy, each compared with a reference answer computed before the load;
//     some long streams left early;
//   - ZeroMQ: batches of interleaved requests (echo and tiny-llama, streamed and not) on one
//     socket, some cancelled at random, some clients closing with requests in flight;
//   - bad requests interleaved (malformed JSON, unknown model, bad fields, wrong method, bad
//     ZeroMQ messages), each expecting its exact error status;
//   - the repository changing under the load: echo2's config.json rewritten (a reload each time)
//     and echo3's folder removed and put back (unload, load).
//
// Afterwards: every good request was answered exactly once and correctly (echo returns its input;
// tiny-llama equals the reference; one FINAL per ZeroMQ id and nothing after it), no KV block is
// in use, no request is in flight, and the server's resident memory (VmRSS) grew by less than
// kRssGrowthBoundMb from the 10 s mark to the end. perf/soak/run_soak.sh runs it for longer.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
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

constexpr double kRssGrowthBoundMb = 20;  // from the 10 s mark to the end
constexpr int kMaxTokens = 10;            // of every greedy tiny-llama request
const std::vector<std::string> kPrompts = {"Once upon a time", "The cat sat", "Hello there", "A", "Tell me a story"};

int soak_seconds() {
  const char* s = std::getenv("FERRY_SOAK_SECONDS");
  int v = s != nullptr ? std::atoi(s) : 0;
  return v > 0 ? v : 60;
}

// Resident memory of `pid` in MiB (VmRSS), or -1.
double rss_mb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  }
  return -1;
}

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

Json::Value greedy_parameters(int max_tokens = kMaxTokens) {
  Json::Value p;
  p["max_tokens"] = max_tokens;
  p["temperature"] = 0;
  p["ignore_eos"] = true;
  return p;
}

std::string generate_body(const std::string& prompt, int max_tokens = kMaxTokens) {
  Json::Value b = greedy_parameters(max_tokens);
  b["text_input"] = prompt;
  return dump(b);
}

std::string completion_body(const std::string& prompt, bool stream, int max_tokens = kMaxTokens) {
  Json::Value b = greedy_parameters(max_tokens);
  b["model"] = "tiny-llama";
  b["prompt"] = prompt;
  b["stream"] = stream;
  return dump(b);
}

std::string chat_body(const std::string& prompt, bool stream) {
  Json::Value b = greedy_parameters();
  b["model"] = "tiny-llama";
  b["messages"][0]["role"] = "user";
  b["messages"][0]["content"] = prompt;
  b["stream"] = stream;
  return dump(b);
}

// What every worker reports: counts by kind and the first failures.
class Tally {
 public:
  void ok(const std::string& kind) { add(kind); }
  void fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    ++num_failures_;
    if (failures_.size() < 20) failures_.push_back(what);
  }
  void add(const std::string& kind, int n = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    counts_[kind] += n;
  }
  int count(const std::string& kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[kind];
  }
  int num_failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return num_failures_;
  }
  std::string report() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& [k, n] : counts_) out += "  " + k + ": " + std::to_string(n) + "\n";
    for (const auto& f : failures_) out += "  FAILURE " + f + "\n";
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> counts_;
  std::vector<std::string> failures_;
  int num_failures_ = 0;
};

// The reference answers, computed on the idle server before the load.
struct Reference {
  std::map<std::string, std::string> generate, completion, chat;
};

class Soak {
 public:
  Soak(ServerProcess* server, Reference ref, Clock::time_point end) : server_(server), ref_(std::move(ref)), end_(end) {}
  bool running() const { return Clock::now() < end_; }
  Tally tally;

  // HTTP against echo, echo2 and echo3.
  void echo_http(uint32_t seed) {
    std::mt19937 rng(seed);
    HttpClient http(server_->http_url());
    for (int n = 0; running(); ++n) {
      const std::string text = "soak-" + std::to_string(seed) + "-" + std::to_string(n);
      const int kind = static_cast<int>(rng() % 6);
      if (kind == 0) {
        auto r = http.post("/v2/models/echo/infer", infer_body(text));
        expect(r.status == 200 && parse(r.body)["outputs"][0]["data"][0].asString() == text, "echo infer", r);
      } else if (kind == 1) {
        auto r = http.post("/v2/models/echo/generate", dump(parse(R"({"text_input":")" + text + R"("})")));
        expect(r.status == 200 && parse(r.body)["text_input"].asString() == text, "echo generate", r);
      } else if (kind == 2) {
        // A stream of k events, each carrying the input; the last one (only) says it finished.
        int k = 1 + static_cast<int>(rng() % 5);
        std::vector<Json::Value> events;
        auto r = http.post_stream("/v2/models/echo/generate_stream",
                                  R"({"text_input":")" + text + R"(","parameters":{"responses":)" + std::to_string(k) +
                                      R"(,"delay_ms":2}})",
                                  [&](const std::string& d) {
                                    events.push_back(parse(d));
                                    return true;
                                  });
        bool good = r.status == 200 && static_cast<int>(events.size()) == k;
        for (size_t i = 0; good && i < events.size(); ++i) {
          good = events[i]["text_input"].asString() == text &&
                 events[i].isMember("finish_reason") == (i + 1 == events.size());
        }
        expect(good, "echo generate_stream", r, std::to_string(events.size()) + " events of " + std::to_string(k));
      } else if (kind == 3) {
        // The client leaves a long stream after 2 events: the server cancels it.
        int seen = 0;
        http.post_stream("/v2/models/echo/generate_stream",
                         R"({"text_input":"x","parameters":{"responses":50,"delay_ms":10}})",
                         [&](const std::string&) { return ++seen < 2; });
        tally.add("echo stream disconnects");
      } else {
        // echo2 reloads and echo3 comes and goes: a 200 must be right; 404 (removed) and 503
        // (unloading) are the answers of a model that is not there, anything else is a failure.
        std::string model = kind == 4 ? "echo2" : "echo3";
        auto r = http.post("/v2/models/" + model + "/infer", infer_body(text));
        if (r.status == 404 || r.status == 503) {
          tally.add(model + " absent");
        } else {
          expect(r.status == 200 && parse(r.body)["outputs"][0]["data"][0].asString() == text, model + " infer", r);
        }
      }
    }
  }

  // HTTP against tiny-llama, compared with the reference.
  void llm_http(uint32_t seed) {
    std::mt19937 rng(seed);
    HttpClient http(server_->http_url());
    while (running()) {
      const std::string& prompt = kPrompts[rng() % kPrompts.size()];
      const int kind = static_cast<int>(rng() % 7);
      if (kind == 0) {
        auto r = http.post("/v2/models/tiny-llama/generate", generate_body(prompt));
        expect(r.status == 200 && parse(r.body)["text_output"].asString() == ref_.generate[prompt], "llm generate", r);
      } else if (kind == 1) {
        std::string text;
        int finals = 0, events = 0;
        auto r = http.post_stream("/v2/models/tiny-llama/generate_stream", generate_body(prompt), [&](const std::string& d) {
          auto e = parse(d);
          text += e["text_output"].asString();
          finals += e.isMember("finish_reason") ? 1 : 0;
          ++events;
          return true;
        });
        expect(r.status == 200 && finals == 1 && text == ref_.generate[prompt], "llm generate_stream", r,
               "text '" + text + "', " + std::to_string(finals) + " finals in " + std::to_string(events) + " events");
      } else if (kind == 2) {
        auto r = http.post("/v1/completions", completion_body(prompt, false));
        expect(r.status == 200 && parse(r.body)["choices"][0]["text"].asString() == ref_.completion[prompt],
               "openai completion", r);
      } else if (kind == 3 || kind == 4) {
        // Streamed completion or chat: the deltas add up to the reference, then one [DONE].
        const bool chat = kind == 4;
        std::string text;
        int done = 0, after_done = 0;
        auto r = http.post_stream(chat ? "/v1/chat/completions" : "/v1/completions",
                                  chat ? chat_body(prompt, true) : completion_body(prompt, true), [&](const std::string& d) {
                                    if (done) ++after_done;
                                    if (d == "[DONE]") {
                                      ++done;
                                      return true;
                                    }
                                    auto c = parse(d)["choices"][0];
                                    text += chat ? c["delta"]["content"].asString() : c["text"].asString();
                                    return true;
                                  });
        const std::string& want = chat ? ref_.chat[prompt] : ref_.completion[prompt];
        expect(r.status == 200 && done == 1 && after_done == 0 && text == want,
               chat ? "openai chat stream" : "openai completion stream", r, "text '" + text + "'");
      } else if (kind == 5) {
        auto r = http.post("/v1/chat/completions", chat_body(prompt, false));
        expect(r.status == 200 && parse(r.body)["choices"][0]["message"]["content"].asString() == ref_.chat[prompt],
               "openai chat", r);
      } else {
        // A long stream the client leaves after 3 events (its KV blocks must come back), or a
        // non-streamed request whose connection closes before the answer.
        if (rng() % 2 == 0) {
          int seen = 0;
          http.post_stream("/v1/completions", completion_body(prompt, true, 300),
                           [&](const std::string&) { return ++seen < 3; });
          tally.add("llm stream disconnects");
        } else {
          send_and_close("/v2/models/tiny-llama/generate", generate_body(prompt, 40));
          tally.add("llm request disconnects");
        }
      }
    }
  }

  // ZeroMQ: batches of interleaved requests on one socket, some cancelled.
  void zmq(uint32_t seed) {
    std::mt19937 rng(seed);
    for (int batch = 0; running(); ++batch) {
      ZmqClient zmq;
      if (!zmq.connect(server_->zmq_endpoint()).ok()) return tally.fail("zmq connect");
      struct Sent {
        std::string model, text;
        bool stream = false, cancelled = false;
        int responses = 1;  // echo: how many responses a stream gets
      };
      std::map<std::string, Sent> sent;
      const int n = 2 + static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i) {
        Sent s;
        std::string id = std::to_string(seed);  // "<seed>-<batch>-<i>", built in steps (GCC 12 -Wrestrict)
        id += '-';
        id += std::to_string(batch);
        id += '-';
        id += std::to_string(i);
        s.stream = rng() % 2 == 0;
        Json::Value m;
        if (rng() % 2 == 0) {
          s.model = "echo";
          s.text = id;
          s.responses = 1 + static_cast<int>(rng() % 4);
          Json::Value p;
          p["responses"] = s.responses;
          p["delay_ms"] = 3;
          m = ZmqClient::infer_message(id, "echo", text_inputs(s.text), p, s.stream);
        } else {
          s.model = "tiny-llama";
          s.text = kPrompts[rng() % kPrompts.size()];
          m = ZmqClient::infer_message(id, "tiny-llama", text_inputs(s.text), greedy_parameters(), s.stream);
        }
        if (!zmq.send(m).ok()) return tally.fail("zmq send");
        sent[id] = s;
      }
      for (auto& [id, s] : sent) {
        if (rng() % 4 == 0) {
          s.cancelled = true;
          if (!zmq.send(ZmqClient::cancel_message(id)).ok()) return tally.fail("zmq send cancel");
        }
      }
      // A client that leaves with its requests in flight: nothing to check but the server's health.
      if (rng() % 10 == 0) {
        tally.add("zmq client disconnects");
        continue;
      }
      std::map<std::string, std::string> text;  // echo: the texts seen; tiny-llama: text_output joined
      std::map<std::string, int> responses;
      std::set<std::string> finals;
      auto deadline = Clock::now() + 60s;
      while (finals.size() < sent.size() && Clock::now() < deadline) {
        auto r = zmq.receive(1000ms);
        if (!r) continue;
        std::string id = (*r)["id"].asString();
        auto it = sent.find(id);
        if (it == sent.end()) {
          tally.fail("zmq: answer for an unknown id: " + dump(*r));
          continue;
        }
        if (finals.count(id)) tally.fail("zmq: a message after the FINAL of " + id + ": " + dump(*r));
        if ((*r)["final"].asBool()) finals.insert(id);
        if (r->isMember("error")) {
          if (!(it->second.cancelled && (*r)["error"]["code"].asString() == "CANCELLED") || !(*r)["final"].asBool()) {
            tally.fail("zmq " + it->second.model + ": " + dump(*r));
          } else {
            text[id] = "<cancelled>";
          }
          continue;
        }
        ++responses[id];
        for (const auto& o : (*r)["outputs"]) {
          if (o["name"].asString() == "text_output") text[id] += o["data"][0].asString();
          if (o["name"].asString() == "text_input" && o["data"][0].asString() != id) {
            tally.fail("zmq echo: " + id + " answered " + dump(*r));
          }
        }
      }
      for (const auto& [id, s] : sent) {
        if (!finals.count(id)) {
          tally.fail("zmq: no FINAL for " + id + " (" + s.model + ")");
          continue;
        }
        if (text[id] == "<cancelled>") {
          tally.add("zmq cancelled");
          continue;
        }
        bool good = s.model == "echo" ? responses[id] == (s.stream ? s.responses : 1)
                                      : text[id] == ref_.generate[s.text];
        if (good) tally.ok("zmq " + s.model + (s.stream ? " stream" : ""));
        else tally.fail("zmq " + s.model + " " + id + ": " + std::to_string(responses[id]) + " responses, text '" + text[id] + "'");
      }
    }
  }

  // Bad requests, each with its exact error status.
  void bad(uint32_t seed) {
    std::mt19937 rng(seed);
    HttpClient http(server_->http_url());
    ZmqClient zmq;
    if (!zmq.connect(server_->zmq_endpoint()).ok()) return tally.fail("zmq connect");
    struct Case {
      const char* path;
      const char* body;
      long status;
    } cases[] = {
        {"/v2/models/echo/infer", "{bad json", 400},
        {"/v2/models/echo/infer", R"({"inputs":[{"name":"x","datatype":"NOPE","shape":[1],"data":[1]}]})", 400},
        {"/v2/models/missing/infer", R"({"inputs":[]})", 404},
        {"/v2/models/tiny-llama/generate", R"({"text_input":"x","max_tokens":100000})", 400},
        {"/v2/models/tiny-llama/generate", R"({"text_input":"x","temperature":"hot"})", 400},
        {"/v1/completions", R"({"model":"tiny-llama","prompt":"x","max_tokens":-1})", 400},
        {"/v1/completions", R"({"model":"missing","prompt":"x"})", 404},
        {"/v1/chat/completions", R"({"model":"tiny-llama","messages":"not a list"})", 400},
        {"/v2/models/echo/nope", "{}", 404},
    };
    while (running()) {
      if (rng() % 4 == 0) {
        const char* messages[] = {"not json", "[1,2]", R"({"id":""})", R"({"id":"b","type":"unknown"})",
                                  R"({"id":"b","model":"missing","inputs":[]})"};
        const char* m = messages[rng() % 5];
        if (!zmq.send_raw(m).ok()) return tally.fail("zmq send");
        auto r = zmq.receive(10000ms);
        int status = r ? (*r)["error"]["status"].asInt() : 0;
        if (r && (*r)["refused"].asBool() && (status == 400 || status == 404)) tally.ok("bad zmq");
        else tally.fail(std::string("bad zmq message ") + m + ": " + (r ? dump(*r) : "no answer"));
      } else if (rng() % 8 == 0) {
        auto r = http.request("DELETE", "/v2/models/echo/infer");
        expect(r.status == 405, "bad method", r);
      } else {
        const Case& c = cases[rng() % (sizeof(cases) / sizeof(cases[0]))];
        auto r = http.post(c.path, c.body);
        expect(r.status == c.status && !r.body.empty() && parse(r.body).isMember("error"), "bad request", r,
               std::string(c.path) + " " + c.body);
      }
      std::this_thread::sleep_for(5ms);
    }
  }

  // The repository changing under the load: echo2's config rewritten, echo3 removed and put back.
  void reloader(const std::string& repo, const std::string& parked) {
    for (int n = 0; running(); ++n) {
      std::this_thread::sleep_for(1500ms);
      // Another text (one space more or less) is another fingerprint: the poll reloads echo2.
      write_file(repo + "/echo2/config.json", std::string(kEchoConfig) + std::string(n % 2, ' '));
      tally.add("echo2 rewrites");
      if (n % 2 == 1) {
        std::error_code ec;
        if (fs::exists(repo + "/echo3")) fs::rename(repo + "/echo3", parked, ec);
        else fs::rename(parked, repo + "/echo3", ec);
        if (ec) tally.fail("echo3 rename: " + ec.message());
        tally.add("echo3 moves");
      }
    }
    std::error_code ec;
    if (!fs::exists(repo + "/echo3")) fs::rename(parked, repo + "/echo3", ec);
  }

 private:
  void expect(bool good, const std::string& kind, const client::HttpResult& r, const std::string& detail = "") {
    if (good) tally.ok(kind);
    else tally.fail(kind + ": status " + std::to_string(r.status) + " " + r.error + " " + r.body.substr(0, 300) + " " + detail);
  }

  // Sends a POST and closes the connection without reading the answer.
  void send_and_close(const std::string& path, const std::string& body) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(server_->http_port()));
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
      std::string request = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
      (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(5ms);
    }
    ::close(fd);
  }

  ServerProcess* server_;
  Reference ref_;
  Clock::time_point end_;
};

Json::Value backend_stats(HttpClient& http, const std::string& model) {
  return parse(http.get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
}

TEST(Soak, MixedLoadWithReloadsAnswersEveryRequestOnceAndLeaksNothing) {
  const int seconds = soak_seconds();
  TempDir root;
  const std::string repo = root.path() + "/repo";
  add_echo_model(repo, "echo");
  add_echo_model(repo, "echo2");
  add_echo_model(repo, "echo3");
  fs::copy(fs::path(default_repository()) / "tiny-llama", repo + "/tiny-llama", fs::copy_options::recursive);
  // A small KV pool (64 blocks of 64 KiB) is cycled through within seconds, so that the pages it
  // touches are resident before the 10 s mark; one matmul thread leaves a core to the frontends.
  write_file(repo + "/tiny-llama/config.json",
             R"({"backend":"llm","load_format":"dummy","seed":0,"max_num_seqs":8,"num_threads":1,
                 "kv_cache_num_blocks":64})");
  auto server = ServerProcess::start(repo, {"--model-control-mode", "poll", "--repository-poll-secs", "1"});
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());

  Reference ref;
  for (const auto& p : kPrompts) {
    auto g = http.post("/v2/models/tiny-llama/generate", generate_body(p));
    ASSERT_EQ(g.status, 200) << g.body;
    ref.generate[p] = parse(g.body)["text_output"].asString();
    auto c = http.post("/v1/completions", completion_body(p, false));
    ASSERT_EQ(c.status, 200) << c.body;
    ref.completion[p] = parse(c.body)["choices"][0]["text"].asString();
    auto ch = http.post("/v1/chat/completions", chat_body(p, false));
    ASSERT_EQ(ch.status, 200) << ch.body;
    ref.chat[p] = parse(ch.body)["choices"][0]["message"]["content"].asString();
  }

  const auto start = Clock::now();
  Soak soak(server.get(), ref, start + std::chrono::seconds(seconds));
  std::vector<std::thread> workers;
  workers.emplace_back([&] { soak.echo_http(1); });
  workers.emplace_back([&] { soak.echo_http(2); });
  workers.emplace_back([&] { soak.llm_http(3); });
  workers.emplace_back([&] { soak.llm_http(4); });
  workers.emplace_back([&] { soak.zmq(5); });
  workers.emplace_back([&] { soak.zmq(6); });
  workers.emplace_back([&] { soak.bad(7); });
  workers.emplace_back([&] { soak.reloader(repo, root.path() + "/echo3.parked"); });

  // Memory at the 10 s mark (or a sixth of a shorter run) and health throughout.
  double rss_mark = -1, rss_max = 0;
  const auto mark = start + std::chrono::seconds(std::min(10, std::max(1, seconds / 6)));
  int health_failures = 0;
  HttpClient health(server->http_url());
  while (soak.running()) {
    std::this_thread::sleep_for(250ms);
    if (rss_mark < 0 && Clock::now() >= mark) rss_mark = rss_mb(server->pid());
    rss_max = std::max(rss_max, rss_mb(server->pid()));
    if (health.get("/v2/health/live").status != 200) ++health_failures;
  }
  for (auto& t : workers) t.join();

  // Drained: no request in flight, no KV block in use.
  EXPECT_TRUE(eventually([&] { return backend_stats(http, "tiny-llama")["kv_blocks_used"].asInt() == 0; }, 10000ms))
      << dump(backend_stats(http, "tiny-llama"));
  EXPECT_TRUE(eventually([&] { return backend_stats(http, "tiny-llama")["running"].asInt() == 0 &&
                                      backend_stats(http, "tiny-llama")["waiting"].asInt() == 0; }, 10000ms))
      << dump(backend_stats(http, "tiny-llama"));
  EXPECT_TRUE(eventually([&] { return backend_stats(http, "echo")["in_flight"].asInt() == 0; }, 10000ms))
      << dump(backend_stats(http, "echo"));
  const double rss_end = rss_mb(server->pid());

  // Every model serves correctly after the soak (echo3 is back in the repository).
  EXPECT_TRUE(eventually([&] { return http.get("/v2/models/echo3/ready").status == 200; }, 5000ms));
  for (const char* m : {"echo", "echo2", "echo3"}) {
    auto r = http.post(std::string("/v2/models/") + m + "/infer", infer_body("after"));
    EXPECT_EQ(r.status, 200) << m << ": " << r.body;
  }
  auto g = http.post("/v2/models/tiny-llama/generate", generate_body(kPrompts[0]));
  EXPECT_EQ(parse(g.body)["text_output"].asString(), ref.generate[kPrompts[0]]);

  std::printf("soak %d s:\n%s  health failures: %d\n  VmRSS: %.1f MiB at the mark, %.1f MiB at the end (max %.1f)\n",
              seconds, soak.tally.report().c_str(), health_failures, rss_mark, rss_end, rss_max);
  EXPECT_EQ(soak.tally.num_failures(), 0) << soak.tally.report();
  EXPECT_EQ(health_failures, 0);
  // Each kind of work really happened.
  for (const char* kind : {"echo infer", "echo generate_stream", "llm generate", "llm generate_stream",
                           "openai completion stream", "openai chat", "zmq echo stream", "zmq tiny-llama",
                           "bad request", "bad zmq", "echo2 infer", "echo2 rewrites", "echo3 moves"}) {
    EXPECT_GT(soak.tally.count(kind), 0) << kind << "\n" << soak.tally.report();
  }
  ASSERT_GT(rss_mark, 0);
#if defined(__SANITIZE_ADDRESS__)
  // Under ASan freed memory sits in its quarantine (256 MiB by default) and RSS grows by design;
  // LeakSanitizer, fatal in that build, checks for leaks instead.
  std::printf("  (ASan build: the resident-memory bound is not checked)\n");
#else
  EXPECT_LT(rss_end - rss_mark, kRssGrowthBoundMb) << "resident memory grew from " << rss_mark << " to " << rss_end << " MiB";
#endif
  // The repository changes were seen by the poll (an interval of 1 s, changes every 1.5 s and 3 s).
  const std::string log = server->log();
  auto occurrences = [&](const std::string& needle) {
    int n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  };
  const int echo2_reloads = occurrences("poll: model 'echo2' was added or changed");
  const int echo3_removals = occurrences("poll: model 'echo3' was removed");
  std::printf("  echo2 reloads seen by the poll: %d, echo3 removals: %d\n", echo2_reloads, echo3_removals);
  EXPECT_GE(echo2_reloads, soak.tally.count("echo2 rewrites") / 2);
  EXPECT_GE(echo3_removals, soak.tally.count("echo3 moves") / 4);
  EXPECT_EQ(log.find("handler failed"), std::string::npos);
  EXPECT_EQ(log.find("message handling failed"), std::string::npos);
}

}  // namespace
}  // namespace ferry::testing
