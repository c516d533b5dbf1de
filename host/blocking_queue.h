// A queue between the threads that answer requests (backends' respond calls) and the one frontend
// thread that waits for the answers of a request: push from any thread, pop by one reader.
//
// Wake-ups are coalesced: push notifies only when the queue was empty, so a reader that drains
// everything waiting (try_pop until empty, then pop) is woken once per batch, not once per item.
// Thread-safety: every member is thread-safe; meant for one reader.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

namespace ferry::host {

template <typename T>
class BlockingQueue {
 public:
  void push(T&& item) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> lock(mu_);
      was_empty = items_.empty();
      items_.push_back(std::move(item));
    }
    if (was_empty) cv_.notify_one();  // else the reader is awake, or was told already
  }
  // Waits for the next item.
  T pop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !items_.empty(); });
    return take();
  }
  // The next item, or nullopt when none came within `timeout`.
  std::optional<T> pop_for(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !items_.empty(); })) return std::nullopt;
    return take();
  }
  // The next item if one is waiting, without blocking.
  std::optional<T> try_pop() {
    std::lock_guard<std::mutex> lock(mu_);
    if (items_.empty()) return std::nullopt;
    return take();
  }

 private:
  T take() {
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_;  // guarded by mu_
};

}  // namespace ferry::host
