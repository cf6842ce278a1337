#pragma once
// Counters shared by the benchmarks, so every figure reads against bench/peak.cpp's roofline
// (BM_peak_fma*, BM_peak_read_bw) measured in the same run:
//   FLOPS             floating-point operations per second (shown with SI prefixes: G = 1e9)
//   bytes_per_second  bytes moved per second (Google Benchmark's own counter, 1024-based in
//                     the console, raw bytes/s in --benchmark_format=json)

#include <benchmark/benchmark.h>

#include <cstdint>

namespace tessel::bench {

/// Reports `flops_per_iteration` floating-point operations per iteration as a rate.
inline void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOPS"] =
      benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

/// Reports `bytes_per_iteration` bytes read (or written) per iteration as bytes_per_second.
inline void set_bytes(benchmark::State& state, double bytes_per_iteration) {
  state.SetBytesProcessed(
      static_cast<std::int64_t>(bytes_per_iteration * static_cast<double>(state.iterations())));
}

}  // namespace tessel::bench

// ---- Rooflines measured inside a benchmark's own process, with tessel's thread pool --------

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include "tessel/backend/cpu/amx_gemm.hpp"
#include "tessel/backend/thread_pool.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace tessel::bench {

/// Sustained read bandwidth (bytes/s) of the pool with `threads` threads: the best of 3 passes
/// over a 1 GiB buffer (twice this machine's 480 MiB L3). Measured once per thread count, or
/// again with `remeasure` (a benchmark that wants the machine's state of the moment).
inline double pool_read_bandwidth(int threads, bool remeasure = false) {
  static double cached[64] = {};
  if (cached[threads] > 0 && !remeasure) return cached[threads];
  constexpr std::size_t bytes = std::size_t{1} << 30;
  const std::unique_ptr<float, decltype(&std::free)> buf(
      static_cast<float*>(std::aligned_alloc(64, bytes)), &std::free);
  float* p = buf.get();
  const index_t n = static_cast<index_t>(bytes / 4);
  set_num_threads(threads);
  parallel_for(0, n, 1 << 20, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) p[i] = static_cast<float>(i & 1023);
  });
  std::vector<float> sink(static_cast<std::size_t>(threads) * 16);
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for_each_thread([&](int t, int nt) {
      const index_t lo = n * t / nt / 64 * 64, hi = n * (t + 1) / nt / 64 * 64;
#if defined(__AVX2__)
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (index_t i = lo; i < hi; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
      }
      _mm256_storeu_ps(&sink[static_cast<std::size_t>(t) * 16],
                       _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
      float s = 0;
      for (index_t i = lo; i < hi; ++i) s += p[i];
      sink[static_cast<std::size_t>(t) * 16] = s;
#endif
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(bytes) / dt);
    benchmark::DoNotOptimize(sink.data());
  }
  return cached[threads] = best;
}

/// Peak FLOP/s of 256-bit FMAs (what cpu_simd<fma3<avx2>> can reach) on `threads` threads of
/// the pool: 12 independent chains per thread, register-only. Measured once per thread count,
/// or again with `remeasure`.
inline double pool_fma_avx2_peak(int threads, bool remeasure = false) {
  static double cached[64] = {};
  if (cached[threads] > 0 && !remeasure) return cached[threads];
#if defined(__AVX2__) && defined(__FMA__)
  set_num_threads(threads);
  constexpr std::int64_t steps = 1 << 24;
  std::vector<float> sink(static_cast<std::size_t>(threads) * 8);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for_each_thread([&](int t, int) {
      __m256 acc[12];
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1.0f + 0.001f * static_cast<float>(i));
      const __m256 a = _mm256_set1_ps(0.99999f), b = _mm256_set1_ps(1e-6f);
      for (std::int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
      }
      __m256 r = acc[0];
      for (int i = 1; i < 12; ++i) r = _mm256_add_ps(r, acc[i]);
      _mm256_storeu_ps(&sink[static_cast<std::size_t>(t) * 8], r);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * 8 * 12 * static_cast<double>(steps) * threads / dt);
    benchmark::DoNotOptimize(sink.data());
  }
  return cached[threads] = best;
#else
  (void)threads;
  return 0;
#endif
}

/// Peak FLOP/s of the widest FMAs compiled (512-bit under AVX-512: what tessel::cpu runs in
/// this build) on `threads` threads of the pool: 24 independent chains per thread.
inline double pool_fma_peak(int threads, bool remeasure = false) {
#if defined(__AVX512F__)
  static double cached[64] = {};
  if (cached[threads] > 0 && !remeasure) return cached[threads];
  set_num_threads(threads);
  constexpr std::int64_t steps = 1 << 23;
  std::vector<float> sink(static_cast<std::size_t>(threads) * 16);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for_each_thread([&](int t, int) {
      __m512 acc[24];
#pragma GCC unroll 24
      for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(1.0f + 0.001f * static_cast<float>(i));
      const __m512 a = _mm512_set1_ps(0.99999f), b = _mm512_set1_ps(1e-6f);
      for (std::int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
      }
      __m512 r = acc[0];
#pragma GCC unroll 24
      for (int i = 1; i < 24; ++i) r = _mm512_add_ps(r, acc[i]);
      _mm512_storeu_ps(&sink[static_cast<std::size_t>(t) * 16], r);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * 16 * 24 * static_cast<double>(steps) * threads / dt);
    benchmark::DoNotOptimize(sink.data());
  }
  return cached[threads] = best;
#else
  return pool_fma_avx2_peak(threads, remeasure);
#endif
}

/// Peak FLOP/s of AMX bf16 tile products (TDPBF16PS: 16 x 16 x 32 multiply-adds each) on
/// `threads` threads of the pool: four independent accumulator tiles per thread, operands
/// resident in tiles. 0 when this build has no AMX path or the tile state was not granted.
/// The AMX GEMM (backend/cpu/amx_gemm.hpp) spends 3 or 5 tile products per f32-equivalent
/// product, so its own roofline is this figure / 3 (quantized weights) or / 5 (f16).
inline double pool_amx_bf16_peak(int threads, bool remeasure = false) {
#if defined(TESSEL_AMX)
  if (!detail::amx_usable()) return 0;
  static double cached[64] = {};
  if (cached[threads] > 0 && !remeasure) return cached[threads];
  set_num_threads(threads);
  constexpr std::int64_t steps = 1 << 20;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for_each_thread([&](int, int) {
      alignas(64) static thread_local std::uint16_t src[16 * 32] = {};
      const detail::amx::tile_scope tiles;
      _tile_loadd(4, src, 64);
      _tile_loadd(5, src, 64);
      _tile_loadd(6, src, 64);
      _tile_loadd(7, src, 64);
      for (std::int64_t s = 0; s < steps; ++s) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * 16 * 16 * 32 * 4 * static_cast<double>(steps) * threads / dt);
  }
  return cached[threads] = best;
#else
  (void)threads, (void)remeasure;
  return 0;
#endif
}

}  // namespace tessel::bench
