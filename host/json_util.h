// Small jsoncpp helpers used across the host: strict parsing and compact writing.
#pragma once

#include <json/json.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ferry::host {

// Parses a whole JSON text strictly (trailing text and duplicate keys are errors) through the
// depth-limited common/json_parse.h: nesting over kMaxJsonDepth is InvalidArgument, checked before
// jsoncpp recurses. `what` names the source in messages.
Result<Json::Value> parse_json(std::string_view text, const std::string& what);
// Compact single-line JSON.
std::string to_json(const Json::Value& value);
// jsoncpp sorts an object's keys, but a JSON Schema's property order matters to structured
// outputs (the model writes properties in that order). For each key that carries a schema
// (llm_protocol::kSchemaFormatKeys) found in the object at
// `source_path` of the request text `source` and at the top level of *params_json (the parameters
// the host built from it), puts the request's own text of the value back in place of jsoncpp's.
// `parsed`: the object at `source_path` as parsed; without any of those keys nothing is scanned.
// Leaves *params_json as it is when a text cannot be found (no error: order is a nicety).
// Writes `value` as compact JSON, each object's keys in the order they appear in `guide` (the text
// of a JSON value of the same shape, e.g. the request's own text of what `value` was built from),
// keys the guide lacks after those, in jsoncpp's (sorted) order. Json::Value sorts keys; a JSON
// schema's properties are generated in the order its text lists them, so that order must survive.
void append_json_ordered(std::string& out, const Json::Value& value, std::optional<std::string_view> guide);

void keep_output_format_text(std::string_view source, std::initializer_list<std::string_view> source_path,
                             const Json::Value& parsed, std::string* params_json);
// Reads a file into a string.
Result<std::string> read_file(const std::string& path);

}  // namespace ferry::host
