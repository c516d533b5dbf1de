#include "backend/llm/draft_model.h"

#include <json/json.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "backend/llm/json_text.h"
#include "backend/llm/llm_config.h"
#include "backend/llm/model/model_weights.h"
#include "common/json_parse.h"

namespace ferry::llm {
namespace {

namespace fs = std::filesystem;

bool is_version_number(const std::string& s, int64_t* v) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return false;
  }
  *v = std::stoll(s);
  return *v >= 1;
}

// How the draft's weights load: its serving config's load keys, or the defaults (a snapshot).
struct DraftFolder {
  fs::path path;
  LlmConfig load;
};

// The folder that holds the draft's files: a snapshot's own folder (config.json with
// "architectures" and no "backend"), else the highest numeric version folder, with the serving
// config.json's load keys.
Result<DraftFolder> find_draft_folder(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::NotFound("no folder " + dir.string() + " in the repository");
  DraftFolder out;
  Json::Value config(Json::objectValue);
  const fs::path config_file = dir / "config.json";
  if (fs::exists(config_file, ec)) {
    std::ifstream in(config_file);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = parse_json_text(text.str(), kJsonFileOptions);
    if (!parsed.ok() || !parsed->isObject()) return Status::InvalidArgument(config_file.string() + " is not a JSON object");
    config = parsed.value();
  }
  if (config.isMember("architectures") && !config.isMember("backend")) {
    out.path = dir;
    return out;
  }
  if (config.isMember("backend") && config["backend"] != "llm") {
    return Status::InvalidArgument(config_file.string() + ": not a model of the llm backend");
  }
  Json::Value load_keys(Json::objectValue);
  for (const char* key : {"load_format", "seed", "weight_dtype", "weight_group_size", "weight_zero_points"}) {
    if (config.isMember(key)) load_keys[key] = config[key];
  }
  auto load = LlmConfig::parse(compact_json(load_keys));
  if (!load.ok()) return load.status().with_prefix(config_file.string());
  out.load = load.value();
  int64_t best = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    int64_t v = 0;
    if (entry.is_directory(ec) && is_version_number(entry.path().filename().string(), &v) && v > best) {
      best = v;
      out.path = entry.path();
    }
  }
  if (best == 0) return Status::NotFound("no version folder in " + dir.string() + " (e.g. " + (dir / "1").string() + ")");
  return out;
}

}  // namespace

std::string compare_vocabularies(const Tokenizer& target, const Tokenizer& draft) {
  if (target.vocab_size() != draft.vocab_size()) {
    return "its tokenizer has " + std::to_string(draft.vocab_size()) + " token ids, the target's " +
           std::to_string(target.vocab_size());
  }
  for (size_t id = 0; id < target.vocab_size(); ++id) {
    const std::string* t = target.id_to_token(static_cast<TokenId>(id));
    const std::string* d = draft.id_to_token(static_cast<TokenId>(id));
    if (t == nullptr && d == nullptr) continue;
    if (t == nullptr || d == nullptr || *t != *d) {
      auto show = [](const std::string* s) { return s == nullptr ? std::string("no token") : "'" + *s + "'"; };
      return "token id " + std::to_string(id) + " is " + show(d) + " in its tokenizer, " + show(t) + " in the target's";
    }
  }
  return "";
}

Result<DraftModel> load_draft_model(const fs::path& repository, const std::string& name,
                                    const ModelConfig& target_config, const Tokenizer& target_tokenizer, bool for_cpu) {
  const std::string where = "key 'speculative.draft_model' (\"" + name + "\")";
  auto folder = find_draft_folder(repository / name);
  if (!folder.ok()) return folder.status().with_prefix(where);
  DraftModel draft;
  draft.name = name;
  draft.path = folder->path;
  auto config = load_model_config(draft.path);
  if (!config.ok()) return config.status().with_prefix(where + ": not a model the engine runs");
  auto tokenizer = Tokenizer::load(draft.path);
  if (!tokenizer.ok()) return tokenizer.status().with_prefix(where + ": its tokenizer");
  const std::string diff = compare_vocabularies(target_tokenizer, *tokenizer.value());
  if (!diff.empty()) return Status::InvalidArgument(where + ": the draft must share the target's tokenizer, but " + diff);
  if (config->vocab_size != target_config.vocab_size) {
    return Status::InvalidArgument(where + ": the draft's logits cover " + std::to_string(config->vocab_size) +
                                   " tokens (vocab_size), the target's " + std::to_string(target_config.vocab_size));
  }
  const LlmConfig& load = folder->load;
  auto weights = load.dummy_weights ? Result<ModelWeights>(ModelWeights::dummy(config.value(), load.seed))
                                    : ModelWeights::load_safetensors(config.value(), draft.path);
  if (!weights.ok()) return weights.status().with_prefix(where);
  draft.config = config.value();
  draft.load = load.weights;
  draft.weights = std::make_shared<const ModelWeights>(std::move(weights).value());
  if (!for_cpu) return draft;
  auto model = load_causal_lm(draft.config, *draft.weights, draft.load);
  if (!model.ok()) return model.status().with_prefix(where);
  draft.model = std::move(model).value();
  return draft;
}

}  // namespace ferry::llm
