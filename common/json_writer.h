// Appends JSON text to a string without a DOM: for the fixed shapes written once per token on the
// response path (SSE chunks, ZeroMQ responses, the LLM backend's response parameters), where
// building a Json::Value and running jsoncpp's StreamWriter cost more than the rest of the token.
//
// Strings are escaped as jsoncpp's writer escapes them with emitUTF8 (what host/json_util.h's
// to_json produces): '"', '\\' and the control characters below 0x20 are escaped (\b \f \n \r \t,
// otherwise \u00XX); every other byte is copied as is, so UTF-8 text stays UTF-8. The result is
// valid JSON for any input that is valid UTF-8.
//
// Thread-safety: plain functions over the caller's string.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry {

// Appends `s` as a quoted JSON string.
void append_json_string(std::string& out, std::string_view s);
// Appends `"key":` (an object member's name and the colon).
void append_json_key(std::string& out, std::string_view key);
// Appends `v` in decimal.
void append_json_int(std::string& out, int64_t v);
// Appends `v` as a JSON number: the shortest text that reads back as the same double
// (std::to_chars); NaN and infinities, which JSON lacks, as null.
void append_json_double(std::string& out, double v);

}  // namespace ferry
