#include "backend/llm/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "backend/llm/tokenizer/byte_level.h"
#include "backend/llm/tokenizer/normalizer.h"

namespace ferry::llm {
namespace {

constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

Result<std::shared_ptr<const Regex>> shared_regex(const std::string& pattern, const std::string& path) {
  auto re = Regex::compile(pattern);
  if (!re.ok()) return re.status().with_prefix("tokenizer.json: " + path);
  return std::make_shared<const Regex>(std::move(re).value());
}

Result<PreTokenizer::Behavior> parse_behavior(const Json::Value& v, const std::string& path) {
  const std::string b = v.asString();
  if (b == "Removed") return PreTokenizer::Behavior::kRemoved;
  if (b == "Isolated") return PreTokenizer::Behavior::kIsolated;
  if (b == "MergedWithPrevious") return PreTokenizer::Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return PreTokenizer::Behavior::kMergedWithNext;
  if (b == "Contiguous") return PreTokenizer::Behavior::kContiguous;
  return Status::InvalidArgument("tokenizer.json: " + path + " '" + b + "' is not a split behavior");
}

std::string prefixed(std::string_view prefix, const std::string& s) {
  std::string out;
  out.reserve(prefix.size() + s.size());
  out.append(prefix);
  out.append(s);
  return out;
}

struct Segment {
  size_t begin, end;
  bool is_match;
};

}  // namespace

Result<PreTokenizer> PreTokenizer::from_json(const Json::Value& value, const std::string& path) {
  PreTokenizer p;
  if (value.isNull()) return p;
  FERRY_RETURN_IF_ERROR(add_steps(value, path, p.steps_));
  return p;
}

Status PreTokenizer::add_steps(const Json::Value& v, const std::string& path, std::vector<Step>& steps) {
  if (!v.isObject() || !v["type"].isString()) {
    return Status::InvalidArgument("tokenizer.json: " + path + ".type is missing");
  }
  const std::string type = v["type"].asString();
  Step step;
  auto set_regex = [&](const std::string& pattern) -> Status {
    auto re = shared_regex(pattern, path);
    if (!re.ok()) return re.status();
    step.regex = std::move(re).value();
    return Status::Ok();
  };
  if (type == "Sequence") {
    const Json::Value& list = v["pretokenizers"];
    if (!list.isArray()) return Status::InvalidArgument("tokenizer.json: " + path + ".pretokenizers must be an array");
    for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
      FERRY_RETURN_IF_ERROR(add_steps(list[i], path + ".pretokenizers[" + std::to_string(i) + "]", steps));
    }
    return Status::Ok();
  } else if (type == "Split") {
    FERRY_RETURN_IF_ERROR(parse_pattern(v["pattern"], path + ".pattern", &step.literal, &step.regex));
    if (!step.regex) {
      auto re = Regex::literal(step.literal);
      if (!re.ok()) return re.status().with_prefix("tokenizer.json: " + path + ".pattern");
      step.regex = std::make_shared<const Regex>(std::move(re).value());
    }
    auto behavior = parse_behavior(v["behavior"], path + ".behavior");
    if (!behavior.ok()) return behavior.status();
    step.behavior = behavior.value();
    step.invert = v.get("invert", false).asBool();
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    step.add_prefix_space = v.get("add_prefix_space", true).asBool();
    if (v.get("use_regex", true).asBool()) FERRY_RETURN_IF_ERROR(set_regex(kGpt2Pattern));
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::kMetaspace;
    step.replacement = v.get("replacement", "\xE2\x96\x81").asString();
    step.split = v.get("split", true).asBool();
    if (v.isMember("prepend_scheme")) {
      const std::string scheme = v["prepend_scheme"].asString();
      if (scheme == "always") {
        step.prepend = Step::Prepend::kAlways;
      } else if (scheme == "first") {
        step.prepend = Step::Prepend::kFirst;
      } else if (scheme == "never") {
        step.prepend = Step::Prepend::kNever;
      } else {
        return Status::InvalidArgument("tokenizer.json: " + path + ".prepend_scheme '" + scheme + "' is not supported");
      }
    } else {
      step.prepend = v.get("add_prefix_space", true).asBool() ? Step::Prepend::kAlways : Step::Prepend::kNever;
    }
  } else if (type == "Digits") {
    FERRY_RETURN_IF_ERROR(set_regex(v.get("individual_digits", false).asBool() ? "[0-9]" : "[0-9]+"));
  } else if (type == "Whitespace") {
    FERRY_RETURN_IF_ERROR(set_regex(R"(\w+|[^\w\s]+)"));
    step.invert = true;
    step.behavior = Behavior::kRemoved;
  } else if (type == "WhitespaceSplit") {
    FERRY_RETURN_IF_ERROR(set_regex(R"(\s+)"));
    step.behavior = Behavior::kRemoved;
  } else if (type == "Punctuation") {
    FERRY_RETURN_IF_ERROR(set_regex(R"(\p{P}|[!-/:-@\[-`{-~])"));
    if (v.isMember("behavior")) {
      auto behavior = parse_behavior(v["behavior"], path + ".behavior");
      if (!behavior.ok()) return behavior.status();
      step.behavior = behavior.value();
    }
  } else {
    return Status::Unimplemented("tokenizer.json: " + path + ".type '" + type + "' is not supported");
  }
  steps.push_back(std::move(step));
  return Status::Ok();
}

void PreTokenizer::split_piece(const Step& step, Piece&& piece, std::vector<Piece>& out) {
  const std::string& text = piece.text;
  std::vector<std::pair<size_t, size_t>> matches;
  step.regex->find_all(text, matches);
  if (matches.empty() && !step.invert) {
    // Nothing to split on: the piece stays whole (Removed/Isolated/... agree on this).
    out.push_back(std::move(piece));
    return;
  }
  std::vector<Segment> segs;
  size_t prev = 0;
  for (auto [a, b] : matches) {
    if (prev != a) segs.push_back({prev, a, false});
    segs.push_back({a, b, true});
    prev = b;
  }
  if (prev != text.size()) segs.push_back({prev, text.size(), false});
  if (step.invert) {
    for (Segment& s : segs) s.is_match = !s.is_match;
  }

  std::vector<Segment> kept;
  bool previous_match = false;
  switch (step.behavior) {
    case Behavior::kRemoved:
      for (const Segment& s : segs) {
        if (!s.is_match) kept.push_back(s);
      }
      break;
    case Behavior::kIsolated:
      for (const Segment& s : segs) kept.push_back(s);
      break;
    case Behavior::kMergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (size_t i = segs.size(); i-- > 0;) {
        const Segment& s = segs[i];
        if (s.is_match && !previous_match && !kept.empty()) {
          kept.back().begin = s.begin;
        } else {
          kept.push_back(s);
        }
        previous_match = s.is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::kContiguous:
      for (const Segment& s : segs) {
        if (s.is_match && previous_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
  }
  for (const Segment& s : kept) {
    if (s.end == s.begin) continue;
    out.push_back(Piece{text.substr(s.begin, s.end - s.begin), piece.at_input_start && s.begin == 0});
  }
}

void PreTokenizer::run(std::vector<Piece>& pieces) const {
  std::vector<Piece> next;
  for (const Step& step : steps_) {
    next.clear();
    next.reserve(pieces.size());
    for (Piece& piece : pieces) {
      if (piece.text.empty()) continue;
      switch (step.kind) {
        case Step::Kind::kSplit:
          split_piece(step, std::move(piece), next);
          break;
        case Step::Kind::kByteLevel: {
          if (step.add_prefix_space && piece.text[0] != ' ') piece.text = prefixed(" ", piece.text);
          const size_t first = next.size();
          if (step.regex) {
            split_piece(step, std::move(piece), next);
          } else {
            next.push_back(std::move(piece));
          }
          for (size_t i = first; i < next.size(); ++i) {
            std::string mapped;
            mapped.reserve(next[i].text.size() * 2);
            byte_level::bytes_to_chars(next[i].text, mapped);
            next[i].text = std::move(mapped);
          }
          break;
        }
        case Step::Kind::kMetaspace: {
          replace_all(piece.text, " ", nullptr, step.replacement);
          const bool starts = piece.text.compare(0, step.replacement.size(), step.replacement) == 0;
          if (!starts && (step.prepend == Step::Prepend::kAlways ||
                          (step.prepend == Step::Prepend::kFirst && piece.at_input_start))) {
            piece.text = prefixed(step.replacement, piece.text);
          }
          if (!step.split) {
            next.push_back(std::move(piece));
            break;
          }
          // Split before every replacement character (MergedWithNext).
          const std::string& t = piece.text;
          size_t begin = 0;
          size_t pos = t.find(step.replacement, 1);
          while (pos != std::string::npos) {
            next.push_back(Piece{t.substr(begin, pos - begin), piece.at_input_start && begin == 0});
            begin = pos;
            pos = t.find(step.replacement, pos + step.replacement.size());
          }
          next.push_back(Piece{t.substr(begin), piece.at_input_start && begin == 0});
          break;
        }
      }
    }
    pieces.swap(next);
  }
  std::erase_if(pieces, [](const Piece& p) { return p.text.empty(); });
}

}  // namespace ferry::llm
