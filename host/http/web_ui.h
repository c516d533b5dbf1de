// The chat page that ferry-server serves at "/" (web/index.html, web/app.js, web/style.css),
// compiled into the binary at build time (host/CMakeLists.txt turns web/ into web_assets.cc), so
// the server needs no files beside it and the page works without a network. --no-web-ui turns it
// off. The page is static: it holds no secret and talks to the server only through the public API
// (/v1/models, /v1/chat/completions), with the API key the user types, so it is served without one.
// Thread-safety: everything here is immutable after static initialisation.
#pragma once

#include <optional>
#include <string_view>

namespace ferry::host {

struct WebAsset {
  const char* content_type;  // with charset; a string literal
  std::string_view body;          // static storage
};

// The asset served at `path` (a request's path, without query), or nullopt when none is. "/" and
// "/index.html" are the page; the other files of web/ are under "/ui/" ("/ui/app.js").
std::optional<WebAsset> find_web_asset(std::string_view path);

// Header lines (each ending in \r\n) sent with every asset. The Content-Security-Policy lets the
// page run only its own script and style and connect only to this server, so that even text that
// slipped into the DOM as markup could neither run nor load anything; the page also never writes
// model text as markup (web/app.js renders it with textContent).
inline constexpr std::string_view kWebAssetHeaders =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cache-Control: no-cache\r\n";

}  // namespace ferry::host
