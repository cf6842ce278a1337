#pragma once
// UNet<Cfg>: Stable Diffusion's conditional U-Net (diffusers' UNet2DConditionModel, SD 1.x
// layout) composed from nn::ResBlock, nn::SpatialTransformer, nn::Downsample / nn::Upsample.
// Parameter names are diffusers' (`conv_in`, `time_embedding.linear_1`,
// `down_blocks.0.resnets.1.conv1`, `down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k`,
// `mid_block.attentions.0`, `up_blocks.2.upsamplers.0.conv`, `conv_norm_out`, `conv_out`), so
// a diffusers `unet/diffusion_pytorch_model.safetensors` loads as is (io/load/load_diffusion.hpp).
//
//   emb  = linear_2(SiLU(linear_1(timestep_embedding(t, c0))))  [+ class_embedding[label]]
//   h    = conv_in(x);  skips = [h]
//   down level i: (ResBlock → SpatialTransformer if attention[i]) × layers, each output pushed
//                 to skips; then Downsample (not at the last level), pushed too
//   mid:  ResBlock → SpatialTransformer → ResBlock
//   up level i (channels reversed): (concat(h, skips.pop()) → ResBlock → SpatialTransformer if
//                 attention) × (layers + 1); then Upsample (not at the last level)
//   ε    = conv_out(SiLU(conv_norm_out(h)))
//
// Cfg is models::UNetConfig (run-time values, e.g. read from diffusers' config.json) or a
// struct of compile-time constants, checked by static_assert:
//
//   struct Tiny { static constexpr index_t in_channels = 4, out_channels = 4, layers_per_block = 1,
//     heads = 2, context_dim = 12, norm_groups = 4, num_classes = 0;
//     static constexpr std::array<index_t, 2> block_out_channels{8, 16};
//     static constexpr std::array<bool, 2> attention{true, false}; };
//   models::UNet<Tiny> a;                           models::UNet<> b(models::UNetConfig::sd15());
//   auto eps = b.forward(x, t, context);            // x [N,4,H,W], t [N], context [N, L, 768]
//   models::UNet<models::UNetConfig, float, cpu_scalar> r(cfg);  // on the reference kernels
// Shapes are run-time either way (convolutions are), so a static config saves no work: it
// checks the config at compile time.

#include <array>
#include <span>
#include <string>
#include <vector>

#include "tessel/nn/resblock.hpp"
#include "tessel/nn/spatial_transformer.hpp"
#include "tessel/ops/activation.hpp"
#include "tessel/ops/timestep_embedding.hpp"

namespace tessel::models {

struct UNetConfig {
  index_t in_channels = 4, out_channels = 4;
  std::vector<index_t> block_out_channels{320, 640, 1280, 1280};
  std::vector<bool> attention{true, true, true, false};  // per down level (up: reversed)
  index_t layers_per_block = 2, heads = 8, context_dim = 768, norm_groups = 32;
  index_t num_classes = 0;  // > 0: class_embedding [num_classes, 4·c0] added to the time embedding
  index_t transformer_depth = 1;
  float norm_eps = 1e-5f;

  /// Stable Diffusion 1.x (v1-5): 320 · (1, 2, 4, 4), attention at the first three levels.
  static UNetConfig sd15() { return {}; }

  void validate() const {
    const auto bad = [](const std::string& m) { throw value_error("tessel: UNetConfig: " + m); };
    if (block_out_channels.empty() || block_out_channels.size() != attention.size())
      bad("block_out_channels and attention need one entry per level");
    if (in_channels <= 0 || out_channels <= 0 || layers_per_block <= 0 || heads <= 0 ||
        context_dim <= 0 || norm_groups <= 0 || transformer_depth <= 0)
      bad("channels, layers, heads, context_dim and groups must be positive");
    for (index_t c : block_out_channels)
      if (c <= 0 || c % norm_groups != 0 || c % heads != 0)
        bad("block channels " + std::to_string(c) + " must split into " +
            std::to_string(norm_groups) + " groups and " + std::to_string(heads) + " heads");
  }
};

/// A config whose values are compile-time constants (static data members).
template <class Cfg>
concept StaticUNetConfig = requires {
  Cfg::in_channels;
  Cfg::block_out_channels;
  Cfg::attention;
};

template <StaticUNetConfig Cfg>
UNetConfig to_unet_config() {
  static_assert(Cfg::block_out_channels.size() == Cfg::attention.size(),
                "tessel::models::UNet: block_out_channels and attention need one entry per level");
  static_assert(
      [] {
        for (auto c : Cfg::block_out_channels)
          if (c <= 0 || c % Cfg::norm_groups != 0 || c % Cfg::heads != 0) return false;
        return true;
      }(),
      "tessel::models::UNet: every block's channels must split into norm_groups and heads");
  UNetConfig c;
  c.in_channels = Cfg::in_channels;
  c.out_channels = Cfg::out_channels;
  c.block_out_channels.assign(Cfg::block_out_channels.begin(), Cfg::block_out_channels.end());
  c.attention.assign(Cfg::attention.begin(), Cfg::attention.end());
  c.layers_per_block = Cfg::layers_per_block;
  c.heads = Cfg::heads;
  c.context_dim = Cfg::context_dim;
  c.norm_groups = Cfg::norm_groups;
  c.num_classes = Cfg::num_classes;
  return c;
}

/// W: the storage format of the weight matrices and kernels (float, f16, bf16: widened to f32
/// inside the convolutions' and projections' GEMM panels); norms, biases and the class
/// embedding stay f32. convert_weights<W2>(unet) makes a copy in another format. Backend: whose
/// kernels forward() runs (UNet<UNetConfig, float, cpu_scalar>: the references).
template <class Cfg = UNetConfig, class W = float, class Backend = default_backend>
class UNet {
 public:
  using config_type = Cfg;
  using weight_format = W;
  using backend_type = Backend;
  using Act4 = nn::Act4;
  using View4 = nn::View4;

  struct Level {  // one down or up block
    std::vector<nn::BasicResBlock<W>> resnets;
    std::vector<nn::BasicSpatialTransformer<W>> attentions;
    std::optional<nn::BasicDownsample<W>> downsampler;
    std::optional<nn::BasicUpsample<W>> upsampler;
  };

  UNet() requires StaticUNetConfig<Cfg> : UNet(to_unet_config<Cfg>(), 0) {}
  explicit UNet(const UNetConfig& c) requires std::is_same_v<Cfg, UNetConfig> : UNet(c, 0) {}

  const UNetConfig& config() const noexcept { return cfg_; }
  index_t time_embed_dim() const noexcept { return 4 * cfg_.block_out_channels[0]; }

  /// ε (or v) for x [N, in, H, W] at timesteps t [N] (the training schedule's step numbers)
  /// with context [N, L, context_dim]; class_labels [N] when the model has num_classes.
  Act4 forward(View4 x, TensorView<const float, DynShape<1>> t,
               TensorView<const float, DynShape<3>> context,
               std::span<const index_t> class_labels = {}) const {
    const index_t N = x.extent(0), levels = static_cast<index_t>(cfg_.block_out_channels.size());
    const index_t f = index_t{1} << (levels - 1);
    if (x.extent(1) != cfg_.in_channels || x.extent(2) % f != 0 || x.extent(3) % f != 0 ||
        t.extent(0) != N || context.extent(0) != N || context.extent(2) != cfg_.context_dim ||
        !x.is_contiguous() || !context.is_contiguous())
      throw shape_error("tessel::models::UNet: input " + to_string(x.shape()) + ", timesteps " +
                        to_string(t.shape()) + ", context " + to_string(context.shape()) +
                        ": expected [N, " + std::to_string(cfg_.in_channels) +
                        ", H, W] with H, W multiples of " + std::to_string(f) + ", [N], [N, L, " +
                        std::to_string(cfg_.context_dim) + "]");
    if ((cfg_.num_classes > 0) != !class_labels.empty() ||
        (!class_labels.empty() && static_cast<index_t>(class_labels.size()) != N))
      throw value_error("tessel::models::UNet: the model has " + std::to_string(cfg_.num_classes) +
                        " classes and was given " + std::to_string(class_labels.size()) +
                        " labels for " + std::to_string(N) + " images");
    const float* ctx = context.data();
    const index_t L = context.extent(1);
    const Backend b{};

    // The time embedding, then SiLU once for every ResBlock's projection.
    const index_t ted = time_embed_dim();
    const auto tp = timestep_embedding(t, cfg_.block_out_channels[0]);
    std::vector<float> e1(static_cast<std::size_t>(N * ted)), emb(e1.size());
    linear_1.forward(b, tp, nn::row_view(e1.data(), N, ted));
    kernel<op::silu, Backend>::run(e1.data(), N * ted);
    linear_2.forward(b, nn::row_view<dyn, const float>(e1.data(), N, ted),
                     nn::row_view(emb.data(), N, ted));
    for (std::size_t n = 0; n < class_labels.size(); ++n) {
      const index_t c = class_labels[n];
      if (c < 0 || c >= cfg_.num_classes)
        throw value_error("tessel::models::UNet: class label " + std::to_string(c) +
                          " outside [0, " + std::to_string(cfg_.num_classes) + ")");
      for (index_t j = 0; j < ted; ++j)
        emb[n * static_cast<std::size_t>(ted) + static_cast<std::size_t>(j)] +=
            class_embedding.data()[c * ted + j];
    }
    kernel<op::silu, Backend>::run(emb.data(), N * ted);
    const float* te = emb.data();

    std::vector<Act4> skips;
    Act4 h = conv_in.forward(b, x);
    skips.push_back(h.clone());
    for (const Level& blk : down_blocks) {
      for (std::size_t j = 0; j < blk.resnets.size(); ++j) {
        h = blk.resnets[j].forward(b, h.view(), te);
        if (!blk.attentions.empty()) h = blk.attentions[j].forward(b, h.view(), ctx, L);
        skips.push_back(h.clone());
      }
      if (blk.downsampler) {
        h = blk.downsampler->forward(b, h.view());
        skips.push_back(h.clone());
      }
    }
    h = mid_resnets[0].forward(b, h.view(), te);
    h = mid_attention.forward(b, h.view(), ctx, L);
    h = mid_resnets[1].forward(b, h.view(), te);
    for (const Level& blk : up_blocks) {
      for (std::size_t j = 0; j < blk.resnets.size(); ++j) {
        h = blk.resnets[j].forward(b, nn::concat_channels(h.view(), skips.back().view()).view(),
                                   te);
        skips.pop_back();
        if (!blk.attentions.empty()) h = blk.attentions[j].forward(b, h.view(), ctx, L);
      }
      if (blk.upsampler) h = blk.upsampler->forward(b, h.view());
    }
    return conv_out.forward(b, conv_norm_out.forward_silu(b, h.view()).view());
  }

  /// Calls v(name, tensor) for every parameter, with diffusers' names.
  template <class V>
  void visit(V&& v) {
    conv_in.visit("conv_in", v);
    linear_1.visit("time_embedding.linear_1", v);
    linear_2.visit("time_embedding.linear_2", v);
    if (cfg_.num_classes > 0) v("class_embedding.weight", class_embedding);
    const auto level = [&](Level& b, const std::string& p) {
      for (std::size_t j = 0; j < b.resnets.size(); ++j)
        b.resnets[j].visit(p + ".resnets." + std::to_string(j), v);
      for (std::size_t j = 0; j < b.attentions.size(); ++j)
        b.attentions[j].visit(p + ".attentions." + std::to_string(j), v);
      if (b.downsampler) b.downsampler->visit(p + ".downsamplers.0", v);
      if (b.upsampler) b.upsampler->visit(p + ".upsamplers.0", v);
    };
    for (std::size_t i = 0; i < down_blocks.size(); ++i)
      level(down_blocks[i], "down_blocks." + std::to_string(i));
    mid_resnets[0].visit("mid_block.resnets.0", v);
    mid_attention.visit("mid_block.attentions.0", v);
    mid_resnets[1].visit("mid_block.resnets.1", v);
    for (std::size_t i = 0; i < up_blocks.size(); ++i)
      level(up_blocks[i], "up_blocks." + std::to_string(i));
    conv_norm_out.visit("conv_norm_out", v);
    conv_out.visit("conv_out", v);
  }

 private:
  UNet(const UNetConfig& c, int)
      : cfg_((c.validate(), c)),
        conv_in(c.in_channels, c.block_out_channels[0], 3, {.padding = 1}),
        linear_1(c.block_out_channels[0], 4 * c.block_out_channels[0]),
        linear_2(4 * c.block_out_channels[0], 4 * c.block_out_channels[0]),
        class_embedding(std::max<index_t>(c.num_classes, 0), 4 * c.block_out_channels[0]),
        mid_attention(c.block_out_channels.back(), c.heads, c.context_dim, c.norm_groups,
                      c.transformer_depth),
        conv_norm_out(c.norm_groups, c.block_out_channels[0], c.norm_eps),
        conv_out(c.block_out_channels[0], c.out_channels, 3, {.padding = 1}) {
    const auto& ch = c.block_out_channels;
    const std::size_t n = ch.size();
    const index_t ted = 4 * ch[0], L = c.layers_per_block, G = c.norm_groups;
    const auto attn = [&](index_t C) {
      return nn::BasicSpatialTransformer<W>(C, c.heads, c.context_dim, G, c.transformer_depth);
    };
    index_t out = ch[0];
    for (std::size_t i = 0; i < n; ++i) {
      const index_t in = out;
      out = ch[i];
      Level b;
      for (index_t j = 0; j < L; ++j) {
        b.resnets.emplace_back(j == 0 ? in : out, out, ted, G, c.norm_eps);
        if (c.attention[i]) b.attentions.push_back(attn(out));
      }
      if (i + 1 < n) b.downsampler.emplace(out);
      down_blocks.push_back(std::move(b));
    }
    mid_resnets.emplace_back(ch.back(), ch.back(), ted, G, c.norm_eps);
    mid_resnets.emplace_back(ch.back(), ch.back(), ted, G, c.norm_eps);
    out = ch.back();
    for (std::size_t i = 0; i < n; ++i) {
      const index_t prev = out, skip_in = ch[n - 1 - std::min(i + 1, n - 1)];
      out = ch[n - 1 - i];
      Level b;
      for (index_t j = 0; j <= L; ++j) {
        b.resnets.emplace_back((j == 0 ? prev : out) + (j == L ? skip_in : out), out, ted, G,
                               c.norm_eps);
        if (c.attention[n - 1 - i]) b.attentions.push_back(attn(out));
      }
      if (i + 1 < n) b.upsampler.emplace(out);
      up_blocks.push_back(std::move(b));
    }
  }

  UNetConfig cfg_;

 public:
  nn::BasicConv2d<W> conv_in;
  nn::Linear<dyn, dyn, W, true> linear_1, linear_2;
  Tensor<float, DynShape<2>> class_embedding;
  std::vector<Level> down_blocks;
  std::vector<nn::BasicResBlock<W>> mid_resnets;
  nn::BasicSpatialTransformer<W> mid_attention;
  std::vector<Level> up_blocks;
  nn::GroupNorm conv_norm_out;
  nn::BasicConv2d<W> conv_out;
};

/// A copy of `src` whose weight matrices and kernels are stored as W2 (f32 values rounded to
/// nearest even for f16 / bf16); the same config, parameter for parameter.
///   auto unet16 = models::convert_weights<f16>(unet);   // half the bytes per step
template <class W2, class Cfg, class W1, class Backend>
UNet<Cfg, W2, Backend> convert_weights(UNet<Cfg, W1, Backend>& src) {
  struct source {
    const void* data;
    index_t size;
    int kind;  // 0 float, 1 f16, 2 bf16
  };
  std::vector<source> all;
  src.visit([&](const std::string&, auto& t) {
    using T = std::remove_cvref_t<decltype(*t.data())>;
    all.push_back({t.data(), t.size(),
                   std::is_same_v<T, float> ? 0
                   : std::is_same_v<T, f16> ? 1
                                            : 2});
  });
  auto dst = [&] {
    if constexpr (std::is_same_v<Cfg, UNetConfig>) {
      return UNet<Cfg, W2, Backend>(src.config());
    } else {
      return UNet<Cfg, W2, Backend>();
    }
  }();
  std::size_t i = 0;
  dst.visit([&](const std::string& name, auto& t) {
    using T = std::remove_cvref_t<decltype(*t.data())>;
    const source& s = all.at(i++);
    if (s.size != t.size())
      throw shape_error("tessel::models::convert_weights: parameter '" + name + "' differs");
    for (index_t j = 0; j < t.size(); ++j) {
      const float v = s.kind == 0   ? static_cast<const float*>(s.data)[j]
                      : s.kind == 1 ? to_f32(static_cast<const f16*>(s.data)[j])
                                    : to_f32(static_cast<const bf16*>(s.data)[j]);
      t.data()[j] = from_f32<T>(v);
    }
  });
  return dst;
}

}  // namespace tessel::models
