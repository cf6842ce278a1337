#pragma once
// Loading diffusion models (models::UNet, models::AutoencoderKL / VAEDecoder / VAEEncoder,
// models::CLIPTextModel) from diffusers-layout safetensors checkpoints, and their configs from
// diffusers' config.json:
//
//   auto cfg = io::unet_config_json("sd15/unet/config.json");
//   models::UNet<> unet(cfg);
//   io::load_params(unet,
//   io::SafetensorsCheckpoint::open(".../diffusion_pytorch_model.safetensors"));
//
// load_params walks the model's visit() names (optionally under a prefix) and copies every
// tensor: F32, F16 and BF16 files are widened to f32; a missing tensor, another dtype or a
// shape that differs from the model's is a format_error / shape_error naming the tensor.
// Tensors the model does not name are ignored (a VAEDecoder loads from a full AutoencoderKL
// file); io::load_autoencoder_kl loads the encoder too when the file has one. Attention
// projections named as diffusers < 0.14 did (query, key, value, proj_attn) are accepted for
// to_q, to_k, to_v, to_out.0.

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/io/formats/safetensors.hpp"
#include "tessel/io/formats/torch.hpp"
#include "tessel/models/clip.hpp"
#include "tessel/models/mnist_ddpm.hpp"
#include "tessel/models/unet.hpp"
#include "tessel/models/vae.hpp"

namespace tessel::io {

namespace detail {
/// diffusers before 0.14 named the VAE attention's projections query / key / value /
/// proj_attn (same shapes); "" when the name has none of today's.
inline std::string legacy_attention_name(const std::string& n) {
  static constexpr std::pair<std::string_view, std::string_view> renames[] = {
      {".to_q.", ".query."},
      {".to_k.", ".key."},
      {".to_v.", ".value."},
      {".to_out.0.", ".proj_attn."}};
  for (const auto& [now, old] : renames)
    if (const auto p = n.find(now); p != std::string::npos)
      return n.substr(0, p) + std::string(old) + n.substr(p + now.size());
  return {};
}
}  // namespace detail

template <class Model>
void load_params(Model& m, const SafetensorsCheckpoint& ck, const std::string& prefix = "") {
  m.visit([&](const std::string& name, auto& t) {
    const SafetensorsTensor* s = ck.find(prefix + name);
    if (!s) {
      const std::string old = detail::legacy_attention_name(prefix + name);
      if (!old.empty()) s = ck.find(old);
    }
    if (!s)
      throw format_error("safetensors", 0,
                         "the model needs a tensor named '" + prefix + name + "'");
    bool same = s->shape.size() == t.rank;
    for (std::size_t k = 0; same && k < t.rank; ++k) same = s->shape[k] == t.extent(k);
    if (!same) {
      std::string got = "[";
      for (std::size_t k = 0; k < s->shape.size(); ++k)
        got += (k ? ", " : "") + std::to_string(s->shape[k]);
      throw shape_error("tessel: tensor '" + prefix + name + "' has shape " + got +
                        "], the model expects " + to_string(t.shape()));
    }
    const std::byte* src = s->bytes().data();
    float* dst = t.data();
    const auto n = static_cast<std::size_t>(t.size());
    if (s->dtype == st_dtype::F32) {
      std::memcpy(dst, src, n * 4);
    } else if (s->dtype == st_dtype::F16 || s->dtype == st_dtype::BF16) {
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t u;
        std::memcpy(&u, src + 2 * i, 2);
        dst[i] = s->dtype == st_dtype::F16 ? to_f32(std::bit_cast<f16>(u))
                                           : to_f32(std::bit_cast<bf16>(u));
      }
    } else {
      throw format_error("safetensors", s->file_offset,
                         "tensor '" + prefix + name + "' is " + io::name(s->dtype) +
                             "; the model reads F32, F16 or BF16");
    }
  });
}

namespace detail {
// The JSON readers are templates (Json defaults to nlohmann::json) so that nlohmann's parser is
// instantiated only in programs that call them, not in every one that includes the library.
template <class Json = nlohmann::json>
Json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw format_error(path, 0, "cannot open the file");
  Json j = Json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw format_error(path, 0, "not a JSON object");
  return j;
}
template <class T, class Json>
T json_get(const Json& j, const std::string& path, const char* key, T fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].template get<T>();
  } catch (const typename Json::exception&) {
    throw format_error(path, 0, std::string("config key '") + key + "' has the wrong type");
  }
}
}  // namespace detail

/// A UNetConfig from diffusers' unet/config.json (UNet2DConditionModel's keys).
template <class Json = nlohmann::json>
models::UNetConfig unet_config_json(const std::string& path) {
  const auto j = detail::read_json<Json>(path);
  models::UNetConfig c;
  c.in_channels = detail::json_get<index_t>(j, path, "in_channels", 4);
  c.out_channels = detail::json_get<index_t>(j, path, "out_channels", 4);
  c.block_out_channels =
      detail::json_get<std::vector<index_t>>(j, path, "block_out_channels", c.block_out_channels);
  const auto types = detail::json_get<std::vector<std::string>>(
      j, path, "down_block_types",
      {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"});
  c.attention.clear();
  for (const auto& t : types) c.attention.push_back(t.starts_with("CrossAttn"));
  c.layers_per_block = detail::json_get<index_t>(j, path, "layers_per_block", 2);
  // diffusers' "attention_head_dim" of SD 1.x is the head count (a known misnomer).
  c.heads = detail::json_get<index_t>(j, path, "num_attention_heads", 0);
  if (c.heads == 0) c.heads = detail::json_get<index_t>(j, path, "attention_head_dim", 8);
  c.context_dim = detail::json_get<index_t>(j, path, "cross_attention_dim", 768);
  c.norm_groups = detail::json_get<index_t>(j, path, "norm_num_groups", 32);
  c.num_classes = detail::json_get<index_t>(j, path, "num_class_embeds", 0);
  c.norm_eps = detail::json_get<float>(j, path, "norm_eps", 1e-5f);
  if (detail::json_get<bool>(j, path, "use_linear_projection", false) ||
      !detail::json_get<bool>(j, path, "flip_sin_to_cos", true) ||
      detail::json_get<double>(j, path, "freq_shift", 0) != 0)
    throw format_error(path, 0,
                       "tessel's UNet implements the Stable Diffusion 1.x layout (1x1-conv "
                       "projections, flip_sin_to_cos, freq_shift 0)");
  try {
    c.validate();
  } catch (const value_error& e) {
    throw format_error(path, 0, e.what());
  }
  return c;
}

/// A VAEConfig from diffusers' vae/config.json (AutoencoderKL's keys).
template <class Json = nlohmann::json>
models::VAEConfig vae_config_json(const std::string& path) {
  const auto j = detail::read_json<Json>(path);
  models::VAEConfig c;
  c.in_channels = detail::json_get<index_t>(j, path, "in_channels", 3);
  c.latent_channels = detail::json_get<index_t>(j, path, "latent_channels", 4);
  c.out_channels = detail::json_get<index_t>(j, path, "out_channels", 3);
  c.block_out_channels =
      detail::json_get<std::vector<index_t>>(j, path, "block_out_channels", c.block_out_channels);
  c.layers_per_block = detail::json_get<index_t>(j, path, "layers_per_block", 2);
  c.norm_groups = detail::json_get<index_t>(j, path, "norm_num_groups", 32);
  c.scaling_factor = detail::json_get<float>(j, path, "scaling_factor", 0.18215f);
  try {
    c.validate();
  } catch (const value_error& e) {
    throw format_error(path, 0, e.what());
  }
  return c;
}

/// An AutoencoderKL from a diffusers vae checkpoint: the decoder always; the encoder when the
/// file holds any 'encoder.*' or 'quant_conv.*' tensor (then it must hold all of them: a
/// missing one is a format_error naming it). A decoder-only file gives has_encoder() false.
/// Model: models::BasicAutoencoderKL<Backend> for another backend than the default.
template <class Model = models::AutoencoderKL>
Model load_autoencoder_kl(const SafetensorsCheckpoint& ck, const models::VAEConfig& cfg) {
  const auto& all = ck.tensors();
  const auto has_prefix = [&](std::string_view p) {
    const auto it = all.lower_bound(p);
    return it != all.end() && it->first.starts_with(p);
  };
  Model vae(cfg, has_prefix("encoder.") || has_prefix("quant_conv."));
  load_params(vae, ck);
  return vae;
}

/// A CLIPConfig from a CLIP text model checkpoint: dimensions from the tensors' shapes, the
/// head count (and bos / eos ids) from the config.json beside the file, else dim / 64.
template <class Json = nlohmann::json>
models::CLIPConfig clip_config(const SafetensorsCheckpoint& ck, const std::string& path) {
  const auto shape = [&](const std::string& n) {
    const SafetensorsTensor* t = ck.find(n);
    if (!t || t->shape.size() != 2)
      throw format_error(path, 0, "the checkpoint has no matrix '" + n + "'");
    return t->shape;
  };
  models::CLIPConfig c;
  c.vocab = shape("text_model.embeddings.token_embedding.weight")[0];
  c.dim = shape("text_model.embeddings.token_embedding.weight")[1];
  c.max_pos = shape("text_model.embeddings.position_embedding.weight")[0];
  c.hidden = shape("text_model.encoder.layers.0.mlp.fc1.weight")[0];
  c.layers = 0;
  while (ck.find("text_model.encoder.layers." + std::to_string(c.layers) + ".mlp.fc2.weight"))
    ++c.layers;
  c.heads = c.dim / 64;
  const auto json = std::filesystem::path(path).parent_path() / "config.json";
  if (std::filesystem::exists(json)) {
    const auto j = detail::read_json<Json>(json.string());
    c.heads = detail::json_get<index_t>(j, json.string(), "num_attention_heads", c.heads);
    c.bos = detail::json_get<std::int64_t>(j, json.string(), "bos_token_id", c.bos);
    c.eos = detail::json_get<std::int64_t>(j, json.string(), "eos_token_id", c.eos);
    c.norm_eps = detail::json_get<float>(j, json.string(), "layer_norm_eps", c.norm_eps);
  }
  if (c.heads <= 0 || c.dim % c.heads != 0)
    throw format_error(path, 0,
                       "the head count " + std::to_string(c.heads) + " does not divide the width " +
                           std::to_string(c.dim));
  return c;
}

/// The mnist-ddpm network from a .safetensors or a PyTorch .pth state dict (chosen by the
/// file's extension). Model: models::BasicMnistDDPM<Backend> for another backend.
template <class Model = models::MnistDDPM>
Model load_mnist_ddpm(const std::string& path) {
  using Json = detail::json_t<Model>;
  Model m;
  if (path.ends_with(".safetensors")) {
    const auto f = SafetensorsFile::open<Json>(path);
    m.visit([&](const std::string& name, auto& t) {
      const auto* s = f.find(name);
      if (!s) throw format_error(path, 0, "the model needs a tensor named '" + name + "'");
      if (s->dtype != st_dtype::F32)
        throw format_error(path, s->file_offset, "tensor '" + name + "' is not F32");
      Model::copy_param(name, t, s->shape, s->bytes().data());
    });
  } else {
    const auto f = TorchFile::open(path);
    m.visit([&](const std::string& name, auto& t) {
      const auto* s = f.find(name);
      if (!s) throw format_error(path, 0, "the model needs a tensor named '" + name + "'");
      if (s->dtype != torch_dtype::F32 || !s->is_contiguous())
        throw format_error(path, 0, "tensor '" + name + "' is not a contiguous float32 tensor");
      Model::copy_param(name, t, s->shape, s->storage.data() + s->storage_offset * 4);
    });
  }
  return m;
}

}  // namespace tessel::io
