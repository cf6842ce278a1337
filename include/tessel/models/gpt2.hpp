#pragma once
// GPT2<Cfg, W, Backend>: the GPT-2 architecture from nn/ layer templates: token and learned
// position embeddings, pre-LayerNorm blocks (causal multi-head attention with biases, MLP with
// biases and tanh-GELU, each added to the residual), a final LayerNorm and an LM head that GPT-2
// ties to the token embedding.
//
// Cfg is a struct of compile-time dimensions or models::GPT2Config (values read from a file
// at run time, io/load/load_gpt2.hpp), as for models::Llama:
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
// The model is its weights only; a State (models/decoder.hpp) holds a sequence's KV cache,
// which grows as positions are written, its scratch and its logits:
//
//   auto st = m.new_state();
//   std::span<const float> logits = m.forward(st, prompt_ids, 0);   // prefill: M rows
//   logits = m.forward(st, std::span(&next, 1), pos);               // decode: one row

#include <span>
#include <string>
#include <vector>

#include "tessel/models/decoder.hpp"
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

template <class Cfg, nn::WeightFormat W = float, class Backend = default_backend>
class GPT2 {
  using E = gpt2_extents<Cfg>;
  GPT2Config cfg_;  // first: the members below are built from it

 public:
  using config_type = Cfg;
  using weight_format = W;
  using backend_type = Backend;

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

  /// What one sequence changes: its KV cache (grows with the positions written), the scratch
  /// of a chunk of max_batch rows, the logits. Made by new_state().
  class State : public KVDecoderState<E::dim> {
    using Base = KVDecoderState<E::dim>;

   public:
    State(State&&) noexcept = default;
    State& operator=(State&&) noexcept = default;

   private:
    friend class GPT2;
    State(const GPT2& m, index_t max_seq, index_t max_batch)
        : Base(m.cfg_.layers, max_seq, m.cfg_.dim, m.cfg_.dim, m.cfg_.vocab, max_batch) {}

    // Rows for positions [0, n): the cache grows, and with it the attention's scores scratch.
    void reserve(const GPT2& m, index_t n) {
      this->grow(n, [&](index_t rows) {
        return std::max(m.blk[0].attn.scratch_floats(this->max_batch_, rows),
                        m.blk[0].ffn.scratch_floats(this->max_batch_));
      });
    }
  };

  explicit GPT2(const Cfg& cfg = {})
      : cfg_(checked(to_gpt2_config(cfg))),
        token_embd(cfg_.vocab, cfg_.dim),
        position_embd(cfg_.max_seq, cfg_.dim),
        output_norm(cfg_.dim, cfg_.norm_eps),
        output(cfg_.dim, cfg_.vocab) {
    blk.reserve(std::size_t(cfg_.layers));
    for (index_t l = 0; l < cfg_.layers; ++l) blk.emplace_back(cfg_);
  }

  GPT2(GPT2&&) noexcept = default;

  const GPT2Config& config() const noexcept { return cfg_; }
  index_t vocab() const noexcept { return cfg_.vocab; }
  /// The context length (the position table's): a state holds at most this many positions.
  index_t max_seq() const noexcept { return cfg_.max_seq; }

  /// A state for one sequence: opt.max_seq positions (0: the model's), prefill chunks of
  /// opt.max_batch rows. It allocates the scratch of one chunk; the cache grows with use.
  State new_state(StateOptions opt = {}) const {
    const index_t seq = state_context("tessel::models::GPT2", cfg_.max_seq, opt.max_seq);
    return State(*this, seq, state_batch("tessel::models::GPT2", opt.max_batch, seq));
  }

  /// Runs tokens at positions pos .. pos+n-1 of the state's sequence (its cache rows before
  /// pos must hold this sequence's earlier tokens) and returns the logits after the last one
  /// (they live in the state). With all_logits, the logits of every position are written there
  /// too ([n, vocab]). Concurrent calls are safe on distinct states.
  template <class Id>
  std::span<const float> forward(State& s, std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) const {
    check_state(s);
    decode_chunks("tessel::models::GPT2", tokens, pos, s.max_seq(), s.max_batch_, cfg_.vocab,
                  all_logits, [&](std::span<const Id> t, index_t p, float* al, bool last) {
                    run_chunk(s, t, p, al, last);
                  });
    return s.logits_;
  }

  /// Rows for positions [0, n) in the state now, not as they are written (a caller that
  /// knows its context and wants no allocation later, a benchmark that times none).
  void reserve(State& s, index_t n) const {
    check_state(s);
    if (n < 0 || n > s.max_seq())
      throw value_error("tessel::models::GPT2: " + std::to_string(n) +
                        " positions exceed the state's context of " + std::to_string(s.max_seq()));
    s.reserve(*this, n);
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

  // A state made by a model of other dimensions would index past its buffers.
  void check_state(const State& s) const {
    if (s.cache_.layers() != cfg_.layers || s.cache_.kv_dim() != cfg_.dim ||
        s.x_.size() != std::size_t(s.max_batch_ * cfg_.dim) ||
        s.logits_.size() != std::size_t(cfg_.vocab) || s.max_seq() > cfg_.max_seq)
      throw value_error(
          "tessel::models::GPT2: the state was made by a model of other "
          "dimensions");
  }

  template <class Id>
  void run_chunk(State& s, std::span<const Id> tokens, index_t pos, float* all_logits,
                 bool last) const {
    const index_t M = static_cast<index_t>(tokens.size()), D = cfg_.dim;
    s.reserve(*this, pos + M);
    // The activations, typed with the config's static width (dyn for a run-time config).
    const auto x = nn::row_view<E::dim>(s.x_.data(), M, D);
    const auto xb = nn::row_view<E::dim>(s.xb_.data(), M, D);
    const auto work = nn::scratch_view(s.work_.data(), index_t(s.work_.size()));
    const Backend be{};
    token_embd.forward(be, tokens, x);
    position_embd.add(be, x, pos);
    for (index_t l = 0; l < cfg_.layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(be, x, xb);
      b.attn.forward(be, xb, pos, s.cache_.keys_view(l), s.cache_.values_view(l), work, x,
                     1.0f);  // residual: x += attention (no RoPE: positions are in x)
      b.ffn_norm.forward(be, x, xb);
      b.ffn.forward(be, xb, x, work, 1.0f);
    }
    decoder_head(be, output_norm, output, x, xb, cfg_.vocab, all_logits, last, s.logits_.data());
  }
};

static_assert(Decoder<GPT2<GPT2Config>>);

}  // namespace tessel::models
