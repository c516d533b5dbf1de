// Parser of ferry's Jinja-subset interpreter: token stream (lexer.h) -> syntax tree (ast.h).
//
// Supported statements: if/elif/else, for (tuple targets, inline `if`, else, loop.*), set (names,
// tuples, `ns.attr`, block set), macro, filter blocks, break/continue. Expressions follow Jinja's
// precedence (conditional < or < and < not < comparisons < + - < ~ < * / // % < ** < unary < postfix,
// filters and tests). Nesting is limited so that hostile templates cannot overflow the stack.
//
// Thread-safety: pure function, no shared state.
#pragma once

#include <string_view>
#include <vector>

#include "backend/llm/chat_template/ast.h"
#include "backend/llm/chat_template/lexer.h"
#include "common/status.h"

namespace ferry::llm {

// The deepest expression/statement nesting the parser accepts.
inline constexpr int kMaxParseDepth = 200;

// Parses tokens lexed from `source` (source is used for error positions only).
Result<StmtList> parse_template(const std::vector<Token>& tokens, std::string_view source);

}  // namespace ferry::llm
