#include "backend/llm/big_stack_executor.h"

#include <exception>

#include "common/status.h"

namespace ferry::llm {

BigStackExecutor::BigStackExecutor(int num_threads, size_t stack_bytes) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  for (int i = 0; i < num_threads; ++i) {
    pthread_t t;
    FERRY_CHECK(pthread_create(&t, &attr, &BigStackExecutor::thread_main, this) == 0);
    threads_.push_back(t);
  }
  pthread_attr_destroy(&attr);
}

BigStackExecutor::~BigStackExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (pthread_t t : threads_) pthread_join(t, nullptr);
}

void* BigStackExecutor::thread_main(void* self) {
  static_cast<BigStackExecutor*>(self)->loop();
  return nullptr;
}

void BigStackExecutor::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping and drained
    Job* job = queue_.front();
    queue_.pop_front();
    lock.unlock();
    try {
      (*job->task)();
    } catch (...) {
      job->error = std::current_exception();
    }
    lock.lock();
    job->done = true;
    done_cv_.notify_all();
  }
}

void BigStackExecutor::run(const std::function<void()>& task) {
  Job job{&task, false, nullptr};
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&job);
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return job.done; });
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace ferry::llm
