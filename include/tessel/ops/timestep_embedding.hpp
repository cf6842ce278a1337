#pragma once
// The sinusoidal embedding of diffusion timesteps (Ho et al. 2020, after the Transformer's
// position encoding), in the convention of Hugging Face diffusers' get_timestep_embedding:
//
//   half = dim / 2,  f_i = exp(−ln(max_period) · i / (half − downscale_freq_shift)),
//   e[n] = [sin(scale·t_n·f), cos(scale·t_n·f)]   ([cos, sin] when flip_sin_to_cos),
//   and a zero last column when dim is odd.
//
// Stable Diffusion's U-Net uses flip_sin_to_cos = true, downscale_freq_shift = 0 (the
// defaults here); diffusers' own defaults are false and 1.
//
//   auto e = timestep_embedding(t, 320);                    // t [N] -> e [N, 320]
//   auto e = timestep_embedding(t, 7, {.flip_sin_to_cos = false, .downscale_freq_shift = 1});
// The angles are computed in double: t·f reaches 1000 rad, where float's rounding of the
// argument alone would cost ~1e-4.

#include <cmath>
#include <string>

#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

struct timestep_embedding_options {
  bool flip_sin_to_cos = true;
  double downscale_freq_shift = 0, scale = 1, max_period = 10000;
};

inline void timestep_embedding(TensorView<float, DynShape<2>> e,
                               TensorView<const float, DynShape<1>> t,
                               const timestep_embedding_options& o = {}) {
  const index_t N = t.extent(0), dim = e.extent(1), half = dim / 2;
  if (e.extent(0) != N || (half > 0 && half == o.downscale_freq_shift))
    throw shape_error("tessel: timestep_embedding: output shape " + to_string(e.shape()) +
                      " does not fit timesteps of shape " + to_string(t.shape()));
  for (index_t n = 0; n < N; ++n) {
    const double tn = t.data()[n * t.stride(0)];
    for (index_t i = 0; i < half; ++i) {
      const double f = std::exp(-std::log(o.max_period) * static_cast<double>(i) /
                                (static_cast<double>(half) - o.downscale_freq_shift));
      const double a = o.scale * tn * f;
      const index_t si = o.flip_sin_to_cos ? half + i : i, ci = o.flip_sin_to_cos ? i : half + i;
      e(n, si) = static_cast<float>(std::sin(a));
      e(n, ci) = static_cast<float>(std::cos(a));
    }
    if (dim % 2 == 1) e(n, dim - 1) = 0.f;
  }
}
inline Tensor<float, DynShape<2>> timestep_embedding(TensorView<const float, DynShape<1>> t,
                                                     index_t dim,
                                                     const timestep_embedding_options& o = {}) {
  Tensor<float, DynShape<2>> e(t.extent(0), dim);
  timestep_embedding(e.view(), t, o);
  return e;
}

}  // namespace tessel
