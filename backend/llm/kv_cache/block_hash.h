// BlockHash: the prefix-cache key of one FULL KV block, a hash chain over the block's tokens and
// everything before it.
//
//   key(block 0) = H(root(salt),      tokens[0 .. block_size))
//   key(block i) = H(key(block i-1),  tokens[i*block_size .. (i+1)*block_size))
//
// The salt identifies the model and version (kv_cache_salt), so two models never share blocks.
// The key is 128 bits: two independent 64-bit lanes, each a multiply-fold (64x64->128 bit product,
// halves XORed) over the parent key, the token ids and the token count. Because the parent key is
// folded in, a key names the whole prefix, not just the block: a false hit needs a 128-bit
// collision. As a second line of defence the block pool also stores each cached block's token ids
// and compares them on every hit. Not a cryptographic hash: it guards against accidents, not
// against a client crafting colliding prompts.
//
// Plain values; thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ferry::llm {

struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;
  friend bool operator==(const BlockHash&, const BlockHash&) = default;
};

// For std::unordered_map<BlockHash, ...>: the low lane is already well mixed.
struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo); }
};

// A salt for one served model version, from its name and version number.
uint64_t kv_cache_salt(std::string_view model_name, int64_t version);

// The chain's root: the "parent" of block 0.
BlockHash block_hash_root(uint64_t salt);

// The key of a full block whose parent (previous block, or the root) has key `parent`.
BlockHash block_hash_next(const BlockHash& parent, std::span<const int32_t> block_tokens);

}  // namespace ferry::llm
