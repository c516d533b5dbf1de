// The order of object keys as written in JSON text, which a parsed Json::Value does not keep
// (jsoncpp sorts members). For json_schema_text_to_gbnf: properties in the schema's order.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry::llm::grammar {

// JSON pointer of an object ("" for the top) -> its keys in text order.
using JsonKeyOrder = std::unordered_map<std::string, std::vector<std::string>>;

// Scans `text` (JSON already accepted by ferry's parser: // and /* */ comments allowed) without
// recursion. On malformed text it records what it read so far; callers parse the text first.
JsonKeyOrder json_key_order(std::string_view text);

// A key as one JSON-pointer reference token (~ -> ~0, / -> ~1).
std::string json_pointer_escape(const std::string& key);

}  // namespace ferry::llm::grammar
