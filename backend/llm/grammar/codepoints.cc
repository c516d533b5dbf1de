#include "backend/llm/grammar/codepoints.h"

#include <algorithm>
#include <cstdio>

namespace ferry::llm::grammar {

namespace {
constexpr uint32_t kSurrogateLo = 0xD800;
constexpr uint32_t kSurrogateHi = 0xDFFF;
}  // namespace

void CodepointSet::add(uint32_t lo, uint32_t hi) {
  if (lo > hi) return;
  if (hi > kMaxCodepoint) hi = kMaxCodepoint;
  if (lo > kMaxCodepoint) return;
  // Split around the surrogate block, which no UTF-8 text contains.
  if (lo < kSurrogateLo && hi >= kSurrogateLo) {
    ranges_.push_back({lo, kSurrogateLo - 1});
    if (hi > kSurrogateHi) ranges_.push_back({kSurrogateHi + 1, hi});
  } else if (lo >= kSurrogateLo && lo <= kSurrogateHi) {
    if (hi > kSurrogateHi) ranges_.push_back({kSurrogateHi + 1, hi});
  } else {
    ranges_.push_back({lo, hi});
  }
  normalize();
}

void CodepointSet::add(const CodepointSet& other) {
  ranges_.insert(ranges_.end(), other.ranges_.begin(), other.ranges_.end());
  normalize();
}

void CodepointSet::normalize() {
  std::sort(ranges_.begin(), ranges_.end(),
            [](const CodepointRange& a, const CodepointRange& b) { return a.lo < b.lo; });
  std::vector<CodepointRange> merged;
  for (const CodepointRange& r : ranges_) {
    // Adjacent ranges merge too; the surrogate gap keeps D7FF and E000 apart.
    if (!merged.empty() && r.lo <= merged.back().hi + 1 &&
        !(merged.back().hi == kSurrogateLo - 1 && r.lo == kSurrogateHi + 1)) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  ranges_ = std::move(merged);
}

CodepointSet CodepointSet::any() {
  CodepointSet s;
  s.add(0, kMaxCodepoint);
  return s;
}

CodepointSet CodepointSet::complement() const {
  CodepointSet out;
  uint32_t next = 0;
  for (const CodepointRange& r : ranges_) {
    if (r.lo > next) out.add(next, r.lo - 1);
    next = r.hi + 1;
  }
  if (next <= kMaxCodepoint) out.add(next, kMaxCodepoint);
  return out;
}

bool CodepointSet::contains(uint32_t cp) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), cp,
                             [](uint32_t v, const CodepointRange& r) { return v < r.lo; });
  return it != ranges_.begin() && std::prev(it)->hi >= cp;
}

namespace {

int utf8_length(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void encode(uint32_t cp, int len, uint8_t* out) {
  switch (len) {
    case 1: out[0] = static_cast<uint8_t>(cp); break;
    case 2:
      out[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
      out[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      break;
    case 3:
      out[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
      out[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      break;
    default:
      out[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
      out[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      out[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  }
}

// [lo, hi] within one encoded length. Splits until, for every trailing group of k continuation
// bytes, the range either keeps the same leading bits or covers the whole group; then the range is
// the byte-wise product of lo's and hi's encodings.
void split_same_length(uint32_t lo, uint32_t hi, std::vector<Utf8Sequence>* out) {
  const int len = utf8_length(lo);
  for (int k = 1; k < len; ++k) {
    const uint32_t mask = (uint32_t{1} << (6 * k)) - 1;
    if ((lo & ~mask) == (hi & ~mask)) continue;
    if ((lo & mask) != 0) {
      split_same_length(lo, lo | mask, out);
      split_same_length((lo | mask) + 1, hi, out);
      return;
    }
    if ((hi & mask) != mask) {
      split_same_length(lo, (hi & ~mask) - 1, out);
      split_same_length(hi & ~mask, hi, out);
      return;
    }
  }
  Utf8Sequence seq;
  seq.length = len;
  encode(lo, len, seq.lo);
  encode(hi, len, seq.hi);
  out->push_back(seq);
}

}  // namespace

std::vector<Utf8Sequence> utf8_sequences(const CodepointSet& set) {
  static constexpr uint32_t kLengthEnds[] = {0x7F, 0x7FF, 0xFFFF, kMaxCodepoint};
  std::vector<Utf8Sequence> out;
  for (const CodepointRange& r : set.ranges()) {
    uint32_t lo = r.lo;
    for (uint32_t end : kLengthEnds) {
      if (lo > r.hi) break;
      if (lo > end) continue;
      const uint32_t hi = std::min(r.hi, end);
      split_same_length(lo, hi, &out);
      lo = hi + 1;
    }
  }
  return out;
}

bool decode_utf8(std::string_view text, size_t* pos, uint32_t* cp) {
  size_t i = *pos;
  if (i >= text.size()) return false;
  const auto b0 = static_cast<uint8_t>(text[i]);
  int len;
  uint32_t v;
  if (b0 < 0x80) {
    len = 1, v = b0;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, v = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, v = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, v = b0 & 0x07;
  } else {
    return false;
  }
  if (i + static_cast<size_t>(len) > text.size()) return false;
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<uint8_t>(text[i + static_cast<size_t>(k)]);
    if ((b & 0xC0) != 0x80) return false;
    v = (v << 6) | (b & 0x3F);
  }
  if (utf8_length(v) != len || v > kMaxCodepoint || (v >= kSurrogateLo && v <= kSurrogateHi)) return false;
  *pos = i + static_cast<size_t>(len);
  *cp = v;
  return true;
}

void append_utf8(std::string* out, uint32_t cp) {
  uint8_t buf[4];
  const int len = utf8_length(cp);
  encode(cp, len, buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
}

bool is_valid_utf8(std::string_view text) {
  size_t pos = 0;
  uint32_t cp;
  while (pos < text.size()) {
    if (!decode_utf8(text, &pos, &cp)) return false;
  }
  return true;
}

namespace {

// One code point as GBNF writes it inside "..." or [...]: printable ASCII as itself (with the
// characters special to that context escaped), other ASCII as \xHH, the rest as UTF-8.
void append_gbnf_char(std::string* out, uint32_t cp, bool in_class) {
  if (cp == '\\' || (!in_class && cp == '"') || (in_class && (cp == ']' || cp == '-' || cp == '^' || cp == '['))) {
    out->push_back('\\');
    out->push_back(static_cast<char>(cp));
  } else if (cp == '\n') {
    out->append("\\n");
  } else if (cp == '\t') {
    out->append("\\t");
  } else if (cp == '\r') {
    out->append("\\r");
  } else if (cp < 0x20 || cp == 0x7F) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned>(cp));
    out->append(buf);
  } else {
    append_utf8(out, cp);
  }
}

}  // namespace

std::string gbnf_literal(std::string_view utf8) {
  std::string out = "\"";
  size_t pos = 0;
  uint32_t cp;
  while (pos < utf8.size()) {
    if (!decode_utf8(utf8, &pos, &cp)) {
      cp = 0xFFFD;  // callers pass valid UTF-8; never emit invalid GBNF
      ++pos;
    }
    append_gbnf_char(&out, cp, false);
  }
  out.push_back('"');
  return out;
}

std::string gbnf_class(const CodepointSet& set) {
  if (set.empty()) return "[^\\x00-\\U0010FFFF]";
  std::string out = "[";
  for (const CodepointRange& r : set.ranges()) {
    append_gbnf_char(&out, r.lo, true);
    if (r.hi != r.lo) {
      out.push_back('-');
      append_gbnf_char(&out, r.hi, true);
    }
  }
  out.push_back(']');
  return out;
}

}  // namespace ferry::llm::grammar
