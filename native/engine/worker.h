// One dedicated thread per engine that runs queued jobs in order. All LibTorch work of an engine
// runs here (never on libuv's pool, which stays free for sharp and file I/O).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace engine {

class Worker {
 public:
  // `idlePoll(finishAll)` runs on the worker thread after each job and while no job is queued:
  // it finishes work the jobs left in flight (launched train steps) and returns whether some is
  // still unfinished; while it is, the worker polls again every kPollInterval, or runs the next
  // job as soon as one arrives. At stop it is called once with finishAll = true.
  explicit Worker(std::function<bool(bool finishAll)> idlePoll = nullptr)
      : idlePoll_(std::move(idlePoll)), thread_([this] { run(); }) {}
  ~Worker() { stop(); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
  }

  // The thread ends once the queued jobs are done; returns at once.
  void requestStop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
  }

  // At process exit: drops the jobs not yet started, lets the running one finish, then joins, so
  // no LibTorch work is still running when exit() destroys LibTorch's static objects.
  void abandon() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.clear();
    }
    stop();
  }

  // Finishes the queued jobs, then joins. Safe to call more than once.
  void stop() {
    requestStop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  static constexpr std::chrono::microseconds kPollInterval{50};

  void run() {
    bool polling = false;  // work is in flight: wake up now and then to finish it
    for (;;) {
      std::function<void()> job;
      bool stop = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        const auto woken = [this] { return stopping_ || !jobs_.empty(); };
        if (polling) {
          wake_.wait_for(lock, kPollInterval, woken);
        } else {
          wake_.wait(lock, woken);
        }
        if (!jobs_.empty()) {
          job = std::move(jobs_.front());
          jobs_.pop_front();
        } else if (stopping_) {
          stop = true;  // stopping and drained
        }
      }
      if (stop) {
        if (idlePoll_) idlePoll_(/*finishAll=*/true);
        return;
      }
      if (job) job();
      polling = idlePoll_ && idlePoll_(/*finishAll=*/false);
    }
  }

  std::function<bool(bool)> idlePoll_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace engine
