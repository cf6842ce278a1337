#pragma once
// Mamba<Cfg, W, Backend>: the Mamba-1 language model (Gu & Dao 2023) from nn/ layer templates:
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
// or models::MambaConfig read from a file (io/load/load_mamba.hpp). GGUF names: token_embd,
// blk.N.attn_norm, blk.N.ssm_* (nn/mamba.hpp), output_norm, output.
//
//   const models::Mamba<Mamba130M, f16> m;                     // weights only, shareable
//   auto seq = m.new_state();                                  // one per sequence
//   std::span<const float> logits = m.forward(seq, prompt_ids, 0);  // pos 0: a new sequence
//   logits = m.forward(seq, std::span(&next, 1), pos);              // one step, no allocation
//
// There are no positions: a state holds one sequence's recurrent state (a few KB per layer,
// the same at token 10 as at token 10^6) and pos must be the count of tokens it has seen (0
// starts over). max_seq() is only what generate() stops at. Prefill runs the state's max_batch
// rows at a time through the whole network, so its matrix products are GEMMs; all scratch is
// allocated by new_state().

#include <algorithm>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tessel/models/decoder.hpp"
#include "tessel/nn/linear.hpp"
#include "tessel/nn/mamba.hpp"
#include "tessel/nn/norm.hpp"
#include "tessel/ops/embedding.hpp"

namespace tessel::models {

/// Run-time dimensions (from a file's metadata).
struct MambaConfig {
  index_t dim = 0, layers = 0, vocab = 0, d_inner = 0, d_state = 0, d_conv = 0, dt_rank = 0;
  float norm_eps = 1e-5f;
  index_t max_seq = index_t{1} << 30;  // no cache: only a stop for generate()
  bool tied_output = true;             // head = token_embd (false: a separate `output`)

  bool operator==(const MambaConfig&) const = default;
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

/// Throws unless every token is a row of a table of V rows.
template <class Id>
void check_tokens(std::span<const Id> tokens, index_t V, const char* who) {
  for (const Id id : tokens) {
    const auto t = static_cast<index_t>(id);
    if (t < 0 || t >= V)
      throw value_error(std::string(who) + ": token " + std::to_string(t) +
                        " is outside the vocabulary of " + std::to_string(V));
  }
}
/// x[i,:] = row tokens[i] of a [vocab, dim] table in format W (the tied embedding / head), by
/// Backend's op::embedding_rows.
template <class Backend, class Id, class T, class S>
void embed_rows(const Tensor<T, S>& table, std::span<const Id> tokens, float* x, const char* who) {
  check_tokens(tokens, table.extent(0), who);
  kernel<op::embedding_rows, Backend, T>::run(table.data(), table.extent(1), tokens.data(),
                                              static_cast<index_t>(tokens.size()), x, false);
}
/// The same for a table of run-time format (nn::any_weight).
template <class Backend, class Id, index_t R, index_t C>
void embed_rows(const nn::AnyMatrix<R, C>& table, std::span<const Id> tokens, float* x,
                const char* who) {
  check_tokens(tokens, table.rows(), who);
  if (!tokens.empty() && table.empty())
    throw value_error(std::string(who) + ": the embedding table is used before it was loaded");
  nn::with_weight_kind(table.kind(), [&]<class T>(type_tag<T>) {
    kernel<op::embedding_rows, Backend, T>::run(table.template data<T>(), table.cols(),
                                                tokens.data(), static_cast<index_t>(tokens.size()),
                                                x, false);
  });
}

/// The language model around a recurrent mixer, shared by Mamba and Mamba2:
///
///   x = token_embd[ids];  for each layer: x += mixer(rms_norm(x));  logits = head(rms_norm(x))
///
/// Traits names the parts: config (the run-time config struct), mixer, state, dim and vocab
/// (static extents or dyn), name (for errors), dims(config) (the mixer's dimensions) and
/// checked(config) (validation, throwing value_error). The model holds weights only; a State
/// holds one sequence. Every layer runs on Backend.
template <class Traits, nn::WeightFormat W, class Backend>
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

  /// One sequence: each layer's recurrent state (a few KB, the same at any position), the
  /// tokens seen, scratch for max_batch() rows and the last logits. All allocated here, so
  /// decoding allocates nothing. Move-only.
  class State {
   public:
    /// Where decoding stops (positions are not stored: this costs no memory).
    index_t max_seq() const noexcept { return max_seq_; }
    /// Rows per prefill chunk.
    index_t max_batch() const noexcept { return max_batch_; }
    /// Tokens seen since the last reset (the position the next token takes).
    index_t position() const noexcept { return pos_; }
    /// The decoding state of layer l (conv and ssm), and the total size in bytes.
    const typename Traits::state& state(index_t l) const { return layers_[std::size_t(l)]; }
    index_t state_bytes() const noexcept {
      index_t b = 0;
      for (const auto& s : layers_) b += s.bytes();
      return b;
    }
    void reset() {
      for (auto& s : layers_) s.clear();
      pos_ = 0;
    }

   private:
    friend class recurrent_lm;
    State(const recurrent_lm& m, index_t max_seq, index_t max_batch)
        : cfg_(m.cfg_), max_seq_(max_seq), max_batch_(max_batch) {
      layers_.reserve(std::size_t(cfg_.layers));
      for (const Block& b : m.blk) layers_.push_back(b.mixer.make_state());
      x_.resize(std::size_t(max_batch * cfg_.dim));
      xb_.resize(std::size_t(max_batch * cfg_.dim));
      work_.resize(std::size_t(m.blk[0].mixer.scratch_floats(max_batch)));
      logits_.resize(std::size_t(cfg_.vocab));
    }

    run_config cfg_;  // of the model that made it: forward refuses a state of another config
    index_t max_seq_, max_batch_, pos_ = 0;
    std::vector<typename Traits::state> layers_;
    std::vector<float> x_, xb_, work_, logits_;
  };

  explicit recurrent_lm(const run_config& cfg)
      : cfg_(Traits::checked(cfg)),
        token_embd(cfg_.dim, cfg_.vocab),
        output_norm(cfg_.dim, cfg_.norm_eps) {
    if (!cfg_.tied_output) output.emplace(cfg_.dim, cfg_.vocab);
    blk.reserve(std::size_t(cfg_.layers));
    for (index_t l = 0; l < cfg_.layers; ++l) blk.emplace_back(cfg_);
  }
  recurrent_lm(recurrent_lm&&) noexcept = default;

  const run_config& config() const noexcept { return cfg_; }
  index_t vocab() const noexcept { return cfg_.vocab; }
  /// The context a state gets by default: only a stop for generate(), as nothing grows with it.
  index_t max_seq() const noexcept { return cfg_.max_seq; }

  /// A fresh sequence (opt.max_seq: where it stops, default the model's; opt.max_batch: rows
  /// per prefill chunk, which sizes the scratch).
  State new_state(StateOptions opt = {}) const {
    const index_t seq = state_context(Traits::name, cfg_.max_seq, opt.max_seq);
    return State(*this, seq, state_batch(Traits::name, opt.max_batch, seq));
  }

  /// Runs tokens at positions pos .. pos+n-1 of the sequence s and returns the logits after
  /// the last one (they live in s). pos 0 starts the sequence over; any other pos must
  /// continue it (pos == s.position()). With all_logits, the logits of every position are
  /// written there too ([n, vocab]). const: states over one model may run on several threads.
  template <class Id>
  std::span<const float> forward(State& s, std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) const {
    if (!(s.cfg_ == cfg_))
      throw value_error(std::string(Traits::name) +
                        ": the state was made by a model of another config");
    if (pos != 0 && pos != s.pos_)
      throw value_error(std::string(Traits::name) + ": position " + std::to_string(pos) +
                        " does not continue the sequence, which has " + std::to_string(s.pos_) +
                        " tokens (a state-space model cannot revisit a position; pass 0 to "
                        "start over)");
    decode_chunks(Traits::name, tokens, pos, s.max_seq_, s.max_batch_, cfg_.vocab, all_logits,
                  [&](std::span<const Id> chunk, index_t p, float* chunk_logits, bool last) {
                    if (p == 0) s.reset();
                    run_chunk(s, chunk, chunk_logits, last);
                    s.pos_ = p + static_cast<index_t>(chunk.size());
                  });
    return s.logits_;
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
  void run_chunk(State& s, std::span<const Id> tokens, float* all_logits, bool last) const {
    const index_t M = static_cast<index_t>(tokens.size());
    const auto x = nn::row_view<Traits::dim>(s.x_.data(), M, cfg_.dim);
    const auto xb = nn::row_view<Traits::dim>(s.xb_.data(), M, cfg_.dim);
    const auto work = nn::scratch_view(s.work_.data(), index_t(s.work_.size()));
    const Backend be{};
    embed_rows<Backend>(token_embd.weight, tokens, x.data(), Traits::name);
    for (index_t l = 0; l < cfg_.layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(be, x, xb);
      b.mixer.forward(be, xb, s.layers_[std::size_t(l)], work, x, 1.0f);  // x += mixer
    }
    decoder_head(be, output_norm, head(), x, xb, cfg_.vocab, all_logits, last, s.logits_.data());
  }
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

/// Backend: where every kernel runs (cpu_scalar: the references).
template <class Cfg, nn::WeightFormat W = float, class Backend = default_backend>
class Mamba : public detail::recurrent_lm<detail::mamba1_traits<Cfg, W>, W, Backend> {
  using base = detail::recurrent_lm<detail::mamba1_traits<Cfg, W>, W, Backend>;

 public:
  using config_type = Cfg;
  using weight_format = W;
  using backend_type = Backend;
  explicit Mamba(const Cfg& cfg = {}) : base(to_mamba_config(cfg)) {}
};

static_assert(Decoder<Mamba<MambaConfig, float>>);

}  // namespace tessel::models
