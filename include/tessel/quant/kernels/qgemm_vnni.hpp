#pragma once
// Integer prefill GEMM for the GGUF block formats on AVX-512 VNNI:
// y[M, N] = x[M, K] W[N, K]ᵀ with the activations quantized to q8_0 (as the GEMV path does)
// and the weights unpacked to their integer levels, multiplied with vpdpbusd (64 byte products
// per instruction, against 16 f32 products per FMA).
//
// Every format is read as groups of G consecutive weights (G = 32, or 16 for q6_k) with
//     w = s · (u − C) − o,     u in [0, 255] (unsigned levels), s, o per group (f32),
// C a constant of the format:
//   q8_0  u = q + 128, C = 128, s = d             q4_0  u = nibble, C = 8, s = d
//   q5_0  u = 5-bit q, C = 16, s = d              q4_1 / q5_1  u = q, s = d, o = -m
//   q4_k / q5_k  u = q, s = d · sc, o = dmin · m  q6_k  u = 6-bit q, C = 32, s = d · sc (G 16)
//   q2_k  u = q, s = d · sc, o = dmin · m (G 16)  q3_k  u = q + 4, C = 4, s = d · (sc - 32) (G 16)
// With activations a = da · qa (q8_0 blocks, qa int8), one group contributes
//     da · s · (Σ u qa − C Σ qa) − da · o · Σ qa
// The integer sum (exact in int32) starts at −C Σ qa (precomputed per activation group) and
// takes G / 4 vpdpbusd; then one conversion, one multiply by da, one FMA by s, and (mins) one
// FMA by o (formats with mins).
//
// Weights are packed per 32 output columns (a sliver), group by group: G / 4 four-byte columns
// of 32 × 4 levels (vpdpbusd's layout: the 4 levels of column n at bytes 4n..4n+3), then 32
// scales s and (q4_k) 32 offsets o. The activation bytes of one row are broadcast 4 at a time.
// Micro-kernel: 4 rows × 32 columns, all of K, accumulators in registers.
//
// Threads take chunks of slivers: each packs 4 slivers (their levels then sit in its L2) and
// multiplies them with every row of x, in blocks of rows that fit in L2 beside them.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "tessel/backend/thread_pool.hpp"
#include "tessel/quant/kernels/qdot_avx512.hpp"
#include "tessel/quant/kernels/quantize_act.hpp"

#if defined(TESSEL_QDOT_AVX512)
#define TESSEL_QGEMM_VNNI 1

namespace tessel::qdetail::vnni {

// The 32 levels of a 32-element block with 16 nibble bytes (low nibbles: elements 0-15, high:
// 16-31), and with the fifth bits from qh (bit j of qh: element j), as q4_* / q5_* store them.
inline void unpack_nibbles32(const std::uint8_t* qs, std::uint8_t* u) noexcept {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m4 = _mm_set1_epi8(15);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(u), _mm_and_si128(q, m4));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(u + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m4));
}
inline void unpack_5bit32(const std::uint8_t* qs, const std::uint8_t* qh4,
                          std::uint8_t* u) noexcept {
  unpack_nibbles32(qs, u);
  std::uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  for (int j = 0; j < 32; ++j) u[j] = static_cast<std::uint8_t>(u[j] | (((qh >> j) & 1) << 4));
}

/// How a format reads as integer groups (see the file comment).
template <class F>
struct groups {};
template <>
struct groups<q8_0> {
  static constexpr int G = 32, C = 128;
  static constexpr bool offset = false;
  static void unpack(const q8_0& b, std::uint8_t* u, float* s, float*) noexcept {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(u),
                        _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80))));
    s[0] = f16f(b.d);
  }
};
template <>
struct groups<q4_0> {
  static constexpr int G = 32, C = 8;
  static constexpr bool offset = false;
  static void unpack(const q4_0& b, std::uint8_t* u, float* s, float*) noexcept {
    unpack_nibbles32(b.qs, u);
    s[0] = f16f(b.d);
  }
};
template <>
struct groups<q5_0> {
  static constexpr int G = 32, C = 16;
  static constexpr bool offset = false;
  static void unpack(const q5_0& b, std::uint8_t* u, float* s, float*) noexcept {
    unpack_5bit32(b.qs, b.qh, u);
    s[0] = f16f(b.d);
  }
};
// The _1 formats: w = d q + m, so s = d and o = -m.
template <>
struct groups<q4_1> {
  static constexpr int G = 32, C = 0;
  static constexpr bool offset = true;
  static void unpack(const q4_1& b, std::uint8_t* u, float* s, float* o) noexcept {
    unpack_nibbles32(b.qs, u);
    s[0] = f16f(b.d);
    o[0] = -f16f(b.m);
  }
};
template <>
struct groups<q5_1> {
  static constexpr int G = 32, C = 0;
  static constexpr bool offset = true;
  static void unpack(const q5_1& b, std::uint8_t* u, float* s, float* o) noexcept {
    unpack_5bit32(b.qs, b.qh, u);
    s[0] = f16f(b.d);
    o[0] = -f16f(b.m);
  }
};
template <>
struct groups<q2_k> {
  static constexpr int G = 16, C = 0;
  static constexpr bool offset = true;
  static void unpack(const q2_k& b, std::uint8_t* u, float* s, float* o) noexcept {
    b.unpack(u);
    const float d = f16f(b.d), dmin = f16f(b.dmin);
    for (int j = 0; j < 16; ++j) {
      s[j] = d * static_cast<float>(b.scales[j] & 15);
      o[j] = dmin * static_cast<float>(b.scales[j] >> 4);
    }
  }
};
template <>
struct groups<q3_k> {
  static constexpr int G = 16, C = 4;
  static constexpr bool offset = false;
  static void unpack(const q3_k& b, std::uint8_t* u, float* s, float*) noexcept {
    alignas(64) std::int8_t q[256];
    b.unpack(q);
    for (int i = 0; i < 256; ++i) u[i] = static_cast<std::uint8_t>(q[i] + 4);
    const float d = f16f(b.d);
    for (int j = 0; j < 16; ++j) s[j] = d * static_cast<float>(b.scale(j) - 32);
  }
};
template <>
struct groups<q5_k> {
  static constexpr int G = 32, C = 0;
  static constexpr bool offset = true;
  static void unpack(const q5_k& b, std::uint8_t* u, float* s, float* o) noexcept {
    b.unpack(u);
    const float d = f16f(b.d), dmin = f16f(b.dmin);
    for (int j = 0; j < 8; ++j) {
      std::uint8_t sc, m;
      get_scale_min_k4(j, b.scales, sc, m);
      s[j] = d * sc;
      o[j] = dmin * m;
    }
  }
};
template <>
struct groups<q4_k> {
  static constexpr int G = 32, C = 0;
  static constexpr bool offset = true;
  static void unpack(const q4_k& b, std::uint8_t* u, float* s, float* o) noexcept {
    const float d = f16f(b.d), dmin = f16f(b.dmin);
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 64 * c), _mm256_and_si256(q, m4));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 64 * c + 32),
                          _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
    }
    for (int j = 0; j < 8; ++j) {
      std::uint8_t sc, m;
      get_scale_min_k4(j, b.scales, sc, m);
      s[j] = d * sc;
      o[j] = dmin * m;
    }
  }
};
template <>
struct groups<q6_k> {
  static constexpr int G = 16, C = 32;
  static constexpr bool offset = false;
  static void unpack(const q6_k& b, std::uint8_t* u, float* s, float*) noexcept {
    alignas(64) std::int8_t q[256];
    b.unpack(q);
    for (int i = 0; i < 256; ++i) u[i] = static_cast<std::uint8_t>(q[i] + 32);
    const float d = f16f(b.d);
    for (int j = 0; j < 16; ++j) s[j] = d * static_cast<float>(b.scales[j]);
  }
};

/// TESSEL_QGEMM_VNNI=0 in the environment turns this path off (the f32 one runs instead).
inline bool disabled() {
  static const bool off = [] {
    const char* e = std::getenv("TESSEL_QGEMM_VNNI");
    return e != nullptr && e[0] == '0';
  }();
  return off;
}

template <class F>
inline constexpr bool supported = requires {
  groups<F>::G;
};

inline constexpr index_t NR = 32, MR = 4;

/// Bytes of one packed group of a sliver: levels, scales, offsets.
template <class F>
inline constexpr index_t group_bytes = groups<F>::G* NR + NR * 4 * (groups<F>::offset ? 2 : 1);

/// Packs columns [n0, n0 + nr) of W (rows of nb blocks), nr <= 32, into out (the missing
/// columns are zero).
template <class F>
void pack_sliver(const F* W, index_t nb, index_t n0, index_t nr, std::uint8_t* out) {
  using T = groups<F>;
  constexpr int G = T::G, per = static_cast<int>(F::block_elems) / G;
  alignas(64) std::uint8_t u[F::block_elems];
  float s[per], o[per];
  for (index_t b = 0; b < nb; ++b) {
    std::uint8_t* blk = out + b * per * group_bytes<F>;
    for (index_t n = 0; n < NR; ++n) {
      if (n < nr) {
        T::unpack(W[(n0 + n) * nb + b], u, s, o);
      } else {
        std::memset(u, 0, sizeof u);
        for (int j = 0; j < per; ++j) s[j] = o[j] = 0.f;
      }
      for (int j = 0; j < per; ++j) {
        std::uint8_t* g = blk + j * group_bytes<F>;
        for (int q = 0; q < G / 4; ++q) std::memcpy(g + (q * NR + n) * 4, u + j * G + 4 * q, 4);
        std::memcpy(g + G * NR + 4 * n, &s[j], 4);
        if constexpr (T::offset) std::memcpy(g + G * NR + 4 * NR + 4 * n, &o[j], 4);
      }
    }
  }
}

/// The activations: rows of q8_0 blocks, and per group of G: da (f32), −C Σ qa (int32) and
/// da Σ qa (f32, formats with offsets).
struct act_panel {
  const q8_0* q = nullptr;
  const float* d = nullptr;
  const std::int32_t* csum = nullptr;
  const float* dsum = nullptr;
  index_t nb = 0, ng = 0;  // blocks and groups per row
};

template <class F>
inline void micro_kernel(const act_panel& A, index_t m0, index_t mr, const std::uint8_t* Wp,
                         float* y, index_t ldy, index_t nr, float beta) {
  using T = groups<F>;
  constexpr int G = T::G;
  const std::int8_t* qa[MR];
  const float* da[MR];
  const std::int32_t* cs[MR];
  const float* ds[MR];
  for (index_t r = 0; r < MR; ++r) {
    const index_t m = m0 + std::min(r, mr - 1);
    qa[r] = reinterpret_cast<const std::int8_t*>(A.q + m * A.nb);
    da[r] = A.d + m * A.ng;
    cs[r] = A.csum + m * A.ng;
    ds[r] = T::offset ? A.dsum + m * A.ng : nullptr;
  }
  __m512 f[MR][2];
  for (index_t r = 0; r < MR; ++r) f[r][0] = f[r][1] = _mm512_setzero_ps();
  for (index_t g = 0; g < A.ng; ++g, Wp += group_bytes<F>) {
    // Byte offset of group g's activations inside a row of q8_0 blocks.
    const index_t off = (g * G / 32) * static_cast<index_t>(sizeof(q8_0)) + 2 + (g * G) % 32;
    __m512i s[MR][2];
    for (index_t r = 0; r < MR; ++r) {
      if constexpr (T::C != 0) {
        s[r][0] = s[r][1] = _mm512_set1_epi32(cs[r][g]);
      } else {
        s[r][0] = s[r][1] = _mm512_setzero_si512();
      }
    }
    for (int q = 0; q < G / 4; ++q) {
      const __m512i w0 = _mm512_load_si512(Wp + q * 128);
      const __m512i w1 = _mm512_load_si512(Wp + q * 128 + 64);
      for (index_t r = 0; r < MR; ++r) {
        std::int32_t a4;
        std::memcpy(&a4, qa[r] + off + 4 * q, 4);
        const __m512i a = _mm512_set1_epi32(a4);
        s[r][0] = _mm512_dpbusd_epi32(s[r][0], w0, a);
        s[r][1] = _mm512_dpbusd_epi32(s[r][1], w1, a);
      }
    }
    const __m512 sc0 = _mm512_load_ps(reinterpret_cast<const float*>(Wp + G * NR));
    const __m512 sc1 = _mm512_load_ps(reinterpret_cast<const float*>(Wp + G * NR + 64));
    for (index_t r = 0; r < MR; ++r) {
      const __m512 d = _mm512_set1_ps(da[r][g]);
      f[r][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[r][0]), d), sc0, f[r][0]);
      f[r][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[r][1]), d), sc1, f[r][1]);
    }
    if constexpr (T::offset) {
      const __m512 o0 = _mm512_load_ps(reinterpret_cast<const float*>(Wp + G * NR + 128));
      const __m512 o1 = _mm512_load_ps(reinterpret_cast<const float*>(Wp + G * NR + 192));
      for (index_t r = 0; r < MR; ++r) {
        const __m512 e = _mm512_set1_ps(ds[r][g]);
        f[r][0] = _mm512_fnmadd_ps(o0, e, f[r][0]);
        f[r][1] = _mm512_fnmadd_ps(o1, e, f[r][1]);
      }
    }
  }
  const __mmask16 k0 = static_cast<__mmask16>(nr >= 16 ? 0xffff : (1u << nr) - 1);
  const __mmask16 k1 = static_cast<__mmask16>(nr >= 32   ? 0xffff
                                              : nr <= 16 ? 0
                                                         : (1u << (nr - 16)) - 1);
  for (index_t r = 0; r < mr; ++r) {
    float* c = y + (m0 + r) * ldy;
    __m512 v0 = f[r][0], v1 = f[r][1];
    if (beta != 0.0f) {
      const __m512 b = _mm512_set1_ps(beta);
      v0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k0, c), b, v0);
      v1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k1, c + 16), b, v1);
    }
    _mm512_mask_storeu_ps(c, k0, v0);
    _mm512_mask_storeu_ps(c + 16, k1, v1);
  }
}

/// y[M, N] = x[M, K] W[N, K]ᵀ + beta · y (beta 0 never reads y). K a multiple of 32 and of
/// F's block.
template <class F>
void gemm(index_t M, index_t N, index_t K, const float* x, index_t ldx, const F* W, float* y,
          index_t ldy, float beta) {
  using T = groups<F>;
  constexpr int G = T::G;
  const index_t nb = K / F::block_elems, ab = K / 32, ng = K / G;
  // The activation panel, in buffers of the calling thread (shared with the workers by
  // pointer).
  thread_local std::vector<q8_0> aq;
  thread_local std::vector<float> ad, adsum;
  thread_local std::vector<std::int32_t> acsum;
  const auto need = [](auto& v, index_t n) {
    if (v.size() < static_cast<std::size_t>(n)) v.resize(static_cast<std::size_t>(n));
  };
  need(aq, M * ab), need(ad, M * ng), need(acsum, M * ng);
  if (T::offset) need(adsum, M * ng);
  act_panel A{aq.data(), ad.data(), acsum.data(), adsum.data(), ab, ng};
  q8_0* const aqp = aq.data();
  float* const adp = ad.data();
  float* const adsp = adsum.data();
  std::int32_t* const acp = acsum.data();
  parallel_for(0, M, 8, [&](index_t lo, index_t hi) {
    for (index_t m = lo; m < hi; ++m) {
      const q8_0* qb = aqp + m * ab;
      quantize_activation(x + m * ldx, aqp + m * ab, K);
      for (index_t g = 0; g < ng; ++g) {
        const q8_0& b = qb[g * G / 32];
        std::int32_t sum = 0;
        for (int i = 0; i < G; ++i) sum += b.qs[(g * G) % 32 + i];
        const float d = f16f(b.d);
        adp[m * ng + g] = d;
        acp[m * ng + g] = -T::C * sum;
        if constexpr (T::offset) adsp[m * ng + g] = d * static_cast<float>(sum);
      }
    }
  });
  const index_t slivers = (N + NR - 1) / NR;
  const index_t sliver_bytes = ng * group_bytes<F>;
  constexpr index_t chunk = 4;  // slivers packed together
  // Rows of x per pass: their q8_0 bytes about 512 KiB, beside the packed chunk in L2.
  const index_t mc =
      std::max<index_t>(MR, (index_t{512} << 10) / std::max<index_t>(1, K) / MR * MR);
  parallel_for(0, slivers, chunk, [&](index_t lo, index_t hi) {
    thread_local std::vector<std::uint8_t, xsimd::aligned_allocator<std::uint8_t, 64>> pbuf;
    for (index_t s0 = lo; s0 < hi; s0 += chunk) {
      const index_t ns = std::min(chunk, hi - s0);
      if (pbuf.size() < static_cast<std::size_t>(ns * sliver_bytes))
        pbuf.resize(static_cast<std::size_t>(ns * sliver_bytes));
      for (index_t s = 0; s < ns; ++s) {
        const index_t n0 = (s0 + s) * NR;
        pack_sliver(W, nb, n0, std::min(NR, N - n0), pbuf.data() + s * sliver_bytes);
      }
      for (index_t m0 = 0; m0 < M; m0 += mc) {
        const index_t m1 = std::min(M, m0 + mc);
        for (index_t s = 0; s < ns; ++s) {
          const index_t n0 = (s0 + s) * NR;
          for (index_t m = m0; m < m1; m += MR)
            micro_kernel<F>(A, m, std::min(MR, m1 - m), pbuf.data() + s * sliver_bytes, y + n0, ldy,
                            std::min(NR, N - n0), beta);
        }
      }
    }
  });
}

}  // namespace tessel::qdetail::vnni

#endif
