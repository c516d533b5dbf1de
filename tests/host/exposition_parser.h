// A strict reader of the Prometheus text exposition format (0.0.4), written from the format's
// description, for checking what /metrics serves. Returns an error string for the first violation.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace ferry::testing {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> counter|gauge|histogram|...
  std::map<std::string, std::string> help;
  std::vector<Sample> samples;

  // Value of the sample with this name whose labels include `match`; NaN when absent.
  double value(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    for (const auto& s : samples) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : match) {
        auto it = s.labels.find(k);
        if (it == s.labels.end() || it->second != v) ok = false;
      }
      if (ok) return s.value;
    }
    return std::nan("");
  }
};

// Parses `text`; on a format violation returns false and sets *error.
inline bool parse_exposition(const std::string& text, Exposition* out, std::string* error) {
  static const std::regex kName("[a-zA-Z_:][a-zA-Z0-9_:]*");
  static const std::regex kLabel("[a-zA-Z_][a-zA-Z0-9_]*");
  std::istringstream in(text);
  std::string line;
  int n = 0;
  std::string current_family;
  std::set<std::string> finished_families;
  auto fail = [&](const std::string& why) {
    *error = "line " + std::to_string(n) + ": " + why + ": '" + line + "'";
    return false;
  };
  if (!text.empty() && text.back() != '\n') {
    *error = "exposition must end with a newline";
    return false;
  }
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ls(line);
      std::string hash, kind, name;
      ls >> hash >> kind >> name;
      if (kind != "HELP" && kind != "TYPE") continue;  // plain comment
      if (!std::regex_match(name, kName)) return fail("bad metric name in comment");
      if (kind == "TYPE") {
        std::string type;
        ls >> type;
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary", "untyped"};
        if (!kTypes.count(type)) return fail("unknown type");
        if (out->types.count(name)) return fail("second TYPE line for a family");
        out->types[name] = type;
      } else {
        if (out->help.count(name)) return fail("second HELP line for a family");
        std::string rest;
        std::getline(ls, rest);
        out->help[name] = rest.empty() ? "" : rest.substr(1);
      }
      if (name != current_family) {
        if (finished_families.count(name)) return fail("family lines are not contiguous");
        if (!current_family.empty()) finished_families.insert(current_family);
        current_family = name;
      }
      continue;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!std::regex_match(s.name, kName)) return fail("bad sample name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos) return fail("label without '='");
        std::string key = line.substr(i, eq - i);
        if (!std::regex_match(key, kLabel)) return fail("bad label name");
        if (eq + 1 >= line.size() || line[eq + 1] != '"') return fail("label value not quoted");
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\') {
            if (j + 1 >= line.size()) return fail("dangling escape");
            char e = line[++j];
            if (e == 'n') value += '\n';
            else if (e == '\\' || e == '"') value += e;
            else return fail("bad escape in label value");
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) return fail("unterminated label value");
        if (s.labels.count(key)) return fail("duplicate label");
        s.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return fail("unterminated label set");
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') return fail("no space before the value");
    std::string value = line.substr(i + 1);
    if (value == "+Inf") s.value = HUGE_VAL;
    else if (value == "-Inf") s.value = -HUGE_VAL;
    else if (value == "NaN") s.value = std::nan("");
    else {
      char* end = nullptr;
      s.value = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0') return fail("value is not a number");
    }
    // The sample must belong to the family declared just above it.
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string sfx = suffix;
      if (family.size() > sfx.size() && family.compare(family.size() - sfx.size(), sfx.size(), sfx) == 0 &&
          out->types.count(family.substr(0, family.size() - sfx.size())) &&
          out->types[family.substr(0, family.size() - sfx.size())] == "histogram") {
        family = family.substr(0, family.size() - sfx.size());
        break;
      }
    }
    if (family != current_family) return fail("sample outside its family's block");
    out->samples.push_back(std::move(s));
  }
  // Histograms: cumulative buckets, +Inf equal to _count.
  for (const auto& [family, type] : out->types) {
    if (type != "histogram") continue;
    std::map<std::string, std::vector<std::pair<double, double>>> by_series;  // labels w/o le -> (le, count)
    for (const auto& s : out->samples) {
      if (s.name != family + "_bucket") continue;
      auto labels = s.labels;
      if (!labels.count("le")) {
        *error = family + ": bucket without le";
        return false;
      }
      std::string le = labels["le"];
      labels.erase("le");
      std::string key;
      for (const auto& [k, v] : labels) key += k + "=" + v + ",";
      by_series[key].push_back({le == "+Inf" ? HUGE_VAL : std::strtod(le.c_str(), nullptr), s.value});
    }
    for (const auto& [key, buckets] : by_series) {
      for (size_t i = 1; i < buckets.size(); ++i) {
        if (!(buckets[i].first > buckets[i - 1].first) || buckets[i].second < buckets[i - 1].second) {
          *error = family + "{" + key + "}: buckets not increasing and cumulative";
          return false;
        }
      }
      if (buckets.empty() || buckets.back().first != HUGE_VAL) {
        *error = family + "{" + key + "}: no +Inf bucket";
        return false;
      }
    }
  }
  return true;
}

}  // namespace ferry::testing
