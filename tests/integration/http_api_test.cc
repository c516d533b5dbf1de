// The HTTP frontend against a real ferry-server: every KServe v2 endpoint, generate and
// generate_stream, /metrics, cancellation by client disconnect, and every bad input.
#include <gtest/gtest.h>

#include "client/http_client.h"
#include "tests/host/exposition_parser.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;

class HttpApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo", {1, 2});
    write_file(repo_->path() + "/broken/config.json", R"({"backend":"echo","no_such_key":1})");
    write_file(repo_->path() + "/broken/1/.keep", "");
    server_ = ServerProcess::start(repo_->path(), {"--http-max-body-bytes", "4096"}).release();
    ASSERT_NE(server_, nullptr);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
  }
  Json::Value backend_stats() {
    auto r = http_->get("/v2/models/echo/stats");
    return parse(r.body)["model_stats"][0]["backend"];
  }

  static TempDir* repo_;
  static ServerProcess* server_;
  std::unique_ptr<HttpClient> http_;
};
TempDir* HttpApi::repo_ = nullptr;
ServerProcess* HttpApi::server_ = nullptr;

TEST_F(HttpApi, ServerMetadataAndHealth) {
  auto r = http_->get("/v2");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(parse(r.body)["name"].asString(), "ferry");
  EXPECT_EQ(http_->get("/v2/health/live").status, 200);
  EXPECT_EQ(http_->get("/v2/health/ready").status, 200);
}

TEST_F(HttpApi, ModelMetadataReadyConfigStats) {
  auto meta = parse(http_->get("/v2/models/echo").body);
  EXPECT_EQ(meta["name"].asString(), "echo");
  EXPECT_EQ(meta["versions"].size(), 1u) << "latest-1 policy serves only version 2";
  EXPECT_EQ(meta["versions"][0].asString(), "2");
  EXPECT_EQ(meta["inputs"][0]["name"].asString(), "text_input");
  EXPECT_EQ(http_->get("/v2/models/echo/versions/2").status, 200);
  EXPECT_EQ(http_->get("/v2/models/echo/ready").status, 200);
  EXPECT_EQ(http_->get("/v2/models/echo/versions/2/ready").status, 200);
  auto config = parse(http_->get("/v2/models/echo/config").body);
  EXPECT_EQ(config["backend"].asString(), "echo");
  auto stats = http_->get("/v2/models/echo/versions/2/stats");
  EXPECT_EQ(stats.status, 200);
  EXPECT_EQ(parse(stats.body)["model_stats"][0]["version"].asString(), "2");
  EXPECT_EQ(http_->get("/v2/models/stats").status, 200);
}

TEST_F(HttpApi, InferEchoesEveryTensor) {
  std::string body = R"({"id":"q1","inputs":[
    {"name":"text_input","datatype":"BYTES","shape":[2],"data":["a","b"]},
    {"name":"x","datatype":"FP32","shape":[1,2],"data":[[1.5,2]]}]})";
  auto r = http_->post("/v2/models/echo/infer", body);
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = parse(r.body);
  EXPECT_EQ(j["id"].asString(), "q1");
  EXPECT_EQ(j["model_version"].asString(), "2");
  ASSERT_EQ(j["outputs"].size(), 2u);
  EXPECT_EQ(j["outputs"][0]["data"][1].asString(), "b");
  EXPECT_EQ(j["outputs"][1]["data"][0].asDouble(), 1.5);
  EXPECT_EQ(j["outputs"][1]["shape"][1].asInt(), 2);
}

TEST_F(HttpApi, GenerateMapsKeysAndStreamsOverSse) {
  auto r = http_->post("/v2/models/echo/generate", R"({"text_input":"hello","max_tokens":4})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse(r.body)["text_input"].asString(), "hello");

  std::vector<Json::Value> events;
  auto s = http_->post_stream("/v2/models/echo/generate_stream",
                              R"({"text_input":"hi","parameters":{"responses":3,"delay_ms":5}})",
                              [&](const std::string& data) {
                                events.push_back(parse(data));
                                return true;
                              });
  EXPECT_EQ(s.status, 200);
  EXPECT_NE(s.content_type.find("text/event-stream"), std::string::npos);
  ASSERT_EQ(events.size(), 3u);
  for (const auto& e : events) EXPECT_EQ(e["text_input"].asString(), "hi");
  EXPECT_EQ(events.back()["finish_reason"].asString(), "stop");
}

TEST_F(HttpApi, StreamErrorArrivesAsAnEvent) {
  std::vector<Json::Value> events;
  http_->post_stream("/v2/models/echo/generate_stream",
                     R"({"text_input":"x","parameters":{"error":"boom","error_code":"INVALID_ARGUMENT"}})",
                     [&](const std::string& d) {
                       events.push_back(parse(d));
                       return true;
                     });
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["error"].asString(), "boom");
}

TEST_F(HttpApi, ClientDisconnectDuringStreamCancelsTheRequest) {
  double cancelled_before = backend_stats()["cancelled"].asDouble();
  int seen = 0;
  http_->post_stream("/v2/models/echo/generate_stream",
                     R"({"text_input":"x","parameters":{"responses":200,"delay_ms":20}})",
                     [&](const std::string&) { return ++seen < 2; });
  EXPECT_EQ(seen, 2);
  // The backend sees the cancel (its next write fails) long before the 4 s the stream would take.
  EXPECT_TRUE(eventually([&] { return backend_stats()["cancelled"].asDouble() == cancelled_before + 1; }, 2000ms))
      << dump(backend_stats());
  EXPECT_TRUE(eventually([&] { return backend_stats()["in_flight"].asInt() == 0; }, 2000ms));
}

TEST_F(HttpApi, ClientDisconnectBeforeANonStreamedAnswerCancelsTheRequest) {
  double cancelled_before = backend_stats()["cancelled"].asDouble();
  HttpClient impatient(server_->http_url());
  impatient.set_timeout_ms(300);  // gives up long before the 10 s answer and closes the connection
  auto r = impatient.post("/v2/models/echo/infer", infer_body("x", parse(R"({"delay_ms":10000})")));
  EXPECT_NE(r.error, "");
  EXPECT_TRUE(eventually([&] { return backend_stats()["cancelled"].asDouble() == cancelled_before + 1; }, 3000ms))
      << dump(backend_stats());
  EXPECT_TRUE(eventually([&] { return backend_stats()["in_flight"].asInt() == 0; }, 2000ms));
}

TEST_F(HttpApi, BadInputGetsAClearErrorAndStatus) {
  struct Case {
    const char* method;
    const char* path;
    std::string body;
    long status;
    const char* needle;
  } cases[] = {
      {"POST", "/v2/models/echo/infer", "{bad json", 400, "malformed JSON"},
      {"POST", "/v2/models/echo/infer", "[1]", 400, "JSON object"},
      {"POST", "/v2/models/echo/infer", "", 400, "empty"},
      {"POST", "/v2/models/echo/infer", R"({"inputs":"x"})", 400, "'inputs'"},
      {"POST", "/v2/models/echo/infer", R"({"inputs":[]})", 400, "'inputs'"},
      {"POST", "/v2/models/echo/infer", R"({"inputs":[{"name":"a","datatype":"INT32","shape":[1],"data":["s"]}]})", 400,
       "INT32"},
      {"POST", "/v2/models/echo/infer", R"({"inputs":[{"name":"a","datatype":"INT32","shape":[3],"data":[1]}]})", 400,
       "3 elements"},
      {"POST", "/v2/models/echo/infer", R"({"inputs":[{"name":"a","datatype":"INT32","shape":[1]}]})", 400, "missing"},
      {"POST", "/v2/models/echo/infer", infer_body("x", parse(R"({"responses":"many"})")), 400, "responses"},
      {"POST", "/v2/models/echo/infer", infer_body("x", parse(R"({"error":"forced"})")), 500, "forced"},
      {"POST", "/v2/models/nope/infer", infer_body("x"), 404, "unknown model"},
      {"POST", "/v2/models/echo/versions/9/infer", infer_body("x"), 404, "unknown version"},
      {"POST", "/v2/models/echo/versions/1/infer", infer_body("x"), 404, "unknown version"},
      {"POST", "/v2/models/broken/infer", infer_body("x"), 503, "no_such_key"},
      {"GET", "/v2/models/broken/ready", "", 503, "no_such_key"},
      {"POST", "/v2/models/echo/infer", std::string(5000, ' '), 413, "limit"},
      {"GET", "/v2/models/echo/infer", "", 405, "not allowed"},
      {"GET", "/v2/nothing/here", "", 404, "no such endpoint"},
      {"GET", "/v2/models/nope", "", 404, "unknown model"},
  };
  for (const auto& c : cases) {
    auto r = std::string(c.method) == "GET" ? http_->get(c.path) : http_->post(c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body.substr(0, 80) << " -> " << r.body;
    auto j = parse(r.body);
    ASSERT_TRUE(j.isObject() && j["error"].isString()) << r.body;
    EXPECT_NE(j["error"].asString().find(c.needle), std::string::npos) << r.body;
  }
  EXPECT_EQ(http_->request("DELETE", "/v2/models/echo").status, 405);
  auto head = http_->request("HEAD", "/v2/models/echo");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty()) << "HEAD answers carry no body";
  // Nothing above disturbed the server.
  auto ok = http_->post("/v2/models/echo/infer", infer_body("still fine"));
  EXPECT_EQ(ok.status, 200);
}

TEST_F(HttpApi, MetricsAreValidExpositionAndCountRequests) {
  ASSERT_EQ(http_->post("/v2/models/echo/infer", infer_body("m")).status, 200);
  http_->post("/v2/models/echo/infer", infer_body("m", parse(R"({"error":"x","error_code":"UNAVAILABLE"})")));
  auto r = http_->get("/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.content_type.find("text/plain"), std::string::npos);
  Exposition e;
  std::string err;
  ASSERT_TRUE(parse_exposition(r.body, &e, &err)) << err;
  std::map<std::string, std::string> echo2 = {{"model", "echo"}, {"version", "2"}};
  EXPECT_GE(e.value("ferry_request_success_total", echo2), 1);
  auto unavailable = echo2;
  unavailable["reason"] = "unavailable";
  EXPECT_GE(e.value("ferry_request_failure_total", unavailable), 1);
  EXPECT_GE(e.value("ferry_request_duration_seconds_count", echo2), 2);
  EXPECT_EQ(e.types["ferry_queue_duration_seconds"], "histogram");
  EXPECT_EQ(e.value("ferry_inflight_requests", echo2), 0);
  EXPECT_GE(e.value("ferry_echo_requests_total", echo2), 2) << "backend-registered metric";
}

TEST_F(HttpApi, RepositoryIndexShowsStatesAndReasons) {
  auto r = http_->post("/v2/repository/index", "");
  ASSERT_EQ(r.status, 200);
  auto j = parse(r.body);
  bool saw_broken = false, saw_echo = false;
  for (const auto& m : j) {
    if (m["name"] == "broken") {
      saw_broken = true;
      EXPECT_EQ(m["state"].asString(), "UNAVAILABLE");
      EXPECT_NE(m["reason"].asString().find("no_such_key"), std::string::npos);
      EXPECT_NE(m["reason"].asString().find("config.json"), std::string::npos) << "names the file";
    }
    if (m["name"] == "echo") {
      saw_echo = true;
      EXPECT_EQ(m["state"].asString(), "READY");
    }
  }
  EXPECT_TRUE(saw_broken && saw_echo) << r.body;
  auto ready = parse(http_->post("/v2/repository/index", R"({"ready":true})").body);
  for (const auto& m : ready) EXPECT_EQ(m["state"].asString(), "READY");
  // Load/unload are refused outside explicit mode.
  EXPECT_EQ(http_->post("/v2/repository/models/echo/unload", "").status, 503);
}

}  // namespace
}  // namespace ferry::testing
