#include "host/http/web_ui.h"

#include <cstddef>

namespace ferry::host {

// Generated at build time from web/ by cmake/embed_web_assets.cmake: one entry per file.
struct EmbeddedWebFile {
  const char* name;  // the file's name in web/, e.g. "app.js"
  const unsigned char* data;
  size_t size_bytes;
};
extern const EmbeddedWebFile kEmbeddedWebFiles[];
extern const size_t kNumEmbeddedWebFiles;

namespace {

const char* content_type_for(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  if (ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

}  // namespace

std::optional<WebAsset> find_web_asset(std::string_view path) {
  std::string_view name;
  if (path == "/" || path == "/index.html") {
    name = "index.html";
  } else if (constexpr std::string_view kPrefix = "/ui/"; path.substr(0, kPrefix.size()) == kPrefix) {
    name = path.substr(kPrefix.size());
  } else {
    return std::nullopt;
  }
  for (size_t i = 0; i < kNumEmbeddedWebFiles; ++i) {
    const EmbeddedWebFile& f = kEmbeddedWebFiles[i];
    if (name == f.name) {
      return WebAsset{content_type_for(name), {reinterpret_cast<const char*>(f.data), f.size_bytes}};
    }
  }
  return std::nullopt;
}

}  // namespace ferry::host
