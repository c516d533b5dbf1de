// A small blocking HTTP/1.1 client on libcurl for the tests and perf/: keep-alive across calls,
// JSON bodies, and server-sent-event streams read event by event. Not thread-safe: one per thread.
#pragma once

#include <functional>
#include <string>

namespace ferry::client {

struct HttpResult {
  long status = 0;         // 0 when the request failed below HTTP (see error)
  std::string body;
  std::string content_type;
  std::string error;       // transport error text, "" on success
};

class HttpClient {
 public:
  // base_url like "http://127.0.0.1:8000".
  explicit HttpClient(std::string base_url);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Gives up on a request (closing its connection) after `timeout_ms`; 0: no limit (the default).
  void set_timeout_ms(long timeout_ms) { timeout_ms_ = timeout_ms; }

  HttpResult get(const std::string& path);
  // Any method without a body (HEAD reads no body; others read what comes).
  HttpResult request(const std::string& method, const std::string& path);
  HttpResult post(const std::string& path, const std::string& body);
  // POSTs and calls on_event(data) for each SSE "data:" payload as it arrives; returning false from
  // on_event closes the connection at once (a client that walks away). The result's body is empty.
  HttpResult post_stream(const std::string& path, const std::string& body,
                         const std::function<bool(const std::string& data)>& on_event);

 private:
  HttpResult perform(const std::string& method, const std::string& path, const std::string* body,
                     const std::function<bool(const std::string&)>* on_event);
  std::string base_url_;
  void* curl_ = nullptr;
  long timeout_ms_ = 0;
};

}  // namespace ferry::client
