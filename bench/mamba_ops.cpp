// Mamba kernels: the selective scan and the causal depthwise conv1d, tessel against a plain
// scalar loop written here (what a straightforward C++ port of the recurrence does).
//
//   BM_selective_scan_<impl>/L/D/N/threads   items_per_second = L·D·N state updates per second
//     impl: tessel (tessel::cpu, automatic layout), tessel_over_d (8 channels per vector),
//           tessel_over_n (the N lanes of one channel per vector), reference (cpu_scalar),
//           plain (the loop below)
//     L = 1 is one decoding step (the layout choice for steps is read from these rows)
//   BM_conv1d_<impl>/L/D/K/threads   bytes_per_second = x read + y written
//
// Each scan is one exp, two FMAs and a multiply per state update: it is bound by the
// vectorized exp, not by memory (compare items/s against BM_peak_fma in the same run).

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "roofline.hpp"
#include "tessel/ops/conv1d.hpp"
#include "tessel/ops/selective_scan.hpp"

namespace {

using tessel::index_t;

std::vector<float> mamba_random(std::size_t n, std::uint32_t seed, float lo, float hi) {
  std::vector<float> v(n);
  std::uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = lo + (hi - lo) * static_cast<float>(s >> 8) * 0x1p-24f;
  }
  return v;
}

struct ScanData {
  index_t L, D, N;
  std::vector<float> u, dt, A, B, C, Dk, bias, z, y, h;
  ScanData(index_t l, index_t d, index_t n)
      : L(l),
        D(d),
        N(n),
        u(mamba_random(static_cast<std::size_t>(l * d), 1, -1, 1)),
        dt(mamba_random(static_cast<std::size_t>(l * d), 2, -1, 1)),
        A(mamba_random(static_cast<std::size_t>(d * n), 3, -16, -1)),
        B(mamba_random(static_cast<std::size_t>(l * n), 4, -1, 1)),
        C(mamba_random(static_cast<std::size_t>(l * n), 5, -1, 1)),
        Dk(mamba_random(static_cast<std::size_t>(d), 6, -1, 1)),
        bias(mamba_random(static_cast<std::size_t>(d), 7, -4, -2)),
        z(mamba_random(static_cast<std::size_t>(l * d), 8, -2, 2)),
        y(static_cast<std::size_t>(l * d)),
        h(static_cast<std::size_t>(d * n)) {}

  tessel::detail::scan_problem problem() {
    tessel::detail::scan_problem p;
    p.L = L, p.D = D, p.N = N;
    p.u = u.data(), p.ld_u = D, p.dt = dt.data(), p.ld_dt = D;
    p.A = A.data(), p.ld_A = N, p.B = B.data(), p.ld_B = N, p.C = C.data(), p.ld_C = N;
    p.Dskip = Dk.data(), p.dt_bias = bias.data(), p.z = z.data(), p.ld_z = D;
    p.y = y.data(), p.ld_y = D, p.h = h.data(), p.ld_h = N;
    return p;
  }
};

// The recurrence as one would first write it: time outer, channels, states inner.
void plain_scan(ScanData& s) {
  const index_t L = s.L, D = s.D, N = s.N;
  for (index_t t = 0; t < L; ++t)
    for (index_t d = 0; d < D; ++d) {
      const float x =
          s.dt[static_cast<std::size_t>(t * D + d)] + s.bias[static_cast<std::size_t>(d)];
      const float delta = x > 20.f ? x : std::log1p(std::exp(x));
      const float uu = s.u[static_cast<std::size_t>(t * D + d)];
      float acc = 0;
      for (index_t n = 0; n < N; ++n) {
        float& h = s.h[static_cast<std::size_t>(d * N + n)];
        h = std::exp(delta * s.A[static_cast<std::size_t>(d * N + n)]) * h +
            delta * s.B[static_cast<std::size_t>(t * N + n)] * uu;
        acc += s.C[static_cast<std::size_t>(t * N + n)] * h;
      }
      const float zz = s.z[static_cast<std::size_t>(t * D + d)];
      s.y[static_cast<std::size_t>(t * D + d)] =
          (acc + s.Dk[static_cast<std::size_t>(d)] * uu) * zz / (1.f + std::exp(-zz));
    }
}

enum class scan_impl { tessel, over_d, over_n, reference, plain };

template <scan_impl I>
void BM_selective_scan(benchmark::State& state) {
  ScanData s(state.range(0), state.range(1), state.range(2));
  tessel::set_num_threads(static_cast<int>(state.range(3)));
  const auto p = s.problem();
  using Arch = tessel::cpu_best_arch;
  for (auto _ : state) {
    if constexpr (I == scan_impl::tessel) tessel::detail::scan_run(tessel::cpu{}, p);
    if constexpr (I == scan_impl::over_d)
      tessel::detail::scan_simd<Arch>(p, tessel::detail::scan_variant::over_d);
    if constexpr (I == scan_impl::over_n)
      tessel::detail::scan_simd<Arch>(p, tessel::detail::scan_variant::over_n);
    if constexpr (I == scan_impl::reference) tessel::detail::scan_run(tessel::cpu_scalar{}, p);
    if constexpr (I == scan_impl::plain) plain_scan(s);
    benchmark::DoNotOptimize(s.y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * s.L * s.D * s.N);
}

void scan_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"L", "D", "N", "threads"});
  for (int threads : {1, 2}) {
    b->Args({1024, 1536, 16, threads});
    b->Args({1, 1536, 16, threads});
  }
  b->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);
}
void scan_args_slow(benchmark::internal::Benchmark* b) {
  b->ArgNames({"L", "D", "N", "threads"});
  b->Args({1024, 1536, 16, 1});
  b->Args({1, 1536, 16, 1});
  b->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);
}

void BM_selective_scan_tessel(benchmark::State& s) {
  BM_selective_scan<scan_impl::tessel>(s);
}
void BM_selective_scan_tessel_over_d(benchmark::State& s) {
  BM_selective_scan<scan_impl::over_d>(s);
}
void BM_selective_scan_tessel_over_n(benchmark::State& s) {
  BM_selective_scan<scan_impl::over_n>(s);
}
void BM_selective_scan_reference(benchmark::State& s) {
  BM_selective_scan<scan_impl::reference>(s);
}
void BM_selective_scan_plain(benchmark::State& s) {
  BM_selective_scan<scan_impl::plain>(s);
}
BENCHMARK(BM_selective_scan_tessel)->Apply(scan_args);
BENCHMARK(BM_selective_scan_tessel_over_d)->Apply(scan_args);
BENCHMARK(BM_selective_scan_tessel_over_n)->Apply(scan_args);
BENCHMARK(BM_selective_scan_reference)->Apply(scan_args_slow);
BENCHMARK(BM_selective_scan_plain)->Apply(scan_args_slow);

// ---- conv1d --------------------------------------------------------------------------------

void plain_conv1d(index_t L, index_t D, index_t K, const float* x, const float* w, const float* b,
                  float* y) {
  for (index_t t = 0; t < L; ++t)
    for (index_t d = 0; d < D; ++d) {
      float acc = b[d];
      for (index_t k = 0; k < K; ++k) {
        const index_t s = t - (K - 1) + k;
        if (s >= 0) acc += w[d * K + k] * x[s * D + d];
      }
      y[t * D + d] = acc;
    }
}

enum class conv_impl { tessel, reference, plain };

template <conv_impl I>
void BM_conv1d(benchmark::State& state) {
  const index_t L = state.range(0), D = state.range(1), K = state.range(2);
  tessel::set_num_threads(static_cast<int>(state.range(3)));
  const auto x = mamba_random(static_cast<std::size_t>(L * D), 1, -1, 1);
  const auto w = mamba_random(static_cast<std::size_t>(D * K), 2, -1, 1);
  const auto b = mamba_random(static_cast<std::size_t>(D), 3, -1, 1);
  std::vector<float> y(static_cast<std::size_t>(L * D));
  using tessel::DynShape;
  using tessel::TensorView;
  const TensorView<const float, DynShape<2>> xv(x.data(), DynShape<2>(L, D));
  const TensorView<const float, DynShape<2>> wv(w.data(), DynShape<2>(D, K));
  const TensorView<const float, DynShape<1>> bv(b.data(), DynShape<1>(D));
  const TensorView<float, DynShape<2>> yv(y.data(), DynShape<2>(L, D));
  for (auto _ : state) {
    if constexpr (I == conv_impl::tessel) tessel::conv1d(tessel::cpu{}, yv, xv, wv, bv);
    if constexpr (I == conv_impl::reference) tessel::conv1d(tessel::cpu_scalar{}, yv, xv, wv, bv);
    if constexpr (I == conv_impl::plain)
      plain_conv1d(L, D, K, x.data(), w.data(), b.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  tessel::bench::set_bytes(state, 2.0 * static_cast<double>(L * D) * sizeof(float));
  tessel::bench::set_flops(state, 2.0 * static_cast<double>(L * D * K));
}

void conv_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"L", "D", "K", "threads"});
  for (int threads : {1, 2}) b->Args({1024, 1536, 4, threads});
  b->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);
}

void BM_conv1d_tessel(benchmark::State& s) {
  BM_conv1d<conv_impl::tessel>(s);
}
void BM_conv1d_reference(benchmark::State& s) {
  BM_conv1d<conv_impl::reference>(s);
}
void BM_conv1d_plain(benchmark::State& s) {
  BM_conv1d<conv_impl::plain>(s);
}
BENCHMARK(BM_conv1d_tessel)->Apply(conv_args);
BENCHMARK(BM_conv1d_reference)->Apply(conv_args);
BENCHMARK(BM_conv1d_plain)->Apply(conv_args);

}  // namespace
