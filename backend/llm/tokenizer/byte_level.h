// The GPT-2 "byte-level" alphabet: every byte 0..255 is shown as one printable Unicode character
// (printable Latin-1 bytes as themselves, the others as U+0100 + n), so BPE vocabularies can hold
// arbitrary bytes as text. Tables are built once, immutable, safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::llm::byte_level {

// UTF-8 of the character that stands for byte b.
std::string_view byte_to_char(uint8_t b);

// Appends the alphabet form of every byte of `bytes` to out.
void bytes_to_chars(std::string_view bytes, std::string& out);

// Appends the bytes that `token` (text in the alphabet) stands for. Returns false, appending
// nothing, when some character of token is not in the alphabet (HF then keeps the raw text).
bool chars_to_bytes(std::string_view token, std::string& out);

}  // namespace ferry::llm::byte_level
