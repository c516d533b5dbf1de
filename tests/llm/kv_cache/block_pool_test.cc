#include "backend/llm/kv_cache/block_pool.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "backend/llm/kv_cache/block_hash.h"

namespace ferry::llm {
namespace {

std::vector<int32_t> iota(int32_t n, int32_t from = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

TEST(BlockHash, DependsOnSaltParentAndTokens) {
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 5};
  const BlockHash root1 = block_hash_root(1), root2 = block_hash_root(2);
  EXPECT_EQ(block_hash_next(root1, a), block_hash_next(root1, a));
  EXPECT_NE(block_hash_next(root1, a), block_hash_next(root2, a));
  EXPECT_NE(block_hash_next(root1, a), block_hash_next(root1, b));
  const BlockHash child = block_hash_next(block_hash_next(root1, a), a);
  EXPECT_NE(child, block_hash_next(block_hash_next(root1, b), a));
  EXPECT_NE(kv_cache_salt("m", 1), kv_cache_salt("m", 2));
  EXPECT_NE(kv_cache_salt("m", 1), kv_cache_salt("n", 1));
  // Order and length matter.
  EXPECT_NE(block_hash_next(root1, std::vector<int32_t>{1, 2}), block_hash_next(root1, std::vector<int32_t>{2, 1}));
  EXPECT_NE(block_hash_next(root1, std::vector<int32_t>{0}), block_hash_next(root1, std::vector<int32_t>{0, 0}));
}

TEST(BlockHash, NoCollisionsAmongManySimilarBlocks) {
  // 200k blocks that differ in one token or in their parent: both 64-bit lanes stay distinct.
  std::set<uint64_t> lo, hi;
  const BlockHash root = block_hash_root(7);
  std::vector<int32_t> tokens(16, 0);
  BlockHash parent = block_hash_root(8);  // a chain distinct from the root's children
  for (int32_t i = 0; i < 100000; ++i) {
    tokens[static_cast<size_t>(i % 16)] = i;
    const BlockHash h = block_hash_next(root, tokens);
    const BlockHash chained = block_hash_next(parent, tokens);
    parent = chained;
    for (const BlockHash& x : {h, chained}) {
      EXPECT_TRUE(lo.insert(x.lo).second);
      EXPECT_TRUE(hi.insert(x.hi).second);
    }
  }
}

TEST(BlockPool, HandsOutInQueueOrderAndFailsCleanly) {
  BlockPool pool(4, 2);
  std::vector<int32_t> out;
  ASSERT_TRUE(pool.get_new_blocks(3, &out));
  EXPECT_EQ(out, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool.num_free_blocks(), 1);
  EXPECT_FALSE(pool.get_new_blocks(2, &out));
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(pool.num_free_blocks(), 1);
  EXPECT_TRUE(pool.get_new_blocks(0, &out));
  EXPECT_TRUE(pool.check_consistency().ok());
}

TEST(BlockPool, FreeAppendsToTailInGivenOrder) {
  BlockPool pool(5, 2);
  std::vector<int32_t> out;
  ASSERT_TRUE(pool.get_new_blocks(5, &out));
  pool.free_blocks(std::vector<int32_t>{3, 1});
  pool.free_blocks(std::vector<int32_t>{4});
  EXPECT_EQ(pool.free_queue(), (std::vector<int32_t>{3, 1, 4}));
  out.clear();
  ASSERT_TRUE(pool.get_new_blocks(2, &out));
  EXPECT_EQ(out, (std::vector<int32_t>{3, 1}));
  EXPECT_TRUE(pool.check_consistency().ok()) << pool.check_consistency().to_string();
}

TEST(BlockPool, TouchRemovesFromTheMiddleAndSharedBlocksNeedAllOwnersToFree) {
  BlockPool pool(4, 2);
  std::vector<int32_t> out;
  ASSERT_TRUE(pool.get_new_blocks(4, &out));
  pool.free_blocks(out);
  EXPECT_EQ(pool.free_queue(), (std::vector<int32_t>{0, 1, 2, 3}));
  pool.touch(std::vector<int32_t>{2});
  EXPECT_EQ(pool.free_queue(), (std::vector<int32_t>{0, 1, 3}));
  pool.touch(std::vector<int32_t>{2});
  EXPECT_EQ(pool.ref_count(2), 2);
  pool.free_blocks(std::vector<int32_t>{2});
  EXPECT_EQ(pool.num_free_blocks(), 3);
  pool.free_blocks(std::vector<int32_t>{2});
  EXPECT_EQ(pool.free_queue(), (std::vector<int32_t>{0, 1, 3, 2}));
  EXPECT_TRUE(pool.check_consistency().ok()) << pool.check_consistency().to_string();
}

TEST(BlockPool, CachedBlocksAreFoundUntilEvicted) {
  BlockPool pool(2, 4);
  std::vector<int32_t> out;
  ASSERT_TRUE(pool.get_new_blocks(2, &out));
  const std::vector<int32_t> t0 = iota(4), t1 = iota(4, 10);
  const BlockHash h0 = block_hash_next(block_hash_root(0), t0);
  const BlockHash h1 = block_hash_next(h0, t1);
  EXPECT_TRUE(pool.cache_block(0, h0, t0));
  EXPECT_TRUE(pool.cache_block(1, h1, t1));
  EXPECT_FALSE(pool.cache_block(1, h1, t1));  // already cached
  EXPECT_EQ(pool.find_cached(h0, t0), 0);
  EXPECT_EQ(pool.find_cached(h1, t1), 1);
  // Same key, different tokens (a forced "collision"): the stored tokens refuse it.
  EXPECT_EQ(pool.find_cached(h0, t1), std::nullopt);
  pool.free_blocks(std::vector<int32_t>{1, 0});
  EXPECT_EQ(pool.find_cached(h0, t0), 0);  // still cached while free
  EXPECT_EQ(pool.num_cached_blocks(), 2);
  out.clear();
  ASSERT_TRUE(pool.get_new_blocks(1, &out));
  EXPECT_EQ(out[0], 1);  // freed first: the tail of the sequence goes first
  EXPECT_EQ(pool.find_cached(h1, t1), std::nullopt);
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_EQ(pool.num_cached_blocks(), 1);
  EXPECT_TRUE(pool.check_consistency().ok()) << pool.check_consistency().to_string();
}

TEST(BlockPool, DuplicateKeyStaysUncached) {
  BlockPool pool(2, 2);
  std::vector<int32_t> out;
  ASSERT_TRUE(pool.get_new_blocks(2, &out));
  const std::vector<int32_t> t = {5, 6};
  const BlockHash h = block_hash_next(block_hash_root(0), t);
  EXPECT_TRUE(pool.cache_block(0, h, t));
  EXPECT_FALSE(pool.cache_block(1, h, t));
  EXPECT_FALSE(pool.is_cached(1));
  EXPECT_TRUE(pool.check_consistency().ok());
}

TEST(BlockPool, RandomOperationsKeepInvariants) {
  std::mt19937 rng(42);
  BlockPool pool(64, 2);
  std::vector<int32_t> owned;  // one entry per reference
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 4);
    if (op == 0) {
      const int32_t n = static_cast<int32_t>(rng() % 5);
      const int32_t free_before = pool.num_free_blocks();
      const size_t size_before = owned.size();
      if (!pool.get_new_blocks(n, &owned)) {
        EXPECT_LT(free_before, n);
        EXPECT_EQ(owned.size(), size_before);
      }
    } else if (op == 1 && !owned.empty()) {
      const size_t i = rng() % owned.size();
      pool.free_blocks(std::span<const int32_t>(&owned[i], 1));
      owned.erase(owned.begin() + static_cast<ptrdiff_t>(i));
    } else if (op == 2 && !owned.empty()) {
      const int32_t b = owned[rng() % owned.size()];
      const std::vector<int32_t> t = {static_cast<int32_t>(rng() % 8), static_cast<int32_t>(rng() % 8)};
      pool.cache_block(b, block_hash_next(block_hash_root(0), t), t);
    } else if (op == 3) {
      const std::vector<int32_t> t = {static_cast<int32_t>(rng() % 8), static_cast<int32_t>(rng() % 8)};
      if (auto b = pool.find_cached(block_hash_next(block_hash_root(0), t), t)) {
        pool.touch(std::span<const int32_t>(&*b, 1));
        owned.push_back(*b);
      }
    }
    ASSERT_TRUE(pool.check_consistency().ok()) << pool.check_consistency().to_string() << " at step " << step;
  }
  pool.free_blocks(owned);
  EXPECT_EQ(pool.num_free_blocks(), 64);
}

}  // namespace
}  // namespace ferry::llm
