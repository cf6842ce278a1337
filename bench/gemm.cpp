// SGEMM and GEMV: tessel against Eigen and OpenBLAS, read against bench/peak.cpp's roofline.
//
//   BM_sgemm_<lib>/n/threads                 C[n,n] = A[n,n] B[n,n]                (FLOPS)
//   BM_linear_<lib>/M/N/K/threads            C[M,N] = A[M,K] W[N,K]ᵀ (Linear layer) (FLOPS)
//   BM_gemv_<lib>_<fmt>/N/K/threads          y[N] = W[N,K] x, M = 1 (bytes_per_second of W)
//   BM_linear_tessel_avx512_<fmt>/M/N/K/...  f16 / bf16 weights at M = 512 (AMX tiles where
//                                            available)
//
// <lib>: tessel_avx2 (cpu_simd<fma3<avx2>>: tessel::cpu under x86-64-v3), tessel_avx512
// (cpu_simd<avx512bw>: tessel::cpu when compiled with AVX-512), eigen, openblas. GEMV cycles
// through copies of W totalling >= 512 MiB, so that W comes from memory as in LLM decoding
// (every layer's weights are read once per token) and not from a large last-level cache.
// Eigen runs on one thread whatever `threads` says (this binary is not built with OpenMP).
// Rates use wall time; the CPU column is the whole process's (all threads, spinning included),
// so on a shared machine FLOP / CPU-second still shows each library's per-core efficiency.

// With -march=native on an AVX-512 machine, GCC 12 warns inside Eigen's AVX-512 transposes
// (its intrinsics start from _mm512_undefined_*(): GCC bug 105593); not our code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "roofline.hpp"
#include "tessel/backend/cpu/gemm.hpp"

#if defined(TESSEL_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace {

using tessel::index_t;
using avx2 = tessel::cpu_simd<xsimd::fma3<xsimd::avx2>>;
#if XSIMD_WITH_AVX512BW
using avx512 = tessel::cpu_simd<xsimd::avx512bw>;
#endif

template <class T>
std::vector<T> random_values(std::size_t n, std::uint32_t seed) {
  std::vector<T> v(n);
  std::uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    const float f = static_cast<float>(s >> 8) * 0x1p-23f - 1.0f;  // [-1, 1)
    if constexpr (std::is_same_v<T, float>) {
      x = f;
    } else {
      x = tessel::from_f32<T>(f);
    }
  }
  return v;
}

void set_threads(int n) {
  tessel::set_num_threads(n);
#if defined(TESSEL_HAVE_OPENBLAS)
  openblas_set_num_threads(n);
#endif
#if defined(_OPENMP)
  Eigen::setNbThreads(n);
#endif
}

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// ---- square SGEMM ------------------------------------------------------------------------

enum class lib { tessel_avx2, tessel_avx512, eigen, openblas };

// C = A B with everything [n, n] row-major (B not transposed: the BLAS "NN" case).
template <lib L>
void BM_sgemm(benchmark::State& state) {
  const index_t n = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  const auto A = random_values<float>(static_cast<std::size_t>(n * n), 1);
  const auto B = random_values<float>(static_cast<std::size_t>(n * n), 2);
  std::vector<float> C(static_cast<std::size_t>(n * n));
  for (auto _ : state) {
    if constexpr (L == lib::tessel_avx2) {
      tessel::gemm<avx2>(n, n, n, A.data(), n, B.data(), n, false, C.data(), n);
#if XSIMD_WITH_AVX512BW
    } else if constexpr (L == lib::tessel_avx512) {
      tessel::gemm<avx512>(n, n, n, A.data(), n, B.data(), n, false, C.data(), n);
#endif
    } else if constexpr (L == lib::eigen) {
      Eigen::Map<const RowMat> a(A.data(), n, n), b(B.data(), n, n);
      Eigen::Map<RowMat> c(C.data(), n, n);
      c.noalias() = a * b;
#if defined(TESSEL_HAVE_OPENBLAS)
    } else if constexpr (L == lib::openblas) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                  static_cast<int>(n), static_cast<int>(n), 1.0f, A.data(), static_cast<int>(n),
                  B.data(), static_cast<int>(n), 0.0f, C.data(), static_cast<int>(n));
#endif
    }
    benchmark::ClobberMemory();
  }
  tessel::bench::set_flops(state, 2.0 * static_cast<double>(n) * n * n);
}

void square_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "threads"});
  for (int threads : {1, 2})
    for (int n : {256, 512, 1024, 2048}) b->Args({n, threads});
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
}

void BM_sgemm_tessel_avx2(benchmark::State& s) {
  BM_sgemm<lib::tessel_avx2>(s);
}
BENCHMARK(BM_sgemm_tessel_avx2)->Apply(square_args);
#if XSIMD_WITH_AVX512BW
void BM_sgemm_tessel_avx512(benchmark::State& s) {
  BM_sgemm<lib::tessel_avx512>(s);
}
BENCHMARK(BM_sgemm_tessel_avx512)->Apply(square_args);
#endif
void BM_sgemm_eigen(benchmark::State& s) {
  BM_sgemm<lib::eigen>(s);
}
BENCHMARK(BM_sgemm_eigen)->Apply(square_args);
#if defined(TESSEL_HAVE_OPENBLAS)
void BM_sgemm_openblas(benchmark::State& s) {
  BM_sgemm<lib::openblas>(s);
}
BENCHMARK(BM_sgemm_openblas)->Apply(square_args);
#endif

// ---- Linear layers: C = A Wᵀ, W [N, K] -----------------------------------------------------

// Copies of W whose total is at least 512 MiB when `cold` (M = 1 must read W from memory).
// The last set is kept: Google Benchmark calls a benchmark function several times.
template <class T>
const std::vector<std::vector<T>>& weight_set(index_t N, index_t K, bool cold) {
  static std::vector<std::vector<T>> copies;
  static index_t key_n = -1, key_k = -1;
  static bool key_cold = false;
  if (N != key_n || K != key_k || cold != key_cold) {
    copies.clear();
    const double bytes = static_cast<double>(N) * K * sizeof(T);
    const int n = cold ? static_cast<int>((512.0 * (1 << 20) + bytes - 1) / bytes) : 1;
    copies.push_back(random_values<T>(static_cast<std::size_t>(N * K), 10));
    for (int i = 1; i < n; ++i) copies.push_back(copies.front());
    key_n = N, key_k = K, key_cold = cold;
  }
  return copies;
}

template <lib L, class T>
void BM_linear(benchmark::State& state) {
  const index_t M = state.range(0), N = state.range(1), K = state.range(2);
  set_threads(static_cast<int>(state.range(3)));
  const auto& W = weight_set<T>(N, K, M == 1);
  const auto A = random_values<float>(static_cast<std::size_t>(M * K), 3);
  std::vector<float> C(static_cast<std::size_t>(M * N));
  std::size_t which = 0;
  for (auto _ : state) {
    const T* w = W[which].data();
    which = (which + 1) % W.size();
    if constexpr (L == lib::tessel_avx2) {
      tessel::gemm<avx2>(M, N, K, A.data(), K, w, K, true, C.data(), N);
#if XSIMD_WITH_AVX512BW
    } else if constexpr (L == lib::tessel_avx512) {
      tessel::gemm<avx512>(M, N, K, A.data(), K, w, K, true, C.data(), N);
#endif
    } else if constexpr (L == lib::eigen) {
      Eigen::Map<const RowMat> a(A.data(), M, K), wm(w, N, K);
      Eigen::Map<RowMat> c(C.data(), M, N);
      if (M == 1) {
        Eigen::Map<Eigen::VectorXf> y(C.data(), N);
        Eigen::Map<const Eigen::VectorXf> x(A.data(), K);
        y.noalias() = wm * x;
      } else {
        c.noalias() = a * wm.transpose();
      }
#if defined(TESSEL_HAVE_OPENBLAS)
    } else if constexpr (L == lib::openblas) {
      if (M == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), 1.0f, w,
                    static_cast<int>(K), A.data(), 1, 0.0f, C.data(), 1);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M),
                    static_cast<int>(N), static_cast<int>(K), 1.0f, A.data(), static_cast<int>(K),
                    w, static_cast<int>(K), 0.0f, C.data(), static_cast<int>(N));
      }
#endif
    }
    benchmark::ClobberMemory();
  }
  tessel::bench::set_flops(state, 2.0 * static_cast<double>(M) * N * K);
  tessel::bench::set_bytes(state, static_cast<double>(N) * K * sizeof(T));
}

void linear_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "threads"});
  for (int threads : {1, 2}) {
    for (int M : {1, 512}) {
      b->Args({M, 4096, 4096, threads});
      b->Args({M, 11008, 4096, threads});
      if (M == 1) b->Args({M, 4096, 11008, threads});
    }
  }
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
}

void gemv_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "threads"});
  for (int threads : {1, 2}) {
    b->Args({1, 4096, 4096, threads});
    b->Args({1, 11008, 4096, threads});
  }
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
}

void BM_linear_tessel_avx2(benchmark::State& s) {
  BM_linear<lib::tessel_avx2, float>(s);
}
BENCHMARK(BM_linear_tessel_avx2)->Apply(linear_args);
#if XSIMD_WITH_AVX512BW
void BM_linear_tessel_avx512(benchmark::State& s) {
  BM_linear<lib::tessel_avx512, float>(s);
}
BENCHMARK(BM_linear_tessel_avx512)->Apply(linear_args);
#endif
void BM_linear_eigen(benchmark::State& s) {
  BM_linear<lib::eigen, float>(s);
}
BENCHMARK(BM_linear_eigen)->Apply(linear_args);
#if defined(TESSEL_HAVE_OPENBLAS)
void BM_linear_openblas(benchmark::State& s) {
  BM_linear<lib::openblas, float>(s);
}
BENCHMARK(BM_linear_openblas)->Apply(linear_args);
#endif

// Half-precision weights: tessel widens them in registers (Eigen/OpenBLAS have no f16 GEMV).
void BM_gemv_tessel_avx2_f16(benchmark::State& s) {
  BM_linear<lib::tessel_avx2, tessel::f16>(s);
}
BENCHMARK(BM_gemv_tessel_avx2_f16)->Apply(gemv_args);
void BM_gemv_tessel_avx2_bf16(benchmark::State& s) {
  BM_linear<lib::tessel_avx2, tessel::bf16>(s);
}
BENCHMARK(BM_gemv_tessel_avx2_bf16)->Apply(gemv_args);
#if XSIMD_WITH_AVX512BW
void BM_gemv_tessel_avx512_f16(benchmark::State& s) {
  BM_linear<lib::tessel_avx512, tessel::f16>(s);
}
BENCHMARK(BM_gemv_tessel_avx512_f16)->Apply(gemv_args);
void BM_gemv_tessel_avx512_bf16(benchmark::State& s) {
  BM_linear<lib::tessel_avx512, tessel::bf16>(s);
}
BENCHMARK(BM_gemv_tessel_avx512_bf16)->Apply(gemv_args);

// Linear layers with f16 / bf16 weights at M = 512 on the AVX-512 backend: on the AMX tiles
// where the build and machine have them (backend/cpu/amx_gemm.hpp), else the f32 micro-kernel
// on widened weights. Read against BM_linear_tessel_avx512 (f32 weights) in the same run.
void prefill_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "threads"});
  for (int threads : {1, 2}) b->Args({512, 4096, 4096, threads});
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
}
void BM_linear_tessel_avx512_f16(benchmark::State& s) {
  BM_linear<lib::tessel_avx512, tessel::f16>(s);
}
BENCHMARK(BM_linear_tessel_avx512_f16)->Apply(prefill_args);
void BM_linear_tessel_avx512_bf16(benchmark::State& s) {
  BM_linear<lib::tessel_avx512, tessel::bf16>(s);
}
BENCHMARK(BM_linear_tessel_avx512_bf16)->Apply(prefill_args);
#endif

}  // namespace

namespace {

// Cost of one parallel_for over the pool with nothing to do per chunk: the floor under every
// threaded kernel call (a decode step makes several hundred of them).
void BM_parallel_for_dispatch(benchmark::State& state) {
  tessel::set_num_threads(static_cast<int>(state.range(0)));
  std::atomic<index_t> sink{0};
  for (auto _ : state) {
    tessel::parallel_for(0, 64, 1, [&](index_t lo, index_t hi) {
      sink.fetch_add(hi - lo, std::memory_order_relaxed);
    });
  }
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_parallel_for_dispatch)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();

// A small decode GEMV (stories15M: dim 288, hidden 768): dominated by dispatch and caches.
void BM_gemv_small_tessel_avx2(benchmark::State& state) {
  const index_t N = state.range(0), K = state.range(1);
  tessel::set_num_threads(static_cast<int>(state.range(2)));
  const auto W = random_values<float>(static_cast<std::size_t>(N * K), 5);
  const auto x = random_values<float>(static_cast<std::size_t>(K), 6);
  std::vector<float> y(static_cast<std::size_t>(N));
  for (auto _ : state) {
    tessel::gemv<avx2>(N, K, W.data(), K, x.data(), y.data());
    benchmark::ClobberMemory();
  }
  tessel::bench::set_flops(state, 2.0 * static_cast<double>(N) * K);
}
BENCHMARK(BM_gemv_small_tessel_avx2)
    ->ArgNames({"N", "K", "threads"})
    ->Args({768, 288, 1})
    ->Args({768, 288, 2})
    ->UseRealTime();

}  // namespace
