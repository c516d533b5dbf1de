// Host logging: one line per message to stderr, with level, UTC time and thread-safe writes.
// Backends log through ferry_host_api::log, which lands here.
#pragma once

#include <sstream>
#include <string>

namespace ferry::host {

enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2, kVerbose = 3 };

// Sets the most verbose level printed (default kInfo). Thread-safe.
void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "error", "warning", "info", "verbose" (or 0..3).
bool parse_log_level(const std::string& text, LogLevel* level);
// Writes one line. `file` may be null.
void log_line(LogLevel level, const char* file, int line, const std::string& message);

// Collects a message with operator<< and writes it when destroyed.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line) : level_(level), file_(file), line_(line) {}
  ~LogMessage() { log_line(level_, file_, line_, stream_.str()); }
  std::ostringstream& stream() { return stream_; }

 private:
  LogLevel level_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

// Lets FERRY_LOG be one expression: `&` binds looser than `<<`.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace ferry::host

// Evaluates the streamed expression only when the level is enabled; safe inside if/else.
#define FERRY_LOG(level)                                                                  \
  (::ferry::host::LogLevel::k##level > ::ferry::host::log_level())                        \
      ? (void)0                                                                           \
      : ::ferry::host::LogVoidify() &                                                     \
            ::ferry::host::LogMessage(::ferry::host::LogLevel::k##level, __FILE__, __LINE__).stream()
