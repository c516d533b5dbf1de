// TokenVocabulary::build (the byte trie) and the shared mask cache.
#include "backend/llm/grammar/vocabulary.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "backend/llm/grammar/grammar_internal.h"

namespace ferry::llm::grammar {

TokenVocabulary::TokenVocabulary() : impl_(std::make_unique<Impl>()) {}
TokenVocabulary::~TokenVocabulary() = default;
int32_t TokenVocabulary::size() const { return impl_->size; }

std::shared_ptr<const TokenVocabulary> TokenVocabulary::build(std::vector<std::string> token_bytes,
                                                              std::vector<int32_t> end_ids) {
  std::shared_ptr<TokenVocabulary> vocab(new TokenVocabulary());
  Impl& v = *vocab->impl_;
  v.size = static_cast<int32_t>(token_bytes.size());
  v.is_end.assign(token_bytes.size(), 0);
  for (int32_t id : end_ids) {
    if (id >= 0 && id < v.size && !v.is_end[static_cast<size_t>(id)]) {
      v.is_end[static_cast<size_t>(id)] = 1;
      v.end_ids.push_back(id);
    }
  }
  v.token_bytes = std::move(token_bytes);

  std::vector<int32_t> order;
  for (int32_t id = 0; id < v.size; ++id) {
    if (!v.token_bytes[static_cast<size_t>(id)].empty() && !v.is_end[static_cast<size_t>(id)]) order.push_back(id);
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const std::string& x = v.token_bytes[static_cast<size_t>(a)];
    const std::string& y = v.token_bytes[static_cast<size_t>(b)];
    return x != y ? x < y : a < b;
  });
  auto byte_at = [&](size_t i, size_t depth) {
    return static_cast<uint8_t>(v.token_bytes[static_cast<size_t>(order[i])][depth]);
  };
  // Breadth-first: each queued node covers order[lo, hi), all sharing their first `depth` bytes;
  // the tokens ending at node n are order[own[n].first, own[n].second).
  struct Pending {
    uint32_t node;
    size_t lo, hi, depth;
  };
  std::vector<Pending> queue{{0, 0, order.size(), 0}};
  std::vector<std::pair<size_t, size_t>> own(1);
  v.nodes.emplace_back();
  for (size_t q = 0; q < queue.size(); ++q) {
    const Pending p = queue[q];
    size_t i = p.lo;
    while (i < p.hi && v.token_bytes[static_cast<size_t>(order[i])].size() == p.depth) ++i;
    own[p.node] = {p.lo, i};
    v.nodes[p.node].child_begin = static_cast<uint32_t>(v.nodes.size());
    while (i < p.hi) {
      const uint8_t b = byte_at(i, p.depth);
      size_t j = i + 1;
      while (j < p.hi && byte_at(j, p.depth) == b) ++j;
      TrieNode child;
      child.byte = b;
      queue.push_back({static_cast<uint32_t>(v.nodes.size()), i, j, p.depth + 1});
      v.nodes.push_back(child);
      own.emplace_back();
      i = j;
    }
    v.nodes[p.node].child_end = static_cast<uint32_t>(v.nodes.size());
  }
  v.edge_bytes.reserve(v.nodes.size());
  for (const TrieNode& n : v.nodes) v.edge_bytes.push_back(n.byte);
  // Token ids in depth-first order (iterative: frame = node, next child to enter).
  std::vector<std::pair<uint32_t, uint32_t>> stack{{0, v.nodes[0].child_begin}};
  v.nodes[0].tok_begin = v.nodes[0].tok_end = 0;
  while (!stack.empty()) {
    auto& [n, next] = stack.back();
    if (next == v.nodes[n].child_end) {
      v.nodes[n].subtree_tok_end = static_cast<uint32_t>(v.node_tokens.size());
      stack.pop_back();
      continue;
    }
    const uint32_t c = next++;
    v.nodes[c].tok_begin = static_cast<uint32_t>(v.node_tokens.size());
    for (size_t k = own[c].first; k < own[c].second; ++k) v.node_tokens.push_back(order[k]);
    v.nodes[c].tok_end = static_cast<uint32_t>(v.node_tokens.size());
    stack.push_back({c, v.nodes[c].child_begin});
  }
  // Subtree byte sets, children before parents (breadth-first layout: children come later).
  std::vector<ByteSet> below(v.nodes.size());
  for (size_t n = v.nodes.size(); n-- > 0;) {
    for (uint32_t c = v.nodes[n].child_begin; c < v.nodes[n].child_end; ++c) {
      below[n].add(v.nodes[c].byte);
      below[n].merge(below[c]);
      v.nodes[n].height = static_cast<uint8_t>(std::max<int>(v.nodes[n].height, std::min(255, v.nodes[c].height + 1)));
    }
  }
  std::unordered_map<std::string, uint32_t> set_ids;
  for (size_t n = 0; n < v.nodes.size(); ++n) {
    const std::string key(reinterpret_cast<const char*>(below[n].bits.data()), sizeof below[n].bits);
    auto [it, inserted] = set_ids.emplace(key, static_cast<uint32_t>(v.byte_sets.size()));
    if (inserted) v.byte_sets.push_back(below[n]);
    v.nodes[n].subtree_bytes = it->second;
  }
  return vocab;
}

std::shared_ptr<const MaskCache::Mask> MaskCache::find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->mask;
}

void MaskCache::insert(const std::string& key, std::shared_ptr<const Mask> mask) {
  std::lock_guard<std::mutex> lock(mu_);
  if (index_.count(key) != 0) return;
  bytes_ += mask->size() * sizeof(uint32_t) + key.size();
  lru_.push_front({key, std::move(mask)});
  index_.emplace(key, lru_.begin());
  while (bytes_ > capacity_bytes_ && lru_.size() > 1) {
    Entry& last = lru_.back();
    bytes_ -= last.mask->size() * sizeof(uint32_t) + last.key.size();
    index_.erase(last.key);
    lru_.pop_back();
  }
}

size_t MaskCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

std::shared_ptr<MaskCache> Grammar::mask_cache(const std::shared_ptr<const TokenVocabulary>& vocab) const {
  std::lock_guard<std::mutex> lock(caches_mu_);
  std::shared_ptr<MaskCache> found;
  // Drop the caches of vocabularies that are gone while looking.
  std::erase_if(caches_, [&](auto& entry) {
    auto v = entry.first.lock();
    if (!v) return true;
    if (v == vocab) found = entry.second;
    return false;
  });
  if (!found) {
    found = std::make_shared<MaskCache>();
    caches_.emplace_back(vocab, found);
  }
  return found;
}

}  // namespace ferry::llm::grammar
