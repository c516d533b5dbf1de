// Internals of the grammar engine shared by its .cc files (not part of grammar.h's API).
//
// A compiled Grammar is byte-level: every terminal is a set of bytes (a 256-bit ByteSet), and
// character classes over Unicode code points have been expanded into alternatives of UTF-8 byte
// sequences by the compiler. Rules are alternatives of element sequences stored flat:
//
//   elements   [e e e END e e END ...]   every alternative ends with one kEnd element
//   alt_starts index of each alternative's first element, rule by rule
//   rule_alts  rule r's alternatives are alt_starts[rule_alts[r] .. rule_alts[r + 1])
//
// A grammar position is an index into `elements`. The matcher (matcher.cc) keeps stacks of them.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend/llm/grammar/grammar.h"

namespace ferry::llm::grammar {

// A set of bytes: bit (b % 64) of word (b / 64).
struct ByteSet {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  void add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void add_range(uint8_t lo, uint8_t hi) {
    for (unsigned b = lo; b <= hi; ++b) add(static_cast<uint8_t>(b));
  }
  bool any() const { return (bits[0] | bits[1] | bits[2] | bits[3]) != 0; }
  void merge(const ByteSet& o) {
    for (int i = 0; i < 4; ++i) bits[i] |= o.bits[i];
  }
  bool operator==(const ByteSet& o) const { return bits == o.bits; }
};

enum class ElementKind : uint8_t {
  kBytes,  // arg: index into Grammar::byte_sets; matches one byte
  kRule,   // arg: rule id
  kEnd,    // end of an alternative
};

struct Element {
  ElementKind kind;
  uint32_t arg;
};

class MaskCache;  // vocabulary.cc

// Size limits the compiler enforces (InvalidArgument past them). They bound what one request can
// make the server hold: a grammar of kMaxElements is ~8 MiB.
inline constexpr size_t kMaxRules = 1 << 16;
inline constexpr size_t kMaxElements = 1 << 20;
inline constexpr uint32_t kMaxRepeat = 1 << 14;  // the m and n of x{m,n}

class Grammar {
 public:
  std::vector<Element> elements;
  std::vector<uint32_t> alt_starts;
  std::vector<uint32_t> rule_alts;  // size num_rules + 1
  std::vector<ByteSet> byte_sets;
  std::vector<std::string> rule_names;  // for messages and debugging
  uint32_t root = 0;

  uint32_t num_rules() const { return static_cast<uint32_t>(rule_names.size()); }

  // The mask cache shared by every Matcher of this grammar over `vocab` (made on first use).
  // Thread-safe.
  std::shared_ptr<MaskCache> mask_cache(const std::shared_ptr<const TokenVocabulary>& vocab) const;

 private:
  mutable std::mutex caches_mu_;
  mutable std::vector<std::pair<std::weak_ptr<const TokenVocabulary>, std::shared_ptr<MaskCache>>> caches_;
};

}  // namespace ferry::llm::grammar
