// Matcher: incremental, nondeterministic pushdown matching over bytes.
//
// State. A stack is a list of grammar positions (indices into Grammar::elements): the top points
// at the byte element to match next, the entries below are return positions (where to continue
// after the rule being matched completes). The matcher's state is the SET of all stacks the bytes
// so far allow, so ambiguous grammars are followed along every parse at once. Stacks are
// hash-consed into a per-matcher node pool (node = position + parent node), so a stack is one node
// id and a set of stacks is a sorted vector of ids; sets are interned too, and a set id names a
// state. The empty stack (the root rule complete) is kAccept.
//
// Advancing a set by byte b: every stack whose top accepts b moves past it, then is closed:
//   end of an alternative -> pop (continue at the return position below);
//   a rule reference       -> push one stack per alternative; the return position is pushed
//                             only when something follows the reference (tail calls do not grow
//                             the stack, so x* = R ::= x R | "" matches any length in flat stacks);
//   a byte element         -> a new top.
// compile_gbnf refuses left recursion, so closing terminates; a visited set keyed by (position,
// parent) keeps it linear in the stacks it makes. Transitions (set, byte) -> set are memoized per
// matcher, so the trie walk of fill_mask and repeated states cost one table lookup per byte.
//
// Masks are cached in the Grammar's MaskCache for this vocabulary under a canonical key of the
// state (its stacks as position lists, sorted), so every matcher of the grammar shares them.
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "backend/llm/grammar/grammar_internal.h"
#include "backend/llm/grammar/vocabulary.h"

namespace ferry::llm::grammar {

namespace {

constexpr int32_t kAccept = -1;  // the empty stack
constexpr int32_t kDead = 0;     // the id of the empty set of stacks
constexpr int32_t kUnknown = -2;
// More live parses than this at once and the matcher treats the input as rejected (a grammar that
// ambiguous is a bug or an attack; docs/structured-outputs.md).
constexpr size_t kMaxStacksPerSet = 4096;
// Memoized transition rows (256 ids each, 1 KiB) per matcher; states past it are computed each time.
constexpr size_t kMaxMemoRows = 4096;
// fill_mask tries to allow a whole trie subtree at once only when it holds at least this many
// tokens (the check may cost up to 256 transitions the first time a state is seen).
constexpr uint32_t kMinShortcutTokens = 64;

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Open-addressing map uint64 -> int32 whose clear() is O(1) (generation stamps); no allocation
// once grown. For the node pool and the closure's visited set.
class FlatMap {
 public:
  FlatMap() { resize(64); }
  // Slot of `key`; *inserted says whether it was new (its value is then kUnknown).
  int32_t* find_or_insert(uint64_t key, bool* inserted) {
    if ((size_ + 1) * 2 > keys_.size()) resize(keys_.size() * 2);
    size_t i = mix(key) & (keys_.size() - 1);
    while (gens_[i] == gen_) {
      if (keys_[i] == key) {
        *inserted = false;
        return &vals_[i];
      }
      i = (i + 1) & (keys_.size() - 1);
    }
    gens_[i] = gen_;
    keys_[i] = key;
    vals_[i] = kUnknown;
    ++size_;
    *inserted = true;
    return &vals_[i];
  }
  void clear() {
    ++gen_;
    size_ = 0;
  }

 private:
  void resize(size_t capacity) {
    std::vector<uint64_t> keys = std::move(keys_);
    std::vector<int32_t> vals = std::move(vals_);
    std::vector<uint32_t> gens = std::move(gens_);
    const uint32_t old_gen = gen_;
    keys_.assign(capacity, 0);
    vals_.assign(capacity, 0);
    gens_.assign(capacity, 0);
    gen_ = 1;
    size_ = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (gens[i] != old_gen) continue;
      bool inserted;
      *find_or_insert(keys[i], &inserted) = vals[i];
    }
  }
  std::vector<uint64_t> keys_;
  std::vector<int32_t> vals_;
  std::vector<uint32_t> gens_;
  uint32_t gen_ = 1;
  size_t size_ = 0;
};

uint64_t pos_key(uint32_t pos, int32_t parent) {
  return (uint64_t{pos} << 32) | static_cast<uint32_t>(parent);
}

}  // namespace

struct Matcher::State {
  struct Node {
    uint32_t pos;    // grammar position
    int32_t parent;  // the stack below, kAccept at the bottom
  };
  struct SetInfo {
    uint32_t begin = 0, len = 0;  // stack ids at items[begin, begin + len), sorted
    ByteSet allowed;              // bytes some stack's top accepts
    bool can_end = false;         // holds the empty stack
    // The largest group of bytes that all lead to one set (uniform -> uniform_next), and how many
    // such bytes in a row are surely accepted (run; kRunForever when uniform_next is this set).
    bool uniform_done = false;
    bool run_done = false;
    uint8_t run = 0;
    int32_t uniform_next = kDead;
    ByteSet uniform;
    int32_t memo_row = -1;
    int32_t next_same_hash = -1;
    uint64_t hash = 0;
    std::string key;  // canonical form for the mask cache; made on first fill_mask
  };
  struct Step {
    int32_t set;
    bool ended;  // an end id was accepted
  };
  struct Frame {
    uint32_t trie_node;
    int32_t set;
  };

  std::shared_ptr<const Grammar> grammar_ref;
  std::shared_ptr<const TokenVocabulary> vocab_ref;
  const Grammar* g = nullptr;
  const TokenVocabulary::Impl* vocab = nullptr;
  std::shared_ptr<MaskCache> cache;

  std::vector<Node> nodes;
  FlatMap node_ids;
  std::vector<int32_t> items;
  std::vector<SetInfo> sets;
  std::unordered_map<uint64_t, int32_t> set_by_hash;  // first set of each hash; chain in SetInfo
  std::vector<int32_t> memo;                          // [rows][256]
  std::vector<Step> history;                          // [0] = start; one more per accepted step

  // Scratch, kept to avoid allocation on the hot paths.
  std::vector<std::pair<uint32_t, int32_t>> work;
  FlatMap visited;
  std::vector<int32_t> out;
  std::vector<Frame> frames;
  std::vector<int32_t> run_chain;

  int32_t intern_node(uint32_t pos, int32_t parent) {
    bool inserted;
    int32_t* slot = node_ids.find_or_insert(pos_key(pos, parent), &inserted);
    if (inserted) {
      *slot = static_cast<int32_t>(nodes.size());
      nodes.push_back({pos, parent});
    }
    return *slot;
  }

  // Closes `work` into `out` (see the file comment).
  void close() {
    visited.clear();
    while (!work.empty()) {
      const auto [pos, parent] = work.back();
      work.pop_back();
      bool inserted;
      visited.find_or_insert(pos_key(pos, parent), &inserted);
      if (!inserted) continue;
      const Element e = g->elements[pos];
      switch (e.kind) {
        case ElementKind::kEnd:
          if (parent == kAccept) {
            out.push_back(kAccept);
          } else {
            const Node n = nodes[static_cast<size_t>(parent)];
            work.emplace_back(n.pos, n.parent);
          }
          break;
        case ElementKind::kBytes:
          out.push_back(intern_node(pos, parent));
          break;
        case ElementKind::kRule: {
          const int32_t ret = g->elements[pos + 1].kind == ElementKind::kEnd ? parent : intern_node(pos + 1, parent);
          for (uint32_t a = g->rule_alts[e.arg]; a < g->rule_alts[e.arg + 1]; ++a) work.emplace_back(g->alt_starts[a], ret);
          break;
        }
      }
    }
  }

  // Interns `out` (sorted and deduplicated here) as a set; kDead when empty or over the limit.
  int32_t intern_out() {
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    if (out.size() > kMaxStacksPerSet) out.clear();
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ out.size();
    for (int32_t id : out) h = mix(h ^ static_cast<uint32_t>(id));
    auto it = set_by_hash.find(h);
    int32_t prev = -1;
    for (int32_t s = it == set_by_hash.end() ? -1 : it->second; s >= 0; s = sets[static_cast<size_t>(s)].next_same_hash) {
      const SetInfo& si = sets[static_cast<size_t>(s)];
      if (si.len == out.size() && std::equal(out.begin(), out.end(), items.begin() + si.begin)) return s;
      prev = s;
    }
    SetInfo si;
    si.begin = static_cast<uint32_t>(items.size());
    si.len = static_cast<uint32_t>(out.size());
    si.hash = h;
    for (int32_t id : out) {
      items.push_back(id);
      if (id == kAccept) {
        si.can_end = true;
      } else {
        si.allowed.merge(g->byte_sets[g->elements[nodes[static_cast<size_t>(id)].pos].arg]);
      }
    }
    const auto id = static_cast<int32_t>(sets.size());
    sets.push_back(std::move(si));
    if (prev >= 0) {
      sets[static_cast<size_t>(prev)].next_same_hash = id;
    } else {
      set_by_hash.emplace(h, id);
    }
    return id;
  }

  int32_t advance(int32_t s, uint8_t b) {
    SetInfo* si = &sets[static_cast<size_t>(s)];
    if (!si->allowed.has(b)) return kDead;
    if (si->memo_row >= 0) {
      const int32_t m = memo[static_cast<size_t>(si->memo_row) * 256 + b];
      if (m != kUnknown) return m;
    }
    work.clear();
    out.clear();
    for (uint32_t k = si->begin; k < si->begin + si->len; ++k) {
      const int32_t id = items[k];
      if (id == kAccept) continue;
      const Node n = nodes[static_cast<size_t>(id)];
      if (g->byte_sets[g->elements[n.pos].arg].has(b)) work.emplace_back(n.pos + 1, n.parent);
    }
    close();
    const int32_t next = intern_out();
    si = &sets[static_cast<size_t>(s)];  // interning may have moved it
    if (si->memo_row < 0 && memo.size() < kMaxMemoRows * 256) {
      si->memo_row = static_cast<int32_t>(memo.size() / 256);
      memo.resize(memo.size() + 256, kUnknown);
    }
    if (si->memo_row >= 0) memo[static_cast<size_t>(si->memo_row) * 256 + b] = next;
    return next;
  }

  int32_t advance_bytes(int32_t s, std::string_view bytes) {
    for (char c : bytes) {
      s = advance(s, static_cast<uint8_t>(c));
      if (s == kDead) return kDead;
    }
    return s;
  }

  int32_t initial_set() {
    out.clear();
    intern_out();  // set 0: the empty set (kDead)
    work.clear();
    for (uint32_t a = g->rule_alts[g->root]; a < g->rule_alts[g->root + 1]; ++a) work.emplace_back(g->alt_starts[a], kAccept);
    close();
    return intern_out();
  }

  // Canonical key of set s: its stacks as position lists (top first), sorted; independent of this
  // matcher's node and set ids, so equal states of different matchers share masks.
  std::string canonical_key(int32_t s) const {
    const SetInfo& si = sets[static_cast<size_t>(s)];
    std::vector<std::vector<uint32_t>> stacks;
    for (uint32_t k = si.begin; k < si.begin + si.len; ++k) {
      std::vector<uint32_t> stack;
      for (int32_t n = items[k]; n != kAccept; n = nodes[static_cast<size_t>(n)].parent) {
        stack.push_back(nodes[static_cast<size_t>(n)].pos);
      }
      stacks.push_back(std::move(stack));
    }
    std::sort(stacks.begin(), stacks.end());
    std::string key = "k";
    for (const auto& stack : stacks) {
      const auto len = static_cast<uint32_t>(stack.size());
      key.append(reinterpret_cast<const char*>(&len), sizeof len);
      key.append(reinterpret_cast<const char*>(stack.data()), stack.size() * sizeof(uint32_t));
    }
    return key;
  }

  void compute_uniform(int32_t s) {
    if (sets[static_cast<size_t>(s)].uniform_done) return;
    const ByteSet allowed = sets[static_cast<size_t>(s)].allowed;
    int32_t next[256];
    for (unsigned b = 0; b < 256; ++b) next[b] = allowed.has(static_cast<uint8_t>(b)) ? advance(s, static_cast<uint8_t>(b)) : kDead;
    int32_t best = kDead;
    int best_count = 0;
    for (unsigned b = 0; b < 256; ++b) {
      if (next[b] == kDead || next[b] == best) continue;
      int count = 0;
      for (unsigned k = b; k < 256; ++k) count += next[k] == next[b];
      if (count > best_count) best = next[b], best_count = count;
    }
    SetInfo& si = sets[static_cast<size_t>(s)];
    for (unsigned b = 0; b < 256; ++b) {
      if (best != kDead && next[b] == best) si.uniform.add(static_cast<uint8_t>(b));
    }
    si.uniform_next = best;
    si.uniform_done = true;
  }

  // run(s): how many bytes of uniform(s) in a row s surely accepts. The chain s, next(s), ... is
  // followed while each set's uniform bytes include the previous one's: run(s) = 1 + run(next),
  // 255 (= unbounded) for a set that loops to itself, 0 with no uniform bytes; finite runs stop
  // at 254, so a trie height of 255 (= 255 or more) passes only an unbounded run. A lower bound.
  uint8_t run_of(int32_t s) {
    std::vector<int32_t>& chain = run_chain;
    chain.clear();
    int last_run = 0;  // the run of the last set in `chain`
    for (int32_t cur = s;;) {
      compute_uniform(cur);
      const SetInfo& ci = sets[static_cast<size_t>(cur)];
      if (ci.run_done) {
        if (chain.empty()) return ci.run;
        last_run = ci.run == 255 ? 255 : std::min(254, ci.run + 1);  // chain.back() moved here
        break;
      }
      chain.push_back(cur);
      if (!ci.uniform.any()) {
        last_run = 0;
        break;
      }
      if (ci.uniform_next == cur) {
        last_run = 255;
        break;
      }
      const int32_t nx = ci.uniform_next;
      compute_uniform(nx);
      if (chain.size() >= 255 || !subset(sets[static_cast<size_t>(cur)].uniform, sets[static_cast<size_t>(nx)].uniform)) {
        last_run = 1;
        break;
      }
      cur = nx;
    }
    int r = last_run;
    for (size_t i = chain.size(); i-- > 0;) {
      SetInfo& ci = sets[static_cast<size_t>(chain[i])];
      ci.run = static_cast<uint8_t>(r);
      ci.run_done = true;
      r = r == 255 ? 255 : std::min(254, r + 1);  // 255 only for unbounded runs
    }
    return sets[static_cast<size_t>(s)].run;
  }

  static bool subset(const ByteSet& a, const ByteSet& b) {
    for (int i = 0; i < 4; ++i) {
      if ((a.bits[i] & ~b.bits[i]) != 0) return false;
    }
    return true;
  }

  static void mark(const TokenVocabulary::Impl& vocab, uint32_t begin, uint32_t end, uint32_t* mask) {
    for (uint32_t t = begin; t < end; ++t) {
      const auto id = static_cast<uint32_t>(vocab.node_tokens[t]);
      mask[id >> 5] |= uint32_t{1} << (id & 31);
    }
  }

  // Sets the bits of every token the state s allows (end ids excluded): a depth-first walk of the
  // vocabulary trie, entering a child only when its byte keeps some stack alive. When a child's
  // byte leads back to the same state and every byte below the child does too (a run of plain
  // characters inside a string), its whole subtree is allowed without walking it.
  void walk_trie(int32_t s, uint32_t* mask) {
    frames.clear();
    frames.push_back({0, s});
    while (!frames.empty()) {
      const Frame f = frames.back();
      frames.pop_back();
      const TrieNode& node = vocab->nodes[f.trie_node];
      const ByteSet allowed = sets[static_cast<size_t>(f.set)].allowed;
      const uint8_t* edge = vocab->edge_bytes.data();
      for (uint32_t c = node.child_begin; c < node.child_end; ++c) {
        if (!allowed.has(edge[c])) continue;
        const TrieNode& child = vocab->nodes[c];
        const int32_t next = advance(f.set, edge[c]);
        if (next == kDead) continue;
        if (child.child_begin == child.child_end) {
          mark(*vocab, child.tok_begin, child.tok_end, mask);
          continue;
        }
        // Tried where a byte loops back to the state (a run of plain characters in a string) and
        // for subtrees big enough to repay computing a run (up to 256 transitions per new state).
        if ((next == f.set || child.subtree_tok_end - child.tok_end >= kMinShortcutTokens) && child.height <= run_of(next) &&
            subset(vocab->byte_sets[child.subtree_bytes], sets[static_cast<size_t>(next)].uniform)) {
          mark(*vocab, child.tok_begin, child.subtree_tok_end, mask);
          continue;
        }
        mark(*vocab, child.tok_begin, child.tok_end, mask);
        if (sets[static_cast<size_t>(next)].allowed.any()) frames.push_back({c, next});
      }
    }
  }
};

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenVocabulary> vocab)
    : state_(std::make_unique<State>()) {
  FERRY_CHECK(grammar != nullptr);
  State& st = *state_;
  st.grammar_ref = std::move(grammar);
  st.vocab_ref = std::move(vocab);
  st.g = st.grammar_ref.get();
  if (st.vocab_ref) {
    st.vocab = st.vocab_ref->impl_.get();
    st.cache = st.g->mask_cache(st.vocab_ref);
  }
  st.history.push_back({st.initial_set(), false});
}

Matcher::~Matcher() = default;
Matcher::Matcher(Matcher&&) noexcept = default;
Matcher& Matcher::operator=(Matcher&&) noexcept = default;

bool Matcher::accept_bytes(std::string_view bytes) {
  State& st = *state_;
  const State::Step cur = st.history.back();
  if (cur.ended) return false;
  const int32_t next = st.advance_bytes(cur.set, bytes);
  if (next == kDead) return false;
  st.history.push_back({next, false});
  return true;
}

bool Matcher::accept_token(int32_t id) {
  State& st = *state_;
  FERRY_CHECK(st.vocab != nullptr);
  const State::Step cur = st.history.back();
  if (cur.ended || id < 0 || id >= st.vocab->size) return false;
  const auto i = static_cast<size_t>(id);
  if (st.vocab->is_end[i]) {
    if (!st.sets[static_cast<size_t>(cur.set)].can_end) return false;
    st.history.push_back({cur.set, true});
    return true;
  }
  const std::string& bytes = st.vocab->token_bytes[i];
  if (bytes.empty()) return false;
  return accept_bytes(bytes);
}

void Matcher::fill_mask(std::span<uint32_t> mask) {
  State& st = *state_;
  FERRY_CHECK(st.vocab != nullptr);
  const size_t words = bitmask_words(st.vocab->size);
  FERRY_CHECK(mask.size() >= words);
  std::fill(mask.begin(), mask.end(), 0u);
  const State::Step cur = st.history.back();
  if (cur.ended) return;
  State::SetInfo& si = st.sets[static_cast<size_t>(cur.set)];
  if (si.key.empty()) si.key = st.canonical_key(cur.set);
  std::shared_ptr<const MaskCache::Mask> cached = st.cache->find(si.key);
  if (!cached) {
    auto fresh = std::make_shared<MaskCache::Mask>(words, 0u);
    st.walk_trie(cur.set, fresh->data());
    if (st.sets[static_cast<size_t>(cur.set)].can_end) {
      for (int32_t e : st.vocab->end_ids) (*fresh)[static_cast<size_t>(e) >> 5] |= uint32_t{1} << (e & 31);
    }
    st.cache->insert(st.sets[static_cast<size_t>(cur.set)].key, fresh);
    cached = std::move(fresh);
  }
  std::memcpy(mask.data(), cached->data(), words * sizeof(uint32_t));
}

bool Matcher::can_end() const {
  const State::Step cur = state_->history.back();
  return !cur.ended && state_->sets[static_cast<size_t>(cur.set)].can_end;
}

bool Matcher::is_terminated() const {
  const State::Step cur = state_->history.back();
  const State::SetInfo& si = state_->sets[static_cast<size_t>(cur.set)];
  return cur.ended || (si.can_end && !si.allowed.any());
}

int32_t Matcher::vocab_size() const {
  FERRY_CHECK(state_->vocab != nullptr);
  return state_->vocab->size;
}

void Matcher::rollback(int32_t n) {
  State& st = *state_;
  FERRY_CHECK(n >= 0 && static_cast<size_t>(n) < st.history.size());
  st.history.resize(st.history.size() - static_cast<size_t>(n));
}

}  // namespace ferry::llm::grammar
