#pragma once
// Llama<Cfg, W, Backend>: the Llama / Llama 2 architecture from nn/ layer templates.
//
// Cfg is either a struct of compile-time dimensions (every layer then has static shapes)
//
//   struct Stories260K {
//     static constexpr int dim = 64, hidden = 172, layers = 5, heads = 8, kv_heads = 4,
//                          vocab = 512, max_seq = 512;
//   };  // optional: norm_eps, rope_theta, rope_style (defaults 1e-5, 10000, adjacent)
//   models::Llama<Stories260K, f16> m;
//
// or models::LlamaConfig, whose values are read from a file at run time (io/load/load_llama.hpp):
// the same templates serve both. W is the weight format of the matrices (f32, f16, bf16 or a
// block format); norms are f32. Every layer runs the kernels of Backend (default_backend: the
// build's best CPU backend; models::Llama<LlamaConfig, W, cpu_scalar> is the reference).
// Parameters carry their GGUF names (token_embd, blk.N.attn_q, ..., output_norm, output) and
// are reached with visit().
//
// The model is its weights only (const, shared by threads); what a sequence changes lives in a
// State (models/decoder.hpp): the KV cache, the RoPE table, the scratch and the logits.
//
//   auto st = m.new_state({.max_seq = 2048});                        // one per sequence
//   std::span<const float> logits = m.forward(st, prompt_ids, 0);    // prefill: M rows
//   logits = m.forward(st, std::span(&next, 1), pos);                // decode: one row
//
// Prefill runs the prompt in chunks of the state's max_batch rows, each through the whole
// network with M = rows, writing the KV cache; a decode step is the same code with M = 1. The
// cache and the RoPE table grow (doubling) as positions are written, so a decode step allocates
// only when it crosses a power of two.

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
#include "tessel/nn/rope.hpp"

namespace tessel::models {

using nn::RopeStyle;

/// Run-time dimensions (from a file's header or metadata).
struct LlamaConfig {
  index_t dim = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0, max_seq = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::adjacent;
  index_t rope_dim = 0;  // rotated dimensions per head; 0: the whole head

  index_t head_dim() const noexcept { return heads ? dim / heads : 0; }
  index_t kv_dim() const noexcept { return head_dim() * kv_heads; }
};

/// A config whose dimensions are compile-time constants (static data members, not fields).
template <class Cfg>
concept StaticLlamaConfig = std::is_pointer_v<decltype(&Cfg::dim)> &&
    std::is_pointer_v<decltype(&Cfg::hidden)> && std::is_pointer_v<decltype(&Cfg::layers)> &&
    std::is_pointer_v<decltype(&Cfg::heads)> && std::is_pointer_v<decltype(&Cfg::kv_heads)> &&
    std::is_pointer_v<decltype(&Cfg::vocab)> && std::is_pointer_v<decltype(&Cfg::max_seq)>;

/// The static extents of Cfg: its constants, or dyn for a run-time config.
template <class Cfg>
struct llama_extents {
  static constexpr index_t dim = dyn, hidden = dyn, heads = dyn, kv_heads = dyn, vocab = dyn,
                           max_seq = dyn, kv_dim = dyn;
};
template <StaticLlamaConfig Cfg>
struct llama_extents<Cfg> {
  static_assert(Cfg::dim > 0 && Cfg::heads > 0 && Cfg::kv_heads > 0 && Cfg::layers > 0 &&
                    Cfg::dim % Cfg::heads == 0 && Cfg::heads % Cfg::kv_heads == 0,
                "tessel::models::Llama: dim must be a multiple of heads, heads of kv_heads");
  static constexpr index_t dim = Cfg::dim, hidden = Cfg::hidden, heads = Cfg::heads,
                           kv_heads = Cfg::kv_heads, vocab = Cfg::vocab, max_seq = Cfg::max_seq,
                           kv_dim = Cfg::dim / Cfg::heads * Cfg::kv_heads;
};

/// The run-time values of any config.
template <class Cfg>
LlamaConfig to_llama_config(const Cfg& c) {
  if constexpr (std::is_same_v<Cfg, LlamaConfig>) {
    return c;
  } else {
    LlamaConfig r;
    r.dim = c.dim, r.hidden = c.hidden, r.layers = c.layers, r.heads = c.heads;
    r.kv_heads = c.kv_heads, r.vocab = c.vocab, r.max_seq = c.max_seq;
    if constexpr (requires { c.norm_eps; }) r.norm_eps = c.norm_eps;
    if constexpr (requires { c.rope_theta; }) r.rope_theta = c.rope_theta;
    if constexpr (requires { c.rope_style; }) r.rope_style = c.rope_style;
    if constexpr (requires { c.rope_dim; }) r.rope_dim = c.rope_dim;
    return r;
  }
}

template <class Cfg, nn::WeightFormat W = float, class Backend = default_backend>
class Llama {
  using E = llama_extents<Cfg>;
  LlamaConfig cfg_;  // first: the members below are built from it

 public:
  using config_type = Cfg;
  using weight_format = W;
  using backend_type = Backend;

  struct Block {
    Block(const LlamaConfig& c)
        : attn_norm(c.dim, c.norm_eps),
          attn(c.dim, c.heads, c.kv_heads),
          ffn_norm(c.dim, c.norm_eps),
          ffn(c.dim, c.hidden) {}
    template <class V>
    void visit(const std::string& prefix, V&& v) {
      attn_norm.visit(prefix + "attn_norm", v);
      attn.visit(prefix, v);
      ffn_norm.visit(prefix + "ffn_norm", v);
      ffn.visit(prefix, v);
    }
    nn::RMSNorm<E::dim> attn_norm;
    nn::Attention<E::dim, E::heads, E::kv_heads, W> attn;
    nn::RMSNorm<E::dim> ffn_norm;
    nn::GatedMLP<E::dim, E::hidden, W> ffn;
  };

  /// What one sequence changes: its KV cache and RoPE table (both grow with the positions
  /// written), the scratch of a chunk of max_batch rows, the logits. Made by new_state().
  class State : public KVDecoderState<E::kv_dim> {
    using Base = KVDecoderState<E::kv_dim>;

   public:
    State(State&&) noexcept = default;
    State& operator=(State&&) noexcept = default;

    /// Bytes allocated: the cache, the RoPE table, the scratch and the logits.
    std::size_t bytes() const noexcept {
      return Base::bytes() +
             std::size_t(rope_.max_seq() * rot_dim_) * sizeof(float);  // cos and sin: rot_dim / 2
    }

   private:
    friend class Llama;
    State(const Llama& m, index_t max_seq, index_t max_batch)
        : Base(m.cfg_.layers, max_seq, m.cfg_.kv_dim(), m.cfg_.dim, m.cfg_.vocab, max_batch),
          rot_dim_(m.rot_dim()),
          rope_(m.cfg_.head_dim(), rot_dim_, 1, m.cfg_.rope_theta, m.cfg_.rope_style) {}

    // Rows for positions [0, n): the cache grows, and with it the RoPE table and the
    // attention's scores scratch (both sized by the cache's rows).
    void reserve(const Llama& m, index_t n) {
      const auto work = [&](index_t rows) {
        return std::max(m.blk[0].attn.scratch_floats(this->max_batch_, rows),
                        m.blk[0].ffn.scratch_floats(this->max_batch_));
      };
      if (this->grow(n, work))
        rope_ = nn::Rope(m.cfg_.head_dim(), rot_dim_, this->cache_.capacity(), m.cfg_.rope_theta,
                         m.cfg_.rope_style);
    }

    index_t rot_dim_;
    nn::Rope rope_;
  };

  explicit Llama(const Cfg& cfg = {})
      : cfg_(checked(to_llama_config(cfg))),
        token_embd(cfg_.vocab, cfg_.dim),
        output_norm(cfg_.dim, cfg_.norm_eps),
        output(cfg_.dim, cfg_.vocab) {
    blk.reserve(std::size_t(cfg_.layers));
    for (index_t l = 0; l < cfg_.layers; ++l) blk.emplace_back(cfg_);
    // The RoPE dimensions are checked here, not at a state's first forward.
    (void)nn::Rope(cfg_.head_dim(), rot_dim(), 1, cfg_.rope_theta, cfg_.rope_style);
  }

  Llama(Llama&&) noexcept = default;

  const LlamaConfig& config() const noexcept { return cfg_; }
  index_t vocab() const noexcept { return cfg_.vocab; }
  /// The context length: a state holds at most this many positions.
  index_t max_seq() const noexcept { return cfg_.max_seq; }

  /// A state for one sequence: opt.max_seq positions (0: the model's), prefill chunks of
  /// opt.max_batch rows. It allocates the scratch of one chunk; the cache grows with use.
  State new_state(StateOptions opt = {}) const {
    const index_t seq = state_context("tessel::models::Llama", cfg_.max_seq, opt.max_seq);
    return State(*this, seq, state_batch("tessel::models::Llama", opt.max_batch, seq));
  }

  /// Runs tokens at positions pos .. pos+n-1 of the state's sequence (its cache rows before
  /// pos must hold this sequence's earlier tokens) and returns the logits after the last one
  /// (they live in the state). With all_logits, the logits of every position are written there
  /// too ([n, vocab]). Concurrent calls are safe on distinct states.
  template <class Id>
  std::span<const float> forward(State& s, std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) const {
    check_state(s);
    decode_chunks("tessel::models::Llama", tokens, pos, s.max_seq(), s.max_batch_, cfg_.vocab,
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
      throw value_error("tessel::models::Llama: " + std::to_string(n) +
                        " positions exceed the state's context of " + std::to_string(s.max_seq()));
    s.reserve(*this, n);
  }

  /// Every parameter as (GGUF name, tensor), in GGUF's order of layers.
  template <class V>
  void visit(V&& v) {
    token_embd.visit("token_embd", v);
    for (index_t l = 0; l < cfg_.layers; ++l)
      blk[std::size_t(l)].visit("blk." + std::to_string(l) + ".", v);
    output_norm.visit("output_norm", v);
    output.visit("output", v);
  }

  nn::Embedding<E::vocab, E::dim, W> token_embd;
  std::vector<Block> blk;
  nn::RMSNorm<E::dim> output_norm;
  nn::Linear<E::dim, E::vocab, W> output;

 private:
  static LlamaConfig checked(LlamaConfig c) {
    if (c.dim <= 0 || c.hidden <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 ||
        c.vocab <= 0 || c.max_seq <= 0 || c.dim % c.heads != 0 || c.heads % c.kv_heads != 0)
      throw value_error("tessel::models::Llama: invalid config (dim " + std::to_string(c.dim) +
                        ", hidden " + std::to_string(c.hidden) + ", layers " +
                        std::to_string(c.layers) + ", heads " + std::to_string(c.heads) +
                        ", kv_heads " + std::to_string(c.kv_heads) + ", vocab " +
                        std::to_string(c.vocab) + ", max_seq " + std::to_string(c.max_seq) + ")");
    return c;
  }

  index_t rot_dim() const noexcept { return cfg_.rope_dim ? cfg_.rope_dim : cfg_.head_dim(); }

  // A state made by a model of other dimensions would index past its buffers.
  void check_state(const State& s) const {
    if (s.cache_.layers() != cfg_.layers || s.cache_.kv_dim() != cfg_.kv_dim() ||
        s.x_.size() != std::size_t(s.max_batch_ * cfg_.dim) ||
        s.logits_.size() != std::size_t(cfg_.vocab) || s.rot_dim_ != rot_dim() ||
        s.max_seq() > cfg_.max_seq)
      throw value_error(
          "tessel::models::Llama: the state was made by a model of other "
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
    for (index_t l = 0; l < cfg_.layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(be, x, xb);
      b.attn.forward(be, xb, pos, s.cache_.keys_view(l), s.cache_.values_view(l), s.rope_, work, x,
                     1.0f);  // residual: x += attention
      b.ffn_norm.forward(be, x, xb);
      b.ffn.forward(be, xb, x, work, 1.0f);
    }
    decoder_head(be, output_norm, output, x, xb, cfg_.vocab, all_logits, last, s.logits_.data());
  }
};

static_assert(Decoder<Llama<LlamaConfig>>);

}  // namespace tessel::models
