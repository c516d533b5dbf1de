#include "host/server.h"

#include <filesystem>

#include "host/log.h"

namespace ferry::host {

Server::Server(ServerOptions options) : options_(std::move(options)), host_api_(&metrics_) {
  backends_ = std::make_unique<BackendManager>(options_.backend_directory, host_api_.get());
  std::error_code ec;
  std::string repo = std::filesystem::absolute(options_.model_repository, ec).string();
  registry_ = std::make_unique<ModelRegistry>(repo, options_.model_control_mode, backends_.get(), &metrics_,
                                              std::chrono::seconds(options_.shutdown_timeout_secs));
  ctx_.registry = registry_.get();
  ctx_.metrics = &metrics_;
  ctx_.max_body_bytes = options_.http_max_body_bytes;
  ctx_.server_version = FERRY_VERSION;
  ctx_.api_key = options_.api_key;
  ctx_.auth_health_metrics = options_.auth_health_metrics;
  ctx_.web_ui = options_.web_ui;
}

bool api_key_matches(std::string_view presented, std::string_view expected) {
  if (expected.empty()) return false;
  // Every byte of `presented` is compared (against the key repeated), with no early exit; the
  // volatile accumulator keeps the compiler from turning the loop back into a memcmp.
  volatile unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < presented.size(); ++i) {
    diff = diff | static_cast<unsigned char>(presented[i] ^ expected[i % expected.size()]);
  }
  return diff == 0;
}

Server::~Server() { shutdown(); }

Status Server::start() {
  std::error_code ec;
  if (!std::filesystem::is_directory(options_.model_repository, ec)) {
    return Status::NotFound("model repository '" + options_.model_repository + "' is not a directory");
  }
  FERRY_LOG(Info) << "ferry-server " << FERRY_VERSION << " (ABI " << FERRY_ABI_VERSION_MAJOR << "."
                  << FERRY_ABI_VERSION_MINOR << "), repository " << options_.model_repository << ", backends "
                  << options_.backend_directory;
  if (options_.api_key.empty()) {
    FERRY_LOG(Info) << "no API key: every client that reaches HTTP or ZeroMQ may use every endpoint";
  } else {
    FERRY_LOG(Info) << "API key required on HTTP (health and /metrics "
                    << (options_.auth_health_metrics ? "included" : "open") << ") and in ZeroMQ messages";
  }
  registry_->start(options_.load_models);
  if (options_.model_control_mode == ModelControlMode::kPoll) {
    registry_->start_polling(std::chrono::seconds(options_.repository_poll_secs));
  }
  HttpServerOptions http;
  http.address = options_.http_address;
  http.port = options_.http_port;
  http.num_threads = options_.http_thread_count;
  http.max_header_bytes = options_.http_max_header_bytes;
  http.request_timeout_ms = options_.http_request_timeout_ms;
  http.keep_alive_timeout_ms = options_.http_keep_alive_timeout_ms;
  http_ = std::make_unique<HttpServer>(&ctx_);
  FERRY_RETURN_IF_ERROR(http_->start(http));
  FERRY_LOG(Info) << "HTTP server listening on http://" << options_.http_address << ":" << http_->port();
  if (!options_.zmq_endpoint.empty()) {
    zmq_ = std::make_unique<ZmqServer>(&ctx_);
    FERRY_RETURN_IF_ERROR(zmq_->start(options_.zmq_endpoint, options_.zmq_curve_secret_key_file));
    FERRY_LOG(Info) << "ZeroMQ server bound to " << zmq_->endpoint();
  }
  if (options_.metrics_port >= 0) {
    // Health checks and scrapes are short, so a few workers serve them; they are separate from the
    // main port's so that streams or slow clients holding all of those do not fail health checks.
    HttpServerOptions metrics = http;
    metrics.port = options_.metrics_port;
    metrics.num_threads = kMetricsThreadCount;
    metrics.health_and_metrics_only = true;
    metrics_http_ = std::make_unique<HttpServer>(&ctx_);
    FERRY_RETURN_IF_ERROR(metrics_http_->start(metrics));
    FERRY_LOG(Info) << "metrics and health listening on http://" << options_.http_address << ":"
                    << metrics_http_->port();
  }
  return Status::Ok();
}

void Server::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  FERRY_LOG(Info) << "shutting down: draining in-flight requests (up to " << options_.shutdown_timeout_secs << " s)";
  // The frontends stay open while requests drain so that streams can finish; new requests are
  // refused by the registry from here on.
  registry_->shutdown(std::chrono::seconds(options_.shutdown_timeout_secs));
  if (http_) http_->stop();
  if (metrics_http_) metrics_http_->stop();
  if (zmq_) zmq_->stop();
  backends_->clear();
  FERRY_LOG(Info) << "shutdown complete";
}

}  // namespace ferry::host
