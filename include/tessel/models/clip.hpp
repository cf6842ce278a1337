#pragma once
// CLIPTextModel: the text encoder of Stable Diffusion 1.x (openai/clip-vit-large-patch14's text
// half) assembled from nn/ layers, with Hugging Face transformers' parameter names:
//
//   h = text_model.embeddings.token_embedding[ids] + position_embedding[0 … T−1]
//   layer N (pre-LN, causal):  h += self_attn(layer_norm1(h));  h += mlp.fc2(quick_gelu(
//                              mlp.fc1(layer_norm2(h))))        quick_gelu(x) = x·σ(1.702 x)
//   out = final_layer_norm(h)   [T, dim]: the U-Net's cross-attention context
//
// self_attn is nn::Attention with biases (q_proj / k_proj / v_proj / out_proj) run causally over
// the sequence; LayerNorm eps 1e-5.
//
//   const auto ck = io::SafetensorsCheckpoint::open("sd15/text_encoder/model.safetensors");
//   models::CLIPTextModel clip(io::clip_config(ck, path));  io::load_params(clip, ck);
//   auto ctx = clip.encode_padded(ids);   // ids padded with eos to max_pos (77): [77 · 768]
// CLIPTextModel is BasicCLIPTextModel<default_backend>; BasicCLIPTextModel<B> runs backend B.

#include <span>
#include <string>
#include <vector>

#include "tessel/nn/attention.hpp"
#include "tessel/nn/embedding.hpp"
#include "tessel/nn/linear.hpp"
#include "tessel/nn/norm.hpp"
#include "tessel/nn/position.hpp"

namespace tessel::models {

struct CLIPConfig {
  index_t vocab = 49408, dim = 768, hidden = 3072, layers = 12, heads = 12, max_pos = 77;
  std::int64_t bos = 49406, eos = 49407;  // <|startoftext|>, <|endoftext|> (also the padding)
  float norm_eps = 1e-5f;
};

/// Backend: whose kernels encode() runs (default_backend; cpu_scalar: the references).
template <class Backend = default_backend>
class BasicCLIPTextModel {
 public:
  using backend_type = Backend;
  struct Layer {
    Layer(const CLIPConfig& c)
        : layer_norm1(c.dim, c.norm_eps),
          self_attn(c.dim, c.heads, c.heads),
          layer_norm2(c.dim, c.norm_eps),
          fc1(c.dim, c.hidden),
          fc2(c.hidden, c.dim) {}
    nn::LayerNorm<dyn> layer_norm1;
    nn::Attention<dyn, dyn, dyn, float, true> self_attn;
    nn::LayerNorm<dyn> layer_norm2;
    nn::Linear<dyn, dyn, float, true> fc1, fc2;
  };

  explicit BasicCLIPTextModel(const CLIPConfig& c)
      : cfg_(c),
        token_embedding(c.vocab, c.dim),
        position_embedding(c.max_pos, c.dim),
        final_layer_norm(c.dim, c.norm_eps) {
    if (c.dim <= 0 || c.heads <= 0 || c.dim % c.heads != 0 || c.layers <= 0 || c.max_pos <= 0)
      throw value_error("tessel: CLIPConfig: dim " + std::to_string(c.dim) + ", heads " +
                        std::to_string(c.heads) + ", layers " + std::to_string(c.layers));
    for (index_t l = 0; l < c.layers; ++l) layers.emplace_back(c);
  }

  const CLIPConfig& config() const noexcept { return cfg_; }

  /// The last hidden state [T, dim] (row-major) of T = ids.size() <= max_pos tokens.
  std::vector<float> encode(std::span<const std::int64_t> ids) const {
    const index_t T = static_cast<index_t>(ids.size()), D = cfg_.dim;
    if (T == 0 || T > cfg_.max_pos)
      throw value_error("tessel::models::CLIPTextModel: " + std::to_string(T) +
                        " tokens; the model takes 1 to " + std::to_string(cfg_.max_pos));
    std::vector<float> h(static_cast<std::size_t>(T * D)), t(h.size()),
        f(static_cast<std::size_t>(T * cfg_.hidden)), k(static_cast<std::size_t>(cfg_.max_pos * D)),
        v(k.size());
    const Backend b{};
    const auto hv = nn::row_view(h.data(), T, D), tv = nn::row_view(t.data(), T, D);
    const auto fv = nn::row_view(f.data(), T, cfg_.hidden);
    const auto kv = nn::row_view(k.data(), cfg_.max_pos, D),
               vv = nn::row_view(v.data(), cfg_.max_pos, D);
    token_embedding.forward(b, ids, hv);
    position_embedding.add(b, hv, 0);
    const auto& a0 = layers.front().self_attn;
    std::vector<float> scratch(static_cast<std::size_t>(a0.scratch_floats(T, cfg_.max_pos)));
    const auto sv = nn::scratch_view(scratch.data(), index_t(scratch.size()));
    for (const Layer& l : layers) {
      l.layer_norm1.forward(b, hv, tv);
      // Causal attention over the sequence: its keys and values fill the cache rows 0 … T−1.
      l.self_attn.forward(b, tv, 0, kv, vv, sv, hv, 1.0f);
      l.layer_norm2.forward(b, hv, tv);
      l.fc1.forward(b, tv, fv);
      eval(b, fv, fv * sigmoid(1.702f * fv));  // quick_gelu
      l.fc2.forward(b, fv, hv, 1.0f);
    }
    final_layer_norm.forward(b, hv, hv);
    return h;
  }

  /// encode() of ids cut to max_pos (the last kept token becomes eos) and padded with eos to
  /// max_pos, as Stable Diffusion's pipeline feeds the encoder: [max_pos · dim].
  std::vector<float> encode_padded(std::vector<std::int64_t> ids) const {
    const auto L = static_cast<std::size_t>(cfg_.max_pos);
    if (ids.size() > L) {
      ids.resize(L);
      ids.back() = cfg_.eos;
    }
    ids.resize(L, cfg_.eos);
    return encode(ids);
  }

  template <class V>
  void visit(V&& v) {
    token_embedding.visit("text_model.embeddings.token_embedding", v);
    position_embedding.visit("text_model.embeddings.position_embedding", v);
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const std::string p = "text_model.encoder.layers." + std::to_string(i) + ".";
      Layer& l = layers[i];
      l.layer_norm1.visit(p + "layer_norm1", v);
      l.self_attn.attn_q.visit(p + "self_attn.q_proj", v);
      l.self_attn.attn_k.visit(p + "self_attn.k_proj", v);
      l.self_attn.attn_v.visit(p + "self_attn.v_proj", v);
      l.self_attn.attn_output.visit(p + "self_attn.out_proj", v);
      l.layer_norm2.visit(p + "layer_norm2", v);
      l.fc1.visit(p + "mlp.fc1", v);
      l.fc2.visit(p + "mlp.fc2", v);
    }
    final_layer_norm.visit("text_model.final_layer_norm", v);
  }

 private:
  CLIPConfig cfg_;

 public:
  nn::Embedding<dyn, dyn> token_embedding;
  nn::PositionEmbedding<dyn, dyn> position_embedding;
  std::vector<Layer> layers;
  nn::LayerNorm<dyn> final_layer_norm;
};
using CLIPTextModel = BasicCLIPTextModel<>;

}  // namespace tessel::models
