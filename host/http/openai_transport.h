// The HTTP plumbing that the OpenAI-compatible handlers (openai_handlers.cc) share with the KServe
// ones: whole-body responses, JSON request bodies and server-sent events. The functions are
// defined in http_server.cc, next to the handlers that used them first; handle_openai is defined
// in openai_handlers.cc and called by http_server.cc's router.
//
// Thread-safety: each function works on one connection, from the civetweb thread that owns it.
#pragma once

#include <json/json.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "host/server_context.h"

struct mg_connection;

namespace ferry::host {

// Sends a whole response (status line, headers, body) with one write; HEAD gets no body.
void send_body(mg_connection* conn, int status, const char* content_type, const std::string& body);
// send_body with Content-Type application/json; returns `status`.
int send_json(mg_connection* conn, int status, const Json::Value& body);
// Reads the request body and parses it as a JSON object. TooLarge past `max_bytes`; an empty body
// is an empty object when `allow_empty`, otherwise InvalidArgument, as is anything not an object.
// text: when given, receives the body as it came (for keep_output_format_text).
Result<Json::Value> read_json_body(mg_connection* conn, uint64_t max_bytes, bool allow_empty,
                                   std::string* text = nullptr);

// Server-sent events: start_event_stream sends a 200 with Content-Type text/event-stream and
// chunked encoding; then EventBatch writes "data: <data>\n\n" events in chunks, and the empty
// chunk that ends the body (flush(conn, true)).
void start_event_stream(mg_connection* conn);

// Events queued in one buffer and written together as one chunk, with one mg_write (one send()
// call): a stream whose writer wakes to several responses answers them with one write, not one
// per token. The chunk's size line is written into room kept at the buffer's start, so nothing is
// copied. Reused across flushes: no allocation once it has grown.
//
// A writer that keeps finding responses waiting (it is slower than the engine, e.g. starved of
// CPU) must still write: due() says when the oldest queued event has waited kMaxDelay.
class EventBatch {
 public:
  static constexpr std::chrono::milliseconds kMaxDelay{20};

  EventBatch() { clear(); }
  // Starts an event: appends "data: " and returns the buffer for the caller to append the event's
  // data to; end_event() closes it.
  std::string& begin_event() {
    if (empty()) first_queued_ = std::chrono::steady_clock::now();
    buf_.append("data: ", 6);
    return buf_;
  }
  void end_event() { buf_.append("\n\n", 2); }
  void add(std::string_view data) {
    begin_event().append(data);
    end_event();
  }
  bool empty() const { return buf_.size() == kHead; }
  // Whether the events queued should be written now rather than joined by more.
  bool due() const { return !empty() && std::chrono::steady_clock::now() - first_queued_ >= kMaxDelay; }
  // Writes the queued events as one chunk (nothing when none are queued), followed by the chunk
  // that ends the body when `last`. False when the write failed (the client left).
  bool flush(mg_connection* conn, bool last = false);

 private:
  void clear() { buf_.assign(kHead, ' '); }
  static constexpr size_t kHead = 10;  // the size line: up to 8 hex digits and CRLF
  std::string buf_;
  std::chrono::steady_clock::time_point first_queued_{};
};

// The OpenAI-compatible routes: /v1/completions, /v1/chat/completions, /v1/models[/{id}],
// /tokenize, /detokenize (`parts` is the path split at '/', parts[0] being "v1", "tokenize" or
// "detokenize"). Errors use OpenAI's error object. Returns the HTTP status sent.
int handle_openai(ServerContext& ctx, mg_connection* conn, const std::string& method,
                  const std::vector<std::string_view>& parts);

}  // namespace ferry::host
