// Lexer of ferry's Jinja-subset interpreter: template source -> flat token stream.
//
// Text between tags becomes kText tokens, with Jinja's whitespace control already applied:
// `{%-` / `-%}` (and the same for `{{ }}` and `{# #}`) strip all whitespace on that side,
// trim_blocks drops the first newline after a block or comment tag, lstrip_blocks drops spaces and
// tabs before a block or comment tag that starts a line (`{%+` / `+%}` opt out), as HF renders.
// Comments produce no tokens. Inside tags, the lexer yields names, numbers, strings and operators.
//
// Thread-safety: pure function, no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

enum class TokenKind {
  kText,        // literal template text (value = the text)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword (value = the name)
  kString,      // string literal (value = decoded contents)
  kInt,         // integer literal (int_value)
  kFloat,       // float literal (float_value)
  kOp,          // operator or punctuation (value = "==", "(", "|", ...)
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string value;
  int64_t int_value = 0;
  double float_value = 0.0;
  size_t pos = 0;  // byte offset in the template source
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Tokenizes a whole template. Errors (unterminated tag/string, bad character) name line and column.
Result<std::vector<Token>> lex_template(std::string_view source, const LexOptions& options);

// "line L, column C" of a byte offset, for error messages.
std::string describe_position(std::string_view source, size_t pos);

}  // namespace ferry::llm
