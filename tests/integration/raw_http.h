// Raw HTTP over a TCP socket for the tests that need what an HTTP library will not do: send a
// deep or malformed body, trickle headers, half-close, hold connections idle, or read exactly
// what the server wrote (100 Continue, Connection: close). 127.0.0.1 only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <string>

namespace ferry::testing {

struct RawResponse {
  int status = 0;    // 0: no HTTP answer came
  std::string head;  // status line and headers
  std::string body;
  // The value of header `name` (case-insensitive), or "".
  std::string header(const std::string& name) const {
    std::string lower_head = head, lower_name = name + ":";
    for (auto& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (auto& c : lower_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t at = lower_head.find("\r\n" + lower_name);
    if (at == std::string::npos) return "";
    size_t begin = at + 2 + lower_name.size();
    size_t end = head.find("\r\n", begin);
    std::string v = head.substr(begin, end - begin);
    size_t first = v.find_first_not_of(' ');
    return first == std::string::npos ? "" : v.substr(first);
  }
};

// A connected socket to 127.0.0.1:port, or -1.
inline int raw_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends all of `data`; false when the peer stopped reading or closed.
inline bool raw_send(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads until the peer closes or `timeout` passes with nothing new; returns what came.
// *closed says whether the peer closed (EOF or reset) rather than going quiet.
inline std::string raw_read_until_close(int fd, std::chrono::milliseconds timeout, bool* closed = nullptr) {
  std::string in;
  char buf[16384];
  if (closed != nullptr) *closed = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return in;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      if (closed != nullptr) *closed = true;
      return in;
    }
    in.append(buf, static_cast<size_t>(n));
  }
}

// Reads until `in` holds `needle` or `timeout` passes; returns what came.
inline std::string raw_read_until(int fd, const std::string& needle, std::chrono::milliseconds timeout) {
  std::string in;
  char buf[4096];
  auto end = std::chrono::steady_clock::now() + timeout;
  while (in.find(needle) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  return in;
}

// Splits a whole answer (one final response) into status, head and body; interim 1xx responses
// before it (100 Continue) are skipped and counted in *num_interim.
inline RawResponse raw_parse(std::string in, int* num_interim = nullptr) {
  RawResponse r;
  if (num_interim != nullptr) *num_interim = 0;
  while (in.rfind("HTTP/1.1 1", 0) == 0 && in.find("\r\n\r\n") != std::string::npos) {
    in.erase(0, in.find("\r\n\r\n") + 4);
    if (num_interim != nullptr) ++*num_interim;
  }
  size_t split = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.", 0) != 0 || split == std::string::npos) return r;
  r.status = std::atoi(in.c_str() + 9);
  r.head = in.substr(0, split);
  r.body = in.substr(split + 4);
  return r;
}

// Sends `request` exactly as given on a fresh connection, then reads until the server closes or
// goes quiet for `timeout`. *closed (when given) says whether the server closed the connection.
inline RawResponse raw_exchange(int port, const std::string& request,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10), bool* closed = nullptr) {
  int fd = raw_connect(port);
  if (fd < 0) return {};
  raw_send(fd, request);  // the server may answer and close before reading everything (431, 413)
  std::string in = raw_read_until_close(fd, timeout, closed);
  ::close(fd);
  return raw_parse(in);
}

// `method path` with `headers` (complete lines) and `body`, "Connection: close".
inline RawResponse raw_http(int port, const std::string& method, const std::string& path,
                            const std::string& headers = "", const std::string& body = "") {
  return raw_exchange(port, method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers +
                                "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

}  // namespace ferry::testing
