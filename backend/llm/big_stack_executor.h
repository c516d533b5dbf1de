// BigStackExecutor: runs tasks synchronously on its own threads, which have a large stack.
//
// Why: a backend's ferry_model_submit runs on the caller's thread, and the HTTP frontend's
// threads (civetweb's workers) have a small fixed stack (100 KiB in Debian's build). Rendering a
// chat template (a recursive interpreter) and tokenizing a long prompt need more, so the llm backend
// does that work here and waits for it: submit keeps its synchronous errors (400, 429) and the
// caller's stack stays shallow.
//
// Thread-safety: run() may be called from any number of threads at once; each call blocks until
// its task has run on one of the executor's threads.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace ferry::llm {

class BigStackExecutor {
 public:
  // Starts `num_threads` threads with `stack_bytes` of stack each.
  BigStackExecutor(int num_threads, size_t stack_bytes);
  ~BigStackExecutor();  // finishes queued tasks, then joins
  BigStackExecutor(const BigStackExecutor&) = delete;
  BigStackExecutor& operator=(const BigStackExecutor&) = delete;

  // Runs `task` on an executor thread and returns when it has finished. Exceptions escaping the
  // task are caught there and rethrown here.
  void run(const std::function<void()>& task);

 private:
  struct Job {
    const std::function<void()>* task;
    bool done = false;
    std::exception_ptr error;
  };
  static void* thread_main(void* self);
  void loop();

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Job*> queue_;  // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  std::vector<pthread_t> threads_;
};

}  // namespace ferry::llm
