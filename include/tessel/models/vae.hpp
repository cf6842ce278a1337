#pragma once
// Stable Diffusion's AutoencoderKL, composed from nn::ResBlock (no time embedding, eps 1e-6),
// nn::AttentionBlock and nn::Downsample / nn::Upsample, with diffusers' parameter names, so
// `vae/diffusion_pytorch_model.safetensors` loads as is:
//
// VAEEncoder (images → the latent distribution):
//   h = encoder.conv_in(x)
//   down level i: ResBlock × layers, then Downsample (not the last level): F.pad (0, 1, 0, 1),
//                 conv 3×3 stride 2 without padding (encoder.down_blocks.i.downsamplers.0.conv)
//   h = mid_block.resnets.1(mid_block.attentions.0(mid_block.resnets.0(h)))
//   moments = quant_conv(encoder.conv_out(SiLU(encoder.conv_norm_out(h))))   2 · latent channels
//   mean, logvar = the two halves of the moments (logvar clamped to [−30, 20], as diffusers)
//
// VAEDecoder (latents → images):
//   h = decoder.conv_in(post_quant_conv(z))
//   h = mid_block.resnets.1(mid_block.attentions.0(mid_block.resnets.0(h)))
//   up level i (channels reversed): ResBlock × (layers + 1), then Upsample (not the last level)
//   image = decoder.conv_out(SiLU(decoder.conv_norm_out(h)))      values in about [−1, 1]
//
// The scaling factor (0.18215 for SD 1.x) is applied at the boundary, symmetrically: encode()'s
// mode() / sample() multiply by it (diffusers' users write `latent_dist.sample() *
// scaling_factor`), decode() divides by it; both take a flag to skip it. The distribution's
// mean / logvar fields are diffusers' latent_dist, unscaled.
//
//   auto cfg = io::vae_config_json("sd15/vae/config.json");              // or VAEConfig::sd()
//   auto vae = io::load_autoencoder_kl(
//       io::SafetensorsCheckpoint::open(".../diffusion_pytorch_model.safetensors"), cfg);
//   auto z = vae.encode(img).sample(/*seed=*/1);   // [N, 3, H, W] in [−1, 1] → [N, 4, H/8, W/8]
//   auto img2 = vae.decode(z);                      // [N, 4, h, w] -> [N, 3, 8h, 8w]
// VAEDecoder, VAEEncoder, AutoencoderKL are BasicVAEDecoder<B>, ... with B = default_backend;
// io::load_autoencoder_kl<models::BasicAutoencoderKL<B>>(ck, cfg) loads one that runs B.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tessel/nn/resblock.hpp"
#include "tessel/nn/spatial_transformer.hpp"

namespace tessel::models {

struct VAEConfig {
  index_t in_channels = 3, latent_channels = 4, out_channels = 3;
  std::vector<index_t> block_out_channels{128, 256, 512, 512};
  index_t layers_per_block = 2, norm_groups = 32;
  float scaling_factor = 0.18215f;

  /// Stable Diffusion 1.x / 2.x's AutoencoderKL.
  static VAEConfig sd() { return {}; }

  void validate() const {
    if (block_out_channels.empty() || in_channels <= 0 || latent_channels <= 0 ||
        out_channels <= 0 || layers_per_block <= 0 || norm_groups <= 0 || !(scaling_factor > 0))
      throw value_error("tessel: VAEConfig: channels, layers, groups and scale must be positive");
    for (index_t c : block_out_channels)
      if (c <= 0 || c % norm_groups != 0)
        throw value_error("tessel: VAEConfig: block channels " + std::to_string(c) +
                          " do not split into " + std::to_string(norm_groups) + " groups");
  }
};

/// Backend: whose kernels decode() runs (default_backend; cpu_scalar: the references).
template <class Backend = default_backend>
class BasicVAEDecoder {
 public:
  using Act4 = nn::Act4;
  using View4 = nn::View4;

  struct Level {
    std::vector<nn::ResBlock> resnets;
    std::optional<nn::Upsample> upsampler;
  };

  explicit BasicVAEDecoder(const VAEConfig& c)
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
    const Backend b{};
    Act4 h = post_quant_conv.forward(b, u.view());
    h = conv_in.forward(b, h.view());
    h = mid_resnets[0].forward(b, h.view());
    h = mid_attention.forward(b, h.view());
    h = mid_resnets[1].forward(b, h.view());
    for (const Level& blk : up_blocks) {
      for (const auto& r : blk.resnets) h = r.forward(b, h.view());
      if (blk.upsampler) h = blk.upsampler->forward(b, h.view());
    }
    return conv_out.forward(b, conv_norm_out.forward_silu(b, h.view()).view());
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

/// diffusers' DiagonalGaussianDistribution (AutoencoderKL.encode(x).latent_dist): mean and
/// logvar of the unscaled latents, each [N, latent_channels, h, w].
struct LatentDistribution {
  nn::Act4 mean, logvar;
  float scaling_factor = 1;

  /// exp(logvar / 2).
  nn::Act4 std() const {
    nn::Act4 s(logvar.shape());
    for (index_t i = 0; i < s.size(); ++i) s.data()[i] = std::exp(0.5f * logvar.data()[i]);
    return s;
  }
  /// The mean (diffusers' mode()), times scaling_factor unless scale is false.
  nn::Act4 mode(bool scale = true) const {
    nn::Act4 z(mean.shape());
    const float k = scale ? scaling_factor : 1.0f;
    for (index_t i = 0; i < z.size(); ++i) z.data()[i] = mean.data()[i] * k;
    return z;
  }
  /// mean + std · ε with ε ~ N(0, 1) drawn in order from rng (the reparameterisation), times
  /// scaling_factor unless scale is false.
  nn::Act4 sample(std::mt19937_64& rng, bool scale = true) const {
    std::normal_distribution<float> nd(0.f, 1.f);
    nn::Act4 z(mean.shape());
    const float k = scale ? scaling_factor : 1.0f;
    for (index_t i = 0; i < z.size(); ++i)
      z.data()[i] = (mean.data()[i] + std::exp(0.5f * logvar.data()[i]) * nd(rng)) * k;
    return z;
  }
  nn::Act4 sample(std::uint64_t seed, bool scale = true) const {
    std::mt19937_64 rng(seed);
    return sample(rng, scale);
  }
};

/// Backend: whose kernels moments() and encode() run.
template <class Backend = default_backend>
class BasicVAEEncoder {
 public:
  using Act4 = nn::Act4;
  using View4 = nn::View4;

  struct Level {
    std::vector<nn::ResBlock> resnets;
    std::optional<nn::Downsample> downsampler;
  };

  explicit BasicVAEEncoder(const VAEConfig& c)
      : cfg_((c.validate(), c)),
        conv_in(c.in_channels, c.block_out_channels.front(), 3, {.padding = 1}),
        mid_attention(c.block_out_channels.back(), c.norm_groups),
        conv_norm_out(c.norm_groups, c.block_out_channels.back(), 1e-6f),
        conv_out(c.block_out_channels.back(), 2 * c.latent_channels, 3, {.padding = 1}),
        quant_conv(2 * c.latent_channels, 2 * c.latent_channels, 1) {
    const auto& ch = c.block_out_channels;
    index_t out = ch.front();
    for (std::size_t i = 0; i < ch.size(); ++i) {
      const index_t prev = out;
      out = ch[i];
      Level b;
      for (index_t j = 0; j < c.layers_per_block; ++j)
        b.resnets.emplace_back(j == 0 ? prev : out, out, 0, c.norm_groups, 1e-6f);
      if (i + 1 < ch.size()) b.downsampler.emplace(out, /*padding=*/0);
      down_blocks.push_back(std::move(b));
    }
    for (int k = 0; k < 2; ++k)
      mid_resnets.emplace_back(ch.back(), ch.back(), 0, c.norm_groups, 1e-6f);
  }

  const VAEConfig& config() const noexcept { return cfg_; }
  /// Image pixels per latent pixel along each side (8 for Stable Diffusion).
  index_t scale() const noexcept { return index_t{1} << (cfg_.block_out_channels.size() - 1); }

  /// quant_conv's output [N, 2 · latent_channels, ⌈H/scale⌉, ⌈W/scale⌉] (mean, then logvar,
  /// unclamped) of images x [N, in_channels, H, W].
  Act4 moments(View4 x) const {
    if (x.extent(1) != cfg_.in_channels || !x.is_contiguous())
      throw shape_error("tessel::models::VAEEncoder: images " + to_string(x.shape()) +
                        " should be contiguous [N, " + std::to_string(cfg_.in_channels) +
                        ", H, W]");
    const Backend b{};
    Act4 h = conv_in.forward(b, x);
    for (const Level& blk : down_blocks) {
      for (const auto& r : blk.resnets) h = r.forward(b, h.view());
      if (blk.downsampler) h = blk.downsampler->forward(b, h.view());
    }
    h = mid_resnets[0].forward(b, h.view());
    h = mid_attention.forward(b, h.view());
    h = mid_resnets[1].forward(b, h.view());
    h = conv_out.forward(b, conv_norm_out.forward_silu(b, h.view()).view());
    return quant_conv.forward(b, h.view());
  }

  /// The latent distribution of images x [N, in_channels, H, W] (values in about [−1, 1]).
  LatentDistribution encode(View4 x) const {
    const Act4 m = moments(x);
    const index_t N = m.extent(0), L = cfg_.latent_channels, P = m.extent(2) * m.extent(3);
    LatentDistribution d{Act4(N, L, m.extent(2), m.extent(3)), Act4(N, L, m.extent(2), m.extent(3)),
                         cfg_.scaling_factor};
    for (index_t n = 0; n < N; ++n) {
      const float* src = m.data() + n * 2 * L * P;
      std::copy(src, src + L * P, d.mean.data() + n * L * P);
      float* lv = d.logvar.data() + n * L * P;
      for (index_t i = 0; i < L * P; ++i) lv[i] = std::clamp(src[L * P + i], -30.0f, 20.0f);
    }
    return d;
  }

  template <class V>
  void visit(V&& v) {
    conv_in.visit("encoder.conv_in", v);
    for (std::size_t i = 0; i < down_blocks.size(); ++i) {
      const std::string p = "encoder.down_blocks." + std::to_string(i);
      for (std::size_t j = 0; j < down_blocks[i].resnets.size(); ++j)
        down_blocks[i].resnets[j].visit(p + ".resnets." + std::to_string(j), v);
      if (down_blocks[i].downsampler) down_blocks[i].downsampler->visit(p + ".downsamplers.0", v);
    }
    mid_resnets[0].visit("encoder.mid_block.resnets.0", v);
    mid_attention.visit("encoder.mid_block.attentions.0", v);
    mid_resnets[1].visit("encoder.mid_block.resnets.1", v);
    conv_norm_out.visit("encoder.conv_norm_out", v);
    conv_out.visit("encoder.conv_out", v);
    quant_conv.visit("quant_conv", v);
  }

 private:
  VAEConfig cfg_;

 public:
  nn::Conv2d conv_in;
  std::vector<Level> down_blocks;
  std::vector<nn::ResBlock> mid_resnets;
  nn::AttentionBlock mid_attention;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out, quant_conv;
};

/// The whole AutoencoderKL: the decoder, and the encoder when the checkpoint has one
/// (io::load_autoencoder_kl decides; a decoder-only file is common for text-to-image).
template <class Backend = default_backend>
class BasicAutoencoderKL {
 public:
  using backend_type = Backend;
  using Act4 = nn::Act4;
  using View4 = nn::View4;

  explicit BasicAutoencoderKL(const VAEConfig& c, bool with_encoder = true) : decoder(c) {
    if (with_encoder) encoder.emplace(c);
  }

  const VAEConfig& config() const noexcept { return decoder.config(); }
  index_t scale() const noexcept { return decoder.scale(); }
  bool has_encoder() const noexcept { return encoder.has_value(); }

  LatentDistribution encode(View4 x) const {
    if (!encoder)
      throw value_error(
          "tessel::models::AutoencoderKL: this autoencoder has no encoder (its checkpoint had "
          "no 'encoder.*' tensors)");
    return encoder->encode(x);
  }
  Act4 decode(View4 z, bool unscale = true) const { return decoder.decode(z, unscale); }

  template <class V>
  void visit(V&& v) {
    if (encoder) encoder->visit(v);
    decoder.visit(v);
  }

  BasicVAEDecoder<Backend> decoder;
  std::optional<BasicVAEEncoder<Backend>> encoder;
};
using VAEDecoder = BasicVAEDecoder<>;
using VAEEncoder = BasicVAEEncoder<>;
using AutoencoderKL = BasicAutoencoderKL<>;

}  // namespace tessel::models
