#pragma once
// Llama<Cfg, W>: the Llama / Llama 2 architecture from nn/ layer templates.
//
// Cfg is either a struct of compile-time dimensions (every layer then has static shapes)
//
//   struct Stories260K {
//     static constexpr int dim = 64, hidden = 172, layers = 5, heads = 8, kv_heads = 4,
//                          vocab = 512, max_seq = 512;
//   };  // optional: norm_eps, rope_theta, rope_style (defaults 1e-5, 10000, adjacent)
//   models::Llama<Stories260K, f16> m;
//
// or models::LlamaConfig, whose values are read from a file at run time (io/load_llama.hpp):
// the same templates serve both. W is the weight format of the matrices (f32, f16, bf16 or a
// block format); norms are f32. Parameters carry their GGUF names (token_embd, blk.N.attn_q,
// ..., output_norm, output) and are reached with visit().
//
//   std::span<const float> logits = m.forward(prompt_ids, 0);   // prefill: matmuls over M rows
//   logits = m.forward(std::span(&next, 1), pos);               // decode: one row, no allocation
//
// Prefill runs the prompt in chunks of max_batch rows, each through the whole network with
// M = rows, writing the KV cache; a decode step is the same code with M = 1. All scratch is
// allocated by the constructor.

#include <span>
#include <string>
#include <vector>

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

template <class Cfg, nn::WeightFormat W = float>
class Llama {
  using E = llama_extents<Cfg>;
  LlamaConfig cfg_;  // first: the members below are built from it

 public:
  using config_type = Cfg;
  using weight_format = W;

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

  /// max_batch: rows per prefill chunk (scratch grows with it).
  explicit Llama(const Cfg& cfg = {}, index_t max_batch = 64)
      : cfg_(checked(to_llama_config(cfg))),
        token_embd(cfg_.vocab, cfg_.dim),
        output_norm(cfg_.dim, cfg_.norm_eps),
        output(cfg_.dim, cfg_.vocab),
        cache_(cfg_.layers, cfg_.max_seq, cfg_.kv_dim()),
        rope_(cfg_.head_dim(), cfg_.rope_dim ? cfg_.rope_dim : cfg_.head_dim(), cfg_.max_seq,
              cfg_.rope_theta, cfg_.rope_style),
        max_batch_(std::max<index_t>(1, std::min(max_batch, cfg_.max_seq))) {
    blk.reserve(std::size_t(cfg_.layers));
    for (index_t l = 0; l < cfg_.layers; ++l) blk.emplace_back(cfg_);
    const index_t B = max_batch_;
    const index_t attn_scratch = blk[0].attn.scratch_floats(B, cfg_.max_seq);
    const index_t ffn_scratch = blk[0].ffn.scratch_floats(B);
    x_.resize(std::size_t(B * cfg_.dim));
    xb_.resize(std::size_t(B * cfg_.dim));
    work_.resize(std::size_t(std::max(attn_scratch, ffn_scratch)));
    logits_.resize(std::size_t(cfg_.vocab));
  }

  Llama(Llama&&) noexcept = default;

  const LlamaConfig& config() const noexcept { return cfg_; }
  index_t vocab() const noexcept { return cfg_.vocab; }
  index_t max_seq() const noexcept { return cfg_.max_seq; }
  index_t max_batch() const noexcept { return max_batch_; }
  const nn::KVCache<E::max_seq, E::kv_dim>& cache() const noexcept { return cache_; }

  /// Runs tokens at positions pos .. pos+n-1 (cache rows before pos must hold this sequence's
  /// earlier tokens) and returns the logits after the last one. With all_logits, the logits of
  /// every position are written there too ([n, vocab]).
  template <class Id>
  std::span<const float> forward(std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) {
    const index_t n = static_cast<index_t>(tokens.size());
    if (n == 0) throw value_error("tessel::models::Llama: forward needs at least one token");
    if (pos < 0 || pos + n > cfg_.max_seq)
      throw value_error("tessel::models::Llama: positions " + std::to_string(pos) + " to " +
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

  template <class Id>
  void run_chunk(std::span<const Id> tokens, index_t pos, float* all_logits, bool last) {
    const index_t M = static_cast<index_t>(tokens.size()), D = cfg_.dim;
    float* x = x_.data();
    float* xb = xb_.data();
    float* work = work_.data();
    token_embd.forward(tokens, x);
    for (index_t l = 0; l < cfg_.layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(x, M, xb);
      b.attn.forward(xb, M, pos, cache_.keys(l), cache_.values(l), cfg_.max_seq, rope_, work, x,
                     1.0f);  // residual: x += attention
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

  nn::KVCache<E::max_seq, E::kv_dim> cache_;
  nn::Rope rope_;
  index_t max_batch_;
  std::vector<float> x_, xb_, work_, logits_;
};

}  // namespace tessel::models
