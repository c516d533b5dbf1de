#include "backend/llm/speculative/ngram_proposer.h"

#include <algorithm>

namespace ferry::llm {

void ngram_propose(std::span<const int32_t> tokens, int32_t min_n, int32_t max_n, int32_t num_tokens,
                   std::vector<int32_t>* drafts) {
  drafts->clear();
  const int64_t len = static_cast<int64_t>(tokens.size());
  if (min_n < 1 || max_n < min_n || num_tokens < 1 || len < min_n + 1) return;
  // An occurrence ending just before `end` (end < len: not the suffix itself); its match length is
  // how many tokens before `end` equal the suffix's, read backwards, up to max_n.
  int64_t best_end = -1, best_len = 0;
  for (int64_t end = len - 1; end >= min_n; --end) {
    int64_t n = 0;
    while (n < max_n && end - n - 1 >= 0 && tokens[end - n - 1] == tokens[len - n - 1]) ++n;
    if (n >= min_n && n > best_len) {
      best_end = end;
      best_len = n;
      if (n == max_n) break;  // nothing longer exists; later ones are older
    }
  }
  if (best_end < 0) return;
  const int64_t stop = std::min(len, best_end + num_tokens);
  drafts->assign(tokens.begin() + best_end, tokens.begin() + stop);
}

}  // namespace ferry::llm
