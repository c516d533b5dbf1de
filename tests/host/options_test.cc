// Command-line parsing: Triton-style flags, both --flag value and --flag=value, clear errors.
#include "host/options.h"

#include <gtest/gtest.h>

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
  auto o = parse({});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->http_address, "127.0.0.1");
  EXPECT_EQ(o->http_port, 8000);
  EXPECT_EQ(o->zmq_endpoint, "tcp://127.0.0.1:5555");
  EXPECT_EQ(o->model_control_mode, ModelControlMode::kNone);
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

}  // namespace
}  // namespace ferry::host
