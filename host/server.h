// Server: ferry-server assembled from its parts (metrics, backends, registry, HTTP, ZeroMQ), with
// the startup and graceful-shutdown order in one place.
#pragma once

#include <memory>

#include "common/status.h"
#include "host/backend_library.h"
#include "host/host_api.h"
#include "host/http/http_server.h"
#include "host/metrics.h"
#include "host/model_registry.h"
#include "host/options.h"
#include "host/server_context.h"
#include "host/zmq/zmq_server.h"

namespace ferry::host {

// Workers of the --metrics-port listener (health checks and scrapes are short).
constexpr int kMetricsThreadCount = 8;

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // Loads the models the control mode asks for, then opens HTTP and ZeroMQ and logs their addresses.
  Status start();
  // Refuses new requests, lets in-flight ones finish (up to the shutdown timeout, then cancels
  // them), closes the frontends and unloads everything.
  void shutdown();
  // Ends a shutdown()'s drain at once: in-flight requests are cancelled instead of being waited
  // for. Thread-safe (called from the signal thread while shutdown() runs on another).
  void end_drain() { registry_->end_drain(); }

  int http_port() const { return http_ ? http_->port() : 0; }
  int metrics_port() const { return metrics_http_ ? metrics_http_->port() : 0; }
  std::string zmq_endpoint() const { return zmq_ ? zmq_->endpoint() : ""; }

 private:
  ServerOptions options_;
  MetricsRegistry metrics_;
  HostApi host_api_;
  std::unique_ptr<BackendManager> backends_;
  std::unique_ptr<ModelRegistry> registry_;
  ServerContext ctx_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<HttpServer> metrics_http_;  // --metrics-port: /metrics and health only
  std::unique_ptr<ZmqServer> zmq_;
  bool shut_down_ = false;
};

}  // namespace ferry::host
