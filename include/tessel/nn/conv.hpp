#pragma once
// Conv2d and GroupNorm layers over NCHW f32 tensors (run-time channel counts: convolution
// shapes are dynamic anyway), with PyTorch's parameter names ".weight" / ".bias".
//
//   nn::Conv2d conv(in, out, /*kernel=*/3, {.padding = 1});   // BasicConv2d<f16>: f16 weights
//   auto y = conv.forward(b, x.view());          // x [N, in, H, W] -> [N, out, OH, OW] on
//                                                // the backend whose tag b is
//   nn::GroupNorm gn(/*groups=*/32, channels, /*eps=*/1e-5f);
//   auto h = gn.forward(b, x.view());  gn.forward_silu(b, ...) fuses the SiLU that follows
//
// NCHW activations are Tensor<float, DynShape<4>> here: the convolutional blocks allocate their
// outputs (a U-Net step is dominated by its convolutions, not by allocation).

#include <string>

#include "common.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/ops/conv2d.hpp"
#include "tessel/ops/group_norm.hpp"

namespace tessel::nn {

using Act4 = Tensor<float, DynShape<4>>;
using View4 = TensorView<const float, DynShape<4>>;

namespace detail {
/// y[i] += x[i] for i < n, threaded (the residual adds between blocks).
inline void add_inplace(float* y, const float* x, index_t n) {
  parallel_for(0, n, 16384, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) y[i] += x[i];
  });
}
}  // namespace detail

/// W: the weight's storage format, f32 (Conv2d), f16 or bf16 (widened to f32 as conv2d packs
/// its panels); the bias stays f32.
template <class W = float>
class BasicConv2d {
 public:
  using weight_format = W;
  BasicConv2d(index_t in, index_t out, index_t kernel, conv2d_options opt = {})
      : weight(out, in / opt.groups, kernel, kernel), bias(out), opt(opt) {}

  index_t in() const noexcept { return weight.extent(1) * opt.groups; }
  index_t out() const noexcept { return weight.extent(0); }

  template <class Backend>
  Act4 forward(Backend b, View4 x) const {
    Act4 y(DynShape<4>::from_array(
        tessel::detail::conv2d_out_shape(x, TensorView<const W, DynShape<4>>(weight.view()), opt)));
    conv2d(b, y.view(), x, weight.view(), bias.view(), opt);
    return y;
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
    v(name + ".bias", bias);
  }

  Tensor<W, DynShape<4>> weight;
  Tensor<float, DynShape<1>> bias;
  conv2d_options opt;
};
using Conv2d = BasicConv2d<float>;

class GroupNorm {
 public:
  GroupNorm(index_t groups, index_t channels, float eps)
      : weight(channels), bias(channels), groups(groups), eps(eps) {
    if (groups <= 0 || channels % groups != 0)
      throw value_error("tessel::nn::GroupNorm: " + std::to_string(channels) +
                        " channels do not split into " + std::to_string(groups) + " groups");
  }

  template <class Backend>
  Act4 forward(Backend b, View4 x) const {
    Act4 y(x.shape());
    group_norm(b, y, x, weight, bias, groups, eps);
    return y;
  }
  /// SiLU(GroupNorm(x)): the pair every ResBlock and U-Net output runs.
  template <class Backend>
  Act4 forward_silu(Backend b, View4 x) const {
    Act4 y(x.shape());
    group_norm_silu(b, y, x, weight, bias, groups, eps);
    return y;
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
    v(name + ".bias", bias);
  }

  Tensor<float, DynShape<1>> weight, bias;
  index_t groups;
  float eps;
};

/// [N, Ca + Cb, H, W]: a then b along the channels (the U-Net's skip connections).
inline Act4 concat_channels(View4 a, View4 b) {
  const index_t N = a.extent(0), H = a.extent(2), W = a.extent(3);
  if (b.extent(0) != N || b.extent(2) != H || b.extent(3) != W || !a.is_contiguous() ||
      !b.is_contiguous())
    throw shape_error("tessel: concat_channels: " + to_string(a.shape()) + " and " +
                      to_string(b.shape()) + " differ outside the channel axis");
  const index_t pa = a.extent(1) * H * W, pb = b.extent(1) * H * W;
  Act4 y(N, a.extent(1) + b.extent(1), H, W);
  const index_t P = H * W, planes = a.extent(1) + b.extent(1);
  parallel_for(0, N * planes, std::max<index_t>(1, 16384 / std::max<index_t>(P, 1)),
               [&](index_t lo, index_t hi) {
                 for (index_t i = lo; i < hi; ++i) {
                   const index_t n = i / planes, c = i % planes;
                   const float* src = c < a.extent(1) ? a.data() + n * pa + c * P
                                                      : b.data() + n * pb + (c - a.extent(1)) * P;
                   std::copy(src, src + P, y.data() + i * P);
                 }
               });
  return y;
}

}  // namespace tessel::nn
