#include "host/http/client_watch.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace ferry::host {
namespace {

// The address and port of a socket address, as civetweb prints them.
bool address_of(const sockaddr_storage& sa, std::string* addr, int* port) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (sa.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    *port = ntohs(in->sin_port);
  } else if (sa.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    *port = ntohs(in6->sin6_port);
  } else {
    return false;
  }
  *addr = text;
  return true;
}

// Finds the socket of `conn` among the process's descriptors by its addresses.
int find_socket(const mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    sockaddr_storage peer{}, local{};
    socklen_t plen = sizeof(peer), llen = sizeof(local);
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &plen) != 0) continue;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &llen) != 0) continue;
    std::string peer_addr, local_addr;
    int peer_port = 0, local_port = 0;
    if (!address_of(peer, &peer_addr, &peer_port) || !address_of(local, &local_addr, &local_port)) continue;
    if (peer_port == ri->remote_port && local_port == ri->server_port && peer_addr == ri->remote_addr) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

}  // namespace

ConnectionState* connection_state(const mg_connection* conn) {
  return static_cast<ConnectionState*>(mg_get_user_connection_data(conn));
}

int connection_socket(const mg_connection* conn) {
  ConnectionState* state = connection_state(conn);
  if (state == nullptr) return find_socket(conn);
  if (state->fd == -2) state->fd = find_socket(conn);
  return state->fd;
}

bool ClientWatch::gone() {
  const int fd = connection_socket(conn_);
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if ((p.revents & (POLLHUP | POLLERR)) != 0) return true;
  if ((p.revents & POLLRDHUP) != 0 && !probed_) {
    // The client sent FIN: half-closed (still reading) or closed. Only HTTP/1.1 allows an
    // unrequested 1xx; an HTTP/1.0 client that half-closes is simply waited for.
    probed_ = true;
    const char* version = mg_get_request_info(conn_)->http_version;
    if (version != nullptr && std::strcmp(version, "1.1") == 0) {
      static constexpr char kProbe[] = "HTTP/1.1 100 Continue\r\n\r\n";
      if (mg_write(conn_, kProbe, sizeof(kProbe) - 1) <= 0) return true;
    }
  }
  return false;
}

}  // namespace ferry::host
