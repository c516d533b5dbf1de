// Added tokens (tokenizer.json "added_tokens"; special tokens among them): found in the input
// before anything else and never split. Matching follows HF tokenizers' AddedVocabulary:
// leftmost-longest over all contents; tokens with normalized=false are matched in the raw text,
// those with normalized=true in the normalized text against their normalized content;
// single_word rejects a match touching a word character; lstrip/rstrip absorb the whitespace on
// that side into the token.
//
// Immutable after build(); find() is const and safe to call concurrently.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "backend/llm/tokenizer/bpe_model.h"

namespace ferry::llm {

class Normalizer;

struct AddedToken {
  TokenId id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// A run of input: either text (id == -1) or one added token.
struct Span {
  size_t begin = 0;
  size_t end = 0;
  TokenId id = -1;
};

class AddedVocabulary {
 public:
  // `normalizer` gives the normalized form of normalized=true tokens; it is used only here.
  void build(std::vector<AddedToken> tokens, const Normalizer& normalizer);

  // Splits text into spans covering it entirely (empty text gives no spans), matching the tokens
  // with normalized == `normalized_set`.
  void find(std::string_view text, bool normalized_set, std::vector<Span>& out) const;

  // The token with this id, or nullptr.
  const AddedToken* by_id(TokenId id) const;
  const AddedToken* by_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool has_normalized() const { return !normalized_.patterns.empty(); }

 private:
  struct Pattern {
    std::string text;
    size_t token_index;
  };
  struct MatchSet {
    std::vector<Pattern> patterns;                 // sorted by first byte, then longest first
    std::array<uint32_t, 257> first_byte_begin{};  // patterns with first byte b: [begin[b], begin[b+1])
  };
  static void index(MatchSet& set);

  std::vector<AddedToken> tokens_;
  std::vector<int32_t> by_id_;  // id -> index into tokens_, or -1
  MatchSet raw_;
  MatchSet normalized_;
};

}  // namespace ferry::llm
