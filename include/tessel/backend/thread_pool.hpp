#pragma once
// A persistent thread pool for data-parallel loops.
//
//   tessel::set_num_threads(n);            // n <= 0: all hardware threads
//   int n = tessel::num_threads();          // default: TESSEL_NUM_THREADS or hardware threads
//   tessel::parallel_for(begin, end, grain, [&](index_t lo, index_t hi) { ... });
//   tessel::parallel_for_each_thread([&](int t, int n) { ... });
//
// It is built for many small jobs (one GEMV per layer in LLM decoding, thousands per second):
// workers spin briefly after a job and then sleep on a futex (std::atomic::wait), the caller
// runs tasks too, and tasks are claimed with one CAS on a ticket that carries the job's
// generation, so a worker that wakes late can never touch a finished job. A call made from
// inside a task, or while another thread owns the pool, runs serially in the calling thread.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessel/core/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tessel {

using index_t = std::int64_t;  // the same alias as core/shape.hpp (a redeclaration is allowed)

namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

/// True while this thread runs a pool task (nested parallel calls then run serially).
inline bool& in_parallel_region() noexcept {
  thread_local bool flag = false;
  return flag;
}

class thread_pool {
 public:
  using task_fn = void (*)(void* ctx, index_t task);
  // Ticket layout: generation (32 bits) | next task (16 bits) | task count (16 bits).
  static constexpr index_t max_tasks = 0xffff;
  static constexpr int max_threads = 1024;

  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() { stop_workers(); }

  /// Threads that run a job, the caller included.
  int size() const noexcept { return size_.load(std::memory_order_relaxed); }

  void resize(int n) {
    if (in_parallel_region())
      throw value_error("tessel::set_num_threads: called from inside a parallel region");
    n = clamp_threads(n);
    std::lock_guard<std::mutex> lock(owner_);
    if (n == size()) return;
    stop_workers();
    start_workers(n);
  }

  /// Runs fn(ctx, i) once for every i in [0, ntasks); returns when all have finished and
  /// rethrows the first exception one of them threw.
  void run(index_t ntasks, task_fn fn, void* ctx) {
    if (ntasks <= 0) return;
    std::unique_lock<std::mutex> lock(owner_, std::defer_lock);
    if (ntasks == 1 || in_parallel_region() || size() == 1 || ntasks > max_tasks ||
        !lock.try_lock()) {
      run_serial(ntasks, fn, ctx);
      return;
    }
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    generation_ = (generation_ + 1) & 0xffffffffu;
    ticket_.store((generation_ << 32) | static_cast<std::uint64_t>(ntasks),
                  std::memory_order_release);
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_all();

    in_parallel_region() = true;
    work();
    in_parallel_region() = false;

    // Wait for tasks still running on workers: spin first (they are usually short).
    const auto n = static_cast<std::uint32_t>(ntasks);
    for (int spin = 0; spin < spin_limit; ++spin) {
      if (finished_.load(std::memory_order_acquire) == n) break;
      cpu_relax();
    }
    for (std::uint32_t done; (done = finished_.load(std::memory_order_acquire)) != n;)
      finished_.wait(done, std::memory_order_acquire);

    if (failed_.load(std::memory_order_relaxed)) {
      std::exception_ptr e = std::exchange(error_, nullptr);
      std::rethrow_exception(e);
    }
  }

 private:
  // PAUSE takes ~10-140 cycles depending on the core: ~10-150 us of spinning before sleeping,
  // long enough to catch the next GEMV of a decode step, short enough not to starve others.
  static constexpr int spin_limit = 4000;

  thread_pool() { start_workers(clamp_threads(default_threads())); }

  static int hardware_threads() {
    unsigned h = std::thread::hardware_concurrency();
    return h == 0 ? 1 : static_cast<int>(h);
  }
  static int clamp_threads(int n) {
    if (n <= 0) n = hardware_threads();
    return std::min(n, max_threads);
  }
  static int default_threads() {
    if (const char* env = std::getenv("TESSEL_NUM_THREADS")) {
      char* end = nullptr;
      long v = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && v > 0) return static_cast<int>(std::min(v, 1024L));
    }
    return hardware_threads();
  }

  static void run_serial(index_t ntasks, task_fn fn, void* ctx) {
    bool& flag = in_parallel_region();
    const bool outer = flag;
    flag = true;
    try {
      for (index_t i = 0; i < ntasks; ++i) fn(ctx, i);
    } catch (...) {
      flag = outer;
      throw;
    }
    flag = outer;
  }

  // Claims and runs tasks of the current job until none is left.
  void work() noexcept {
    std::uint64_t t = ticket_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t next = (t >> 16) & 0xffff, count = t & 0xffff;
      if (next >= count) return;
      if (!ticket_.compare_exchange_weak(t, t + (1u << 16), std::memory_order_acq_rel,
                                         std::memory_order_acquire))
        continue;
      // The claim succeeded, so this job cannot finish before we do: fn_/ctx_ are its own.
      if (!failed_.load(std::memory_order_relaxed)) {
        try {
          fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed),
                                              static_cast<index_t>(next));
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_lock_);
          if (!failed_.load(std::memory_order_relaxed)) {
            error_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
          }
        }
      }
      if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == count) finished_.notify_one();
      t = ticket_.load(std::memory_order_acquire);
    }
  }

  // `seen` is read by the spawning thread: a wake-up posted before this thread starts running
  // must not be mistaken for the state to sleep on.
  void worker_loop(std::uint32_t seen) {
    in_parallel_region() = true;
    for (;;) {
      std::uint32_t now = seen;
      for (int spin = 0; spin < spin_limit && now == seen; ++spin) {
        cpu_relax();
        now = wake_.load(std::memory_order_acquire);
      }
      if (now == seen) {
        wake_.wait(seen, std::memory_order_acquire);
        now = wake_.load(std::memory_order_acquire);
      }
      seen = now;
      if (stop_.load(std::memory_order_acquire)) return;
      work();
    }
  }

  void start_workers(int n) {
    stop_.store(false, std::memory_order_relaxed);
    workers_.reserve(static_cast<std::size_t>(n - 1));
    const std::uint32_t seen = wake_.load(std::memory_order_relaxed);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, seen] { worker_loop(seen); });
    size_.store(n, std::memory_order_relaxed);
  }

  void stop_workers() {
    stop_.store(true, std::memory_order_release);
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    size_.store(1, std::memory_order_relaxed);
  }

  std::mutex owner_;  // held by the thread whose job is running (and by resize)
  std::vector<std::thread> workers_;
  std::atomic<int> size_{1};
  std::uint64_t generation_ = 0;
  alignas(64) std::atomic<std::uint64_t> ticket_{0};
  alignas(64) std::atomic<std::uint32_t> wake_{0};
  std::atomic<bool> stop_{false};
  alignas(64) std::atomic<std::uint32_t> finished_{0};
  std::atomic<bool> failed_{false};
  alignas(64) std::atomic<task_fn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::mutex error_lock_;
  std::exception_ptr error_;
};

}  // namespace detail

/// Sets the number of threads parallel loops use (the caller included); n <= 0 means all
/// hardware threads. Throws tessel::value_error when called from inside a parallel loop.
inline void set_num_threads(int n) {
  detail::thread_pool::instance().resize(n);
}

/// Threads parallel loops use: TESSEL_NUM_THREADS, else all hardware threads, until changed.
inline int num_threads() {
  return detail::thread_pool::instance().size();
}

/// Calls f(lo, hi) on disjoint chunks that cover [begin, end), in parallel. Chunk bounds are
/// begin + multiples of grain (grain < 1 counts as 1); there are at most 4 chunks per thread so
/// that a thread descheduled by the OS does not hold up the rest. The calling thread runs
/// chunks too; the first exception f throws is rethrown here after all chunks have ended.
template <class F>
void parallel_for(index_t begin, index_t end, index_t grain, F&& f) {
  if (end <= begin) return;
  grain = std::max<index_t>(grain, 1);
  const index_t units = (end - begin + grain - 1) / grain;
  auto& pool = detail::thread_pool::instance();
  const index_t ntasks = std::min<index_t>(units, 4 * static_cast<index_t>(pool.size()));
  if (ntasks <= 1 || pool.size() == 1 || detail::in_parallel_region()) {
    f(begin, end);
    return;
  }
  struct context {
    std::remove_reference_t<F>* f;
    index_t begin, end, grain, units, ntasks;
  } ctx{&f, begin, end, grain, units, ntasks};
  pool.run(
      ntasks,
      [](void* p, index_t task) {
        auto& c = *static_cast<context*>(p);
        const index_t lo = c.begin + c.grain * (c.units * task / c.ntasks);
        const index_t hi = std::min(c.end, c.begin + c.grain * (c.units * (task + 1) / c.ntasks));
        (*c.f)(lo, hi);
      },
      &ctx);
}

/// Calls f(t, n) once for every t in [0, n), n = num_threads(), usually each on its own
/// thread. Calls must not wait for one another: two of them may run one after the other on
/// the same thread. Nested calls get n = 1.
template <class F>
void parallel_for_each_thread(F&& f) {
  auto& pool = detail::thread_pool::instance();
  const int n = detail::in_parallel_region() ? 1 : pool.size();
  if (n == 1) {
    f(0, 1);
    return;
  }
  struct context {
    std::remove_reference_t<F>* f;
    int n;
  } ctx{&f, n};
  pool.run(
      n,
      [](void* p, index_t task) {
        auto& c = *static_cast<context*>(p);
        (*c.f)(static_cast<int>(task), c.n);
      },
      &ctx);
}

}  // namespace tessel
