// Quantized kernels against the machine's roofline.
//
//   BM_qgemv<F>/N/K/threads   y = W x streaming W from memory: bytes_per_second of weight
//                             bytes, pct_read_bw = % of the streaming read bandwidth measured
//                             by this file with the same thread count (pool threads);
//                             best_GBps / best_pct_read_bw: the fastest iteration against the
//                             fastest 16 MiB slice of the read loop (robust to other load)
//   BM_qdot_hot<F>/N          the row kernel alone, weights in L2 (N x 4096, one thread): the
//                             compute rate, which must exceed a core's read bandwidth
//   BM_qgemm<F>/M/N/K/threads y = x Wᵀ, FLOPS (2 M N K); BM_sgemm_f32 is the f32 baseline;
//                             int8_path 1 where qgemm runs the integer GEMM (qgemm_vnni.hpp)
//   BM_quantize<F>            bytes_per_second of f32 input quantized (one thread)
//
// The GEMV weights are replicated into enough copies (>= 1 GiB) that each iteration reads a
// copy not in cache, as in decoding where a layer's weights were evicted since last used. The
// read-bandwidth buffer is 1 GiB too: this machine reports a 480 MiB L3, so 512 MiB would be
// partly served from cache.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "roofline.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/ops/qmatmul.hpp"
#include "tessel/quant/quantize.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

using namespace tessel;

struct aligned_free {
  void operator()(void* p) const noexcept { std::free(p); }
};
template <class T>
std::unique_ptr<T[], aligned_free> alloc(std::size_t bytes) {
  bytes = (bytes + 63) / 64 * 64;
  return std::unique_ptr<T[], aligned_free>(static_cast<T*>(std::aligned_alloc(64, bytes)));
}

// Streaming read bandwidth of the pool with `threads` threads over a 1 GiB buffer, measured
// once per thread count per process: `pass` is the best of 3 whole passes; `slice` the best
// 16 MiB slice, the same granularity as one GEMV iteration, to compare with best_GBps.
struct read_bw {
  double pass = 0, slice = 0;
};
read_bw read_bandwidth(int threads) {
  static read_bw cached[8] = {};
  if (cached[threads].pass > 0) return cached[threads];
  constexpr std::size_t bytes = std::size_t{1} << 30, slice = std::size_t{16} << 20;
  static auto buf = [] {
    auto p = alloc<float>(bytes);
    for (std::size_t i = 0; i < bytes / 4; ++i) p[i] = static_cast<float>(i & 1023);
    return p;
  }();
  set_num_threads(threads);
  read_bw r;
  std::vector<float> sink(static_cast<std::size_t>(threads) * 16);
  for (int pass = 0; pass < 3; ++pass) {
    const auto p0 = std::chrono::steady_clock::now();
    for (std::size_t s0 = 0; s0 < bytes; s0 += slice) {
      const float* base = buf.get() + s0 / 4;
      const index_t n = static_cast<index_t>(slice / 4);
      const auto t0 = std::chrono::steady_clock::now();
      parallel_for_each_thread([&](int t, int nt) {
        const index_t lo = n * t / nt / 64 * 64, hi = n * (t + 1) / nt / 64 * 64;
#if defined(__AVX2__)
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (index_t i = lo; i < hi; i += 32) {
          a0 = _mm256_add_ps(a0, _mm256_load_ps(base + i));
          a1 = _mm256_add_ps(a1, _mm256_load_ps(base + i + 8));
          a2 = _mm256_add_ps(a2, _mm256_load_ps(base + i + 16));
          a3 = _mm256_add_ps(a3, _mm256_load_ps(base + i + 24));
        }
        _mm256_storeu_ps(&sink[static_cast<std::size_t>(t) * 16],
                         _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
        float s = 0;
        for (index_t i = lo; i < hi; ++i) s += base[i];
        sink[static_cast<std::size_t>(t) * 16] = s;
#endif
      });
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.slice = std::max(r.slice, static_cast<double>(slice) / dt);
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
    r.pass = std::max(r.pass, static_cast<double>(bytes) / dt);
    benchmark::DoNotOptimize(sink.data());
  }
  return cached[threads] = r;
}

template <class F>
std::vector<F> make_weights(index_t N, index_t K) {
  // A few distinct quantized rows, replicated: the speed of the kernels does not depend on
  // the values, and quantizing 45M weights per benchmark would dominate the run.
  constexpr index_t distinct = 16;
  const index_t nb = K / F::block_elems;
  std::vector<F> w(static_cast<std::size_t>(N * nb));
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.f, 0.02f);
  std::vector<float> row(static_cast<std::size_t>(K));
  for (index_t r = 0; r < std::min(N, distinct); ++r) {
    for (auto& v : row) v = g(rng);
    F::quantize_row(row.data(), w.data() + r * nb, K);
  }
  for (index_t r = distinct; r < N; ++r)
    std::memcpy(static_cast<void*>(w.data() + r * nb), w.data() + (r % distinct) * nb,
                static_cast<std::size_t>(nb) * sizeof(F));
  return w;
}

template <class F>
void BM_qgemv(benchmark::State& state) {
  const index_t N = state.range(0), K = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const read_bw bw = read_bandwidth(threads);
  set_num_threads(threads);
  const auto w = make_weights<F>(N, K);
  const std::size_t bytes = w.size() * sizeof(F);
  const std::size_t copies = std::max<std::size_t>(2, ((std::size_t{1} << 30) + bytes - 1) / bytes);
  auto all = alloc<F>(bytes * copies);
  for (std::size_t c = 0; c < copies; ++c)
    std::memcpy(static_cast<void*>(all.get() + c * w.size()), w.data(), bytes);
  std::vector<float> x(static_cast<std::size_t>(K)), y(static_cast<std::size_t>(N));
  std::mt19937 rng(2);
  std::normal_distribution<float> g(0.f, 1.f);
  for (auto& v : x) v = g(rng);
  std::size_t c = 0;
  double best = 1e30;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    qgemv<cpu>(N, K, all.get() + c * w.size(), x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    c = (c + 1) % copies;
  }
  bench::set_bytes(state, static_cast<double>(bytes));
  state.counters["pct_read_bw"] = benchmark::Counter(
      100.0 * static_cast<double>(bytes) * static_cast<double>(state.iterations()) / bw.pass,
      benchmark::Counter::kIsRate);
  // On a shared machine the fastest iteration is the figure least disturbed by other load;
  // it is compared with the fastest 16 MiB slice of the read-bandwidth loop.
  state.counters["best_GBps"] = static_cast<double>(bytes) / best / 1e9;
  state.counters["best_pct_read_bw"] = 100.0 * static_cast<double>(bytes) / best / bw.slice;
  state.counters["read_bw_GBps"] = bw.pass / 1e9;
  state.counters["read_bw_best_slice_GBps"] = bw.slice / 1e9;
  set_num_threads(0);
}

void gemv_shapes(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2})
    for (auto [n, k] : {std::pair{4096, 4096}, {11008, 4096}, {4096, 11008}}) b->Args({n, k, t});
  b->UseRealTime()->MinTime(0.1);
}

// The row kernel alone with its weights in L2 (128 rows of K = 4096, one thread, activations
// quantized beforehand): the compute rate the kernel could stream at, bytes of weights per s.
template <class F>
void BM_qdot_hot(benchmark::State& state) {
  const index_t N = state.range(0), K = 4096, nb = K / F::block_elems;
  const auto w = make_weights<F>(N, K);
  const auto x = [&] {
    std::vector<float> v(static_cast<std::size_t>(K));
    std::mt19937 rng(4);
    std::normal_distribution<float> g(0.f, 1.f);
    for (auto& e : v) e = g(rng);
    return v;
  }();
  using A = typename F::vec_dot_type;
  std::vector<A> a;
  const A* ap = nullptr;
  if constexpr (std::is_same_v<A, float>) {
    ap = x.data();
  } else {
    a.resize(static_cast<std::size_t>(K / A::block_elems));
    A::quantize_row(x.data(), a.data(), K);
    ap = a.data();
  }
  std::vector<float> y(static_cast<std::size_t>(N));
  double best = 1e30;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    kernel<qdot_op, cpu, F>::run(nb, w.data(), nb, N, ap, y.data());
    benchmark::DoNotOptimize(y.data());
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double bytes = static_cast<double>(w.size() * sizeof(F));
  bench::set_bytes(state, bytes);
  state.counters["best_GBps"] = bytes / best / 1e9;
}

template <class F>
void BM_qgemm(benchmark::State& state) {
  const index_t M = state.range(0), N = state.range(1), K = state.range(2);
  set_num_threads(static_cast<int>(state.range(3)));
  const auto w = make_weights<F>(N, K);
  std::vector<float> x(static_cast<std::size_t>(M * K), 0.5f), y(static_cast<std::size_t>(M * N));
  for (auto _ : state) {
    qgemm<cpu>(M, N, K, x.data(), w.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  bench::set_flops(state, 2.0 * static_cast<double>(M * N * K));
  // 1: the integer GEMM with x quantized to q8_0 (qgemm_vnni.hpp); 0: dequantized tiles into
  // the f32 (or AMX) GEMM.
  state.counters["int8_path"] = qgemm_quantizes_activations<cpu, F>() ? 1 : 0;
  set_num_threads(0);
}
void BM_sgemm_f32(benchmark::State& state) {
  const index_t M = state.range(0), N = state.range(1), K = state.range(2);
  set_num_threads(static_cast<int>(state.range(3)));
  std::vector<float> x(static_cast<std::size_t>(M * K), 0.5f),
      w(static_cast<std::size_t>(N * K), 0.25f), y(static_cast<std::size_t>(M * N));
  for (auto _ : state) {
    gemm<cpu>(M, N, K, x.data(), K, w.data(), K, true, y.data(), N);
    benchmark::DoNotOptimize(y.data());
  }
  bench::set_flops(state, 2.0 * static_cast<double>(M * N * K));
  set_num_threads(0);
}
void gemm_shapes(benchmark::internal::Benchmark* b) {
  b->Args({512, 4096, 4096, 1})
      ->Args({512, 4096, 4096, 2})
      ->UseRealTime()
      ->MinTime(0.2)
      ->Unit(benchmark::kMillisecond);
}

template <class F>
void BM_quantize(benchmark::State& state) {
  constexpr index_t n = index_t{1} << 20;
  std::vector<float> x(static_cast<std::size_t>(n));
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.f, 1.f);
  for (auto& v : x) v = g(rng);
  std::vector<F> q(static_cast<std::size_t>(n / F::block_elems));
  for (auto _ : state) {
    F::quantize_row(x.data(), q.data(), n);
    benchmark::DoNotOptimize(q.data());
  }
  bench::set_bytes(state, 4.0 * static_cast<double>(n));
}

#define TESSEL_QBENCH(F)                                                     \
  BENCHMARK_TEMPLATE(BM_qgemv, F)->Apply(gemv_shapes);                       \
  BENCHMARK_TEMPLATE(BM_qdot_hot, F)->Arg(128)->UseRealTime()->MinTime(0.1); \
  BENCHMARK_TEMPLATE(BM_quantize, F)->MinTime(0.1)->Unit(benchmark::kMillisecond);
TESSEL_QBENCH(q4_0)
TESSEL_QBENCH(q8_0)
TESSEL_QBENCH(q4_k)
TESSEL_QBENCH(q6_k)
TESSEL_QBENCH(q4_1)
TESSEL_QBENCH(q5_0)
TESSEL_QBENCH(q5_1)
TESSEL_QBENCH(q2_k)
TESSEL_QBENCH(q3_k)
TESSEL_QBENCH(q5_k)
TESSEL_QBENCH(nf4)
TESSEL_QBENCH(int4_group<128>)
TESSEL_QBENCH(int8_group<128>)
#undef TESSEL_QBENCH
// The activation formats: quantized once per GEMV, serially.
BENCHMARK_TEMPLATE(BM_quantize, q8_k)->MinTime(0.1)->Unit(benchmark::kMillisecond);

BENCHMARK_TEMPLATE(BM_qgemm, q4_0)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q8_0)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q4_k)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q6_k)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q4_1)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q5_0)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q5_1)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q2_k)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q3_k)->Apply(gemm_shapes);
BENCHMARK_TEMPLATE(BM_qgemm, q5_k)->Apply(gemm_shapes);
BENCHMARK(BM_sgemm_f32)->Apply(gemm_shapes);

}  // namespace
