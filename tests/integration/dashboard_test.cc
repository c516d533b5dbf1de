// docs/grafana-dashboard.json against a live ferry-server: every metric that a panel's PromQL (or
// the dashboard's model variable) reads exists on /metrics once the echo model and tiny-llama
// have served a few requests, the LLM ones with a model="tiny-llama" series; and every panel's
// query is valid PromQL (`promtool check rules`, skipped without promtool). A renamed metric or a
// typo in the dashboard fails here instead of as an empty panel in production.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <string_view>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;
using client::HttpClient;

bool is_identifier_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool is_identifier_char(char c) { return is_identifier_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

// Index just past the bracketed group that starts at text[i] (one of "{[("), skipping quoted
// strings inside it; text.size() when it does not close.
size_t skip_group(std::string_view text, size_t i) {
  const char open = text[i];
  const char close = open == '{' ? '}' : open == '[' ? ']' : ')';
  int depth = 0;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"' || c == '\'' || c == '`') {
      for (++i; i < text.size() && text[i] != c; ++i) {
        if (text[i] == '\\' && c != '`') ++i;
      }
    } else if (c == open) {
      ++depth;
    } else if (c == close && --depth == 0) {
      return i + 1;
    }
  }
  return text.size();
}

// The metric names a PromQL expression reads: identifiers that are not functions (followed by
// "("), aggregation operators, keywords, label names (inside {...} or after by/without/on/
// ignoring/group_left/group_right), durations (inside [...]), numbers or strings.
std::set<std::string> metric_names(std::string_view expr) {
  static const std::set<std::string, std::less<>> kNotMetrics = {
      "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
      "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
      "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"};
  static const std::set<std::string, std::less<>> kLabelListFollows = {"by", "without", "on", "ignoring",
                                                                        "group_left", "group_right"};
  std::set<std::string> names;
  size_t i = 0;
  while (i < expr.size()) {
    char c = expr[i];
    if (c == '{' || c == '[') {
      i = skip_group(expr, i);
    } else if (c == '"' || c == '\'' || c == '`') {
      for (++i; i < expr.size() && expr[i] != c; ++i) {
        if (expr[i] == '\\' && c != '`') ++i;
      }
      ++i;
    } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && i + 1 < expr.size() &&
                                                              std::isdigit(static_cast<unsigned char>(expr[i + 1])))) {
      while (i < expr.size() && (is_identifier_char(expr[i]) || expr[i] == '.')) ++i;  // 0.99, 1e3, 5m
    } else if (c == '$') {
      for (++i; i < expr.size() && (is_identifier_char(expr[i]) || expr[i] == '{' || expr[i] == '}'); ++i) {
      }
    } else if (is_identifier_start(c)) {
      size_t begin = i;
      while (i < expr.size() && is_identifier_char(expr[i])) ++i;
      std::string_view word = expr.substr(begin, i - begin);
      size_t next = expr.find_first_not_of(" \t\n", i);
      if (kLabelListFollows.count(word) && next != std::string_view::npos && expr[next] == '(') {
        i = skip_group(expr, next);
      } else if (!kNotMetrics.count(word) && (next == std::string_view::npos || expr[next] != '(')) {
        names.emplace(word);
      }
    } else {
      ++i;
    }
  }
  return names;
}

TEST(Dashboard, MetricNamesOfPromQl) {
  EXPECT_EQ(metric_names(R"(sum by (model, le) (rate(ferry_a_bucket{model=~"$model", x="a{b}"}[$__rate_interval])))"),
            (std::set<std::string>{"ferry_a_bucket"}));
  EXPECT_EQ(metric_names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) / on(model) group_left "
                         "ferry_b > 0 and c offset 5m"),
            (std::set<std::string>{"a_bucket", "ferry_b", "c"}));
  EXPECT_EQ(metric_names("sum(rate(x_total[1m])) / sum without (instance) (y)"), (std::set<std::string>{"x_total", "y"}));
  EXPECT_EQ(metric_names("label_values(ferry_llm_generation_tokens_total, model)"),
            (std::set<std::string>{"ferry_llm_generation_tokens_total", "model"}));
}

struct Query {
  std::string where;  // the panel's title, or "variable <name>"
  std::string expr;
  bool promql;        // false for Grafana's label_values(...) variable queries
};

std::vector<Query> dashboard_queries() {
  std::ifstream in(fs::path(source_dir()) / "docs" / "grafana-dashboard.json");
  std::stringstream text;
  text << in.rdbuf();
  Json::Value dashboard = parse(text.str());
  std::vector<Query> out;
  std::function<void(const Json::Value&)> walk = [&](const Json::Value& panels) {
    for (const auto& panel : panels) {
      for (const auto& target : panel["targets"]) {
        if (target.isMember("expr")) out.push_back({panel["title"].asString(), target["expr"].asString(), true});
      }
      walk(panel["panels"]);  // panels of a collapsed row
    }
  };
  walk(dashboard["panels"]);
  for (const auto& variable : dashboard["templating"]["list"]) {
    if (variable["type"].asString() != "query") continue;
    const Json::Value& q = variable["query"];
    std::string expr = q.isObject() ? q["query"].asString() : q.asString();
    std::smatch m;
    // label_values(metric, label): the metric must exist; the label is checked below as well.
    if (std::regex_search(expr, m, std::regex(R"(label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,)"))) {
      out.push_back({"variable " + variable["name"].asString(), m[1].str(), false});
    }
  }
  return out;
}

TEST(Dashboard, EveryMetricOfEveryPanelIsServed) {
  const auto queries = dashboard_queries();
  ASSERT_GT(queries.size(), 15u);

  TempDir repo;
  add_echo_model(repo.path(), "echo");
  fs::copy(fs::path(default_repository()) / "tiny-llama", repo.path() + "/tiny-llama", fs::copy_options::recursive);
  auto server = ServerProcess::start(repo.path());
  ASSERT_NE(server, nullptr);
  HttpClient http(server->http_url());
  ASSERT_EQ(http.post("/v2/models/echo/infer", infer_body("x")).status, 200);
  // The same prompt twice (a prefix-cache hit), a chat, and a stream: the requests a dashboard shows.
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(http.post("/v2/models/tiny-llama/generate", R"({"text_input":"The ferry crossed the wide river at dawn,)"
                                                           R"( and the passengers","max_tokens":4})")
                  .status,
              200);
  }
  ASSERT_EQ(http.post("/v1/chat/completions",
                      R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],"max_tokens":3})")
                .status,
            200);
  int events = 0;
  http.post_stream("/v1/chat/completions",
                   R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"stream":true})",
                   [&](const std::string&) { return ++events > 0; });
  EXPECT_GT(events, 0);
  const std::string metrics = http.get("/metrics").body;

  // Sample names served, and those with a tiny-llama series.
  std::set<std::string> served, served_for_tiny_llama;
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::string name = line.substr(0, line.find_first_of("{ "));
    served.insert(name);
    if (line.find("model=\"tiny-llama\"") != std::string::npos) served_for_tiny_llama.insert(name);
  }
  ASSERT_GT(served.size(), 20u) << metrics;

  std::set<std::string> checked;
  for (const auto& q : queries) {
    const auto names = metric_names(q.expr);
    EXPECT_FALSE(names.empty()) << q.where << ": no metric in " << q.expr;
    for (const auto& name : names) {
      checked.insert(name);
      EXPECT_TRUE(served.count(name)) << q.where << ": " << name << " is not on /metrics\n  query: " << q.expr;
      if (name.rfind("ferry_llm_", 0) == 0) {
        EXPECT_TRUE(served_for_tiny_llama.count(name))
            << q.where << ": " << name << " has no model=\"tiny-llama\" series (the $model filter would show nothing)";
      }
    }
  }
  EXPECT_GT(checked.size(), 15u);
}

TEST(Dashboard, EveryPanelQueryIsValidPromQl) {
  if (run_command("command -v promtool").second != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus; scripts/setup installs it)";
  }
  // Each query becomes a recording rule, which `promtool check rules` parses; Grafana's variables
  // are replaced by what Grafana would put there.
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  int n = 0;
  for (const auto& q : dashboard_queries()) {
    if (!q.promql) continue;
    std::string expr = std::regex_replace(q.expr, std::regex(R"(\$__rate_interval|\$__interval)"), "1m");
    expr = std::regex_replace(expr, std::regex(R"(\$\{?model\}?)"), ".*");
    Json::Value quoted(expr);  // a JSON string is a valid YAML double-quoted scalar
    rules += "      - record: dashboard:query" + std::to_string(n++) + "\n        expr: " + dump(quoted) + "\n";
  }
  ASSERT_GT(n, 15);
  TempDir dir;
  write_file(dir / "rules.yml", rules);
  auto [out, rc] = run_command("promtool check rules '" + dir / "rules.yml" + "'");
  EXPECT_EQ(rc, 0) << out << "\n" << rules;
  EXPECT_NE(out.find("SUCCESS: " + std::to_string(n) + " rules found"), std::string::npos) << out;
}

}  // namespace
}  // namespace ferry::testing
