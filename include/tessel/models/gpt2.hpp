#pragma once
// GPT2<Cfg, W>: the GPT-2 architecture from nn/ layer templates: token and learned position
// embeddings, pre-LayerNorm blocks (causal multi-head attention with biases, MLP with biases
// and tanh-GELU, each added to the residual), a final LayerNorm and an LM head that GPT-2
// ties to the token embedding.
//
// Cfg is a struct of compile-time dimensions or models::GPT2Config (values read from a file
// at run time, io/load_gpt2.hpp), as for models::Llama:
//
//   struct Tiny { static constexpr int dim = 64, hidden = 128, layers = 2, heads = 4,
//                                      vocab = 300, max_seq = 32; };  // optional: norm_eps
//   models::GPT2<Tiny> m;
//
// Parameters carry GGUF `gpt2` names (token_embd, position_embd, blk.N.attn_norm, blk.N.attn_q
// / attn_k / attn_v / attn_output, blk.N.ffn_norm, ffn_up, ffn_down, output_norm, output); the
// loaders split the files' fused attn_qkv (c_attn) into the three projections. `output` holds
// its own copy of the tied embedding, so every weight format has one matmul path.
//
//   std::span<const float> logits = m.forward(prompt_ids, 0);   // prefill: matmuls over M rows
//   logits = m.forward(std::span(&next, 1), pos);               // decode: one row, no allocation

#include <span>
#include <string>
#include <vector>

#include "tessel/nn/attention.hpp"
#include "tessel/nn/embedding.hpp"
#include "tessel/nn/kv_cache.hpp"
#include "tessel/nn/linear.hpp"
#include "tessel/nn/mlp.hpp"
#include "tessel/nn/norm.hpp"
#include "tessel/nn/position.hpp"

namespace tessel::models {

/// Run-time dimensions (from a file's metadata). max_seq is the position table's length.
struct GPT2Config {
  index_t dim = 0, hidden = 0, layers = 0, heads = 0, vocab = 0, max_seq = 0;
  float norm_eps = 1e-5f;

  index_t head_dim() const noexcept { return heads ? dim / heads : 0; }
};

/// A config whose dimensions are compile-time constants (static data members, not fields).
template <class Cfg>
concept StaticGPT2Config =
    std::is_pointer_v<decltype(&Cfg::dim)> && std::is_pointer_v<decltype(&Cfg::hidden)> &&
    std::is_pointer_v<decltype(&Cfg::layers)> && std::is_pointer_v<decltype(&Cfg::heads)> &&
    std::is_pointer_v<decltype(&Cfg::vocab)> && std::is_pointer_v<decltype(&Cfg::max_seq)>;

/// The static extents of Cfg: its constants, or dyn for a run-time config.
template <class Cfg>
struct gpt2_extents {
  static constexpr index_t dim = dyn, hidden = dyn, heads = dyn, vocab = dyn, max_seq = dyn;
};
template <StaticGPT2Config Cfg>
struct gpt2_extents<Cfg> {
  static_assert(Cfg::dim > 0 && Cfg::heads > 0 && Cfg::layers > 0 && Cfg::dim % Cfg::heads == 0,
                "tessel::models::GPT2: dim must be a positive multiple of heads");
  static constexpr index_t dim = Cfg::dim, hidden = Cfg::hidden, heads = Cfg::heads,
                           vocab = Cfg::vocab, max_seq = Cfg::max_seq;
};

/// The run-time values of any config.
template <class Cfg>
GPT2Config to_gpt2_config(const Cfg& c) {
  if constexpr (std::is_same_v<Cfg, GPT2Config>) {
    return c;
  } else {
    GPT2Config r;
    r.dim = c.dim, r.hidden = c.hidden, r.layers = c.layers, r.heads = c.heads;
    r.vocab = c.vocab, r.max_seq = c.max_seq;
    if constexpr (requires { c.norm_eps; }) r.norm_eps = c.norm_eps;
    return r;
  }
}

template <class Cfg, nn::WeightFormat W = float>
class GPT2 {
  using E = gpt2_extents<Cfg>;
  GPT2Config cfg_;  // first: the members below are built from it

 public:
  using config_type = Cfg;
  using weight_format = W;

  struct Block {
    Block(const GPT2Config& c)
        : attn_norm(c.dim, c.norm_eps),
          attn(c.dim, c.heads, c.heads),
          ffn_norm(c.dim, c.norm_eps),
          ffn(c.dim, c.hidden, nn::GeluKind::tanh) {}
    template <class V>
    void visit(const std::string& prefix, V&& v) {
      attn_norm.visit(prefix + "attn_norm", v);
      attn.visit(prefix, v);
      ffn_norm.visit(prefix + "ffn_norm", v);
      ffn.visit(prefix, v);
    }
    nn::LayerNorm<E::dim> attn_norm;
    nn::Attention<E::dim, E::heads, E::heads, W, true> attn;
    nn::LayerNorm<E::dim> ffn_norm;
    nn::MLP<E::dim, E::hidden, W, true> ffn;
  };

  /// max_batch: rows per prefill chunk (scratch grows with it).
  explicit GPT2(const Cfg& cfg = {}, index_t max_batch = 64)
      : cfg_(checked(to_gpt2_config(cfg))),
        token_embd(cfg_.vocab, cfg_.dim),
        position_embd(cfg_.max_seq, cfg_.dim),
        output_norm(cfg_.dim, cfg_.norm_eps),
        output(cfg_.dim, cfg_.vocab),
        cache_(cfg_.layers, cfg_.max_seq, cfg_.dim),
        max_batch_(std::max<index_t>(1, std::min(max_batch, cfg_.max_seq))) {
    blk.reserve(std::size_t(cfg_.layers));
    for (index_t l = 0; l < cfg_.layers; ++l) blk.emplace_back(cfg_);
    const index_t B = max_batch_;
    x_.resize(std::size_t(B * cfg_.dim));
    xb_.resize(std::size_t(B * cfg_.dim));
    work_.resize(std::size_t(
        std::max(blk[0].attn.scratch_floats(B, cfg_.max_seq), blk[0].ffn.scratch_floats(B))));
    logits_.resize(std::size_t(cfg_.vocab));
  }

  GPT2(GPT2&&) noexcept = default;

  const GPT2Config& config() const noexcept { return cfg_; }
  index_t vocab() const noexcept { return cfg_.vocab; }
  index_t max_seq() const noexcept { return cfg_.max_seq; }
  index_t max_batch() const noexcept { return max_batch_; }

  /// Runs tokens at positions pos .. pos+n-1 (cache rows before pos must hold this sequence's
  /// earlier tokens) and returns the logits after the last one. With all_logits, the logits of
  /// every position are written there too ([n, vocab]).
  template <class Id>
  std::span<const float> forward(std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) {
    const index_t n = static_cast<index_t>(tokens.size());
    if (n == 0) throw value_error("tessel::models::GPT2: forward needs at least one token");
    if (pos < 0 || pos + n > cfg_.max_seq)
      throw value_error("tessel::models::GPT2: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + n) + " exceed the context of " +
                        std::to_string(cfg_.max_seq) + " tokens");
    for (index_t c = 0; c < n; c += max_batch_) {
      const index_t m = std::min(max_batch_, n - c);
      run_chunk(tokens.subspan(std::size_t(c), std::size_t(m)), pos + c,
                all_logits ? all_logits + c * cfg_.vocab : nullptr, c + m == n);
    }
    return logits_;
  }

  /// Every parameter as (GGUF name, tensor), in GGUF's order of layers.
  template <class V>
  void visit(V&& v) {
    token_embd.visit("token_embd", v);
    position_embd.visit("position_embd", v);
    for (index_t l = 0; l < cfg_.layers; ++l)
      blk[std::size_t(l)].visit("blk." + std::to_string(l) + ".", v);
    output_norm.visit("output_norm", v);
    output.visit("output", v);
  }

  nn::Embedding<E::vocab, E::dim, W> token_embd;
  nn::PositionEmbedding<E::max_seq, E::dim> position_embd;  // f32: a small table
  std::vector<Block> blk;
  nn::LayerNorm<E::dim> output_norm;
  nn::Linear<E::dim, E::vocab, W> output;

 private:
  static GPT2Config checked(GPT2Config c) {
    if (c.dim <= 0 || c.hidden <= 0 || c.layers <= 0 || c.heads <= 0 || c.vocab <= 0 ||
        c.max_seq <= 0 || c.dim % c.heads != 0)
      throw value_error("tessel::models::GPT2: invalid config (dim " + std::to_string(c.dim) +
                        ", hidden " + std::to_string(c.hidden) + ", layers " +
                        std::to_string(c.layers) + ", heads " + std::to_string(c.heads) +
                        ", vocab " + std::to_string(c.vocab) + ", max_seq " +
                        std::to_string(c.max_seq) + ")");
    return c;
  }

  template <class Id>
  void run_chunk(std::span<const Id> tokens, index_t pos, float* all_logits, bool last) {
    const index_t M = static_cast<index_t>(tokens.size()), D = cfg_.dim;
    float* x = x_.data();
    float* xb = xb_.data();
    float* work = work_.data();
    token_embd.forward(tokens, x);
    position_embd.add(x, M, pos);
    for (index_t l = 0; l < cfg_.layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(x, M, xb);
      b.attn.forward(xb, M, pos, cache_.keys(l), cache_.values(l), cfg_.max_seq, work, x,
                     1.0f);  // residual: x += attention (no RoPE: positions are in x)
      b.ffn_norm.forward(x, M, xb);
      b.ffn.forward(xb, M, x, work, 1.0f);
    }
    if (all_logits) {
      output_norm.forward(x, M, xb);
      output.forward(xb, M, all_logits);
      if (last)
        std::copy(all_logits + (M - 1) * cfg_.vocab, all_logits + M * cfg_.vocab, logits_.begin());
    } else if (last) {
      output_norm.forward(x + (M - 1) * D, 1, xb);
      output.forward(xb, 1, logits_.data());
    }
  }

  nn::KVCache<E::max_seq, E::dim> cache_;
  index_t max_batch_;
  std::vector<float> x_, xb_, work_, logits_;
};

}  // namespace tessel::models
