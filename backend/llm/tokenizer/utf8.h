// UTF-8 helpers for the tokenizer: decoding one code point, validation, and the lossy conversion
// that HuggingFace's decoders use (Rust's String::from_utf8_lossy: each maximal invalid subpart
// becomes one U+FFFD). Pure functions on caller-owned buffers; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::llm::utf8 {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Appends the UTF-8 encoding of code point cp (must be <= 0x10FFFF) to out.
void append(std::string& out, uint32_t cp);

// Length in bytes of the well-formed character starting at s[pos], or 0 when the bytes there do
// not form a complete, well-formed character.
size_t char_length(std::string_view s, size_t pos);

// Decodes the well-formed character at s[pos] (char_length(s, pos) must be > 0).
uint32_t decode_at(std::string_view s, size_t pos);

// True when s is entirely well-formed UTF-8.
bool is_valid(std::string_view s);

// How a byte string is turned into text. Scans bytes from the start and appends to out:
// well-formed characters as they are, each maximal invalid subpart as one U+FFFD. When `final`
// is false, a trailing sequence that is a valid but incomplete prefix of a character is not
// consumed (more bytes may complete it). Returns the number of bytes consumed.
size_t append_lossy(std::string_view bytes, bool final, std::string& out);

}  // namespace ferry::llm::utf8
