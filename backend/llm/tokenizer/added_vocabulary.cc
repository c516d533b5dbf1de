#include "backend/llm/tokenizer/added_vocabulary.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <cstring>

#include "backend/llm/tokenizer/normalizer.h"
#include "backend/llm/tokenizer/utf8.h"

namespace ferry::llm {
namespace {

// Rust regex's \w: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
bool is_word_char(uint32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) return true;
  switch (u_charType(c)) {
    case U_NON_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_CONNECTOR_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

bool is_space(uint32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }

// Start of the character that ends just before `pos`.
size_t prev_char(std::string_view s, size_t pos) {
  size_t p = pos - 1;
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  return p;
}

}  // namespace

void AddedVocabulary::index(MatchSet& set) {
  std::stable_sort(set.patterns.begin(), set.patterns.end(), [](const Pattern& a, const Pattern& b) {
    const auto fa = static_cast<uint8_t>(a.text[0]), fb = static_cast<uint8_t>(b.text[0]);
    if (fa != fb) return fa < fb;
    return a.text.size() > b.text.size();
  });
  size_t i = 0;
  for (int b = 0; b <= 256; ++b) {
    while (b < 256 && i < set.patterns.size() && static_cast<uint8_t>(set.patterns[i].text[0]) < b) ++i;
    set.first_byte_begin[static_cast<size_t>(b)] = static_cast<uint32_t>(b == 256 ? set.patterns.size() : i);
  }
}

void AddedVocabulary::build(std::vector<AddedToken> tokens, const Normalizer& normalizer) {
  tokens_ = std::move(tokens);
  TokenId max_id = -1;
  for (const AddedToken& t : tokens_) max_id = std::max(max_id, t.id);
  by_id_.assign(static_cast<size_t>(max_id + 1), -1);
  raw_ = MatchSet();
  normalized_ = MatchSet();
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[static_cast<size_t>(t.id)] = static_cast<int32_t>(i);
    if (t.content.empty()) continue;
    if (t.normalized) {
      std::string n = t.content;
      normalizer.normalize(n);
      if (!n.empty()) normalized_.patterns.push_back({std::move(n), i});
    } else {
      raw_.patterns.push_back({t.content, i});
    }
  }
  index(raw_);
  index(normalized_);
}

const AddedToken* AddedVocabulary::by_id(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= by_id_.size() || by_id_[static_cast<size_t>(id)] < 0) return nullptr;
  return &tokens_[static_cast<size_t>(by_id_[static_cast<size_t>(id)])];
}

const AddedToken* AddedVocabulary::by_content(std::string_view content) const {
  for (const AddedToken& t : tokens_) {
    if (t.content == content) return &t;
  }
  return nullptr;
}

void AddedVocabulary::find(std::string_view text, bool normalized_set, std::vector<Span>& out) const {
  if (text.empty()) return;
  const MatchSet& set = normalized_set ? normalized_ : raw_;
  size_t emitted = 0;  // end of the last span pushed
  size_t pos = 0;
  while (pos < text.size() && !set.patterns.empty()) {
    const auto b = static_cast<uint8_t>(text[pos]);
    const Pattern* hit = nullptr;
    for (uint32_t k = set.first_byte_begin[b]; k < set.first_byte_begin[b + 1u]; ++k) {
      const Pattern& p = set.patterns[k];
      if (p.text.size() <= text.size() - pos && std::memcmp(text.data() + pos, p.text.data(), p.text.size()) == 0) {
        hit = &p;  // the longest pattern with this start (patterns are longest first)
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[hit->token_index];
    size_t start = pos, stop = pos + hit->text.size();
    pos = stop;  // matches never overlap, even when the one found here is rejected
    if (token.single_word) {
      const bool word_before = start > 0 && is_word_char(utf8::decode_at(text, prev_char(text, start)));
      const bool word_after =
          stop < text.size() && utf8::char_length(text, stop) > 0 && is_word_char(utf8::decode_at(text, stop));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t s = start;
      while (s > emitted) {
        const size_t p = prev_char(text, s);
        if (!is_space(utf8::decode_at(text, p))) break;
        s = p;
      }
      start = s;
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        const size_t n = utf8::char_length(text, stop);
        if (n == 0 || !is_space(utf8::decode_at(text, stop))) break;
        stop += n;
      }
      pos = stop;
    }
    if (emitted < start) out.push_back({emitted, start, -1});
    out.push_back({start, stop, token.id});
    emitted = stop;
  }
  if (emitted < text.size()) out.push_back({emitted, text.size(), -1});
}

}  // namespace ferry::llm
