// Security against a real ferry-server (docs/security.md): the API key on HTTP (401 with a
// challenge, OpenAI-shaped on OpenAI's routes, health and /metrics open or closed by a flag) and on
// ZeroMQ, the key kept out of the command line, ZeroMQ CURVE, the header / body / message / prompt
// / max_tokens limits, and repository names that try to leave the repository.
//
// HTTP requests go through a raw socket, not libcurl: curl would normalize "../" out of a path
// and would not send a header bigger than its own limits.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::ZmqClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kKey = "sk-test-0123456789";

struct RawResponse {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  // The value of header `name` (case-insensitive), or "".
  std::string header(const std::string& name) const {
    std::string lower_head = head, lower_name = name + ":";
    for (auto& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (auto& c : lower_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t at = lower_head.find("\r\n" + lower_name);
    if (at == std::string::npos) return "";
    size_t begin = at + 2 + lower_name.size();
    size_t end = head.find("\r\n", begin);
    std::string v = head.substr(begin, end - begin);
    return v.substr(v.find_first_not_of(' '));
  }
};

// Sends `method path` with `headers` (complete lines) and `body` on a fresh connection that the
// server closes after answering, and reads the whole answer.
RawResponse raw_http(int port, const std::string& method, const std::string& path, const std::string& headers = "",
                     const std::string& body = "") {
  RawResponse r;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return r;
  }
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers +
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything (431, 413)
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t split = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.", 0) != 0 || split == std::string::npos) return r;
  r.status = std::atoi(in.c_str() + 9);
  r.head = in.substr(0, split);
  r.body = in.substr(split + 4);
  return r;
}

std::string bearer(const std::string& key) { return "Authorization: Bearer " + key + "\r\n"; }

Json::Value text_inputs(const std::string& text) {
  return parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":[")" + text + R"("]}])");
}

// ---- API key ----------------------------------------------------------------------------------------

class ApiKey : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    // The key comes from the environment, so it is not on the server's command line.
    setenv("FERRY_API_KEY", kKey, 1);
    server_ = ServerProcess::start(repo_->path(), {"--model-control-mode", "explicit", "--load-model", "echo"}).release();
    unsetenv("FERRY_API_KEY");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(ApiKey, ProtectedRoutesAnswer401WithAChallenge) {
  const int port = server_->http_port();
  struct Route {
    const char* method;
    const char* path;
    bool openai;
  } routes[] = {
      {"POST", "/v2/models/echo/infer", false},         {"POST", "/v2/models/echo/generate", false},
      {"POST", "/v2/models/echo/generate_stream", false}, {"POST", "/v2/models/echo/versions/1/infer", false},
      {"GET", "/v2/models/echo", false},                {"GET", "/v2/models/echo/config", false},
      {"GET", "/v2/models/echo/stats", false},          {"GET", "/v2/models/stats", false},
      {"GET", "/v2", false},                            {"POST", "/v2/repository/index", false},
      {"POST", "/v2/repository/models/echo/load", false}, {"POST", "/v2/repository/models/echo/unload", false},
      {"GET", "/no/such/route", false},                 {"GET", "/v2/models/echo/versions/ready", false},
      {"GET", "/v2/models/echo/x/y/ready", false},                 {"POST", "/v1/completions", true},
      {"POST", "/v1/chat/completions", true},           {"GET", "/v1/models", true},
      {"GET", "/v1/models/echo", true},                 {"POST", "/tokenize", true},
      {"POST", "/detokenize", true},
  };
  for (const auto& route : routes) {
    SCOPED_TRACE(std::string(route.method) + " " + route.path);
    for (const std::string& credentials : {std::string(), bearer("wrong"), bearer(std::string(kKey) + "x"),
                                           std::string("Authorization: Basic c2stdGVzdA==\r\n"),
                                           std::string("Authorization: ") + kKey + "\r\n"}) {
      auto r = raw_http(port, route.method, route.path, credentials, "{}");
      ASSERT_EQ(r.status, 401) << credentials << r.body;
      EXPECT_EQ(r.header("Content-Type"), "application/json");
      std::string challenge = r.header("WWW-Authenticate");
      EXPECT_EQ(challenge.rfind("Bearer", 0), 0u) << challenge;
      bool wrong_bearer = credentials.find("Bearer") != std::string::npos;
      EXPECT_EQ(challenge.find("invalid_token") != std::string::npos, wrong_bearer) << challenge;
      auto j = parse(r.body);
      if (route.openai) {
        EXPECT_EQ(j["error"]["code"].asString(), "invalid_api_key") << r.body;
        EXPECT_EQ(j["error"]["type"].asString(), "invalid_request_error") << r.body;
        EXPECT_TRUE(j["error"]["message"].isString()) << r.body;
      } else {
        EXPECT_NE(j["error"].asString().find("API key"), std::string::npos) << r.body;
      }
      EXPECT_EQ(r.body.find(kKey), std::string::npos) << "the key must never be echoed";
    }
  }
  // The echo model is still loaded: the unauthenticated unload above did nothing.
  EXPECT_EQ(raw_http(port, "GET", "/v2/models/echo/ready").status, 200);
}

TEST_F(ApiKey, TheKeyOpensEveryRoute) {
  const int port = server_->http_port();
  auto infer = raw_http(port, "POST", "/v2/models/echo/infer", bearer(kKey), infer_body("hi"));
  ASSERT_EQ(infer.status, 200) << infer.body;
  EXPECT_EQ(parse(infer.body)["outputs"][0]["data"][0].asString(), "hi");
  // The scheme is case-insensitive (RFC 7235).
  EXPECT_EQ(raw_http(port, "POST", "/v2/models/echo/generate", std::string("authorization: bearer ") + kKey + "\r\n",
                     R"({"text_input":"x"})").status,
            200);
  EXPECT_EQ(raw_http(port, "GET", "/v1/models", bearer(kKey)).status, 200);
  EXPECT_EQ(raw_http(port, "GET", "/v2", bearer(kKey)).status, 200);
  EXPECT_EQ(raw_http(port, "POST", "/v2/repository/index", bearer(kKey)).status, 200);
  EXPECT_EQ(raw_http(port, "POST", "/v2/repository/models/echo/load", bearer(kKey)).status, 200);
  // Past authentication, errors are the usual ones.
  EXPECT_EQ(raw_http(port, "POST", "/v1/completions", bearer(kKey), R"({"model":"nope","prompt":"x"})").status, 404);
}

TEST_F(ApiKey, HealthAndMetricsStayOpen) {
  const int port = server_->http_port();
  for (const char* path : {"/v2/health/live", "/v2/health/ready", "/v2/models/echo/ready",
                           "/v2/models/echo/versions/1/ready", "/metrics"}) {
    EXPECT_EQ(raw_http(port, "GET", path).status, 200) << path;
  }
}

TEST_F(ApiKey, TheKeyIsNotOnTheCommandLine) {
  std::ifstream in("/proc/" + std::to_string(server_->pid()) + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(cmdline.empty());
  EXPECT_EQ(cmdline.find(kKey), std::string::npos);
  EXPECT_EQ(server_->log().find(kKey), std::string::npos) << "the key must never be logged";
}

TEST_F(ApiKey, ZeroMqMessagesMustCarryTheKey) {
  ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  auto message = ZmqClient::infer_message("m1", "echo", text_inputs("hello"), Json::Value(), false);
  ASSERT_TRUE(zmq.send(message).ok());
  auto r = zmq.receive(5000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["id"].asString(), "m1");
  EXPECT_TRUE((*r)["refused"].asBool()) << dump(*r);
  EXPECT_EQ((*r)["error"]["code"].asString(), "UNAUTHENTICATED") << dump(*r);
  EXPECT_EQ((*r)["error"]["status"].asInt(), 401);

  for (const Json::Value& bad_key : {Json::Value("wrong"), Json::Value(42), Json::Value("")}) {
    message["api_key"] = bad_key;
    ASSERT_TRUE(zmq.send(message).ok());
    r = zmq.receive(5000ms);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ((*r)["error"]["status"].asInt(), 401) << dump(*r);
  }
  // A cancel needs the key too (it is refused, not silently ignored).
  ASSERT_TRUE(zmq.send(ZmqClient::cancel_message("m1")).ok());
  r = zmq.receive(5000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["error"]["status"].asInt(), 401) << dump(*r);

  zmq.set_api_key(kKey);
  message.removeMember("api_key");
  ASSERT_TRUE(zmq.send(message).ok());
  r = zmq.receive(5000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->isMember("error")) << dump(*r);
  EXPECT_EQ((*r)["outputs"][0]["data"][0].asString(), "hello");
}

TEST(AuthHealthMetrics, ClosesHealthAndMetricsToo) {
  TempDir repo;
  add_echo_model(repo.path(), "echo");
  auto server = ServerProcess::start(repo.path(), {"--api-key", kKey, "--auth-health-metrics"});
  ASSERT_NE(server, nullptr);
  for (const char* path : {"/v2/health/live", "/v2/health/ready", "/v2/models/echo/ready", "/metrics"}) {
    EXPECT_EQ(raw_http(server->http_port(), "GET", path).status, 401) << path;
    EXPECT_EQ(raw_http(server->http_port(), "GET", path, bearer(kKey)).status, 200) << path;
  }
}

// ---- ZeroMQ CURVE -----------------------------------------------------------------------------------

TEST(ZmqCurve, EncryptsAndNeedsTheServerKey) {
  if (!zmq_has("curve")) GTEST_SKIP() << "this libzmq was built without CURVE";
  char server_public[41], server_secret[41];
  ASSERT_EQ(zmq_curve_keypair(server_public, server_secret), 0);
  TempDir repo;
  add_echo_model(repo.path(), "echo");
  const std::string key_file = repo.path() + "/../" + fs::path(repo.path()).filename().string() + ".key";
  write_file(key_file, std::string(server_secret) + "\n");
  ::chmod(key_file.c_str(), 0600);
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove_key{key_file};

  auto server = ServerProcess::start(repo.path(), {"--zmq-curve-secret-key", key_file});
  ASSERT_NE(server, nullptr);
  // The server logs its public key (derived from the secret one), never the secret.
  EXPECT_NE(server->log().find(server_public), std::string::npos) << server->log();
  EXPECT_EQ(server->log().find(server_secret), std::string::npos);
  auto message = ZmqClient::infer_message("c1", "echo", text_inputs("sealed"), Json::Value(), false);

  ZmqClient good;
  ASSERT_TRUE(good.use_curve(server_public).ok());
  ASSERT_TRUE(good.connect(server->zmq_endpoint()).ok());
  ASSERT_TRUE(good.send(message).ok());
  auto r = good.receive(5000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["outputs"][0]["data"][0].asString(), "sealed") << dump(*r);

  // Without CURVE, or with another server key, the handshake fails: no answer ever comes.
  ZmqClient plain;
  ASSERT_TRUE(plain.connect(server->zmq_endpoint()).ok());
  ASSERT_TRUE(plain.send(message).ok());
  EXPECT_FALSE(plain.receive(1000ms).has_value());
  char other_public[41], other_secret[41];
  ASSERT_EQ(zmq_curve_keypair(other_public, other_secret), 0);
  ZmqClient wrong;
  ASSERT_TRUE(wrong.use_curve(other_public).ok());
  ASSERT_TRUE(wrong.connect(server->zmq_endpoint()).ok());
  ASSERT_TRUE(wrong.send(message).ok());
  EXPECT_FALSE(wrong.receive(1000ms).has_value());
  // The good client still works after the failed handshakes.
  ASSERT_TRUE(good.send(ZmqClient::infer_message("c2", "echo", text_inputs("again"), Json::Value(), false)).ok());
  r = good.receive(5000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["id"].asString(), "c2");
}

TEST(ZmqCurve, ABadKeyFileStopsTheServerWithAClearError) {
  TempDir dir;
  write_file(dir.path() + "/short.key", "not a z85 key\n");
  for (const std::string& file : {dir.path() + "/short.key", dir.path() + "/missing.key"}) {
    std::string cmd = build_dir() + "/host/ferry-server --model-repository " + dir.path() +
                      " --http-port 0 --metrics-port 0 --zmq-endpoint tcp://127.0.0.1:0 --zmq-curve-secret-key " + file + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof(buf), p)) out += buf;
    int rc = ::pclose(p);
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("--zmq-curve-secret-key"), std::string::npos) << out;
  }
}

// ---- limits -----------------------------------------------------------------------------------------

class Limits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    fs::copy(fs::path(default_repository()) / "tiny-llama", repo_->path() + "/tiny-llama", fs::copy_options::recursive);
    write_file(repo_->path() + "/tiny-llama/config.json",
               R"({"backend":"llm","load_format":"dummy","seed":0,"max_model_len":64,"kv_cache_num_blocks":16})");
    server_ = ServerProcess::start(repo_->path(), {"--http-max-body-bytes", "4096", "--http-max-header-bytes", "4096"})
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(Limits, HeadersOverTheLimitGet431WithAJsonError) {
  auto small = raw_http(server_->http_port(), "GET", "/v2/health/live", "X-Pad: " + std::string(2000, 'a') + "\r\n");
  EXPECT_EQ(small.status, 200);
  auto big = raw_http(server_->http_port(), "GET", "/v2/health/live", "X-Pad: " + std::string(5000, 'a') + "\r\n");
  EXPECT_EQ(big.status, 431) << big.head << big.body;
  EXPECT_EQ(big.header("Content-Type"), "application/json");
  EXPECT_NE(parse(big.body)["error"].asString().find("--http-max-header-bytes"), std::string::npos) << big.body;
  auto long_path = raw_http(server_->http_port(), "GET", "/v2/models/" + std::string(5000, 'm') + "/ready");
  EXPECT_EQ(long_path.status, 431) << long_path.body;
  // Far over the limit (more than civetweb's buffer of twice the limit): civetweb gives up on the
  // head, and the answer is still a 431 as JSON.
  auto huge = raw_http(server_->http_port(), "GET", "/v2/health/live", "X-Pad: " + std::string(50000, 'a') + "\r\n");
  EXPECT_EQ(huge.status, 431) << huge.body;
  EXPECT_NE(parse(huge.body)["error"].asString().find("--http-max-header-bytes"), std::string::npos) << huge.body;
  // The server keeps serving.
  EXPECT_EQ(raw_http(server_->http_port(), "GET", "/v2/health/ready").status, 200);
}

TEST_F(Limits, BodiesOverTheLimitGet413) {
  std::string big = infer_body(std::string(5000, 'x'));
  auto kserve = raw_http(server_->http_port(), "POST", "/v2/models/echo/infer", "", big);
  EXPECT_EQ(kserve.status, 413) << kserve.body;
  EXPECT_NE(parse(kserve.body)["error"].asString().find("4096"), std::string::npos) << kserve.body;
  auto openai = raw_http(server_->http_port(), "POST", "/v1/completions", "",
                         R"({"model":"tiny-llama","prompt":")" + std::string(5000, 'x') + R"("})");
  EXPECT_EQ(openai.status, 413) << openai.body;
  EXPECT_TRUE(parse(openai.body)["error"]["message"].isString()) << openai.body;
  // A body without Content-Length (chunked) is counted as it is read.
  auto chunked = raw_http(server_->http_port(), "POST", "/v2/models/echo/infer", "Transfer-Encoding: chunked\r\n",
                          "1388\r\n" + std::string(5000, 'x') + "\r\n0\r\n\r\n");
  EXPECT_TRUE(chunked.status == 413 || chunked.status == 400) << chunked.status << chunked.body;
}

TEST_F(Limits, ZeroMqMessagesOverTheLimitAreRefused) {
  ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  // Over the limit (4096) but under twice it: read and refused with TooLarge.
  ASSERT_TRUE(zmq.send(ZmqClient::infer_message("big", "echo", text_inputs(std::string(6000, 'x')), Json::Value(), false))
                  .ok());
  auto r = zmq.receive(5000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["error"]["status"].asInt(), 413) << dump(*r);
  EXPECT_TRUE((*r)["refused"].asBool());
  // Over twice the limit: libzmq drops the connection before buffering it; nothing comes back, and
  // the client's reconnect then works as before.
  ASSERT_TRUE(zmq.send_raw(std::string(20000, ' ')).ok());
  EXPECT_FALSE(zmq.receive(1000ms).has_value());
  ASSERT_TRUE(zmq.send(ZmqClient::infer_message("small", "echo", text_inputs("ok"), Json::Value(), false)).ok());
  r = zmq.receive(10000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["id"].asString(), "small");
  EXPECT_EQ((*r)["outputs"][0]["data"][0].asString(), "ok") << dump(*r);
}

TEST_F(Limits, PromptAndMaxTokensAreBoundedByTheContextWindow) {
  client::HttpClient http(server_->http_url());
  std::string words;
  for (int i = 0; i < 80; ++i) words += "hello ";
  auto prompt = http.post("/v1/completions", R"({"model":"tiny-llama","prompt":")" + words + R"(","max_tokens":1})");
  EXPECT_EQ(prompt.status, 400) << prompt.body;
  EXPECT_EQ(parse(prompt.body)["error"]["code"].asString(), "context_length_exceeded") << prompt.body;
  auto max_tokens = http.post("/v1/completions", R"({"model":"tiny-llama","prompt":"hi","max_tokens":100000})");
  EXPECT_EQ(max_tokens.status, 400) << max_tokens.body;
  EXPECT_EQ(parse(max_tokens.body)["error"]["code"].asString(), "context_length_exceeded") << max_tokens.body;
  auto generate = http.post("/v2/models/tiny-llama/generate", R"({"text_input":"hi","max_tokens":100000})");
  EXPECT_EQ(generate.status, 400) << generate.body;
  // (0 is valid: the prompt alone, for scoring it with echo and logprobs; openai_prompt_logprobs_test.)
  for (const char* bad : {"-1", "1e30", "\"many\""}) {
    auto r = http.post("/v1/completions", std::string(R"({"model":"tiny-llama","prompt":"hi","max_tokens":)") + bad + "}");
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
  }
  auto fits = http.post("/v1/completions", R"({"model":"tiny-llama","prompt":"hi","max_tokens":4})");
  EXPECT_EQ(fits.status, 200) << fits.body;
}

// ---- repository names ------------------------------------------------------------------------------

TEST(RepositoryNames, TheLoadApiNeverLeavesTheRepository) {
  TempDir root;
  const std::string repo = root.path() + "/repo";
  add_echo_model(repo, "echo");
  // A loadable model next to the repository: a name that escaped would load it.
  add_echo_model(root.path(), "outside");
  add_echo_model(root.path() + "/elsewhere", "linked_target");
  fs::create_directory_symlink(root.path() + "/elsewhere/linked_target", repo + "/linked");
  auto server = ServerProcess::start(repo, {"--model-control-mode", "explicit"});
  ASSERT_NE(server, nullptr);
  const int port = server->http_port();

  const std::string abs = root.path() + "/outside";
  for (const std::string& name :
       {std::string("..%2Foutside"), std::string("%2e%2e%2foutside"), std::string("%2E%2E/outside"),
        std::string("..%252Foutside"), std::string("..%5Coutside"), std::string("%2e%2e"), std::string(".."),
        std::string("."), std::string("%2e"), std::string("echo%2F..%2F..%2Foutside"), std::string("%2F") + abs.substr(1),
        std::string("%2f%2e%2e%2foutside"), std::string("outside%00"), std::string("echo%00..%2F..%2Foutside"),
        std::string(".hidden"), std::string("~"), std::string("echo%20"), std::string(200, 'a')}) {
    for (const char* action : {"load", "unload"}) {
      std::string path = "/v2/repository/models/" + name + "/" + action;
      auto r = raw_http(port, "POST", path);
      EXPECT_TRUE(r.status == 400 || r.status == 404) << path << " -> " << r.status << " " << r.body;
    }
  }
  // Paths that civetweb cleans before routing must not escape either.
  for (const std::string& path : {std::string("/v2/repository/models/../../outside/load"),
                                  std::string("/v2/repository/../repository/models/..%2F..%2Foutside/load"),
                                  std::string("/v2/repository/models/%2e%2e/%2e%2e/outside/load")}) {
    auto r = raw_http(port, "POST", path);
    EXPECT_NE(r.status, 200) << path << " " << r.body;
  }
  auto index = parse(raw_http(port, "POST", "/v2/repository/index").body);
  for (const auto& m : index) {
    EXPECT_TRUE(m["name"].asString() == "echo" || m["name"].asString() == "linked") << dump(index);
    EXPECT_NE(m["state"].asString(), "READY") << "nothing was loaded: " << dump(index);
  }
  EXPECT_EQ(raw_http(port, "GET", "/v2/models/outside/ready").status, 404);

  // A symlinked model folder inside the repository is the operator's choice and loads (as in
  // Triton); docs/security.md says so.
  auto linked = raw_http(port, "POST", "/v2/repository/models/linked/load");
  EXPECT_EQ(linked.status, 200) << linked.body;
  auto infer = raw_http(port, "POST", "/v2/models/linked/infer", "", infer_body("via link"));
  EXPECT_EQ(infer.status, 200) << infer.body;
  EXPECT_EQ(raw_http(port, "POST", "/v2/repository/models/echo/load").status, 200);
}

}  // namespace
}  // namespace ferry::testing
