// The AutoencoderKL decoder against PyTorch (tools/golden/unet_golden.py: diffusers' Decoder
// layout in plain torch, a small config with random weights, float64 reference): latents
// [2, 4, 4, 4] -> images [2, 3, 8, 8], loaded from safetensors with its config.json.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tessel/io/load_diffusion.hpp>
#include <tessel/io/npy.hpp>
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

TEST_CASE("the VAE decoder matches PyTorch") {
  const auto cfg = io::vae_config_json(data_dir + "vae_small.json");
  CHECK(cfg.block_out_channels == std::vector<index_t>{8, 16});
  CHECK(cfg.scaling_factor == doctest::Approx(0.18215));
  models::VAEDecoder vae(cfg);
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
  models::VAEDecoder v2(other);
  CHECK_THROWS_AS(
      io::load_params(v2, io::SafetensorsCheckpoint::open(data_dir + "vae_small.safetensors")),
      format_error);
}
