// BlockPool: the bookkeeping of a fixed set of KV blocks -- reference counts, the free queue in
// eviction order, and the map from prefix hash to cached full block. It knows blocks, not policy:
// which request owns what, and when to cache, is KvCacheManager's business. The KV memory itself
// lives in KvCacheStorage (engine/); block ids here index it.
//
// Block life cycle:
//   free, uncached   --get_new_blocks-->  owned (ref 1)
//   owned            --cache_block----->  owned and cached (hash set, tokens recorded)
//   owned (ref > 0)  --free_blocks----->  ref-1; at 0 it joins the TAIL of the free queue, and a
//                                         cached one keeps its hash: a later request may touch it
//   free, cached     --touch----------->  owned again (removed from the middle of the free queue)
//   free, cached     --get_new_blocks-->  evicted (hash dropped) and handed out as a new block
// get_new_blocks takes from the HEAD of the free queue, so the least recently freed block goes
// first (LRU). The queue is an intrusive doubly-linked list over block ids: every move is O(1).
//
// Ownership: owns only integer bookkeeping (O(num_blocks * block_size) ints, token ids included).
// Thread-safety: none. Used by one thread (the instance's scheduler loop).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/llm/kv_cache/block_hash.h"
#include "common/status.h"

namespace ferry::llm {

class BlockPool {
 public:
  // num_blocks >= 1, block_size >= 1 (checked). Every block starts free and uncached, queued in
  // id order.
  BlockPool(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  // Blocks with ref count 0 (cached or not): what get_new_blocks can hand out.
  int32_t num_free_blocks() const { return num_free_; }
  int32_t ref_count(int32_t block) const { return blocks_[block].ref_count; }
  bool is_cached(int32_t block) const { return blocks_[block].cached; }
  // Cached blocks evicted (hash dropped to reuse the block) since construction.
  int64_t num_evictions() const { return num_evictions_; }
  // Blocks currently holding a hash (owned or free).
  int64_t num_cached_blocks() const { return static_cast<int64_t>(cached_.size()); }

  // Appends n blocks (ref 1, uncached) to *out, taken from the head of the free queue; a cached one
  // is evicted first. Returns false and leaves *out and the pool unchanged when fewer than n are
  // free. n >= 0.
  bool get_new_blocks(int32_t n, std::vector<int32_t>* out);

  // ref-- for each block, in the order given; a block reaching 0 is appended to the free queue's
  // tail. Callers pass a sequence's blocks LAST FIRST so its tail (least shareable) is evicted
  // before its head. Every block must have ref > 0 (checked).
  void free_blocks(std::span<const int32_t> blocks);

  // ref++ for each block (a prefix-cache hit); a block at ref 0 leaves the free queue.
  void touch(std::span<const int32_t> blocks);

  // The cached block with this key whose stored tokens equal `tokens`, if any.
  std::optional<int32_t> find_cached(const BlockHash& hash, std::span<const int32_t> tokens) const;

  // Records that `block` (owned, full) holds the KV of `tokens` (block_size ids) under `hash`.
  // Returns false, changing nothing, when another block already holds that key (two requests
  // computed the same prefix at once; the duplicate simply stays uncached) or `block` is already
  // cached.
  bool cache_block(int32_t block, const BlockHash& hash, std::span<const int32_t> tokens);

  // Free queue order, head (next evicted) first. For tests and debugging; O(num_free).
  std::vector<int32_t> free_queue() const;

  // The pool's own invariants: free queue links and count, ref 0 <=> queued, hash map <=> cached
  // flags. OK or Internal naming the first violation. O(num_blocks).
  Status check_consistency() const;

 private:
  struct Block {
    int32_t ref_count = 0;
    int32_t prev = -1;  // free-queue links; the sentinel is index num_blocks_
    int32_t next = -1;
    bool queued = false;
    bool cached = false;
    BlockHash hash;  // valid when cached
  };

  void queue_push_back(int32_t b);
  void queue_remove(int32_t b);
  void evict(int32_t b);
  std::span<const int32_t> stored_tokens(int32_t b) const {
    return {tokens_.data() + static_cast<size_t>(b) * block_size_, static_cast<size_t>(block_size_)};
  }

  const int32_t num_blocks_;
  const int32_t block_size_;
  std::vector<Block> blocks_;    // [num_blocks + 1]: the last is the free-queue sentinel
  std::vector<int32_t> tokens_;  // [num_blocks, block_size]: token ids of cached blocks
  int32_t num_free_ = 0;
  int64_t num_evictions_ = 0;
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> cached_;
};

}  // namespace ferry::llm
