// group_norm, upsample_nearest2x, avg_pool2d_2x2 and timestep_embedding against PyTorch
// (tools/golden/diffusion_ops_golden.py: F.group_norm in float64, F.interpolate, F.avg_pool2d,
// diffusers' get_timestep_embedding formula), and every kernel-table entry of the diffusion ops
// (group_norm, the resampling ops, SiLU, GEGLU, scaled softmax rows): the SIMD kernel of
// default_backend against the cpu_scalar reference on odd sizes.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tessel/io/formats/npy.hpp>
#include <tessel/ops/activation.hpp>
#include <tessel/ops/group_norm.hpp>
#include <tessel/ops/resample.hpp>
#include <tessel/ops/softmax.hpp>
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
  check_close(upsample_nearest2x(ux, cpu_scalar{}), f.get<float, 4>("up_y"), 0, "upsample ref");
  check_close(avg_pool2d_2x2(px, cpu_scalar{}), f.get<float, 4>("pool_y"), 1e-6,
              "avg_pool2d reference");
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

namespace {
template <class T>
void fill_normal(T& t, unsigned seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, scale);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = nd(g);
}
}  // namespace

TEST_CASE("the resampling kernels of default_backend equal cpu_scalar's on odd sizes") {
  Tensor<float, DynShape<4>> x(3, 5, 7, 9);
  fill_normal(x, 11);
  for (int t : {1, 2}) {
    set_num_threads(t);
    check_close(upsample_nearest2x(x, default_backend{}), upsample_nearest2x(x, cpu_scalar{}), 0,
                "upsample");
    check_close(avg_pool2d_2x2(x, default_backend{}), avg_pool2d_2x2(x, cpu_scalar{}), 0,
                "avg_pool2d");
    const auto p = pad2d_zero(x, 0, 1, 2, 3, default_backend{});
    const auto r = pad2d_zero(x, 0, 1, 2, 3, cpu_scalar{});
    check_close(p, r, 0, "pad2d_zero");
    // The reference itself: interior copied, borders zero.
    CHECK(r(2, 4, 2 + 6, 8) == x(2, 4, 6, 8));
    CHECK(r(1, 1, 0, 3) == 0.f);
    CHECK(r(1, 1, 5, 9) == 0.f);
  }
  set_num_threads(0);
  CHECK_THROWS_AS(pad2d_zero(x, -1, 0, 0, 0, cpu_scalar{}), value_error);
}

TEST_CASE("group_norm's SIMD kernel equals the reference on odd sizes") {
  Tensor<float, DynShape<4>> x(3, 10, 5, 3), y(x.shape()), r(x.shape());
  Tensor<float, DynShape<1>> w(10), b(10);
  fill_normal(x, 5, 3.f);
  fill_normal(w, 6);
  fill_normal(b, 7);
  group_norm(default_backend{}, y, x, w, b, 5, 1e-5f);
  group_norm(cpu_scalar{}, r, x, w, b, 5, 1e-5f);
  check_close(y, r, 1e-5, "group_norm 3x10x5x3, 5 groups");
}

TEST_CASE("SiLU, GEGLU and scaled softmax kernels: SIMD equals the reference on odd sizes") {
  for (int t : {1, 2}) {
    set_num_threads(t);
    for (index_t n : {1, 7, 33, 40001}) {
      Tensor<float, DynShape<1>> a(n);
      fill_normal(a, static_cast<unsigned>(n), 4.f);
      auto r = a.clone();
      kernel<op::silu, default_backend>::run(a.data(), n);
      kernel<op::silu, cpu_scalar>::run(r.data(), n);
      check_close(a, r, 1e-6, "silu n=" + std::to_string(n));
    }
    for (index_t F : {1, 5, 37}) {
      const index_t M = 9;
      Tensor<float, DynShape<2>> h(M, 2 * F), a(M, F), r(M, F);
      fill_normal(h, static_cast<unsigned>(F), 2.f);
      kernel<op::geglu, default_backend>::run(h.data(), M, F, a.data());
      kernel<op::geglu, cpu_scalar>::run(h.data(), M, F, r.data());
      check_close(a, r, 1e-6, "geglu F=" + std::to_string(F));
      // The reference against the formula in double.
      const double g = h(4, F + F / 2), v = h(4, F / 2);
      CHECK(r(4, F / 2) == doctest::Approx(v * 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)))));
    }
    for (index_t L : {1, 3, 17, 77}) {
      const index_t M = 13;
      Tensor<float, DynShape<2>> s(M, L);
      fill_normal(s, static_cast<unsigned>(L), 5.f);
      auto r = s.clone(), orig = s.clone();
      kernel<op::softmax, default_backend>::run(s.data(), s.data(), M, L, 0.125f);
      kernel<op::softmax, cpu_scalar>::run(r.data(), r.data(), M, L, 0.125f);
      check_close(s, r, 1e-6, "scaled softmax L=" + std::to_string(L));
      double sum = 0, mx = -1e30;
      for (index_t j = 0; j < L; ++j) mx = std::max(mx, 0.125 * orig(2, j));
      for (index_t j = 0; j < L; ++j) sum += std::exp(0.125 * orig(2, j) - mx);
      CHECK(r(2, 0) == doctest::Approx(std::exp(0.125 * orig(2, 0) - mx) / sum));
    }
  }
  set_num_threads(0);
}
