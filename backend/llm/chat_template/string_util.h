// String helpers with Python semantics for the Jinja-subset interpreter (str.strip, str.split, ...).
// Case mapping is ASCII-only; other characters pass through unchanged. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::llm {

// str.strip() / lstrip() / rstrip() without arguments: removes Python whitespace (ASCII whitespace,
// \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
std::string python_strip(const std::string& s, bool left, bool right);
// str.strip(chars): removes any of the code points in `chars`.
std::string strip_chars(const std::string& s, const std::string& chars, bool left, bool right);
// str.split() / rsplit() without separator: runs of whitespace, at most max_split splits (-1: no limit).
std::vector<std::string> split_whitespace(const std::string& s, int64_t max_split, bool from_right);
// str.split(sep) / rsplit(sep).
std::vector<std::string> split_on(const std::string& s, const std::string& sep, int64_t max_split, bool from_right);
std::string ascii_upper(std::string s);
std::string ascii_lower(std::string s);
// str.title(): first letter of each run of letters upper-cased, the rest lower-cased.
std::string python_title(const std::string& s);
// str.capitalize(): first character upper-cased, the rest lower-cased.
std::string python_capitalize(const std::string& s);
// str.replace(old, new, count): count < 0 replaces all. An empty `old` inserts between characters.
std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count);
// Splits UTF-8 text into code points (invalid bytes become one-byte pieces).
std::vector<std::string> utf8_chars(const std::string& s);

}  // namespace ferry::llm
