#pragma once
// Causal attention of query rows against a KV cache, as kernel-table entries:
//
//   op::attention_row<HD>   run(q, kc, vc, kvd, T, hd, scale, s, out)
//     out[hd] = softmax(scale · K q) V over T cache rows (row stride kvd); s: T floats of
//     scratch. HD: the head size when static (dyn: hd at run time). One decode row of a head.
//   op::attention_prefill   run(q, M, pos, kc, vc, att, H, kv_heads, hd)
//     M query rows at positions pos.. (row stride H·hd in q and att), every head h attending
//     to cache rows 0..pos+i of its key/value head h / (H / kv_heads) (row stride kv_heads·hd);
//     att[i, h·hd ..] = the head's output. Threads take whole heads.

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/cpu/gemm.hpp"
#include "tessel/backend/tags.hpp"
#include "tessel/ops/softmax.hpp"

namespace tessel {

namespace op {
template <index_t HD>
struct attention_row {};
struct attention_prefill {};
}  // namespace op

namespace detail {

/// The reference row: dot products and the output in plain loops, the softmax of Backend
/// (the SIMD backends' fallback for head sizes their vectors do not divide keeps their softmax).
template <class Backend, index_t HD>
void attend_row_loops(const float* q, const float* kc, const float* vc, index_t kvd, index_t T,
                      index_t hd_rt, float scale, float* s, float* out) {
  const index_t hd = HD != dyn ? HD : hd_rt;
  for (index_t t = 0; t < T; ++t) {
    float a = 0;
    for (index_t d = 0; d < hd; ++d) a += q[d] * kc[t * kvd + d];
    s[t] = a * scale;
  }
  kernel<op::softmax, Backend>::run(s, s, 1, T);
  for (index_t d = 0; d < hd; ++d) out[d] = 0.0f;
  for (index_t t = 0; t < T; ++t)
    for (index_t d = 0; d < hd; ++d) out[d] += s[t] * vc[t * kvd + d];
}

/// The vectors of the SIMD decode row on Arch: 256-bit ones where Arch has 512-bit vectors
/// (head dimensions of 8 and 24 stay vectorized, rows are short, and xsimd 8.1's 512-bit haddp
/// is not used), Arch's own otherwise.
template <class Arch>
struct attention_row_arch {
  using type = Arch;
};
#if XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2  // only lets the 256-bit batches compile
template <class Arch>
requires arch_has_avx512f_v<Arch>
struct attention_row_arch<Arch> {
  using type = xsimd::fma3<xsimd::avx2>;
};
#endif

}  // namespace detail

template <index_t HD>
struct kernel<op::attention_row<HD>, cpu_scalar> {
  static void run(const float* q, const float* kc, const float* vc, index_t kvd, index_t T,
                  index_t hd, float scale, float* s, float* out) {
    detail::attend_row_loops<cpu_scalar, HD>(q, kc, vc, kvd, T, hd, scale, s, out);
  }
};

/// SIMD: W keys at a time (their dot products summed across lanes at once with haddp), the
/// softmax's exp and sum in one pass, and the 1/sum applied to the output, not to T scores.
template <class Arch, index_t HD>
struct kernel<op::attention_row<HD>, cpu_simd<Arch>> {
  using A = typename detail::attention_row_arch<Arch>::type;
  using V = xsimd::batch<float, A>;
  static constexpr index_t W = static_cast<index_t>(V::size);

  static void run(const float* q, const float* kc, const float* vc, index_t kvd, index_t T,
                  index_t hd_rt, float scale, float* s, float* out) {
    const index_t hd = HD != dyn ? HD : hd_rt;
    if (hd % W != 0)
      return detail::attend_row_loops<cpu_simd<Arch>, HD>(q, kc, vc, kvd, T, hd, scale, s, out);
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

/// The reference prefill: within a head, rows in blocks of 128, each block's scores against
/// the keys it can see as one SGEMM (Backend's), masked entries zeroed after the softmax, and a
/// second SGEMM by the values.
template <>
struct kernel<op::attention_prefill, cpu_scalar> {
  static void run(const float* q, index_t M, index_t pos, const float* kc, const float* vc,
                  float* att, index_t H, index_t kv_heads, index_t hd) {
    const index_t D = H * hd, kvd = kv_heads * hd, group = H / kv_heads;
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
          gemm<cpu_scalar>(mb, Tb, hd, q + r0 * D + h * hd, D, kc + off, kvd, true, s, ld);
          for (index_t i = 0; i < mb; ++i) {
            float* row = s + i * ld;
            const index_t n = pos + r0 + i + 1;  // keys this row sees
            for (index_t t = 0; t < n; ++t) row[t] *= scale;
            kernel<op::softmax, cpu_scalar>::run(row, row, 1, n);
            std::fill(row + n, row + Tb, 0.0f);
          }
          gemm<cpu_scalar>(mb, hd, Tb, s, ld, vc + off, kvd, false, att + r0 * D + h * hd, D);
        }
      }
    });
  }
};

/// SIMD: a head runs on the SGEMM's packed micro-kernel directly: its keys (as Kᵀ slivers) and
/// values are packed once; then per micro-panel of MR query rows, the scores against the keys
/// those rows can see (pos + last row + 1) go to a small buffer, each row (scaled through the
/// packed queries) is softmaxed and zeroed past its own last key, repacked (in L1) and
/// multiplied by the value slivers. Measured against two SGEMMs per head and block of 128 rows
/// (1.1B shape, 512 rows, 2 threads, whole attention layer with its projections): 45.5-48.1 ->
/// 43.3-43.6 ms; the diagonal blocks waste up to MR rows instead of 128.
template <class Arch>
struct kernel<op::attention_prefill, cpu_simd<Arch>> {
  static void run(const float* q, index_t M, index_t pos, const float* kc, const float* vc,
                  float* att, index_t H, index_t kv_heads, index_t hd) {
    using tile = detail::gemm_tile<Arch>;
    constexpr index_t MR = tile::MR, NR = tile::NR;
    const index_t D = H * hd, kvd = kv_heads * hd, group = H / kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const index_t T = pos + M;                   // keys of the last row
    const index_t tp = (T + NR - 1) / NR * NR;   // ... padded to whole slivers
    const index_t hp = (hd + NR - 1) / NR * NR;  // head dimensions, the same
    const std::size_t need = static_cast<std::size_t>(tp * hd + hp * T + 2 * MR * tp + MR * hd);
    parallel_for(0, H, 1, [&](index_t h_lo, index_t h_hi) {
      thread_local detail::scratch_buffer buffer;  // 64-byte aligned, as slivers must be
      float* kp = buffer.get(need);                // Kᵀ: tp / NR slivers of hd x NR
      float* vp = kp + tp * hd;                    // V: hp / NR slivers of T x NR
      float* sc = vp + hp * T;                     // scores of MR rows, row stride tp
      float* sp = sc + MR * tp;  // the same packed as an A micro-panel (MR x keys)
      float* qp = sp + MR * tp;  // MR query rows packed
      index_t packed_kv = -1;
      for (index_t h = h_lo; h < h_hi; ++h) {
        const index_t off = (h / group) * hd;
        if (off != packed_kv) {  // heads of one group share their keys and values
          detail::pack_b_cols<Arch, NR>(hd, T, kc + off, kvd, kp);
          detail::pack_b_rows<Arch, NR>(T, hd, vc + off, kvd, vp);
          packed_kv = off;
        }
        for (index_t r0 = 0; r0 < M; r0 += MR) {
          const index_t m = std::min(MR, M - r0), n_keys = pos + r0 + m;
          detail::pack_a<Arch, MR>(m, hd, q + r0 * D + h * hd, D, qp);
          for (index_t t = 0; t < MR * hd; ++t) qp[t] *= scale;  // scores come out scaled
          for (index_t j = 0; j < n_keys; j += NR)
            detail::micro_kernel<Arch>(hd, qp, kp + j * hd, sc + j, tp, 0.0f, m,
                                       std::min(NR, n_keys - j));
          for (index_t i = 0; i < m; ++i) {
            float* row = sc + i * tp;
            const index_t n = pos + r0 + i + 1;  // keys this row sees
            kernel<op::softmax, cpu_simd<Arch>>::run(row, row, 1, n);
            std::fill(row + n, row + n_keys, 0.0f);
          }
          detail::pack_a<Arch, MR>(m, n_keys, sc, tp, sp);
          for (index_t j = 0; j < hd; j += NR)
            detail::micro_kernel<Arch>(n_keys, sp, vp + j * T, att + r0 * D + h * hd + j, D, 0.0f,
                                       m, std::min(NR, hd - j));
        }
      }
    });
  }
};

}  // namespace tessel
