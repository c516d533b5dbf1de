// The BPE model of a HuggingFace tokenizer.json ("model" key with type "BPE"): the vocabulary,
// the ranked merges, and the encoding of one pre-tokenized word into ids.
//
// Encoding follows HF tokenizers: start from one symbol per character (with byte_fallback to
// <0xNN> tokens, otherwise unk, fused when fuse_unk), then repeatedly apply the lowest-ranked
// merge, leftmost first, using a min-heap over candidate pairs and a linked list of symbols:
// O(n log n) per word. With ignore_merges (Llama 3), a word that is itself in the vocabulary is
// emitted whole. `dropout` is ignored (always treated as off: serving must be deterministic).
// A long SentencePiece-style word (no pre-tokenizer: the whole text is one word) is cut before
// each "▁" that follows another character when no vocabulary token spans such a point: no merge
// can then cross it, so the result is the same and each piece can be cached.
// Results for short words are kept in a small per-thread cache (bounded; never shared between
// threads, so no locking), since natural text repeats its words.
//
// Immutable after construction; encode_word() is const and safe to call concurrently.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

using TokenId = int32_t;

// std::hash over string_view so maps keyed by std::string can be probed without allocating.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // Builds from tokenizer.json's "model" object. Errors name the offending key, e.g.
  // "tokenizer.json: model.type 'Unigram' is not supported".
  static Result<BpeModel> from_json(const Json::Value& model);
  // Builds from a vocab.json object and the lines of a merges.txt (GPT-2 style files).
  static Result<BpeModel> from_vocab_and_merges(const Json::Value& vocab, std::string_view merges_txt);

  // Appends the ids of `word` (text in the model's alphabet) to out.
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;

  std::optional<TokenId> token_to_id(std::string_view token) const;
  // The token text of id, or nullptr when id is not in this vocabulary.
  const std::string* id_to_token(TokenId id) const;
  // One past the largest id in the vocabulary.
  size_t size() const { return id_to_token_.size(); }
  // Merges dropped at load because a token they name or make is not in the vocabulary.
  size_t num_skipped_merges() const { return num_skipped_merges_; }

 private:
  struct MergeTarget {
    uint32_t rank;
    TokenId id;
  };
  // Open-addressing hash map from a pair key to its merge: the merge lookup is the hot loop.
  class MergeMap {
   public:
    void build(const std::unordered_map<uint64_t, MergeTarget>& merges);
    const MergeTarget* find(uint64_t key) const {
      if (slots_.empty()) return nullptr;
      for (size_t i = hash(key);; i = (i + 1) & mask_) {
        const Slot& s = slots_[i];
        if (s.key == key) return &s.target;
        if (s.key == kEmpty) return nullptr;
      }
    }

   private:
    static constexpr uint64_t kEmpty = ~0ull;  // no real key: ids are < 2^31
    struct Slot {
      uint64_t key = kEmpty;
      MergeTarget target{};
    };
    size_t hash(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    unsigned shift_ = 64;
  };
  static uint64_t pair_key(TokenId a, TokenId b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  Status set_vocab(const Json::Value& vocab, const std::string& path);
  Status add_merge(std::string_view left, std::string_view right, uint32_t rank);
  void finish_build();
  // Ids of the characters of word before any merge (HF's "merge_word" initial symbols).
  void initial_symbols(std::string_view word, std::vector<TokenId>& ids) const;
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;
  void encode_piece(std::string_view piece, std::vector<TokenId>& out) const;
  std::optional<TokenId> char_id(std::string_view s) const;

  Vocab vocab_;
  std::vector<std::string> id_to_token_;  // "" for ids that no token uses
  std::vector<bool> id_used_;
  std::unordered_map<uint64_t, MergeTarget> merges_;  // filled while loading
  MergeMap merge_map_;                                // what encoding reads
  uint64_t instance_id_ = 0;                          // keys the per-thread word cache
  bool split_before_metaspace_ = false;               // see the header comment
  std::vector<TokenId> bmp_char_ids_;                 // code point (< 0x10000) -> id of that 1-char token, or -1
  std::optional<TokenId> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  TokenId byte_ids_[256];  // id of "<0xNN>" or -1
  size_t num_skipped_merges_ = 0;
};

}  // namespace ferry::llm
