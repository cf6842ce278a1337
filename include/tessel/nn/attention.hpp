#pragma once
// Attention<Dim, Heads, KvHeads, W, Bias>: multi-head self-attention with grouped K/V heads
// (MHA: KvHeads == Heads, GQA: a divisor, MQA: 1), optional biases on the four projections
// (GPT-2, BERT). GGUF names: attn_q [Dim, Dim], attn_k / attn_v [KvDim, Dim], attn_output
// [Dim, Dim], with head_dim = Dim / Heads and KvDim = KvHeads · head_dim.
//
// Causal with a KV cache: forward(x, M, pos, ..., rope, ...) takes M new rows at positions
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

namespace tessel::nn {

namespace detail {

/// out[hd] = softmax(scale · K q) V over T cache rows (row stride kvd); s: T floats.
/// The reference, and the one any head size can use.
template <class Backend, index_t HD>
struct attend_row {
  static void run(const float* q, const float* kc, const float* vc, index_t kvd, index_t T,
                  index_t hd_rt, float scale, float* s, float* out) {
    const index_t hd = HD != dyn ? HD : hd_rt;
    for (index_t t = 0; t < T; ++t) {
      float a = 0;
      for (index_t d = 0; d < hd; ++d) a += q[d] * kc[t * kvd + d];
      s[t] = a * scale;
    }
    rows::softmax(s, T);
    for (index_t d = 0; d < hd; ++d) out[d] = 0.0f;
    for (index_t t = 0; t < T; ++t)
      for (index_t d = 0; d < hd; ++d) out[d] += s[t] * vc[t * kvd + d];
  }
};

/// SIMD: W keys at a time (their dot products summed across lanes at once with haddp), the
/// softmax's exp and sum in one pass, and the 1/sum applied to the output, not to T scores.
template <class Arch, index_t HD>
struct attend_row<cpu_simd<Arch>, HD> {
  // 256-bit vectors even where 512-bit ones exist: head dimensions of 8 and 24 stay
  // vectorized, rows are short, and xsimd 8.1's 512-bit haddp is not used.
  using A = std::conditional_t<(xsimd::batch<float, Arch>::size > 8) && XSIMD_WITH_AVX2 &&
                                   XSIMD_WITH_FMA3_AVX2,
                               xsimd::fma3<xsimd::avx2>, Arch>;
  using V = xsimd::batch<float, A>;
  static constexpr index_t W = static_cast<index_t>(V::size);

  static void run(const float* q, const float* kc, const float* vc, index_t kvd, index_t T,
                  index_t hd_rt, float scale, float* s, float* out) {
    const index_t hd = HD != dyn ? HD : hd_rt;
    if (hd % W != 0) return attend_row<cpu_scalar, HD>::run(q, kc, vc, kvd, T, hd, scale, s, out);
    const index_t nc = hd / W;
    V acc[W];
    V vmax(-std::numeric_limits<float>::infinity());
    index_t t = 0;
    for (; t + W <= T; t += W) {
      for (index_t j = 0; j < W; ++j) {
        const float* k = kc + (t + j) * kvd;
        V a = V::load_unaligned(q) * V::load_unaligned(k);
        for (index_t c = 1; c < nc; ++c)
          a = xsimd::fma(V::load_unaligned(q + c * W), V::load_unaligned(k + c * W), a);
        acc[j] = a;
      }
      const V sv = xsimd::haddp(acc) * V(scale);
      sv.store_unaligned(s + t);
      vmax = xsimd::max(vmax, sv);
    }
    alignas(64) float m[W];
    vmax.store_aligned(m);
    float mx = m[0];
    for (index_t j = 1; j < W; ++j) mx = std::max(mx, m[j]);
    for (; t < T; ++t) {
      V a = V::load_unaligned(q) * V::load_unaligned(kc + t * kvd);
      for (index_t c = 1; c < nc; ++c)
        a = xsimd::fma(V::load_unaligned(q + c * W), V::load_unaligned(kc + t * kvd + c * W), a);
      s[t] = xsimd::hadd(a) * scale;
      mx = std::max(mx, s[t]);
    }
    V vsum(0.0f);
    const V vm(mx);
    for (t = 0; t + W <= T; t += W) {
      const V e = xsimd::exp(V::load_unaligned(s + t) - vm);
      e.store_unaligned(s + t);
      vsum += e;
    }
    float sum = xsimd::hadd(vsum);
    for (; t < T; ++t) sum += (s[t] = std::exp(s[t] - mx));
    const V inv(1.0f / sum);
    for (index_t c = 0; c < nc; ++c) {
      const float* v = vc + c * W;
      V o0(0.0f), o1(0.0f);  // two chains: the FMA latency is not the limit
      for (t = 0; t + 2 <= T; t += 2) {
        o0 = xsimd::fma(V(s[t]), V::load_unaligned(v + t * kvd), o0);
        o1 = xsimd::fma(V(s[t + 1]), V::load_unaligned(v + (t + 1) * kvd), o1);
      }
      if (t < T) o0 = xsimd::fma(V(s[t]), V::load_unaligned(v + t * kvd), o0);
      ((o0 + o1) * inv).store_unaligned(out + c * W);
    }
  }
};

}  // namespace detail

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

  /// y[M, Dim] = attention(x[M, Dim]) + beta · y. k_cache / v_cache: this layer's rows
  /// [max_seq, kv_dim] (see KVCache: its capacity()); pos + M must not exceed max_seq.
  void forward(const float* x, index_t M, index_t pos, float* k_cache, float* v_cache,
               index_t max_seq, const Rope& rope, float* scratch, float* y,
               float beta = 0.0f) const {
    forward_cached(x, M, pos, k_cache, v_cache, max_seq, &rope, scratch, y, beta);
  }
  /// The same without RoPE (positions are already in x).
  void forward(const float* x, index_t M, index_t pos, float* k_cache, float* v_cache,
               index_t max_seq, float* scratch, float* y, float beta = 0.0f) const {
    forward_cached(x, M, pos, k_cache, v_cache, max_seq, nullptr, scratch, y, beta);
  }

  index_t bidirectional_scratch_floats(index_t B, index_t T) const noexcept {
    return B * T * (2 * dim() + 2 * kv_dim()) + heads() * T;
  }

  /// y[B·T, Dim] = attention(x[B·T, Dim]) + beta · y over B sequences of T rows, row r of
  /// sequence b attending to the rows t of b with mask[b·T + t] != 0 (mask null: all rows).
  /// A sequence without any unmasked row is a value_error.
  template <class Mask>
  void forward_bidirectional(const float* x, index_t B, index_t T, const Mask* mask, float* scratch,
                             float* y, float beta = 0.0f) const {
    const index_t D = dim(), H = heads(), kvd = kv_dim(), N = B * T;
    float* q = scratch;
    float* k = q + N * D;
    float* v = k + N * kvd;
    float* att = v + N * kvd;
    float* scores = att + N * D;
    attn_q.forward(x, N, q);
    attn_k.forward(x, N, k);
    attn_v.forward(x, N, v);
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
          attend_head(h, q + b * T * D, T, 0, n, kb, vb, scores + h * T, att + b * T * D);
      });
    }
    attn_output.forward(att, N, y, beta);
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
  void forward_cached(const float* x, index_t M, index_t pos, float* k_cache, float* v_cache,
                      index_t max_seq, const Rope* rope, float* scratch, float* y,
                      float beta) const {
    if (pos < 0 || M < 0 || pos + M > max_seq)
      throw value_error("tessel::nn::Attention: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + M) + " do not fit a cache of " +
                        std::to_string(max_seq));
    const index_t D = dim(), H = heads(), kvd = kv_dim(), hd = head_dim();
    float* q = scratch;
    float* att = q + M * D;
    float* scores = att + M * D;
    attn_q.forward(x, M, q);
    // Keys and values go straight into their cache rows.
    attn_k.forward_strided(x, D, M, k_cache + pos * kvd, kvd);
    attn_v.forward_strided(x, D, M, v_cache + pos * kvd, kvd);
    if (rope)
      parallel_for(0, M, 32, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) {
          rope->apply(q + i * D, H, pos + i);
          rope->apply(k_cache + (pos + i) * kvd, kv_heads(), pos + i);
        }
      });
    if (M >= gemm_rows) {
      // Prefill: heads across threads, each on the SGEMM micro-kernel (scores, softmax, · V).
      attend_gemm(q, M, pos, k_cache, v_cache, att);
      attn_output.forward(att, M, y, beta);
      return;
    }
    // Threads take whole heads; a small problem stays on the calling thread.
    const index_t work = H * M * (pos + M) * hd;
    parallel_for(0, H, work < (1 << 18) ? H : 1, [&](index_t lo, index_t hi) {
      for (index_t h = lo; h < hi; ++h)
        attend_head(h, q, M, pos, -1, k_cache, v_cache, scores + h * max_seq, att);
    });
    attn_output.forward(att, M, y, beta);
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

  // Causal attention of M rows at positions pos.. for every head. Threads take whole heads.
  // With a SIMD backend, a head runs on the SGEMM's packed micro-kernel directly: its keys
  // (as Kᵀ slivers) and values are packed once; then per micro-panel of MR query rows, the
  // scores against the keys those rows can see (pos + last row + 1) go to a small buffer, each
  // row (scaled through the packed queries) is softmaxed and zeroed past its own last key,
  // repacked (in L1) and multiplied by the value slivers. Measured against two SGEMMs per head
  // and block of 128 rows (1.1B shape, 512 rows, 2 threads, whole attention layer with its
  // projections): 45.5-48.1 -> 43.3-43.6 ms; the diagonal blocks waste up to MR rows instead of
  // 128. The scalar backend keeps the two-SGEMM form.
  void attend_gemm(const float* q, index_t M, index_t pos, const float* kc, const float* vc,
                   float* att) const {
    if constexpr (requires { typename cpu::arch; }) {
      attend_packed<typename cpu::arch>(q, M, pos, kc, vc, att);
    } else {
      attend_blocks(q, M, pos, kc, vc, att);
    }
  }

  template <class Arch>
  void attend_packed(const float* q, index_t M, index_t pos, const float* kc, const float* vc,
                     float* att) const {
    using tile = tessel::detail::gemm_tile<Arch>;
    constexpr index_t MR = tile::MR, NR = tile::NR;
    const index_t D = dim(), kvd = kv_dim(), hd = head_dim(), H = heads();
    const index_t group = H / kv_heads();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const index_t T = pos + M;                   // keys of the last row
    const index_t tp = (T + NR - 1) / NR * NR;   // ... padded to whole slivers
    const index_t hp = (hd + NR - 1) / NR * NR;  // head dimensions, the same
    const std::size_t need = static_cast<std::size_t>(tp * hd + hp * T + 2 * MR * tp + MR * hd);
    parallel_for(0, H, 1, [&](index_t h_lo, index_t h_hi) {
      thread_local tessel::detail::scratch_buffer buffer;  // 64-byte aligned, as slivers must be
      float* kp = buffer.get(need);                        // Kᵀ: tp / NR slivers of hd x NR
      float* vp = kp + tp * hd;                            // V: hp / NR slivers of T x NR
      float* sc = vp + hp * T;                             // scores of MR rows, row stride tp
      float* sp = sc + MR * tp;  // the same packed as an A micro-panel (MR x keys)
      float* qp = sp + MR * tp;  // MR query rows packed
      index_t packed_kv = -1;
      for (index_t h = h_lo; h < h_hi; ++h) {
        const index_t off = (h / group) * hd;
        if (off != packed_kv) {  // heads of one group share their keys and values
          tessel::detail::pack_b_cols<NR>(hd, T, kc + off, kvd, kp);
          tessel::detail::pack_b_rows<Arch, NR>(T, hd, vc + off, kvd, vp);
          packed_kv = off;
        }
        for (index_t r0 = 0; r0 < M; r0 += MR) {
          const index_t m = std::min(MR, M - r0), n_keys = pos + r0 + m;
          tessel::detail::pack_a<MR>(m, hd, q + r0 * D + h * hd, D, qp);
          for (index_t t = 0; t < MR * hd; ++t) qp[t] *= scale;  // scores come out scaled
          for (index_t j = 0; j < n_keys; j += NR)
            tessel::detail::micro_kernel<Arch>(hd, qp, kp + j * hd, sc + j, tp, 0.0f, m,
                                               std::min(NR, n_keys - j));
          for (index_t i = 0; i < m; ++i) {
            float* row = sc + i * tp;
            const index_t n = pos + r0 + i + 1;  // keys this row sees
            detail::rows::softmax(row, n);
            std::fill(row + n, row + n_keys, 0.0f);
          }
          tessel::detail::pack_a<MR>(m, n_keys, sc, tp, sp);
          for (index_t j = 0; j < hd; j += NR)
            tessel::detail::micro_kernel<Arch>(n_keys, sp, vp + j * T, att + r0 * D + h * hd + j, D,
                                               0.0f, m, std::min(NR, hd - j));
        }
      }
    });
  }

  // The same as SGEMMs (the scalar backend): within a head, rows in blocks of 128, each
  // block's scores against the keys it can see, masked entries zeroed after the softmax; the
  // SGEMMs run on the calling thread.
  void attend_blocks(const float* q, index_t M, index_t pos, const float* kc, const float* vc,
                     float* att) const {
    const index_t D = dim(), kvd = kv_dim(), hd = head_dim(), H = heads();
    const index_t group = H / kv_heads();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    constexpr index_t block = 128;
    const index_t ld = pos + M;
    parallel_for(0, H, 1, [&](index_t h_lo, index_t h_hi) {
      thread_local std::vector<float> buffer;
      buffer.resize(std::max(buffer.size(), static_cast<std::size_t>(std::min(block, M) * ld)));
      float* s = buffer.data();
      for (index_t h = h_lo; h < h_hi; ++h) {
        const index_t off = (h / group) * hd;
        for (index_t r0 = 0; r0 < M; r0 += block) {
          const index_t mb = std::min(block, M - r0), Tb = pos + r0 + mb;
          gemm<cpu>(mb, Tb, hd, q + r0 * D + h * hd, D, kc + off, kvd, true, s, ld);
          for (index_t i = 0; i < mb; ++i) {
            float* row = s + i * ld;
            const index_t n = pos + r0 + i + 1;  // keys this row sees
            for (index_t t = 0; t < n; ++t) row[t] *= scale;
            detail::rows::softmax(row, n);
            std::fill(row + n, row + Tb, 0.0f);
          }
          gemm<cpu>(mb, hd, Tb, s, ld, vc + off, kvd, false, att + r0 * D + h * hd, D);
        }
      }
    });
  }

  // One head over rows 0..M-1: row i sees key rows 0..pos+i (causal: n < 0) or 0..n-1.
  void attend_head(index_t h, const float* q, index_t M, index_t pos, index_t n, const float* kc,
                   const float* vc, float* s, float* att) const {
    const index_t D = dim(), kvd = kv_dim(), hd = head_dim();
    const index_t off = (h / (heads() / kv_heads())) * hd;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (index_t i = 0; i < M; ++i)
      detail::attend_row<cpu, HeadDim>::run(q + i * D + h * hd, kc + off, vc + off, kvd,
                                            n < 0 ? pos + i + 1 : n, hd, scale, s,
                                            att + i * D + h * hd);
  }

  index_t heads_, kv_heads_;
};

}  // namespace tessel::nn
