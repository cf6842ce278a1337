// conv2d against PyTorch (tools/golden/diffusion_ops_golden.py: F.conv2d in float64) for every
// option, and the fast path (the implicit GEMM) against the scalar reference on random odd
// sizes that hit its edges: slivers spanning two images, several K, row and column blocks,
// few pixels; f16 / bf16 weights against the reference on the same weights.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tessel/io/formats/npy.hpp>
#include <tessel/ops/conv2d.hpp>
#include <utility>

using namespace tessel;

namespace {

const io::NpzFile& goldens() {
  static const io::NpzFile f =
      io::NpzFile::open(std::string(TESSEL_TEST_DATA_DIR) + "/diffusion/conv2d.npz");
  return f;
}

Tensor<float, DynShape<4>> random4(index_t a, index_t b, index_t c, index_t d, unsigned seed) {
  Tensor<float, DynShape<4>> t(a, b, c, d);
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = n(g);
  return t;
}

/// Every element within rtol of want, relative to max(1, |want|).
template <class A, class B>
void check_close(const A& got, const B& want, double rtol, const std::string& what) {
  REQUIRE(got.shape().extents() == want.shape().extents());
  double worst = 0;
  index_t at = 0;
  for (index_t i = 0; i < want.size(); ++i) {
    const double w = want.data()[i], e = std::abs(got.data()[i] - w) / std::max(1.0, std::abs(w));
    if (!(e <= worst)) worst = e, at = i;
  }
  INFO(what << ": worst relative error " << worst << " at element " << at);
  CHECK(worst <= rtol);
}

struct Case {
  const char* name;
  conv2d_options opts;
};

}  // namespace

TEST_CASE("conv2d matches torch.nn.functional.conv2d for every option") {
  const Case cases[] = {
      {"s1p1", {.stride = 1, .padding = 1}},
      {"s2p0", {.stride = 2, .padding = 0}},
      {"k7p3", {.padding = 3}},
      {"dil2", {.padding = 2, .dilation = 2}},
      {"grp2", {.stride = 2, .padding = 1, .groups = 2}},
      {"dw", {.padding = 1, .groups = 6}},
      {"dws2", {.stride = 2, .padding = 2, .groups = 6}},
      {"dwx2", {.padding = 1, .groups = 3}},
      {"k1", {}},
      {"k1s2", {.stride = 2}},
      {"p3s2", {.stride = 2, .padding = 3}},
  };
  const auto& f = goldens();
  for (const auto& c : cases) {
    const std::string n = c.name;
    const auto x = f.get<float, 4>(n + "_x"), w = f.get<float, 4>(n + "_w");
    const auto want = f.get<float, 4>(n + "_y");
    const bool has_bias = f.arrays().count(n + "_b") > 0;
    Tensor<float, DynShape<4>> fast(want.shape()), ref(want.shape());
    if (has_bias) {
      const auto b = f.get<float, 1>(n + "_b");
      conv2d(fast, x, w, b, c.opts);
      conv2d(cpu_scalar{}, ref.view(), x, w, b, c.opts);
      check_close(conv2d(x, w, b, c.opts), want, 1e-4, n + " (new tensor)");
    } else {
      conv2d(fast, x, w, c.opts);
      conv2d(cpu_scalar{}, ref.view(), x, w, c.opts);
      check_close(conv2d(x, w, c.opts), want, 1e-4, n + " (new tensor)");
    }
    check_close(fast, want, 1e-4, n + " (fast)");
    check_close(ref, want, 1e-5, n + " (reference)");
  }
}

// The SIMD kernel of op::conv2d for the build's best instruction set and for narrower ones (its
// micro-kernel, blocking and weight packing follow Arch: sse2 packs without the AVX transpose).
TEST_CASE_TEMPLATE("conv2d fast path equals the reference on odd sizes, threads and column blocks",
                   Backend, default_backend, cpu_simd<xsimd::fma3<xsimd::avx2>>,
                   cpu_simd<xsimd::sse2>) {
  INFO("backend " << std::string(Backend::name()));
  struct Shape {
    index_t N, C, H, W, K, R;
    conv2d_options o;
  };
  const Shape shapes[] = {
      {1, 64, 63, 61, 9, 3, {.padding = 1}},  // col exceeds one block: several GEMMs per image
      {2, 5, 17, 19, 7, 3, {.stride = 1, .padding = 1}},
      {1, 7, 23, 13, 3, 5, {.stride = 3, .padding = 2, .dilation = 2}},
      {2, 12, 15, 14, 9, 3, {.stride = 2, .padding = 1, .groups = 3}},
      {1, 13, 9, 31, 13, 3, {.padding = 1, .groups = 13}},
      {1, 33, 11, 13, 17, 1, {}},
      {3, 4, 5, 5, 2, 5, {}},                  // kernel as large as the image: one output pixel
      {3, 6, 5, 7, 5, 3, {.padding = 1}},      // 35 pixels: slivers straddle images
      {1, 70, 9, 10, 350, 3, {.padding = 1}},  // KD = 630: two K blocks; 350 rows: 2+ A blocks
      {2, 3, 48, 48, 5, 3, {.padding = 1}},    // 4608 pixels: two column blocks (NC)
      {2, 64, 4, 4, 37, 3, {.padding = 1}},    // few pixels, as the U-Net's deepest level
      {1, 9, 1, 1, 11, 3, {.padding = 1}},     // a 1×1 image
      {2, 10, 7, 9, 6, 2, {.stride = 2, .padding = 1}},  // an even kernel, stride 2
  };
  unsigned seed = 1;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& s : shapes) {
      const auto x = random4(s.N, s.C, s.H, s.W, seed++);
      auto w = random4(s.K, s.C / s.o.groups, s.R, s.R, seed++);
      const float scale = 1.f / std::sqrt(static_cast<float>(w.size() / s.K));  // outputs ~ 1
      for (index_t i = 0; i < w.size(); ++i) w.data()[i] *= scale;
      Tensor<float, DynShape<1>> b(s.K);
      for (index_t k = 0; k < s.K; ++k) b(k) = 0.25f * static_cast<float>(k) - 1.f;
      Tensor<float, DynShape<4>> fast(
          DynShape<4>::from_array(detail::conv2d_out_shape<float>(x.view(), w.view(), s.o)));
      conv2d(Backend{}, fast.view(), x, w, b, s.o);
      Tensor<float, DynShape<4>> ref(fast.shape());
      conv2d(cpu_scalar{}, ref.view(), x, w, b, s.o);
      check_close(fast, ref, 1e-5,
                  "C=" + std::to_string(s.C) + " K=" + std::to_string(s.K) +
                      " threads=" + std::to_string(threads));
    }
  }
  set_num_threads(0);
}

TEST_CASE("conv2d with f16 and bf16 weights equals the reference on the same weights") {
  struct Shape {
    index_t N, C, H, W, K, R;
    conv2d_options o;
  };
  const Shape shapes[] = {
      {2, 5, 17, 19, 7, 3, {.padding = 1}},
      {1, 70, 9, 10, 30, 3, {.padding = 1}},
      {3, 6, 5, 7, 5, 3, {.padding = 1}},
      {2, 12, 15, 14, 9, 3, {.stride = 2, .padding = 1, .groups = 3}},
      {1, 13, 9, 31, 13, 3, {.padding = 1, .groups = 13}},
      {1, 33, 11, 13, 17, 1, {}},
  };
  unsigned seed = 100;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& s : shapes) {
      const auto x = random4(s.N, s.C, s.H, s.W, seed++);
      const auto w = random4(s.K, s.C / s.o.groups, s.R, s.R, seed++);
      const float scale = 1.f / std::sqrt(static_cast<float>(w.size() / s.K));
      Tensor<f16, DynShape<4>> w16(w.shape());
      Tensor<bf16, DynShape<4>> wb16(w.shape());
      for (index_t i = 0; i < w.size(); ++i) {
        w16.data()[i] = from_f32<f16>(scale * w.data()[i]);
        wb16.data()[i] = from_f32<bf16>(scale * w.data()[i]);
      }
      Tensor<float, DynShape<1>> b(s.K);
      for (index_t k = 0; k < s.K; ++k) b(k) = 0.5f - 0.125f * static_cast<float>(k);
      const auto e = detail::conv2d_out_shape(x.view(), std::as_const(w16).view(), s.o);
      Tensor<float, DynShape<4>> fast(DynShape<4>::from_array(e)), ref(fast.shape());
      const std::string what = "C=" + std::to_string(s.C) + " K=" + std::to_string(s.K) +
                               " threads=" + std::to_string(threads);
      conv2d(cpu{}, fast.view(), x.view(), w16.view(), b.view(), s.o);
      conv2d(cpu_scalar{}, ref.view(), x.view(), w16.view(), b.view(), s.o);
      check_close(fast, ref, 1e-5, what + " f16");
      conv2d(cpu{}, fast.view(), x.view(), wb16.view(), s.o);
      conv2d(cpu_scalar{}, ref.view(), x.view(), wb16.view(), s.o);
      check_close(fast, ref, 1e-5, what + " bf16, no bias");
      // The f16 weights widened to f32 give the same result through the f32 path.
      Tensor<float, DynShape<4>> w32(w.shape());
      for (index_t i = 0; i < w.size(); ++i) w32.data()[i] = to_f32(w16.data()[i]);
      conv2d(cpu{}, fast.view(), x.view(), w16.view(), b.view(), s.o);
      check_close(conv2d(x, w32, b, s.o), fast, 1e-6, what + " f16 = widened f32");
    }
  }
  set_num_threads(0);
}

TEST_CASE_TEMPLATE("conv2d's Winograd F(2x2, 3x3) path equals the reference", Backend,
                   default_backend, cpu_simd<xsimd::fma3<xsimd::avx2>>, cpu_simd<xsimd::sse2>) {
  INFO("backend " << std::string(Backend::name()));
  struct Shape {
    index_t N, C, H, W, K;
    conv2d_options o;
  };
  const Shape shapes[] = {
      {1, 32, 8, 8, 32, {.padding = 1}},
      {2, 40, 7, 9, 33, {.padding = 1}},  // odd output: partial tiles on both edges
      {1, 32, 5, 6, 35, {}},              // padding 0
      {3, 64, 11, 4, 32, {.padding = 2}},
      {1, 32, 1, 1, 32, {.padding = 1}},  // one pixel
      {2, 64, 6, 5, 64, {.padding = 1, .groups = 2}},
  };
  const index_t saved = detail::conv2d_winograd_min_tiles;
  detail::conv2d_winograd_min_tiles = 1;  // small images take the Winograd path too
  unsigned seed = 300;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& s : shapes) {
      const auto x = random4(s.N, s.C, s.H, s.W, seed++);
      auto w = random4(s.K, s.C / s.o.groups, 3, 3, seed++);
      const float scale = 1.f / std::sqrt(static_cast<float>(w.size() / s.K));
      Tensor<f16, DynShape<4>> w16(w.shape());
      for (index_t i = 0; i < w.size(); ++i) {
        w.data()[i] *= scale;
        w16.data()[i] = from_f32<f16>(w.data()[i]);
      }
      Tensor<float, DynShape<1>> b(s.K);
      for (index_t k = 0; k < s.K; ++k) b(k) = 0.1f * static_cast<float>(k) - 1.f;
      const std::string what =
          "Winograd C=" + std::to_string(s.C) + " threads=" + std::to_string(threads);
      Tensor<float, DynShape<4>> fast(
          DynShape<4>::from_array(detail::conv2d_out_shape<float>(x.view(), w.view(), s.o)));
      conv2d(Backend{}, fast.view(), x, w, b, s.o);
      Tensor<float, DynShape<4>> ref(fast.shape());
      conv2d(cpu_scalar{}, ref.view(), x, w, b, s.o);
      check_close(fast, ref, 1e-5, what);
      conv2d(cpu{}, ref.view(), x.view(), w16.view(), s.o);  // f16 weights, no bias
      Tensor<float, DynShape<4>> ref16(fast.shape());
      conv2d(cpu_scalar{}, ref16.view(), x.view(), w16.view(), s.o);
      check_close(ref, ref16, 1e-5, what + " f16");
    }
  }
  // Bounded scratch: the tiles run in chunks of one and of three rows of tiles.
  for (index_t scratch : {index_t{1}, index_t{16 * 96 * 5 * 3}}) {
    const index_t saved_scratch = detail::conv2d_winograd_scratch;
    detail::conv2d_winograd_scratch = scratch;
    const auto x = random4(2, 40, 7, 9, 400);
    auto w = random4(33, 40, 3, 3, 401);
    for (index_t i = 0; i < w.size(); ++i) w.data()[i] /= std::sqrt(360.f);  // outputs ~ 1
    const auto fast = conv2d(x, w, {.padding = 1});
    Tensor<float, DynShape<4>> ref(fast.shape());
    conv2d(cpu_scalar{}, ref.view(), x, w, {.padding = 1});
    check_close(fast, ref, 1e-5, "Winograd in chunks, scratch " + std::to_string(scratch));
    detail::conv2d_winograd_scratch = saved_scratch;
  }
  detail::conv2d_winograd_min_tiles = saved;
  set_num_threads(0);
  // The SD shape at its default threshold (256 tiles) takes the Winograd path.
  CHECK(detail::conv2d_winograd_fits(3, 3, 1, 1, 320, 320, 32 * 32));
  CHECK_FALSE(detail::conv2d_winograd_fits(3, 3, 2, 1, 320, 320, 32 * 32));
}

TEST_CASE("conv2d rejects bad shapes with both shapes in the message") {
  const auto x = random4(1, 4, 8, 8, 1);
  const auto w = random4(6, 4, 3, 3, 2);
  Tensor<float, DynShape<1>> b(6), b5(5);
  CHECK_THROWS_WITH_AS(conv2d(x, w, {.groups = 2}),
                       "tessel: conv2d: the weight's axis 1 must be C / groups = 2 (input shape "
                       "[1, 4, 8, 8], weight shape [6, 4, 3, 3])",
                       shape_error);
  CHECK_THROWS_AS(conv2d(x, w, b5), shape_error);
  CHECK_THROWS_AS(conv2d(x, random4(6, 4, 9, 9, 3)), shape_error);  // kernel > input
  CHECK_THROWS_AS(conv2d(x, w, {.stride = 0}), shape_error);
  CHECK_THROWS_AS(conv2d(x, random4(6, 2, 3, 3, 4), {.groups = 3}), shape_error);
  Tensor<float, DynShape<4>> y(1, 6, 8, 8);  // padding 0 gives 6x6
  CHECK_THROWS_AS(conv2d(y, x, w, b), shape_error);
  CHECK_NOTHROW(conv2d(y, x, w, b, {.padding = 1}));
}
