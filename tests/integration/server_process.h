// Starts a real ferry-server as a child process on free ports (127.0.0.1) and gives tests its
// addresses and its log. The server is killed when the object goes away (in a sanitizer build it
// gets SIGTERM first, so that LeakSanitizer runs at its exit), and a sanitizer report in its log
// then fails the current test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ferry::testing {

class ServerProcess {
 public:
  // Starts build/host/ferry-server on `repository` with port 0 for HTTP, ZeroMQ and the metrics
  // listener plus `args`, and waits until their addresses are logged. Returns null (with the log on stderr) on failure.
  static std::unique_ptr<ServerProcess> start(const std::string& repository, std::vector<std::string> args = {},
                                              std::chrono::seconds timeout = std::chrono::seconds(30));
  ~ServerProcess();

  int http_port() const { return http_port_; }
  std::string http_url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
  const std::string& zmq_endpoint() const { return zmq_endpoint_; }
  // The --metrics-port listener (health and /metrics); 0 when started with --metrics-port -1.
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }

  // Waits until the log contains `needle` (counting only text after `from`, a log() size).
  bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout, size_t from = 0);
  std::string log() const;

  // Sends `sig` and waits for the exit; returns the exit code, or -1 (killed / timed out).
  int stop(int sig, std::chrono::milliseconds timeout);

 private:
  ServerProcess() = default;
  void read_loop(int fd);

  pid_t pid_ = -1;
  int http_port_ = 0;
  int metrics_port_ = 0;
  std::string zmq_endpoint_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string log_;
  bool exited_ = false;
  int exit_code_ = -1;
};

// The repository shipped with the project (model_repository/ in the source tree).
std::string default_repository();
// ferry's build directory (FERRY_BINARY_DIR from CTest).
std::string build_dir();
// The trained stories260K checkpoint as an HF folder, in the reference data (may be absent).
std::string stories260k_dir();
// Copies the default repository's tiny-llama into `repository` as `tiny-llama`, and stories260K as
// `stories`. Returns "", or why stories is missing (the reference data is absent).
std::string add_test_language_models(const std::string& repository);

}  // namespace ferry::testing
