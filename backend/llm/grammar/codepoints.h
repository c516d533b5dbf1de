// Code points and their UTF-8 forms for the grammar engine: sets of code-point ranges (character
// classes), their expansion into UTF-8 byte-range sequences (how the compiler matches a class on
// bytes), and the GBNF spelling of literals and classes (how the front ends write them).
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::llm::grammar {

inline constexpr uint32_t kMaxCodepoint = 0x10FFFF;

struct CodepointRange {
  uint32_t lo;
  uint32_t hi;  // inclusive
};

// Sorted, disjoint, non-adjacent ranges of Unicode scalar values (never surrogates D800-DFFF).
class CodepointSet {
 public:
  void add(uint32_t lo, uint32_t hi);  // lo <= hi <= kMaxCodepoint; surrogates are dropped
  void add(uint32_t cp) { add(cp, cp); }
  void add(const CodepointSet& other);
  CodepointSet complement() const;  // every scalar value not in this set
  bool contains(uint32_t cp) const;
  bool empty() const { return ranges_.empty(); }
  const std::vector<CodepointRange>& ranges() const { return ranges_; }

  static CodepointSet any();  // every scalar value

 private:
  void normalize();
  std::vector<CodepointRange> ranges_;
};

// One UTF-8 byte-range sequence: byte i of a match lies in [lo[i], hi[i]].
struct Utf8Sequence {
  int length = 0;  // 1..4
  uint8_t lo[4] = {};
  uint8_t hi[4] = {};
};

// The byte-range sequences whose union is exactly the UTF-8 encodings of the code points in `set`
// (each sequence covers code points of one encoded length whose continuation bytes span full
// ranges, so matching the sequence byte by byte accepts exactly those code points).
std::vector<Utf8Sequence> utf8_sequences(const CodepointSet& set);

// Decodes one code point at text[*pos] and advances *pos; false (pos unchanged) for invalid UTF-8
// (overlong forms, surrogates, values past U+10FFFF, truncated sequences).
bool decode_utf8(std::string_view text, size_t* pos, uint32_t* cp);
void append_utf8(std::string* out, uint32_t cp);
bool is_valid_utf8(std::string_view text);

// GBNF spellings. gbnf_literal: a quoted string literal matching exactly `utf8` (valid UTF-8;
// quotes, backslashes and control characters escaped). gbnf_class: a bracket class matching exactly
// `set` ("[^\x00-\U0010FFFF]"-style empty class when the set is empty).
std::string gbnf_literal(std::string_view utf8);
std::string gbnf_class(const CodepointSet& set);

}  // namespace ferry::llm::grammar
