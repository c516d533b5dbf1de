// Internals of TokenVocabulary (grammar.h) and the mask cache, shared by vocabulary.cc and
// matcher.cc.
//
// The byte trie: node 0 is the root (the empty prefix); a node's children are contiguous, sorted
// by byte, at nodes[child_begin, child_end) (nodes laid out breadth-first). node_tokens is in
// depth-first order: the ids of the tokens whose bytes end at a node are node_tokens[tok_begin,
// tok_end), and those of its whole subtree node_tokens[tok_begin, subtree_tok_end).
// subtree_bytes indexes byte_sets: every byte on an edge below the node (so a matcher state that
// every one of those bytes maps to itself allows the whole subtree at once). Tokens with empty
// bytes and end ids are not in the trie.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/llm/grammar/grammar.h"
#include "backend/llm/grammar/grammar_internal.h"

namespace ferry::llm::grammar {

struct TrieNode {
  uint32_t child_begin = 0;
  uint32_t child_end = 0;
  uint32_t tok_begin = 0;
  uint32_t tok_end = 0;
  uint32_t subtree_tok_end = 0;
  uint32_t subtree_bytes = 0;
  uint8_t byte = 0;    // the edge from the parent
  uint8_t height = 0;  // bytes on the longest path below (capped at 255)
};

struct TokenVocabulary::Impl {
  int32_t size = 0;
  std::vector<std::string> token_bytes;  // [size]
  std::vector<uint8_t> is_end;           // [size]
  std::vector<int32_t> end_ids;
  std::vector<TrieNode> nodes;
  std::vector<uint8_t> edge_bytes;  // [nodes.size()] nodes[n].byte, packed: siblings' bytes are
                                    // scanned without loading their nodes
  std::vector<int32_t> node_tokens;
  std::vector<ByteSet> byte_sets;  // distinct subtree byte sets
};

// Masks of one Grammar over one vocabulary, keyed by a canonical form of the matcher state (the
// stack set's contents, independent of which Matcher made it). LRU, bounded by bytes of masks.
// Thread-safe: one mutex around lookups and inserts (a lookup is one hash of the key).
class MaskCache {
 public:
  using Mask = std::vector<uint32_t>;
  static constexpr size_t kDefaultCapacityBytes = size_t{64} << 20;

  explicit MaskCache(size_t capacity_bytes = kDefaultCapacityBytes) : capacity_bytes_(capacity_bytes) {}

  // The mask stored under `key`, or null.
  std::shared_ptr<const Mask> find(const std::string& key);
  void insert(const std::string& key, std::shared_ptr<const Mask> mask);
  size_t size() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Mask> mask;
  };
  mutable std::mutex mu_;
  size_t capacity_bytes_;
  size_t bytes_ = 0;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace ferry::llm::grammar
