// KvCacheManager: which KV blocks each request owns, and prefix caching across requests.
//
// Owns a BlockPool. Each request (by id) has a block table -- its logical block b lives in physical
// block table[b] -- and the hash chain of its full blocks. Full blocks are registered in the
// pool's prefix cache (cache_full_blocks) once their tokens are computed; a new request reuses the
// longest cached prefix of full blocks (get_computed_blocks, then allocate_slots). Cached blocks
// whose last owner has freed them stay in the pool's LRU free queue until a new block needs them.
//
// Token accounting: "computed" tokens have their K/V written in the cache. A request with T known
// tokens (prompt plus outputs) and C computed needs ceil((C + new) / block_size) blocks to compute
// `new` more. Only full blocks are ever shared, and a prefix never covers a whole prompt, so every
// write lands in a block its request owns alone.
//
// Typical use, per engine step, for each scheduled request (see Scheduler):
//   new request:  p = get_computed_blocks(tokens); allocate_slots(id, p.num_tokens, n, p)
//   running one:  allocate_slots(id, num_computed, n)
//   after the forward pass: cache_full_blocks(id, tokens, num_computed + n)
//   finished / cancelled / preempted: free(id)
//
// Ownership: owns all bookkeeping. Spans it returns stay valid until the next call that mutates the
// same request (allocate_slots, free). Thread-safety: none; owned by one thread (the scheduler's).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/llm/kv_cache/block_hash.h"
#include "backend/llm/kv_cache/block_pool.h"
#include "common/status.h"

namespace ferry::llm {

struct KvCacheConfig {
  int32_t num_blocks = 0;             // >= 1: the pool size (KvCacheShape::num_blocks of the storage)
  int32_t block_size = 16;            // >= 1: tokens per block
  bool enable_prefix_caching = true;  // false: no block is ever cached or shared
  uint64_t salt = 0;                  // kv_cache_salt(model, version): keeps models' caches apart

  // OK, or InvalidArgument naming the bad field.
  Status validate() const;
};

// The longest cached prefix of a request's tokens, found by get_computed_blocks. Its blocks are
// not yet owned: pass it to allocate_slots before any other call that changes the pool.
struct ComputedPrefix {
  std::vector<int32_t> blocks;    // physical blocks of the cached full blocks, in order
  std::vector<BlockHash> hashes;  // their chain keys (hashes[i] is blocks[i]'s key)
  int32_t num_tokens = 0;         // blocks.size() * block_size: tokens that need no computing
  int32_t num_query_tokens = 0;   // tokens looked up (the request's length), for hit-rate stats
};

struct KvCacheStats {
  int32_t num_blocks_total = 0;
  int32_t num_blocks_used = 0;          // owned by some request (total - free)
  int64_t num_cached_blocks = 0;        // holding a prefix hash (owned or free)
  int64_t num_query_tokens = 0;         // tokens of admitted requests looked up in the prefix cache
  int64_t num_hit_tokens = 0;           // of those, tokens reused from the cache
  int64_t num_evictions = 0;            // cached blocks dropped to be reused
  double usage() const { return num_blocks_total ? static_cast<double>(num_blocks_used) / num_blocks_total : 0.0; }
  double prefix_hit_rate() const {
    return num_query_tokens ? static_cast<double>(num_hit_tokens) / static_cast<double>(num_query_tokens) : 0.0;
  }
};

class KvCacheManager {
 public:
  // config must validate (checked).
  explicit KvCacheManager(const KvCacheConfig& config);

  int32_t block_size() const { return pool_.block_size(); }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  int32_t num_free_blocks() const { return pool_.num_free_blocks(); }
  // Blocks needed to hold num_tokens positions.
  int32_t blocks_for(int64_t num_tokens) const {
    return static_cast<int32_t>((num_tokens + pool_.block_size() - 1) / pool_.block_size());
  }

  // The longest run of cached full blocks matching tokens[0 ..), capped at (tokens.size() - 1)
  // tokens so that at least one token is computed (its logits are needed). Changes nothing. Empty
  // when prefix caching is off.
  ComputedPrefix get_computed_blocks(std::span<const int32_t> tokens) const;

  // Makes room for num_new_tokens more tokens after num_computed_tokens.
  // A request with no blocks yet starts from `prefix` (from get_computed_blocks just before; an
  // empty one for no reuse), and num_computed_tokens must equal prefix.num_tokens; the prefix
  // blocks are touched and counted as hits. A request that already has blocks ignores `prefix`.
  // Returns false, allocating and touching nothing, when the pool is short: the caller decides
  // (preempt, or wait).
  bool allocate_slots(uint64_t request_id, int32_t num_computed_tokens, int32_t num_new_tokens,
                      const ComputedPrefix& prefix = {});

  // Registers the request's full blocks within tokens[0, num_computed_tokens) in the prefix cache.
  // `tokens` are all the request's known tokens (prompt then outputs), of which the first
  // num_computed_tokens have K/V written. Idempotent; no-op when prefix caching is off.
  void cache_full_blocks(uint64_t request_id, std::span<const int32_t> tokens, int32_t num_computed_tokens);

  // Frees the blocks of the request's table beyond the first blocks_for(num_tokens) (tail first):
  // the slots of rejected speculative tokens. Those blocks were never cached (cache_full_blocks
  // covers computed tokens only, and num_tokens must be >= the computed count). No-op when the
  // table is not longer, or for an unknown id.
  void free_tail(uint64_t request_id, int32_t num_tokens);

  // Releases the request's blocks (tail first into the LRU queue) and forgets it. Unknown ids are a
  // no-op.
  void free(uint64_t request_id);

  // The request's block table (empty for an unknown id).
  std::span<const int32_t> block_table(uint64_t request_id) const;
  bool has_request(uint64_t request_id) const { return requests_.count(request_id) != 0; }
  size_t num_requests() const { return requests_.size(); }

  KvCacheStats stats() const;

  // Every invariant: the pool's own, plus ref count of each block == number of request tables
  // holding it, no table holding a block twice, every shared block cached. OK or Internal naming
  // the first violation. O(num_blocks + total table length); for tests and debug builds.
  Status check_consistency() const;

  const BlockPool& pool() const { return pool_; }

 private:
  struct RequestBlocks {
    std::vector<int32_t> blocks;    // the block table
    std::vector<BlockHash> hashes;  // keys of blocks[0, hashes.size()), all computed and offered to the cache
  };

  const KvCacheConfig config_;
  BlockPool pool_;
  std::unordered_map<uint64_t, RequestBlocks> requests_;
  int64_t num_query_tokens_ = 0;
  int64_t num_hit_tokens_ = 0;
};

}  // namespace ferry::llm
