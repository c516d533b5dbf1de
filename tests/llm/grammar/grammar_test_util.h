// Helpers for the grammar tests: a small hand-made vocabulary, the brute-force mask reference and
// random walks on masks. Test code only.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/llm/grammar/grammar.h"

namespace ferry::llm::grammar::testing {

inline std::shared_ptr<const Grammar> must_compile(const std::string& gbnf) {
  auto g = compile_gbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().message() << "\n" << gbnf;
  return g.ok() ? g.value() : nullptr;
}

// A vocabulary of every single byte (ids 0..255), then multi-byte pieces: JSON punctuation runs,
// words, whole and partial UTF-8 characters, pieces spanning grammar elements ("\":", "},{\"",
// "1,"), an empty-bytes id (never allowed) and two end ids.
struct TestVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> end_ids;
  std::shared_ptr<const TokenVocabulary> vocab;
};

inline TestVocab make_test_vocab() {
  TestVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(std::string(1, static_cast<char>(b)));
  const char* pieces[] = {
      "\"", "\":", "\": ", "\":\"", "\",", "\", \"", "{\"", "{", "}", "},", "},{\"", "[", "]", "],", "[\"",
      "\"]", "[{", "}]", "true", "false", "null", "null,", "tr", "ue", "fal", "se", "nu", "ll", "0", "1,", "12",
      "123", "-1", "0.", ".5", "e+", "E-1", "  ", "\n", "\n  ", " \"", "ab", "abc", "bc", "c", "aa", "name",
      "\"name\"", "age", "\"age\": ", "id", "\\", "\\n", "\\\"", "\\u00", "e9", "é", "ü", "\xC3", "\xA9",
      "\xE2\x82", "\xAC", "€", "€€", "日本", "語", "\xF0\x9F", "\x98\x80", "😀", "2024-", "01-", "15", "T12:",
      "00:00Z", "-0", "ff", "a-", "-b", "xyz", "hello", " world", "yes", "no", "α", "ω", "αβ"};
  for (const char* p : pieces) v.tokens.push_back(p);
  v.tokens.push_back("");  // an unused id
  v.end_ids = {static_cast<int32_t>(v.tokens.size()), static_cast<int32_t>(v.tokens.size() + 1)};
  v.tokens.push_back("");  // end ids: their bytes do not matter
  v.tokens.push_back("</s>");
  v.vocab = TokenVocabulary::build(v.tokens, v.end_ids);
  return v;
}

inline bool mask_has(const std::vector<uint32_t>& mask, int32_t id) {
  return (mask[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1;
}

// The reference for one token after `prefix`: a fresh matcher fed prefix + the token's bytes.
inline bool reference_allows(const std::shared_ptr<const Grammar>& g, const TestVocab& v, const std::string& prefix,
                             int32_t id) {
  Matcher m(g, nullptr);
  if (!m.accept_bytes(prefix)) return false;
  for (int32_t e : v.end_ids) {
    if (e == id) return m.can_end();
  }
  const std::string& bytes = v.tokens[static_cast<size_t>(id)];
  if (bytes.empty()) return false;
  return m.accept_bytes(bytes);
}

// Random walk: at each step fill the mask, check it against the reference for every token when
// `check_reference`, pick an allowed token at random (end ids with probability end_prob when
// allowed; with probability 0.4 among the allowed tokens holding a byte of `prefer`, when given,
// so that strings and containers close), accept it. Returns the bytes generated; *ended says whether it stopped at an end id or
// a terminated matcher (false: ran out of steps or no token allowed).
inline std::string random_walk(const std::shared_ptr<const Grammar>& g, const TestVocab& v, uint32_t seed,
                               int max_steps, bool check_reference, bool* ended, double end_prob = 0.15,
                               const char* prefer = nullptr) {
  std::mt19937 rng(seed);
  Matcher m(g, v.vocab);
  std::string text;
  std::vector<uint32_t> mask(bitmask_words(v.vocab->size()));
  *ended = false;
  for (int step = 0; step < max_steps; ++step) {
    if (m.is_terminated()) {
      *ended = true;
      break;
    }
    m.fill_mask(mask);
    std::vector<int32_t> allowed, ends;
    for (int32_t id = 0; id < v.vocab->size(); ++id) {
      const bool got = mask_has(mask, id);
      if (check_reference) {
        EXPECT_EQ(got, reference_allows(g, v, text, id))
            << "token " << id << " '" << v.tokens[static_cast<size_t>(id)] << "' after '" << text << "'";
      }
      if (!got) continue;
      bool is_end = false;
      for (int32_t e : v.end_ids) is_end |= e == id;
      (is_end ? ends : allowed).push_back(id);
    }
    EXPECT_EQ(!ends.empty(), m.can_end()) << "after '" << text << "'";
    if (allowed.empty() && ends.empty()) break;
    std::uniform_real_distribution<double> coin(0, 1);
    if (!ends.empty() && (allowed.empty() || coin(rng) < end_prob)) {
      EXPECT_TRUE(m.accept_token(ends[0]));
      EXPECT_TRUE(m.is_terminated());
      *ended = true;
      break;
    }
    std::vector<int32_t> preferred;
    if (prefer != nullptr && coin(rng) < 0.4) {
      for (int32_t id : allowed) {
        if (v.tokens[static_cast<size_t>(id)].find_first_of(prefer) != std::string::npos) preferred.push_back(id);
      }
    }
    const std::vector<int32_t>& pool = preferred.empty() ? allowed : preferred;
    const int32_t id = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
    EXPECT_TRUE(m.accept_token(id)) << "masked-in token " << id << " refused after '" << text << "'";
    text += v.tokens[static_cast<size_t>(id)];
  }
  return text;
}

}  // namespace ferry::llm::grammar::testing
