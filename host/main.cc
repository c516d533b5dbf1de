// ferry-server: serves the models of a repository over HTTP and ZeroMQ. See --help.
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <thread>

#include "host/log.h"
#include "host/options.h"
#include "host/server.h"

int main(int argc, char** argv) {
  using namespace ferry::host;
  bool help = false;
  std::string help_text;
  auto options = parse_options(argc, argv, &help, &help_text);
  if (!options.ok()) {
    std::fprintf(stderr, "ferry-server: %s\n", options.status().message().c_str());
    return 2;
  }
  if (help) {
    std::fputs(help_text.c_str(), stdout);
    return 0;
  }
  set_log_level(options->log_level);

  // Signals are taken by this thread alone, with sigwait; every other thread blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  Server server(std::move(options.value()));
  ferry::Status started = server.start();
  if (!started.ok()) {
    FERRY_LOG(Error) << "cannot start: " << started.message();
    server.shutdown();
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  FERRY_LOG(Info) << "received " << (sig == SIGINT ? "SIGINT" : "SIGTERM");
  // The drain runs on its own thread so that this one keeps taking signals: a second SIGINT or
  // SIGTERM ends the drain at once (in-flight requests are cancelled), as in Triton and vLLM.
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    server.shutdown();
    done = true;
  });
  bool ended_early = false;
  const timespec poll_interval{0, 100 * 1000 * 1000};
  while (!done) {
    siginfo_t info{};
    if (sigtimedwait(&signals, &info, &poll_interval) < 0) continue;  // timeout or EINTR
    const char* name = info.si_signo == SIGINT ? "SIGINT" : "SIGTERM";
    if (ended_early) {
      FERRY_LOG(Warning) << "received " << name << " again: the drain has already ended, shutdown is finishing";
      continue;
    }
    FERRY_LOG(Warning) << "received a second " << name << " while draining: ending the drain now, cancelling in-flight requests";
    ended_early = true;
    server.end_drain();
  }
  stopper.join();
  return 0;
}
