#include "backend/llm/tokenizer/incremental_detokenizer.h"

#include "backend/llm/tokenizer/utf8.h"

namespace ferry::llm {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer),
      skip_special_tokens_(skip_special_tokens),
      strip_left_(tokenizer.decoder_.strip_start()) {}

std::string IncrementalDetokenizer::add(TokenId id) {
  ++num_tokens_;
  if (tokenizer_->append_token_bytes(id, skip_special_tokens_, num_decoded_, pending_)) ++num_decoded_;
  return emit(/*final=*/false);
}

std::string IncrementalDetokenizer::finish() { return emit(/*final=*/true); }

std::string IncrementalDetokenizer::emit(bool final) {
  std::string text;
  const size_t used = utf8::append_lossy(pending_, final, text);
  pending_.erase(0, used);
  // The whole-text leading strip applies only until the first other character comes out.
  if (strip_left_ > 0 && !text.empty()) {
    const std::string& c = tokenizer_->decoder_.strip_char();
    size_t begin = 0;
    while (strip_left_ > 0 && text.compare(begin, c.size(), c) == 0) {
      begin += c.size();
      --strip_left_;
    }
    if (begin < text.size()) strip_left_ = 0;
    text.erase(0, begin);
  }
  return text;
}

}  // namespace ferry::llm
