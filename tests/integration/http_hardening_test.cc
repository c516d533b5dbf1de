// Hardening of the HTTP layer against hostile or unusual clients (issue 12, part A), on a real
// ferry-server: JSON nested deep enough to overflow a civetweb worker's stack, at every JSON entry
// point (HTTP endpoints, ZeroMQ, config files); hundreds of slow or idle connections while health
// checks and generation go on; half-closed clients; Expect: 100-continue; the status and shape of
// errors about the request itself. Raw sockets throughout (tests/integration/raw_http.h).
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"

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
    // The other models load, so the endpoints above reached them when the depth was fine.
    if (m["name"].asString() == "echo" || m["name"].asString() == "tiny-llama") {
      EXPECT_EQ(m["state"].asString(), "READY") << dump(m);
    }
  }
  EXPECT_TRUE(found) << index.body;
  EXPECT_TRUE(alive());
}

// ---- slow and idle connections (item 2) ------------------------------------------------------------

// How the abusive connections behave.
enum class Abuse {
  kSlowHeaders,  // a request line, then one more header line every 100 ms, never the blank line
  kSlowBody,     // a whole head with Content-Length: 100000, then one body byte every 100 ms
  kIdle,         // one whole keep-alive request, its answer read, then nothing
};

// The main port's timeouts are short so that a test of hundreds of connections takes seconds; the
// mechanism is the same as with the production defaults (10 s, 5 s).
constexpr int kTestRequestTimeoutMs = 500;
constexpr int kTestKeepAliveTimeoutMs = 500;
constexpr int kNumAbusiveConnections = 300;

class SlowClients : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    // 128 workers (the old default): 300 connections take every one of them.
    server_ = ServerProcess::start(repo_->path(),
                                   {"--http-thread-count", "128", "--http-request-timeout-ms",
                                    std::to_string(kTestRequestTimeoutMs), "--http-keep-alive-timeout-ms",
                                    std::to_string(kTestKeepAliveTimeoutMs)})
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  // Opens kNumAbusiveConnections connections that behave as `abuse` while a client checks
  // /v2/health/live on the metrics port every 100 ms and another generates on the main port; checks
  // that every health check and the generation succeed and that the server cuts every connection.
  static void run(Abuse abuse) {
    const int port = server_->http_port();
    std::vector<int> fds;
    for (int i = 0; i < kNumAbusiveConnections; ++i) {
      int fd = raw_connect(port);
      ASSERT_GE(fd, 0) << "connection " << i;
      fds.push_back(fd);
    }
    for (int fd : fds) {
      switch (abuse) {
        case Abuse::kSlowHeaders:
          raw_send(fd, "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n");
          break;
        case Abuse::kSlowBody:
          raw_send(fd, "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{");
          break;
        case Abuse::kIdle:
          raw_send(fd, "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
          break;
      }
    }
    const auto start = std::chrono::steady_clock::now();
    std::atomic<bool> done{false};
    std::atomic<int> health_ok{0}, health_failed{0};
    std::string health_error;
    std::thread health([&] {
      client::HttpClient http("http://127.0.0.1:" + std::to_string(server_->metrics_port()));
      http.set_timeout_ms(1000);
      while (!done) {
        auto r = http.get("/v2/health/live");
        if (r.status == 200) {
          ++health_ok;
        } else {
          ++health_failed;
          health_error = std::to_string(r.status) + " " + r.error;
        }
        std::this_thread::sleep_for(100ms);
      }
    });
    // A generation on the main port, sent while every worker is taken: it waits in civetweb's
    // queue until the timeouts free workers.
    client::HttpClient generate(server_->http_url());
    generate.set_timeout_ms(20000);
    auto g = generate.post("/v2/models/echo/generate", R"({"text_input":"still here"})");
    const auto generate_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();

    // Keep misbehaving until the server has cut every connection (EOF or reset), or 20 s.
    std::vector<bool> cut(fds.size(), false);
    size_t num_cut = 0;
    int num_408 = 0;
    std::vector<std::string> answers(fds.size());
    const auto give_up = start + 20s;
    while (num_cut < fds.size() && std::chrono::steady_clock::now() < give_up) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (cut[i]) continue;
        if (abuse == Abuse::kSlowHeaders) ::send(fds[i], "X-Slow: 1\r\n", 11, MSG_NOSIGNAL);
        if (abuse == Abuse::kSlowBody) ::send(fds[i], " ", 1, MSG_NOSIGNAL);
        char buf[4096];
        for (;;) {
          ssize_t n = ::recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
          if (n > 0) {
            answers[i].append(buf, static_cast<size_t>(n));
            continue;
          }
          if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            cut[i] = true;
            ++num_cut;
            if (raw_parse(answers[i]).status == 408) ++num_408;
          }
          break;
        }
      }
      std::this_thread::sleep_for(100ms);
    }
    const auto cut_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    // Health keeps being checked for a moment after the last cut.
    std::this_thread::sleep_for(300ms);
    done = true;
    health.join();
    for (int fd : fds) ::close(fd);

    EXPECT_EQ(num_cut, fds.size()) << "connections still open after " << cut_ms << " ms";
    EXPECT_EQ(g.status, 200) << g.error << " " << g.body;
    EXPECT_EQ(parse(g.body)["text_output"].asString() + parse(g.body)["text_input"].asString(), "still here")
        << g.body;
    EXPECT_EQ(health_failed.load(), 0) << "last failure: " << health_error;
    EXPECT_GE(health_ok.load(), 5);
    if (abuse == Abuse::kSlowBody) {
      EXPECT_EQ(num_408, kNumAbusiveConnections) << "a trickled body is answered 408 before the close";
    }
    // And the main port answers again at once.
    EXPECT_EQ(raw_http(port, "GET", "/v2/health/live").status, 200);
    std::printf("%d connections: generation answered after %lld ms, all cut after %lld ms, %d health checks\n",
                kNumAbusiveConnections, static_cast<long long>(generate_ms), static_cast<long long>(cut_ms),
                health_ok.load());
  }

  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(SlowClients, SlowHeadersAreCutWhileHealthAndGenerationGoOn) { run(Abuse::kSlowHeaders); }
TEST_F(SlowClients, TrickledBodiesAreCutWith408WhileHealthAndGenerationGoOn) { run(Abuse::kSlowBody); }
TEST_F(SlowClients, IdleKeptAliveConnectionsAreClosedWhileHealthAndGenerationGoOn) { run(Abuse::kIdle); }

TEST_F(SlowClients, TheMetricsPortServesOnlyHealthAndMetrics) {
  const int port = server_->metrics_port();
  EXPECT_EQ(raw_http(port, "GET", "/v2/health/live").status, 200);
  EXPECT_EQ(raw_http(port, "GET", "/v2/health/ready").status, 200);
  EXPECT_EQ(raw_http(port, "GET", "/v2/models/echo/ready").status, 200);
  EXPECT_EQ(raw_http(port, "GET", "/v2/models/nope/ready").status, 404);
  auto metrics = raw_http(port, "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("# TYPE"), std::string::npos) << metrics.body.substr(0, 300);
  EXPECT_EQ(raw_http(port, "POST", "/v2/models/echo/infer", "", infer_body("x")).status, 404);
  EXPECT_EQ(raw_http(port, "GET", "/v2").status, 404);
  EXPECT_EQ(raw_http(port, "POST", "/v2/health/live").status, 405);
}

// ---- half-closed clients, Expect: 100-continue, errors about the request (items 5, 6, 9) -----------

class HttpEdges : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    server_ = ServerProcess::start(repo_->path(), {"--http-max-body-bytes", "65536"}).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static Json::Value backend_stats() {
    auto r = raw_http(server_->http_port(), "GET", "/v2/models/echo/stats");
    return parse(r.body)["model_stats"][0]["backend"];
  }
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(HttpEdges, AHalfClosedClientStillGetsItsAnswer) {
  const double cancelled_before = backend_stats()["cancelled"].asDouble();
  int fd = raw_connect(server_->http_port());
  ASSERT_GE(fd, 0);
  // The answer takes 1 s, several of the handler's 200 ms checks of its client.
  std::string body = infer_body("half", parse(R"({"delay_ms":1000})"));
  ASSERT_TRUE(raw_send(fd, "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body));
  ASSERT_EQ(::shutdown(fd, SHUT_WR), 0);
  std::string in = raw_read_until_close(fd, 10s);
  ::close(fd);
  RawResponse r = raw_parse(in);
  ASSERT_EQ(r.status, 200) << in;
  EXPECT_EQ(parse(r.body)["outputs"][0]["data"][0].asString(), "half") << r.body;
  EXPECT_EQ(backend_stats()["cancelled"].asDouble(), cancelled_before);
}

TEST_F(HttpEdges, AClientThatClosesBeforeItsAnswerStillCancelsIt) {
  const double cancelled_before = backend_stats()["cancelled"].asDouble();
  int fd = raw_connect(server_->http_port());
  ASSERT_GE(fd, 0);
  std::string body = infer_body("gone", parse(R"({"delay_ms":10000})"));
  ASSERT_TRUE(raw_send(fd, "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body));
  std::this_thread::sleep_for(300ms);
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return backend_stats()["cancelled"].asDouble() == cancelled_before + 1; }, 3000ms))
      << dump(backend_stats());
}

TEST_F(HttpEdges, ExpectContinueIsAnsweredBeforeTheBody) {
  int fd = raw_connect(server_->http_port());
  ASSERT_GE(fd, 0);
  std::string body = infer_body("continued");
  ASSERT_TRUE(raw_send(fd, "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                           "Expect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  // curl waits 1 s for this before sending the body anyway; the server must not make it wait.
  std::string interim = raw_read_until(fd, "\r\n\r\n", 500ms);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(raw_send(fd, body));
  RawResponse r = raw_parse(raw_read_until_close(fd, 10s));
  ::close(fd);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse(r.body)["outputs"][0]["data"][0].asString(), "continued") << r.body;
}

TEST_F(HttpEdges, ExpectContinueWithATooLargeBodyGets413AndTheBodyIsNotAskedFor) {
  bool closed = false;
  auto r = raw_exchange(server_->http_port(),
                        "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                        "Content-Length: 1000000\r\n\r\n",
                        3s, &closed);
  EXPECT_EQ(r.status, 413) << r.head;
  EXPECT_TRUE(closed);
}

TEST_F(HttpEdges, ErrorsAboutTheRequestHaveTheRightStatusAndShape) {
  const int port = server_->http_port();
  // A head over --http-max-header-bytes on an OpenAI route: OpenAI's error object.
  auto big = raw_http(port, "POST", "/v1/completions", "X-Pad: " + std::string(20000, 'a') + "\r\n", "{}");
  EXPECT_EQ(big.status, 431) << big.body;
  EXPECT_TRUE(parse(big.body)["error"].isObject()) << big.body;
  EXPECT_EQ(parse(big.body)["error"]["type"].asString(), "invalid_request_error") << big.body;
  // And KServe's elsewhere.
  auto big_kserve = raw_http(port, "GET", "/v2/health/live", "X-Pad: " + std::string(20000, 'a') + "\r\n");
  EXPECT_EQ(big_kserve.status, 431);
  EXPECT_TRUE(parse(big_kserve.body)["error"].isString()) << big_kserve.body;

  // A method civetweb does not know: 405 with Allow, not "not an HTTP request".
  auto trace = raw_exchange(port, "TRACE /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 3s);
  EXPECT_EQ(trace.status, 405) << trace.head << trace.body;
  EXPECT_EQ(trace.header("Allow"), "GET, HEAD, POST");
  EXPECT_NE(parse(trace.body)["error"].asString().find("TRACE"), std::string::npos) << trace.body;

  // A Content-Length that is not a number: 400 (civetweb said 411 for some, and read "1e20" as 1).
  for (const char* length : {"-5", "abc", "1e20", "12abc"}) {
    SCOPED_TRACE(length);
    bool closed = false;
    auto r = raw_exchange(port, std::string("POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ") +
                                    length + "\r\n\r\n{}",
                          3s, &closed);
    EXPECT_EQ(r.status, 400) << r.head << r.body;
    EXPECT_NE(parse(r.body)["error"].asString().find("Content-Length"), std::string::npos) << r.body;
    EXPECT_TRUE(closed);
  }

  // A request pipelined behind one whose answer closes the connection is not answered.
  {
    bool closed = false;
    int fd = raw_connect(port);
    ASSERT_GE(fd, 0);
    raw_send(fd, "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2x\r\n\r\n{}"
                 "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const std::string in = raw_read_until_close(fd, 3s, &closed);
    ::close(fd);
    EXPECT_EQ(raw_parse(in).status, 400) << in;
    EXPECT_EQ(in.find("HTTP/1.1", 1), std::string::npos) << in;
    EXPECT_TRUE(closed);
  }

  // A length far over the limit: 413, and the connection is closed at once (the body is not read).
  bool closed = false;
  const auto start = std::chrono::steady_clock::now();
  auto huge = raw_exchange(port,
                           "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Content-Length: 100000000000000000000\r\n\r\n",
                           5s, &closed);
  EXPECT_EQ(huge.status, 413) << huge.body;
  EXPECT_EQ(huge.header("Connection"), "close");
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);

  // Many small header lines: 431 whether civetweb's buffer holds them all (2000) or not (5000), and
  // the connection is closed at once.
  for (int lines : {100, 2000, 5000}) {
    SCOPED_TRACE(std::to_string(lines) + " header lines");
    std::string headers;
    for (int i = 0; i < lines; ++i) headers += "X-" + std::to_string(i) + ": v\r\n";
    closed = false;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string request = "POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
                                "Content-Length: 2\r\n\r\n{}";
    int fd = raw_connect(port);
    ASSERT_GE(fd, 0);
    raw_send(fd, request);
    const std::string in = raw_read_until_close(fd, 5s, &closed);
    ::close(fd);
    RawResponse r = raw_parse(in);
    EXPECT_EQ(r.status, 431) << r.body;
    // One answer only: the body after the headers civetweb dropped is not taken for a request.
    EXPECT_EQ(in.find("HTTP/1.1", 1), std::string::npos) << in;
    EXPECT_TRUE(closed);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  }
  EXPECT_EQ(raw_http(port, "GET", "/v2/health/live").status, 200);
}

}  // namespace
}  // namespace ferry::testing
