#pragma once
// Loading models::Bert from Hugging Face safetensors checkpoints (BertModel's names, with or
// without the `bert.` prefix of BertFor* heads):
//
//   auto m = io::load_bert_safetensors<f32>("all-MiniLM-L6-v2/model.safetensors");
//   auto s = io::load_bert<models::Bert<MiniLM, f16>>(path);   // a static config, checked
//
// Dimensions come from the tensors' shapes; the head count and LayerNorm epsilon from the
// options or from the config.json beside the file (num_attention_heads, layer_norm_eps).
// HF's nn.Linear weights are [out, in] as tessel's; formats convert as io/load/common.hpp says.
// Old checkpoints name LayerNorm parameters gamma / beta: both spellings are accepted.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tessel/io/formats/safetensors.hpp"
#include "tessel/io/load/common.hpp"
#include "tessel/io/load/names.hpp"
#include "tessel/io/load/safetensors_source.hpp"
#include "tessel/models/bert.hpp"

namespace tessel::io {

struct BertLoadOptions {
  /// The head count and LayerNorm epsilon (0: from config.json).
  index_t heads = 0;
  float norm_eps = 0.0f;
};

/// The config of a Hugging Face BERT checkpoint (see the top of the file).
template <class Json = nlohmann::json>
models::BertConfig bert_config(const SafetensorsCheckpoint& ck, const std::string& path,
                               const BertLoadOptions& opt = {}) {
  const std::string pre = ck.find("bert.embeddings.word_embeddings.weight") ? "bert." : "";
  const auto shape = [&](const std::string& n) {
    const SafetensorsTensor* t = ck.find(pre + n);
    if (!t) throw format_error(path, 0, "the checkpoint has no tensor '" + pre + n + "'");
    if (t->shape.size() != 2)
      throw format_error(path, t->file_offset, "tensor '" + t->name + "' is not a matrix");
    return t->shape;
  };
  models::BertConfig c;
  c.vocab = shape("embeddings.word_embeddings.weight")[0];
  c.dim = shape("embeddings.word_embeddings.weight")[1];
  c.max_pos = shape("embeddings.position_embeddings.weight")[0];
  c.type_vocab = shape("embeddings.token_type_embeddings.weight")[0];
  c.hidden = shape("encoder.layer.0.intermediate.dense.weight")[0];
  while (ck.find(pre + "encoder.layer." + std::to_string(c.layers) + ".output.dense.weight"))
    ++c.layers;
  c.heads = opt.heads;
  if (opt.norm_eps > 0) c.norm_eps = opt.norm_eps;
  const auto json_path = std::filesystem::path(path).parent_path() / "config.json";
  if ((c.heads == 0 || opt.norm_eps <= 0) && std::filesystem::exists(json_path)) {
    std::ifstream in(json_path);
    const Json j = Json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw format_error(json_path.string(), 0, "not a JSON object");
    if (c.heads == 0 && j.contains("num_attention_heads") &&
        j["num_attention_heads"].is_number_integer())
      c.heads = j["num_attention_heads"].template get<index_t>();
    if (opt.norm_eps <= 0 && j.contains("layer_norm_eps") && j["layer_norm_eps"].is_number())
      c.norm_eps = j["layer_norm_eps"].template get<float>();
    if (!std::isfinite(c.norm_eps) || c.norm_eps < 0)
      throw format_error(
          json_path.string(), 0,
          "layer_norm_eps is " + std::to_string(c.norm_eps) + ", expected a finite number >= 0");
  }
  if (c.heads <= 0 || c.dim % c.heads != 0)
    throw format_error(path, 0,
                       "the head count (" + std::to_string(c.heads) +
                           ") is missing or does not divide the hidden size " +
                           std::to_string(c.dim) + ": give BertLoadOptions::heads or config.json");
  return c;
}

/// A Bert (static or run-time config) from a Hugging Face safetensors checkpoint (a file or a
/// model.safetensors.index.json).
template <class Model>
Model load_bert(const SafetensorsCheckpoint& ck, const std::string& path,
                const BertLoadOptions& opt = {}) {
  using Cfg = typename Model::config_type;
  const models::BertConfig c = bert_config<detail::json_t<Model>>(ck, path, opt);
  Model m = [&] {
    if constexpr (std::is_same_v<Cfg, models::BertConfig>) {
      return Model(c);
    } else {
      const models::BertConfig s = models::to_bert_config(Cfg{});
      detail::check_static_dim(path, "hidden size", s.dim, c.dim);
      detail::check_static_dim(path, "intermediate size", s.hidden, c.hidden);
      detail::check_static_dim(path, "layer count", s.layers, c.layers);
      detail::check_static_dim(path, "head count", s.heads, c.heads);
      detail::check_static_dim(path, "vocabulary size", s.vocab, c.vocab);
      detail::check_static_dim(path, "position count", s.max_pos, c.max_pos);
      detail::check_static_dim(path, "token type count", s.type_vocab, c.type_vocab);
      return Model(Cfg{});
    }
  }();
  const std::string pre = ck.find("bert.embeddings.word_embeddings.weight") ? "bert." : "";
  const auto find = [&](const std::string& hf) -> std::optional<TensorSource> {
    const SafetensorsTensor* t = ck.find(pre + hf);
    if (!t && hf.ends_with(".weight"))  // LayerNorm.gamma / beta in old checkpoints
      t = ck.find(pre + hf.substr(0, hf.size() - 6) + "gamma");
    if (!t && hf.ends_with(".bias")) t = ck.find(pre + hf.substr(0, hf.size() - 4) + "beta");
    if (!t) return std::nullopt;
    return detail::st_source(*t);
  };
  detail::load_params(m, path, [&](const std::string& n) -> std::optional<TensorSource> {
    const std::optional<std::string> hf = detail::bert_hf_name(n);
    if (!hf) return std::nullopt;
    return find(*hf);
  });
  return m;
}
template <class Model>
Model load_bert(const std::string& path, const BertLoadOptions& opt = {}) {
  return load_bert<Model>(SafetensorsCheckpoint::open<detail::json_t<Model>>(path), path, opt);
}
template <nn::WeightFormat W = float>
models::Bert<models::BertConfig, W> load_bert_safetensors(const std::string& path,
                                                          const BertLoadOptions& opt = {}) {
  return load_bert<models::Bert<models::BertConfig, W>>(path, opt);
}

}  // namespace tessel::io
