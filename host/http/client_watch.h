// ClientWatch: tells a handler that waits for a backend's answer whether its HTTP client has gone
// away, so the request can be cancelled instead of computed for nobody. civetweb does not expose a
// connection's socket, so connection_socket() finds it among the process's descriptors by the
// connection's addresses (remote address and port, server port); later checks are one poll() each.
// A streaming handler does not need this: its next write fails.
//
// "Gone" means the connection failed or was reset (POLLHUP / POLLERR), not that the client stopped
// sending: a client may shut down its sending side (shutdown(SHUT_WR), POLLRDHUP here) and still
// wait for the answer, which HTTP allows. A FIN alone cannot tell a half-close from a close(), so on
// the first FIN of an HTTP/1.1 request the watch writes an interim "100 Continue" (every HTTP/1.1
// client must accept and skip 1xx responses): a client that closed its socket answers it with a
// reset, which the next check sees; a half-closed one reads past it to the answer.
//
// Thread-safety: one per request, used by its handler thread (the only writer of the connection
// until it answers).
#pragma once

struct mg_connection;

namespace ferry::host {

// What ferry keeps per HTTP connection: made when civetweb accepts the connection, freed when it
// closes it (HttpServer installs the init_connection / connection_closed callbacks that do this),
// reached through civetweb's connection user data.
struct ConnectionState {
  int fd = -2;         // the socket, looked up on first use (-2: not yet; -1: not found)
  bool close = false;  // an answer said "Connection: close": nothing more is served on it
};

// The state of `conn`, or null when the connection was made without the callbacks.
ConnectionState* connection_state(const mg_connection* conn);

// The socket descriptor of `conn`, or -1 when it cannot be found. The first call for a connection
// scans /proc/self/fd; later ones use the descriptor kept in its ConnectionState.
int connection_socket(const mg_connection* conn);

class ClientWatch {
 public:
  explicit ClientWatch(mg_connection* conn) : conn_(conn) {}
  // True once the connection failed or was reset, or a write to it failed. False when unknown.
  bool gone();

 private:
  mg_connection* conn_;
  bool probed_ = false;  // the 100 Continue probe was written
};

}  // namespace ferry::host
