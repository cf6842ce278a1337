// group_norm, upsample_nearest2x, avg_pool2d_2x2 and timestep_embedding against PyTorch
// (tools/golden/diffusion_ops_golden.py: F.group_norm in float64, F.interpolate, F.avg_pool2d,
// diffusers' get_timestep_embedding formula), and group_norm's fast path against its reference.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tessel/io/npy.hpp>
#include <tessel/ops/group_norm.hpp>
#include <tessel/ops/resample.hpp>
#include <tessel/ops/timestep_embedding.hpp>

using namespace tessel;

namespace {

const io::NpzFile& goldens() {
  static const io::NpzFile f =
      io::NpzFile::open(std::string(TESSEL_TEST_DATA_DIR) + "/diffusion/ops.npz");
  return f;
}

template <class A, class B>
void check_close(const A& got, const B& want, double rtol, const std::string& what) {
  REQUIRE(got.shape().extents() == want.shape().extents());
  double worst = 0;
  for (index_t i = 0; i < want.size(); ++i) {
    const double w = want.data()[i];
    worst = std::max(worst, std::abs(got.data()[i] - w) / std::max(1.0, std::abs(w)));
  }
  INFO(what << ": worst relative error " << worst);
  CHECK(worst <= rtol);
}

template <std::size_t R>
void group_norm_case(const std::string& n, index_t groups, float eps) {
  const auto& f = goldens();
  const auto x = f.get<float, R>(n + "_x"), want = f.get<float, R>(n + "_y");
  const auto w = f.get<float, 1>(n + "_w"), b = f.get<float, 1>(n + "_b");
  Tensor<float, DynShape<R>> ref(x.shape());
  group_norm(cpu_scalar{}, ref, x, w, b, groups, eps);
  check_close(group_norm(x, w, b, groups, eps), want, 1e-5, n + " fast");
  check_close(ref, want, 1e-6, n + " reference");
  auto inplace = x.clone();  // y may be x
  group_norm(inplace, inplace, w, b, groups, eps);
  check_close(inplace, want, 1e-5, n + " in place");
}

}  // namespace

TEST_CASE("group_norm matches torch.nn.functional.group_norm") {
  group_norm_case<4>("gn_a", 3, 1e-5f);
  group_norm_case<4>("gn_b", 32, 1e-6f);
  group_norm_case<3>("gn_c", 4, 1e-5f);
  group_norm_case<4>("gn_d", 1, 1e-5f);
}

TEST_CASE("group_norm fast path equals the reference at U-Net sizes, 1 and 2 threads") {
  Tensor<float, DynShape<4>> x(2, 64, 17, 15);
  Tensor<float, DynShape<1>> w(64), b(64);
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = 100.f + nd(g);  // |mean| >> std
  for (index_t i = 0; i < 64; ++i) w(i) = nd(g), b(i) = nd(g);
  Tensor<float, DynShape<4>> ref(x.shape());
  group_norm(cpu_scalar{}, ref, x, w, b, 32, 1e-6f);
  for (int t : {1, 2}) {
    set_num_threads(t);
    check_close(group_norm(x, w, b, 32, 1e-6f), ref, 1e-4, "threads " + std::to_string(t));
  }
  set_num_threads(0);
}

TEST_CASE("group_norm_silu equals SiLU of the golden group_norm, fast and reference") {
  const auto& f = goldens();
  const auto x = f.get<float, 4>("gn_b_x"), gn = f.get<float, 4>("gn_b_y");
  const auto w = f.get<float, 1>("gn_b_w"), b = f.get<float, 1>("gn_b_b");
  Tensor<float, DynShape<4>> want(gn.shape()), fast(gn.shape()), ref(gn.shape());
  for (index_t i = 0; i < gn.size(); ++i) {
    const double v = gn.data()[i];
    want.data()[i] = static_cast<float>(v / (1.0 + std::exp(-v)));
  }
  group_norm_silu(cpu_scalar{}, ref, x, w, b, 32, 1e-6f);
  check_close(ref, want, 1e-6, "group_norm_silu reference");
  for (int t : {1, 2}) {
    set_num_threads(t);
    group_norm_silu(cpu{}, fast, x, w, b, 32, 1e-6f);
    check_close(fast, want, 1e-5, "group_norm_silu fast, threads " + std::to_string(t));
  }
  set_num_threads(0);
  // Odd plane sizes (vector tails) and values far into both tails of SiLU.
  Tensor<float, DynShape<4>> x2(2, 12, 7, 5), y2(x2.shape()), r2(x2.shape());
  Tensor<float, DynShape<1>> w2(12), b2(12);
  for (index_t i = 0; i < x2.size(); ++i) x2.data()[i] = std::sin(0.7f * static_cast<float>(i));
  for (index_t i = 0; i < 12; ++i) w2(i) = 4.f * static_cast<float>(i) - 20.f, b2(i) = 0.5f;
  group_norm_silu(cpu{}, y2, x2, w2, b2, 3, 1e-5f);
  group_norm_silu(cpu_scalar{}, r2, x2, w2, b2, 3, 1e-5f);
  check_close(y2, r2, 1e-5, "group_norm_silu odd sizes");
}

TEST_CASE("group_norm rejects bad shapes") {
  Tensor<float, DynShape<4>> x(1, 6, 4, 4), y(1, 6, 4, 5);
  Tensor<float, DynShape<1>> w(6), w5(5);
  CHECK_THROWS_WITH_AS(group_norm(x, w, w, 4, 1e-5f),
                       "tessel: group_norm: the channels must split into whole groups (input "
                       "shape [1, 6, 4, 4], weight shape [6], bias shape [6], groups 4)",
                       shape_error);
  CHECK_THROWS_AS(group_norm(x, w5, w, 3, 1e-5f), shape_error);
  CHECK_THROWS_AS(group_norm(y, x, w, w, 3, 1e-5f), shape_error);
}

TEST_CASE("upsample_nearest2x and avg_pool2d_2x2 match PyTorch") {
  const auto& f = goldens();
  const auto ux = f.get<float, 4>("up_x"), px = f.get<float, 4>("pool_x");
  check_close(upsample_nearest2x(ux), f.get<float, 4>("up_y"), 0, "upsample");
  check_close(avg_pool2d_2x2(px), f.get<float, 4>("pool_y"), 1e-6, "avg_pool2d (odd H: floor)");
  Tensor<float, DynShape<4>> bad(2, 3, 10, 9);
  CHECK_THROWS_AS(upsample_nearest2x(bad.view(), ux.view()), shape_error);
  CHECK_THROWS_AS(avg_pool2d_2x2(bad.view(), px.view()), shape_error);
}

TEST_CASE("timestep_embedding matches diffusers' get_timestep_embedding") {
  const auto& f = goldens();
  const auto t = f.get<float, 1>("temb_t");
  check_close(timestep_embedding(t, 32), f.get<float, 2>("temb_a"), 1e-6, "SD: [cos, sin]");
  check_close(timestep_embedding(t, 7, {.flip_sin_to_cos = false, .downscale_freq_shift = 1}),
              f.get<float, 2>("temb_b"), 1e-6, "diffusers defaults, odd dim");
  Tensor<float, DynShape<2>> bad(4, 32);
  CHECK_THROWS_AS(timestep_embedding(bad.view(), t.view()), shape_error);
}
