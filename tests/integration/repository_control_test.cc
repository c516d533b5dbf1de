// Model control modes against a real ferry-server: poll mode follows the repository (add, remove
// after draining, broken config, changed config, failed reload keeps serving, new version); explicit
// mode loads and unloads only through the repository API.
#include <gtest/gtest.h>

#include <filesystem>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using namespace std::chrono_literals;

// The index entry of `name` (first version listed), or null.
Json::Value index_entry(HttpClient& http, const std::string& name, const std::string& version = "") {
  auto index = parse(http.post("/v2/repository/index", "").body);
  for (const auto& m : index) {
    if (m["name"].asString() == name && (version.empty() || m["version"].asString() == version)) return m;
  }
  return Json::Value();
}

TEST(PollMode, FollowsTheRepository) {
  TempDir repo;
  add_echo_model(repo.path(), "echo");
  auto server = ServerProcess::start(repo.path(), {"--model-control-mode", "poll", "--repository-poll-secs", "1"});
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());

  // A folder dropped in is loaded.
  add_echo_model(repo.path(), "added");
  EXPECT_TRUE(eventually([&] { return http.get("/v2/models/added/ready").status == 200; }, 5000ms)) << server->log();

  // A broken config is reported UNAVAILABLE, naming the key and the file, and harms nothing else.
  write_file(repo.path() + "/bad/config.json", R"({"backend":"echo","version_policy":{"latest":{"num_versions":"x"}}})");
  write_file(repo.path() + "/bad/1/.keep", "");
  EXPECT_TRUE(eventually([&] { return index_entry(http, "bad")["state"].asString() == "UNAVAILABLE"; }, 5000ms));
  auto bad = index_entry(http, "bad");
  EXPECT_NE(bad["reason"].asString().find("version_policy"), std::string::npos) << dump(bad);
  EXPECT_NE(bad["reason"].asString().find("config.json"), std::string::npos) << dump(bad);
  EXPECT_EQ(http.post("/v2/models/echo/infer", infer_body("x")).status, 200);

  // A changed config that fails to load keeps the old version serving.
  write_file(repo.path() + "/echo/config.json", R"({"backend":"echo","unknown_echo_key":true})");
  ASSERT_TRUE(server->wait_for_log("reload failed, the previous version keeps serving", 5000ms)) << server->log();
  EXPECT_EQ(http.post("/v2/models/echo/infer", infer_body("still")).status, 200);
  EXPECT_EQ(index_entry(http, "echo")["state"].asString(), "READY");

  // A new version folder (with a good config) is picked up and served instead of the old one.
  write_file(repo.path() + "/echo/config.json", kEchoConfig);
  write_file(repo.path() + "/echo/2/.keep", "");
  EXPECT_TRUE(eventually([&] { return parse(http.get("/v2/models/echo").body)["versions"][0].asString() == "2"; }, 5000ms));
  EXPECT_EQ(http.get("/v2/models/echo/versions/1").status, 404);

  // A removed folder is unloaded only after its in-flight request finishes.
  Json::Value slow;
  slow["delay_ms"] = 1500;
  std::thread remover([&] {
    std::this_thread::sleep_for(200ms);
    std::filesystem::remove_all(repo.path() + "/added");
  });
  auto r = http.post("/v2/models/added/infer", infer_body("in flight", slow));
  remover.join();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(eventually([&] { return http.get("/v2/models/added").status == 404; }, 5000ms));
  EXPECT_EQ(http.post("/v2/models/echo/infer", infer_body("x")).status, 200);
}

TEST(ExplicitMode, LoadsOnlyWhatItIsTold) {
  TempDir repo;
  add_echo_model(repo.path(), "a");
  add_echo_model(repo.path(), "b");
  write_file(repo.path() + "/broken/config.json", R"({"backend":"no_such_backend"})");
  write_file(repo.path() + "/broken/1/.keep", "");
  auto server = ServerProcess::start(repo.path(), {"--model-control-mode", "explicit", "--load-model", "a"});
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());

  EXPECT_EQ(http.get("/v2/models/a/ready").status, 200);
  EXPECT_EQ(http.get("/v2/models/b/ready").status, 404);
  auto load = http.post("/v2/repository/models/b/load", "");
  EXPECT_EQ(load.status, 200) << load.body;
  EXPECT_EQ(http.post("/v2/models/b/infer", infer_body("x")).status, 200);

  // Reloading the same version keeps its metrics: the new instance shares the old one's series.
  ASSERT_EQ(http.post("/v2/repository/models/b/load", "").status, 200);
  ASSERT_EQ(http.post("/v2/models/b/infer", infer_body("y")).status, 200);
  EXPECT_TRUE(eventually([&] {
    return http.get("/metrics").body.find("ferry_request_success_total{model=\"b\",version=\"1\"}") != std::string::npos;
  }, 3000ms)) << http.get("/metrics").body;
  EXPECT_NE(http.get("/metrics").body.find("ferry_echo_requests_total{model=\"b\",version=\"1\"}"), std::string::npos);
  EXPECT_EQ(server->log().find("already exists"), std::string::npos);

  auto unload = http.post("/v2/repository/models/b/unload", "{}");
  EXPECT_EQ(unload.status, 200) << unload.body;
  EXPECT_TRUE(eventually([&] { return http.get("/v2/models/b").status == 404; }, 3000ms));

  auto missing = http.post("/v2/repository/models/nope/load", "");
  EXPECT_EQ(missing.status, 404) << missing.body;
  auto broken = http.post("/v2/repository/models/broken/load", "");
  EXPECT_EQ(broken.status, 400) << broken.body;
  EXPECT_NE(parse(broken.body)["error"].asString().find("no_such_backend"), std::string::npos) << broken.body;
  auto escape = http.post("/v2/repository/models/..%2Fetc/load", "");
  EXPECT_NE(escape.status, 200) << escape.body;
  auto dotdot = http.post("/v2/repository/models/.hidden/load", "");
  EXPECT_EQ(dotdot.status, 400) << dotdot.body;
  EXPECT_EQ(http.post("/v2/repository/models/nope/unload", "").status, 404);
  EXPECT_EQ(http.get("/v2/models/a/ready").status, 200) << "model a was never disturbed";
}

}  // namespace
}  // namespace ferry::testing
