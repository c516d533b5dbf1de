#include "backend/llm/kv_cache/block_pool.h"

#include <algorithm>
#include <string>

namespace ferry::llm {

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  FERRY_CHECK(num_blocks >= 1 && block_size >= 1);
  blocks_.resize(static_cast<size_t>(num_blocks) + 1);
  tokens_.resize(static_cast<size_t>(num_blocks) * block_size);
  Block& sentinel = blocks_[num_blocks_];
  sentinel.prev = sentinel.next = num_blocks_;
  for (int32_t b = 0; b < num_blocks_; ++b) queue_push_back(b);
  cached_.reserve(static_cast<size_t>(num_blocks));
}

void BlockPool::queue_push_back(int32_t b) {
  Block& sentinel = blocks_[num_blocks_];
  const int32_t last = sentinel.prev;
  blocks_[b].prev = last;
  blocks_[b].next = num_blocks_;
  blocks_[last].next = b;
  sentinel.prev = b;
  blocks_[b].queued = true;
  ++num_free_;
}

void BlockPool::queue_remove(int32_t b) {
  Block& block = blocks_[b];
  blocks_[block.prev].next = block.next;
  blocks_[block.next].prev = block.prev;
  block.prev = block.next = -1;
  block.queued = false;
  --num_free_;
}

void BlockPool::evict(int32_t b) {
  Block& block = blocks_[b];
  cached_.erase(block.hash);
  block.cached = false;
  block.hash = BlockHash{};
  ++num_evictions_;
}

bool BlockPool::get_new_blocks(int32_t n, std::vector<int32_t>* out) {
  FERRY_CHECK(n >= 0);
  if (n > num_free_) return false;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = blocks_[num_blocks_].next;  // head: least recently freed
    queue_remove(b);
    if (blocks_[b].cached) evict(b);
    blocks_[b].ref_count = 1;
    out->push_back(b);
  }
  return true;
}

void BlockPool::free_blocks(std::span<const int32_t> blocks) {
  for (int32_t b : blocks) {
    Block& block = blocks_[b];
    FERRY_CHECK(block.ref_count > 0);
    if (--block.ref_count == 0) queue_push_back(b);
  }
}

void BlockPool::touch(std::span<const int32_t> blocks) {
  for (int32_t b : blocks) {
    Block& block = blocks_[b];
    if (block.ref_count == 0) queue_remove(b);
    ++block.ref_count;
  }
}

std::optional<int32_t> BlockPool::find_cached(const BlockHash& hash, std::span<const int32_t> tokens) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  if (tokens.size() != static_cast<size_t>(block_size_)) return std::nullopt;
  std::span<const int32_t> stored = stored_tokens(it->second);
  if (!std::equal(stored.begin(), stored.end(), tokens.begin())) return std::nullopt;
  return it->second;
}

bool BlockPool::cache_block(int32_t block, const BlockHash& hash, std::span<const int32_t> tokens) {
  FERRY_CHECK(block >= 0 && block < num_blocks_ && blocks_[block].ref_count > 0);
  FERRY_CHECK(tokens.size() == static_cast<size_t>(block_size_));
  if (blocks_[block].cached) return false;
  if (!cached_.emplace(hash, block).second) return false;
  blocks_[block].cached = true;
  blocks_[block].hash = hash;
  std::copy(tokens.begin(), tokens.end(), tokens_.begin() + static_cast<ptrdiff_t>(block) * block_size_);
  return true;
}

std::vector<int32_t> BlockPool::free_queue() const {
  std::vector<int32_t> order;
  order.reserve(static_cast<size_t>(num_free_));
  for (int32_t b = blocks_[num_blocks_].next; b != num_blocks_; b = blocks_[b].next) order.push_back(b);
  return order;
}

Status BlockPool::check_consistency() const {
  auto fail = [](const std::string& what) { return Status::Internal("block pool: " + what); };
  int32_t walked = 0;
  int32_t prev = num_blocks_;
  for (int32_t b = blocks_[num_blocks_].next; b != num_blocks_; b = blocks_[b].next) {
    if (b < 0 || b >= num_blocks_) return fail("free queue holds bad id " + std::to_string(b));
    if (blocks_[b].prev != prev) return fail("free queue back link broken at block " + std::to_string(b));
    if (!blocks_[b].queued) return fail("block " + std::to_string(b) + " in the free queue but not marked queued");
    if (++walked > num_blocks_) return fail("free queue has a cycle");
    prev = b;
  }
  if (blocks_[num_blocks_].prev != prev) return fail("free queue tail link broken");
  if (walked != num_free_) {
    return fail("free queue length " + std::to_string(walked) + " != num_free " + std::to_string(num_free_));
  }
  int64_t num_cached = 0;
  for (int32_t b = 0; b < num_blocks_; ++b) {
    const Block& block = blocks_[b];
    if (block.ref_count < 0) return fail("block " + std::to_string(b) + " has a negative ref count");
    if ((block.ref_count == 0) != block.queued) {
      return fail("block " + std::to_string(b) + " ref " + std::to_string(block.ref_count) +
                  (block.queued ? " but queued as free" : " but missing from the free queue"));
    }
    if (block.cached) {
      ++num_cached;
      auto it = cached_.find(block.hash);
      if (it == cached_.end() || it->second != b) return fail("cached block " + std::to_string(b) + " not in the hash map");
    }
  }
  if (num_cached != static_cast<int64_t>(cached_.size())) return fail("hash map holds blocks not marked cached");
  return Status::Ok();
}

}  // namespace ferry::llm
