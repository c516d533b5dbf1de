// Streaming detokenization for one sequence: feed generated ids one at a time, get back the text
// each one adds.
//
// Guarantees: every delta is well-formed UTF-8 (bytes of a character split across tokens are held
// until the character is complete); the concatenation of all deltas from add() followed by
// finish() equals tokenizer.decode(all ids, skip_special_tokens) exactly, including the
// SentencePiece leading-space strip (HF's Strip decoder) and Metaspace's first-token rule. As long
// as the ids decode to valid UTF-8, finish() returns "" and the deltas alone already add up.
//
// Cost: O(bytes of the new token) per add(); no re-decoding of earlier ids.
//
// Ownership and threading: holds a pointer to the Tokenizer, which must outlive it. One object per
// sequence; not safe for concurrent use (distinct objects on one Tokenizer are fine).
#pragma once

#include <cstddef>
#include <string>

#include "backend/llm/tokenizer/tokenizer.h"

namespace ferry::llm {

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);

  // Feeds one id; returns the text it completes (possibly empty).
  std::string add(TokenId id);
  // Ends the sequence: bytes still held (an incomplete character) come out as U+FFFD.
  std::string finish();

  size_t num_tokens() const { return num_tokens_; }

 private:
  std::string emit(bool final);

  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  size_t num_tokens_ = 0;   // ids fed
  size_t num_decoded_ = 0;  // ids that reached the decoder (index for Metaspace)
  std::string pending_;     // bytes not yet turned into text
  size_t strip_left_ = 0;   // leading strip characters still to remove
};

}  // namespace ferry::llm
