#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tessel/backend/thread_pool.hpp"

using tessel::index_t;

namespace {

// Restores the thread count a test changed, so tests do not leak settings into each other.
struct threads_guard {
  int saved = tessel::num_threads();
  ~threads_guard() { tessel::set_num_threads(saved); }
};

}  // namespace

TEST_CASE("parallel_for covers every index exactly once, in grain-aligned chunks") {
  threads_guard guard;
  std::mt19937_64 rng(7);
  for (int threads = 1; threads <= 4; ++threads) {
    tessel::set_num_threads(threads);
    CHECK(tessel::num_threads() == threads);
    for (int trial = 0; trial < 60; ++trial) {
      const index_t begin = static_cast<index_t>(rng() % 50) - 20;
      const index_t len = static_cast<index_t>(rng() % 3000);
      const index_t grain = static_cast<index_t>(rng() % 70);  // 0 counts as 1
      const index_t end = begin + len;
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(len));
      std::atomic<int> bad_chunks{0};
      tessel::parallel_for(begin, end, grain, [&](index_t lo, index_t hi) {
        const index_t g = grain < 1 ? 1 : grain;
        if (lo < begin || hi > end || lo >= hi || (lo - begin) % g != 0) ++bad_chunks;
        for (index_t i = lo; i < hi; ++i) ++hits[static_cast<std::size_t>(i - begin)];
      });
      CHECK(bad_chunks.load() == 0);
      int wrong = 0;
      for (auto& h : hits) wrong += h.load() != 1;
      CHECK_MESSAGE(wrong == 0, "threads=", threads, " begin=", begin, " len=", len);
    }
  }
}

TEST_CASE("parallel_for uses several threads when it has several") {
  threads_guard guard;
  tessel::set_num_threads(3);
  std::mutex m;
  std::set<std::thread::id> ids;
  // Long enough chunks that workers wake up before the caller has done everything.
  for (int attempt = 0; attempt < 20 && ids.size() < 2; ++attempt) {
    tessel::parallel_for(0, 12, 1, [&](index_t, index_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      std::lock_guard<std::mutex> lock(m);
      ids.insert(std::this_thread::get_id());
    });
  }
  CHECK(ids.size() >= 2);
}

TEST_CASE("an empty or reversed range calls nothing") {
  int calls = 0;
  tessel::parallel_for(5, 5, 1, [&](index_t, index_t) { ++calls; });
  tessel::parallel_for(5, 2, 1, [&](index_t, index_t) { ++calls; });
  CHECK(calls == 0);
}

TEST_CASE("an exception thrown in a chunk is rethrown in the caller, and the pool still works") {
  threads_guard guard;
  for (int threads = 1; threads <= 4; ++threads) {
    tessel::set_num_threads(threads);
    CHECK_THROWS_AS(tessel::parallel_for(0, 1000, 1,
                                         [&](index_t lo, index_t hi) {
                                           if (lo <= 777 && 777 < hi)
                                             throw std::domain_error("chunk with 777");
                                         }),
                    std::domain_error);
    std::atomic<index_t> sum{0};
    tessel::parallel_for(0, 1000, 7, [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i) sum += i;
    });
    CHECK(sum.load() == 999 * 1000 / 2);
  }
}

TEST_CASE("nested parallel_for runs serially inside a chunk and still covers its range") {
  threads_guard guard;
  tessel::set_num_threads(3);
  const index_t n = 40, m = 33;
  std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n * m));
  tessel::parallel_for(0, n, 1, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      int inner_calls = 0;
      tessel::parallel_for(0, m, 1, [&](index_t a, index_t b) {
        ++inner_calls;  // not atomic: a nested call must run in this thread only
        for (index_t j = a; j < b; ++j) ++hits[static_cast<std::size_t>(i * m + j)];
      });
      CHECK(inner_calls == 1);
    }
  });
  int wrong = 0;
  for (auto& h : hits) wrong += h.load() != 1;
  CHECK(wrong == 0);
  // Changing the thread count from inside a loop is refused with a clear error.
  CHECK_THROWS_AS(
      tessel::parallel_for(0, 4, 1, [](index_t, index_t) { tessel::set_num_threads(2); }),
      tessel::value_error);
}

TEST_CASE("parallel_for_each_thread calls every thread id once") {
  threads_guard guard;
  for (int threads = 1; threads <= 4; ++threads) {
    tessel::set_num_threads(threads);
    std::vector<std::atomic<int>> seen(static_cast<std::size_t>(threads));
    std::atomic<int> wrong_n{0};
    tessel::parallel_for_each_thread([&](int t, int n) {
      if (n != threads) ++wrong_n;
      ++seen[static_cast<std::size_t>(t)];
    });
    CHECK(wrong_n.load() == 0);
    for (auto& s : seen) CHECK(s.load() == 1);
  }
}

TEST_CASE("set_num_threads: n <= 0 means all hardware threads; many small jobs in a row") {
  threads_guard guard;
  tessel::set_num_threads(0);
  const unsigned hw = std::thread::hardware_concurrency();
  CHECK(tessel::num_threads() == static_cast<int>(hw == 0 ? 1 : hw));
  tessel::set_num_threads(2);
  // Back-to-back tiny jobs exercise the spin/sleep hand-off and late-waking workers.
  index_t total = 0;
  for (int job = 0; job < 20000; ++job) {
    std::atomic<index_t> s{0};
    tessel::parallel_for(0, 8, 1, [&](index_t lo, index_t hi) { s += hi - lo; });
    total += s.load();
  }
  CHECK(total == 20000 * 8);
}

TEST_CASE("two user threads may call parallel_for at the same time") {
  threads_guard guard;
  tessel::set_num_threads(2);
  std::atomic<index_t> a{0}, b{0};
  auto body = [](std::atomic<index_t>& s) {
    for (int rep = 0; rep < 300; ++rep)
      tessel::parallel_for(0, 100, 3, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) s += i;
      });
  };
  std::thread t1(body, std::ref(a)), t2(body, std::ref(b));
  t1.join();
  t2.join();
  CHECK(a.load() == 300 * 4950);
  CHECK(b.load() == 300 * 4950);
}
