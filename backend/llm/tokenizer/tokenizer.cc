#include "backend/llm/tokenizer/tokenizer.h"

#include <algorithm>

#include "backend/llm/tokenizer/utf8.h"

namespace ferry::llm {

void Tokenizer::encode_text(std::string_view text, bool at_input_start, size_t max_tokens,
                            std::vector<TokenId>& out) const {
  // Normalize this run, then pull out tokens that match in normalized form.
  std::string normalized(text);
  normalizer_.normalize(normalized);
  std::vector<Span> local;
  if (added_.has_normalized()) {
    added_.find(normalized, /*normalized_set=*/true, local);
  } else if (!normalized.empty()) {
    local.push_back({0, normalized.size(), -1});
  }
  std::vector<Piece> pieces;
  for (const Span& s : local) {
    if (out.size() > max_tokens) return;
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    pieces.clear();
    pieces.push_back(Piece{normalized.substr(s.begin, s.end - s.begin), at_input_start && s.begin == 0});
    pre_tokenizer_.run(pieces);
    // The BPE merges are the expensive part: checked per word, a text far over the limit stops
    // after about max_tokens ids' worth of it.
    for (const Piece& p : pieces) {
      if (out.size() > max_tokens) return;
      model_.encode_word(p.text, out);
    }
  }
}

Result<std::vector<TokenId>> Tokenizer::encode(std::string_view text, bool add_special_tokens,
                                               size_t max_tokens) const {
  if (!utf8::is_valid(text)) return Status::InvalidArgument("text is not valid UTF-8");
  std::vector<TokenId> ids;
  ids.reserve(std::min(text.size() / 3, max_tokens) + 4);
  if (add_special_tokens) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  std::vector<Span> spans;
  added_.find(text, /*normalized_set=*/false, spans);
  for (const Span& s : spans) {
    if (ids.size() > max_tokens) return ids;
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else {
      encode_text(text.substr(s.begin, s.end - s.begin), s.begin == 0, max_tokens, ids);
    }
  }
  if (ids.size() > max_tokens) return ids;
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

bool Tokenizer::append_token_bytes(TokenId id, bool skip_special_tokens, size_t index, std::string& bytes) const {
  if (const AddedToken* t = added_.by_id(id)) {
    if (skip_special_tokens && t->special) return false;
    decoder_.append_token(t->content, index, bytes);
    return true;
  }
  const std::string* piece = model_.id_to_token(id);
  if (piece == nullptr) return false;
  decoder_.append_token(*piece, index, bytes);
  return true;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special_tokens) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  size_t index = 0;
  for (TokenId id : ids) {
    if (append_token_bytes(id, skip_special_tokens, index, bytes)) ++index;
  }
  return decoder_.finish(bytes);
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* t = added_.by_content(token)) return t->id;
  return model_.token_to_id(token);
}

const std::string* Tokenizer::id_to_token(TokenId id) const {
  if (const AddedToken* t = added_.by_id(id)) return &t->content;
  return model_.id_to_token(id);
}

bool Tokenizer::is_special(TokenId id) const {
  const AddedToken* t = added_.by_id(id);
  return t != nullptr && t->special;
}

std::vector<std::string> Tokenizer::token_bytes_table() const {
  std::vector<std::string> table(vocab_size_);
  for (size_t id = 0; id < vocab_size_; ++id) {
    append_token_bytes(static_cast<TokenId>(id), /*skip_special_tokens=*/true, /*index=*/1, table[id]);
  }
  return table;
}

std::vector<TokenId> Tokenizer::stop_token_ids() const {
  std::vector<TokenId> ids;
  if (eos_id_) ids.push_back(*eos_id_);
  for (TokenId id : generation_eos_ids_) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

}  // namespace ferry::llm
