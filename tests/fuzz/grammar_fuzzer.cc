// Fuzzes the grammar engine (backend/llm/grammar): the GBNF compiler and the matcher on fuzzed
// grammars and bytes, and the JSON-schema and regex front ends on fuzzed schemas and patterns.
// Input layout: byte 0 = mode (% 3): 0 GBNF, 1 JSON schema text, 2 regex. The rest is split at its
// first NUL: before it the grammar / schema / pattern, after it the bytes to match.
//
// Invariants checked:
//   - every front end's GBNF compiles (a front end never writes a grammar the compiler refuses);
//   - accept_bytes that fails leaves the state unchanged (same can_end, same mask);
//   - fill_mask equals the brute-force reference on a small vocabulary (each token: a fresh
//     matcher fed the accepted bytes plus the token's bytes), for the first steps;
//   - rollback(1) after accepting returns to the same mask.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/llm/grammar/grammar.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace grammar = ferry::llm::grammar;

struct SmallVocab {
  std::vector<std::string> tokens;
  std::shared_ptr<const grammar::TokenVocabulary> vocab;
};

const SmallVocab& small_vocab() {
  static const SmallVocab v = [] {
    SmallVocab s;
    for (int b = 0; b < 256; ++b) s.tokens.push_back(std::string(1, static_cast<char>(b)));
    for (const char* p : {"ab", "\":", "{\"", "true", "é", "\xC3", "€", "12", "a\"", "\\n", "  "}) s.tokens.push_back(p);
    s.tokens.push_back("");  // the end id
    s.vocab = grammar::TokenVocabulary::build(s.tokens, {static_cast<int32_t>(s.tokens.size() - 1)});
    return s;
  }();
  return v;
}

bool reference_allows(const std::shared_ptr<const grammar::Grammar>& g, const std::string& prefix, int32_t id) {
  const SmallVocab& v = small_vocab();
  grammar::Matcher m(g, nullptr);
  FUZZ_CHECK(m.accept_bytes(prefix), "the reference refuses bytes the matcher accepted");
  if (id == static_cast<int32_t>(v.tokens.size() - 1)) return m.can_end();
  return m.accept_bytes(v.tokens[static_cast<size_t>(id)]);
}

void check_matcher(const std::shared_ptr<const grammar::Grammar>& g, std::string_view bytes) {
  const SmallVocab& v = small_vocab();
  grammar::Matcher m(g, v.vocab);
  std::vector<uint32_t> mask(grammar::bitmask_words(v.vocab->size())), again(mask.size());
  std::string accepted;
  const size_t max_steps = 6;
  for (size_t step = 0; step < bytes.size() && step < 64; ++step) {
    m.fill_mask(mask);
    if (step < max_steps) {
      for (int32_t id = 0; id < v.vocab->size(); ++id) {
        const bool got = (mask[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1;
        FUZZ_CHECK(got == reference_allows(g, accepted, id), "mask differs from the reference for token %d", id);
      }
    }
    // Chunks of 1..4 bytes from the input.
    const size_t len = 1 + (static_cast<uint8_t>(bytes[step]) & 3);
    const std::string_view chunk = bytes.substr(step, len);
    const bool could_end = m.can_end();
    if (m.accept_bytes(chunk)) {
      accepted.append(chunk);
      m.rollback(1);
      m.fill_mask(again);
      FUZZ_CHECK(again == mask, "rollback(1) changed the mask");
      FUZZ_CHECK(m.accept_bytes(chunk), "accept after rollback failed");
    } else {
      FUZZ_CHECK(m.can_end() == could_end, "a refused accept changed can_end");
      m.fill_mask(again);
      FUZZ_CHECK(again == mask, "a refused accept changed the mask");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 3;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nul = rest.find('\0');
  const std::string_view text = rest.substr(0, nul);
  const std::string_view bytes = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  std::string gbnf;
  if (mode == 0) {
    gbnf = std::string(text);
  } else {
    auto front = mode == 1 ? grammar::json_schema_text_to_gbnf(text) : grammar::regex_to_gbnf(text);
    if (!front.ok()) return 0;
    gbnf = front.value();
  }
  auto g = grammar::compile_gbnf(gbnf);
  if (!g.ok()) {
    FUZZ_CHECK(mode == 0, "a front end wrote GBNF the compiler refuses: %s\n%s", g.status().message().c_str(),
               gbnf.c_str());
    return 0;
  }
  check_matcher(g.value(), bytes);
  return 0;
}
