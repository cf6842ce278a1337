// The AutoencoderKL decoder and encoder against PyTorch (tools/golden/unet_golden.py and
// vae_encoder_golden.py: diffusers' Decoder / Encoder layout in plain torch, small configs with
// random weights, float64 reference): latents [2, 4, 4, 4] -> images [2, 3, 8, 8] and back,
// loaded from safetensors with their config.json. The goldens run on default_backend and on
// cpu_scalar (the reference kernels) with the same tolerances.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/load/load_diffusion.hpp>
#include <tessel/models/vae.hpp>

using namespace tessel;

namespace {
const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/diffusion/";

template <class A, class B>
double worst_rel(const A& got, const B& want) {
  REQUIRE(got.shape().extents() == want.shape().extents());
  double worst = 0;
  for (index_t i = 0; i < want.size(); ++i) {
    const double w = want.data()[i];
    worst = std::max(worst, std::abs(got.data()[i] - w) / std::max(1.0, std::abs(w)));
  }
  return worst;
}
}  // namespace

TEST_CASE_TEMPLATE("the VAE decoder matches PyTorch", Backend, default_backend, cpu_scalar) {
  INFO("backend " << std::string(Backend::name()));
  const auto cfg = io::vae_config_json(data_dir + "vae_small.json");
  CHECK(cfg.block_out_channels == std::vector<index_t>{8, 16});
  CHECK(cfg.scaling_factor == doctest::Approx(0.18215));
  models::BasicVAEDecoder<Backend> vae(cfg);
  CHECK(vae.scale() == 2);
  io::load_params(vae, io::SafetensorsCheckpoint::open(data_dir + "vae_small.safetensors"));
  const auto f = io::NpzFile::open(data_dir + "vae_small_io.npz");
  const auto z = f.get<float, 4>("z"), y = f.get<float, 4>("y");

  const double e = worst_rel(vae.decode(z.view(), /*unscale=*/false), y);
  MESSAGE("VAE decoder: worst relative error " << e);
  CHECK(e < 1e-4);

  // decode() of scaled latents divides by the scaling factor first.
  Tensor<float, DynShape<4>> scaled(z.shape());
  for (index_t i = 0; i < z.size(); ++i) scaled.data()[i] = z.data()[i] * cfg.scaling_factor;
  CHECK(worst_rel(vae.decode(scaled.view()), y) < 1e-4);
  CHECK(worst_rel(vae.decode(z.view()), y) > 1e-2);

  Tensor<float, DynShape<4>> bad(1, 3, 4, 4);
  CHECK_THROWS_AS(vae.decode(bad.view()), shape_error);
  models::VAEConfig other = cfg;
  other.layers_per_block = 2;  // one more ResBlock per level: the file lacks it
  models::BasicVAEDecoder<Backend> v2(other);
  CHECK_THROWS_AS(
      io::load_params(v2, io::SafetensorsCheckpoint::open(data_dir + "vae_small.safetensors")),
      format_error);
}

TEST_CASE_TEMPLATE("the VAE encoder matches PyTorch", Backend, default_backend, cpu_scalar) {
  INFO("backend " << std::string(Backend::name()));
  const auto cfg = io::vae_config_json(data_dir + "vae_kl_small.json");
  CHECK(cfg.in_channels == 3);
  CHECK(cfg.layers_per_block == 2);
  const auto ck = io::SafetensorsCheckpoint::open(data_dir + "vae_kl_small.safetensors");
  const auto vae = io::load_autoencoder_kl<models::BasicAutoencoderKL<Backend>>(ck, cfg);
  REQUIRE(vae.has_encoder());
  CHECK(vae.encoder->scale() == 2);
  const auto f = io::NpzFile::open(data_dir + "vae_kl_small_io.npz");
  const auto x = f.get<float, 4>("x"), mean = f.get<float, 4>("mean"),
             logvar = f.get<float, 4>("logvar"), y = f.get<float, 4>("y");

  const auto d = vae.encode(x.view());
  const double em = worst_rel(d.mean, mean), el = worst_rel(d.logvar, logvar);
  MESSAGE("VAE encoder: worst relative error of the mean " << em << ", of logvar " << el);
  CHECK(em < 1e-4);
  CHECK(el < 1e-4);
  CHECK(d.scaling_factor == doctest::Approx(0.18215));

  // Odd image sizes: the downsampler's (0, 1, 0, 1) padding decides the latent size (7x5 -> 4x3).
  const auto d_odd = vae.encode(f.get<float, 4>("x_odd").view());
  CHECK(worst_rel(d_odd.mean, f.get<float, 4>("mean_odd")) < 1e-4);
  CHECK(worst_rel(d_odd.logvar, f.get<float, 4>("logvar_odd")) < 1e-4);

  // The encoder alone loads from the same file by its own names.
  models::BasicVAEEncoder<Backend> enc(cfg);
  io::load_params(enc, ck);
  CHECK(worst_rel(enc.encode(x.view()).mean, mean) < 1e-6);

  // std = exp(logvar / 2); mode() scales the mean by the scaling factor, decode() unscales:
  // decode(encode(x).mode()) is PyTorch's decode(mean).
  const auto sd = d.std();
  for (index_t i = 0; i < sd.size(); ++i)
    REQUIRE(sd.data()[i] == doctest::Approx(std::exp(0.5 * logvar.data()[i])).epsilon(1e-4));
  const auto z = d.mode();
  for (index_t i = 0; i < z.size(); ++i)
    REQUIRE(z.data()[i] == doctest::Approx(mean.data()[i] * 0.18215).epsilon(1e-4).scale(1e-3));
  CHECK(worst_rel(vae.decode(z.view()), y) < 1e-4);
  CHECK(worst_rel(vae.decode(d.mode(false).view(), false), y) < 1e-4);

  // sample(seed): mean + std * eps, eps standard normal; the same seed gives the same latents.
  const auto s1 = d.sample(7), s1b = d.sample(7), s2 = d.sample(8);
  CHECK(worst_rel(s1, s1b) == 0);
  CHECK(worst_rel(s1, s2) > 0);
  double m1 = 0, m2 = 0;
  for (index_t i = 0; i < s1.size(); ++i) {
    const double e = (s1.data()[i] / 0.18215 - d.mean.data()[i]) / sd.data()[i];
    m1 += e;
    m2 += e * e;
  }
  m1 /= static_cast<double>(s1.size());
  m2 = m2 / static_cast<double>(s1.size()) - m1 * m1;
  MESSAGE("sample noise over " << s1.size() << " latents: mean " << m1 << ", variance " << m2);
  CHECK(std::abs(m1) < 0.35);  // 128 draws: 4 standard errors
  CHECK(std::abs(m2 - 1) < 0.5);
  std::mt19937_64 rng(7);
  CHECK(worst_rel(d.sample(rng), s1) == 0);
}

TEST_CASE("the VAE encoder rejects bad images and checkpoints") {
  const auto cfg = io::vae_config_json(data_dir + "vae_kl_small.json");
  const auto ck = io::SafetensorsCheckpoint::open(data_dir + "vae_kl_small.safetensors");
  const auto vae = io::load_autoencoder_kl(ck, cfg);

  Tensor<float, DynShape<4>> four(1, 4, 8, 8);  // RGBA: the encoder reads 3 channels
  CHECK_THROWS_WITH_AS(vae.encode(four.view()),
                       "tessel::models::VAEEncoder: images [1, 4, 8, 8] should be contiguous "
                       "[N, 3, H, W]",
                       shape_error);

  // A config with one more ResBlock per level: the file lacks the encoder's third one.
  models::VAEConfig deeper = cfg;
  deeper.layers_per_block = 3;
  CHECK_THROWS_WITH_AS(io::load_autoencoder_kl(ck, deeper),
                       doctest::Contains("'encoder.down_blocks.0.resnets.2.norm1.weight'"),
                       format_error);
  // A config for 4-channel images: conv_in's weight has another shape.
  models::VAEConfig rgba = cfg;
  rgba.in_channels = 4;
  CHECK_THROWS_WITH_AS(io::load_autoencoder_kl(ck, rgba),
                       doctest::Contains("'encoder.conv_in.weight'"), shape_error);

  // A decoder-only file (with diffusers < 0.14's attention names) loads the decoder alone.
  const auto dec = io::load_autoencoder_kl(
      io::SafetensorsCheckpoint::open(data_dir + "vae_kl_small_decoder_legacy.safetensors"), cfg);
  CHECK_FALSE(dec.has_encoder());
  const auto f = io::NpzFile::open(data_dir + "vae_kl_small_io.npz");
  CHECK(worst_rel(dec.decode(f.get<float, 4>("mean").view(), false), f.get<float, 4>("y")) < 1e-4);
  CHECK_THROWS_WITH_AS(dec.encode(f.get<float, 4>("x").view()), doctest::Contains("has no encoder"),
                       value_error);
}
