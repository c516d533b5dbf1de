// Command-line parsing: Triton-style flags, both --flag value and --flag=value, clear errors; safe
// defaults (loopback binds, no key) and the API key comparison.
#include "host/options.h"
#include "host/server_context.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace ferry::host {
namespace {

Result<ServerOptions> parse(std::vector<std::string> args, bool* help = nullptr) {
  args.insert(args.begin(), "ferry-server");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  bool h = false;
  std::string text;
  auto r = parse_options(static_cast<int>(argv.size()), argv.data(), &h, &text);
  if (help) *help = h;
  return r;
}

TEST(Options, DefaultsAreSafe) {
  unsetenv("FERRY_API_KEY");
  auto o = parse({});
  ASSERT_TRUE(o.ok());
  // Both frontends listen on the loopback interface only unless told otherwise.
  EXPECT_EQ(o->http_address, "127.0.0.1");
  EXPECT_EQ(o->http_port, 8000);
  EXPECT_EQ(o->zmq_endpoint, "tcp://127.0.0.1:5555");
  EXPECT_EQ(o->model_control_mode, ModelControlMode::kNone);
  EXPECT_EQ(o->http_max_body_bytes, 64ull << 20);
  EXPECT_EQ(o->http_max_header_bytes, 16384);
  EXPECT_EQ(o->api_key, "");
  EXPECT_FALSE(o->auth_health_metrics);
  EXPECT_EQ(o->zmq_curve_secret_key_file, "");
  // Slow or idle clients lose their connection within seconds; health has a listener of its own.
  EXPECT_EQ(o->http_request_timeout_ms, 10000);
  EXPECT_EQ(o->http_keep_alive_timeout_ms, 5000);
  EXPECT_EQ(o->http_thread_count, 256);
  EXPECT_EQ(o->metrics_port, 8002);
}

TEST(Options, ConnectionFlags) {
  auto o = parse({"--http-request-timeout-ms", "500", "--http-keep-alive-timeout-ms=0", "--metrics-port", "0",
                  "--http-thread-count", "16"});
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_EQ(o->http_request_timeout_ms, 500);
  EXPECT_EQ(o->http_keep_alive_timeout_ms, 0);
  EXPECT_EQ(o->metrics_port, 0);
  EXPECT_EQ(o->http_thread_count, 16);
  o = parse({"--metrics-port", "-1"});
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_EQ(o->metrics_port, -1);
  for (auto args : std::vector<std::vector<std::string>>{{"--http-request-timeout-ms", "0"},
                                                         {"--http-request-timeout-ms", "x"},
                                                         {"--http-keep-alive-timeout-ms", "-1"},
                                                         {"--metrics-port", "-2"},
                                                         {"--metrics-port", "65536"}}) {
    auto bad = parse(args);
    ASSERT_FALSE(bad.ok()) << args[0] << " " << args[1];
    EXPECT_NE(bad.status().message().find(args[0]), std::string::npos) << bad.status().message();
  }
}

TEST(Options, SecurityFlags) {
  unsetenv("FERRY_API_KEY");
  auto o = parse({"--api-key", "k1", "--auth-health-metrics", "--zmq-curve-secret-key", "/s", "--http-max-header-bytes",
                  "4096"});
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_EQ(o->api_key, "k1");
  EXPECT_TRUE(o->auth_health_metrics);
  EXPECT_EQ(o->zmq_curve_secret_key_file, "/s");
  EXPECT_EQ(o->http_max_header_bytes, 4096);
  // A switch takes an optional =value; without one it does not swallow the next argument.
  o = parse({"--api-key=k1", "--auth-health-metrics=false", "--http-port", "1"});
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_FALSE(o->auth_health_metrics);
  EXPECT_EQ(o->http_port, 1);

  EXPECT_FALSE(parse({"--auth-health-metrics"}).ok()) << "closing health without a key would lock everyone out";
  EXPECT_FALSE(parse({"--api-key", ""}).ok());
  EXPECT_FALSE(parse({"--api-key", "k", "--auth-health-metrics=maybe"}).ok());
  EXPECT_FALSE(parse({"--http-max-header-bytes", "10"}).ok());
}

TEST(Options, ApiKeyFromTheEnvironment) {
  setenv("FERRY_API_KEY", "from-env", 1);
  auto o = parse({});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->api_key, "from-env");
  o = parse({"--api-key", "from-flag"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->api_key, "from-flag") << "the flag wins over the environment";
  EXPECT_TRUE(parse({"--auth-health-metrics"}).ok());
  unsetenv("FERRY_API_KEY");
}

TEST(Options, ParsesEveryFlag) {
  auto o = parse({"--model-repository", "/r", "--http-address=0.0.0.0", "--http-port", "0", "--zmq-endpoint",
                  "tcp://127.0.0.1:0", "--model-control-mode", "explicit", "--repository-poll-secs", "3",
                  "--load-model", "a", "--load-model=b", "--backend-directory", "/b", "--log-level", "verbose",
                  "--shutdown-timeout", "7"});
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_EQ(o->model_repository, "/r");
  EXPECT_EQ(o->http_address, "0.0.0.0");
  EXPECT_EQ(o->http_port, 0);
  EXPECT_EQ(o->model_control_mode, ModelControlMode::kExplicit);
  EXPECT_EQ(o->repository_poll_secs, 3);
  EXPECT_EQ(o->load_models, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(o->backend_directory, "/b");
  EXPECT_EQ(o->log_level, LogLevel::kVerbose);
  EXPECT_EQ(o->shutdown_timeout_secs, 7);
}

TEST(Options, ErrorsNameTheFlag) {
  for (auto args : std::vector<std::vector<std::string>>{{"--http-port", "70000"},
                                                         {"--http-port", "x"},
                                                         {"--model-control-mode", "sometimes"},
                                                         {"--nope", "1"},
                                                         {"--log-level"},
                                                         {"--load-model", "a"}}) {
    auto o = parse(args);
    ASSERT_FALSE(o.ok()) << args[0];
    EXPECT_NE(o.status().message().find(args[0]), std::string::npos) << o.status().message();
  }
  bool help = false;
  EXPECT_TRUE(parse({"--help"}, &help).ok());
  EXPECT_TRUE(help);
}

TEST(Options, ApiKeyComparison) {
  EXPECT_TRUE(api_key_matches("secret", "secret"));
  EXPECT_FALSE(api_key_matches("secreT", "secret"));
  EXPECT_FALSE(api_key_matches("secret2", "secret"));
  EXPECT_FALSE(api_key_matches("secretsecret", "secret")) << "the key repeated is not the key";
  EXPECT_FALSE(api_key_matches("secre", "secret"));
  EXPECT_FALSE(api_key_matches("", "secret"));
  EXPECT_FALSE(api_key_matches("", "")) << "an empty key never matches";
}

}  // namespace
}  // namespace ferry::host
