// Mamba-2 at mamba2-130m's shape (d_model 768, 24 layers, vocabulary 50280, d_inner 1536,
// headdim 64 so 24 heads, d_state 128, 1 group, d_conv 4) with random weights, built in memory
// (no file: the loaders are tested elsewhere), and the SSD scan kernels at one layer's shape.
//
//   BM_mamba2_130m_prefill/1024/threads   items_per_second = prompt tokens per second
//   BM_mamba2_130m_decode/threads         items_per_second = tokens per second; bytes_per_second
//                                         = weight + state bytes read per token × tokens/s
//   BM_ssd_scan/<variant>/L/threads       one layer's scan (H 24, P 64, N 128) over L steps;
//                                         items = L·H·P·N state updates. variant 0: over_n,
//                                         1: over_p, 2: over_p_regs, 3: the cpu_scalar reference

#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "tessel/backend/thread_pool.hpp"
#include "tessel/models/mamba2.hpp"
#include "tessel/ops/ssd_scan.hpp"

namespace {

using tessel::index_t;
using Mamba2Model = tessel::models::Mamba2<tessel::models::Mamba2Config, float>;

tessel::models::Mamba2Config mamba2_130m() {
  tessel::models::Mamba2Config c;
  c.dim = 768, c.layers = 24, c.vocab = 50280, c.d_inner = 1536, c.d_state = 128, c.d_conv = 4;
  c.n_heads = 24, c.n_groups = 1;
  return c;
}

/// Random weights with Mamba-2's A (−1..−16) and dt_bias (Δ ≈ 0.02) so the scan stays finite.
Mamba2Model& model() {
  static std::unique_ptr<Mamba2Model> m = [] {
    auto src = std::make_unique<Mamba2Model>(mamba2_130m());
    std::mt19937 g(7);
    std::normal_distribution<float> nd(0.f, 1.f);
    src->visit([&](const std::string& name, auto& t) {
      const index_t cols = t.shape().extents().back();
      const float scale = 1.0f / std::sqrt(float(cols));
      for (index_t i = 0; i < t.size(); ++i) {
        float v = nd(g) * scale;
        if (name.ends_with("norm.weight")) v = 1.0f + 0.1f * nd(g);
        if (name.ends_with(".ssm_a")) v = -float(1 + i % 16);
        if (name.ends_with(".ssm_dt.bias")) v = -4.0f + 0.5f * nd(g);
        if (name.ends_with(".ssm_d")) v = 1.0f;
        t.data()[i] = v;
      }
    });
    return src;
  }();
  return *m;
}

std::vector<int> tokens(index_t n) {
  std::vector<int> ids(static_cast<std::size_t>(n));
  std::mt19937 g(11);
  for (auto& t : ids) t = int(g() % 50280u);
  return ids;
}

void BM_mamba2_130m_prefill(benchmark::State& state) {
  const Mamba2Model& m = model();
  // Chunks of 128 rows, as the figures in docs/mamba.md were measured (a state's default is 64).
  auto seq = m.new_state({.max_batch = 128});
  tessel::set_num_threads(int(state.range(1)));
  const auto ids = tokens(state.range(0));
  for (auto _ : state)
    benchmark::DoNotOptimize(m.forward(seq, std::span<const int>(ids), 0).data());
  state.SetItemsProcessed(state.iterations() * state.range(0));
  tessel::set_num_threads(0);
}
BENCHMARK(BM_mamba2_130m_prefill)
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(2);

void BM_mamba2_130m_decode(benchmark::State& state) {
  Mamba2Model& m = model();
  auto seq = m.new_state();
  tessel::set_num_threads(int(state.range(0)));
  const auto ids = tokens(64);
  m.forward(seq, std::span<const int>(ids.data(), 16), 0);
  double bytes = double(seq.state_bytes()) * 2;  // the state is read and written
  m.visit([&](const std::string& name, auto& t) {
    if (name != "token_embd.weight") bytes += double(t.bytes());
  });
  bytes += double(m.head().weight.bytes());
  index_t i = 16;
  for (auto _ : state) {
    const int id = ids[std::size_t(i % 64)];
    benchmark::DoNotOptimize(m.forward(seq, std::span<const int>(&id, 1), i).data());
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(int64_t(double(state.iterations()) * bytes));
  state.counters["state_MB"] = double(seq.state_bytes()) / 1e6;
  tessel::set_num_threads(0);
}
BENCHMARK(BM_mamba2_130m_decode)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ssd_scan(benchmark::State& state) {
  const index_t L = state.range(1), H = 24, P = 64, N = 128;
  tessel::set_num_threads(int(state.range(2)));
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(std::size_t(L * H * P)), dt(std::size_t(L * H)),
      A(static_cast<std::size_t>(H)), B(std::size_t(L * N)), C(std::size_t(L * N)),
      D(static_cast<std::size_t>(H), 1.0f), bias(static_cast<std::size_t>(H), -4.0f), y(x.size()),
      S(std::size_t(H * P * N));
  for (auto& v : x) v = nd(g);
  for (auto& v : dt) v = nd(g);
  for (std::size_t h = 0; h < A.size(); ++h) A[h] = -float(1 + h % 16);
  for (auto& v : B) v = nd(g);
  for (auto& v : C) v = nd(g);
  tessel::detail::ssd_problem p;
  p.L = L, p.H = H, p.P = P, p.N = N, p.G = 1;
  p.x = x.data(), p.ld_x = H * P, p.dt = dt.data(), p.ld_dt = H, p.A = A.data();
  p.B = B.data(), p.ld_B = N, p.C = C.data(), p.ld_C = N;
  p.Dskip = D.data(), p.dt_bias = bias.data(), p.y = y.data(), p.ld_y = H * P, p.S = S.data();
  using tessel::detail::ssd_variant;
  const ssd_variant vs[] = {ssd_variant::over_n, ssd_variant::over_p, ssd_variant::over_p_regs};
  for (auto _ : state) {
    if (state.range(0) == 3)
      tessel::detail::ssd_run(tessel::cpu_scalar{}, p);
    else
      tessel::detail::ssd_run(tessel::cpu{}, p, vs[state.range(0)]);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * L * H * P * N);
  tessel::set_num_threads(0);
}
BENCHMARK(BM_ssd_scan)
    ->ArgNames({"variant", "L", "threads"})
    ->ArgsProduct({{0, 1, 2, 3}, {1024}, {1, 2}})
    ->ArgsProduct({{0, 2}, {1}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
