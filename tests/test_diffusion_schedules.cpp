// Beta schedules, v-prediction, classifier-free guidance and the Euler / Euler-ancestral
// samplers against their closed forms, computed here in double: diffusers' linear,
// scaled_linear and squaredcos_cap_v2 formulas; ε recovered from v = √ᾱ ε − √(1−ᾱ) x₀; Euler's
// step is DDIM η = 0 in the variable x_t/√ᾱ; Euler-ancestral's σ_up² + σ_down² = σ_j² and its
// step is DDIM η = 1; and with
// the ideal ε of a one-image data set both samplers land on that image.

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <tessel/models/samplers.hpp>
#include <vector>

using namespace tessel;
using namespace tessel::models;

namespace {

std::vector<float> randn(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t k = 0; k < a.size(); ++k) m = std::max(m, std::abs(a[k] - b[k]));
  return m;
}

}  // namespace

TEST_CASE("beta schedules follow diffusers' formulas") {
  const index_t T = 1000;
  const auto lin = make_schedule(BetaSchedule::linear, T, 1e-4, 0.02);
  const auto sl = make_schedule(BetaSchedule::scaled_linear, T, 0.00085, 0.012);
  const auto cs = make_schedule(BetaSchedule::cosine, T);
  REQUIRE(lin.T() == T);
  double prod_lin = 1, prod_sl = 1;
  const double pi = 3.14159265358979323846;
  const auto f = [&](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * pi / 2), 2); };
  for (index_t i = 1; i <= T; ++i) {
    const double u = static_cast<double>(i - 1) / (T - 1);
    const double bl = 1e-4 + (0.02 - 1e-4) * u;
    const double r = std::sqrt(0.00085) + (std::sqrt(0.012) - std::sqrt(0.00085)) * u;
    prod_lin *= 1 - bl;
    prod_sl *= 1 - r * r;
    CHECK(lin.beta[std::size_t(i)] == doctest::Approx(bl).epsilon(1e-12));
    CHECK(sl.beta[std::size_t(i)] == doctest::Approx(r * r).epsilon(1e-12));
    CHECK(lin.abar(i) == doctest::Approx(prod_lin).epsilon(1e-10));
    CHECK(sl.abar(i) == doctest::Approx(prod_sl).epsilon(1e-10));
    // Unclipped cosine steps telescope: ᾱ_i = f(i/T) / f(0).
    if (i < T) CHECK(cs.abar(i) == doctest::Approx(f(double(i) / T) / f(0)).epsilon(1e-9));
  }
  CHECK(cs.beta[std::size_t(T)] == doctest::Approx(0.999));       // the cap
  CHECK(sl.abar(T) == doctest::Approx(0.0046600).epsilon(1e-3));  // SD's ᾱ at t = 999
  CHECK(schedule_sigma(sl, 0) == 0.0);
  CHECK(schedule_sigma(sl, T) == doctest::Approx(std::sqrt((1 - prod_sl) / prod_sl)));
  CHECK_THROWS_AS(make_schedule(BetaSchedule::linear, 0), value_error);
  CHECK_THROWS_AS(make_schedule(BetaSchedule::linear, 10, 0.5, 0.1), value_error);
}

TEST_CASE("v-prediction converts to epsilon; guidance is eps_u + g (eps_c - eps_u)") {
  const auto s = make_schedule(BetaSchedule::scaled_linear);
  const std::size_t n = 64;
  const auto x0 = randn(n, 1), eps = randn(n, 2);
  for (index_t i : {1, 250, 999}) {
    const double a = s.abar(i);
    std::vector<float> xt(n), v(n);
    for (std::size_t k = 0; k < n; ++k) {
      xt[k] = static_cast<float>(std::sqrt(a) * x0[k] + std::sqrt(1 - a) * eps[k]);
      v[k] = static_cast<float>(std::sqrt(a) * eps[k] - std::sqrt(1 - a) * x0[k]);
    }
    auto e = v;
    to_epsilon(s, i, Prediction::v, xt, e);
    std::vector<double> want(eps.begin(), eps.end());
    CHECK(max_abs_diff(e, want) < 1e-5);
    auto same = v;
    to_epsilon(s, i, Prediction::epsilon, xt, same);
    CHECK(same == v);
  }
  const auto eu = randn(n, 3), ec = randn(n, 4);
  std::vector<float> out(n);
  for (double g : {0.0, 1.0, 7.5}) {
    cfg_combine(eu, ec, g, out);
    std::vector<double> want(n);
    for (std::size_t k = 0; k < n; ++k) want[k] = eu[k] + g * (double(ec[k]) - eu[k]);
    CHECK(max_abs_diff(out, want) < 1e-5);
  }
  CHECK_THROWS_AS(cfg_combine(eu, std::span<const float>(ec).first(3), 1.0, out), shape_error);
}

TEST_CASE("an Euler step is DDIM eta = 0 in x_t / sqrt(abar); ancestral sigmas add up") {
  const auto s = make_schedule(BetaSchedule::scaled_linear);
  const std::size_t n = 128;
  const auto xt = randn(n, 5), eps = randn(n, 6), z = randn(n, 7);
  for (auto [i, j] : {std::pair<index_t, index_t>{981, 961}, {500, 300}, {21, 0}}) {
    const double ai = s.abar(i), aj = s.abar(j);
    const double si = std::sqrt((1 - ai) / ai), sj = std::sqrt((1 - aj) / aj);
    CHECK(schedule_sigma(s, i) == doctest::Approx(si));
    // Euler on x = x_t/√ᾱ_i, back to x_t with √ᾱ_j, against DDIM's step on x_t.
    std::vector<float> x(n), ddim = xt;
    for (std::size_t k = 0; k < n; ++k) x[k] = static_cast<float>(xt[k] / std::sqrt(ai));
    euler_step(s, i, j, x, eps);
    ddim_step(s, i, j, ddim, eps, 0.0);
    std::vector<double> back(n), want(n);
    for (std::size_t k = 0; k < n; ++k) {
      back[k] = x[k] * std::sqrt(aj);
      want[k] = xt[k] / std::sqrt(ai) + eps[k] * (sj - si);
    }
    CHECK(max_abs_diff(x, want) < 1e-4 * std::max(1.0, si));
    CHECK(max_abs_diff(ddim, back) < 1e-4);

    // Ancestral: σ_up = min(σ_j, √(σ_j²(σ_i² − σ_j²)/σ_i²)), σ_down = √(σ_j² − σ_up²).
    const double up = std::min(sj, std::sqrt(sj * sj * (si * si - sj * sj) / (si * si)));
    const double down = std::sqrt(sj * sj - up * up);
    const auto a = ancestral_sigmas(si, sj);
    CHECK(a[0] == doctest::Approx(up));
    CHECK(a[1] == doctest::Approx(down));
    CHECK(a[0] * a[0] + a[1] * a[1] == doctest::Approx(sj * sj));
    std::vector<float> xa(n);
    for (std::size_t k = 0; k < n; ++k) xa[k] = static_cast<float>(xt[k] / std::sqrt(ai));
    euler_step(s, i, j, xa, eps, z);
    for (std::size_t k = 0; k < n; ++k)
      want[k] = xt[k] / std::sqrt(ai) + eps[k] * (down - si) + up * z[k];
    CHECK(max_abs_diff(xa, want) < 1e-4 * std::max(1.0, si));
    // ... and it is DDIM with η = 1 (the same noise variance σ_up² ᾱ_j, the same mean).
    std::vector<float> d1 = xt;
    ddim_step(s, i, j, d1, eps, 1.0, z);
    for (std::size_t k = 0; k < n; ++k) back[k] = xa[k] * std::sqrt(aj);
    CHECK(max_abs_diff(d1, back) < 1e-4);
  }
  std::vector<float> x(n);
  CHECK_THROWS_AS(euler_step(s, 5, 0, x, std::span<const float>(eps).first(5)), shape_error);
  CHECK_THROWS_AS(euler_step(s, 1001, 0, x, eps), shape_error);
}

TEST_CASE("Euler and Euler-ancestral with the ideal eps of one image land on it") {
  const auto s = make_schedule(BetaSchedule::scaled_linear);
  const index_t n = 2 * 3 * 4 * 4;
  const auto c = randn(std::size_t(n), 8);
  // For a data set of one image c: ε(x_t, i) = (x_t − √ᾱ_i c) / √(1 − ᾱ_i).
  const auto ideal = [&](TensorView<const float, DynShape<4>> xt, index_t i) {
    Tensor<float, DynShape<4>> e(xt.shape());
    const double a = s.abar(i);
    for (index_t k = 0; k < n; ++k)
      e.data()[k] =
          static_cast<float>((xt.data()[k] - std::sqrt(a) * c[std::size_t(k)]) / std::sqrt(1 - a));
    return e;
  };
  for (bool ancestral : {false, true}) {
    Tensor<float, DynShape<4>> x(2, 3, 4, 4);
    const auto z = randn(std::size_t(n), 9);
    std::copy(z.begin(), z.end(), x.data());
    std::mt19937_64 rng(1);
    euler_sample(ideal, s, x, ddim_timesteps(1000, 20), ancestral, rng);
    std::vector<double> want(c.begin(), c.end());
    std::vector<float> got(x.data(), x.data() + n);
    INFO("ancestral " << ancestral);
    CHECK(max_abs_diff(got, want) < 1e-3);
  }
  // One plain Euler step from x_T keeps x_T's scale: x = x_T √(σ_T² + 1) before the step.
  Tensor<float, DynShape<4>> x(1, 1, 1, 1);
  x.data()[0] = 1.0f;
  std::mt19937_64 rng(1);
  const auto zero = [](TensorView<const float, DynShape<4>> xt, index_t) {
    return Tensor<float, DynShape<4>>(xt.shape());
  };
  euler_sample(zero, s, x, {999}, false, rng);  // d = 0: x stays x_T / √ᾱ_999
  CHECK(x.data()[0] == doctest::Approx(1 / std::sqrt(s.abar(999))).epsilon(1e-6));
}
