#include "host/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace ferry::host {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_write_mu;

const char* level_letter(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "E";
    case LogLevel::kWarning: return "W";
    case LogLevel::kInfo: return "I";
    case LogLevel::kVerbose: return "V";
  }
  return "?";
}

}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

bool parse_log_level(const std::string& text, LogLevel* level) {
  static const char* kNames[] = {"error", "warning", "info", "verbose"};
  for (int i = 0; i < 4; ++i) {
    if (text == kNames[i] || text == std::to_string(i)) {
      *level = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

void log_line(LogLevel level, const char* file, int line, const std::string& message) {
  if (level > log_level()) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  const char* base = file;
  if (file != nullptr) {
    const char* slash = std::strrchr(file, '/');
    base = slash ? slash + 1 : file;
  }
  std::lock_guard<std::mutex> lock(g_write_mu);
  if (base != nullptr) {
    std::fprintf(stderr, "%s %s.%06lldZ %s:%d] %s\n", level_letter(level), stamp, static_cast<long long>(us), base,
                 line, message.c_str());
  } else {
    std::fprintf(stderr, "%s %s.%06lldZ] %s\n", level_letter(level), stamp, static_cast<long long>(us),
                 message.c_str());
  }
  std::fflush(stderr);
}

}  // namespace ferry::host
