#pragma once
// Hybrid<Cfg, W>: a Jamba-style language model declared at compile time from the same layer
// templates as Llama and Mamba: Mamba mixers and attention layers interleaved (layer l is
// attention when l % attn_period == attn_offset), each followed by a gated MLP, all with
// pre-RMSNorm residuals, a final RMSNorm and a head tied to the embedding:
//
//   x = token_embd[ids]
//   for each layer:  x += (attention or mixer)(rms_norm(x));  x += ffn(rms_norm(x))
//   logits = token_embd · rms_norm(x)
//
//   struct TinyJamba {
//     static constexpr int dim = 64, layers = 4, vocab = 96, max_seq = 256,
//                          d_inner = 128, d_state = 16, d_conv = 4, dt_rank = 4,  // Mamba
//                          heads = 4, kv_heads = 2,                              // attention
//                          hidden = 128, attn_period = 4, attn_offset = 2;       // MLP, layout
//   };
//   models::Hybrid<TinyJamba> m;  m.visit(...load...);  m.forward(ids, 0);
//
// Attention has no positional encoding (as in Jamba: the Mamba layers carry order) and keeps
// a KV cache of max_seq rows; the Mamba layers keep their constant-size state. Names are GGUF's
// (blk.N.attn_norm, blk.N.ssm_* or blk.N.attn_q/k/v/output, blk.N.ffn_norm, blk.N.ffn_*).

#include <span>
#include <string>
#include <vector>

#include "tessel/models/mamba.hpp"
#include "tessel/nn/attention.hpp"
#include "tessel/nn/kv_cache.hpp"
#include "tessel/nn/mlp.hpp"

namespace tessel::models {

template <class Cfg>
concept StaticHybridConfig = nn::StaticMambaConfig<Cfg> && requires {
  Cfg::layers;
  Cfg::vocab;
  Cfg::max_seq;
  Cfg::heads;
  Cfg::kv_heads;
  Cfg::hidden;
  Cfg::attn_period;
  Cfg::attn_offset;
};

template <StaticHybridConfig Cfg, nn::WeightFormat W = float>
class Hybrid {
  static_assert(Cfg::attn_period > 0 && Cfg::attn_offset >= 0 &&
                    Cfg::attn_offset < Cfg::attn_period,
                "tessel::models::Hybrid: attn_offset must lie in [0, attn_period)");
  static constexpr index_t D = Cfg::dim, Vocab = Cfg::vocab,
                           KvDim = Cfg::dim / Cfg::heads * Cfg::kv_heads;

 public:
  static constexpr bool is_attention(index_t l) noexcept {
    return l % Cfg::attn_period == Cfg::attn_offset;
  }
  static constexpr index_t attention_layers() noexcept {
    index_t n = 0;
    for (index_t l = 0; l < Cfg::layers; ++l) n += is_attention(l);
    return n;
  }

  struct Block {
    Block() : attn_norm(Cfg::dim, norm_eps()), ffn_norm(Cfg::dim, norm_eps()) {}
    nn::RMSNorm<D> attn_norm;
    nn::RMSNorm<D> ffn_norm;
    nn::GatedMLP<D, Cfg::hidden, W> ffn;
    index_t slot = 0;  // index into mixers or attns
  };

  explicit Hybrid(index_t max_batch = 64)
      : token_embd(D, Vocab),
        output_norm(D, norm_eps()),
        blk(std::size_t(Cfg::layers)),
        cache_(std::max<index_t>(attention_layers(), 1), Cfg::max_seq, KvDim),
        max_batch_(std::max<index_t>(1, std::min<index_t>(max_batch, Cfg::max_seq))) {
    for (index_t l = 0; l < Cfg::layers; ++l) {
      if (is_attention(l)) {
        blk[std::size_t(l)].slot = index_t(attns.size());
        attns.emplace_back();
      } else {
        blk[std::size_t(l)].slot = index_t(mixers.size());
        mixers.emplace_back(Cfg{});
        states_.push_back(mixers.back().make_state());
      }
    }
    const index_t B = max_batch_;
    index_t work = blk[0].ffn.scratch_floats(B);
    if (!mixers.empty()) work = std::max(work, mixers[0].scratch_floats(B));
    if (!attns.empty()) work = std::max(work, attns[0].scratch_floats(B, Cfg::max_seq));
    x_.resize(std::size_t(B * D));
    xb_.resize(std::size_t(B * D));
    work_.resize(std::size_t(work));
    logits_.resize(std::size_t(Vocab));
  }

  index_t vocab() const noexcept { return Vocab; }
  index_t max_seq() const noexcept { return Cfg::max_seq; }
  index_t position() const noexcept { return pos_; }

  /// As Mamba::forward: pos 0 starts a sequence, other positions continue it.
  template <class Id>
  std::span<const float> forward(std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) {
    const index_t n = static_cast<index_t>(tokens.size());
    if (n == 0) throw value_error("tessel::models::Hybrid: forward needs at least one token");
    if (pos != 0 && pos != pos_)
      throw value_error("tessel::models::Hybrid: position " + std::to_string(pos) +
                        " does not continue the sequence of " + std::to_string(pos_) + " tokens");
    if (pos + n > Cfg::max_seq)
      throw value_error("tessel::models::Hybrid: positions up to " + std::to_string(pos + n) +
                        " exceed the context of " + std::to_string(Cfg::max_seq) + " tokens");
    if (pos == 0) {
      for (auto& s : states_) s.clear();
      pos_ = 0;
    }
    for (index_t c = 0; c < n; c += max_batch_) {
      const index_t m = std::min(max_batch_, n - c);
      run_chunk(tokens.subspan(std::size_t(c), std::size_t(m)), pos_,
                all_logits ? all_logits + c * Vocab : nullptr, c + m == n);
      pos_ += m;
    }
    return logits_;
  }

  template <class Vis>
  void visit(Vis&& v) {
    token_embd.visit("token_embd", v);
    for (index_t l = 0; l < Cfg::layers; ++l) {
      Block& b = blk[std::size_t(l)];
      const std::string p = "blk." + std::to_string(l) + ".";
      b.attn_norm.visit(p + "attn_norm", v);
      if (is_attention(l))
        attns[std::size_t(b.slot)].visit(p, v);
      else
        mixers[std::size_t(b.slot)].visit(p, v);
      b.ffn_norm.visit(p + "ffn_norm", v);
      b.ffn.visit(p, v);
    }
    output_norm.visit("output_norm", v);
  }

  nn::Linear<D, Vocab, W> token_embd;  // the embedding table and the tied head
  nn::RMSNorm<D> output_norm;
  std::vector<Block> blk;
  std::vector<nn::MambaMixer<Cfg, W>> mixers;
  std::vector<nn::Attention<D, Cfg::heads, Cfg::kv_heads, W>> attns;

 private:
  static constexpr float norm_eps() noexcept {
    if constexpr (requires { Cfg::norm_eps; })
      return Cfg::norm_eps;
    else
      return 1e-5f;
  }

  template <class Id>
  void run_chunk(std::span<const Id> tokens, index_t pos, float* all_logits, bool last) {
    const index_t M = static_cast<index_t>(tokens.size());
    float* x = x_.data();
    float* xb = xb_.data();
    float* work = work_.data();
    detail::embed_rows(token_embd.weight, tokens, x, "tessel::models::Hybrid");
    for (index_t l = 0; l < Cfg::layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(x, M, xb);
      if (is_attention(l))
        attns[std::size_t(b.slot)].forward(xb, M, pos, cache_.keys(b.slot), cache_.values(b.slot),
                                           Cfg::max_seq, work, x, 1.0f);
      else
        mixers[std::size_t(b.slot)].forward(xb, M, states_[std::size_t(b.slot)], work, x, 1.0f);
      b.ffn_norm.forward(x, M, xb);
      b.ffn.forward(xb, M, x, work, 1.0f);
    }
    if (all_logits) {
      output_norm.forward(x, M, xb);
      token_embd.forward(xb, M, all_logits);
      if (last) std::copy(all_logits + (M - 1) * Vocab, all_logits + M * Vocab, logits_.begin());
    } else if (last) {
      output_norm.forward(x + (M - 1) * D, 1, xb);
      token_embd.forward(xb, 1, logits_.data());
    }
  }

  nn::KVCache<Cfg::max_seq, KvDim> cache_;
  std::vector<nn::MambaState> states_;
  index_t max_batch_;
  index_t pos_ = 0;
  std::vector<float> x_, xb_, work_, logits_;
};

}  // namespace tessel::models
