#pragma once
// VAEDecoder: the decoder half of Stable Diffusion's AutoencoderKL (latents → images), composed
// from nn::ResBlock (no time embedding, eps 1e-6), nn::AttentionBlock and nn::Upsample, with
// diffusers' parameter names, so `vae/diffusion_pytorch_model.safetensors` loads as is
// (io::load_params ignores the encoder's tensors):
//
//   h = decoder.conv_in(post_quant_conv(z))
//   h = mid_block.resnets.1(mid_block.attentions.0(mid_block.resnets.0(h)))
//   up level i (channels reversed): ResBlock × (layers + 1), then Upsample (not the last level)
//   image = decoder.conv_out(SiLU(decoder.conv_norm_out(h)))      values in about [−1, 1]
//
//   models::VAEDecoder vae(io::vae_config_json("sd15/vae/config.json"));   // or VAEConfig::sd()
//   io::load_params(vae,
//   io::SafetensorsCheckpoint::open(".../diffusion_pytorch_model.safetensors")); auto img =
//   vae.decode(latents);   // z = latents / scaling_factor first (decode does it
//                                     // unless told not to), [N, 4, h, w] -> [N, 3, 8h, 8w]

#include <string>
#include <vector>

#include "tessel/nn/resblock.hpp"
#include "tessel/nn/spatial_transformer.hpp"

namespace tessel::models {

struct VAEConfig {
  index_t latent_channels = 4, out_channels = 3;
  std::vector<index_t> block_out_channels{128, 256, 512, 512};
  index_t layers_per_block = 2, norm_groups = 32;
  float scaling_factor = 0.18215f;

  /// Stable Diffusion 1.x / 2.x's AutoencoderKL.
  static VAEConfig sd() { return {}; }

  void validate() const {
    if (block_out_channels.empty() || latent_channels <= 0 || out_channels <= 0 ||
        layers_per_block <= 0 || norm_groups <= 0 || !(scaling_factor > 0))
      throw value_error("tessel: VAEConfig: channels, layers, groups and scale must be positive");
    for (index_t c : block_out_channels)
      if (c <= 0 || c % norm_groups != 0)
        throw value_error("tessel: VAEConfig: block channels " + std::to_string(c) +
                          " do not split into " + std::to_string(norm_groups) + " groups");
  }
};

class VAEDecoder {
 public:
  using Act4 = nn::Act4;
  using View4 = nn::View4;

  struct Level {
    std::vector<nn::ResBlock> resnets;
    std::optional<nn::Upsample> upsampler;
  };

  explicit VAEDecoder(const VAEConfig& c)
      : cfg_((c.validate(), c)),
        post_quant_conv(c.latent_channels, c.latent_channels, 1),
        conv_in(c.latent_channels, c.block_out_channels.back(), 3, {.padding = 1}),
        mid_attention(c.block_out_channels.back(), c.norm_groups),
        conv_norm_out(c.norm_groups, c.block_out_channels.front(), 1e-6f),
        conv_out(c.block_out_channels.front(), c.out_channels, 3, {.padding = 1}) {
    const auto& ch = c.block_out_channels;
    const std::size_t n = ch.size();
    for (int k = 0; k < 2; ++k)
      mid_resnets.emplace_back(ch.back(), ch.back(), 0, c.norm_groups, 1e-6f);
    index_t out = ch.back();
    for (std::size_t i = 0; i < n; ++i) {
      const index_t prev = out;
      out = ch[n - 1 - i];
      Level b;
      for (index_t j = 0; j <= c.layers_per_block; ++j)
        b.resnets.emplace_back(j == 0 ? prev : out, out, 0, c.norm_groups, 1e-6f);
      if (i + 1 < n) b.upsampler.emplace(out);
      up_blocks.push_back(std::move(b));
    }
  }

  const VAEConfig& config() const noexcept { return cfg_; }
  /// Image pixels per latent pixel along each side (8 for Stable Diffusion).
  index_t scale() const noexcept { return index_t{1} << (cfg_.block_out_channels.size() - 1); }

  /// Images [N, out_channels, H·scale, W·scale] of latents z [N, latent_channels, H, W];
  /// unscale: divide by scaling_factor first (latents as a diffusion model produces them).
  Act4 decode(View4 z, bool unscale = true) const {
    if (z.extent(1) != cfg_.latent_channels || !z.is_contiguous())
      throw shape_error("tessel::models::VAEDecoder: latents " + to_string(z.shape()) +
                        " should be contiguous [N, " + std::to_string(cfg_.latent_channels) +
                        ", H, W]");
    Act4 u(z.shape());  // a scaled copy: latents are small next to the activations
    const float k = unscale ? 1.0f / cfg_.scaling_factor : 1.0f;
    for (index_t i = 0; i < u.size(); ++i) u.data()[i] = z.data()[i] * k;
    Act4 h = post_quant_conv.forward(u.view());
    h = conv_in.forward(h.view());
    h = mid_resnets[0].forward(h.view());
    h = mid_attention.forward(h.view());
    h = mid_resnets[1].forward(h.view());
    for (const Level& b : up_blocks) {
      for (const auto& r : b.resnets) h = r.forward(h.view());
      if (b.upsampler) h = b.upsampler->forward(h.view());
    }
    return conv_out.forward(conv_norm_out.forward_silu(h.view()).view());
  }

  template <class V>
  void visit(V&& v) {
    post_quant_conv.visit("post_quant_conv", v);
    conv_in.visit("decoder.conv_in", v);
    mid_resnets[0].visit("decoder.mid_block.resnets.0", v);
    mid_attention.visit("decoder.mid_block.attentions.0", v);
    mid_resnets[1].visit("decoder.mid_block.resnets.1", v);
    for (std::size_t i = 0; i < up_blocks.size(); ++i) {
      const std::string p = "decoder.up_blocks." + std::to_string(i);
      for (std::size_t j = 0; j < up_blocks[i].resnets.size(); ++j)
        up_blocks[i].resnets[j].visit(p + ".resnets." + std::to_string(j), v);
      if (up_blocks[i].upsampler) up_blocks[i].upsampler->visit(p + ".upsamplers.0", v);
    }
    conv_norm_out.visit("decoder.conv_norm_out", v);
    conv_out.visit("decoder.conv_out", v);
  }

 private:
  VAEConfig cfg_;

 public:
  nn::Conv2d post_quant_conv, conv_in;
  std::vector<nn::ResBlock> mid_resnets;
  nn::AttentionBlock mid_attention;
  std::vector<Level> up_blocks;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;
};

}  // namespace tessel::models
