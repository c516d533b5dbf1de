#include "backend/llm/tokenizer/normalizer.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "backend/llm/tokenizer/utf8.h"

namespace ferry::llm {
namespace {

bool is_ascii(const std::string& s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// UTF-8 -> UTF-16 -> transform -> UTF-8 with ICU. `transform` writes into dest and returns the
// length it needs (ICU style). On any ICU failure the text is left unchanged.
template <typename F>
void icu_transform(std::string& s, F transform) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t len16 = 0;
  u_strFromUTF8(nullptr, 0, &len16, s.data(), static_cast<int32_t>(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) return;
  std::u16string src(static_cast<size_t>(len16), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(src.data(), len16, nullptr, s.data(), static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) return;
  std::u16string dst(src.size() * 2 + 8, u'\0');
  err = U_ZERO_ERROR;
  int32_t n = transform(src, dst, &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    dst.assign(static_cast<size_t>(n), u'\0');
    err = U_ZERO_ERROR;
    n = transform(src, dst, &err);
  }
  if (U_FAILURE(err)) return;
  int32_t len8 = 0;
  err = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &len8, dst.data(), n, &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) return;
  std::string out(static_cast<size_t>(len8), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), len8, nullptr, dst.data(), n, &err);
  if (U_FAILURE(err)) return;
  s = std::move(out);
}

const UNormalizer2* icu_normalizer(int form) {
  UErrorCode err = U_ZERO_ERROR;
  switch (form) {
    case 0:
      return unorm2_getNFCInstance(&err);
    case 1:
      return unorm2_getNFDInstance(&err);
    case 2:
      return unorm2_getNFKCInstance(&err);
    default:
      return unorm2_getNFKDInstance(&err);
  }
}

bool is_white_space(uint32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }

}  // namespace

Status parse_pattern(const Json::Value& value, const std::string& path, std::string* literal,
                     std::shared_ptr<const Regex>* regex) {
  if (value.isObject() && value.isMember("String") && value["String"].isString()) {
    *literal = value["String"].asString();
    return Status::Ok();
  }
  if (value.isObject() && value.isMember("Regex") && value["Regex"].isString()) {
    auto re = Regex::compile(value["Regex"].asString());
    if (!re.ok()) return re.status().with_prefix("tokenizer.json: " + path + ".Regex");
    *regex = std::make_shared<const Regex>(std::move(re).value());
    return Status::Ok();
  }
  return Status::InvalidArgument("tokenizer.json: " + path + " must be {\"String\": ...} or {\"Regex\": ...}");
}

void replace_all(std::string& s, const std::string& literal, const Regex* regex, const std::string& content) {
  std::string out;
  size_t last = 0;
  if (regex != nullptr) {
    std::vector<std::pair<size_t, size_t>> matches;
    regex->find_all(s, matches);
    if (matches.empty()) return;
    for (auto [a, b] : matches) {
      out.append(s, last, a - last);
      out += content;
      last = b;
    }
  } else {
    if (literal.empty()) return;
    size_t pos = s.find(literal);
    if (pos == std::string::npos) return;
    while (pos != std::string::npos) {
      out.append(s, last, pos - last);
      out += content;
      last = pos + literal.size();
      pos = s.find(literal, last);
    }
  }
  out.append(s, last, std::string::npos);
  s = std::move(out);
}

Result<Normalizer> Normalizer::from_json(const Json::Value& value, const std::string& path) {
  Normalizer n;
  if (value.isNull()) return n;
  FERRY_RETURN_IF_ERROR(add_steps(value, path, n.steps_));
  return n;
}

Status Normalizer::add_steps(const Json::Value& v, const std::string& path, std::vector<Step>& steps) {
  if (!v.isObject() || !v["type"].isString()) {
    return Status::InvalidArgument("tokenizer.json: " + path + ".type is missing");
  }
  const std::string type = v["type"].asString();
  if (type == "Sequence") {
    const Json::Value& list = v["normalizers"];
    if (!list.isArray()) return Status::InvalidArgument("tokenizer.json: " + path + ".normalizers must be an array");
    for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
      FERRY_RETURN_IF_ERROR(add_steps(list[i], path + ".normalizers[" + std::to_string(i) + "]", steps));
    }
  } else if (type == "NFC") {
    steps.push_back(Unicode{Form::kNfc});
  } else if (type == "NFD") {
    steps.push_back(Unicode{Form::kNfd});
  } else if (type == "NFKC") {
    steps.push_back(Unicode{Form::kNfkc});
  } else if (type == "NFKD") {
    steps.push_back(Unicode{Form::kNfkd});
  } else if (type == "Prepend") {
    steps.push_back(Prepend{v["prepend"].asString()});
  } else if (type == "Append") {
    steps.push_back(Append{v["append"].asString()});
  } else if (type == "Replace") {
    Replace r;
    FERRY_RETURN_IF_ERROR(parse_pattern(v["pattern"], path + ".pattern", &r.literal, &r.regex));
    r.content = v["content"].asString();
    steps.push_back(std::move(r));
  } else if (type == "Lowercase") {
    steps.push_back(Lowercase{});
  } else if (type == "Strip") {
    steps.push_back(Strip{v.get("strip_left", true).asBool(), v.get("strip_right", true).asBool()});
  } else {
    return Status::Unimplemented("tokenizer.json: " + path + ".type '" + type + "' is not supported");
  }
  return Status::Ok();
}

void Normalizer::normalize(std::string& s) const {
  for (const Step& step : steps_) {
    if (const auto* u = std::get_if<Unicode>(&step)) {
      if (s.empty() || is_ascii(s)) continue;  // every normalization form leaves ASCII unchanged
      const UNormalizer2* norm = icu_normalizer(static_cast<int>(u->form));
      if (norm == nullptr) continue;
      icu_transform(s, [norm](const std::u16string& src, std::u16string& dst, UErrorCode* err) {
        return unorm2_normalize(norm, src.data(), static_cast<int32_t>(src.size()), dst.data(),
                                static_cast<int32_t>(dst.size()), err);
      });
    } else if (const auto* p = std::get_if<Prepend>(&step)) {
      if (!s.empty()) s.insert(0, p->text);
    } else if (const auto* a = std::get_if<Append>(&step)) {
      if (!s.empty()) s += a->text;
    } else if (const auto* r = std::get_if<Replace>(&step)) {
      replace_all(s, r->literal, r->regex.get(), r->content);
    } else if (std::holds_alternative<Lowercase>(step)) {
      if (is_ascii(s)) {
        for (char& c : s) {
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        }
        continue;
      }
      icu_transform(s, [](const std::u16string& src, std::u16string& dst, UErrorCode* err) {
        return u_strToLower(dst.data(), static_cast<int32_t>(dst.size()), src.data(), static_cast<int32_t>(src.size()),
                            "", err);
      });
    } else if (const auto* st = std::get_if<Strip>(&step)) {
      size_t begin = 0, end = s.size();
      while (st->left && begin < end) {
        const size_t n = utf8::char_length(s, begin);
        if (n == 0 || !is_white_space(utf8::decode_at(s, begin))) break;
        begin += n;
      }
      while (st->right && end > begin) {
        size_t p = end - 1;
        while (p > begin && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        if (!is_white_space(utf8::decode_at(s, p))) break;
        end = p;
      }
      s = s.substr(begin, end - begin);
    }
  }
}

}  // namespace ferry::llm
