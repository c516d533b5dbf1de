// The chat page that ferry-server serves at "/" (host/http/web_ui.h): what the server sends (the
// page, its script and style, the security headers), that --no-web-ui turns it off, that it needs
// no API key while the API keeps needing one, and the page itself in headless Chromium
// (tests/web/chat_page_test.mjs: streamed chat, stop, storage, model text shown as text, 401, 429,
// context too long). The Chromium test skips, saying why, without node, chromium or puppeteer-core
// (scripts/setup installs them). Also scripts/chat, the terminal client.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/raw_http.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;
using client::HttpClient;

constexpr char kKey[] = "web-ui-test-key";

// A repository with a copy of the default repository's tiny-llama.
class TinyLlamaRepository {
 public:
  TinyLlamaRepository() {
    fs::copy(fs::path(default_repository()) / "tiny-llama", dir_ / "tiny-llama", fs::copy_options::recursive);
  }
  const std::string& path() const { return dir_.path(); }

 private:
  TempDir dir_;
};

TEST(WebUi, ServesThePageItsScriptAndStyleWithSecurityHeaders) {
  TinyLlamaRepository repo;
  auto server = ServerProcess::start(repo.path());
  ASSERT_NE(server, nullptr);
  for (const char* path : {"/", "/index.html"}) {
    RawResponse page = raw_http(server->http_port(), "GET", path);
    ASSERT_EQ(page.status, 200) << path << "\n" << page.head;
    EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
    EXPECT_NE(page.body.find("<script type=\"module\" src=\"/ui/app.js\"></script>"), std::string::npos) << page.body;
    EXPECT_NE(page.body.find("/ui/style.css"), std::string::npos);
    // Only the page's own script may run, and it may talk only to this server.
    const std::string csp = page.header("Content-Security-Policy");
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos) << csp;
    EXPECT_EQ(page.header("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(std::stoul(page.header("Content-Length")), page.body.size());
  }
  RawResponse script = raw_http(server->http_port(), "GET", "/ui/app.js");
  ASSERT_EQ(script.status, 200);
  EXPECT_EQ(script.header("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_NE(script.body.find("/v1/chat/completions"), std::string::npos);
  // The page never writes model text as markup.
  EXPECT_EQ(script.body.find("innerHTML"), std::string::npos);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/ui/markdown.js").status, 200);
  RawResponse style = raw_http(server->http_port(), "GET", "/ui/style.css");
  ASSERT_EQ(style.status, 200);
  EXPECT_EQ(style.header("Content-Type"), "text/css; charset=utf-8");
  RawResponse head = raw_http(server->http_port(), "HEAD", "/");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/ui/nope.js").status, 404);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/ui/sub/app.js").status, 404);
  // The page is not on the metrics listener.
  EXPECT_EQ(raw_http(server->metrics_port(), "GET", "/").status, 404);
}

TEST(WebUi, NoWebUiTurnsThePageOffAndLeavesTheApi) {
  TinyLlamaRepository repo;
  auto server = ServerProcess::start(repo.path(), {"--no-web-ui"});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/").status, 404);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/ui/app.js").status, 404);
  HttpClient http(server->http_url());
  EXPECT_EQ(http.get("/v1/models").status, 200);
}

TEST(WebUi, PageNeedsNoKeyButTheApiDoes) {
  TinyLlamaRepository repo;
  auto server = ServerProcess::start(repo.path(), {"--api-key", kKey});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/").status, 200);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/ui/app.js").status, 200);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/v1/models").status, 401);
  EXPECT_EQ(raw_http(server->http_port(), "GET", "/v1/models", std::string("Authorization: Bearer ") + kKey + "\r\n")
                .status,
            200);
  // A POST to the page's path is no way around the key.
  EXPECT_EQ(raw_http(server->http_port(), "POST", "/", "", "{}").status, 401);
}

TEST(WebUi, ChatPageInHeadlessChromium) {
  const fs::path script = fs::path(source_dir()) / "tests" / "web" / "chat_page_test.mjs";
  const fs::path modules = fs::path(source_dir()) / "tests" / "web" / "node_modules" / "puppeteer-core";
  if (run_command("command -v node").second != 0) GTEST_SKIP() << "node not installed (scripts/setup installs nodejs)";
  auto [chromium, found] = run_command("command -v chromium");
  if (found != 0) GTEST_SKIP() << "chromium not installed (Debian package chromium; scripts/setup installs it)";
  chromium.erase(chromium.find_last_not_of("\n") + 1);
  if (!fs::exists(modules)) {
    GTEST_SKIP() << "puppeteer-core not installed in tests/web (scripts/setup runs npm ci there)";
  }
  TinyLlamaRepository repo;
  auto server = ServerProcess::start(repo.path());
  ASSERT_NE(server, nullptr);
  TinyLlamaRepository keyed_repo;
  auto keyed = ServerProcess::start(keyed_repo.path(), {"--api-key", kKey});
  ASSERT_NE(keyed, nullptr);
  const std::string out = build_dir() + "/tests/web-screenshots";
  auto [log, rc] = run_command("node '" + script.string() + "' --url " + server->http_url() + " --key-url " +
                       keyed->http_url() + " --key " + kKey + " --chromium '" + chromium + "' --out '" + out + "'");
  EXPECT_EQ(rc, 0) << log;
  std::printf("%s(screenshots in %s)\n", log.c_str(), out.c_str());
}

// scripts/chat, the terminal client: streams an answer with its stats, says what a 401 means, lists the
// models and completes a prompt from standard input.
TEST(TerminalChat, StreamsAnAnswerAndExplainsAMissingKey) {
  if (run_command("command -v python3").second != 0) GTEST_SKIP() << "python3 not installed";
  TinyLlamaRepository repo;
  auto server = ServerProcess::start(repo.path(), {"--api-key", kKey});
  ASSERT_NE(server, nullptr);
  const std::string chat = source_dir() + "/scripts/chat --url " + server->http_url();
  auto [out, rc] = run_command("echo Hello | FERRY_API_KEY=" + std::string(kKey) + " " + chat +
                       " --model tiny-llama --max-tokens 8 --temperature 0");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("[8 tokens · "), std::string::npos) << out;
  EXPECT_NE(out.find(" tokens/s · TTFT "), std::string::npos) << out;
  auto [refused, refused_rc] = run_command("echo Hello | env -u FERRY_API_KEY " + chat);
  EXPECT_NE(refused_rc, 0);
  EXPECT_NE(refused.find("the server needs an API key"), std::string::npos) << refused;
  // --models lists the ready models; --complete continues standard input over /v1/completions.
  auto [models, models_rc] = run_command("FERRY_API_KEY=" + std::string(kKey) + " " + chat + " --models");
  EXPECT_EQ(models_rc, 0) << models;
  EXPECT_EQ(models, "tiny-llama\n");
  auto [completed, completed_rc] = run_command("printf 'Once upon a time' | FERRY_API_KEY=" + std::string(kKey) + " " + chat +
                                       " --complete --max-tokens 5 --temperature 0");
  EXPECT_EQ(completed_rc, 0) << completed;
  EXPECT_NE(completed.find("[5 tokens · "), std::string::npos) << completed;
  auto [empty, empty_rc] = run_command("printf '' | FERRY_API_KEY=" + std::string(kKey) + " " + chat + " --complete");
  EXPECT_NE(empty_rc, 0);
  EXPECT_NE(empty.find("standard input, which is empty"), std::string::npos) << empty;
}

}  // namespace
}  // namespace ferry::testing
