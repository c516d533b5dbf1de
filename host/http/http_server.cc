#include "host/http/http_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "host/blocking_queue.h"
#include "host/http/client_watch.h"
#include "host/http/kserve_json.h"
#include "host/http/openai_response.h"
#include "host/http/openai_transport.h"
#include "host/http/web_ui.h"
#include "host/json_util.h"
#include "host/log.h"

namespace ferry::host {
namespace {

// ---- responses ------------------------------------------------------------------------------------

bool equals_ignore_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Makes this the connection's last request: the answer says "Connection: close", and the socket's
// reading side is shut so that civetweb, which reads and discards whatever body the handler left
// unread before it serves the next request, stops at once instead of reading a 1e20-byte body (or
// a client that trickles one) for as long as it lasts; a body left unread also keeps civetweb from
// keeping the connection alive. Used when the body is refused or could not be read whole.
void mark_connection_close(mg_connection* conn) {
  if (ConnectionState* state = connection_state(conn)) state->close = true;
  int fd = connection_socket(conn);
  if (fd >= 0) ::shutdown(fd, SHUT_RD);
}

// Whether civetweb keeps the connection open after this request, as its should_keep_alive decides
// for a server started with enable_keep_alive: the client's Connection header when it sent one,
// else the HTTP version's default; never after mark_connection_close.
bool keeps_alive(const mg_connection* conn) {
  if (const ConnectionState* state = connection_state(conn); state != nullptr && state->close) return false;
  if (const char* header = mg_get_header(conn, "Connection")) {
    std::string_view options(header);
    while (!options.empty()) {
      size_t comma = options.find(',');
      std::string_view option = options.substr(0, comma);
      options = comma == std::string_view::npos ? std::string_view() : options.substr(comma + 1);
      size_t begin = option.find_first_not_of(" \t");
      size_t end = option.find_last_not_of(" \t");
      if (begin != std::string_view::npos && equals_ignore_case(option.substr(begin, end - begin + 1), "keep-alive")) {
        return true;
      }
    }
    return false;
  }
  const char* version = mg_get_request_info(conn)->http_version;
  return version != nullptr && std::strcmp(version, "1.1") == 0;
}

// The status line and headers of a response, ending with the blank line: `headers` (complete
// lines, each ending in \r\n), then Date and Connection decided the way civetweb decides keep-alive.
// Written with one mg_write by the callers: civetweb's mg_response_header_send writes the status
// line and each header with a send() of its own (seven TCP segments per response with tcp_nodelay,
// which cost more than the rest of a small request) and formats Date with the thread-unsafe
// gmtime().
std::string response_head(mg_connection* conn, int status, std::string_view headers) {
  const mg_request_info* ri = mg_get_request_info(conn);
  char date[64];
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &utc);
  std::string out;
  out.reserve(192 + headers.size());
  out += "HTTP/";
  out += ri->http_version != nullptr ? ri->http_version : "1.1";
  out += ' ';
  out += std::to_string(status);
  out += ' ';
  out += mg_get_response_code_text(conn, status);
  out += "\r\n";
  out += headers;
  out += "Date: ";
  out += date;
  out += keeps_alive(conn) ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  return out;
}

// Sends a whole response with one write. `extra_headers` is "" or complete header lines.
void send_body_with_headers(mg_connection* conn, int status, const char* content_type, const std::string& body,
                            std::string_view extra_headers) {
  const mg_request_info* ri = mg_get_request_info(conn);
  bool head = ri->request_method != nullptr && std::strcmp(ri->request_method, "HEAD") == 0;
  std::string headers = "Content-Type: ";
  headers += content_type;
  headers += "\r\nContent-Length: ";
  headers += std::to_string(body.size());
  headers += "\r\n";
  headers += extra_headers;
  std::string out = response_head(conn, status, headers);
  if (!head) out += body;
  mg_write(conn, out.data(), out.size());
}

}  // namespace

void send_body(mg_connection* conn, int status, const char* content_type, const std::string& body) {
  send_body_with_headers(conn, status, content_type, body, "");
}

int send_json(mg_connection* conn, int status, const Json::Value& body) {
  send_body(conn, status, "application/json", to_json(body));
  return status;
}

namespace {

int send_error(mg_connection* conn, const Status& status) {
  Json::Value body;
  body["error"] = status.message();
  return send_json(conn, http_status_for(status.code()), body);
}

// ---- request plumbing -----------------------------------------------------------------------------

// The slowest average rate a body may arrive at once --http-request-timeout-ms has passed: a body
// gets the timeout plus one second per 64 KiB received, so a large upload on a slow link goes on
// while a client that trickles a few bytes is cut (Apache's mod_reqtimeout works the same way).
constexpr uint64_t kMinBodyBytesPerSecond = 64 * 1024;

bool expects_continue(const mg_connection* conn) {
  const char* expect = mg_get_header(conn, "Expect");
  const char* version = mg_get_request_info(conn)->http_version;
  return expect != nullptr && equals_ignore_case(expect, "100-continue") && version != nullptr &&
         std::strcmp(version, "1.1") == 0;
}

Result<std::string> read_body(mg_connection* conn, uint64_t max_bytes) {
  const mg_request_info* ri = mg_get_request_info(conn);
  if (ri->content_length > 0 && static_cast<uint64_t>(ri->content_length) > max_bytes) {
    // Refused before a byte of it is read (a client that sent "Expect: 100-continue" never sends it).
    mark_connection_close(conn);
    return Status::TooLarge("request body of " + std::to_string(ri->content_length) + " bytes is over the limit of " +
                            std::to_string(max_bytes));
  }
  // civetweb answers "Expect: 100-continue" only for its own file and CGI handlers; without the
  // interim answer a client such as curl waits a second before sending the body.
  const bool has_body = ri->content_length > 0 || mg_get_header(conn, "Transfer-Encoding") != nullptr;
  if (has_body && expects_continue(conn)) {
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    mg_write(conn, kContinue, sizeof(kContinue) - 1);
  }
  const auto* server = static_cast<const HttpServer*>(mg_get_user_data(mg_get_context(conn)));
  const int64_t timeout_ms = server->options().request_timeout_ms;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  };
  std::string body;
  if (ri->content_length > 0) body.reserve(static_cast<size_t>(ri->content_length));
  char buf[16384];
  const int fd = connection_socket(conn);
  for (;;) {
    // civetweb's mg_read returns only once it has all it was asked for (or nothing came for a whole
    // request_timeout_ms), so asking for 16 KiB from a client that trickles a byte at a time would
    // never come back to the deadline check below. Ask for what the socket holds (at least one
    // byte: civetweb may have buffered part of the body with the head); a read of one byte waits at
    // most request_timeout_ms.
    int available = 0;
    size_t want = sizeof(buf);
    if (fd >= 0 && ::ioctl(fd, FIONREAD, &available) == 0) {
      want = std::clamp<size_t>(static_cast<size_t>(std::max(available, 0)), 1, sizeof(buf));
    }
    int n = mg_read(conn, buf, want);
    if (n < 0) {
      mark_connection_close(conn);
      return Status::InvalidArgument("the request body could not be read (malformed chunked encoding?)");
    }
    if (n == 0) break;
    body.append(buf, static_cast<size_t>(n));
    if (body.size() > max_bytes) {
      mark_connection_close(conn);
      return Status::TooLarge("request body is over the limit of " + std::to_string(max_bytes) + " bytes");
    }
    if (elapsed_ms() > timeout_ms + static_cast<int64_t>(body.size() * 1000 / kMinBodyBytesPerSecond)) {
      mark_connection_close(conn);
      return Status::DeadlineExceeded("request body arrives too slowly: " + std::to_string(body.size()) +
                                      " bytes in " + std::to_string(elapsed_ms()) + " ms (--http-request-timeout-ms " +
                                      std::to_string(timeout_ms) + ", then at least 64 KiB/s)");
    }
  }
  if (ri->content_length > 0 && body.size() < static_cast<uint64_t>(ri->content_length)) {
    mark_connection_close(conn);
    std::string got = std::to_string(body.size()) + " of the " + std::to_string(ri->content_length) +
                      " bytes of Content-Length";
    if (elapsed_ms() >= timeout_ms) {
      return Status::DeadlineExceeded("request body not received within --http-request-timeout-ms " +
                                      std::to_string(timeout_ms) + " ms: " + got);
    }
    return Status::InvalidArgument("request body ended early: " + got);
  }
  return body;
}

}  // namespace

Result<Json::Value> read_json_body(mg_connection* conn, uint64_t max_bytes, bool allow_empty, std::string* text) {
  auto body = read_body(conn, max_bytes);
  if (!body.ok()) return body.status();
  if (text != nullptr) *text = body.value();
  if (body->empty()) {
    if (allow_empty) return Json::Value(Json::objectValue);
    return Status::InvalidArgument("request body is empty; a JSON object is expected");
  }
  auto json = parse_json(body.value(), "request body");
  if (!json.ok()) return json.status();
  if (!json->isObject()) return Status::InvalidArgument("request body must be a JSON object");
  return json;
}

void start_event_stream(mg_connection* conn) {
  std::string head = response_head(
      conn, 200, "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
  mg_write(conn, head.data(), head.size());
}

bool EventBatch::flush(mg_connection* conn, bool last) {
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr std::string_view kEnd = "0\r\n\r\n";
  size_t begin = kHead;
  const size_t size = buf_.size() - kHead;
  if (size > 0) {
    // "<hex size>\r\n" right-aligned in the room at the start, "\r\n" after the data.
    buf_[--begin] = '\n';
    buf_[--begin] = '\r';
    for (size_t n = size; n > 0; n >>= 4) buf_[--begin] = kHex[n & 15];  // size < 2^32: 8 digits at most
    buf_.append("\r\n", 2);
  }
  if (last) buf_.append(kEnd);
  const size_t length = buf_.size() - begin;
  const bool ok = length == 0 || mg_write(conn, buf_.data() + begin, length) == static_cast<int>(length);
  clear();
  return ok;
}

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

// ---- authentication -------------------------------------------------------------------------------

// Health checks (server live/ready, model ready) and /metrics: what load balancers and Prometheus
// poll, open without a key unless --auth-health-metrics.
bool is_health_or_metrics(const std::vector<std::string_view>& parts) {
  if (parts.size() == 1 && parts[0] == "metrics") return true;
  if (parts.size() == 3 && parts[0] == "v2" && parts[1] == "health") return true;
  // /v2/models/{m}/ready and /v2/models/{m}/versions/{v}/ready
  if (parts.size() >= 4 && parts[0] == "v2" && parts[1] == "models" && parts.back() == "ready") {
    return parts.size() == 4 || (parts.size() == 6 && parts[3] == "versions");
  }
  return false;
}

bool is_openai_path(const std::vector<std::string_view>& parts) {
  return !parts.empty() && (parts[0] == "v1" || parts[0] == "tokenize" || parts[0] == "detokenize");
}

// The key of "Authorization: Bearer <key>" (scheme case-insensitive, as RFC 7235 has it), or
// nullopt when the header is missing or not Bearer.
std::optional<std::string_view> bearer_token(const mg_connection* conn) {
  const char* header = mg_get_header(conn, "Authorization");
  if (header == nullptr) return std::nullopt;
  std::string_view v(header);
  if (v.size() < 7 || !equals_ignore_case(v.substr(0, 6), "bearer") || v[6] != ' ') return std::nullopt;
  v.remove_prefix(7);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Answers 401 when the server has an API key and this request does not carry it; returns whether
// the request may go on. The body is a KServe error, or OpenAI's error object on OpenAI's routes.
bool authorize(const ServerContext& ctx, mg_connection* conn, const std::vector<std::string_view>& parts) {
  if (ctx.api_key.empty()) return true;
  if (!ctx.auth_health_metrics && is_health_or_metrics(parts)) return true;
  auto token = bearer_token(conn);
  if (token && api_key_matches(*token, ctx.api_key)) return true;
  std::string message = token ? "invalid API key"
                              : "missing API key: send the header 'Authorization: Bearer <key>'";
  Json::Value body;
  if (is_openai_path(parts)) {
    body["error"]["message"] = message;
    body["error"]["type"] = "invalid_request_error";
    body["error"]["param"] = Json::Value();
    body["error"]["code"] = "invalid_api_key";
  } else {
    body["error"] = message;
  }
  // RFC 6750: the challenge, and error="invalid_token" when a key was sent but is wrong.
  send_body_with_headers(conn, 401, "application/json", to_json(body),
                         token ? "WWW-Authenticate: Bearer realm=\"ferry\", error=\"invalid_token\"\r\n"
                               : "WWW-Authenticate: Bearer realm=\"ferry\"\r\n");
  return false;
}

// How often a handler waiting for a non-streamed answer checks that its client is still there.
constexpr std::chrono::milliseconds kClientCheckInterval{200};

// Collects a request's responses for the civetweb thread that waits on it.
class QueueSink : public ResponseSink, public BlockingQueue<ResponseData> {
 public:
  void on_response(ResponseData&& r) override { push(std::move(r)); }
};

// ---- handlers -------------------------------------------------------------------------------------

struct Route {
  std::string model;
  std::string version;
  std::string action;  // "", "ready", "config", "stats", "infer", "generate", "generate_stream"
};

// Parses /v2/models/{m}[/versions/{v}][/{action}] (parts[0..1] are "v2","models").
std::optional<Route> parse_model_route(const std::vector<std::string_view>& parts) {
  if (parts.size() < 3) return std::nullopt;
  Route r;
  r.model = std::string(parts[2]);
  size_t i = 3;
  if (parts.size() > i + 1 && parts[i] == "versions") {
    r.version = std::string(parts[i + 1]);
    i += 2;
  }
  if (parts.size() == i + 1) r.action = std::string(parts[i]);
  else if (parts.size() != i) return std::nullopt;
  return r;
}

Json::Value metadata_json(ModelRegistry& registry, const std::shared_ptr<ModelVersion>& mv) {
  Json::Value j;
  j["name"] = mv->name();
  j["versions"] = Json::Value(Json::arrayValue);
  auto all = registry.versions(mv->name());
  if (all.ok()) {
    for (const auto& v : all.value()) {
      if (v->state() == ModelState::kReady) j["versions"].append(std::to_string(v->version()));
    }
  }
  const Json::Value& meta = mv->metadata();
  j["platform"] = mv->spec().backend;
  j["inputs"] = Json::Value(Json::arrayValue);
  j["outputs"] = Json::Value(Json::arrayValue);
  if (meta["platform"].isString()) j["platform"] = meta["platform"];
  if (meta["inputs"].isArray()) j["inputs"] = meta["inputs"];
  if (meta["outputs"].isArray()) j["outputs"] = meta["outputs"];
  return j;
}

int handle_infer(ServerContext& ctx, mg_connection* conn, const std::shared_ptr<ModelVersion>& mv, bool generate,
                 bool stream) {
  std::string text;
  auto body = read_json_body(conn, ctx.max_body_bytes, false, &text);
  if (!body.ok()) return send_error(conn, body.status());
  Result<RequestSpec> spec = Status::Internal("unset");
  if (generate) {
    spec = generate_request_from_json(body.value(), mv->metadata()["inputs"]);
  } else {
    spec = infer_request_from_json(body.value());
  }
  if (!spec.ok()) return send_error(conn, spec.status());
  // generate takes parameters from the body's top level and from its "parameters" object.
  const Json::Value& b = body.value();
  if (generate) keep_output_format_text(text, {}, b, &spec->parameters_json);
  keep_output_format_text(text, {"parameters"}, b["parameters"], &spec->parameters_json);
  spec->stream = stream;
  std::string client_id = spec->client_id;
  auto sink = std::make_shared<QueueSink>();
  auto request = mv->submit(std::move(spec.value()), sink);
  if (!request.ok()) return send_error(conn, request.status());

  if (!stream) {
    ClientWatch watch(conn);
    for (;;) {
      auto next = sink->pop_for(kClientCheckInterval);
      if (!next) {
        if (watch.gone()) {
          FERRY_LOG(Verbose) << "client left before its answer; cancelling request " << request.value()->id();
          request.value()->cancel();
          return 499;
        }
        continue;
      }
      ResponseData r = std::move(*next);
      if (!r.final) continue;
      if (!r.error.ok()) return send_error(conn, r.error);
      Json::Value out = generate ? generate_response_to_json(mv->name(), mv->version(), r)
                                 : infer_response_to_json(mv->name(), mv->version(), client_id, r);
      return send_json(conn, 200, out);
    }
  }

  // Server-sent events, one per response; the responses waiting when the thread wakes are written
  // together, in one chunk.
  start_event_stream(conn);
  EventBatch events;
  for (bool final = false; !final;) {
    std::optional<ResponseData> next;
    if (!events.due()) next = sink->try_pop();
    if (!next) {
      if (!events.flush(conn)) {
        FERRY_LOG(Verbose) << "client left during a stream; cancelling request " << request.value()->id();
        request.value()->cancel();
        return 499;
      }
      next = sink->pop();
    }
    ResponseData& r = *next;
    final = r.final;
    if (!r.error.ok()) {
      Json::Value event;
      event["error"] = r.error.message();
      events.add(to_json(event));
    } else if (!(r.outputs.empty() && r.final && r.parameters_json.empty())) {  // not a FINAL that only ends it
      events.add(to_json(generate_response_to_json(mv->name(), mv->version(), r)));
    }
  }
  if (!events.flush(conn, true)) request.value()->cancel();  // the client left at the very end
  return 200;
}

int handle_repository(ServerContext& ctx, mg_connection* conn, const std::vector<std::string_view>& parts) {
  ModelRegistry& registry = *ctx.registry;
  if (parts.size() == 3 && parts[2] == "index") {
    auto body = read_json_body(conn, ctx.max_body_bytes, true);
    if (!body.ok()) return send_error(conn, body.status());
    bool ready_only = false;
    if (body->isMember("ready")) {
      if (!(*body)["ready"].isBool()) return send_error(conn, Status::InvalidArgument("'ready' must be a boolean"));
      ready_only = (*body)["ready"].asBool();
    }
    Json::Value out(Json::arrayValue);
    for (const auto& e : registry.index(ready_only)) {
      Json::Value j;
      j["name"] = e.name;
      if (!e.version.empty()) j["version"] = e.version;
      j["state"] = e.state;
      if (!e.reason.empty()) j["reason"] = e.reason;
      out.append(j);
    }
    return send_json(conn, 200, out);
  }
  if (parts.size() == 5 && parts[2] == "models" && (parts[4] == "load" || parts[4] == "unload")) {
    auto body = read_json_body(conn, ctx.max_body_bytes, true);
    if (!body.ok()) return send_error(conn, body.status());
    if (registry.mode() != ModelControlMode::kExplicit) {
      return send_error(conn, Status::Unavailable("explicit model load / unload is not allowed: the server runs with "
                                                  "--model-control-mode other than explicit"));
    }
    std::string name(parts[3]);
    Status s = parts[4] == "load" ? registry.load(name) : registry.unload(name);
    if (!s.ok()) return send_error(conn, s);
    return send_json(conn, 200, Json::Value(Json::objectValue));
  }
  return send_error(conn, Status::NotFound("no such endpoint"));
}

int handle_models(ServerContext& ctx, mg_connection* conn, const std::string& method,
                  const std::vector<std::string_view>& parts) {
  ModelRegistry& registry = *ctx.registry;
  if (parts.size() == 3 && parts[2] == "stats" && method == "GET") {
    // All models' statistics.
    Json::Value out;
    out["model_stats"] = Json::Value(Json::arrayValue);
    for (const auto& e : registry.index(true)) {
      auto mv = registry.find(e.name, e.version);
      if (mv.ok()) out["model_stats"].append(mv.value()->statistics());
    }
    return send_json(conn, 200, out);
  }
  auto route = parse_model_route(parts);
  if (!route) return send_error(conn, Status::NotFound("no such endpoint"));
  const bool post = method == "POST";
  const bool get = method == "GET" || method == "HEAD";
  const std::string& a = route->action;
  bool known = (get && (a.empty() || a == "ready" || a == "config" || a == "stats")) ||
               (post && (a == "infer" || a == "generate" || a == "generate_stream"));
  if (!known) {
    bool other = a.empty() || a == "ready" || a == "config" || a == "stats" || a == "infer" || a == "generate" ||
                 a == "generate_stream";
    if (!other) return send_error(conn, Status::NotFound("no such endpoint"));
    Json::Value body;
    body["error"] = "method " + method + " is not allowed on this endpoint";
    return send_json(conn, 405, body);
  }
  auto mv = registry.find(route->model, route->version);
  if (a == "ready") {
    if (!mv.ok()) return send_error(conn, mv.status());
    Status ready = mv.value()->readiness();
    if (!ready.ok()) return send_error(conn, ready);
    return send_json(conn, 200, Json::Value(Json::objectValue));
  }
  if (!mv.ok()) return send_error(conn, mv.status());
  if (a.empty()) return send_json(conn, 200, metadata_json(registry, mv.value()));
  if (a == "config") {
    Json::Value c = mv.value()->spec().config;
    c["name"] = mv.value()->name();
    c["backend"] = mv.value()->spec().backend;
    return send_json(conn, 200, c);
  }
  if (a == "stats") {
    Json::Value out;
    out["model_stats"] = Json::Value(Json::arrayValue);
    out["model_stats"].append(mv.value()->statistics());
    return send_json(conn, 200, out);
  }
  return handle_infer(ctx, conn, mv.value(), a != "infer", a == "generate_stream");
}

// The size of the request line and headers as they came (lengths of the parsed parts plus their
// separators), for --http-max-header-bytes.
size_t request_head_bytes(const mg_request_info* ri) {
  auto len = [](const char* s) { return s != nullptr ? std::strlen(s) : 0; };
  size_t n = len(ri->request_method) + 1 + len(ri->request_uri) + 1 + len(ri->query_string) + 11;
  for (int i = 0; i < ri->num_headers; ++i) n += len(ri->http_headers[i].name) + len(ri->http_headers[i].value) + 4;
  return n + 2;
}

// Whether a Content-Length value is a plain decimal integer, as RFC 9110 has it. civetweb reads it
// with strtoll and keeps whatever digits lead ("1e20" is 1, "12abc" 12) and answers 411 for "-5"
// or "abc".
bool valid_content_length(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// An error about the request itself (its head), in the error shape of the route it was for:
// OpenAI's error object on OpenAI's routes, KServe's {"error": "..."} elsewhere. The connection is
// closed after it: whatever body follows is not read.
int send_request_error(mg_connection* conn, const std::vector<std::string_view>& parts, int http_status,
                       const std::string& message) {
  mark_connection_close(conn);
  Json::Value body;
  if (is_openai_path(parts)) {
    body = error_json(Status::InvalidArgument(message));
  } else {
    body["error"] = message;
  }
  return send_json(conn, http_status, body);
}

// The errors that a request's head alone decides: too big (431), too many header lines (431: civetweb
// keeps the first MG_MAX_HEADERS and drops the rest unseen, Content-Length included), a
// Content-Length that is not a number (400). Returns the status sent, or 0 when the head is fine.
int check_request_head(mg_connection* conn, const std::vector<std::string_view>& parts, size_t max_header_bytes) {
  const mg_request_info* ri = mg_get_request_info(conn);
  if (request_head_bytes(ri) > max_header_bytes) {
    return send_request_error(conn, parts, 431,
                              "request line and headers of " + std::to_string(request_head_bytes(ri)) +
                                  " bytes are over the limit of " + std::to_string(max_header_bytes) +
                                  " (--http-max-header-bytes)");
  }
  if (ri->num_headers >= MG_MAX_HEADERS) {
    return send_request_error(conn, parts, 431,
                              "too many header lines: at most " + std::to_string(MG_MAX_HEADERS - 1) + " are accepted");
  }
  if (const char* length = mg_get_header(conn, "Content-Length"); length != nullptr && !valid_content_length(length)) {
    return send_request_error(conn, parts, 400, "Content-Length must be a decimal number of bytes, got '" +
                                                    std::string(length).substr(0, 64) + "'");
  }
  return 0;
}

// The routes of the --metrics-port listener: Prometheus metrics and the health checks, which keep
// answering there when every worker of the main port is taken (by streams, or by slow clients
// until their timeouts cut them).
int route_health_and_metrics(ServerContext& ctx, mg_connection* conn, const std::string& method,
                             const std::vector<std::string_view>& parts) {
  const bool get = method == "GET" || method == "HEAD";
  if (!is_health_or_metrics(parts) || (parts.size() == 3 && parts[1] == "health" && parts[2] != "live" &&
                                       parts[2] != "ready")) {
    return send_error(conn, Status::NotFound("no such endpoint on the metrics port: it serves /metrics, "
                                             "/v2/health/live, /v2/health/ready and model ready checks"));
  }
  if (!get) {
    Json::Value body;
    body["error"] = "method " + method + " is not allowed on this endpoint";
    return send_json(conn, 405, body);
  }
  if (parts.size() == 1) {
    send_body(conn, 200, "text/plain; version=0.0.4; charset=utf-8", ctx.metrics->render());
    return 200;
  }
  if (parts.size() == 3) {
    if (parts[2] == "live") return send_json(conn, 200, Json::Value(Json::objectValue));
    if (ctx.registry->ready()) return send_json(conn, 200, Json::Value(Json::objectValue));
    return send_error(conn, Status::Unavailable("server is not ready"));
  }
  auto route = parse_model_route(parts);
  auto mv = ctx.registry->find(route->model, route->version);
  if (!mv.ok()) return send_error(conn, mv.status());
  Status ready = mv.value()->readiness();
  if (!ready.ok()) return send_error(conn, ready);
  return send_json(conn, 200, Json::Value(Json::objectValue));
}

int route_request(ServerContext& ctx, mg_connection* conn, size_t max_header_bytes, bool health_and_metrics_only) {
  const mg_request_info* ri = mg_get_request_info(conn);
  const std::string method = ri->request_method ? ri->request_method : "";
  auto parts = split_path(ri->local_uri ? ri->local_uri : "/");
  if (int sent = check_request_head(conn, parts, max_header_bytes); sent != 0) return sent;
  const bool get = method == "GET" || method == "HEAD";
  // The chat page needs no key: it holds none, and it asks the user for one on a 401.
  if (ctx.web_ui && get && !health_and_metrics_only) {
    if (auto asset = find_web_asset(ri->local_uri ? ri->local_uri : "/")) {
      send_body_with_headers(conn, 200, asset->content_type, std::string(asset->body), kWebAssetHeaders);
      return 200;
    }
  }
  if (!authorize(ctx, conn, parts)) return 401;
  if (health_and_metrics_only) return route_health_and_metrics(ctx, conn, method, parts);

  if (parts.size() == 1 && parts[0] == "metrics" && get) {
    send_body(conn, 200, "text/plain; version=0.0.4; charset=utf-8", ctx.metrics->render());
    return 200;
  }
  if (is_openai_path(parts)) {
    return handle_openai(ctx, conn, method, parts);
  }
  if (parts.empty() || parts[0] != "v2") return send_error(conn, Status::NotFound("no such endpoint"));
  if (parts.size() == 1 && get) {
    Json::Value j;
    j["name"] = "ferry";
    j["version"] = ctx.server_version;
    j["extensions"] = Json::Value(Json::arrayValue);
    for (const char* e : {"model_repository", "statistics", "generate", "binary_tensor_data_unsupported"}) {
      j["extensions"].append(e);
    }
    return send_json(conn, 200, j);
  }
  if (parts.size() == 3 && parts[1] == "health" && get) {
    if (parts[2] == "live") return send_json(conn, 200, Json::Value(Json::objectValue));
    if (parts[2] == "ready") {
      if (ctx.registry->ready()) return send_json(conn, 200, Json::Value(Json::objectValue));
      return send_error(conn, Status::Unavailable("server is not ready"));
    }
  }
  if (parts.size() >= 2 && parts[1] == "repository" && method == "POST") return handle_repository(ctx, conn, parts);
  if (parts.size() >= 3 && parts[1] == "models") return handle_models(ctx, conn, method, parts);
  return send_error(conn, Status::NotFound("no such endpoint"));
}

// Finds a free TCP port on `address` for civetweb, which cannot report a port it chose itself.
Result<int> pick_free_port(const std::string& address) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::Internal("socket: " + std::string(std::strerror(errno)));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  if (::inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1) {
    ::close(fd);
    return Status::InvalidArgument("--http-address must be an IPv4 address, got '" + address + "'");
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    return Status::Unavailable("cannot bind " + address + ": " + err);
  }
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return static_cast<int>(ntohs(sa.sin_port));
}

// Whether `s` is an HTTP method token of capital letters (what civetweb parsed as the method of a
// request whose method it does not know).
bool is_method_token(const char* s) {
  if (s == nullptr || *s == '\0') return false;
  for (; *s != '\0'; ++s) {
    if (*s < 'A' || *s > 'Z') return false;
  }
  return true;
}

// civetweb's own error answers, sent before any handler runs (the connection is closed after
// them): a JSON error like ours instead of civetweb's HTML page, and the status RFC 9110 asks for
// where civetweb's differs.
int send_civetweb_error(mg_connection* conn, int status, const char* message) {
  if (const ConnectionState* state = connection_state(conn); state != nullptr && state->close) {
    // What followed an answer that closed the connection (say a body whose Content-Length civetweb
    // never saw, read as the next request): nothing more is sent.
    return 0;
  }
  const auto* server = static_cast<const HttpServer*>(mg_get_user_data(mg_get_context(conn)));
  const mg_request_info* ri = mg_get_request_info(conn);
  std::string text = message != nullptr && message[0] != '\0' ? message : mg_get_response_code_text(conn, status);
  std::string extra_headers;
  const bool head_incomplete = status == 400 && message != nullptr && std::strcmp(message, "Malformed message") == 0;
  if (status == 400 && !head_incomplete && ri->http_version != nullptr && std::strncmp(ri->http_version, "1.", 2) == 0 &&
      is_method_token(ri->request_method)) {
    // The request line parsed but civetweb does not know the method (TRACE, BREW, ...): civetweb
    // stops there and says 400.
    status = 405;
    text = std::string("method ") + ri->request_method + " is not allowed";
    extra_headers = "Allow: GET, HEAD, POST\r\n";
  } else if (head_incomplete) {
    // civetweb's "Malformed message": the head did not end, either because it filled civetweb's
    // buffer (twice --http-max-header-bytes; smaller excesses get our 431) or because it was not
    // received within request_timeout_ms (or the client stopped sending). Bytes still waiting on the
    // socket tell the first apart.
    int pending = 0;
    int fd = connection_socket(conn);
    if (fd >= 0 && ::ioctl(fd, FIONREAD, &pending) == 0 && pending > 0) {
      status = 431;
      text = "request line and headers are far over the limit of " +
             std::to_string(server->options().max_header_bytes) + " bytes (--http-max-header-bytes)";
    } else {
      status = 408;
      text = "request line and headers not received within " + std::to_string(server->options().request_timeout_ms) +
             " ms (--http-request-timeout-ms)";
    }
  } else if (status == 400) {
    text += ": not an HTTP request";
  } else if (status == 411) {
    // civetweb's answer to a negative or non-numeric Content-Length: the request is malformed (400),
    // not missing a length (411).
    status = 400;
    text = "Content-Length must be a decimal number of bytes";
  } else if (status == 413) {
    // The request head filled civetweb's whole buffer without ending.
    status = 431;
    text = "request line and headers are over the limit of " + std::to_string(server->options().max_header_bytes) +
           " bytes (--http-max-header-bytes)";
  }
  Json::Value body;
  body["error"] = text;
  std::string json = to_json(body);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + mg_get_response_code_text(conn, status) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(json.size()) +
                    "\r\n" + extra_headers + "Connection: close\r\n\r\n" + json;
  mg_write(conn, out.data(), out.size());
  return 0;  // handled: civetweb sends nothing more
}

}  // namespace

int http_status_for(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kResourceExhausted: return 429;
    case StatusCode::kDeadlineExceeded: return 408;
    case StatusCode::kCancelled: return 499;
    case StatusCode::kInternal: return 500;
    case StatusCode::kUnimplemented: return 501;
    case StatusCode::kTooLarge: return 413;
  }
  return 500;
}

int HttpServer::handle(mg_connection* conn, void* self) {
  auto* server = static_cast<HttpServer*>(self);
  struct Running {
    std::atomic<int>& count;
    explicit Running(std::atomic<int>& c) : count(c) { ++count; }
    ~Running() { --count; }
  } running(server->num_running_);
  if (const ConnectionState* state = connection_state(conn); state != nullptr && state->close) {
    // A request that came after one whose answer closed the connection (pipelined in the same
    // packets, so civetweb had it buffered): it gets nothing, and civetweb then closes.
    return 400;
  }
  try {
    return route_request(*server->ctx_, conn, static_cast<size_t>(server->options_.max_header_bytes),
                         server->options_.health_and_metrics_only);
  } catch (const std::exception& e) {
    FERRY_LOG(Error) << "HTTP handler failed: " << e.what();
    return send_error(conn, Status::Internal(e.what()));
  }
}

Status HttpServer::start(const HttpServerOptions& options) {
  options_ = options;
  mg_init_library(0);
  for (int attempt = 0; attempt < 5; ++attempt) {
    int p = options.port;
    if (options.port == 0) {
      auto free_port = pick_free_port(options.address);
      if (!free_port.ok()) return free_port.status();
      p = free_port.value();
    }
    std::string listen = options.address + ":" + std::to_string(p);
    std::string threads = std::to_string(options.num_threads);
    // civetweb's buffer for the request head (per connection) is twice the limit: a head over the
    // limit that fits gets a 431 from route_request, a bigger one civetweb's 400.
    std::string max_request = std::to_string(2 * options.max_header_bytes);
    // request_timeout_ms: civetweb's deadline for a whole request head from its first byte (so a
    // client sending one header line every few seconds is cut), and for each mg_read of a body
    // (read_body adds a deadline for the whole body). keep_alive_timeout_ms: the same deadline for
    // the next request on a kept-alive connection, i.e. how long an idle client holds a worker.
    std::string request_timeout = std::to_string(options.request_timeout_ms);
    std::string keep_alive_timeout = std::to_string(options.keep_alive_timeout_ms);
    // Connections accepted while every worker is busy wait in civetweb's queue, then in the
    // kernel's backlog; both are sized so that a burst of clients waits instead of being refused.
    const char* civetweb_options[] = {"listening_ports", listen.c_str(), "num_threads", threads.c_str(),
                                      "enable_keep_alive", "yes", "keep_alive_timeout_ms", keep_alive_timeout.c_str(),
                                      "request_timeout_ms", request_timeout.c_str(), "tcp_nodelay", "1",
                                      "max_request_size", max_request.c_str(), "connection_queue", "256",
                                      "listen_backlog", "1024", nullptr};
    mg_callbacks callbacks{};
    callbacks.http_error = &send_civetweb_error;
    callbacks.init_connection = [](const mg_connection*, void** data) -> int {
      *data = new ConnectionState();
      return 0;
    };
    callbacks.connection_closed = [](const mg_connection* conn) { delete connection_state(conn); };
    mg_ = mg_start(&callbacks, this, civetweb_options);
    if (mg_ != nullptr) {
      port_ = p;
      mg_set_request_handler(mg_, "/", &HttpServer::handle, this);
      return Status::Ok();
    }
    if (options.port != 0) break;  // a fixed port that is taken: no point retrying
  }
  return Status::Unavailable("cannot start the HTTP server on " + options.address + ":" + std::to_string(options.port));
}

void HttpServer::stop() {
  if (mg_ == nullptr) return;
  // After the server's drain every request's FINAL is with its handler, which may still be writing
  // it (the last events of a stream); civetweb would drop those writes once mg_stop begins.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (num_running_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  mg_stop(mg_);
  mg_ = nullptr;
}

}  // namespace ferry::host
