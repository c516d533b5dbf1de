// A compiled regular expression for the tokenizer's pre-tokenizers and normalizers: PCRE2 in UTF
// and UCP mode (so \p{L}, \s, \d are Unicode-aware), JIT-compiled when the platform allows.
// Patterns come from tokenizer.json, written for Rust's regex / fancy-regex (Perl-style, leftmost-
// first); the one difference that matters for them, \s, is patched so that U+0085 counts as
// whitespace as it does in Rust.
//
// Ownership: a Regex owns its compiled code; movable, not copyable. Thread-safety: find_all is const
// and safe to call concurrently (each thread uses its own match data).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

class Regex {
 public:
  // Compiles `pattern`; a bad pattern gives InvalidArgument with PCRE2's message and offset.
  static Result<Regex> compile(std::string_view pattern);
  // A pattern that matches `literal` exactly.
  static Result<Regex> literal(std::string_view literal);

  // Appends [start, end) byte ranges of every non-overlapping match in text, left to right.
  // text must be valid UTF-8 (the caller checks once; this does not check again).
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  Regex(std::shared_ptr<const Code> code, std::string pattern) : code_(std::move(code)), pattern_(std::move(pattern)) {}

  std::shared_ptr<const Code> code_;
  std::string pattern_;
};

// Rewrites a Rust-regex pattern for PCRE2 (exposed for tests): \s and \S outside classes and \s
// inside classes also cover U+0085.
std::string adapt_rust_pattern(std::string_view pattern);

}  // namespace ferry::llm
