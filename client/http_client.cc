#include "client/http_client.h"

#include <curl/curl.h>

#include <mutex>

namespace ferry::client {
namespace {

struct WriteState {
  std::string* body;
  const std::function<bool(const std::string&)>* on_event;
  std::string pending;  // SSE bytes not yet split into events
  bool aborted = false;
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<WriteState*>(user);
  size_t len = size * n;
  if (st->on_event == nullptr) {
    st->body->append(data, len);
    return len;
  }
  st->pending.append(data, len);
  for (;;) {
    size_t end = st->pending.find("\n\n");
    if (end == std::string::npos) break;
    std::string event = st->pending.substr(0, end);
    st->pending.erase(0, end + 2);
    std::string payload;
    size_t pos = 0;
    while (pos < event.size()) {
      size_t eol = event.find('\n', pos);
      if (eol == std::string::npos) eol = event.size();
      std::string line = event.substr(pos, eol - pos);
      if (line.rfind("data:", 0) == 0) {
        std::string d = line.substr(5);
        if (!d.empty() && d[0] == ' ') d.erase(0, 1);
        if (!payload.empty()) payload += '\n';
        payload += d;
      }
      pos = eol + 1;
    }
    if (!(*st->on_event)(payload)) {
      st->aborted = true;
      return 0;  // makes curl abort the transfer and close the connection
    }
  }
  return len;
}

}  // namespace

HttpClient::HttpClient(std::string base_url) : base_url_(std::move(base_url)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult HttpClient::get(const std::string& path) { return perform("GET", path, nullptr, nullptr); }

HttpResult HttpClient::request(const std::string& method, const std::string& path) {
  return perform(method, path, nullptr, nullptr);
}

HttpResult HttpClient::post(const std::string& path, const std::string& body) {
  return perform("POST", path, &body, nullptr);
}

HttpResult HttpClient::post_stream(const std::string& path, const std::string& body,
                                   const std::function<bool(const std::string&)>& on_event) {
  return perform("POST", path, &body, &on_event);
}

HttpResult HttpClient::perform(const std::string& method, const std::string& path, const std::string* body,
                               const std::function<bool(const std::string&)>* on_event) {
  CURL* c = static_cast<CURL*>(curl_);
  HttpResult result;
  WriteState st{&result.body, on_event, {}, false};
  std::string url = base_url_ + path;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  if (timeout_ms_ > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms_);
  curl_slist* headers = nullptr;
  if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (method != "GET" && method != "POST") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  }
  CURLcode rc = curl_easy_perform(c);
  if (headers) curl_slist_free_all(headers);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &result.status);
  char* ct = nullptr;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
  if (ct) result.content_type = ct;
  if (rc != CURLE_OK && !(st.aborted && rc == CURLE_WRITE_ERROR)) {
    result.error = curl_easy_strerror(rc);
    if (result.status == 0) result.status = 0;
  }
  if (st.aborted) {
    // Drop the connection so the server sees the client leave.
    curl_easy_cleanup(c);
    curl_ = curl_easy_init();
  }
  return result;
}

}  // namespace ferry::client
