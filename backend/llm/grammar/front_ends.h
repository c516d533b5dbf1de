// Internals shared by the front ends (regex.cc, json_schema.cc): pieces of GBNF text.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace ferry::llm::grammar {

// A regular expression (regex_to_gbnf's subset) as one GBNF expression (no rule definitions), to
// be used inside a rule. json_string: the expression matches the JSON string *contents* whose
// decoded value matches the regex (a '"' in the regex becomes \" and so on), for a schema's
// "pattern"; the leading ^ / trailing $ are optional, and an unanchored side matches any text
// there (JSON Schema's pattern is a search, not a full match).
Result<std::string> regex_to_gbnf_expression(std::string_view regex, bool json_string);

// `text` as the body of a JSON string literal: quotes, backslashes and control characters escaped
// (\n \t \r \b \f, else \u00XX), the rest as is (valid UTF-8 in, valid UTF-8 out).
std::string json_escape(std::string_view text);

}  // namespace ferry::llm::grammar
