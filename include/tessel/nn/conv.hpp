#pragma once
// Conv2d and GroupNorm layers over NCHW f32 tensors (run-time channel counts: convolution
// shapes are dynamic anyway), with PyTorch's parameter names ".weight" / ".bias".
//
//   nn::Conv2d conv(in, out, /*kernel=*/3, {.padding = 1});
//   auto y = conv.forward(x.view());             // x [N, in, H, W] -> [N, out, OH, OW]
//   nn::GroupNorm gn(/*groups=*/32, channels, /*eps=*/1e-5f);
//   auto h = gn.forward(x.view());  gn.forward_silu(...) fuses the SiLU that always follows
//
// NCHW activations are Tensor<float, DynShape<4>> here: the convolutional blocks allocate their
// outputs (a U-Net step is dominated by its convolutions, not by allocation).

#include <string>

#include "common.hpp"
#include "tessel/ops/conv2d.hpp"
#include "tessel/ops/group_norm.hpp"

namespace tessel::nn {

using Act4 = Tensor<float, DynShape<4>>;
using View4 = TensorView<const float, DynShape<4>>;

namespace detail {
inline void silu_inplace(float* p, index_t n) {
  for (index_t i = 0; i < n; ++i) p[i] = silu(p[i]);
}
}  // namespace detail

class Conv2d {
 public:
  Conv2d(index_t in, index_t out, index_t kernel, conv2d_options opt = {})
      : weight(out, in / opt.groups, kernel, kernel), bias(out), opt(opt) {}

  index_t in() const noexcept { return weight.extent(1) * opt.groups; }
  index_t out() const noexcept { return weight.extent(0); }

  Act4 forward(View4 x) const { return conv2d(x, weight.view(), bias.view(), opt); }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
    v(name + ".bias", bias);
  }

  Tensor<float, DynShape<4>> weight;
  Tensor<float, DynShape<1>> bias;
  conv2d_options opt;
};

class GroupNorm {
 public:
  GroupNorm(index_t groups, index_t channels, float eps)
      : weight(channels), bias(channels), groups(groups), eps(eps) {
    if (groups <= 0 || channels % groups != 0)
      throw value_error("tessel::nn::GroupNorm: " + std::to_string(channels) +
                        " channels do not split into " + std::to_string(groups) + " groups");
  }

  Act4 forward(View4 x) const { return group_norm(x, weight, bias, groups, eps); }
  /// SiLU(GroupNorm(x)): the pair every ResBlock and U-Net output runs.
  Act4 forward_silu(View4 x) const {
    Act4 y = forward(x);
    detail::silu_inplace(y.data(), y.size());
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
  for (index_t n = 0; n < N; ++n) {
    std::copy(a.data() + n * pa, a.data() + (n + 1) * pa, y.data() + n * (pa + pb));
    std::copy(b.data() + n * pb, b.data() + (n + 1) * pb, y.data() + n * (pa + pb) + pa);
  }
  return y;
}

}  // namespace tessel::nn
