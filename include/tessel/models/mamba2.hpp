#pragma once
// Mamba2<Cfg, W>: the Mamba-2 language model (Dao & Gu 2024) from nn/ layer templates:
//
//   x = token_embd[ids];  for each layer: x += mixer2(rms_norm(x));  logits = head(rms_norm(x))
//
// with the head tied to the embedding (a file may carry its own `output`). Cfg is a struct of
// compile-time constants (static shapes)
//
//   struct Mamba2_130M {
//     static constexpr int dim = 768, layers = 24, vocab = 50288, d_inner = 1536, d_state = 128,
//                          d_conv = 4, n_heads = 24, n_groups = 1;   // headdim 64
//   };  // optional: norm_eps (default 1e-5)
//
// or models::Mamba2Config read from a file (io/load_mamba2.hpp). GGUF names: token_embd,
// blk.N.attn_norm, blk.N.ssm_* (nn/mamba2.hpp), output_norm, output.
//
//   std::span<const float> logits = m.forward(prompt_ids, 0);  // pos 0: a new sequence
//   logits = m.forward(std::span(&next, 1), pos);              // one step, no allocation
//
// As models::Mamba: no positions, pos must be the count of tokens seen (0 starts over), the
// state is the same size at any position, prefill runs max_batch rows at a time (GEMMs), and
// all scratch is allocated by the constructor.

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tessel/models/mamba.hpp"
#include "tessel/nn/linear.hpp"
#include "tessel/nn/mamba2.hpp"
#include "tessel/nn/norm.hpp"

namespace tessel::models {

/// Run-time dimensions (from a file's metadata).
struct Mamba2Config {
  index_t dim = 0, layers = 0, vocab = 0, d_inner = 0, d_state = 0, d_conv = 0, n_heads = 0,
          n_groups = 1;
  float norm_eps = 1e-5f;
  index_t max_seq = index_t{1} << 30;  // no cache: only a stop for generate()
  bool tied_output = true;             // head = token_embd (false: a separate `output`)

  index_t headdim() const noexcept { return n_heads > 0 ? d_inner / n_heads : 0; }
};

template <class Cfg>
Mamba2Config to_mamba2_config(const Cfg& c) {
  if constexpr (std::is_same_v<Cfg, Mamba2Config>) {
    return c;
  } else {
    Mamba2Config r;
    r.dim = c.dim, r.layers = c.layers, r.vocab = c.vocab, r.d_inner = c.d_inner;
    r.d_state = c.d_state, r.d_conv = c.d_conv, r.n_heads = c.n_heads, r.n_groups = c.n_groups;
    if constexpr (requires { c.norm_eps; }) r.norm_eps = c.norm_eps;
    if constexpr (requires { c.max_seq; }) r.max_seq = c.max_seq;
    if constexpr (requires { c.tied_output; }) r.tied_output = c.tied_output;
    return r;
  }
}

namespace detail {
template <class Cfg>
struct vocab2_extent {
  static constexpr index_t value = dyn;
};
template <nn::StaticMamba2Config Cfg>
requires std::is_pointer_v<decltype(&Cfg::vocab)>
struct vocab2_extent<Cfg> {
  static constexpr index_t value = Cfg::vocab;
};
}  // namespace detail

template <class Cfg, nn::WeightFormat W = float>
class Mamba2 {
  using E = nn::mamba2_extents<Cfg>;
  static constexpr index_t V = detail::vocab2_extent<Cfg>::value;
  Mamba2Config cfg_;  // first: the members below are built from it

 public:
  using config_type = Cfg;
  using weight_format = W;
  using Head = nn::Linear<E::dim, V, W>;

  struct Block {
    explicit Block(const Mamba2Config& c)
        : attn_norm(c.dim, c.norm_eps), mixer(nn::to_mamba2_dims(c)) {}
    template <class Vis>
    void visit(const std::string& prefix, Vis&& v) {
      attn_norm.visit(prefix + "attn_norm", v);  // GGUF's name for the pre-mixer norm
      mixer.visit(prefix, v);
    }
    nn::RMSNorm<E::dim> attn_norm;
    nn::Mamba2Mixer<Cfg, W> mixer;
  };

  explicit Mamba2(const Cfg& cfg = {}, index_t max_batch = 128)
      : cfg_(checked(to_mamba2_config(cfg))),
        token_embd(cfg_.dim, cfg_.vocab),
        output_norm(cfg_.dim, cfg_.norm_eps),
        max_batch_(std::max<index_t>(1, max_batch)) {
    if (!cfg_.tied_output) output.emplace(cfg_.dim, cfg_.vocab);
    blk.reserve(std::size_t(cfg_.layers));
    state_.reserve(std::size_t(cfg_.layers));
    for (index_t l = 0; l < cfg_.layers; ++l) {
      blk.emplace_back(cfg_);
      state_.push_back(blk.back().mixer.make_state());
    }
    const index_t B = max_batch_;
    x_.resize(std::size_t(B * cfg_.dim));
    xb_.resize(std::size_t(B * cfg_.dim));
    work_.resize(std::size_t(blk[0].mixer.scratch_floats(B)));
    logits_.resize(std::size_t(cfg_.vocab));
  }
  Mamba2(Mamba2&&) noexcept = default;

  const Mamba2Config& config() const noexcept { return cfg_; }
  index_t vocab() const noexcept { return cfg_.vocab; }
  index_t max_seq() const noexcept { return cfg_.max_seq; }
  index_t max_batch() const noexcept { return max_batch_; }
  /// Tokens seen since the last reset (the position the next token takes).
  index_t position() const noexcept { return pos_; }
  /// The decoding state of layer l (conv and ssm), and its total size in bytes.
  const nn::Mamba2State& state(index_t l) const { return state_[std::size_t(l)]; }
  index_t state_bytes() const noexcept {
    index_t b = 0;
    for (const auto& s : state_) b += s.bytes();
    return b;
  }
  void reset() {
    for (auto& s : state_) s.clear();
    pos_ = 0;
  }

  /// Runs tokens at positions pos .. pos+n-1 and returns the logits after the last one. pos 0
  /// starts a new sequence; any other pos must continue the current one (pos == position()).
  /// With all_logits, the logits of every position are written there too ([n, vocab]).
  template <class Id>
  std::span<const float> forward(std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) {
    const index_t n = static_cast<index_t>(tokens.size());
    if (n == 0) throw value_error("tessel::models::Mamba2: forward needs at least one token");
    if (pos == 0)
      reset();
    else if (pos != pos_)
      throw value_error("tessel::models::Mamba2: position " + std::to_string(pos) +
                        " does not continue the sequence, which has " + std::to_string(pos_) +
                        " tokens (a state-space model cannot revisit a position; pass 0 to "
                        "start over)");
    for (index_t c = 0; c < n; c += max_batch_) {
      const index_t m = std::min(max_batch_, n - c);
      run_chunk(tokens.subspan(std::size_t(c), std::size_t(m)),
                all_logits ? all_logits + c * cfg_.vocab : nullptr, c + m == n);
    }
    pos_ += n;
    return logits_;
  }

  /// Every parameter as (GGUF name, tensor); `output` only when the head is not tied.
  template <class Vis>
  void visit(Vis&& v) {
    token_embd.visit("token_embd", v);
    for (index_t l = 0; l < cfg_.layers; ++l)
      blk[std::size_t(l)].visit("blk." + std::to_string(l) + ".", v);
    output_norm.visit("output_norm", v);
    if (output) output->visit("output", v);
  }

  const Head& head() const noexcept { return output ? *output : token_embd; }

  Head token_embd;  // [vocab, dim]: the embedding table and, tied, the head's weight
  std::vector<Block> blk;
  nn::RMSNorm<E::dim> output_norm;
  std::optional<Head> output;

 private:
  static Mamba2Config checked(Mamba2Config c) {
    if (c.dim <= 0 || c.layers <= 0 || c.vocab <= 0 || c.d_inner <= 0 || c.d_state <= 0 ||
        c.d_conv <= 0 || c.n_heads <= 0 || c.n_groups <= 0 || c.max_seq <= 0 ||
        c.d_inner % c.n_heads != 0 || c.n_heads % c.n_groups != 0)
      throw value_error("tessel::models::Mamba2: invalid config (dim " + std::to_string(c.dim) +
                        ", layers " + std::to_string(c.layers) + ", vocab " +
                        std::to_string(c.vocab) + ", d_inner " + std::to_string(c.d_inner) +
                        ", d_state " + std::to_string(c.d_state) + ", d_conv " +
                        std::to_string(c.d_conv) + ", n_heads " + std::to_string(c.n_heads) +
                        ", n_groups " + std::to_string(c.n_groups) + ")");
    return c;
  }

  template <class Id>
  void run_chunk(std::span<const Id> tokens, float* all_logits, bool last) {
    const index_t M = static_cast<index_t>(tokens.size()), D = cfg_.dim;
    float* x = x_.data();
    float* xb = xb_.data();
    detail::embed_rows(token_embd.weight, tokens, x, "tessel::models::Mamba2");
    for (index_t l = 0; l < cfg_.layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(x, M, xb);
      b.mixer.forward(xb, M, state_[std::size_t(l)], work_.data(), x, 1.0f);  // x += mixer
    }
    if (all_logits) {
      output_norm.forward(x, M, xb);
      head().forward(xb, M, all_logits);
      if (last)
        std::copy(all_logits + (M - 1) * cfg_.vocab, all_logits + M * cfg_.vocab, logits_.begin());
    } else if (last) {
      output_norm.forward(x + (M - 1) * D, 1, xb);
      head().forward(xb, 1, logits_.data());
    }
  }

  index_t max_batch_;
  index_t pos_ = 0;
  std::vector<nn::Mamba2State> state_;
  std::vector<float> x_, xb_, work_, logits_;
};

}  // namespace tessel::models
