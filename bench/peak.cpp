// The machine's roofline: peak FMA throughput (register-only, independent chains) and
// sustained read bandwidth from memory (a buffer far larger than the last-level cache).
// Names are stable; other benchmarks are read against them:
//   BM_peak_fma/real_time/threads:N         widest vectors compiled (AVX-512 if -march has it)
//   BM_peak_fma_avx2/real_time/threads:N    256-bit vectors (what cpu_simd<fma3<avx2>> can reach)
//   BM_peak_read_bw/real_time/threads:N     GB/s reading 512 MiB

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

// Each benchmark thread sums its own slice with several independent accumulators (adds are
// cheap next to the loads), so the loop is limited by memory.
void BM_peak_read_bw(benchmark::State& state) {
  const float* buf = read_buffer();
  const std::size_t n = read_buffer_bytes / sizeof(float);
  const std::size_t per = n / static_cast<std::size_t>(state.threads());
  const float* p = buf + per * static_cast<std::size_t>(state.thread_index());
  for (auto _ : state) {
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (std::size_t i = 0; i + 64 <= per; i += 64) {
      s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
      s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
      s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
      s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
    }
    benchmark::DoNotOptimize(s0 = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#elif defined(__AVX__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (std::size_t i = 0; i + 32 <= per; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
      s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
    }
    benchmark::DoNotOptimize(s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
#else
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (std::size_t i = 0; i + 4 <= per; i += 4) {
      s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
    }
    benchmark::DoNotOptimize(s0 += s1 + s2 + s3);
#endif
  }
  tessel::bench::set_bytes(state, static_cast<double>(per * sizeof(float)));
}
BENCHMARK(BM_peak_read_bw)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0);

}  // namespace
