#include "tests/integration/server_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>

#include "common/test_paths.h"

namespace ferry::testing {
namespace {

// Built with a sanitizer (scripts/sanitize): ferry-server is then built with it too.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// The first line of every ASan/LSan/TSan/UBSan report the server writes to its stderr.
constexpr const char* kSanitizerMarkers[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                             "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer",
                                             ": runtime error: "};

}  // namespace

std::string build_dir() { return binary_dir(); }

std::string default_repository() { return source_dir() + "/model_repository"; }

std::string stories260k_dir() { return testdata_dir() + "/stories260K-hf-format.derived"; }

std::string add_test_language_models(const std::string& repository) {
  namespace fs = std::filesystem;
  fs::copy(fs::path(default_repository()) / "tiny-llama", repository + "/tiny-llama", fs::copy_options::recursive);
  if (!fs::exists(stories260k_dir() + "/model.safetensors")) return "reference data missing: " + stories260k_dir();
  fs::copy(stories260k_dir(), repository + "/stories", fs::copy_options::recursive);  // a drop-in HF snapshot
  return "";
}

std::unique_ptr<ServerProcess> ServerProcess::start(const std::string& repository, std::vector<std::string> args,
                                                    std::chrono::seconds timeout) {
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  std::vector<std::string> argv = {build_dir() + "/host/ferry-server", "--model-repository", repository,
                                   "--http-port", "0", "--zmq-endpoint", "tcp://127.0.0.1:0", "--metrics-port", "0"};
  bool has_backend_dir = false;
  bool metrics_off = false;  // --metrics-port -1: no metrics listener to wait for
  for (size_t i = 0; i < args.size(); ++i) {
    has_backend_dir |= args[i].rfind("--backend-directory", 0) == 0;
    if (args[i] == "--metrics-port=-1" || (args[i] == "--metrics-port" && i + 1 < args.size())) {
      metrics_off = args[i] == "--metrics-port=-1" || args[i + 1] == "-1";
    }
  }
  if (!has_backend_dir) {
    argv.push_back("--backend-directory");
    argv.push_back(build_dir() + "/backends");
  }
  argv.insert(argv.end(), args.begin(), args.end());
  int fds[2];
  if (pipe(fds) != 0) return nullptr;
  pid_t pid = fork();
  if (pid < 0) return nullptr;
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    std::perror("execv ferry-server");
    _exit(127);
  }
  close(fds[1]);
  p->pid_ = pid;
  p->reader_ = std::thread([raw = p.get(), fd = fds[0]] { raw->read_loop(fd); });

  std::unique_lock<std::mutex> lock(p->mu_);
  static const std::regex kHttp("HTTP server listening on http://[0-9.]+:([0-9]+)");
  static const std::regex kZmq("ZeroMQ server bound to (tcp://[0-9.]+:[0-9]+)");
  static const std::regex kMetrics("metrics and health listening on http://[0-9.]+:([0-9]+)");
  bool ok = p->cv_.wait_for(lock, timeout, [&] {
    std::smatch m;
    if (p->http_port_ == 0 && std::regex_search(p->log_, m, kHttp)) p->http_port_ = std::stoi(m[1]);
    if (p->zmq_endpoint_.empty() && std::regex_search(p->log_, m, kZmq)) p->zmq_endpoint_ = m[1];
    if (p->metrics_port_ == 0 && std::regex_search(p->log_, m, kMetrics)) p->metrics_port_ = std::stoi(m[1]);
    return (p->http_port_ != 0 && !p->zmq_endpoint_.empty() && (metrics_off || p->metrics_port_ != 0)) ||
           p->exited_;
  });
  if (!ok || p->exited_) {
    std::fprintf(stderr, "ferry-server did not start:\n%s\n", p->log_.c_str());
    return nullptr;
  }
  return p;
}

void ServerProcess::read_loop(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    std::lock_guard<std::mutex> lock(mu_);
    log_.append(buf, static_cast<size_t>(n));
    cv_.notify_all();
  }
  close(fd);
  int status = 0;
  waitpid(pid_, &status, 0);
  std::lock_guard<std::mutex> lock(mu_);
  exited_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  cv_.notify_all();
}

bool ServerProcess::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout, size_t from) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return log_.find(needle, from) != std::string::npos; });
}

std::string ServerProcess::log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

int ServerProcess::stop(int sig, std::chrono::milliseconds timeout) {
  kill(pid_, sig);
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return exited_; })) return -1;
  return exit_code_;
}

ServerProcess::~ServerProcess() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    // A sanitized server gets a graceful stop first, so that LeakSanitizer runs at its exit.
    if (!exited_ && kSanitized) {
      kill(pid_, SIGTERM);
      cv_.wait_for(lock, std::chrono::seconds(20), [&] { return exited_; });
    }
    if (!exited_) kill(pid_, SIGKILL);
  }
  if (reader_.joinable()) reader_.join();
  // A sanitizer report from the server fails the test that started it (the test process itself
  // only sees HTTP and ZeroMQ answers). The log is complete here: the reader has seen EOF.
  for (const char* marker : kSanitizerMarkers) {
    size_t at = log_.find(marker);
    if (at == std::string::npos) continue;
    size_t begin = log_.rfind("\n==", at);
    begin = begin == std::string::npos ? at : begin + 1;
    ADD_FAILURE() << "ferry-server (pid " << pid_ << ") reported a sanitizer error:\n"
                  << log_.substr(begin, 8000);
    break;
  }
}

}  // namespace ferry::testing
