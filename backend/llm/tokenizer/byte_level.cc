#include "backend/llm/tokenizer/byte_level.h"

#include <array>

#include "backend/llm/tokenizer/utf8.h"

namespace ferry::llm::byte_level {
namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 512> from_cp;  // code point (< 512) -> byte, or -1

  Tables() {
    from_cp.fill(-1);
    int next_extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + static_cast<uint32_t>(next_extra++);
      utf8::append(to_char[b], cp);
      from_cp[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables kTables;
  return kTables;
}

}  // namespace

std::string_view byte_to_char(uint8_t b) { return tables().to_char[b]; }

void bytes_to_chars(std::string_view bytes, std::string& out) {
  const Tables& t = tables();
  for (char c : bytes) out.append(t.to_char[static_cast<uint8_t>(c)]);
}

bool chars_to_bytes(std::string_view token, std::string& out) {
  const Tables& t = tables();
  const size_t start = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const size_t n = utf8::char_length(token, pos);
    const uint32_t cp = n > 0 ? utf8::decode_at(token, pos) : 0xFFFFFFFF;
    if (n == 0 || cp >= t.from_cp.size() || t.from_cp[cp] < 0) {
      out.resize(start);
      return false;
    }
    out.push_back(static_cast<char>(t.from_cp[cp]));
    pos += n;
  }
  return true;
}

}  // namespace ferry::llm::byte_level
