#include "backend/llm/kv_cache/block_hash.h"

namespace ferry::llm {
namespace {

// Odd 64-bit constants with well-spread bits (digits of pi and e, and golden-ratio based).
constexpr uint64_t kP0 = 0x243f6a8885a308d3ULL;
constexpr uint64_t kP1 = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t kP2 = 0xb7e151628aed2a6bULL;
constexpr uint64_t kLaneLo = 0x13198a2e03707345ULL;
constexpr uint64_t kLaneHi = 0xa4093822299f31d1ULL;

// 64x64 -> 128-bit product, halves folded: every input bit reaches every output bit.
inline uint64_t fold_mul(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline uint64_t absorb(uint64_t h, uint64_t word, uint64_t lane) { return fold_mul(h ^ word ^ kP0, lane ^ kP1); }

uint64_t lane_hash(uint64_t seed, uint64_t parent_lo, uint64_t parent_hi, std::span<const int32_t> tokens,
                   uint64_t lane) {
  uint64_t h = absorb(seed, parent_lo, lane);
  h = absorb(h, parent_hi, lane);
  size_t i = 0;
  for (; i + 1 < tokens.size(); i += 2) {
    const uint64_t word = static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) |
                          (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i + 1])) << 32);
    h = absorb(h, word, lane);
  }
  if (i < tokens.size()) h = absorb(h, static_cast<uint32_t>(tokens[i]) | (uint64_t{1} << 63), lane);
  return fold_mul(h ^ static_cast<uint64_t>(tokens.size()), kP2 ^ lane);
}

}  // namespace

uint64_t kv_cache_salt(std::string_view model_name, int64_t version) {
  uint64_t h = absorb(kP2, static_cast<uint64_t>(version), kLaneLo);
  for (unsigned char c : model_name) h = absorb(h, c, kLaneLo);
  return fold_mul(h ^ model_name.size(), kP1);
}

BlockHash block_hash_root(uint64_t salt) {
  return BlockHash{fold_mul(salt ^ kLaneLo, kP1), fold_mul(salt ^ kLaneHi, kP2)};
}

BlockHash block_hash_next(const BlockHash& parent, std::span<const int32_t> block_tokens) {
  return BlockHash{lane_hash(kLaneLo, parent.lo, parent.hi, block_tokens, kLaneLo),
                   lane_hash(kLaneHi, parent.hi, parent.lo, block_tokens, kLaneHi)};
}

}  // namespace ferry::llm
