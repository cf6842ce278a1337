#pragma once
// RMSNorm<Dim> and LayerNorm<Dim> over rows of Dim, with f32 parameters (GGUF keeps norms in
// F32 whatever the weight format): weight (and LayerNorm's bias).
//   RMSNorm:   y = x / sqrt(mean(x²) + eps) · weight
//   LayerNorm: y = (x − mean) / sqrt(var + eps) · weight + bias   (biased variance)

#include "common.hpp"

namespace tessel::nn {

template <index_t Dim>
class RMSNorm {
 public:
  explicit RMSNorm(float eps = 1e-5f) requires(Dim != dyn) : eps(eps) {}
  RMSNorm(index_t dim, float eps) : weight(Shape<Dim>(dim)), eps(eps) {}

  index_t dim() const noexcept { return weight.extent(0); }

  /// y[M, Dim] = rms_norm(x[M, Dim]); y may be x.
  template <class Backend>
  void forward(Backend, RowView<Dim, const float> x, RowView<Dim> y) const {
    const index_t D = dim(), M = x.extent(0);
    detail::check_rows("tessel::nn::RMSNorm", "input", x, D);
    detail::check_rows("tessel::nn::RMSNorm", "output", y, D, M);
    for (index_t i = 0; i < M; ++i)
      kernel<op::rms_norm_row, Backend>::run(x.data() + i * x.stride(0), y.data() + i * y.stride(0),
                                             D, weight.data(), eps);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
  }

  Tensor<float, Shape<Dim>> weight;
  float eps;
};

template <index_t Dim>
class LayerNorm {
 public:
  explicit LayerNorm(float eps = 1e-5f) requires(Dim != dyn) : eps(eps) {}
  LayerNorm(index_t dim, float eps) : weight(Shape<Dim>(dim)), bias(Shape<Dim>(dim)), eps(eps) {}

  index_t dim() const noexcept { return weight.extent(0); }

  /// y[M, Dim] = layer_norm(x[M, Dim]); y may be x.
  template <class Backend>
  void forward(Backend, RowView<Dim, const float> x, RowView<Dim> y) const {
    const index_t D = dim(), M = x.extent(0);
    detail::check_rows("tessel::nn::LayerNorm", "input", x, D);
    detail::check_rows("tessel::nn::LayerNorm", "output", y, D, M);
    for (index_t i = 0; i < M; ++i)
      kernel<op::layer_norm_row, Backend>::run(x.data() + i * x.stride(0),
                                               y.data() + i * y.stride(0), D, weight.data(),
                                               bias.data(), eps);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
    v(name + ".bias", bias);
  }

  Tensor<float, Shape<Dim>> weight;
  Tensor<float, Shape<Dim>> bias;
  float eps;
};

}  // namespace tessel::nn
