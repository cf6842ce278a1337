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
//   r.visit("down_blocks.0.resnets.0", v);
//   auto y = r.forward(x.view(), silu_temb);   // silu_temb [N, temb_dim]: SiLU(temb), which the
//                                              // U-Net computes once for all its blocks

#include <optional>

#include "conv.hpp"
#include "linear.hpp"
#include "tessel/ops/resample.hpp"

namespace tessel::nn {

class ResBlock {
 public:
  ResBlock(index_t in, index_t out, index_t temb_dim, index_t groups, float eps)
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
  Act4 forward(View4 x, const float* silu_temb = nullptr) const {
    if (x.extent(1) != in())
      throw shape_error("tessel::nn::ResBlock: input " + to_string(x.shape()) + " should have " +
                        std::to_string(in()) + " channels");
    Act4 h = conv1.forward(norm1.forward_silu(x));
    if (time_emb_proj && silu_temb) {
      const index_t N = h.extent(0), C = h.extent(1), P = h.extent(2) * h.extent(3);
      std::vector<float> e(static_cast<std::size_t>(N * C));
      time_emb_proj->forward(silu_temb, N, e.data());
      for (index_t n = 0; n < N; ++n)
        for (index_t c = 0; c < C; ++c) {
          float* p = h.data() + (n * C + c) * P;
          const float b = e[static_cast<std::size_t>(n * C + c)];
          for (index_t i = 0; i < P; ++i) p[i] += b;
        }
    }
    h = conv2.forward(norm2.forward_silu(h.view()));
    if (conv_shortcut) {
      const Act4 s = conv_shortcut->forward(x);
      for (index_t i = 0; i < h.size(); ++i) h.data()[i] += s.data()[i];
    } else {
      for (index_t i = 0; i < h.size(); ++i) h.data()[i] += x.data()[i];
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
  Conv2d conv1;
  std::optional<Linear<dyn, dyn, float, true>> time_emb_proj;
  GroupNorm norm2;
  Conv2d conv2;
  std::optional<Conv2d> conv_shortcut;
};

class Downsample {
 public:
  /// padding 0 is diffusers' VAE encoder: pad one zero row / column at the bottom / right only
  /// (F.pad (0, 1, 0, 1)), then the stride-2 conv without padding.
  explicit Downsample(index_t channels, index_t padding = 1)
      : conv(channels, channels, 3, {.stride = 2, .padding = padding}) {}
  Act4 forward(View4 x) const {
    if (conv.opt.padding == 0) return conv.forward(pad2d_zero(x, 0, 1, 0, 1).view());
    return conv.forward(x);
  }
  template <class V>
  void visit(const std::string& name, V&& v) {
    conv.visit(name + ".conv", v);
  }
  Conv2d conv;
};

class Upsample {
 public:
  explicit Upsample(index_t channels) : conv(channels, channels, 3, {.padding = 1}) {}
  Act4 forward(View4 x) const { return conv.forward(upsample_nearest2x(x)); }
  template <class V>
  void visit(const std::string& name, V&& v) {
    conv.visit(name + ".conv", v);
  }
  Conv2d conv;
};

}  // namespace tessel::nn
