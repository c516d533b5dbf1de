// Keeps the docs honest against a real ferry-server: every flag of `ferry-server --help` is
// documented, docs/metrics.md names exactly the metric families a server with the echo and LLM
// backends exposes, and `promtool check metrics` (Prometheus' own linter) accepts /metrics. Also
// what an operator reads next to the docs: every log line names its source file and line.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
namespace fs = std::filesystem;

std::set<std::string> matches(const std::string& text, const std::regex& re, int group = 1) {
  std::set<std::string> out;
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) out.insert((*it)[group].str());
  return out;
}

TEST(Docs, EveryFlagOfHelpIsDocumented) {
  auto [help, rc] = run_command(build_dir() + "/host/ferry-server --help");
  ASSERT_EQ(rc, 0) << help;
  const auto flags = matches(help, std::regex(R"((?:^|\s)(--[a-z][a-z0-9-]*))"));
  ASSERT_GT(flags.size(), 10u) << help;
  std::string docs = read_file(fs::path(source_dir()) / "README.md");
  for (const auto& f : fs::directory_iterator(fs::path(source_dir()) / "docs")) {
    if (f.path().extension() == ".md") docs += read_file(f.path());
  }
  for (const auto& flag : flags) {
    EXPECT_NE(docs.find(flag), std::string::npos) << flag << " is in --help but in no docs/*.md nor README.md";
  }
}

class LiveMetrics : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    add_echo_model(repo_->path(), "echo");
    fs::copy(fs::path(default_repository()) / "tiny-llama", repo_->path() + "/tiny-llama", fs::copy_options::recursive);
    server_ = ServerProcess::start(repo_->path(), {"--log-level", "verbose"}).release();
    if (server_ == nullptr) return;
    HttpClient http(server_->http_url());
    // One request each, so that every series a request creates exists too.
    http.post("/v2/models/echo/infer", infer_body("x"));
    http.post("/v2/models/tiny-llama/generate", R"({"text_input":"The ferry","max_tokens":2})");
    metrics_ = new std::string(http.get("/metrics").body);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
    delete metrics_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(metrics_, nullptr);
  }
  static TempDir* repo_;
  static ServerProcess* server_;
  static std::string* metrics_;
};
TempDir* LiveMetrics::repo_ = nullptr;
ServerProcess* LiveMetrics::server_ = nullptr;
std::string* LiveMetrics::metrics_ = nullptr;

TEST_F(LiveMetrics, PromtoolAcceptsMetrics) {
  if (run_command("command -v promtool").second != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus; scripts/setup installs it)";
  }
  TempDir dir;
  write_file(dir / "metrics.txt", *metrics_);
  auto [out, rc] = run_command("promtool check metrics < '" + dir / "metrics.txt" + "'");
  EXPECT_EQ(rc, 0) << out << "\n" << *metrics_;
}

TEST_F(LiveMetrics, MetricsPageNamesExactlyTheFamiliesServed) {
  const std::string page = read_file(fs::path(source_dir()) / "docs" / "metrics.md");
  const auto served = matches(*metrics_, std::regex(R"(# TYPE (ferry_[a-zA-Z0-9_]+) )"));
  // Table rows: | `ferry_name` | kind | ...
  const auto documented = matches(page, std::regex(R"(\n\| `(ferry_[a-zA-Z0-9_]+)` \|)"));
  ASSERT_GT(served.size(), 10u) << *metrics_;
  ASSERT_GT(documented.size(), 10u);
  for (const auto& name : documented) EXPECT_TRUE(served.count(name)) << name << " is in docs/metrics.md, not on /metrics";
  // Backend examples (ferry_echo_requests_total) are described in prose rather than in a table.
  for (const auto& name : served) {
    EXPECT_NE(page.find("`" + name + "`"), std::string::npos) << name << " is on /metrics, not in docs/metrics.md";
  }
}

TEST_F(LiveMetrics, EveryLogLineNamesItsSource) {
  // "<level> <UTC time> <file>:<line>] <message>"; backends log through the host's function table.
  const std::regex line_re(R"(^[EWIV] \S+ [A-Za-z0-9_.-]+\.(cc|h|c|cu):[0-9]+\] )");
  std::istringstream log(server_->log());
  int checked = 0, from_llm = 0;
  for (std::string line; std::getline(log, line);) {
    if (!std::regex_search(line, std::regex(R"(^[EWIV] 20)"))) continue;  // not a log line (e.g. a library's)
    ++checked;
    EXPECT_TRUE(std::regex_search(line, line_re)) << line;
    if (line.find("model 'tiny-llama':") != std::string::npos) ++from_llm;
  }
  EXPECT_GT(checked, 5);
  EXPECT_GT(from_llm, 0) << "the LLM backend's own lines are checked too\n" << server_->log();
}

}  // namespace
}  // namespace ferry::testing
