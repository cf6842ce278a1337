#pragma once
// Samplers of denoising diffusion models that predict the noise ε(x_i, i):
//
//   DDPM (Ho et al. 2020), one step i → i−1:
//     x ← (x − β_i/√(1−ᾱ_i) · ε) / √(1−β_i) + σ_i z,   z ~ N(0, I), no noise at i = 1
//   The noise-free part is the mean of the posterior q(x_{i−1} | x_i, x̂₀) at x̂₀ =
//   (x − √(1−ᾱ_i) ε)/√ᾱ_i; σ_i² is β_i (as the mnist-ddpm checkpoint was trained and sampled)
//   or the posterior variance β̃_i = (1−ᾱ_{i−1})/(1−ᾱ_i) · β_i.
//
//   DDIM (Song et al. 2021), one step i → j with ᾱ_0 taken as 1:
//     x̂₀ = (x − √(1−ᾱ_i) ε)/√ᾱ_i,   σ = η √((1−ᾱ_j)/(1−ᾱ_i)) √(1−ᾱ_i/ᾱ_j)
//     x ← √ᾱ_j x̂₀ + √(1−ᾱ_j−σ²) ε + σ z
//   η = 0 is deterministic, and with j > i the same step runs the path backwards (DDIM
//   inversion: the image to its noise). η = 1 over a subsequence of steps is the usual "DDPM
//   with fewer steps".
//
//   NoiseSchedule s = NoiseSchedule::from(model.beta_t, model.alpha_t);
//   ddim_sample(eps_fn, s, x, ddim_timesteps(1000, 50), /*eta=*/0, rng);   // x: noise in, image
//   out ddpm_sample(eps_fn, s, x, rng);                                        // all T steps
// eps_fn(TensorView<const float, DynShape<4>> x, index_t i) returns ε as a Tensor of x's shape.
// Coefficients are computed in double from the schedule; the updates run in float.

#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel::models {

/// β_i and ᾱ_i = Π_{k<=i} (1 − β_k) for steps i = 0 … T, as a checkpoint stores them.
struct NoiseSchedule {
  std::vector<double> beta, alpha_bar;

  index_t T() const noexcept { return static_cast<index_t>(beta.size()) - 1; }
  /// ᾱ_i, with ᾱ of step 0 taken as 1 (the clean image).
  double abar(index_t i) const { return i <= 0 ? 1.0 : alpha_bar.at(static_cast<std::size_t>(i)); }

  static NoiseSchedule from(TensorView<const float, DynShape<1>> beta,
                            TensorView<const float, DynShape<1>> alpha_bar) {
    if (beta.extent(0) != alpha_bar.extent(0) || beta.extent(0) < 2)
      throw shape_error("tessel: NoiseSchedule: beta of shape " + to_string(beta.shape()) +
                        " and alpha_bar of shape " + to_string(alpha_bar.shape()) +
                        " should both be [T + 1]");
    NoiseSchedule s;
    for (index_t i = 0; i < beta.extent(0); ++i) {
      s.beta.push_back(beta.data()[i * beta.stride(0)]);
      s.alpha_bar.push_back(alpha_bar.data()[i * alpha_bar.stride(0)]);
    }
    return s;
  }
};

enum class DDPMVariance { beta, posterior };

/// σ_i of the DDPM step i → i−1.
inline double ddpm_sigma(const NoiseSchedule& s, index_t i, DDPMVariance v = DDPMVariance::beta) {
  const double b = s.beta.at(static_cast<std::size_t>(i));
  if (v == DDPMVariance::beta) return std::sqrt(b);
  return std::sqrt((1 - s.abar(i - 1)) / (1 - s.abar(i)) * b);
}

/// One DDPM step i → i−1 on x (in place); noise: z of x's size, or empty (the mean only).
inline void ddpm_step(const NoiseSchedule& s, index_t i, std::span<float> x,
                      std::span<const float> eps, std::span<const float> noise,
                      DDPMVariance v = DDPMVariance::beta) {
  if (i < 1 || i > s.T() || eps.size() != x.size() || (!noise.empty() && noise.size() != x.size()))
    throw shape_error("tessel: ddpm_step: step " + std::to_string(i) + " of " +
                      std::to_string(s.T()) + ", x of " + std::to_string(x.size()) +
                      " values, eps of " + std::to_string(eps.size()) + ", noise of " +
                      std::to_string(noise.size()));
  const double b = s.beta[static_cast<std::size_t>(i)];
  const auto inv = static_cast<float>(1 / std::sqrt(1 - b));
  const auto c = static_cast<float>(b / std::sqrt(1 - s.abar(i)));
  const auto sigma = static_cast<float>(i > 1 && !noise.empty() ? ddpm_sigma(s, i, v) : 0.0);
  for (std::size_t k = 0; k < x.size(); ++k) {
    x[k] = (x[k] - c * eps[k]) * inv;
    if (sigma != 0) x[k] += sigma * noise[k];
  }
}

/// σ of the DDIM step i → j.
inline double ddim_sigma(const NoiseSchedule& s, index_t i, index_t j, double eta) {
  const double ai = s.abar(i), aj = s.abar(j);
  return eta * std::sqrt((1 - aj) / (1 - ai)) * std::sqrt(std::max(0.0, 1 - ai / aj));
}

/// One DDIM step i → j on x (in place). j > i (inversion) needs eta = 0; noise is used when
/// σ > 0 and must then have x's size.
inline void ddim_step(const NoiseSchedule& s, index_t i, index_t j, std::span<float> x,
                      std::span<const float> eps, double eta, std::span<const float> noise = {}) {
  const double sigma = ddim_sigma(s, i, j, eta);
  if (i < 0 || j < 0 || i > s.T() || j > s.T() || eps.size() != x.size() ||
      (sigma > 0 && noise.size() != x.size()))
    throw shape_error("tessel: ddim_step: steps " + std::to_string(i) + " → " + std::to_string(j) +
                      " of " + std::to_string(s.T()) + ", x of " + std::to_string(x.size()) +
                      " values, eps of " + std::to_string(eps.size()) + ", noise of " +
                      std::to_string(noise.size()));
  if (j > i && eta != 0)
    throw value_error("tessel: ddim_step: inversion (step " + std::to_string(i) + " → " +
                      std::to_string(j) + ") is defined for eta = 0 only");
  const double ai = s.abar(i), aj = s.abar(j);
  // x ← √ᾱ_j (x − √(1−ᾱ_i) ε)/√ᾱ_i + √(1−ᾱ_j−σ²) ε + σ z  =  a·x + c·ε + σ z
  const auto a = static_cast<float>(std::sqrt(aj / ai));
  const auto c = static_cast<float>(std::sqrt(std::max(0.0, 1 - aj - sigma * sigma)) -
                                    std::sqrt(aj) * std::sqrt(1 - ai) / std::sqrt(ai));
  const auto sg = static_cast<float>(sigma);
  for (std::size_t k = 0; k < x.size(); ++k) {
    x[k] = a * x[k] + c * eps[k];
    if (sg > 0) x[k] += sg * noise[k];
  }
}

/// n steps evenly spaced from T down: T, T − T/n, …, T/n (then the last step goes to 0).
inline std::vector<index_t> ddim_timesteps(index_t T, index_t n) {
  if (n < 1 || n > T)
    throw value_error("tessel: ddim_timesteps: " + std::to_string(n) + " steps out of " +
                      std::to_string(T));
  std::vector<index_t> r;
  for (index_t k = 0; k < n; ++k) r.push_back(T - k * T / n);
  return r;
}

namespace detail {
template <class S>
std::span<float> flat(Tensor<float, S>& t) {
  return {t.data(), static_cast<std::size_t>(t.size())};
}
template <class S>
std::span<const float> flat(const Tensor<float, S>& t) {
  return {t.data(), static_cast<std::size_t>(t.size())};
}
inline void fill_normal(std::vector<float>& z, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : z) v = nd(rng);
}
}  // namespace detail

/// DDIM over `steps` (descending; each goes to the next, the last to 0), x in place.
template <class Eps>
void ddim_sample(Eps&& eps_fn, const NoiseSchedule& s, Tensor<float, DynShape<4>>& x,
                 const std::vector<index_t>& steps, double eta, std::mt19937_64& rng) {
  std::vector<float> z(static_cast<std::size_t>(eta > 0 ? x.size() : 0));
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const index_t i = steps[k], j = k + 1 < steps.size() ? steps[k + 1] : 0;
    const auto eps = eps_fn(x.view().as_const(), i);
    if (eta > 0) detail::fill_normal(z, rng);
    ddim_step(s, i, j, detail::flat(x), detail::flat(eps), eta, z);
  }
}

/// DDPM over all steps T … 1, x in place.
template <class Eps>
void ddpm_sample(Eps&& eps_fn, const NoiseSchedule& s, Tensor<float, DynShape<4>>& x,
                 std::mt19937_64& rng, DDPMVariance v = DDPMVariance::beta) {
  std::vector<float> z(static_cast<std::size_t>(x.size()));
  for (index_t i = s.T(); i >= 1; --i) {
    const auto eps = eps_fn(x.view().as_const(), i);
    detail::fill_normal(z, rng);
    ddpm_step(s, i, detail::flat(x), detail::flat(eps), z, v);
  }
}

}  // namespace tessel::models
