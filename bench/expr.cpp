// y = silu(a) * b + c over 16M floats: the fused tessel expression against a hand-written loop
// and against the same computation as separate Eigen array operations (one temporary per step).
// Memory-bound: read against bench/peak's bandwidth; counters give GB/s (4 arrays x 16M x 4 B)
// and items/s.

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cmath>
#include <random>
#include <tessel/backend/cpu/eval.hpp>
#include <tessel/backend/thread_pool.hpp>

namespace {

constexpr tessel::index_t expr_n = tessel::index_t{1} << 24;

struct expr_inputs {
  tessel::Tensor<float, tessel::DynShape<1>> a{expr_n}, b{expr_n}, c{expr_n}, y{expr_n};
  expr_inputs() {
    std::mt19937 g(1);
    std::uniform_real_distribution<float> d(-4.f, 4.f);
    for (tessel::index_t i = 0; i < expr_n; ++i)
      a.data()[i] = d(g), b.data()[i] = d(g), c.data()[i] = d(g);
  }
};
expr_inputs& inputs() {
  static expr_inputs in;
  return in;
}

void set_counters(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * expr_n);
  state.counters["GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 4.0 * static_cast<double>(expr_n) * 4.0 / 1e9,
      benchmark::Counter::kIsRate);
}

void BM_expr_silu_mul_add_tessel(benchmark::State& state) {
  auto& in = inputs();
  const int threads = static_cast<int>(state.range(0));
  tessel::set_num_threads(threads);
  for (auto _ : state) {
    tessel::eval(in.y, tessel::silu(in.a) * in.b + in.c);
    benchmark::ClobberMemory();
  }
  tessel::set_num_threads(0);
  set_counters(state);
}
BENCHMARK(BM_expr_silu_mul_add_tessel)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_expr_silu_mul_add_loop(benchmark::State& state) {
  auto& in = inputs();
  const float* a = in.a.data();
  const float* b = in.b.data();
  const float* c = in.c.data();
  float* y = in.y.data();
  for (auto _ : state) {
    for (tessel::index_t i = 0; i < expr_n; ++i)
      y[i] = a[i] / (1.f + std::exp(-a[i])) * b[i] + c[i];
    benchmark::ClobberMemory();
  }
  set_counters(state);
}
BENCHMARK(BM_expr_silu_mul_add_loop)->UseRealTime()->Unit(benchmark::kMillisecond);

// GCC 12 reports a false maybe-uninitialized inside Eigen's AVX-512 pexp.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void BM_expr_silu_mul_add_eigen_unfused(benchmark::State& state) {
  auto& in = inputs();
  Eigen::Map<const Eigen::ArrayXf> a(in.a.data(), expr_n), b(in.b.data(), expr_n),
      c(in.c.data(), expr_n);
  Eigen::Map<Eigen::ArrayXf> y(in.y.data(), expr_n);
  Eigen::ArrayXf t(expr_n);
  for (auto _ : state) {
    // One materialized temporary per step, as a framework without fusion would run it.
    t = -a;
    t = t.exp();
    t = t + 1.f;
    t = a / t;
    t = t * b;
    y = t + c;
    benchmark::ClobberMemory();
  }
  set_counters(state);
}
#pragma GCC diagnostic pop
BENCHMARK(BM_expr_silu_mul_add_eigen_unfused)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
