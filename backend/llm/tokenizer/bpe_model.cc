#include "backend/llm/tokenizer/bpe_model.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <queue>

#include "backend/llm/tokenizer/utf8.h"

namespace ferry::llm {
namespace {

// A symbol of the word being merged: a doubly linked list over a fixed array (dead symbols keep
// their slot so heap entries can refer to positions).
struct Symbol {
  TokenId id;
  int32_t prev;
  int32_t next;
  bool alive;
};

struct Candidate {
  uint32_t rank;
  int32_t pos;
  TokenId new_id;
  // std::push_heap builds a max-heap: "less" means a higher rank, then a later position.
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

constexpr size_t kMaxCachedWordBytes = 64;
constexpr size_t kMaxCachedWords = 32768;  // per model and thread; the cache is cleared when full
constexpr size_t kMaxCachedModels = 4;     // per thread; the oldest is dropped

struct WordCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>> words;
};

WordCache& thread_cache(uint64_t owner) {
  thread_local std::vector<WordCache> caches;
  for (WordCache& c : caches) {
    if (c.owner == owner) return c;
  }
  if (caches.size() >= kMaxCachedModels) caches.erase(caches.begin());
  caches.push_back(WordCache{owner, {}});
  return caches.back();
}

std::atomic<uint64_t> next_instance_id{1};

}  // namespace

void BpeModel::MergeMap::build(const std::unordered_map<uint64_t, MergeTarget>& merges) {
  size_t capacity = 16;
  while (capacity < merges.size() * 2) capacity *= 2;
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  shift_ = 64;
  for (size_t c = capacity; c > 1; c >>= 1) --shift_;
  for (const auto& [key, target] : merges) {
    size_t i = hash(key);
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i] = Slot{key, target};
  }
}

Result<BpeModel> BpeModel::from_json(const Json::Value& model) {
  if (!model.isObject()) return Status::InvalidArgument("tokenizer.json: model is missing");
  const std::string type = model.get("type", "BPE").asString();
  if (type != "BPE") return Status::Unimplemented("tokenizer.json: model.type '" + type + "' is not supported");
  BpeModel m;
  FERRY_RETURN_IF_ERROR(m.set_vocab(model["vocab"], "model.vocab"));
  if (model["continuing_subword_prefix"].isString())
    m.continuing_subword_prefix_ = model["continuing_subword_prefix"].asString();
  if (model["end_of_word_suffix"].isString()) m.end_of_word_suffix_ = model["end_of_word_suffix"].asString();
  m.fuse_unk_ = model.get("fuse_unk", false).asBool();
  m.byte_fallback_ = model.get("byte_fallback", false).asBool();
  m.ignore_merges_ = model.get("ignore_merges", false).asBool();
  if (model["unk_token"].isString()) {
    const std::string unk = model["unk_token"].asString();
    auto id = m.token_to_id(unk);
    if (!id) return Status::InvalidArgument("tokenizer.json: model.unk_token '" + unk + "' is not in model.vocab");
    m.unk_id_ = *id;
  }
  const Json::Value& merges = model["merges"];
  if (!merges.isArray()) return Status::InvalidArgument("tokenizer.json: model.merges must be an array");
  m.merges_.reserve(merges.size() * 2);
  for (Json::ArrayIndex i = 0; i < merges.size(); ++i) {
    const Json::Value& e = merges[i];
    const std::string path = "model.merges[" + std::to_string(i) + "]";
    if (e.isString()) {
      const std::string s = e.asString();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) {
        return Status::InvalidArgument("tokenizer.json: " + path + " '" + s + "' is not 'left right'");
      }
      FERRY_RETURN_IF_ERROR(m.add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1), i));
    } else if (e.isArray() && e.size() == 2 && e[0].isString() && e[1].isString()) {
      FERRY_RETURN_IF_ERROR(m.add_merge(e[0].asString(), e[1].asString(), i));
    } else {
      return Status::InvalidArgument("tokenizer.json: " + path + " must be a string or a pair of strings");
    }
  }
  m.finish_build();
  return m;
}

Result<BpeModel> BpeModel::from_vocab_and_merges(const Json::Value& vocab, std::string_view merges_txt) {
  BpeModel m;
  FERRY_RETURN_IF_ERROR(m.set_vocab(vocab, "vocab.json"));
  uint32_t rank = 0;
  size_t line_no = 0;
  while (!merges_txt.empty()) {
    const size_t nl = merges_txt.find('\n');
    std::string_view line = merges_txt.substr(0, nl);
    merges_txt = nl == std::string_view::npos ? std::string_view() : merges_txt.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const size_t sp = line.find(' ');
    const std::string path = "merges.txt line " + std::to_string(line_no);
    if (sp == std::string_view::npos) return Status::InvalidArgument(path + " is not 'left right'");
    FERRY_RETURN_IF_ERROR(m.add_merge(line.substr(0, sp), line.substr(sp + 1), rank++));
  }
  m.finish_build();
  return m;
}

Status BpeModel::set_vocab(const Json::Value& vocab, const std::string& path) {
  if (!vocab.isObject()) return Status::InvalidArgument("tokenizer.json: " + path + " must be an object");
  vocab_.reserve(vocab.size());
  TokenId max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it->isIntegral() || it->asInt64() < 0 || it->asInt64() > INT32_MAX) {
      return Status::InvalidArgument("tokenizer.json: " + path + " entry '" + it.name() + "' has no valid id");
    }
    const auto id = static_cast<TokenId>(it->asInt64());
    vocab_.insert_or_assign(it.name(), id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  id_used_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : vocab_) {
    id_to_token_[static_cast<size_t>(id)] = token;
    id_used_[static_cast<size_t>(id)] = true;
  }
  return Status::Ok();
}

Status BpeModel::add_merge(std::string_view left, std::string_view right, uint32_t rank) {
  auto a = token_to_id(left);
  auto b = token_to_id(right);
  std::string merged(left);
  if (!continuing_subword_prefix_.empty() && right.starts_with(continuing_subword_prefix_)) {
    merged.append(right.substr(continuing_subword_prefix_.size()));
  } else {
    merged.append(right);
  }
  auto id = token_to_id(merged);
  // A merge over tokens the vocabulary lacks can never apply. Real files carry a few (e.g. text
  // with U+00A0 mangled into spaces), and other HF-compatible loaders accept them: skip it.
  if (!a || !b || !id) {
    ++num_skipped_merges_;
    return Status::Ok();
  }
  merges_.insert_or_assign(pair_key(*a, *b), MergeTarget{rank, *id});
  return Status::Ok();
}

void BpeModel::finish_build() {
  merge_map_.build(merges_);
  merges_.clear();
  // Cutting before "▁" is exact when no token has a "▁" right after another character.
  constexpr std::string_view kMeta = "\xE2\x96\x81";
  bool any_meta_start = false, spans = false;
  for (const auto& [token, id] : vocab_) {
    if (token.starts_with(kMeta)) any_meta_start = true;
    for (size_t p = token.find(kMeta, 1); p != std::string::npos && !spans; p = token.find(kMeta, p + 1)) {
      spans = token.compare(p - kMeta.size(), kMeta.size(), kMeta) != 0;
    }
  }
  split_before_metaspace_ = any_meta_start && !spans;
  instance_id_ = next_instance_id.fetch_add(1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto id = token_to_id(name);
    byte_ids_[b] = id ? *id : -1;
  }
  bmp_char_ids_.assign(0x10000, -1);
  if (continuing_subword_prefix_.empty() && end_of_word_suffix_.empty()) {
    for (const auto& [token, id] : vocab_) {
      const size_t n = utf8::char_length(token, 0);
      if (n == 0 || n != token.size()) continue;
      const uint32_t cp = utf8::decode_at(token, 0);
      if (cp < 0x10000) bmp_char_ids_[cp] = id;
    }
  }
}

std::optional<TokenId> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !id_used_[static_cast<size_t>(id)]) return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

std::optional<TokenId> BpeModel::char_id(std::string_view s) const {
  if (!bmp_char_ids_.empty() && continuing_subword_prefix_.empty() && end_of_word_suffix_.empty()) {
    const uint32_t cp = utf8::decode_at(s, 0);
    if (cp < 0x10000) {
      const TokenId id = bmp_char_ids_[cp];
      if (id >= 0) return id;
      return std::nullopt;
    }
  }
  return token_to_id(s);
}

void BpeModel::initial_symbols(std::string_view word, std::vector<TokenId>& ids) const {
  const bool affixes = !continuing_subword_prefix_.empty() || !end_of_word_suffix_.empty();
  TokenId pending_unk = -1;  // an unknown run not yet emitted (fused when fuse_unk_)
  std::string scratch;
  size_t pos = 0;
  while (pos < word.size()) {
    size_t n = utf8::char_length(word, pos);
    if (n == 0) n = 1;  // not reachable for valid UTF-8 input; keeps the loop finite
    const std::string_view ch = word.substr(pos, n);
    std::optional<TokenId> id;
    std::string_view piece = ch;
    if (affixes) {
      scratch.clear();
      if (pos > 0) scratch += continuing_subword_prefix_;
      scratch += ch;
      if (pos + n == word.size()) scratch += end_of_word_suffix_;
      piece = scratch;
      id = token_to_id(piece);
    } else {
      id = char_id(ch);
    }
    pos += n;
    if (id) {
      if (pending_unk >= 0) ids.push_back(pending_unk), pending_unk = -1;
      ids.push_back(*id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : piece) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : piece) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) ids.push_back(pending_unk);
      pending_unk = *unk_id_;
    }
    // Without an unk token HF drops the character; so do we.
  }
  if (pending_unk >= 0) ids.push_back(pending_unk);
}

void BpeModel::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes && split_before_metaspace_) {
    constexpr std::string_view kMeta = "\xE2\x96\x81";
    size_t begin = 0;
    size_t p = word.find(kMeta, 1);
    while (p != std::string_view::npos) {
      // p < 3: fewer bytes than one meta before it, so it is not preceded by one.
      if (p < kMeta.size() || word.compare(p - kMeta.size(), kMeta.size(), kMeta) != 0) {
        encode_piece(word.substr(begin, p - begin), out);
        begin = p;
      }
      p = word.find(kMeta, p + kMeta.size());
    }
    encode_piece(word.substr(begin), out);
    return;
  }
  encode_piece(word, out);
}

void BpeModel::encode_piece(std::string_view word, std::vector<TokenId>& out) const {
  if (word.size() > kMaxCachedWordBytes) {
    merge_word(word, out);
    return;
  }
  WordCache& cache = thread_cache(instance_id_);
  auto it = cache.words.find(word);
  if (it != cache.words.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t first = out.size();
  merge_word(word, out);
  if (cache.words.size() >= kMaxCachedWords) cache.words.clear();
  cache.words.emplace(std::string(word),
                      std::vector<TokenId>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
}

void BpeModel::merge_word(std::string_view word, std::vector<TokenId>& out) const {
  thread_local std::vector<TokenId> ids;
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  ids.clear();
  initial_symbols(word, ids);
  if (ids.size() <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  const auto n = static_cast<int32_t>(ids.size());
  symbols.resize(ids.size());
  for (int32_t i = 0; i < n; ++i) symbols[i] = Symbol{ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};

  heap.clear();
  auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const MergeTarget* m = merge_map_.find(pair_key(symbols[pos].id, symbols[next].id))) {
      heap.push_back(Candidate{m->rank, pos, m->id});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Skip entries made stale by an earlier merge of either side.
    const MergeTarget* m = merge_map_.find(pair_key(left.id, right.id));
    if (m == nullptr || m->id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace ferry::llm
