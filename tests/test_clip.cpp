// The CLIP text encoder against PyTorch (tools/golden/unet_golden.py: transformers'
// CLIPTextModel layout in plain torch — pre-LN causal blocks, quick_gelu, final LayerNorm —
// small config, random weights, float64 reference), on a prompt and on it padded with eos.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/load/load_diffusion.hpp>
#include <tessel/models/clip.hpp>

using namespace tessel;

namespace {
double worst_rel(const std::vector<float>& got, const Tensor<float, DynShape<2>>& want) {
  REQUIRE(static_cast<index_t>(got.size()) == want.size());
  double worst = 0;
  for (index_t i = 0; i < want.size(); ++i) {
    const double w = want.data()[i];
    worst = std::max(worst, std::abs(got[std::size_t(i)] - w) / std::max(1.0, std::abs(w)));
  }
  return worst;
}
}  // namespace

// On default_backend and on cpu_scalar (the reference kernels), with the same tolerances.
TEST_CASE_TEMPLATE("the CLIP text encoder matches PyTorch", Backend, default_backend, cpu_scalar) {
  INFO("backend " << std::string(Backend::name()));
  const std::string dir = std::string(TESSEL_TEST_DATA_DIR) + "/diffusion/";
  const std::string path = dir + "clip/model.safetensors";
  const auto ck = io::SafetensorsCheckpoint::open(path);
  const auto cfg = io::clip_config(ck, path);
  CHECK(cfg.dim == 32);
  CHECK(cfg.heads == 2);
  CHECK(cfg.layers == 2);
  CHECK(cfg.max_pos == 8);
  CHECK(cfg.eos == 63);
  models::BasicCLIPTextModel<Backend> clip(cfg);
  io::load_params(clip, ck);
  const auto f = io::NpzFile::open(dir + "clip_io.npz");
  const std::vector<std::int64_t> ids{62, 5, 17, 40, 63};
  const double e = worst_rel(clip.encode(ids), f.get<float, 2>("y"));
  const double ep = worst_rel(clip.encode_padded(ids), f.get<float, 2>("y_padded"));
  MESSAGE("CLIP: worst relative error " << e << ", padded " << ep);
  CHECK(e < 1e-4);
  CHECK(ep < 1e-4);
  // Causal: the first five rows do not see the padding.
  const auto y8 = f.get<float, 2>("y_padded");
  const auto y5 = clip.encode(ids);
  for (std::size_t i = 0; i < y5.size(); ++i) CHECK(std::abs(y5[i] - y8.data()[i]) < 1e-4);

  const std::vector<std::int64_t> too_long(9, 1), bad{62, 64};
  CHECK_THROWS_AS(clip.encode(too_long), value_error);
  CHECK_THROWS_AS(clip.encode(bad), value_error);
  CHECK(clip.encode_padded(too_long).size() == 8 * 32);
}
