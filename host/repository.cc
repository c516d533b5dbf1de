#include "host/repository.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "host/json_util.h"

namespace fs = std::filesystem;

namespace ferry::host {
namespace {

const std::set<std::string>& host_keys() {
  static const std::set<std::string> kKeys = {"backend", "name", "version_policy"};
  return kKeys;
}

bool parse_version_number(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 18 || s[0] == '0') return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::stoll(s);
  return true;
}

Status apply_version_policy(const Json::Value& config, const std::string& file, std::vector<ModelVersionPath>* versions) {
  std::sort(versions->begin(), versions->end(), [](auto& a, auto& b) { return a.version < b.version; });
  if (!config.isMember("version_policy")) {
    if (versions->size() > 1) versions->erase(versions->begin(), versions->end() - 1);
    return Status::Ok();
  }
  const Json::Value& p = config["version_policy"];
  auto bad = [&](const std::string& what) {
    return Status::InvalidArgument(file + ": key 'version_policy'" + what);
  };
  if (!p.isObject() || p.size() != 1) return bad(" must be an object with one of 'latest', 'all', 'specific'");
  if (p.isMember("latest")) {
    const Json::Value& l = p["latest"];
    if (!l.isObject() || !l["num_versions"].isInt() || l["num_versions"].asInt() < 1) {
      return bad(".latest.num_versions must be an integer >= 1");
    }
    size_t n = static_cast<size_t>(l["num_versions"].asInt());
    if (versions->size() > n) versions->erase(versions->begin(), versions->end() - static_cast<std::ptrdiff_t>(n));
  } else if (p.isMember("all")) {
    if (!p["all"].isObject()) return bad(".all must be an object");
  } else if (p.isMember("specific")) {
    const Json::Value& v = p["specific"]["versions"];
    if (!p["specific"].isObject() || !v.isArray() || v.empty()) return bad(".specific.versions must be a non-empty list");
    std::vector<ModelVersionPath> chosen;
    for (const auto& x : v) {
      if (!x.isInt64() || x.asInt64() < 1) return bad(".specific.versions must hold integers >= 1");
      auto it = std::find_if(versions->begin(), versions->end(), [&](auto& mv) { return mv.version == x.asInt64(); });
      if (it == versions->end()) return bad(".specific.versions names version " + std::to_string(x.asInt64()) + ", which has no folder");
      chosen.push_back(*it);
    }
    std::sort(chosen.begin(), chosen.end(), [](auto& a, auto& b) { return a.version < b.version; });
    chosen.erase(std::unique(chosen.begin(), chosen.end(), [](auto& a, auto& b) { return a.version == b.version; }),
                 chosen.end());
    *versions = std::move(chosen);
  } else {
    return bad(" must be an object with one of 'latest', 'all', 'specific'");
  }
  return Status::Ok();
}

// One line per regular file under `dir` (path relative to it, size, mtime in ns), sorted. Two equal
// strings taken a poll apart mean nothing in the folder was written in between. Bounded so that a
// folder with an absurd number of files cannot make a poll slow; past the bound the state is cut
// short (its files beyond it are then not watched).
std::string files_state(const fs::path& dir) {
  constexpr size_t kMaxFiles = 4096;
  std::vector<std::string> lines;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator() && lines.size() < kMaxFiles; it.increment(ec)) {
    std::error_code stat_ec;
    if (!it->is_regular_file(stat_ec)) continue;
    const auto size = it->file_size(stat_ec);
    const auto mtime = it->last_write_time(stat_ec);
    if (stat_ec) continue;  // removed while listed: the next poll sees the folder without it
    lines.push_back(fs::relative(it->path(), dir, stat_ec).string() + " " + std::to_string(size) + " " +
                    std::to_string(mtime.time_since_epoch().count()));
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

}  // namespace

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

Result<std::vector<std::string>> list_models(const std::string& repo) {
  std::error_code ec;
  std::vector<std::string> names;
  fs::directory_iterator it(repo, ec);
  if (ec) return Status::NotFound("cannot read model repository " + repo + ": " + ec.message());
  for (const auto& entry : it) {
    std::string n = entry.path().filename().string();
    if (entry.is_directory(ec) && valid_model_name(n)) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<ModelSpec> read_model(const std::string& repo, const std::string& name) {
  if (!valid_model_name(name)) return Status::InvalidArgument("invalid model name '" + name + "'");
  std::error_code ec;
  fs::path dir = fs::absolute(fs::path(repo) / name, ec);
  if (ec || !fs::is_directory(dir, ec)) return Status::NotFound("model '" + name + "' is not in the repository");
  ModelSpec spec;
  spec.name = name;
  spec.path = dir.string();
  const std::string config_file = (dir / "config.json").string();
  std::string text;
  if (fs::exists(config_file, ec)) {
    auto t = read_file(config_file);
    if (!t.ok()) return t.status();
    text = t.value();
    auto parsed = parse_json(text, config_file);
    if (!parsed.ok()) return parsed.status();
    spec.config = parsed.value();
    if (!spec.config.isObject()) return Status::InvalidArgument(config_file + ": must hold a JSON object");
  } else {
    spec.config = Json::Value(Json::objectValue);
  }

  const bool snapshot = spec.config.isMember("architectures") && !spec.config.isMember("backend");
  if (snapshot) {
    // A HuggingFace snapshot dropped in as is: version 1 is the folder itself.
    spec.backend = "llm";
    spec.config_path = "";
    spec.backend_config = "{}";
    spec.versions.push_back({1, spec.path});
    spec.config = Json::Value(Json::objectValue);
    spec.config["backend"] = "llm";
    spec.fingerprint = "snapshot:" + text + "|" + files_state(dir);
    return spec;
  }

  spec.config_path = fs::exists(config_file, ec) ? config_file : "";
  const std::string where = spec.config_path.empty() ? (dir / "config.json").string() : spec.config_path;
  spec.backend = "llm";
  if (spec.config.isMember("backend")) {
    if (!spec.config["backend"].isString() || spec.config["backend"].asString().empty()) {
      return Status::InvalidArgument(where + ": key 'backend' must be a non-empty string");
    }
    spec.backend = spec.config["backend"].asString();
  }
  if (spec.config.isMember("name")) {
    if (!spec.config["name"].isString() || spec.config["name"].asString() != name) {
      return Status::InvalidArgument(where + ": key 'name' must equal the folder name '" + name + "'");
    }
  }
  Json::Value backend_part(Json::objectValue);
  for (const auto& key : spec.config.getMemberNames()) {
    if (!host_keys().count(key)) backend_part[key] = spec.config[key];
  }
  spec.backend_config = to_json(backend_part);

  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    int64_t v = 0;
    if (entry.is_directory(ec) && parse_version_number(entry.path().filename().string(), &v)) {
      spec.versions.push_back({v, entry.path().string()});
    }
  }
  if (spec.versions.empty()) {
    return Status::InvalidArgument("model '" + name + "' has no version folder (e.g. " + (dir / "1").string() + ")");
  }
  FERRY_RETURN_IF_ERROR(apply_version_policy(spec.config, where, &spec.versions));
  spec.fingerprint = text;
  for (const auto& v : spec.versions) spec.fingerprint += "|" + std::to_string(v.version) + ":" + files_state(v.path);
  return spec;
}

}  // namespace ferry::host
