#pragma once
// Mamba2<Cfg, W, Backend>: the Mamba-2 language model (Dao & Gu 2024) from nn/ layer templates:
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
// or models::Mamba2Config read from a file (io/load/load_mamba2.hpp). GGUF names: token_embd,
// blk.N.attn_norm, blk.N.ssm_* (nn/mamba2.hpp), output_norm, output.
//
//   const models::Mamba2<Mamba2_130M, f16> m;                       // weights only, shareable
//   auto seq = m.new_state();                                       // one per sequence
//   std::span<const float> logits = m.forward(seq, prompt_ids, 0);  // pos 0: a new sequence
//   logits = m.forward(seq, std::span(&next, 1), pos);              // one step, no allocation
//
// As models::Mamba: no positions, pos must be the count of tokens the state has seen (0 starts
// over), the state is the same size at any position, prefill runs the state's max_batch rows
// at a time (GEMMs), and all scratch is allocated by new_state().

#include <string>

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
  bool operator==(const Mamba2Config&) const = default;
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

template <class Cfg, nn::WeightFormat W>
struct mamba2_traits {
  using config = Mamba2Config;
  using mixer = nn::Mamba2Mixer<Cfg, W>;
  using state = nn::Mamba2State;
  static constexpr index_t dim = nn::mamba2_extents<Cfg>::dim;
  static constexpr index_t vocab = vocab2_extent<Cfg>::value;
  static constexpr const char* name = "tessel::models::Mamba2";
  static auto dims(const Mamba2Config& c) { return nn::to_mamba2_dims(c); }
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
};
}  // namespace detail

/// The same language model as Mamba (detail::recurrent_lm) around Mamba-2 mixers.
/// Backend: where every kernel runs (cpu_scalar: the references).
template <class Cfg, nn::WeightFormat W = float, class Backend = default_backend>
class Mamba2 : public detail::recurrent_lm<detail::mamba2_traits<Cfg, W>, W, Backend> {
  using base = detail::recurrent_lm<detail::mamba2_traits<Cfg, W>, W, Backend>;

 public:
  using config_type = Cfg;
  using weight_format = W;
  using backend_type = Backend;
  explicit Mamba2(const Cfg& cfg = {}) : base(to_mamba2_config(cfg)) {}
};

static_assert(Decoder<Mamba2<Mamba2Config, float>>);

}  // namespace tessel::models
