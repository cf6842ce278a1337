// The machine's roofline: peak FMA throughput (register-only, independent chains) and
// sustained read bandwidth from memory (a buffer far larger than the last-level cache).
// Names are stable; other benchmarks are read against them:
//   BM_peak_fma/real_time/threads:N         widest vectors compiled (AVX-512 if -march has it)
//   BM_peak_fma_avx2/real_time/threads:N    256-bit vectors (what cpu_simd<fma3<avx2>> can reach)
//   BM_peak_read_bw/real_time/threads:N     GB/s reading 512 MiB (bytes_per_second)

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "roofline.hpp"

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

// `Acc` independent FMA chains: enough to cover latency x pipes (4 cycles x 2 pipes = 8) with
// room to spare; the multiplier is close to 1 so values stay normal for any loop count.
template <class V, int Acc, class Fma, class Set>
double fma_chains(benchmark::State& state, Fma fma, Set set, int lanes) {
  const std::int64_t steps = 1 << 14;
  V acc[Acc];
  for (int i = 0; i < Acc; ++i) acc[i] = set(1.0f + 0.001f * static_cast<float>(i));
  const V a = set(0.99999f), b = set(1e-6f);
  for (auto _ : state) {
    for (std::int64_t s = 0; s < steps; ++s) {
      // Fully unrolled, or GCC keeps 24 accumulators in memory and measures store forwarding.
#pragma GCC unroll 32
      for (int i = 0; i < Acc; ++i) acc[i] = fma(acc[i], a, b);
    }
    for (int i = 0; i < Acc; ++i) benchmark::DoNotOptimize(acc[i]);
  }
  return 2.0 * lanes * Acc * static_cast<double>(steps);
}

#if defined(__AVX2__) && defined(__FMA__)
void BM_peak_fma_avx2(benchmark::State& state) {
  const double flops = fma_chains<__m256, 12>(
      state, [](__m256 x, __m256 a, __m256 b) { return _mm256_fmadd_ps(x, a, b); },
      [](float v) { return _mm256_set1_ps(v); }, 8);
  tessel::bench::set_flops(state, flops);
}
BENCHMARK(BM_peak_fma_avx2)->Threads(1)->Threads(2)->UseRealTime();
#endif

void BM_peak_fma(benchmark::State& state) {
#if defined(__AVX512F__)
  const double flops = fma_chains<__m512, 24>(
      state, [](__m512 x, __m512 a, __m512 b) { return _mm512_fmadd_ps(x, a, b); },
      [](float v) { return _mm512_set1_ps(v); }, 16);
#elif defined(__AVX2__) && defined(__FMA__)
  const double flops = fma_chains<__m256, 12>(
      state, [](__m256 x, __m256 a, __m256 b) { return _mm256_fmadd_ps(x, a, b); },
      [](float v) { return _mm256_set1_ps(v); }, 8);
#else
  const double flops = fma_chains<float, 12>(
      state, [](float x, float a, float b) { return x * a + b; }, [](float v) { return v; }, 1);
#endif
  tessel::bench::set_flops(state, flops);
}
BENCHMARK(BM_peak_fma)->Threads(1)->Threads(2)->UseRealTime();

// AMX bf16 tile products (bench/roofline.hpp), where this build and machine have them.
void BM_peak_amx_bf16(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  double peak = 0;
  for (auto _ : state) peak = tessel::bench::pool_amx_bf16_peak(threads, true);
  if (peak == 0) state.SkipWithError("no AMX in this build or machine");
  state.counters["FLOPS"] = peak;
  tessel::set_num_threads(0);
}
BENCHMARK(BM_peak_amx_bf16)->Arg(1)->Arg(2)->Iterations(1)->UseRealTime();

constexpr std::size_t read_buffer_bytes = std::size_t{512} << 20;

const float* read_buffer() {
  static const float* buf = [] {
    auto* p = static_cast<float*>(std::aligned_alloc(64, read_buffer_bytes));
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, read_buffer_bytes);  // touch every page before timing
    return p;
  }();
  return buf;
}

// Each benchmark thread sums its own slice, read as 4 interleaved streams: one sequential
// stream leaves bandwidth unused (on the dev machine one thread reads 12.9 GB/s from one
// stream, 16.5 from 4, no more from 8 or 16), and kernels such as GEMV read several rows at once.
void BM_peak_read_bw(benchmark::State& state) {
  constexpr std::size_t streams = 4;
  const float* buf = read_buffer();
  const std::size_t n = read_buffer_bytes / sizeof(float);
  const std::size_t per_thread = n / static_cast<std::size_t>(state.threads());
  const std::size_t per = per_thread / streams / 64 * 64;
  const float* p = buf + per_thread * static_cast<std::size_t>(state.thread_index());
  for (auto _ : state) {
#if defined(__AVX__)
    __m256 s[streams];
    for (auto& v : s) v = _mm256_setzero_ps();
    for (std::size_t i = 0; i < per; i += 16) {
      for (std::size_t j = 0; j < streams; ++j) {
        const float* q = p + j * per + i;
        s[j] = _mm256_add_ps(s[j], _mm256_add_ps(_mm256_load_ps(q), _mm256_load_ps(q + 8)));
      }
    }
    for (std::size_t j = 1; j < streams; ++j) s[0] = _mm256_add_ps(s[0], s[j]);
    benchmark::DoNotOptimize(s[0]);
#else
    float s[streams] = {};
    for (std::size_t i = 0; i < per; ++i)
      for (std::size_t j = 0; j < streams; ++j) s[j] += p[j * per + i];
    benchmark::DoNotOptimize(s[0] += s[1] + s[2] + s[3]);
#endif
  }
  tessel::bench::set_bytes(state, static_cast<double>(streams * per * sizeof(float)));
}
BENCHMARK(BM_peak_read_bw)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0);

}  // namespace
