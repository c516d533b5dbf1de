// ClientWatch: tells a handler that waits for a backend's answer whether its HTTP client has gone
// away (closed or reset the connection), so the request can be cancelled instead of computed for
// nobody. civetweb does not expose a connection's socket, so the first check finds it among the
// process's descriptors by the connection's addresses (remote address and port, server port);
// later checks are one poll() each. A streaming handler does not need this: its next write fails.
//
// Thread-safety: one per request, used by its handler thread.
#pragma once

struct mg_connection;

namespace ferry::host {

class ClientWatch {
 public:
  explicit ClientWatch(mg_connection* conn) : conn_(conn) {}
  // True once the peer has closed its side or the connection failed. False when unknown.
  bool gone();

 private:
  int find_socket() const;
  mg_connection* conn_;
  int fd_ = -2;  // -2: not looked up yet; -1: not found
};

}  // namespace ferry::host
