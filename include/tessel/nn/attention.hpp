#pragma once
// Attention<Dim, Heads, KvHeads, W, Bias>: multi-head self-attention with grouped K/V heads
// (MHA: KvHeads == Heads, GQA: a divisor, MQA: 1), optional biases on the four projections
// (GPT-2, BERT). GGUF names: attn_q [Dim, Dim], attn_k / attn_v [KvDim, Dim], attn_output
// [Dim, Dim], with head_dim = Dim / Heads and KvDim = KvHeads · head_dim.
//
// Every forward takes as its first argument the backend whose kernels it runs (ops/attention.hpp:
// the decode rows and the prefill).
//
// Causal with a KV cache: forward(b, x, pos, k_cache, v_cache, rope, scratch, y) takes the
// M = x.extent(0) new rows of x [M, Dim] at positions pos .. pos+M-1 (a prompt: M > 1, a
// decode step: M == 1), writes their keys and values into the cache rows at those positions
// and attends row i to cache rows 0 .. pos+i; RoPE rotates queries and keys (the overload
// without a Rope is for models with learned positions). k_cache and v_cache are this layer's
// rows [max_seq, KvDim] (KVCache::keys_view / values_view: max_seq is the rows allocated, not
// the context the cache may grow to); max_seq bounds the positions and strides the scores, so
// scratch, which holds scratch_floats(M, max_seq) floats, follows the cache as it grows.
//
// Bidirectional (encoders): forward_bidirectional(b, x, B, mask, scratch, y) runs B sequences of
// T = x.extent(0) / B rows; every row attends to the rows of its sequence whose mask is nonzero
// (padding is excluded exactly, as an additive −inf mask does). scratch:
// bidirectional_scratch_floats(B, T).

#include <limits>
#include <span>
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
  /// this layer's cache rows [max_seq, KvDim] (see KVCache); pos + M must not exceed max_seq.
  template <class Backend>
  void forward(Backend b, RowView<Dim, const float> x, index_t pos, RowView<KvDim> k_cache,
               RowView<KvDim> v_cache, const Rope& rope, ScratchView scratch, RowView<Dim> y,
               float beta = 0.0f) const {
    forward_cached(b, x, pos, k_cache, v_cache, &rope, scratch, y, beta);
  }
  /// The same without RoPE (positions are already in x).
  template <class Backend>
  void forward(Backend b, RowView<Dim, const float> x, index_t pos, RowView<KvDim> k_cache,
               RowView<KvDim> v_cache, ScratchView scratch, RowView<Dim> y,
               float beta = 0.0f) const {
    forward_cached(b, x, pos, k_cache, v_cache, nullptr, scratch, y, beta);
  }

  index_t bidirectional_scratch_floats(index_t B, index_t T) const noexcept {
    return B * T * (2 * dim() + 2 * kv_dim()) + heads() * T;
  }

  /// y[B·T, Dim] = attention(x[B·T, Dim]) + beta · y over B sequences of T rows, row r of
  /// sequence b attending to the rows t of b with mask[b·T + t] != 0 (mask empty: all rows).
  /// A sequence without any unmasked row is a value_error. y may be x.
  template <class Backend, class Mask>
  void forward_bidirectional(Backend be, RowView<Dim, const float> xv, index_t B,
                             std::span<const Mask> mask, ScratchView scratch, RowView<Dim> yv,
                             float beta = 0.0f) const {
    const index_t D = dim(), H = heads(), kvd = kv_dim(), N = xv.extent(0);
    if (B <= 0 || N % B != 0 || (!mask.empty() && index_t(mask.size()) != N))
      throw shape_error("tessel::nn::Attention: " + std::to_string(N) + " rows (mask of " +
                        std::to_string(mask.size()) + ") do not form " + std::to_string(B) +
                        " sequences");
    const index_t T = N / B;
    detail::check_rows("tessel::nn::Attention", "input", xv, D);
    detail::check_rows("tessel::nn::Attention", "output", yv, D, N);
    detail::check_scratch("tessel::nn::Attention", scratch, bidirectional_scratch_floats(B, T));
    float* q = scratch.data();
    float* k = q + N * D;
    float* v = k + N * kvd;
    float* att = v + N * kvd;
    float* scores = att + N * D;
    attn_q.forward(be, xv, row_view<Dim>(q, N, D));
    attn_k.forward(be, xv, row_view<KvDim>(k, N, kvd));
    attn_v.forward(be, xv, row_view<KvDim>(v, N, kvd));
    for (index_t b = 0; b < B; ++b) {
      // The unmasked keys and values of the sequence, moved to its first rows (in place: row
      // t only ever moves down), so attention runs over contiguous rows.
      float* kb = k + b * T * kvd;
      float* vb = v + b * T * kvd;
      index_t n = 0;
      for (index_t t = 0; t < T; ++t) {
        if (!mask.empty() && mask[std::size_t(b * T + t)] == Mask{}) continue;
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
    attn_output.forward(be, row_view<Dim, const float>(att, N, D), yv, beta);
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
  void forward_cached(Backend b, RowView<Dim, const float> xv, index_t pos, RowView<KvDim> kc,
                      RowView<KvDim> vc, const Rope* rope, ScratchView scratch, RowView<Dim> yv,
                      float beta) const {
    const index_t D = dim(), H = heads(), kvd = kv_dim(), hd = head_dim(), M = xv.extent(0);
    const index_t max_seq = kc.extent(0);
    detail::check_rows("tessel::nn::Attention", "input", xv, D);
    detail::check_rows("tessel::nn::Attention", "output", yv, D, M);
    // The kernels read the cache as packed rows of kv_dim.
    if (kc.extent(1) != kvd || vc.extent(1) != kvd || vc.extent(0) != max_seq ||
        (max_seq > 1 && (kc.stride(0) != kvd || vc.stride(0) != kvd)) ||
        (kvd > 1 && (kc.stride(1) != 1 || vc.stride(1) != 1)))
      throw shape_error("tessel::nn::Attention: the cache rows " + to_string(kc.shape()) + " and " +
                        to_string(vc.shape()) + " should be packed rows of kv_dim " +
                        std::to_string(kvd));
    if (pos < 0 || pos + M > max_seq)
      throw value_error("tessel::nn::Attention: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + M) + " do not fit a cache of " +
                        std::to_string(max_seq));
    detail::check_scratch("tessel::nn::Attention", scratch, scratch_floats(M, max_seq));
    float* k_cache = kc.data();
    float* v_cache = vc.data();
    float* q = scratch.data();
    float* att = q + M * D;
    float* scores = att + M * D;
    attn_q.forward(b, xv, row_view<Dim>(q, M, D));
    // Keys and values go straight into their cache rows.
    attn_k.forward(b, xv, row_view<KvDim>(k_cache + pos * kvd, M, kvd));
    attn_v.forward(b, xv, row_view<KvDim>(v_cache + pos * kvd, M, kvd));
    if (rope)
      parallel_for(0, M, 32, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) {
          rope->apply(b, q + i * D, H, pos + i);
          rope->apply(b, k_cache + (pos + i) * kvd, kv_heads(), pos + i);
        }
      });
    const auto out = row_view<Dim, const float>(att, M, D);
    if (M >= gemm_rows) {
      // Prefill: heads across threads, each as matrix products (scores, softmax, · V).
      kernel<op::attention_prefill, Backend>::run(q, M, pos, k_cache, v_cache, att, H, kv_heads(),
                                                  hd);
      attn_output.forward(b, out, yv, beta);
      return;
    }
    // Threads take whole heads; a small problem stays on the calling thread.
    const index_t work = H * M * (pos + M) * hd;
    parallel_for(0, H, work < (1 << 18) ? H : 1, [&](index_t lo, index_t hi) {
      for (index_t h = lo; h < hi; ++h)
        attend_head(b, h, q, M, pos, -1, k_cache, v_cache, scores + h * max_seq, att);
    });
    attn_output.forward(b, out, yv, beta);
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
