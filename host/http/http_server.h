// The HTTP frontend (civetweb): KServe v2 (health, metadata, infer, repository, statistics),
// Triton's generate / generate_stream (SSE), /metrics, and the chat page at "/" (web_ui.h, unless
// --no-web-ui). With an API key in the context, every route but health and /metrics (unless
// auth_health_metrics) and the page's static files answers 401 without
// "Authorization: Bearer <key>" (docs/security.md).
//
// Each connection is served by one civetweb worker thread, which blocks until its answer is
// complete (streamed requests hold their thread for the stream's life, so --http-thread-count
// bounds the number of open streams) and, between requests, while the client keeps the connection
// alive. Slow or idle clients are cut by the timeouts in HttpServerOptions; a second listener
// (health_and_metrics_only, --metrics-port) answers health checks and /metrics with workers of its
// own when the main ones are all taken. A client that disconnects cancels its request; one that
// only half-closes (shutdown(SHUT_WR)) still gets its answer.
// Thread-safety: start/stop from one thread; handlers run concurrently.
#pragma once

#include <atomic>
#include <string>

#include "common/status.h"
#include "host/server_context.h"

struct mg_context;
struct mg_connection;

namespace ferry::host {

// How a listener is set up. The defaults are production defaults (ServerOptions has the flags).
struct HttpServerOptions {
  std::string address = "127.0.0.1";
  int port = 0;                 // 0 picks a free port
  // civetweb workers, one per open connection (a stream holds one for its life). Each has a
  // 100 KiB stack (Debian's civetweb 1.15), so 128 cost ~13 MiB of address space.
  int num_threads = 128;
  int max_header_bytes = 16384;  // request line + headers; more gets 431 (civetweb's default)
  // A request's line and headers must arrive within this from their first byte; its body within
  // this plus one second per 64 KiB. Slower clients are cut (the body: 408) and disconnected.
  int request_timeout_ms = 10000;
  // An idle kept-alive connection is closed after this (it holds a worker while it waits).
  int keep_alive_timeout_ms = 5000;
  // Serve only /metrics, /v2/health/{live,ready} and model ready checks (--metrics-port).
  bool health_and_metrics_only = false;
};

class HttpServer {
 public:
  explicit HttpServer(ServerContext* ctx) : ctx_(ctx) {}
  ~HttpServer() { stop(); }

  // Binds address:port and starts the workers. A request line plus headers over max_header_bytes
  // gets a 431 with a JSON error (over twice that, civetweb's own 400, also as JSON).
  Status start(const HttpServerOptions& options);
  // The bound port (after start).
  int port() const { return port_; }
  const HttpServerOptions& options() const { return options_; }
  // Gives handlers still writing an answer up to a second to finish (civetweb drops every write
  // once it starts stopping), then stops accepting and waits for running handlers to return.
  void stop();

  static int handle(mg_connection* conn, void* self);

 private:
  ServerContext* ctx_;
  mg_context* mg_ = nullptr;
  int port_ = 0;
  HttpServerOptions options_;
  std::atomic<int> num_running_{0};  // handlers entered and not yet returned
};

}  // namespace ferry::host
