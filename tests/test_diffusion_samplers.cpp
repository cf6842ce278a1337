// DDPM and DDIM steps against their closed forms (Ho et al. 2020; Song et al. 2021), computed
// here in double on a linear β schedule: the DDPM posterior mean and variances, DDIM η = 0
// determinism and its inversion retracing the path, and DDIM η = 1 one step = DDPM posterior.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tessel/models/samplers.hpp>
#include <vector>

using namespace tessel;
using models::NoiseSchedule;

namespace {

/// Linear β from 1e-4 to 0.02 over T = 1000 (the DDPM paper's), ᾱ_i = Π_{k<=i} (1 − β_k).
NoiseSchedule linear_schedule() {
  Tensor<float, DynShape<1>> b(1001), a(1001);
  double prod = 1;
  for (index_t i = 0; i <= 1000; ++i) {
    b(i) = static_cast<float>(1e-4 + (0.02 - 1e-4) * static_cast<double>(i) / 1000);
    prod *= 1 - static_cast<double>(b(i));
    a(i) = static_cast<float>(prod);
  }
  return NoiseSchedule::from(b.view(), a.view());
}

std::vector<float> randn(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace

TEST_CASE("DDPM step: the noise-free part is the posterior mean, the noise is sigma z") {
  const auto s = linear_schedule();
  const auto x0 = randn(64, 1), eps = randn(64, 2), z = randn(64, 3);
  for (index_t i : {2, 37, 500, 1000}) {
    const double ai = s.abar(i), ap = s.abar(i - 1), b = s.beta[std::size_t(i)];
    auto mean = x0;
    models::ddpm_step(s, i, mean, eps, {});
    for (auto v : {models::DDPMVariance::beta, models::DDPMVariance::posterior}) {
      auto noisy = x0;
      models::ddpm_step(s, i, noisy, eps, z, v);
      const double var = v == models::DDPMVariance::beta ? b : (1 - ap) / (1 - ai) * b;
      for (std::size_t k = 0; k < 64; ++k)
        CHECK(noisy[k] - mean[k] == doctest::Approx(std::sqrt(var) * z[k]).epsilon(1e-4));
    }
    for (std::size_t k = 0; k < 64; ++k) {
      // q(x_{i−1} | x_i, x̂₀) has mean √ᾱ_{i−1} β_i/(1−ᾱ_i) x̂₀ + √(1−β_i)(1−ᾱ_{i−1})/(1−ᾱ_i) x_i.
      const double xh = (x0[k] - std::sqrt(1 - ai) * eps[k]) / std::sqrt(ai);
      const double mu =
          std::sqrt(ap) * b / (1 - ai) * xh + std::sqrt(1 - b) * (1 - ap) / (1 - ai) * x0[k];
      CHECK(mean[k] == doctest::Approx(mu).epsilon(1e-4).scale(1));
    }
  }
  auto x = x0;
  models::ddpm_step(s, 1, x, eps, z);  // the last step adds no noise
  auto m = x0;
  models::ddpm_step(s, 1, m, eps, {});
  CHECK(x == m);
}

TEST_CASE("DDIM eta = 0: deterministic, the closed form, and inversion retraces the path") {
  const auto s = linear_schedule();
  const auto x0 = randn(32, 4), eps = randn(32, 5), z = randn(32, 6);
  auto a = x0, b = x0;
  models::ddim_step(s, 980, 960, a, eps, 0.0);
  models::ddim_step(s, 980, 960, b, eps, 0.0, z);  // noise is ignored at eta = 0
  CHECK(a == b);
  for (std::size_t k = 0; k < 32; ++k) {
    const double ai = s.abar(980), aj = s.abar(960);
    const double xh = (x0[k] - std::sqrt(1 - ai) * eps[k]) / std::sqrt(ai);
    CHECK(a[k] == doctest::Approx(std::sqrt(aj) * xh + std::sqrt(1 - aj) * eps[k]).epsilon(1e-5));
  }
  models::ddim_step(s, 960, 980, a, eps, 0.0);  // the inverse step with the same ε
  for (std::size_t k = 0; k < 32; ++k) CHECK(a[k] == doctest::Approx(x0[k]).epsilon(1e-5));
  CHECK_THROWS_AS(models::ddim_step(s, 960, 980, a, eps, 0.5, z), value_error);

  // The ideal ε for data that is a single image c: ε(x, i) = (x − √ᾱ_i c)/√(1−ᾱ_i). DDIM then
  // lands exactly on c, and inverting from the last noisy state climbs back along the path.
  const auto c = randn(16, 7);
  const auto ideal = [&](const std::vector<float>& x, index_t i) {
    std::vector<float> e(x.size());
    for (std::size_t k = 0; k < x.size(); ++k)
      e[k] = static_cast<float>((x[k] - std::sqrt(s.abar(i)) * c[k]) / std::sqrt(1 - s.abar(i)));
    return e;
  };
  const auto steps = models::ddim_timesteps(1000, 50);
  std::vector<std::vector<float>> path{randn(16, 8)};
  for (std::size_t k = 0; k < steps.size(); ++k) {
    auto x = path.back();
    models::ddim_step(s, steps[k], k + 1 < steps.size() ? steps[k + 1] : 0, x, ideal(x, steps[k]),
                      0.0);
    path.push_back(x);
  }
  for (std::size_t k = 0; k < 16; ++k) CHECK(path.back()[k] == doctest::Approx(c[k]).epsilon(1e-4));
  auto x = path[steps.size() - 1];  // at step 20
  for (std::size_t k = steps.size() - 1; k-- > 0;) {
    models::ddim_step(s, steps[k + 1], steps[k], x, ideal(x, steps[k + 1]), 0.0);
    for (std::size_t e = 0; e < 16; ++e) CHECK(x[e] == doctest::Approx(path[k][e]).epsilon(1e-4));
  }
}

TEST_CASE("DDIM eta = 1 over one step is the DDPM posterior") {
  const auto s = linear_schedule();
  for (index_t i : {2, 300, 1000}) {
    const double ai = s.abar(i), ap = s.abar(i - 1), b = s.beta[std::size_t(i)];
    const double sigma = models::ddim_sigma(s, i, i - 1, 1.0);
    CHECK(sigma * sigma == doctest::Approx((1 - ap) / (1 - ai) * b).epsilon(1e-4));
    const auto x0 = randn(16, 9), eps = randn(16, 10), z = randn(16, 11);
    auto d = x0, p = x0;
    models::ddim_step(s, i, i - 1, d, eps, 1.0, z);
    models::ddpm_step(s, i, p, eps, z, models::DDPMVariance::posterior);
    for (std::size_t k = 0; k < 16; ++k)
      CHECK(d[k] == doctest::Approx(p[k]).epsilon(1e-4).scale(1));
  }
  CHECK(models::ddim_timesteps(1000, 4) == std::vector<index_t>{1000, 750, 500, 250});
}
