#pragma once
// Attention<Dim, Heads, KvHeads, W, Bias>: multi-head self-attention with grouped K/V heads
// (MHA: KvHeads == Heads, GQA: a divisor, MQA: 1), optional biases on the four projections
// (GPT-2, BERT). GGUF names: attn_q [Dim, Dim], attn_k / attn_v [KvDim, Dim], attn_output
// [Dim, Dim], with head_dim = Dim / Heads and KvDim = KvHeads · head_dim.
//
// Every forward takes as its first argument the backend whose kernels it runs (ops/attention.hpp:
// the decode rows and the prefill); the overloads without one run on default_backend.
//
// Causal with a KV cache: forward(b, x, M, pos, ..., rope, ...) takes M new rows at positions
// pos .. pos+M-1 (a prompt: M > 1, a decode step: M == 1), writes their keys and values into
// the cache rows at those positions and attends row i to cache rows 0 .. pos+i; RoPE rotates
// queries and keys (the overload without a Rope is for models with learned positions).
// max_seq is the cache's rows (KVCache::capacity(): what is allocated, not the context it may
// grow to); it bounds the positions and strides the scores, so scratch, which holds
// scratch_floats(M, max_seq) floats, follows the cache as it grows.
//
// Bidirectional (encoders): forward_bidirectional(x, B, T, mask, ...) runs B sequences of T
// rows; every row attends to the rows of its sequence whose mask is nonzero (padding is
// excluded exactly, as an additive −inf mask does). scratch: bidirectional_scratch_floats(B, T).

#include <limits>
#include <vector>

#include "linear.hpp"
#include "rope.hpp"
#include "tessel/ops/attention.hpp"

namespace tessel::nn {

template <index_t Dim, index_t Heads, index_t KvHeads, WeightFormat W = float, bool Bias = false>
class Attention {
  static constexpr bool all_static = Dim != dyn && Heads != dyn && KvHeads != dyn;
  static_assert(!all_static || (Dim % Heads == 0 && Heads % KvHeads == 0),
                "tessel::nn::Attention: Dim must be a multiple of Heads, Heads of KvHeads");

 public:
  static constexpr index_t HeadDim = all_static ? Dim / Heads : dyn;
  static constexpr index_t KvDim = all_static ? HeadDim * KvHeads : dyn;

  Attention() requires all_static : heads_(Heads), kv_heads_(KvHeads) {}
  Attention(index_t dim, index_t heads, index_t kv_heads)
      : attn_q(dim, dim),
        attn_k(dim, checked_kv_dim(dim, heads, kv_heads)),
        attn_v(dim, dim / heads * kv_heads),
        attn_output(dim, dim),
        heads_(heads),
        kv_heads_(kv_heads) {
    if ((Heads != dyn && heads != Heads) || (KvHeads != dyn && kv_heads != KvHeads))
      throw shape_error("tessel::nn::Attention: head counts differ from the static ones");
  }

  index_t dim() const noexcept { return attn_q.in(); }
  index_t heads() const noexcept { return Heads != dyn ? Heads : heads_; }
  index_t kv_heads() const noexcept { return KvHeads != dyn ? KvHeads : kv_heads_; }
  index_t head_dim() const noexcept { return HeadDim != dyn ? HeadDim : dim() / heads(); }
  index_t kv_dim() const noexcept { return KvDim != dyn ? KvDim : head_dim() * kv_heads(); }
  index_t scratch_floats(index_t M, index_t max_seq) const noexcept {
    return 2 * M * dim() + std::max(heads(), M) * max_seq;
  }

  /// y[M, Dim] = attention(x[M, Dim]) + beta · y, with Backend's kernels. k_cache / v_cache:
  /// this layer's rows [max_seq, kv_dim] (see KVCache: its capacity()); pos + M must not
  /// exceed max_seq.
  template <class Backend>
  void forward(Backend b, const float* x, index_t M, index_t pos, float* k_cache, float* v_cache,
               index_t max_seq, const Rope& rope, float* scratch, float* y,
               float beta = 0.0f) const {
    forward_cached(b, x, M, pos, k_cache, v_cache, max_seq, &rope, scratch, y, beta);
  }
  /// The same without RoPE (positions are already in x).
  template <class Backend>
  void forward(Backend b, const float* x, index_t M, index_t pos, float* k_cache, float* v_cache,
               index_t max_seq, float* scratch, float* y, float beta = 0.0f) const {
    forward_cached(b, x, M, pos, k_cache, v_cache, max_seq, nullptr, scratch, y, beta);
  }
  void forward(const float* x, index_t M, index_t pos, float* k_cache, float* v_cache,
               index_t max_seq, const Rope& rope, float* scratch, float* y,
               float beta = 0.0f) const {
    forward(default_backend{}, x, M, pos, k_cache, v_cache, max_seq, rope, scratch, y, beta);
  }
  void forward(const float* x, index_t M, index_t pos, float* k_cache, float* v_cache,
               index_t max_seq, float* scratch, float* y, float beta = 0.0f) const {
    forward(default_backend{}, x, M, pos, k_cache, v_cache, max_seq, scratch, y, beta);
  }

  index_t bidirectional_scratch_floats(index_t B, index_t T) const noexcept {
    return B * T * (2 * dim() + 2 * kv_dim()) + heads() * T;
  }

  /// y[B·T, Dim] = attention(x[B·T, Dim]) + beta · y over B sequences of T rows, row r of
  /// sequence b attending to the rows t of b with mask[b·T + t] != 0 (mask null: all rows).
  /// A sequence without any unmasked row is a value_error.
  template <class Backend, class Mask>
  void forward_bidirectional(Backend be, const float* x, index_t B, index_t T, const Mask* mask,
                             float* scratch, float* y, float beta = 0.0f) const {
    const index_t D = dim(), H = heads(), kvd = kv_dim(), N = B * T;
    float* q = scratch;
    float* k = q + N * D;
    float* v = k + N * kvd;
    float* att = v + N * kvd;
    float* scores = att + N * D;
    attn_q.forward(be, x, N, q);
    attn_k.forward(be, x, N, k);
    attn_v.forward(be, x, N, v);
    for (index_t b = 0; b < B; ++b) {
      // The unmasked keys and values of the sequence, moved to its first rows (in place: row
      // t only ever moves down), so attention runs over contiguous rows.
      float* kb = k + b * T * kvd;
      float* vb = v + b * T * kvd;
      index_t n = 0;
      for (index_t t = 0; t < T; ++t) {
        if (mask && mask[b * T + t] == Mask{}) continue;
        if (n != t) {
          std::copy(kb + t * kvd, kb + (t + 1) * kvd, kb + n * kvd);
          std::copy(vb + t * kvd, vb + (t + 1) * kvd, vb + n * kvd);
        }
        ++n;
      }
      if (n == 0)
        throw value_error("tessel::nn::Attention: sequence " + std::to_string(b) +
                          " of the batch has no unmasked token");
      const index_t work = H * T * n * head_dim();
      parallel_for(0, H, work < (1 << 18) ? H : 1, [&](index_t lo, index_t hi) {
        for (index_t h = lo; h < hi; ++h)
          attend_head(be, h, q + b * T * D, T, 0, n, kb, vb, scores + h * T, att + b * T * D);
      });
    }
    attn_output.forward(be, att, N, y, beta);
  }
  template <class Mask>
  void forward_bidirectional(const float* x, index_t B, index_t T, const Mask* mask, float* scratch,
                             float* y, float beta = 0.0f) const {
    forward_bidirectional(default_backend{}, x, B, T, mask, scratch, y, beta);
  }

  template <class V>
  void visit(const std::string& prefix, V&& v) {
    attn_q.visit(prefix + "attn_q", v);
    attn_k.visit(prefix + "attn_k", v);
    attn_v.visit(prefix + "attn_v", v);
    attn_output.visit(prefix + "attn_output", v);
  }

  Linear<Dim, Dim, W, Bias> attn_q;
  Linear<Dim, KvDim, W, Bias> attn_k;
  Linear<Dim, KvDim, W, Bias> attn_v;
  Linear<Dim, Dim, W, Bias> attn_output;

 private:
  template <class Backend>
  void forward_cached(Backend b, const float* x, index_t M, index_t pos, float* k_cache,
                      float* v_cache, index_t max_seq, const Rope* rope, float* scratch, float* y,
                      float beta) const {
    if (pos < 0 || M < 0 || pos + M > max_seq)
      throw value_error("tessel::nn::Attention: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + M) + " do not fit a cache of " +
                        std::to_string(max_seq));
    const index_t D = dim(), H = heads(), kvd = kv_dim(), hd = head_dim();
    float* q = scratch;
    float* att = q + M * D;
    float* scores = att + M * D;
    attn_q.forward(b, x, M, q);
    // Keys and values go straight into their cache rows.
    attn_k.forward_strided(b, x, D, M, k_cache + pos * kvd, kvd);
    attn_v.forward_strided(b, x, D, M, v_cache + pos * kvd, kvd);
    if (rope)
      parallel_for(0, M, 32, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) {
          rope->apply(b, q + i * D, H, pos + i);
          rope->apply(b, k_cache + (pos + i) * kvd, kv_heads(), pos + i);
        }
      });
    if (M >= gemm_rows) {
      // Prefill: heads across threads, each as matrix products (scores, softmax, · V).
      kernel<op::attention_prefill, Backend>::run(q, M, pos, k_cache, v_cache, att, H, kv_heads(),
                                                  hd);
      attn_output.forward(b, att, M, y, beta);
      return;
    }
    // Threads take whole heads; a small problem stays on the calling thread.
    const index_t work = H * M * (pos + M) * hd;
    parallel_for(0, H, work < (1 << 18) ? H : 1, [&](index_t lo, index_t hi) {
      for (index_t h = lo; h < hi; ++h)
        attend_head(b, h, q, M, pos, -1, k_cache, v_cache, scores + h * max_seq, att);
    });
    attn_output.forward(b, att, M, y, beta);
  }

  static index_t checked_kv_dim(index_t dim, index_t heads, index_t kv_heads) {
    if (heads <= 0 || kv_heads <= 0 || dim % heads != 0 || heads % kv_heads != 0)
      throw value_error("tessel::nn::Attention: dim " + std::to_string(dim) + ", heads " +
                        std::to_string(heads) + ", kv_heads " + std::to_string(kv_heads) +
                        ": dim must be a multiple of heads, heads of kv_heads");
    return dim / heads * kv_heads;
  }

  /// Rows at which causal attention runs as SGEMMs rather than row by row.
  static constexpr index_t gemm_rows = 16;

  // One head over rows 0..M-1: row i sees key rows 0..pos+i (causal: n < 0) or 0..n-1.
  template <class Backend>
  void attend_head(Backend, index_t h, const float* q, index_t M, index_t pos, index_t n,
                   const float* kc, const float* vc, float* s, float* att) const {
    const index_t D = dim(), kvd = kv_dim(), hd = head_dim();
    const index_t off = (h / (heads() / kv_heads())) * hd;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (index_t i = 0; i < M; ++i)
      kernel<op::attention_row<HeadDim>, Backend>::run(q + i * D + h * hd, kc + off, vc + off, kvd,
                                                       n < 0 ? pos + i + 1 : n, hd, scale, s,
                                                       att + i * D + h * hd);
  }

  index_t heads_, kv_heads_;
};

}  // namespace tessel::nn
