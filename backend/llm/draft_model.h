// The draft model of speculative decoding's "draft" method: finds the draft's folder beside the
// target's in the model repository, checks that it can draft for the target, and loads its
// weights once for every instance of the target (each instance then runs its own DraftProposer
// over them, draft_proposer.h).
//
// The draft is read from its folder, not borrowed from a served model: it need not be served
// (nor even loadable as a serving config of its own), and loading or unloading it as a served
// model never touches the target. The folder is a HuggingFace snapshot (weights in the folder
// itself) or a serving folder, whose highest numeric version folder holds the weights; in the
// latter case the serving config.json's load keys (load_format, seed, weight_dtype,
// weight_group_size, weight_zero_points) say how to load them, and its other keys are ignored.
//
// Not for: proposing (DraftProposer), verification (Sampler::verify).
//
// Thread-safety: load_draft_model runs once, at the target's load.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "backend/llm/model/architecture.h"
#include "backend/llm/model/model_config.h"
#include "backend/llm/model/model_weights.h"
#include "backend/llm/model/weight_loader.h"
#include "backend/llm/tokenizer/tokenizer.h"
#include "common/status.h"

namespace ferry::llm {

struct DraftModel {
  std::string name;                       // its folder's name in the repository
  std::filesystem::path path;             // the folder its config, tokenizer and weights came from
  ModelConfig config;                     // the draft's shape
  std::shared_ptr<const ModelWeights> weights;  // its checkpoint (mappings) or dummy generator
  WeightLoadOptions load;                 // how its matrices are loaded (its serving config's keys)
  std::shared_ptr<const CausalLM> model;  // the CPU engine's weights; null when loaded for gpu instances
};

// Loads the draft `name` for a target of `target_config` and `target_tokenizer`; `repository`
// is the folder that holds both models' folders. Errors name the key and the draft: NotFound
// (no such folder, no version folder), InvalidArgument (an architecture the engine does not run,
// a bad config or weights, another vocabulary: what differs), each prefixed with
// "key 'speculative.draft_model' (\"<name>\")".
// With `for_cpu` false (a target of kind gpu, whose instances run the draft on a CudaEngine built
// from `weights`) the CPU weights are not loaded.
Result<DraftModel> load_draft_model(const std::filesystem::path& repository, const std::string& name,
                                    const ModelConfig& target_config, const Tokenizer& target_tokenizer,
                                    bool for_cpu = true);

// Empty when the draft's vocabulary is the target's: the same size and, for every id, the same
// token string. Else a sentence saying the first difference.
std::string compare_vocabularies(const Tokenizer& target, const Tokenizer& draft);

}  // namespace ferry::llm
