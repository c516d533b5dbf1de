// Backends built against other ABI versions, served by a real ferry-server: the host refuses the
// incompatible ones (the model is UNAVAILABLE with the versions in the reason, the server stays up),
// and it calls ferry_model_health only for backends new enough to have it.
#include <gtest/gtest.h>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

TEST(AbiBackends, IncompatibleBackendsAreRefusedAndHealthIsGatedByMinor) {
  TempDir repo;
  for (const char* b : {"current", "old_minor", "wrong_major", "future_minor", "missing_submit"}) {
    write_file(repo.path() + "/" + b + "/config.json", std::string(R"({"backend":")") + b + "\"}");
    write_file(repo.path() + "/" + b + "/1/.keep", "");
  }
  auto server = ServerProcess::start(repo.path(), {"--backend-directory", build_dir() + "/test_backends"});
  ASSERT_NE(server, nullptr);
  client::HttpClient http(server->http_url());

  // current (1.2) exports a failing ferry_model_health: loaded, but not ready, with the reason.
  auto current = http.get("/v2/models/current/ready");
  EXPECT_EQ(current.status, 503);
  EXPECT_NE(parse(current.body)["error"].asString().find("unhealthy"), std::string::npos) << current.body;
  // old_minor (1.0) exports the same function, but 1.0 had no health check: the host ignores it.
  EXPECT_EQ(http.get("/v2/models/old_minor/ready").status, 200);
  EXPECT_EQ(http.post("/v2/models/old_minor/infer", infer_body("x")).status, 200);

  auto index = parse(http.post("/v2/repository/index", "").body);
  std::map<std::string, Json::Value> by_name;
  for (const auto& m : index) by_name[m["name"].asString()] = m;
  EXPECT_EQ(by_name["wrong_major"]["state"].asString(), "UNAVAILABLE");
  EXPECT_NE(by_name["wrong_major"]["reason"].asString().find("incompatible major"), std::string::npos);
  EXPECT_EQ(by_name["future_minor"]["state"].asString(), "UNAVAILABLE");
  EXPECT_NE(by_name["future_minor"]["reason"].asString().find("needs a newer host"), std::string::npos);
  EXPECT_EQ(by_name["missing_submit"]["state"].asString(), "UNAVAILABLE");
  EXPECT_NE(by_name["missing_submit"]["reason"].asString().find("ferry_model_submit"), std::string::npos);
  EXPECT_EQ(http.get("/v2/health/live").status, 200);
  // current (1.2) reported loading progress from ferry_model_create: the host logged it (the
  // first report, and the complete one); once loaded the version has no progress reason.
  EXPECT_TRUE(server->wait_for_log("loading model 'current' version 1: test backend loading: 1 of 2 tensors", std::chrono::seconds(1)))
      << server->log();
  EXPECT_TRUE(server->wait_for_log("loading model 'current' version 1: test backend loading: 2 of 2 tensors", std::chrono::seconds(1)))
      << server->log();
  EXPECT_EQ(server->log().find("loading model 'old_minor' version 1: "), std::string::npos);
}

}  // namespace
}  // namespace ferry::testing
