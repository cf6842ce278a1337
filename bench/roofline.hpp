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
