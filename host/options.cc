#include "host/options.h"

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

namespace ferry::host {
namespace {

Result<int64_t> parse_int(const std::string& flag, const std::string& v, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > hi) {
    return Status::InvalidArgument("flag " + flag + ": expected an integer in [" + std::to_string(lo) + ", " +
                                   std::to_string(hi) + "], got '" + v + "'");
  }
  return static_cast<int64_t>(x);
}

std::string default_backend_directory() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "backends";
  return (exe.parent_path().parent_path() / "backends").string();
}

}  // namespace

std::string usage_text() {
  return R"(Usage: ferry-server [flags]

  --model-repository DIR        model repository to serve (default: model_repository)
  --http-address ADDR           HTTP bind address (default: 127.0.0.1)
  --http-port PORT              HTTP port; 0 picks a free one and logs it (default: 8000)
  --http-thread-count N         HTTP worker threads, one per open connection; a stream holds one
                                for its life (default: 256)
  --http-request-timeout-ms N   a request's line and headers must arrive within N ms, its body
                                within N ms + 1 s per 64 KiB; slower clients are disconnected
                                (default: 10000)
  --http-keep-alive-timeout-ms N
                                an idle kept-alive HTTP connection is closed after N ms
                                (default: 5000)
  --metrics-port PORT           a second HTTP listener, with workers of its own, for /metrics,
                                /v2/health/* and model ready checks (they answer there while the
                                main port's workers are all busy); 0 picks a free port and logs
                                it; -1 turns it off (default: 8002)
  --http-max-body-bytes N       larger request bodies and ZeroMQ messages get 413 (default: 67108864)
  --http-max-header-bytes N     larger request lines + headers get 431 (default: 16384)
  --zmq-endpoint ENDPOINT       ZeroMQ ROUTER endpoint; port 0 picks a free one; "" disables
                                (default: tcp://127.0.0.1:5555)
  --model-control-mode MODE     none: load all at start; poll: also follow repository changes;
                                explicit: only --load-model and the repository API (default: none)
  --repository-poll-secs N      poll interval in poll mode (default: 15)
  --load-model NAME             in explicit mode, load NAME at start (repeatable)
  --backend-directory DIR       where libferry_<backend>.so live (default: <bin>/../backends)
  --log-level LEVEL             error, warning, info or verbose (default: info)
  --shutdown-timeout SECS       on SIGINT/SIGTERM, how long in-flight requests may finish (default: 30)
  --api-key KEY                 require "Authorization: Bearer KEY" on HTTP (all but health and
                                /metrics) and "api_key": KEY in every ZeroMQ message; the
                                environment variable FERRY_API_KEY is read when this flag is absent
                                (preferred: a command line is visible to every local user)
  --auth-health-metrics[=BOOL]  also require the key on /v2/health/*, model ready and /metrics
                                (default: false; needs an API key)
  --zmq-curve-secret-key FILE   ZeroMQ CURVE: encrypt with this Z85 secret key (40 characters);
                                clients need the server's public key, which is logged at startup
  --no-web-ui                   do not serve the chat page at / (and /ui/*); the APIs are unchanged
  --help                        this text
  --version                     the server and ABI versions
)";
}

Result<ServerOptions> parse_options(int argc, char** argv, bool* help, std::string* help_text) {
  ServerOptions o;
  o.backend_directory = default_backend_directory();
  *help = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      *help = true;
      *help_text = usage_text();
      return o;
    }
    if (arg == "--version") {
      *help = true;
      *help_text = "ferry-server " FERRY_VERSION " (ABI " + std::to_string(FERRY_ABI_VERSION_MAJOR) + "." +
                   std::to_string(FERRY_ABI_VERSION_MINOR) + ")\n";
      return o;
    }
    if (arg.rfind("--", 0) != 0) return Status::InvalidArgument("unexpected argument '" + arg + "' (see --help)");
    if (arg == "--no-web-ui") {
      o.web_ui = false;
      continue;
    }
    std::string flag = arg, value;
    auto eq = arg.find('=');
    if (eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (flag == "--auth-health-metrics") {
      value = "true";  // a switch: its value is optional
    } else {
      if (i + 1 >= argc) return Status::InvalidArgument("flag " + flag + " needs a value");
      value = argv[++i];
    }
    if (flag == "--model-repository") {
      o.model_repository = value;
    } else if (flag == "--http-address") {
      o.http_address = value;
    } else if (flag == "--http-port") {
      auto v = parse_int(flag, value, 0, 65535);
      if (!v.ok()) return v.status();
      o.http_port = static_cast<int>(v.value());
    } else if (flag == "--http-thread-count") {
      auto v = parse_int(flag, value, 2, 4096);
      if (!v.ok()) return v.status();
      o.http_thread_count = static_cast<int>(v.value());
    } else if (flag == "--http-request-timeout-ms") {
      auto v = parse_int(flag, value, 100, 3600 * 1000);
      if (!v.ok()) return v.status();
      o.http_request_timeout_ms = static_cast<int>(v.value());
    } else if (flag == "--http-keep-alive-timeout-ms") {
      auto v = parse_int(flag, value, 0, 3600 * 1000);
      if (!v.ok()) return v.status();
      o.http_keep_alive_timeout_ms = static_cast<int>(v.value());
    } else if (flag == "--metrics-port") {
      auto v = parse_int(flag, value, -1, 65535);
      if (!v.ok()) return v.status();
      o.metrics_port = static_cast<int>(v.value());
    } else if (flag == "--http-max-body-bytes") {
      auto v = parse_int(flag, value, 1024, int64_t{1} << 40);
      if (!v.ok()) return v.status();
      o.http_max_body_bytes = static_cast<uint64_t>(v.value());
    } else if (flag == "--zmq-endpoint") {
      o.zmq_endpoint = value;
    } else if (flag == "--model-control-mode") {
      if (value == "none") o.model_control_mode = ModelControlMode::kNone;
      else if (value == "poll") o.model_control_mode = ModelControlMode::kPoll;
      else if (value == "explicit") o.model_control_mode = ModelControlMode::kExplicit;
      else return Status::InvalidArgument("flag --model-control-mode: expected none, poll or explicit, got '" + value + "'");
    } else if (flag == "--repository-poll-secs") {
      auto v = parse_int(flag, value, 1, 86400);
      if (!v.ok()) return v.status();
      o.repository_poll_secs = static_cast<int>(v.value());
    } else if (flag == "--load-model") {
      o.load_models.push_back(value);
    } else if (flag == "--backend-directory") {
      o.backend_directory = value;
    } else if (flag == "--log-level") {
      if (!parse_log_level(value, &o.log_level)) {
        return Status::InvalidArgument("flag --log-level: expected error, warning, info or verbose, got '" + value + "'");
      }
    } else if (flag == "--shutdown-timeout") {
      auto v = parse_int(flag, value, 0, 86400);
      if (!v.ok()) return v.status();
      o.shutdown_timeout_secs = static_cast<int>(v.value());
    } else if (flag == "--api-key") {
      if (value.empty()) return Status::InvalidArgument("flag --api-key: the key must not be empty");
      o.api_key = value;
    } else if (flag == "--auth-health-metrics") {
      if (value == "true" || value == "1") o.auth_health_metrics = true;
      else if (value == "false" || value == "0") o.auth_health_metrics = false;
      else return Status::InvalidArgument("flag --auth-health-metrics: expected true or false, got '" + value + "'");
    } else if (flag == "--http-max-header-bytes") {
      auto v = parse_int(flag, value, 1024, 1 << 20);
      if (!v.ok()) return v.status();
      o.http_max_header_bytes = static_cast<int>(v.value());
    } else if (flag == "--zmq-curve-secret-key") {
      o.zmq_curve_secret_key_file = value;
    } else {
      return Status::InvalidArgument("unknown flag '" + flag + "' (see --help)");
    }
  }
  if (o.api_key.empty()) {
    const char* env = std::getenv("FERRY_API_KEY");
    if (env != nullptr) o.api_key = env;
  }
  if (o.auth_health_metrics && o.api_key.empty()) {
    return Status::InvalidArgument("flag --auth-health-metrics needs an API key (--api-key or FERRY_API_KEY)");
  }
  if (!o.load_models.empty() && o.model_control_mode != ModelControlMode::kExplicit) {
    return Status::InvalidArgument("flag --load-model needs --model-control-mode explicit");
  }
  return o;
}

}  // namespace ferry::host
