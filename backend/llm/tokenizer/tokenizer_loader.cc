// Loading a Tokenizer from a HF model folder: parses tokenizer.json (or vocab.json + merges.txt),
// tokenizer_config.json and generation_config.json, and wires the pipeline stages together.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "backend/llm/tokenizer/tokenizer.h"
#include "common/json_parse.h"

namespace ferry::llm {
namespace {

// The pre-tokenizer regex of Qwen2's tokenizer (used for folders without tokenizer.json).
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

Result<Json::Value> parse_json(std::string_view text, const std::string& file) {
  if (text.empty()) return Json::Value();
  auto root = parse_json_text(text, kJsonFileOptions);
  if (!root.ok()) return Status::InvalidArgument(file + ": not valid JSON: " + root.status().message());
  if (!root->isObject()) return Status::InvalidArgument(file + ": the top level must be an object");
  return root;
}

// Reads a whole file; nullopt when it does not exist.
Result<std::optional<std::string>> read_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<std::string>();
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument(path.string() + ": cannot be read");
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::optional<std::string>(ss.str());
}

// A token field of tokenizer_config.json: "text", {"content": "text", ...} or null.
std::string token_text(const Json::Value& v) {
  if (v.isString()) return v.asString();
  if (v.isObject() && v["content"].isString()) return v["content"].asString();
  return {};
}

Result<AddedToken> parse_added_token(const Json::Value& v, TokenId id, const std::string& path) {
  if (!v.isObject() || !v["content"].isString()) {
    return Status::InvalidArgument(path + ".content is missing");
  }
  AddedToken t;
  t.id = id;
  t.content = v["content"].asString();
  t.single_word = v.get("single_word", false).asBool();
  t.lstrip = v.get("lstrip", false).asBool();
  t.rstrip = v.get("rstrip", false).asBool();
  t.special = v.get("special", false).asBool();
  t.normalized = v.get("normalized", !t.special).asBool();
  return t;
}

}  // namespace

class TokenizerLoader {
 public:
  static Result<std::unique_ptr<Tokenizer>> build(const Json::Value& tj, BpeModel model, const Json::Value& config,
                                                  const Json::Value& generation);
  static Result<std::unique_ptr<Tokenizer>> from_vocab_and_merges(const std::filesystem::path& dir,
                                                                  const Json::Value& config,
                                                                  const Json::Value& generation);

 private:
  static Status add_post_processor(const Tokenizer& tok, const Json::Value& v, const std::string& path,
                                   std::vector<TokenId>& prefix, std::vector<TokenId>& suffix);
  static Status apply_config(Tokenizer& tok, const Json::Value& config, const Json::Value& generation);
};

Status TokenizerLoader::add_post_processor(const Tokenizer& tok, const Json::Value& v, const std::string& path,
                                           std::vector<TokenId>& prefix, std::vector<TokenId>& suffix) {
  if (v.isNull()) return Status::Ok();
  const std::string type = v["type"].asString();
  auto id_of = [&](const Json::Value& pair, const std::string& key) -> Result<TokenId> {
    // Roberta/Bert store [token, id].
    if (pair.isArray() && pair.size() == 2 && pair[1].isIntegral()) return static_cast<TokenId>(pair[1].asInt());
    return Status::InvalidArgument("tokenizer.json: " + path + "." + key + " must be [token, id]");
  };
  if (type == "ByteLevel") return Status::Ok();
  if (type == "Sequence") {
    const Json::Value& list = v["processors"];
    if (!list.isArray()) return Status::InvalidArgument("tokenizer.json: " + path + ".processors must be an array");
    for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
      std::vector<TokenId> p, s;
      FERRY_RETURN_IF_ERROR(add_post_processor(tok, list[i], path + ".processors[" + std::to_string(i) + "]", p, s));
      prefix.insert(prefix.begin(), p.begin(), p.end());  // later processors wrap earlier ones
      suffix.insert(suffix.end(), s.begin(), s.end());
    }
    return Status::Ok();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto cls = id_of(v["cls"], "cls");
    if (!cls.ok()) return cls.status();
    auto sep = id_of(v["sep"], "sep");
    if (!sep.ok()) return sep.status();
    prefix.push_back(cls.value());
    suffix.push_back(sep.value());
    return Status::Ok();
  }
  if (type == "TemplateProcessing") {
    const Json::Value& single = v["single"];
    if (!single.isArray()) return Status::InvalidArgument("tokenizer.json: " + path + ".single must be an array");
    bool seen_sequence = false;
    for (Json::ArrayIndex i = 0; i < single.size(); ++i) {
      const Json::Value& item = single[i];
      if (item.isMember("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const std::string name = item["SpecialToken"]["id"].asString();
      const Json::Value& entry = v["special_tokens"][name];
      std::vector<TokenId> ids;
      if (entry.isObject() && entry["ids"].isArray()) {
        for (const Json::Value& id : entry["ids"]) ids.push_back(static_cast<TokenId>(id.asInt()));
      } else if (auto id = tok.token_to_id(name)) {
        ids.push_back(*id);
      } else {
        return Status::InvalidArgument("tokenizer.json: " + path + ".special_tokens has no '" + name + "'");
      }
      auto& dst = seen_sequence ? suffix : prefix;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
    return Status::Ok();
  }
  return Status::Unimplemented("tokenizer.json: " + path + ".type '" + type + "' is not supported");
}

Status TokenizerLoader::apply_config(Tokenizer& tok, const Json::Value& config, const Json::Value& generation) {
  tok.bos_token_ = token_text(config["bos_token"]);
  tok.eos_token_ = token_text(config["eos_token"]);
  tok.pad_token_ = token_text(config["pad_token"]);
  tok.unk_token_ = token_text(config["unk_token"]);
  if (!tok.bos_token_.empty()) tok.bos_id_ = tok.token_to_id(tok.bos_token_);
  if (!tok.eos_token_.empty()) tok.eos_id_ = tok.token_to_id(tok.eos_token_);
  if (!tok.pad_token_.empty()) tok.pad_id_ = tok.token_to_id(tok.pad_token_);

  const Json::Value& add_bos = config["add_bos_token"];
  const Json::Value& add_eos = config["add_eos_token"];
  if (add_bos.isBool() || add_eos.isBool()) {
    tok.prefix_ids_.clear();
    tok.suffix_ids_.clear();
    if (add_bos.isBool() && add_bos.asBool() && tok.bos_id_) tok.prefix_ids_.push_back(*tok.bos_id_);
    if (add_eos.isBool() && add_eos.asBool() && tok.eos_id_) tok.suffix_ids_.push_back(*tok.eos_id_);
  }
  auto contains = [](const std::vector<TokenId>& v, std::optional<TokenId> id) {
    return id && std::find(v.begin(), v.end(), *id) != v.end();
  };
  tok.adds_bos_ = contains(tok.prefix_ids_, tok.bos_id_);
  tok.adds_eos_ = contains(tok.suffix_ids_, tok.eos_id_);

  const Json::Value& tmpl = config["chat_template"];
  if (tmpl.isString()) {
    tok.chat_template_ = tmpl.asString();
  } else if (tmpl.isArray()) {
    for (const Json::Value& t : tmpl) {
      if (!t["name"].isString() || !t["template"].isString()) {
        return Status::InvalidArgument("tokenizer_config.json: chat_template entries need 'name' and 'template'");
      }
      tok.named_chat_templates_[t["name"].asString()] = t["template"].asString();
    }
    auto it = tok.named_chat_templates_.find("default");
    if (it != tok.named_chat_templates_.end()) tok.chat_template_ = it->second;
  } else if (!tmpl.isNull()) {
    return Status::InvalidArgument("tokenizer_config.json: chat_template must be a string or a list");
  }
  tok.clean_up_tokenization_spaces_ = config.get("clean_up_tokenization_spaces", false).asBool();

  const Json::Value& eos = generation["eos_token_id"];
  if (eos.isIntegral()) {
    tok.generation_eos_ids_.push_back(eos.asInt());
  } else if (eos.isArray()) {
    for (const Json::Value& id : eos) {
      if (!id.isIntegral()) return Status::InvalidArgument("generation_config.json: eos_token_id must hold integers");
      tok.generation_eos_ids_.push_back(id.asInt());
    }
  } else if (!eos.isNull()) {
    return Status::InvalidArgument("generation_config.json: eos_token_id must be an integer or a list");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Tokenizer>> TokenizerLoader::build(const Json::Value& tj, BpeModel model,
                                                          const Json::Value& config, const Json::Value& generation) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->model_ = std::move(model);
  auto normalizer = Normalizer::from_json(tj["normalizer"], "normalizer");
  if (!normalizer.ok()) return normalizer.status();
  tok->normalizer_ = std::move(normalizer).value();
  auto pre = PreTokenizer::from_json(tj["pre_tokenizer"], "pre_tokenizer");
  if (!pre.ok()) return pre.status();
  tok->pre_tokenizer_ = std::move(pre).value();
  auto decoder = Decoder::from_json(tj["decoder"], "decoder");
  if (!decoder.ok()) return decoder.status();
  tok->decoder_ = std::move(decoder).value();

  std::vector<AddedToken> added;
  std::map<TokenId, size_t> seen;
  const Json::Value& list = tj["added_tokens"];
  if (!list.isNull() && !list.isArray())
    return Status::InvalidArgument("tokenizer.json: added_tokens must be an array");
  for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
    const std::string path = "tokenizer.json: added_tokens[" + std::to_string(i) + "]";
    if (!list[i]["id"].isIntegral() || list[i]["id"].asInt64() < 0)
      return Status::InvalidArgument(path + ".id is missing");
    auto t = parse_added_token(list[i], list[i]["id"].asInt(), path);
    if (!t.ok()) return t.status();
    seen[t->id] = added.size();
    added.push_back(std::move(t).value());
  }
  // transformers also registers tokenizer_config.json's added_tokens_decoder entries.
  const Json::Value& extra = config["added_tokens_decoder"];
  if (extra.isObject()) {
    for (auto it = extra.begin(); it != extra.end(); ++it) {
      const std::string name = it.name();  // a copy: `end` must point into a string that lives on
      const std::string path = "tokenizer_config.json: added_tokens_decoder." + name;
      char* end = nullptr;
      const long id = std::strtol(name.c_str(), &end, 10);
      if (end == name.c_str() || *end != '\0' || id < 0) return Status::InvalidArgument(path + " is not an id");
      if (seen.count(static_cast<TokenId>(id))) continue;
      auto t = parse_added_token(*it, static_cast<TokenId>(id), path);
      if (!t.ok()) return t.status();
      seen[t->id] = added.size();
      added.push_back(std::move(t).value());
    }
  }
  tok->vocab_size_ = tok->model_.size();
  for (const AddedToken& t : added) tok->vocab_size_ = std::max(tok->vocab_size_, static_cast<size_t>(t.id) + 1);
  tok->added_.build(std::move(added), tok->normalizer_);

  FERRY_RETURN_IF_ERROR(
      add_post_processor(*tok, tj["post_processor"], "post_processor", tok->prefix_ids_, tok->suffix_ids_));
  FERRY_RETURN_IF_ERROR(apply_config(*tok, config, generation));
  return tok;
}

Result<std::unique_ptr<Tokenizer>> TokenizerLoader::from_vocab_and_merges(const std::filesystem::path& dir,
                                                                          const Json::Value& config,
                                                                          const Json::Value& generation) {
  const std::string cls = config["tokenizer_class"].asString();
  Json::Value tj(Json::objectValue);
  Json::Value byte_level(Json::objectValue);
  byte_level["type"] = "ByteLevel";
  byte_level["add_prefix_space"] = config.get("add_prefix_space", false).asBool();
  if (cls == "GPT2Tokenizer" || cls == "GPT2TokenizerFast") {
    byte_level["use_regex"] = true;
    tj["pre_tokenizer"] = byte_level;
  } else if (cls == "Qwen2Tokenizer" || cls == "Qwen2TokenizerFast") {
    tj["normalizer"]["type"] = "NFC";
    Json::Value split(Json::objectValue);
    split["type"] = "Split";
    split["pattern"]["Regex"] = kQwen2Pattern;
    split["behavior"] = "Isolated";
    split["invert"] = false;
    byte_level["use_regex"] = false;
    tj["pre_tokenizer"]["type"] = "Sequence";
    tj["pre_tokenizer"]["pretokenizers"].append(split);
    tj["pre_tokenizer"]["pretokenizers"].append(byte_level);
  } else {
    return Status::Unimplemented("tokenizer_config.json: tokenizer_class '" + cls +
                                 "' cannot be loaded without tokenizer.json");
  }
  tj["decoder"]["type"] = "ByteLevel";
  auto vocab_text = read_file(dir / "vocab.json");
  if (!vocab_text.ok()) return vocab_text.status();
  auto merges_text = read_file(dir / "merges.txt");
  if (!merges_text.ok()) return merges_text.status();
  auto vocab = parse_json(vocab_text->value_or(""), "vocab.json");
  if (!vocab.ok()) return vocab.status();
  auto model = BpeModel::from_vocab_and_merges(vocab.value(), merges_text->value_or(""));
  if (!model.ok()) return model.status();
  return build(tj, std::move(model).value(), config, generation);
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_json(std::string_view tokenizer_json,
                                                        std::string_view tokenizer_config_json,
                                                        std::string_view generation_config_json) {
  auto tj = parse_json(tokenizer_json, "tokenizer.json");
  if (!tj.ok()) return tj.status();
  if (tj->isNull()) return Status::InvalidArgument("tokenizer.json: empty");
  auto config = parse_json(tokenizer_config_json, "tokenizer_config.json");
  if (!config.ok()) return config.status();
  auto generation = parse_json(generation_config_json, "generation_config.json");
  if (!generation.ok()) return generation.status();
  auto model = BpeModel::from_json(tj.value()["model"]);
  if (!model.ok()) return model.status();
  return TokenizerLoader::build(tj.value(), std::move(model).value(), config.value(), generation.value());
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::filesystem::path& dir) {
  auto tokenizer_json = read_file(dir / "tokenizer.json");
  if (!tokenizer_json.ok()) return tokenizer_json.status();
  auto config_json = read_file(dir / "tokenizer_config.json");
  if (!config_json.ok()) return config_json.status();
  auto generation_json = read_file(dir / "generation_config.json");
  if (!generation_json.ok()) return generation_json.status();
  auto config = parse_json(config_json->value_or(""), "tokenizer_config.json");
  if (!config.ok()) return config.status();
  // Newer snapshots keep the chat template in its own file.
  if (!config->isMember("chat_template")) {
    auto jinja = read_file(dir / "chat_template.jinja");
    if (!jinja.ok()) return jinja.status();
    if (jinja->has_value()) (*config)["chat_template"] = **jinja;
  }

  auto generation = parse_json(generation_json->value_or(""), "generation_config.json");
  if (!generation.ok()) return generation.status();
  if (tokenizer_json->has_value()) {
    auto tj = parse_json(**tokenizer_json, "tokenizer.json");
    if (!tj.ok()) return tj.status();
    if (tj->isNull()) return Status::InvalidArgument("tokenizer.json: empty");
    auto model = BpeModel::from_json(tj.value()["model"]);
    if (!model.ok()) return model.status();
    return TokenizerLoader::build(tj.value(), std::move(model).value(), config.value(), generation.value());
  }
  std::error_code ec;
  if (std::filesystem::exists(dir / "vocab.json", ec) && std::filesystem::exists(dir / "merges.txt", ec)) {
    return TokenizerLoader::from_vocab_and_merges(dir, config.value(), generation.value());
  }
  return Status::NotFound(dir.string() + ": no tokenizer.json (nor vocab.json + merges.txt)");
}

}  // namespace ferry::llm
