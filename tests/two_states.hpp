#pragma once
// Two sequences over one const decoder (models::Decoder), stepped token by token by two
// threads, taking turns and then free-running: each must give exactly the logits it gives
// alone. Shared by the recurrent models' tests.

#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <random>
#include <span>
#include <tessel/backend/thread_pool.hpp>
#include <thread>
#include <vector>

namespace tessel::test {

/// Every step's logits of ids fed one token at a time through the state s.
template <class M>
std::vector<float> step_all(const M& m, typename M::State& s, const std::vector<int>& ids,
                            const std::function<void(index_t)>& before_step = {}) {
  std::vector<float> out;
  for (index_t t = 0; t < index_t(ids.size()); ++t) {
    if (before_step) before_step(t);
    const auto l = m.forward(s, std::span<const int>(&ids[std::size_t(t)], 1), t);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

/// Two states over one const model, stepped by two threads (taking turns token by token, then
/// free-running): each sequence gives exactly the logits it gives alone.
template <class M>
void check_two_threads(const M& m, index_t n) {
  std::vector<int> a(static_cast<std::size_t>(n)), b(a.size());
  std::mt19937 g(5);
  for (auto& t : a) t = int(g() % std::uint32_t(m.vocab()));
  for (auto& t : b) t = int(g() % std::uint32_t(m.vocab()));
  // One pool thread, so every run sums in the same order and equality can be exact (with more,
  // the two threads share the pool unlike a run alone, and a kernel's rounding may follow how
  // its loop is split).
  struct one_thread {
    int was = num_threads();
    one_thread() { set_num_threads(1); }
    ~one_thread() { set_num_threads(was); }
  } guard;
  auto sa = m.new_state(), sb = m.new_state();
  const auto want_a = step_all(m, sa, a), want_b = step_all(m, sb, b);
  REQUIRE(want_a != want_b);
  for (const bool turns : {true, false}) {
    CAPTURE(turns);
    auto ta = m.new_state(), tb = m.new_state();
    std::atomic<index_t> turn{0};
    std::vector<float> got_a, got_b;
    std::atomic<bool> threw{false};
    const auto run = [&](int who, const std::vector<int>& ids, typename M::State& s,
                         std::vector<float>& out) {
      try {
        out = step_all(m, s, ids, [&](index_t t) {
          if (t > 0 && turns) turn.fetch_add(1);  // the step before is done: the other's turn
          while (turns && !threw && turn.load() != 2 * t + who) std::this_thread::yield();
        });
        if (turns) turn.fetch_add(1);
      } catch (...) {
        threw = true;
      }
    };
    std::thread x(run, 0, std::cref(a), std::ref(ta), std::ref(got_a));
    std::thread y(run, 1, std::cref(b), std::ref(tb), std::ref(got_b));
    x.join();
    y.join();
    CHECK_FALSE(threw.load());
    CHECK(got_a == want_a);
    CHECK(got_b == want_b);
    CHECK(ta.position() == n);
    CHECK(tb.position() == n);
  }
}

}  // namespace tessel::test
