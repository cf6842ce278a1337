// 3×3 conv2d (stride 1, padding 1, C_in = C_out) at Stable Diffusion U-Net shapes: tessel's
// conv2d (im2col in blocks of output pixels + the packed SGEMM) against an im2col written here
// followed by Eigen's GEMM (Eigen runs single-threaded unless built with OpenMP).
// FLOPS counts 2·K·C·9·OH·OW per image (wall time, like bench/gemm.cpp).

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <random>
#include <vector>

#include "roofline.hpp"
#include "tessel/ops/conv2d.hpp"

namespace {

struct ConvData {
  tessel::Tensor<float, tessel::DynShape<4>> x, w, y;
  tessel::Tensor<float, tessel::DynShape<1>> b;
  ConvData(tessel::index_t n, tessel::index_t c, tessel::index_t hw)
      : x(n, c, hw, hw), w(c, c, 3, 3), y(n, c, hw, hw), b(c) {
    std::mt19937 g(1);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    for (tessel::index_t i = 0; i < x.size(); ++i) x.data()[i] = d(g);
    for (tessel::index_t i = 0; i < w.size(); ++i) w.data()[i] = 0.05f * d(g);
    for (tessel::index_t i = 0; i < c; ++i) b(i) = d(g);
  }
};

/// The textbook im2col for 3×3, stride 1, padding 1: col[(c·3 + r)·3 + s, oh·W + ow].
void im2col_3x3(const float* x, tessel::index_t C, tessel::index_t H, tessel::index_t W,
                float* col) {
  for (tessel::index_t c = 0; c < C; ++c)
    for (tessel::index_t r = 0; r < 3; ++r)
      for (tessel::index_t s = 0; s < 3; ++s) {
        float* out = col + ((c * 3 + r) * 3 + s) * H * W;
        for (tessel::index_t oh = 0; oh < H; ++oh)
          for (tessel::index_t ow = 0; ow < W; ++ow) {
            const tessel::index_t ih = oh + r - 1, iw = ow + s - 1;
            out[oh * W + ow] =
                ih >= 0 && ih < H && iw >= 0 && iw < W ? x[(c * H + ih) * W + iw] : 0.f;
          }
      }
}

void BM_conv2d_3x3_tessel(benchmark::State& state) {
  const auto n = state.range(0), c = state.range(1), hw = state.range(2);
  tessel::set_num_threads(static_cast<int>(state.range(3)));
  ConvData d(n, c, hw);
  for (auto _ : state) {
    tessel::conv2d(d.y, d.x, d.w, d.b, {.padding = 1});
    benchmark::ClobberMemory();
  }
  tessel::bench::set_flops(state, 2.0 * double(n) * double(c) * double(c) * 9 * double(hw * hw));
  tessel::set_num_threads(0);
}

void BM_conv2d_3x3_eigen_im2col(benchmark::State& state) {
  const auto n = state.range(0), c = state.range(1), hw = state.range(2);
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
#if defined(_OPENMP)
  Eigen::setNbThreads(static_cast<int>(state.range(3)));
#endif
  ConvData d(n, c, hw);
  std::vector<float> col(static_cast<std::size_t>(c * 9 * hw * hw));
  for (auto _ : state) {
    for (tessel::index_t i = 0; i < n; ++i) {
      im2col_3x3(d.x.data() + i * c * hw * hw, c, hw, hw, col.data());
      Eigen::Map<const RowMat> wm(d.w.data(), c, c * 9), cm(col.data(), c * 9, hw * hw);
      Eigen::Map<RowMat> ym(d.y.data() + i * c * hw * hw, c, hw * hw);
      ym.noalias() = wm * cm;
      for (tessel::index_t k = 0; k < c; ++k) ym.row(k).array() += d.b(k);
    }
    benchmark::ClobberMemory();
  }
  tessel::bench::set_flops(state, 2.0 * double(n) * double(c) * double(c) * 9 * double(hw * hw));
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
