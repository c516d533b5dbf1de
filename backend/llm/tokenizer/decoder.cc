#include "backend/llm/tokenizer/decoder.h"

#include "backend/llm/tokenizer/byte_level.h"
#include "backend/llm/tokenizer/normalizer.h"
#include "backend/llm/tokenizer/utf8.h"

namespace ferry::llm {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xNN>" -> the byte NN, or -1.
int byte_token(std::string_view t) {
  if (t.size() != 6 || !t.starts_with("<0x") || t.back() != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

// Removes up to `start` leading and `stop` trailing copies of character c from t.
void strip_chars(std::string& t, const std::string& c, size_t start, size_t stop) {
  if (c.empty()) return;
  size_t begin = 0;
  for (size_t i = 0; i < start && t.compare(begin, c.size(), c) == 0; ++i) begin += c.size();
  size_t end = t.size();
  for (size_t i = 0; i < stop && end >= begin + c.size() && t.compare(end - c.size(), c.size(), c) == 0; ++i) {
    end -= c.size();
  }
  t = t.substr(begin, end - begin);
}

}  // namespace

Result<Decoder> Decoder::from_json(const Json::Value& value, const std::string& path) {
  Decoder d;
  if (value.isNull()) {
    d.join_with_space_ = true;
    return d;
  }
  bool fused = false;
  FERRY_RETURN_IF_ERROR(d.add_steps(value, path, &fused));
  return d;
}

Status Decoder::add_steps(const Json::Value& v, const std::string& path, bool* fused) {
  if (!v.isObject() || !v["type"].isString()) {
    return Status::InvalidArgument("tokenizer.json: " + path + ".type is missing");
  }
  const std::string type = v["type"].asString();
  Step step{};
  if (type == "Sequence") {
    const Json::Value& list = v["decoders"];
    if (!list.isArray()) return Status::InvalidArgument("tokenizer.json: " + path + ".decoders must be an array");
    for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
      FERRY_RETURN_IF_ERROR(add_steps(list[i], path + ".decoders[" + std::to_string(i) + "]", fused));
    }
    return Status::Ok();
  } else if (type == "Fuse") {
    *fused = true;
    return Status::Ok();
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    *fused = true;  // HF's ByteLevel decoder returns the whole text as one token
  } else if (type == "ByteFallback") {
    step.kind = Step::Kind::kByteFallback;
  } else if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    FERRY_RETURN_IF_ERROR(parse_pattern(v["pattern"], path + ".pattern", &step.literal, &step.regex));
    step.content = v["content"].asString();
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    step.literal = v.get("content", " ").asString();
    step.start = v.get("start", 0).asUInt();
    step.stop = v.get("stop", 0).asUInt();
    if (*fused) {
      if (step.stop > 0) {
        return Status::Unimplemented("tokenizer.json: " + path + ".stop > 0 after Fuse is not supported");
      }
      strip_char_ = step.literal;
      strip_start_ = step.start;
      return Status::Ok();
    }
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::kMetaspace;
    step.literal = v.get("replacement", "\xE2\x96\x81").asString();
    if (v.isMember("prepend_scheme")) {
      step.metaspace_strip_first = v["prepend_scheme"].asString() != "never";
    } else {
      step.metaspace_strip_first = v.get("add_prefix_space", true).asBool();
    }
  } else {
    return Status::Unimplemented("tokenizer.json: " + path + ".type '" + type + "' is not supported");
  }
  steps_.push_back(std::move(step));
  return Status::Ok();
}

void Decoder::append_token(std::string_view token, size_t index, std::string& bytes) const {
  if (join_with_space_) {
    if (index > 0) bytes.push_back(' ');
    bytes.append(token);
    return;
  }
  std::string t(token);
  for (const Step& s : steps_) {
    switch (s.kind) {
      case Step::Kind::kReplace:
        replace_all(t, s.literal, s.regex.get(), s.content);
        break;
      case Step::Kind::kStrip:
        strip_chars(t, s.literal, s.start, s.stop);
        break;
      case Step::Kind::kMetaspace:
        replace_all(t, s.literal, nullptr, (index == 0 && s.metaspace_strip_first) ? std::string() : std::string(" "));
        break;
      case Step::Kind::kByteFallback: {
        const int b = byte_token(t);
        if (b >= 0) t.assign(1, static_cast<char>(b));
        break;
      }
      case Step::Kind::kByteLevel: {
        std::string out;
        if (byte_level::chars_to_bytes(t, out)) t = std::move(out);
        break;
      }
    }
  }
  bytes += t;
}

std::string Decoder::finish(std::string_view bytes) const {
  std::string text;
  text.reserve(bytes.size());
  utf8::append_lossy(bytes, /*final=*/true, text);
  if (strip_start_ > 0) {
    size_t begin = 0;
    for (size_t i = 0; i < strip_start_ && text.compare(begin, strip_char_.size(), strip_char_) == 0; ++i) {
      begin += strip_char_.size();
    }
    text.erase(0, begin);
  }
  return text;
}

}  // namespace ferry::llm
