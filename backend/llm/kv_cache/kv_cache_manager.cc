#include "backend/llm/kv_cache/kv_cache_manager.h"

#include <algorithm>
#include <string>

namespace ferry::llm {

Status KvCacheConfig::validate() const {
  if (num_blocks < 1) return Status::InvalidArgument("kv cache 'num_blocks' must be >= 1, got " + std::to_string(num_blocks));
  if (block_size < 1) return Status::InvalidArgument("kv cache 'block_size' must be >= 1, got " + std::to_string(block_size));
  return Status::Ok();
}

KvCacheManager::KvCacheManager(const KvCacheConfig& config)
    : config_(config), pool_(config.num_blocks, config.block_size) {
  FERRY_CHECK(config.validate().ok());
}

ComputedPrefix KvCacheManager::get_computed_blocks(std::span<const int32_t> tokens) const {
  ComputedPrefix prefix;
  prefix.num_query_tokens = static_cast<int32_t>(tokens.size());
  if (!config_.enable_prefix_caching || tokens.empty()) return prefix;
  const size_t bs = static_cast<size_t>(block_size());
  const size_t max_blocks = (tokens.size() - 1) / bs;
  BlockHash parent = block_hash_root(config_.salt);
  for (size_t i = 0; i < max_blocks; ++i) {
    std::span<const int32_t> block_tokens = tokens.subspan(i * bs, bs);
    const BlockHash hash = block_hash_next(parent, block_tokens);
    std::optional<int32_t> block = pool_.find_cached(hash, block_tokens);
    if (!block) break;
    prefix.blocks.push_back(*block);
    prefix.hashes.push_back(hash);
    parent = hash;
  }
  prefix.num_tokens = static_cast<int32_t>(prefix.blocks.size() * bs);
  return prefix;
}

bool KvCacheManager::allocate_slots(uint64_t request_id, int32_t num_computed_tokens, int32_t num_new_tokens,
                                    const ComputedPrefix& prefix) {
  FERRY_CHECK(num_computed_tokens >= 0 && num_new_tokens >= 0);
  const int32_t needed = blocks_for(static_cast<int64_t>(num_computed_tokens) + num_new_tokens);
  auto it = requests_.find(request_id);
  if (it != requests_.end()) {
    std::vector<int32_t>& blocks = it->second.blocks;
    const int32_t more = needed - static_cast<int32_t>(blocks.size());
    return more <= 0 || pool_.get_new_blocks(more, &blocks);
  }
  FERRY_CHECK(prefix.num_tokens == num_computed_tokens);
  FERRY_CHECK(prefix.blocks.size() == prefix.hashes.size());
  const int32_t num_prefix = static_cast<int32_t>(prefix.blocks.size());
  const int32_t more = std::max(needed - num_prefix, 0);
  // Touching a free cached block takes it out of the free pool too.
  int32_t revived = 0;
  for (int32_t b : prefix.blocks) revived += pool_.ref_count(b) == 0 ? 1 : 0;
  if (more + revived > pool_.num_free_blocks()) return false;

  RequestBlocks entry;
  entry.blocks.reserve(static_cast<size_t>(num_prefix + more));
  entry.blocks = prefix.blocks;
  entry.hashes = prefix.hashes;
  pool_.touch(prefix.blocks);
  const bool ok = pool_.get_new_blocks(more, &entry.blocks);
  FERRY_CHECK(ok);
  requests_.emplace(request_id, std::move(entry));
  num_query_tokens_ += prefix.num_query_tokens;
  num_hit_tokens_ += prefix.num_tokens;
  return true;
}

void KvCacheManager::cache_full_blocks(uint64_t request_id, std::span<const int32_t> tokens,
                                       int32_t num_computed_tokens) {
  if (!config_.enable_prefix_caching) return;
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  RequestBlocks& r = it->second;
  const size_t bs = static_cast<size_t>(block_size());
  const size_t computed = std::min(tokens.size(), static_cast<size_t>(std::max(num_computed_tokens, 0)));
  const size_t num_full = std::min(computed / bs, r.blocks.size());
  BlockHash parent = r.hashes.empty() ? block_hash_root(config_.salt) : r.hashes.back();
  for (size_t i = r.hashes.size(); i < num_full; ++i) {
    std::span<const int32_t> block_tokens = tokens.subspan(i * bs, bs);
    const BlockHash hash = block_hash_next(parent, block_tokens);
    pool_.cache_block(r.blocks[i], hash, block_tokens);  // false: a twin is cached already; fine
    r.hashes.push_back(hash);
    parent = hash;
  }
}

void KvCacheManager::free_tail(uint64_t request_id, int32_t num_tokens) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  RequestBlocks& r = it->second;
  const size_t keep = static_cast<size_t>(blocks_for(num_tokens));
  if (r.blocks.size() <= keep) return;
  FERRY_CHECK(r.hashes.size() <= keep);
  std::vector<int32_t> tail(r.blocks.rbegin(), r.blocks.rend() - static_cast<std::ptrdiff_t>(keep));
  pool_.free_blocks(tail);
  r.blocks.resize(keep);
}

void KvCacheManager::free(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  std::vector<int32_t>& blocks = it->second.blocks;
  std::reverse(blocks.begin(), blocks.end());  // tail first: it is the least likely to be shared
  pool_.free_blocks(blocks);
  requests_.erase(it);
}

std::span<const int32_t> KvCacheManager::block_table(uint64_t request_id) const {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return {};
  return it->second.blocks;
}

KvCacheStats KvCacheManager::stats() const {
  KvCacheStats s;
  s.num_blocks_total = pool_.num_blocks();
  s.num_blocks_used = pool_.num_blocks() - pool_.num_free_blocks();
  s.num_cached_blocks = pool_.num_cached_blocks();
  s.num_query_tokens = num_query_tokens_;
  s.num_hit_tokens = num_hit_tokens_;
  s.num_evictions = pool_.num_evictions();
  return s;
}

Status KvCacheManager::check_consistency() const {
  FERRY_RETURN_IF_ERROR(pool_.check_consistency());
  auto fail = [](const std::string& what) { return Status::Internal("kv cache manager: " + what); };
  std::vector<int32_t> owners(static_cast<size_t>(pool_.num_blocks()), 0);
  std::vector<uint64_t> seen_in(static_cast<size_t>(pool_.num_blocks()), 0);
  uint64_t stamp = 0;
  for (const auto& [id, r] : requests_) {
    ++stamp;
    if (r.hashes.size() > r.blocks.size()) return fail("request " + std::to_string(id) + " has more hashes than blocks");
    for (int32_t b : r.blocks) {
      if (b < 0 || b >= pool_.num_blocks()) return fail("request " + std::to_string(id) + " holds bad block " + std::to_string(b));
      if (seen_in[b] == stamp) return fail("request " + std::to_string(id) + " holds block " + std::to_string(b) + " twice");
      seen_in[b] = stamp;
      ++owners[b];
    }
  }
  for (int32_t b = 0; b < pool_.num_blocks(); ++b) {
    if (owners[b] != pool_.ref_count(b)) {
      return fail("block " + std::to_string(b) + " has ref count " + std::to_string(pool_.ref_count(b)) + " but " +
                  std::to_string(owners[b]) + " owners");
    }
    if (owners[b] > 1 && !pool_.is_cached(b)) return fail("block " + std::to_string(b) + " is shared but not cached");
  }
  return Status::Ok();
}

}  // namespace ferry::llm
