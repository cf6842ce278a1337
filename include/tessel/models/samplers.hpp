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
//
// Schedules: NoiseSchedule::make(BetaSchedule::scaled_linear, 1000, 0.00085, 0.012) is Stable
// Diffusion's (diffusers' names: linear = linspace(β₀, β₁, T); scaled_linear = linspace(√β₀,
// √β₁, T)²; cosine = squaredcos_cap_v2 of Nichol & Dhariwal 2021, ᾱ(t) = cos²((t/T + 0.008) /
// 1.008 · π/2), β = min(1 − ᾱ(i+1)/ᾱ(i), 0.999)). Step i = 1 … T here is diffusers' timestep
// i − 1 (step 0 is the clean image): a model trained with diffusers gets t = i − 1.
//
// Prediction: a model trained for v = √ᾱ ε − √(1−ᾱ) x₀ (v-prediction, SD 2.x 768) is turned
// into ε = √ᾱ v + √(1−ᾱ) x_t by to_epsilon; every sampler then works on ε.
//
// Euler and Euler-ancestral (Karras et al. 2022's k-diffusion formulation): on σ_i =
// √((1−ᾱ_i)/ᾱ_i) with the variable x = x_t / √ᾱ_i (= x₀ + σ ε), the model sees x_t = x /
// √(σ²+1), and with d = ε:
//   Euler:            x ← x + d (σ_j − σ_i)                   (the same path as DDIM η = 0)
//   Euler-ancestral:  σ_up = min(σ_j, √(σ_j² (σ_i² − σ_j²) / σ_i²)),  σ_down = √(σ_j² − σ_up²)
//                     x ← x + d (σ_down − σ_i) + σ_up z
// euler_sample starts from x_T = z (x = z √(σ_T² + 1), diffusers' init_noise_sigma) and ends at
// σ = 0, where x is x₀.
//
// Classifier-free guidance: ε = ε_u + g (ε_c − ε_u) (cfg_combine), with ε_u and ε_c from one
// batch of 2N images run with the empty and the real condition.

#include <array>
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

enum class BetaSchedule { linear, scaled_linear, cosine };
enum class Prediction { epsilon, v };

/// A schedule of T steps (see the top of the file); β_0 = 0 is the clean image.
inline NoiseSchedule make_schedule(BetaSchedule kind, index_t T = 1000, double beta_start = 0.00085,
                                   double beta_end = 0.012) {
  if (T < 1 || !(beta_start > 0) || !(beta_end >= beta_start) || !(beta_end < 1))
    throw value_error("tessel: make_schedule: " + std::to_string(T) + " steps from beta " +
                      std::to_string(beta_start) + " to " + std::to_string(beta_end));
  NoiseSchedule s;
  s.beta.assign(static_cast<std::size_t>(T + 1), 0.0);
  const auto frac = [&](index_t k) {  // k / (T − 1), 0 for T = 1
    return T > 1 ? static_cast<double>(k) / static_cast<double>(T - 1) : 0.0;
  };
  const double pi = 3.14159265358979323846;
  const auto cos_abar = [&](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * pi / 2);
    return c * c;
  };
  for (index_t k = 0; k < T; ++k) {
    double b = 0;
    if (kind == BetaSchedule::linear) {
      b = beta_start + (beta_end - beta_start) * frac(k);
    } else if (kind == BetaSchedule::scaled_linear) {
      const double r =
          std::sqrt(beta_start) + (std::sqrt(beta_end) - std::sqrt(beta_start)) * frac(k);
      b = r * r;
    } else {
      const double t0 = static_cast<double>(k) / static_cast<double>(T),
                   t1 = static_cast<double>(k + 1) / static_cast<double>(T);
      b = std::min(1 - cos_abar(t1) / cos_abar(t0), 0.999);
    }
    s.beta[static_cast<std::size_t>(k + 1)] = b;
  }
  s.alpha_bar.assign(s.beta.size(), 1.0);
  for (std::size_t i = 1; i < s.beta.size(); ++i)
    s.alpha_bar[i] = s.alpha_bar[i - 1] * (1 - s.beta[i]);
  return s;
}

/// σ_i = √((1 − ᾱ_i)/ᾱ_i): the noise level of step i in the k-diffusion variable x_t / √ᾱ_i.
inline double schedule_sigma(const NoiseSchedule& s, index_t i) {
  const double a = s.abar(i);
  return std::sqrt((1 - a) / a);
}

/// out (the model's output at step i for input x_t) turned into ε, in place.
inline void to_epsilon(const NoiseSchedule& s, index_t i, Prediction p, std::span<const float> x_t,
                       std::span<float> out) {
  if (x_t.size() != out.size())
    throw shape_error("tessel: to_epsilon: x of " + std::to_string(x_t.size()) +
                      " values, model output of " + std::to_string(out.size()));
  if (p == Prediction::epsilon) return;
  const double a = s.abar(i);
  const auto ca = static_cast<float>(std::sqrt(a)), cb = static_cast<float>(std::sqrt(1 - a));
  for (std::size_t k = 0; k < out.size(); ++k) out[k] = ca * out[k] + cb * x_t[k];
}

/// Classifier-free guidance: eps [2, n] (unconditional row, then conditional) → [n] in out.
inline void cfg_combine(std::span<const float> eps_uncond, std::span<const float> eps_cond,
                        double guidance, std::span<float> out) {
  if (eps_uncond.size() != eps_cond.size() || out.size() != eps_cond.size())
    throw shape_error("tessel: cfg_combine: " + std::to_string(eps_uncond.size()) + ", " +
                      std::to_string(eps_cond.size()) + " and " + std::to_string(out.size()) +
                      " values");
  const auto g = static_cast<float>(guidance);
  for (std::size_t k = 0; k < out.size(); ++k)
    out[k] = eps_uncond[k] + g * (eps_cond[k] - eps_uncond[k]);
}

/// σ_up and σ_down of the Euler-ancestral step σ_i → σ_j.
inline std::array<double, 2> ancestral_sigmas(double sigma_i, double sigma_j) {
  const double up =
      sigma_i > 0
          ? std::min(sigma_j, std::sqrt(std::max(0.0, sigma_j * sigma_j *
                                                          (sigma_i * sigma_i - sigma_j * sigma_j) /
                                                          (sigma_i * sigma_i))))
          : 0.0;
  return {up, std::sqrt(std::max(0.0, sigma_j * sigma_j - up * up))};
}

/// One Euler step σ_i → σ_j on x = x_t/√ᾱ_i (in place), d = eps. With noise (x's size) it is
/// the ancestral step; empty noise: plain Euler.
inline void euler_step(const NoiseSchedule& s, index_t i, index_t j, std::span<float> x,
                       std::span<const float> eps, std::span<const float> noise = {}) {
  if (i < 0 || j < 0 || i > s.T() || j > s.T() || eps.size() != x.size() ||
      (!noise.empty() && noise.size() != x.size()))
    throw shape_error("tessel: euler_step: steps " + std::to_string(i) + " → " + std::to_string(j) +
                      " of " + std::to_string(s.T()) + ", x of " + std::to_string(x.size()) +
                      " values, eps of " + std::to_string(eps.size()) + ", noise of " +
                      std::to_string(noise.size()));
  const double si = schedule_sigma(s, i), sj = schedule_sigma(s, j);
  double target = sj, up = 0;
  if (!noise.empty()) {
    const auto a = ancestral_sigmas(si, sj);
    up = a[0];
    target = a[1];
  }
  const auto h = static_cast<float>(target - si), u = static_cast<float>(up);
  for (std::size_t k = 0; k < x.size(); ++k) {
    x[k] += eps[k] * h;
    if (u > 0) x[k] += u * noise[k];
  }
}

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

/// Euler (ancestral: Euler-ancestral) over `steps` (descending, the last going to 0): x is x_T
/// (standard normal noise) in, x₀ out. eps_fn sees x_t, as for ddim_sample.
template <class Eps>
void euler_sample(Eps&& eps_fn, const NoiseSchedule& s, Tensor<float, DynShape<4>>& x,
                  const std::vector<index_t>& steps, bool ancestral, std::mt19937_64& rng) {
  if (steps.empty()) return;
  auto xs = detail::flat(x);
  const auto init = static_cast<float>(std::sqrt(1 / s.abar(steps.front())));
  for (auto& v : xs) v *= init;  // x = x_T / √ᾱ_T
  Tensor<float, DynShape<4>> xt(x.shape());
  std::vector<float> z(static_cast<std::size_t>(ancestral ? x.size() : 0));
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const index_t i = steps[k], j = k + 1 < steps.size() ? steps[k + 1] : 0;
    const auto c = static_cast<float>(std::sqrt(s.abar(i)));
    for (index_t q = 0; q < x.size(); ++q) xt.data()[q] = x.data()[q] * c;
    const auto eps = eps_fn(xt.view().as_const(), i);
    if (ancestral) detail::fill_normal(z, rng);
    euler_step(s, i, j, xs, detail::flat(eps), z);
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
