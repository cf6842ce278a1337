// 3×3 conv2d (stride 1, padding 1, C_in = C_out) at Stable Diffusion U-Net shapes (64×64×320,
// 32×32×640, 16×16×1280; batch 1 and 2; 1 and 2 threads): tessel's conv2d (an implicit GEMM:
// input panels packed straight into the SGEMM's layout, see ops/conv2d.hpp) against an im2col
// written here followed by Eigen's GEMM. Eigen runs single-threaded (no OpenMP), so on 2
// threads each thread of tessel's pool unfolds and multiplies its own half of the output
// pixels. bench/conv2d_torch.py times PyTorch (oneDNN) at the same shapes and threads.
// Counters: FLOPS = 2·K·C·9·OH·OW per image over wall time; pct_peak = FLOPS in % of the FMA
// peak of the widest vectors compiled (AVX-512 under -march=native: what tessel::cpu uses),
// measured with the same number of pool threads in the same process (as bench/peak.cpp's
// BM_peak_fma), shown as peak_GFLOPS.

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <vector>

#include "roofline.hpp"
#include "tessel/ops/conv2d.hpp"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace {

using tessel::index_t;

/// FMA peak (FLOP/s) of the widest vectors compiled on `threads` threads of the pool: 24
/// independent 512-bit chains per thread (12 of 256 bits without AVX-512), register-only; the
/// best of 16 short runs (~10 ms: on a shared machine some run undisturbed). Measured once per
/// thread count.
double pool_fma_peak(int threads) {
  static double cached[64] = {};
  if (cached[threads] > 0) return cached[threads];
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int lanes = 16, chains = 24;
  const auto fma = [](V x, V a, V b) { return _mm512_fmadd_ps(x, a, b); };
  const auto set = [](float v) { return _mm512_set1_ps(v); };
#elif defined(__AVX2__) && defined(__FMA__)
  using V = __m256;
  constexpr int lanes = 8, chains = 12;
  const auto fma = [](V x, V a, V b) { return _mm256_fmadd_ps(x, a, b); };
  const auto set = [](float v) { return _mm256_set1_ps(v); };
#else
  using V = float;
  constexpr int lanes = 1, chains = 12;
  const auto fma = [](V x, V a, V b) { return x * a + b; };
  const auto set = [](float v) { return v; };
#endif
  tessel::set_num_threads(threads);
  constexpr std::int64_t steps = 1 << 21;
  std::vector<float> sink(static_cast<std::size_t>(threads) * 16);
  double best = 0;
  for (int rep = 0; rep < 16; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    tessel::parallel_for_each_thread([&](int t, int) {
      V acc[chains];
      for (int i = 0; i < chains; ++i) acc[i] = set(1.0f + 0.001f * static_cast<float>(i));
      const V a = set(0.99999f), b = set(1e-6f);
      for (std::int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 24
        for (int i = 0; i < chains; ++i) acc[i] = fma(acc[i], a, b);
      }
      for (int i = 1; i < chains; ++i) acc[0] = fma(acc[0], a, acc[i]);
      std::memcpy(&sink[static_cast<std::size_t>(t) * 16], &acc[0], sizeof(float));
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * lanes * chains * static_cast<double>(steps) * threads / dt);
    benchmark::DoNotOptimize(sink.data());
  }
  return cached[threads] = best;
}

struct ConvData {
  tessel::Tensor<float, tessel::DynShape<4>> x, w, y;
  tessel::Tensor<float, tessel::DynShape<1>> b;
  ConvData(index_t n, index_t c, index_t hw)
      : x(n, c, hw, hw), w(c, c, 3, 3), y(n, c, hw, hw), b(c) {
    std::mt19937 g(1);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    for (index_t i = 0; i < x.size(); ++i) x.data()[i] = d(g);
    for (index_t i = 0; i < w.size(); ++i) w.data()[i] = 0.05f * d(g);
    for (index_t i = 0; i < c; ++i) b(i) = d(g);
  }
};

/// The textbook im2col for 3×3, stride 1, padding 1, output pixels [p0, p1) of one image:
/// col[(c·3 + r)·3 + s, p − p0].
void im2col_3x3(const float* x, index_t C, index_t H, index_t W, index_t p0, index_t p1,
                float* col) {
  const index_t np = p1 - p0;
  for (index_t c = 0; c < C; ++c)
    for (index_t r = 0; r < 3; ++r)
      for (index_t s = 0; s < 3; ++s) {
        float* out = col + ((c * 3 + r) * 3 + s) * np - p0;
        for (index_t p = p0; p < p1;) {  // one output row (or its part) at a time
          const index_t oh = p / W, ow0 = p % W, ow1 = std::min(W, ow0 + (p1 - p));
          const index_t ih = oh + r - 1;
          const float* xr = x + (c * H + std::clamp<index_t>(ih, 0, H - 1)) * W;
          for (index_t ow = ow0; ow < ow1; ++ow) {
            const index_t iw = ow + s - 1;
            out[p + ow - ow0] = ih >= 0 && ih < H && iw >= 0 && iw < W ? xr[iw] : 0.f;
          }
          p += ow1 - ow0;
        }
      }
}

void set_counters(benchmark::State& state, index_t n, index_t c, index_t hw, int threads) {
  const double flop = 2.0 * double(n) * double(c) * double(c) * 9 * double(hw * hw);
  tessel::bench::set_flops(state, flop);
  const double peak = pool_fma_peak(threads);
  // A rate of (FLOP / peak FLOP/s) per second: FLOPS as a percentage of the peak.
  state.counters["pct_peak"] =
      benchmark::Counter(peak > 0 ? 100 * flop * static_cast<double>(state.iterations()) / peak : 0,
                         benchmark::Counter::kIsRate);
  state.counters["peak_GFLOPS"] = peak / 1e9;
}

void BM_conv2d_3x3_tessel(benchmark::State& state) {
  const auto n = state.range(0), c = state.range(1), hw = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  pool_fma_peak(threads);
  tessel::set_num_threads(threads);
  ConvData d(n, c, hw);
  for (auto _ : state) {
    tessel::conv2d(d.y, d.x, d.w, d.b, {.padding = 1});
    benchmark::ClobberMemory();
  }
  set_counters(state, n, c, hw, threads);
  tessel::set_num_threads(0);
}

void BM_conv2d_3x3_eigen_im2col(benchmark::State& state) {
  const auto n = state.range(0), c = state.range(1), hw = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  pool_fma_peak(threads);
  tessel::set_num_threads(threads);
  ConvData d(n, c, hw);
  const index_t P = hw * hw;
  std::vector<std::vector<float>> cols(static_cast<std::size_t>(threads));
  for (auto _ : state) {
    tessel::parallel_for_each_thread([&](int t, int nt) {
      const index_t p0 = P * t / nt, p1 = P * (t + 1) / nt;
      auto& col = cols[static_cast<std::size_t>(t)];
      col.resize(static_cast<std::size_t>(c * 9 * (p1 - p0)));
      for (index_t i = 0; i < n; ++i) {
        im2col_3x3(d.x.data() + i * c * P, c, hw, hw, p0, p1, col.data());
        Eigen::Map<const RowMat> wm(d.w.data(), c, c * 9), cm(col.data(), c * 9, p1 - p0);
        Eigen::Map<RowMat, 0, Eigen::OuterStride<>> ym(d.y.data() + i * c * P + p0, c, p1 - p0,
                                                       Eigen::OuterStride<>(P));
        ym.noalias() = wm * cm;
        for (index_t k = 0; k < c; ++k) ym.row(k).array() += d.b(k);
      }
    });
    benchmark::ClobberMemory();
  }
  set_counters(state, n, c, hw, threads);
  tessel::set_num_threads(0);
}

void sd_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "C", "HW", "threads"});
  for (int threads : {1, 2})
    for (int batch : {1, 2})
      for (auto [c, hw] : {std::pair{320, 64}, std::pair{640, 32}, std::pair{1280, 16}})
        b->Args({batch, c, hw, threads});
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
}

}  // namespace

BENCHMARK(BM_conv2d_3x3_tessel)->Apply(sd_shapes);
BENCHMARK(BM_conv2d_3x3_eigen_im2col)->Apply(sd_shapes);
