#pragma once
// Mamba<Cfg, W>: the Mamba-1 language model (Gu & Dao 2023) from nn/ layer templates:
//
//   x = token_embd[ids];  for each layer: x += mixer(rms_norm(x));  logits = head(rms_norm(x))
//
// with the head tied to the embedding (GGUF files may carry their own `output`). Cfg is a
// struct of compile-time constants (static shapes)
//
//   struct Mamba130M {
//     static constexpr int dim = 768, layers = 24, vocab = 50280, d_inner = 1536, d_state = 16,
//                          d_conv = 4, dt_rank = 48;
//   };  // optional: norm_eps (default 1e-5)
//
// or models::MambaConfig read from a file (io/load_mamba.hpp). GGUF names: token_embd,
// blk.N.attn_norm, blk.N.ssm_* (nn/mamba.hpp), output_norm, output.
//
//   std::span<const float> logits = m.forward(prompt_ids, 0);  // pos 0: a new sequence
//   logits = m.forward(std::span(&next, 1), pos);              // one step, no allocation
//
// There are no positions: the model carries one sequence's state (a few KB per layer, the same
// at token 10 as at token 10^6) and pos must be the count of tokens it has seen (0 starts
// over). max_seq() is only what generate() stops at. Prefill runs max_batch rows at a time
// through the whole network, so its matrix products are GEMMs; all scratch is allocated by
// the constructor.

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tessel/nn/linear.hpp"
#include "tessel/nn/mamba.hpp"
#include "tessel/nn/norm.hpp"

namespace tessel::models {

/// Run-time dimensions (from a file's metadata).
struct MambaConfig {
  index_t dim = 0, layers = 0, vocab = 0, d_inner = 0, d_state = 0, d_conv = 0, dt_rank = 0;
  float norm_eps = 1e-5f;
  index_t max_seq = index_t{1} << 30;  // no cache: only a stop for generate()
  bool tied_output = true;             // head = token_embd (false: a separate `output`)
};

template <class Cfg>
MambaConfig to_mamba_config(const Cfg& c) {
  if constexpr (std::is_same_v<Cfg, MambaConfig>) {
    return c;
  } else {
    MambaConfig r;
    r.dim = c.dim, r.layers = c.layers, r.vocab = c.vocab, r.d_inner = c.d_inner;
    r.d_state = c.d_state, r.d_conv = c.d_conv, r.dt_rank = c.dt_rank;
    if constexpr (requires { c.norm_eps; }) r.norm_eps = c.norm_eps;
    if constexpr (requires { c.max_seq; }) r.max_seq = c.max_seq;
    if constexpr (requires { c.tied_output; }) r.tied_output = c.tied_output;
    return r;
  }
}

namespace detail {
template <class Cfg>
struct vocab_extent {
  static constexpr index_t value = dyn;
};
template <nn::StaticMambaConfig Cfg>
requires std::is_pointer_v<decltype(&Cfg::vocab)>
struct vocab_extent<Cfg> {
  static constexpr index_t value = Cfg::vocab;
};

/// x[i,:] = row tokens[i] of a [vocab, dim] table in format W (the tied embedding / head).
template <class Id, class T, class S>
void embed_rows(const Tensor<T, S>& table, std::span<const Id> tokens, float* x, const char* who) {
  const index_t V = table.extent(0), D = table.extent(1), units = D / block_elems_v<T>;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto t = static_cast<index_t>(tokens[i]);
    if (t < 0 || t >= V)
      throw value_error(std::string(who) + ": token " + std::to_string(t) +
                        " is outside the vocabulary of " + std::to_string(V));
    nn::detail::weight_row_f32(table.data() + t * units, x + index_t(i) * D, D);
  }
}
/// The same for a table of run-time format (nn::any_weight).
template <class Id, index_t R, index_t C>
void embed_rows(const nn::AnyMatrix<R, C>& table, std::span<const Id> tokens, float* x,
                const char* who) {
  const index_t V = table.rows(), D = table.cols();
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto t = static_cast<index_t>(tokens[i]);
    if (t < 0 || t >= V)
      throw value_error(std::string(who) + ": token " + std::to_string(t) +
                        " is outside the vocabulary of " + std::to_string(V));
    table.row_f32(t, x + index_t(i) * D);
  }
}

/// The language model around a recurrent mixer, shared by Mamba and Mamba2:
///
///   x = token_embd[ids];  for each layer: x += mixer(rms_norm(x));  logits = head(rms_norm(x))
///
/// Traits names the parts: config (the run-time config struct), mixer, state, dim and vocab
/// (static extents or dyn), name (for errors), dims(config) (the mixer's dimensions) and
/// checked(config) (validation, throwing value_error).
template <class Traits, nn::WeightFormat W>
class recurrent_lm {
 public:
  using run_config = typename Traits::config;
  using Head = nn::Linear<Traits::dim, Traits::vocab, W>;

  struct Block {
    explicit Block(const run_config& c) : attn_norm(c.dim, c.norm_eps), mixer(Traits::dims(c)) {}
    template <class Vis>
    void visit(const std::string& prefix, Vis&& v) {
      attn_norm.visit(prefix + "attn_norm", v);  // GGUF's name for the pre-mixer norm
      mixer.visit(prefix, v);
    }
    nn::RMSNorm<Traits::dim> attn_norm;
    typename Traits::mixer mixer;
  };

  recurrent_lm(const run_config& cfg, index_t max_batch)
      : cfg_(Traits::checked(cfg)),
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
  recurrent_lm(recurrent_lm&&) noexcept = default;

  const run_config& config() const noexcept { return cfg_; }
  index_t vocab() const noexcept { return cfg_.vocab; }
  index_t max_seq() const noexcept { return cfg_.max_seq; }
  index_t max_batch() const noexcept { return max_batch_; }
  /// Tokens seen since the last reset (the position the next token takes).
  index_t position() const noexcept { return pos_; }
  /// The decoding state of layer l (conv and ssm), and its total size in bytes.
  const typename Traits::state& state(index_t l) const { return state_[std::size_t(l)]; }
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
    if (n == 0) throw value_error(std::string(Traits::name) + ": forward needs at least one token");
    if (pos == 0)
      reset();
    else if (pos != pos_)
      throw value_error(std::string(Traits::name) + ": position " + std::to_string(pos) +
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

 private:
  run_config cfg_;  // first: the members below are built from it

 public:
  Head token_embd;  // [vocab, dim]: the embedding table and, tied, the head's weight
  std::vector<Block> blk;
  nn::RMSNorm<Traits::dim> output_norm;
  std::optional<Head> output;

 private:
  template <class Id>
  void run_chunk(std::span<const Id> tokens, float* all_logits, bool last) {
    const index_t M = static_cast<index_t>(tokens.size()), D = cfg_.dim;
    float* x = x_.data();
    float* xb = xb_.data();
    embed_rows(token_embd.weight, tokens, x, Traits::name);
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
  std::vector<typename Traits::state> state_;
  std::vector<float> x_, xb_, work_, logits_;
};

template <class Cfg, nn::WeightFormat W>
struct mamba1_traits {
  using config = MambaConfig;
  using mixer = nn::MambaMixer<Cfg, W>;
  using state = nn::MambaState;
  static constexpr index_t dim = nn::mamba_extents<Cfg>::dim;
  static constexpr index_t vocab = vocab_extent<Cfg>::value;
  static constexpr const char* name = "tessel::models::Mamba";
  static auto dims(const MambaConfig& c) { return nn::to_mamba_dims(c); }
  static MambaConfig checked(MambaConfig c) {
    if (c.dim <= 0 || c.layers <= 0 || c.vocab <= 0 || c.d_inner <= 0 || c.d_state <= 0 ||
        c.d_conv <= 0 || c.dt_rank <= 0 || c.max_seq <= 0)
      throw value_error("tessel::models::Mamba: invalid config (dim " + std::to_string(c.dim) +
                        ", layers " + std::to_string(c.layers) + ", vocab " +
                        std::to_string(c.vocab) + ", d_inner " + std::to_string(c.d_inner) +
                        ", d_state " + std::to_string(c.d_state) + ", d_conv " +
                        std::to_string(c.d_conv) + ", dt_rank " + std::to_string(c.dt_rank) + ")");
    return c;
  }
};
}  // namespace detail

template <class Cfg, nn::WeightFormat W = float>
class Mamba : public detail::recurrent_lm<detail::mamba1_traits<Cfg, W>, W> {
  using base = detail::recurrent_lm<detail::mamba1_traits<Cfg, W>, W>;

 public:
  using config_type = Cfg;
  using weight_format = W;
  explicit Mamba(const Cfg& cfg = {}, index_t max_batch = 128)
      : base(to_mamba_config(cfg), max_batch) {}
};

}  // namespace tessel::models
