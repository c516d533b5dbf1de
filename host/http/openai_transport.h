// The HTTP plumbing that the OpenAI-compatible handlers (openai_handlers.cc) share with the KServe
// ones: whole-body responses, JSON request bodies and server-sent events. The functions are
// defined in http_server.cc, next to the handlers that used them first; handle_openai is defined
// in openai_handlers.cc and called by http_server.cc's router.
//
// Thread-safety: each function works on one connection, from the civetweb thread that owns it.
#pragma once

#include <json/json.h>

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

// Server-sent events: a 200 with Content-Type text/event-stream and chunked encoding, then one
// "data: <data>\n\n" chunk per event, then the empty chunk that ends the body. send_event returns
// false when the write failed (the client left): the caller should cancel its request and stop.
void start_event_stream(mg_connection* conn);
bool send_event(mg_connection* conn, std::string_view data);
void end_event_stream(mg_connection* conn);

// The OpenAI-compatible routes: /v1/completions, /v1/chat/completions, /v1/models[/{id}],
// /tokenize, /detokenize (`parts` is the path split at '/', parts[0] being "v1", "tokenize" or
// "detokenize"). Errors use OpenAI's error object. Returns the HTTP status sent.
int handle_openai(ServerContext& ctx, mg_connection* conn, const std::string& method,
                  const std::vector<std::string_view>& parts);

}  // namespace ferry::host
