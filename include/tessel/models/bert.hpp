#pragma once
// Bert<Cfg, W, Backend>: the BERT encoder from nn/ layer templates, and mean-pooled sentence
// embeddings (as sentence-transformers computes them). Word + position + token-type embeddings and
// a LayerNorm, then post-LayerNorm blocks: x = LN(x + attention(x)) with bidirectional attention
// over each sequence's unmasked tokens, x = LN(x + MLP(x)) with the erf GELU.
//
// Cfg is a struct of compile-time dimensions or models::BertConfig (run-time values, e.g. from
// io/load/load_bert.hpp), as for models::Llama:
//
//   struct MiniLM { static constexpr int dim = 384, hidden = 1536, layers = 6, heads = 12,
//                                        vocab = 30522, max_pos = 512; };
//   // optional: type_vocab (default 2), norm_eps (default 1e-12)
//
// A batch is B sequences of T tokens, row-major [B, T], with an attention mask (nonzero: a
// token, 0: padding, anywhere in the row) and optional token types:
//
//   auto st = m.new_state();                                  // activations: one per thread
//   std::span<const float> h = m.forward(st, ids, mask, B);   // last hidden state [B, T, dim]
//   std::span<const float> e = m.embed(st, ids, mask, B);     // mean over unmasked tokens [B, dim]
//
// Parameters carry llama.cpp's GGUF `bert` names (token_embd, position_embd, token_types,
// token_embd_norm, blk.N.attn_q / attn_k / attn_v / attn_output, attn_output_norm, ffn_up,
// ffn_down, layer_output_norm). The model is its weights (const, shared by threads); the
// activations live in a State, grown to the largest batch it has run, then reused.

#include <span>
#include <string>
#include <vector>

#include "tessel/nn/attention.hpp"
#include "tessel/nn/embedding.hpp"
#include "tessel/nn/linear.hpp"
#include "tessel/nn/mlp.hpp"
#include "tessel/nn/norm.hpp"
#include "tessel/nn/position.hpp"

namespace tessel::models {

/// Run-time dimensions.
struct BertConfig {
  index_t dim = 0, hidden = 0, layers = 0, heads = 0, vocab = 0, max_pos = 0, type_vocab = 2;
  float norm_eps = 1e-12f;
};

/// A config whose dimensions are compile-time constants (static data members, not fields).
template <class Cfg>
concept StaticBertConfig =
    std::is_pointer_v<decltype(&Cfg::dim)> && std::is_pointer_v<decltype(&Cfg::hidden)> &&
    std::is_pointer_v<decltype(&Cfg::layers)> && std::is_pointer_v<decltype(&Cfg::heads)> &&
    std::is_pointer_v<decltype(&Cfg::vocab)> && std::is_pointer_v<decltype(&Cfg::max_pos)>;

template <class Cfg>
struct bert_extents {
  static constexpr index_t dim = dyn, hidden = dyn, heads = dyn, vocab = dyn, max_pos = dyn;
};
template <StaticBertConfig Cfg>
struct bert_extents<Cfg> {
  static_assert(Cfg::dim > 0 && Cfg::heads > 0 && Cfg::layers > 0 && Cfg::dim % Cfg::heads == 0,
                "tessel::models::Bert: dim must be a positive multiple of heads");
  static constexpr index_t dim = Cfg::dim, hidden = Cfg::hidden, heads = Cfg::heads,
                           vocab = Cfg::vocab, max_pos = Cfg::max_pos;
};

template <class Cfg>
BertConfig to_bert_config(const Cfg& c) {
  if constexpr (std::is_same_v<Cfg, BertConfig>) {
    return c;
  } else {
    BertConfig r;
    r.dim = c.dim, r.hidden = c.hidden, r.layers = c.layers, r.heads = c.heads;
    r.vocab = c.vocab, r.max_pos = c.max_pos;
    if constexpr (requires { c.type_vocab; }) r.type_vocab = c.type_vocab;
    if constexpr (requires { c.norm_eps; }) r.norm_eps = c.norm_eps;
    return r;
  }
}

template <class Cfg, nn::WeightFormat W = float, class Backend = default_backend>
class Bert {
  using E = bert_extents<Cfg>;
  BertConfig cfg_;  // first: the members below are built from it

 public:
  using config_type = Cfg;
  using weight_format = W;
  using backend_type = Backend;

  struct Block {
    Block(const BertConfig& c)
        : attn(c.dim, c.heads, c.heads),
          attn_output_norm(c.dim, c.norm_eps),
          ffn(c.dim, c.hidden, nn::GeluKind::erf),
          layer_output_norm(c.dim, c.norm_eps) {}
    template <class V>
    void visit(const std::string& prefix, V&& v) {
      attn.visit(prefix, v);
      attn_output_norm.visit(prefix + "attn_output_norm", v);
      ffn.visit(prefix, v);
      layer_output_norm.visit(prefix + "layer_output_norm", v);
    }
    nn::Attention<E::dim, E::heads, E::heads, W, true> attn;
    nn::LayerNorm<E::dim> attn_output_norm;
    nn::MLP<E::dim, E::hidden, W, true> ffn;
    nn::LayerNorm<E::dim> layer_output_norm;
  };

  /// The activations and scratch of the batches run with it (the results point into it).
  class State {
   public:
    State() = default;
    /// Bytes allocated.
    std::size_t bytes() const noexcept {
      return (x_.size() + work_.size() + pooled_.size()) * sizeof(float);
    }

   private:
    friend class Bert;
    std::vector<float> x_, work_, pooled_;
  };

  explicit Bert(const Cfg& cfg = {})
      : cfg_(checked(to_bert_config(cfg))),
        token_embd(cfg_.vocab, cfg_.dim),
        position_embd(cfg_.max_pos, cfg_.dim),
        token_types(cfg_.type_vocab, cfg_.dim),
        token_embd_norm(cfg_.dim, cfg_.norm_eps) {
    blk.reserve(std::size_t(cfg_.layers));
    for (index_t l = 0; l < cfg_.layers; ++l) blk.emplace_back(cfg_);
  }

  Bert(Bert&&) noexcept = default;

  const BertConfig& config() const noexcept { return cfg_; }
  index_t dim() const noexcept { return cfg_.dim; }

  /// Empty: it grows with the batches it runs.
  State new_state() const { return State(); }

  /// The last hidden state [B, T, dim] of B sequences of T = ids.size() / B tokens. mask: [B, T]
  /// (nonzero: attend to this token) or empty (no padding); types: [B, T] or empty (all 0).
  /// Padding rows get values too (their queries attend to the unmasked tokens), as in PyTorch.
  template <class Id, class Mask = std::int32_t>
  std::span<const float> forward(State& s, std::span<const Id> ids, std::span<const Mask> mask,
                                 index_t B, std::span<const Id> types = {}) const {
    const index_t T = check_batch(ids.size(), mask.size(), types.size(), B);
    const index_t N = B * T, D = cfg_.dim;
    grow(s, B, T);
    // The activations, typed with the config's static width (dyn for a run-time config).
    const auto x = nn::row_view<E::dim>(s.x_.data(), N, D);
    const auto work = nn::scratch_view(s.work_.data(), index_t(s.work_.size()));
    const Backend be{};
    token_embd.forward(be, ids, x);
    for (index_t b = 0; b < B; ++b) position_embd.add(be, nn::row_range(x, b * T, (b + 1) * T), 0);
    if (types.empty()) {
      const Id zero{};
      for (index_t i = 0; i < N; ++i)
        token_types.forward_add(be, std::span(&zero, 1), nn::row_range(x, i, i + 1));
    } else {
      token_types.forward_add(be, types, x);
    }
    token_embd_norm.forward(be, x, x);
    for (const Block& b : blk) {
      b.attn.forward_bidirectional(be, x, B, mask, work, x, 1.0f);  // x += attention(x)
      b.attn_output_norm.forward(be, x, x);
      b.ffn.forward(be, x, x, work, 1.0f);  // x += mlp(x)
      b.layer_output_norm.forward(be, x, x);
    }
    return {s.x_.data(), std::size_t(N * D)};
  }

  /// Sentence embeddings [B, dim]: the mean of the last hidden state over unmasked tokens.
  template <class Id, class Mask = std::int32_t>
  std::span<const float> embed(State& s, std::span<const Id> ids, std::span<const Mask> mask,
                               index_t B, std::span<const Id> types = {}) const {
    const auto h = forward(s, ids, mask, B, types);
    const index_t T = static_cast<index_t>(ids.size()) / B, D = cfg_.dim;
    s.pooled_.assign(std::size_t(B * D), 0.0f);
    for (index_t b = 0; b < B; ++b) {
      float* out = s.pooled_.data() + b * D;
      index_t n = 0;
      for (index_t t = 0; t < T; ++t) {
        if (!mask.empty() && mask[std::size_t(b * T + t)] == Mask{}) continue;
        const float* row = h.data() + (b * T + t) * D;
        for (index_t j = 0; j < D; ++j) out[j] += row[j];
        ++n;
      }
      for (index_t j = 0; j < D; ++j) out[j] /= static_cast<float>(n);
    }
    return s.pooled_;
  }

  /// Every parameter as (GGUF name, tensor).
  template <class V>
  void visit(V&& v) {
    token_embd.visit("token_embd", v);
    position_embd.visit("position_embd", v);
    token_types.visit("token_types", v);
    token_embd_norm.visit("token_embd_norm", v);
    for (index_t l = 0; l < cfg_.layers; ++l)
      blk[std::size_t(l)].visit("blk." + std::to_string(l) + ".", v);
  }

  nn::Embedding<E::vocab, E::dim, W> token_embd;
  nn::PositionEmbedding<E::max_pos, E::dim> position_embd;  // f32: small tables
  nn::Embedding<dyn, E::dim> token_types;
  nn::LayerNorm<E::dim> token_embd_norm;
  std::vector<Block> blk;

 private:
  static BertConfig checked(BertConfig c) {
    if (c.dim <= 0 || c.hidden <= 0 || c.layers <= 0 || c.heads <= 0 || c.vocab <= 0 ||
        c.max_pos <= 0 || c.type_vocab <= 0 || c.dim % c.heads != 0)
      throw value_error(
          "tessel::models::Bert: invalid config (dim " + std::to_string(c.dim) + ", hidden " +
          std::to_string(c.hidden) + ", layers " + std::to_string(c.layers) + ", heads " +
          std::to_string(c.heads) + ", vocab " + std::to_string(c.vocab) + ", max_pos " +
          std::to_string(c.max_pos) + ", type_vocab " + std::to_string(c.type_vocab) + ")");
    return c;
  }

  index_t check_batch(std::size_t n_ids, std::size_t n_mask, std::size_t n_types, index_t B) const {
    const index_t n = static_cast<index_t>(n_ids);
    if (B <= 0 || n == 0 || n % B != 0)
      throw shape_error("tessel::models::Bert: " + std::to_string(n) +
                        " token ids do not form a batch of " + std::to_string(B) +
                        " non-empty sequences");
    const index_t T = n / B;
    if ((n_mask != 0 && n_mask != n_ids) || (n_types != 0 && n_types != n_ids))
      throw shape_error("tessel::models::Bert: the mask (" + std::to_string(n_mask) +
                        ") and token types (" + std::to_string(n_types) +
                        ") must be empty or hold one value per token id (" + std::to_string(n) +
                        ")");
    if (T > cfg_.max_pos)
      throw value_error("tessel::models::Bert: sequences of " + std::to_string(T) +
                        " tokens exceed the " + std::to_string(cfg_.max_pos) + " positions");
    return T;
  }

  void grow(State& s, index_t B, index_t T) const {
    const index_t N = B * T;
    const auto need = std::size_t(
        std::max(blk[0].attn.bidirectional_scratch_floats(B, T), blk[0].ffn.scratch_floats(N)));
    if (s.work_.size() < need) s.work_.resize(need);
    if (s.x_.size() < std::size_t(N * cfg_.dim)) s.x_.resize(std::size_t(N * cfg_.dim));
  }
};

}  // namespace tessel::models
