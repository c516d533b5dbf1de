// N-gram (prompt lookup) proposals for speculative decoding: the next tokens are guessed by finding
// the sequence's last few tokens earlier in the sequence (prompt or output) and copying what
// followed them there. Pays off when the answer repeats its input (summaries, edits, code
// changes, extraction); costs nothing but the search when nothing matches.
//
// Not for: verification (Sampler::verify), budgeting (the scheduler), deciding whether to
// speculate at all (SpeculationGate).
//
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ferry::llm {

// Finds the longest n in [min_n, max_n] such that tokens' last n tokens also occur ending earlier
// (the most recent such occurrence among the longest), and sets *drafts to the up to
// num_tokens tokens that followed that occurrence. *drafts is empty when nothing matches.
// O(tokens.size() * max_n); allocates only when *drafts grows.
void ngram_propose(std::span<const int32_t> tokens, int32_t min_n, int32_t max_n, int32_t num_tokens,
                   std::vector<int32_t>* drafts);

}  // namespace ferry::llm
