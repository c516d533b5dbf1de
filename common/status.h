// ferry::Status and ferry::Result<T>: how expected failures travel inside ferry's C++ code.
//
// A Status is a code plus a message; ok() means success. Result<T> holds either a value or a non-OK
// Status. Neither ever crosses the C ABI: the one extern "C" file of each backend maps them to
// ferry_error_code + message. Broken invariants are not Statuses; they hit FERRY_CHECK (always on).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ferry {

// Mirrors ferry_error_code in include/ferry/ferry.h (same numeric values) so the mapping is a cast.
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,   // the caller's input is wrong (HTTP 400)
  kNotFound = 2,          // unknown model, version, request (HTTP 404)
  kUnavailable = 3,       // not ready, shutting down, unloading (HTTP 503)
  kResourceExhausted = 4, // queue full, out of KV blocks for good (HTTP 429)
  kDeadlineExceeded = 5,  // queue timeout expired (HTTP 408)
  kCancelled = 6,         // the client cancelled (HTTP 499)
  kInternal = 7,          // a bug or an unexpected system failure (HTTP 500)
  kUnimplemented = 8,     // not supported by this backend/model (HTTP 501)
  kTooLarge = 9,          // body or input over a configured limit (HTTP 413)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status TooLarge(std::string m) { return {StatusCode::kTooLarge, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message" or "OK".
  std::string to_string() const;
  // Returns a copy whose message is "<prefix>: <message>"; OK stays OK.
  Status with_prefix(const std::string& prefix) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a T or a non-OK Status. Access value() only when ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) std::get<Status>(v_) = Status::Internal("Result built from an OK Status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ferry

// Always-on invariant check: prints file, line and the condition, then aborts. For bugs only;
// expected failures return a Status.
#define FERRY_CHECK(cond)                                                                     \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: FERRY_CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

// Returns early from a function returning Status (or Result<T>) when expr is not OK.
#define FERRY_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::ferry::Status ferry_status_ = (expr);  \
    if (!ferry_status_.ok()) return ferry_status_; \
  } while (0)

// Evaluates expr (a Result<T>); on error returns its Status, else assigns the value to lhs (an
// existing variable or member). One statement: usable after `if (...)` without braces.
#define FERRY_ASSIGN_OR_RETURN(lhs, expr) \
  do {                                    \
    auto ferry_result_ = (expr);          \
    if (!ferry_result_.ok()) return ferry_result_.status(); \
    lhs = std::move(ferry_result_).value(); \
  } while (0)
