// Small jsoncpp helpers used across the host: strict parsing and compact writing.
#pragma once

#include <json/json.h>

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
// Reads a file into a string.
Result<std::string> read_file(const std::string& path);

}  // namespace ferry::host
