// The HTTP frontend (civetweb): KServe v2 (health, metadata, infer, repository, statistics),
// Triton's generate / generate_stream (SSE), and /metrics. With an API key in the context, every
// route but health and /metrics (unless auth_health_metrics) answers 401 without
// "Authorization: Bearer <key>" (docs/security.md).
//
// Each request runs on a civetweb worker thread, which blocks until its answer is complete
// (streamed requests hold their thread for the stream's life, so --http-thread-count bounds the
// number of open streams). A client that disconnects during a stream cancels its request.
// Thread-safety: start/stop from one thread; handlers run concurrently.
#pragma once

#include <atomic>
#include <string>

#include "common/status.h"
#include "host/server_context.h"

struct mg_context;
struct mg_connection;

namespace ferry::host {

class HttpServer {
 public:
  explicit HttpServer(ServerContext* ctx) : ctx_(ctx) {}
  ~HttpServer() { stop(); }

  // Binds address:port (port 0 picks a free port) and starts `num_threads` workers. A request
  // line plus headers over `max_header_bytes` gets a 431 with a JSON error (over twice that, the
  // 400 civetweb answers when the head does not fit its buffer, also as JSON).
  Status start(const std::string& address, int port, int num_threads, int max_header_bytes = 16384);
  // The bound port (after start).
  int port() const { return port_; }
  int max_header_bytes() const { return max_header_bytes_; }
  // Gives handlers still writing an answer up to a second to finish (civetweb drops every write
  // once it starts stopping), then stops accepting and waits for running handlers to return.
  void stop();

  static int handle(mg_connection* conn, void* self);

 private:
  ServerContext* ctx_;
  mg_context* mg_ = nullptr;
  int port_ = 0;
  int max_header_bytes_ = 16384;
  std::atomic<int> num_running_{0};  // handlers entered and not yet returned
};

}  // namespace ferry::host
