// ferry-server's command line. Flag names follow Triton's where Triton has one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "host/log.h"
#include "host/model_registry.h"

namespace ferry::host {

struct ServerOptions {
  std::string model_repository = "model_repository";
  std::string http_address = "127.0.0.1";
  int http_port = 8000;                          // 0: pick a free port (logged)
  // civetweb worker threads, one per open connection: a stream holds one for its life, so this
  // bounds concurrent streams (vLLM's default max_num_seqs is 256). 100 KiB of stack each.
  int http_thread_count = 256;
  int http_request_timeout_ms = 10000;           // a request's head (and its body, + 1 s per 64 KiB) must arrive within this
  int http_keep_alive_timeout_ms = 5000;         // an idle kept-alive connection is closed after this
  int metrics_port = 8002;                       // /metrics + health on a listener of their own; 0: free port; -1: off
  uint64_t http_max_body_bytes = 64ull << 20;    // larger bodies (and ZeroMQ messages) get 413
  int http_max_header_bytes = 16384;             // request line + headers; larger get 431 (civetweb's default)
  std::string zmq_endpoint = "tcp://127.0.0.1:5555";  // port 0 or '*': pick a free port; "" disables
  ModelControlMode model_control_mode = ModelControlMode::kNone;
  int repository_poll_secs = 15;
  std::vector<std::string> load_models;          // explicit mode: loaded at startup
  std::string backend_directory;                 // default: <exe dir>/../backends
  LogLevel log_level = LogLevel::kInfo;
  int shutdown_timeout_secs = 30;
  // Security (docs/security.md). An empty api_key turns authentication off. When set, HTTP needs
  // "Authorization: Bearer <key>" everywhere but health (and /metrics), and every ZeroMQ message
  // needs "api_key": "<key>"; auth_health_metrics closes health and /metrics too.
  std::string api_key;                           // --api-key, else the environment's FERRY_API_KEY
  bool auth_health_metrics = false;
  std::string zmq_curve_secret_key_file;         // Z85 secret key: ZeroMQ CURVE encryption; "" = off
  bool web_ui = true;                            // the chat page at "/" (--no-web-ui turns it off)
};

// Parses argv. Returns the options, or InvalidArgument naming the flag. Sets *help when --help or
// --version was given (the text to print is in *help_text). Reads the environment variable
// FERRY_API_KEY when --api-key is not given (a key on the command line is visible in `ps`).
Result<ServerOptions> parse_options(int argc, char** argv, bool* help, std::string* help_text);
std::string usage_text();

}  // namespace ferry::host
