// The HTTP frontend (civetweb): KServe v2 (health, metadata, infer, repository, statistics),
// Triton's generate / generate_stream (SSE), and /metrics.
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

  // Binds address:port (port 0 picks a free port) and starts `num_threads` workers.
  Status start(const std::string& address, int port, int num_threads);
  // The bound port (after start).
  int port() const { return port_; }
  // Gives handlers still writing an answer up to a second to finish (civetweb drops every write
  // once it starts stopping), then stops accepting and waits for running handlers to return.
  void stop();

  static int handle(mg_connection* conn, void* self);

 private:
  ServerContext* ctx_;
  mg_context* mg_ = nullptr;
  int port_ = 0;
  std::atomic<int> num_running_{0};  // handlers entered and not yet returned
};

}  // namespace ferry::host
