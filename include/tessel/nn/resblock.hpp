#pragma once
// The convolutional blocks of a diffusion U-Net and VAE, with diffusers' parameter names:
//
//   ResBlock (ResnetBlock2D):
//     h = conv1(SiLU(norm1(x)))  [+ time_emb_proj(SiLU(temb)) per channel]
//     h = conv2(SiLU(norm2(h)));   y = conv_shortcut(x) + h   (a 1×1 conv when channels change)
//   Downsample (Downsample2D): conv 3×3, stride 2, padding 1 (the VAE encoder's: F.pad (0, 1, 0, 1)
//                              then padding 0)
//   Upsample (Upsample2D):     nearest 2× then conv 3×3, padding 1
//
//   nn::ResBlock r(in, out, temb_dim, groups, eps);   // temb_dim 0: no time embedding (VAE)
//   nn::BasicResBlock<f16> r16(...);                  // f16 weights (also BasicDownsample<W>,
//                                                     // BasicUpsample<W>)
//   r.visit("down_blocks.0.resnets.0", v);
//   auto y = r.forward(b, x.view(), silu_temb);  // on backend b; silu_temb [N, temb_dim]:
//                                     // SiLU(temb), which the U-Net computes once for its blocks

#include <optional>

#include "conv.hpp"
#include "linear.hpp"
#include "tessel/ops/resample.hpp"

namespace tessel::nn {

/// W: the weight format of the convolutions and the time projection (float, f16, bf16); the
/// norms stay f32.
template <class W = float>
class BasicResBlock {
 public:
  BasicResBlock(index_t in, index_t out, index_t temb_dim, index_t groups, float eps)
      : norm1(groups, in, eps),
        conv1(in, out, 3, {.padding = 1}),
        norm2(groups, out, eps),
        conv2(out, out, 3, {.padding = 1}) {
    if (temb_dim > 0) time_emb_proj.emplace(temb_dim, out);
    if (in != out) conv_shortcut.emplace(in, out, 1);
  }

  index_t in() const noexcept { return conv1.in(); }
  index_t out() const noexcept { return conv1.out(); }

  /// x [N, in, H, W], silu_temb [N, temb_dim] (null without a time embedding) -> [N, out, H, W].
  template <class Backend>
  Act4 forward(Backend b, View4 x, const float* silu_temb = nullptr) const {
    if (x.extent(1) != in())
      throw shape_error("tessel::nn::ResBlock: input " + to_string(x.shape()) + " should have " +
                        std::to_string(in()) + " channels");
    Act4 h = conv1.forward(b, norm1.forward_silu(b, x));
    if (time_emb_proj && silu_temb) {
      const index_t N = h.extent(0), C = h.extent(1), P = h.extent(2) * h.extent(3);
      std::vector<float> e(static_cast<std::size_t>(N * C));
      time_emb_proj->forward(b, row_view<dyn, const float>(silu_temb, N, time_emb_proj->in()),
                             row_view(e.data(), N, C));
      parallel_for(0, N * C, std::max<index_t>(1, 16384 / std::max<index_t>(P, 1)),
                   [&](index_t lo, index_t hi) {
                     for (index_t nc = lo; nc < hi; ++nc) {
                       float* p = h.data() + nc * P;
                       const float eb = e[static_cast<std::size_t>(nc)];
                       for (index_t i = 0; i < P; ++i) p[i] += eb;
                     }
                   });
    }
    h = conv2.forward(b, norm2.forward_silu(b, h.view()));
    if (conv_shortcut) {
      const Act4 s = conv_shortcut->forward(b, x);
      detail::add_inplace(h.data(), s.data(), h.size());
    } else {
      detail::add_inplace(h.data(), x.data(), h.size());
    }
    return h;
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    norm1.visit(name + ".norm1", v);
    conv1.visit(name + ".conv1", v);
    if (time_emb_proj) time_emb_proj->visit(name + ".time_emb_proj", v);
    norm2.visit(name + ".norm2", v);
    conv2.visit(name + ".conv2", v);
    if (conv_shortcut) conv_shortcut->visit(name + ".conv_shortcut", v);
  }

  GroupNorm norm1;
  BasicConv2d<W> conv1;
  std::optional<Linear<dyn, dyn, W, true>> time_emb_proj;
  GroupNorm norm2;
  BasicConv2d<W> conv2;
  std::optional<BasicConv2d<W>> conv_shortcut;
};
using ResBlock = BasicResBlock<float>;

template <class W = float>
class BasicDownsample {
 public:
  /// padding 0 is diffusers' VAE encoder: pad one zero row / column at the bottom / right only
  /// (F.pad (0, 1, 0, 1)), then the stride-2 conv without padding.
  explicit BasicDownsample(index_t channels, index_t padding = 1)
      : conv(channels, channels, 3, {.stride = 2, .padding = padding}) {}
  template <class Backend>
  Act4 forward(Backend b, View4 x) const {
    if (conv.opt.padding == 0) return conv.forward(b, pad2d_zero(x, 0, 1, 0, 1, b).view());
    return conv.forward(b, x);
  }
  template <class V>
  void visit(const std::string& name, V&& v) {
    conv.visit(name + ".conv", v);
  }
  BasicConv2d<W> conv;
};
using Downsample = BasicDownsample<float>;

template <class W = float>
class BasicUpsample {
 public:
  explicit BasicUpsample(index_t channels) : conv(channels, channels, 3, {.padding = 1}) {}
  template <class Backend>
  Act4 forward(Backend b, View4 x) const {
    return conv.forward(b, upsample_nearest2x(x, b));
  }
  template <class V>
  void visit(const std::string& name, V&& v) {
    conv.visit(name + ".conv", v);
  }
  BasicConv2d<W> conv;
};
using Upsample = BasicUpsample<float>;

}  // namespace tessel::nn
