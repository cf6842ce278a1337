#pragma once
// FP8 weights (OCP e4m3 / e5m2) with a per-tensor or per-row f32 scale: w = scale[row] * fp8.
// The element types live in core/numeric.hpp; this adds the scaled weight container and its
// quantizer (the scale maps each row's, or the tensor's, absmax to the format's largest finite
// value, as the FP8 inference recipes do).

#include <algorithm>
#include <vector>

#include "common.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

template <class E>
inline constexpr float fp8_max_finite = 0.f;
template <>
inline constexpr float fp8_max_finite<f8_e4m3> = 448.f;
template <>
inline constexpr float fp8_max_finite<f8_e5m2> = 57344.f;

template <class E>
concept Fp8 = std::is_same_v<E, f8_e4m3> || std::is_same_v<E, f8_e5m2>;

enum class fp8_scaling { per_tensor, per_row };

/// An [N, K] FP8 weight matrix and its scales (one, or one per row).
template <Fp8 E>
struct fp8_matrix {
  Tensor<E, DynShape<2>> w;
  std::vector<float> scale;
  index_t rows() const noexcept { return w.extent(0); }
  index_t cols() const noexcept { return w.extent(1); }
  float row_scale(index_t r) const noexcept {
    return scale.size() == 1 ? scale[0] : scale[static_cast<std::size_t>(r)];
  }
};

/// Quantizes a row-major [N, K] f32 matrix to FP8 with the given scaling.
template <Fp8 E>
fp8_matrix<E> quantize_fp8(const float* x, index_t N, index_t K, fp8_scaling mode) {
  if (N < 0 || K < 0) throw shape_error("tessel::quantize_fp8: negative extent");
  fp8_matrix<E> m{Tensor<E, DynShape<2>>(N, K), {}};
  auto absmax = [&](index_t r0, index_t r1) {
    float a = 0;
    for (index_t i = r0 * K; i < r1 * K; ++i) a = std::max(a, std::fabs(x[i]));
    return a > 0 ? a / fp8_max_finite<E> : 1.f;
  };
  if (mode == fp8_scaling::per_tensor) {
    m.scale.assign(1, absmax(0, N));
  } else {
    m.scale.resize(static_cast<std::size_t>(N));
    for (index_t r = 0; r < N; ++r) m.scale[static_cast<std::size_t>(r)] = absmax(r, r + 1);
  }
  for (index_t r = 0; r < N; ++r) {
    const float is = 1.f / m.row_scale(r);
    for (index_t k = 0; k < K; ++k) m.w.data()[r * K + k] = from_f32<E>(x[r * K + k] * is);
  }
  return m;
}

/// Row r of the weights, dequantized.
template <Fp8 E>
void dequantize_row(const fp8_matrix<E>& m, index_t r, float* y) {
  const float s = m.row_scale(r);
  const E* w = m.w.data() + r * m.cols();
  for (index_t k = 0; k < m.cols(); ++k) y[k] = s * to_f32(w[k]);
}

}  // namespace tessel
