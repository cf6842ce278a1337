// The U-Net's blocks and a whole small U-Net against PyTorch (tools/golden/unet_golden.py:
// diffusers-layout modules written in plain torch, random weights, outputs in float64):
// ResBlock with and without a 1×1 shortcut, SpatialTransformer (self + cross attention),
// the VAE's AttentionBlock, Downsample, Upsample, and UNet<> (two levels, cross-attention at
// the first, class conditioning) loaded from safetensors with its diffusers config.json. Each
// golden runs on default_backend and on cpu_scalar (the reference kernels), same tolerances.

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/load/load_diffusion.hpp>
#include <tessel/models/unet.hpp>

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

struct Blocks {  // every block module under its golden prefix
  nn::ResBlock res{8, 16, 24, 4, 1e-5f}, res_same{16, 16, 24, 4, 1e-5f};
  nn::SpatialTransformer st{16, 2, 12, 4};
  nn::AttentionBlock vae_attn{16, 4};
  nn::Downsample down{16};
  nn::Upsample up{16};
  template <class V>
  void visit(V&& v) {
    res.visit("res", v);
    res_same.visit("res_same", v);
    st.visit("st", v);
    vae_attn.visit("vae_attn", v);
    down.visit("down", v);
    up.visit("up", v);
  }
};

struct Tiny {  // the small U-Net's config at compile time
  static constexpr index_t in_channels = 4, out_channels = 4, layers_per_block = 1, heads = 2,
                           context_dim = 12, norm_groups = 4, num_classes = 3;
  static constexpr std::array<index_t, 2> block_out_channels{8, 16};
  static constexpr std::array<bool, 2> attention{true, false};
};

std::vector<float> silu_of(const Tensor<float, DynShape<2>>& t) {
  std::vector<float> s(t.data(), t.data() + t.size());
  for (auto& v : s) v = v / (1 + std::exp(-v));
  return s;
}

}  // namespace

TEST_CASE_TEMPLATE("diffusion blocks match PyTorch", Backend, default_backend, cpu_scalar) {
  INFO("backend " << std::string(Backend::name()));
  const Backend be{};
  Blocks b;
  io::load_params(b, io::SafetensorsCheckpoint::open(data_dir + "blocks.safetensors"));
  const auto f = io::NpzFile::open(data_dir + "blocks_io.npz");
  const auto x8 = f.get<float, 4>("x8"), x16 = f.get<float, 4>("x16");
  const auto temb = f.get<float, 2>("temb");
  const auto ctx = f.get<float, 3>("ctx");
  const auto st = silu_of(temb);

  const double e_res = worst_rel(b.res.forward(be, x8.view(), st.data()), f.get<float, 4>("res_y"));
  const double e_same =
      worst_rel(b.res_same.forward(be, x16.view(), st.data()), f.get<float, 4>("res_same_y"));
  const double e_st =
      worst_rel(b.st.forward(be, x16.view(), ctx.data(), ctx.extent(1)), f.get<float, 4>("st_y"));
  const double e_attn =
      worst_rel(b.vae_attn.forward(be, x16.view()), f.get<float, 4>("vae_attn_y"));
  const double e_down = worst_rel(b.down.forward(be, x16.view()), f.get<float, 4>("down_y"));
  const double e_up = worst_rel(b.up.forward(be, x16.view()), f.get<float, 4>("up_y"));
  MESSAGE("worst relative errors: ResBlock "
          << e_res << ", ResBlock (same channels) " << e_same << ", SpatialTransformer " << e_st
          << ", AttentionBlock " << e_attn << ", Downsample " << e_down << ", Upsample " << e_up);
  CHECK(e_res < 1e-4);
  CHECK(e_same < 1e-4);
  CHECK(e_st < 1e-4);
  CHECK(e_attn < 1e-4);
  CHECK(e_down < 1e-4);
  CHECK(e_up < 1e-4);

  // Without the time embedding the block is a different function: the golden must notice.
  CHECK(worst_rel(b.res.forward(be, x8.view()), f.get<float, 4>("res_y")) > 1e-2);
  CHECK_THROWS_AS(b.res.forward(be, x16.view(), st.data()), shape_error);
  CHECK_THROWS_AS(b.st.forward(be, x8.view(), ctx.data(), 3), shape_error);
}

TEST_CASE_TEMPLATE("a small U-Net matches PyTorch", Backend, default_backend, cpu_scalar) {
  INFO("backend " << std::string(Backend::name()));
  const auto cfg = io::unet_config_json(data_dir + "unet_small.json");
  CHECK(cfg.block_out_channels == std::vector<index_t>{8, 16});
  CHECK(cfg.attention == std::vector<bool>{true, false});
  CHECK(cfg.num_classes == 3);
  models::UNet<models::UNetConfig, float, Backend> unet(cfg);
  io::load_params(unet, io::SafetensorsCheckpoint::open(data_dir + "unet_small.safetensors"));
  const auto f = io::NpzFile::open(data_dir + "unet_small_io.npz");
  const auto x = f.get<float, 4>("x"), y = f.get<float, 4>("y");
  const auto t = f.get<float, 1>("t");
  const auto ctx = f.get<float, 3>("ctx");
  const auto lf = f.get<float, 1>("labels");
  std::vector<index_t> labels;
  for (index_t i = 0; i < lf.size(); ++i) labels.push_back(static_cast<index_t>(lf(i)));

  const double e = worst_rel(unet.forward(x.view(), t.view(), ctx.view(), labels), y);
  MESSAGE("small U-Net: worst relative error " << e);
  CHECK(e < 1e-4);

  // The same weights through a compile-time config.
  models::UNet<Tiny, float, Backend> st;
  io::load_params(st, io::SafetensorsCheckpoint::open(data_dir + "unet_small.safetensors"));
  CHECK(worst_rel(st.forward(x.view(), t.view(), ctx.view(), labels), y) < 1e-4);

  // f16 / bf16 weights: the rounded weights through f32 give the same output as the half
  // weights widened inside the GEMM panels; both stay near PyTorch's output.
  auto u16 = models::convert_weights<f16>(unet);
  auto u16_as_f32 = models::convert_weights<float>(u16);
  const auto y16 = u16.forward(x.view(), t.view(), ctx.view(), labels);
  CHECK(worst_rel(y16, u16_as_f32.forward(x.view(), t.view(), ctx.view(), labels)) < 1e-5);
  const double e16 = worst_rel(y16, y);
  MESSAGE("small U-Net, f16 weights: worst relative error " << e16);
  CHECK(e16 < 1e-2);
  auto ub16 = models::convert_weights<bf16>(st);
  CHECK(worst_rel(ub16.forward(x.view(), t.view(), ctx.view(), labels), y) < 5e-2);

  // Another label is another output; bad inputs are errors.
  std::vector<index_t> other{1, 1};
  CHECK(worst_rel(unet.forward(x.view(), t.view(), ctx.view(), other), y) > 1e-3);
  CHECK_THROWS_AS(unet.forward(x.view(), t.view(), ctx.view()), value_error);
  const std::vector<index_t> bad{0, 3};
  CHECK_THROWS_AS(unet.forward(x.view(), t.view(), ctx.view(), bad), value_error);
  Tensor<float, DynShape<4>> odd(2, 4, 7, 7);
  CHECK_THROWS_AS(unet.forward(odd.view(), t.view(), ctx.view(), labels), shape_error);
  // A checkpoint of another shape does not load.
  models::UNetConfig wide = cfg;
  wide.block_out_channels = {16, 16};
  models::UNet<models::UNetConfig, float, Backend> w(wide);
  CHECK_THROWS_AS(
      io::load_params(w, io::SafetensorsCheckpoint::open(data_dir + "unet_small.safetensors")),
      shape_error);
}
