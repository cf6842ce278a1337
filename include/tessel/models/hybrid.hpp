#pragma once
// Hybrid<Cfg, W, Backend>: a Jamba-style language model declared at compile time from the same
// layer templates as Llama and Mamba: Mamba mixers and attention layers interleaved (layer l is
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
//   models::Hybrid<TinyJamba> m;  m.visit(...load...);
//   auto seq = m.new_state();  m.forward(seq, ids, 0);   // as models::Mamba
//
// Attention has no positional encoding (as in Jamba: the Mamba layers carry order); a state
// keeps its KV cache of max_seq rows (the state's, at most Cfg::max_seq) and the Mamba layers'
// constant-size states. Names are GGUF's
// (blk.N.attn_norm, blk.N.ssm_* or blk.N.attn_q/k/v/output, blk.N.ffn_norm, blk.N.ffn_*).
//
// Backend: whose kernels every layer runs (default_backend; cpu_scalar: the references).

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "tessel/models/decoder.hpp"
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

template <StaticHybridConfig Cfg, nn::WeightFormat W = float, class Backend = default_backend>
class Hybrid {
  static_assert(Cfg::attn_period > 0 && Cfg::attn_offset >= 0 &&
                    Cfg::attn_offset < Cfg::attn_period,
                "tessel::models::Hybrid: attn_offset must lie in [0, attn_period)");
  static constexpr index_t D = Cfg::dim, Vocab = Cfg::vocab,
                           KvDim = Cfg::dim / Cfg::heads * Cfg::kv_heads;

 public:
  using backend_type = Backend;

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

  /// One sequence: the attention layers' KV cache (allocated for max_seq() rows), the Mamba
  /// layers' states, the tokens seen, scratch for max_batch() rows and the last logits.
  class State {
   public:
    index_t max_seq() const noexcept { return max_seq_; }
    index_t max_batch() const noexcept { return max_batch_; }
    index_t position() const noexcept { return pos_; }
    /// The KV cache's and the Mamba states' bytes.
    index_t state_bytes() const noexcept {
      index_t b = index_t(cache_.bytes());
      for (const auto& s : mamba_) b += s.bytes();
      return b;
    }
    void reset() {
      for (auto& s : mamba_) s.clear();
      pos_ = 0;  // the KV cache's rows past pos are never read
    }

   private:
    friend class Hybrid;
    State(const Hybrid& m, index_t max_seq, index_t max_batch)
        : cache_(std::max<index_t>(attention_layers(), 1), max_seq, KvDim),
          max_seq_(max_seq),
          max_batch_(max_batch) {
      for (const auto& mixer : m.mixers) mamba_.push_back(mixer.make_state());
      index_t work = m.blk[0].ffn.scratch_floats(max_batch);
      if (!m.mixers.empty()) work = std::max(work, m.mixers[0].scratch_floats(max_batch));
      if (!m.attns.empty()) work = std::max(work, m.attns[0].scratch_floats(max_batch, max_seq));
      x_.resize(std::size_t(max_batch * D));
      xb_.resize(std::size_t(max_batch * D));
      work_.resize(std::size_t(work));
      logits_.resize(std::size_t(Vocab));
    }

    nn::KVCache<dyn, KvDim> cache_;  // [attention layers, max_seq, KvDim]
    index_t max_seq_, max_batch_, pos_ = 0;
    std::vector<nn::MambaState> mamba_;
    std::vector<float> x_, xb_, work_, logits_;
  };

  Hybrid() : token_embd(D, Vocab), output_norm(D, norm_eps()), blk(std::size_t(Cfg::layers)) {
    for (index_t l = 0; l < Cfg::layers; ++l) {
      if (is_attention(l)) {
        blk[std::size_t(l)].slot = index_t(attns.size());
        attns.emplace_back();
      } else {
        blk[std::size_t(l)].slot = index_t(mixers.size());
        mixers.emplace_back(Cfg{});
      }
    }
  }

  index_t vocab() const noexcept { return Vocab; }
  index_t max_seq() const noexcept { return Cfg::max_seq; }

  /// A fresh sequence (opt.max_seq: the KV cache's rows, default Cfg::max_seq; opt.max_batch:
  /// rows per prefill chunk).
  State new_state(StateOptions opt = {}) const {
    const index_t seq = state_context("tessel::models::Hybrid", Cfg::max_seq, opt.max_seq);
    return State(*this, seq, state_batch("tessel::models::Hybrid", opt.max_batch, seq));
  }

  /// As Mamba::forward: pos 0 starts the sequence over, other positions continue it.
  template <class Id>
  std::span<const float> forward(State& s, std::span<const Id> tokens, index_t pos,
                                 float* all_logits = nullptr) const {
    if (pos != 0 && pos != s.pos_)
      throw value_error("tessel::models::Hybrid: position " + std::to_string(pos) +
                        " does not continue the sequence of " + std::to_string(s.pos_) + " tokens");
    decode_chunks("tessel::models::Hybrid", tokens, pos, s.max_seq_, s.max_batch_, Vocab,
                  all_logits,
                  [&](std::span<const Id> chunk, index_t p, float* chunk_logits, bool last) {
                    if (p == 0) s.reset();
                    run_chunk(s, chunk, p, chunk_logits, last);
                    s.pos_ = p + static_cast<index_t>(chunk.size());
                  });
    return s.logits_;
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
  void run_chunk(State& s, std::span<const Id> tokens, index_t pos, float* all_logits,
                 bool last) const {
    const index_t M = static_cast<index_t>(tokens.size());
    const auto x = nn::row_view<D>(s.x_.data(), M, D);
    const auto xb = nn::row_view<D>(s.xb_.data(), M, D);
    const auto work = nn::scratch_view(s.work_.data(), index_t(s.work_.size()));
    const Backend be{};
    detail::embed_rows<Backend>(token_embd.weight, tokens, x.data(), "tessel::models::Hybrid");
    for (index_t l = 0; l < Cfg::layers; ++l) {
      const Block& b = blk[std::size_t(l)];
      b.attn_norm.forward(be, x, xb);
      if (is_attention(l))
        attns[std::size_t(b.slot)].forward(be, xb, pos, s.cache_.keys_view(b.slot),
                                           s.cache_.values_view(b.slot), work, x, 1.0f);
      else
        mixers[std::size_t(b.slot)].forward(be, xb, s.mamba_[std::size_t(b.slot)], work, x, 1.0f);
      b.ffn_norm.forward(be, x, xb);
      b.ffn.forward(be, xb, x, work, 1.0f);
    }
    decoder_head(be, output_norm, token_embd, x, xb, Vocab, all_logits, last, s.logits_.data());
  }
};

}  // namespace tessel::models
