#pragma once
// AVX-512 row dot products for the four hot GGUF formats (q8_0, q4_0, q4_k, q6_k), used by
// kernel<qdot_op, cpu_simd<Arch>, F> (qdot_avx2.hpp) when Arch is an AVX-512 architecture
// (tessel::cpu under -march=native on an AVX-512 machine) and the translation unit is compiled
// with AVX512F/BW/VL, AVX512-VNNI, VBMI and GFNI. Everything in this file is reachable only
// under those flags; other builds use the AVX2 kernels.
//
// Per 64 weights of one row:
//   q8_0  two blocks: weights + 128 as u8 (one xor), vpdpbusd against the activations with the
//         accumulator started at -128 * sum(a) (shared by the rows), so the dot is one
//         instruction; one f32 FMA per two blocks.
//   q4_0  two blocks laid out [lo0, hi0, lo1, hi1] (two 16-byte broadcast loads, one masked)
//         and masked with 0x0f / 0xf0: the high nibbles stay in place (16x), vpdpbusd starts at
//         -8 * sum(a) (-128 * sum(a) in the 16x lanes), and the 1/16 is applied per lane once
//         at the end.
//   q4_k  one 32-byte chunk broadcast to both halves; one vgf2p8affineqb per 64-bit lane picks
//         the low nibbles (half 0) or the high nibbles (half 1), so the 64 levels line up
//         with 64 contiguous activations; vpmaddubsw, then vpdpwssd by the sub-block scale;
//         mins through the activation block sums in a 128-bit f32 accumulator.
//   q6_k  64 ql bytes give 128 low nibbles in element order; the 2 high bits come from the
//         32 qh bytes broadcast to both halves and moved into bits 4-5 by one vgf2p8affineqb
//         (a different bit pair per half), merged with one vpternlogd; vpmaddubsw, vpdpwssd
//         by the 16-element sub-block scales (vpermw); -32 through the block sums.
// Integer sums equal the references' exactly; only the f32 summation order differs.

#include "qdot.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&  \
    defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && defined(__GFNI__) && \
    defined(__F16C__) && defined(__FMA__)
#define TESSEL_QDOT_AVX512 1
#include <immintrin.h>

#include <type_traits>

namespace tessel {
namespace qdetail {

/// True when kernel<qdot_op, cpu_simd<Arch>, F> uses this file's kernels.
template <class Arch>
inline constexpr bool use_avx512_qdot = std::is_base_of_v<xsimd::avx512bw, Arch>;

namespace avx512 {

inline __m512i loadu512(const void* p) noexcept {
  return _mm512_loadu_si512(p);
}
inline __m256i loadu256(const void* p) noexcept {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m128i loadu128(const void* p) noexcept {
  return _mm_loadu_si128(static_cast<const __m128i*>(p));
}
inline float hsum(__m512 v) noexcept {
  return _mm512_reduce_add_ps(v);
}

// A GF(2) affine matrix (one 64-bit lane of vgf2p8affineqb) that writes input bit src[i] to
// output bit i (src[i] < 0: 0). Output bit i is the parity of (x & byte 7 - i).
constexpr long long gf_bits(const int (&src)[8]) noexcept {
  unsigned long long m = 0;
  for (int i = 0; i < 8; ++i)
    if (src[i] >= 0) m |= (1ull << src[i]) << (8 * (7 - i));
  return static_cast<long long>(m);
}
inline constexpr long long gf_lo4 = gf_bits({0, 1, 2, 3, -1, -1, -1, -1});  // x & 15
inline constexpr long long gf_hi4 = gf_bits({4, 5, 6, 7, -1, -1, -1, -1});  // x >> 4
// Bits (2k, 2k + 1) to bits (4, 5), the rest 0: q6_k's high bits of quarter k.
template <int k>
inline constexpr long long gf_h2 = gf_bits({-1, -1, -1, -1, 2 * k, 2 * k + 1, -1, -1});

// Prefetch a following group of rows (see qdot_avx2.hpp's prefetch_next_group): at block step
// b, `blocks` blocks' worth of each of the R rows, in one linear sweep of the group `ahead`
// groups after this one. Measured A/B at 2 threads, 2 groups ahead against 1: 1.1B Llama
// decode (K = 2048 / 5632) q4_0 +16%, q8_0 +8%; q4_0 GEMV 4096 x 4096 and 11008 x 4096 64-66%
// -> 80-83% of the read bandwidth, q8_0 87% -> 81-83%; q4_k (2-row groups) no better with 2;
// a fixed lead of 12 KiB instead of whole groups: q4_0 decode 5% below 2 groups.
// The lines go to L2 (_MM_HINT_T1). Measured A/B against _MM_HINT_T0 (2 threads, the variants
// interleaved call by call in one process, GB/s medians of 120-300 GEMVs at 4096 x 4096 /
// 11008 x 4096 / 4096 x 11008): q8_0 23.0 / - / 22.5 -> 28.0 / - / 26.9 GB/s (11008 x 4096
// disturbed); q6_k 26.4 / 23.9 / 26.6 -> 30.3 / 25.5 / 29.5; q4_0 (4-row groups) 24.0 / 24.2 / 22.1
// -> 24.7 / 24.7 / 23.6; q4_k 24.5 / 24.7 / 22.4 -> 24.8 / 24.6 / 23.7; the GEMVs of a 1.1B Llama
// decode step in q8_0 (K = 2048 / 5632, 22 layers and the output matrix) 23.3 -> 27.2 GB/s. With
// T1, 1 to 8 groups ahead stream within 2% of each other for q8_0 / q4_0; a fixed lead of 16 or 32
// KiB instead of whole groups was no better for q4_k / q6_k. q4_0 (2-row groups) keeps _MM_HINT_T0
// (ToL1): measured A/B T0 against T1, 2 runs: 4096 x 4096 25.3 -> 26.3, 11008 x 4096 25.9 / 26.3
// -> 27.2 / 27.1, 4096 x 11008 24.3 -> 23.0 GB/s; 1.1B Llama decode GEMVs 23.5 -> 24.3 GB/s.
template <class F, int R, bool ToL1 = false>
inline void prefetch_next(const F* w, index_t ldw, index_t b, int blocks, int ahead = 1) noexcept {
#ifndef TESSEL_NO_QPREFETCH
  const char* p = reinterpret_cast<const char*>(w + ahead * R * ldw) +
                  static_cast<std::size_t>(b) * R * sizeof(F);
  for (std::size_t o = 0; o < static_cast<std::size_t>(blocks) * R * sizeof(F); o += 64) {
    if constexpr (ToL1)
      _mm_prefetch(p + o, _MM_HINT_T0);
    else
      _mm_prefetch(p + o, _MM_HINT_T1);
  }
#else
  (void)w, (void)ldw, (void)b, (void)blocks, (void)ahead;
#endif
}

// Prefetch into L1 (_MM_HINT_T0) of block b + near of each of the R rows (lines already
// brought to L2 by prefetch_next). q4_k only: measured A/B (as above, 4-row groups, 1 group
// ahead into L2) near = 4 against none 24.6 / 24.6 / 25.5 -> 26.1 / 26.2 / 26.7 GB/s; for q8_0,
// q4_0 and q6_k it changed nothing beyond +-2%.
template <class F, int R>
inline void prefetch_near(const F* w, index_t ldw, index_t b, int near) noexcept {
#ifndef TESSEL_NO_QPREFETCH
  for (int r = 0; r < R; ++r) {
    const char* p = reinterpret_cast<const char*>(w + r * ldw + b + near);
    for (std::size_t o = 0; o < sizeof(F); o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
  }
#else
  (void)w, (void)ldw, (void)b, (void)near;
#endif
}

// The f32 scales d_w * d_a of R <= 4 rows for blocks b and (Two) b + 1: lane r is row r of
// block b, lane 4 + r of block b + 1. The f16 bits are gathered on the scalar ALUs and
// converted in one instruction.
template <class F, int R, bool Two>
inline __m256 pair_scales(const F* w, index_t ldw, index_t b, const q8_0* a) noexcept {
  std::uint64_t lo = 0, hi = 0;
  for (int r = 0; r < R; ++r) {
    lo |= static_cast<std::uint64_t>(w[r * ldw + b].d.bits) << (16 * r);
    if constexpr (Two) hi |= static_cast<std::uint64_t>(w[r * ldw + b + 1].d.bits) << (16 * r);
  }
  const __m256 d =
      _mm256_cvtph_ps(_mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo)));
  const __m256 da =
      _mm256_set_m128(_mm_set1_ps(Two ? f16f(a[b + 1].d) : 0.f), _mm_set1_ps(f16f(a[b].d)));
  return _mm256_mul_ps(d, da);
}
// Row r's scales spread over the lanes of its block-pair product: lanes 0-7 block b, 8-15 b+1.
inline __m512 row_scale(__m256 s, int r) noexcept {
  const __m512i idx = _mm512_set_epi32(4 + r, 4 + r, 4 + r, 4 + r, 4 + r, 4 + r, 4 + r, 4 + r, r, r,
                                       r, r, r, r, r, r);
  return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(s));
}

// Activations of blocks b and (Two) b + 1 as one 64-byte vector (upper half zero if !Two).
template <bool Two>
inline __m512i act_pair(const q8_0* a, index_t b) noexcept {
  const __m512i lo = _mm512_zextsi256_si512(loadu256(a[b].qs));
  if constexpr (Two) return _mm512_inserti64x4(lo, loadu256(a[b + 1].qs), 1);
  return lo;
}

template <int R, bool Two>
inline void q8_0_step(const q8_0* w, index_t ldw, index_t b, const q8_0* a, __m512* acc) noexcept {
  const __m512i ya = act_pair<Two>(a, b);
  // -128 * sum(a) per lane, the correction of the +128 bias on the weights.
  const __m512i negc = _mm512_sub_epi32(
      _mm512_setzero_si512(),
      _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(0x80)), ya));
  const __m256 sc = pair_scales<q8_0, R, Two>(w, ldw, b, a);
  for (int r = 0; r < R; ++r) {
    __m512i q = _mm512_zextsi256_si512(loadu256(w[r * ldw + b].qs));
    if constexpr (Two) q = _mm512_inserti64x4(q, loadu256(w[r * ldw + b + 1].qs), 1);
    const __m512i s = _mm512_dpbusd_epi32(
        negc, _mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80))), ya);
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), row_scale(sc, r), acc[r]);
  }
}

template <int R>
inline void q8_0_rows(index_t nb, const q8_0* w, index_t ldw, const q8_0* a, float* y) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  index_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    prefetch_next<q8_0, R>(w, ldw, b, 2, 2);
    q8_0_step<R, true>(w, ldw, b, a, acc);
  }
  if (b < nb) q8_0_step<R, false>(w, ldw, b, a, acc);
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

template <int R, bool Two>
inline void q4_0_step(const q4_0* w, index_t ldw, index_t b, const q8_0* a, __m512* acc) noexcept {
  const __m512i ya = act_pair<Two>(a, b);
  // Lanes of 16 bytes: [lo nibbles of b, hi of b, lo of b + 1, hi of b + 1]; the high nibbles
  // are kept in place (16 x level), so their offset is 16 x 8 = 128.
  const __m512i offs = _mm512_set_epi64(
      static_cast<long long>(0x8080808080808080ull), static_cast<long long>(0x8080808080808080ull),
      0x0808080808080808ll, 0x0808080808080808ll, static_cast<long long>(0x8080808080808080ull),
      static_cast<long long>(0x8080808080808080ull), 0x0808080808080808ll, 0x0808080808080808ll);
  const __m512i nmask = _mm512_set_epi64(
      static_cast<long long>(0xf0f0f0f0f0f0f0f0ull), static_cast<long long>(0xf0f0f0f0f0f0f0f0ull),
      0x0f0f0f0f0f0f0f0fll, 0x0f0f0f0f0f0f0f0fll, static_cast<long long>(0xf0f0f0f0f0f0f0f0ull),
      static_cast<long long>(0xf0f0f0f0f0f0f0f0ull), 0x0f0f0f0f0f0f0f0fll, 0x0f0f0f0f0f0f0f0fll);
  const __m512i negc = _mm512_sub_epi32(_mm512_setzero_si512(),
                                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), offs, ya));
  const __m256 sc = pair_scales<q4_0, R, Two>(w, ldw, b, a);
  for (int r = 0; r < R; ++r) {
    __m512i q = _mm512_broadcast_i32x4(loadu128(w[r * ldw + b].qs));
    if constexpr (Two) q = _mm512_mask_broadcast_i32x4(q, 0xff00, loadu128(w[r * ldw + b + 1].qs));
    const __m512i s = _mm512_dpbusd_epi32(negc, _mm512_and_si512(q, nmask), ya);
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), row_scale(sc, r), acc[r]);
  }
}

template <int R>
inline void q4_0_rows(index_t nb, const q4_0* w, index_t ldw, const q8_0* a, float* y) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  index_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    prefetch_next<q4_0, R, true>(w, ldw, b, 2, 2);
    q4_0_step<R, true>(w, ldw, b, a, acc);
  }
  if (b < nb) q4_0_step<R, false>(w, ldw, b, a, acc);
  // The high-nibble lanes (4-7, 12-15) hold 16 x their sums.
  const __m512 fix = _mm512_set_ps(0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1, 0.0625f, 0.0625f,
                                   0.0625f, 0.0625f, 1, 1, 1, 1);
  for (int r = 0; r < R; ++r) y[r] = hsum(_mm512_mul_ps(acc[r], fix));
}

// q4_0 four blocks (128 weights) at a time: two 64-byte loads cover the 72 bytes of a row's 4
// blocks; one vpermt2b gathers the 4 x 16 nibble bytes, vpand / vgf2p8affineqb split them into
// low (elements 0-15 of each block) and high (16-31) levels, and two vpdpbusd multiply them with
// the activations arranged the same way (q4_0_act4, built once per call); one vpermw + vcvtph2ps
// spreads the 4 scales over their lanes. About 12 instructions per row and 4 blocks, against 7
// per 2 blocks plus the scalar scale gather of q4_0_step.
struct alignas(64) q4_0_act4 {
  __m512i lo, hi;  // activation bytes: block j's elements 0-15 (lo) / 16-31 (hi) in lanes 4j..4j+3
  __m512i negc;    // -8 x the sum of the activations each vpdpbusd lane multiplies
  __m512 d;        // the activation scale of block j in lanes 4j..4j+3
};

// Byte indices of vpermt2b / word indices of vpermw, built from the block layouts at compile
// time: byte 16 j + t of the result is byte Stride j + First + t - Base of the source pair.
struct idx_bytes {
  alignas(64) std::uint8_t v[64];
};
struct idx_words {
  alignas(64) std::uint16_t v[32];
};
template <int Stride, int First, int Base>
inline constexpr idx_bytes gather_idx16 = [] {
  idx_bytes r{};
  for (int j = 0; j < 4; ++j)
    for (int t = 0; t < 16; ++t)
      r.v[16 * j + t] = static_cast<std::uint8_t>(Stride * j + First + t - Base);
  return r;
}();
// Words 0-15: the scale of block i / 4, at word StrideWords · (i / 4).
template <int StrideWords>
inline constexpr idx_words scale_idx = [] {
  idx_words r{};
  for (int i = 0; i < 16; ++i) r.v[i] = static_cast<std::uint16_t>(StrideWords * (i / 4));
  return r;
}();
// q4_0: blocks 0-2's qs (bytes 18 j + 2) from the first 64-byte load, block 3's from the second
// (loaded at +8: indices 64 + 18 j + 2 + t - 8).
inline constexpr idx_bytes q4_0_qs_idx = [] {
  idx_bytes r{};
  for (int j = 0; j < 4; ++j)
    for (int t = 0; t < 16; ++t)
      r.v[16 * j + t] = static_cast<std::uint8_t>(j < 3 ? 18 * j + 2 + t : 64 + 18 * j + 2 + t - 8);
  return r;
}();
inline __m512i load_idx(const idx_bytes& i) noexcept {
  return _mm512_load_si512(i.v);
}
inline __m512i load_idx(const idx_words& i) noexcept {
  return _mm512_load_si512(i.v);
}

/// Arranges q8_0 activations for q4_0_rows4: groups of 4 blocks.
inline void arrange_q4_0_act(const q8_0* a, index_t groups, q4_0_act4* out) noexcept {
  // Block j of a group starts at byte 34 j; its qs at 34 j + 2. lo from bytes [0, 128), hi from
  // bytes [8, 136) of the group (the 4 blocks are 136 bytes).
  const __m512i idx_lo = load_idx(gather_idx16<34, 2, 0>);
  const __m512i idx_hi = load_idx(gather_idx16<34, 18, 8>);
  const __m512i idx_d = load_idx(scale_idx<17>);
  const __m512i eight = _mm512_set1_epi8(8);
  for (index_t g = 0; g < groups; ++g) {
    const char* p = reinterpret_cast<const char*>(a + 4 * g);
    const __m512i l0 = loadu512(p), l1 = loadu512(p + 64);
    const __m512i lo = _mm512_permutex2var_epi8(l0, idx_lo, l1);
    const __m512i hi = _mm512_permutex2var_epi8(loadu512(p + 8), idx_hi, loadu512(p + 72));
    out[g].lo = lo;
    out[g].hi = hi;
    out[g].negc = _mm512_sub_epi32(
        _mm512_setzero_si512(),
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, lo), eight, hi));
    out[g].d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(l0, idx_d, l1)));
  }
}

template <int R>
inline void q4_0_rows4(index_t nb, const q4_0* w, index_t ldw, const q8_0* a, const q4_0_act4* A4,
                       float* y) {
  __m512 acc[R], acc2[R];
  for (int r = 0; r < R; ++r) acc[r] = acc2[r] = _mm512_setzero_ps();
  const __m512i idx_q = load_idx(q4_0_qs_idx);
  const __m512i idx_d = load_idx(scale_idx<9>);
  const __m512i m4 = _mm512_set1_epi8(15), gf = _mm512_set1_epi64(gf_hi4);
  const index_t groups = nb / 4;
  for (index_t g = 0; g < groups; ++g) {
    prefetch_next<q4_0, R>(w, ldw, 4 * g, 4, 2);
    // And into L1, each row's group 2 steps ahead (its 72 bytes span 2 lines; prefetching past
    // the row's end touches the next row, which is fetched soon anyway). Measured A/B (2
    // threads, the GEMVs of a 1.1B Llama decode step, variants interleaved token by token):
    // 25.4 / 24.0 -> 27.0 / 25.2 GB/s in two runs; 1 or 4 groups ahead into L2 instead of 2,
    // or 1 / 4 groups ahead into L1, or 4-row groups: no better; no software prefetch: 13.7.
#ifndef TESSEL_NO_QPREFETCH
    for (int r = 0; r < R; ++r) {
      const char* p = reinterpret_cast<const char*>(w + r * ldw + 4 * g + 8);
      _mm_prefetch(p, _MM_HINT_T0);
      _mm_prefetch(p + 64, _MM_HINT_T0);
    }
#endif
    const q4_0_act4& A = A4[g];
    for (int r = 0; r < R; ++r) {
      const char* p = reinterpret_cast<const char*>(w + r * ldw + 4 * g);
      const __m512i w0 = loadu512(p);
      const __m512i q = _mm512_permutex2var_epi8(w0, idx_q, loadu512(p + 8));
      const __m512i s =
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(A.negc, _mm512_and_si512(q, m4), A.lo),
                              _mm512_gf2p8affine_epi64_epi8(q, gf, 0), A.hi);
      const __m512 dw =
          _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx_d, w0)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, A.d), acc[r]);
    }
  }
  index_t b = 4 * groups;
  for (; b + 2 <= nb; b += 2) q4_0_step<R, true>(w, ldw, b, a, acc2);
  if (b < nb) q4_0_step<R, false>(w, ldw, b, a, acc2);
  const __m512 fix = _mm512_set_ps(0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1, 0.0625f, 0.0625f,
                                   0.0625f, 0.0625f, 1, 1, 1, 1);
  for (int r = 0; r < R; ++r) y[r] = hsum(_mm512_fmadd_ps(acc2[r], fix, acc[r]));
}

// q4_k / q5_k 6-bit scales and mins as 8 bytes each (see get_scale_min_k4).
inline void k4_scales64(const std::uint8_t* s, std::uint64_t& sc, std::uint64_t& mn) noexcept {
  std::uint32_t u[3];
  std::memcpy(u, s, 12);
  const std::uint32_t sc0 = u[0] & 0x3f3f3f3fu, mn0 = u[1] & 0x3f3f3f3fu;
  const std::uint32_t sc1 = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
  const std::uint32_t mn1 = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
  sc = sc0 | (static_cast<std::uint64_t>(sc1) << 32);
  mn = mn0 | (static_cast<std::uint64_t>(mn1) << 32);
}

template <int R>
inline void q4_k_rows(index_t nb, const q4_k* w, index_t ldw, const q8_k* a, float* y) {
  __m512 acc[R];
  __m128 macc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps(), macc[r] = _mm_setzero_ps();
  // Half 0 (64-bit lanes 0-3): low nibbles; half 1: high nibbles.
  const __m512i gf =
      _mm512_set_epi64(gf_hi4, gf_hi4, gf_hi4, gf_hi4, gf_lo4, gf_lo4, gf_lo4, gf_lo4);
  // vpermw indices: chunk c takes scale 2c in words 0-15 and 2c + 1 in words 16-31.
  __m512i sidx[4];
  for (int c = 0; c < 4; ++c)
    sidx[c] =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(2 * c))),
                           _mm256_set1_epi16(static_cast<short>(2 * c + 1)), 1);
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next<q4_k, R>(w, ldw, b, 1, 1);
    prefetch_near<q4_k, R>(w, ldw, b, 4);
    const q8_k& A = a[b];
    const __m128i bsp = _mm_hadd_epi16(loadu128(A.bsums), loadu128(A.bsums + 8));
    for (int r = 0; r < R; ++r) {
      const q4_k& blk = w[r * ldw + b];
      std::uint64_t sc, mn;
      k4_scales64(blk.scales, sc, mn);
      const __m128i mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn)));
      const float dmin = f16f(blk.dmin) * A.d;
      macc[r] =
          _mm_fmadd_ps(_mm_cvtepi32_ps(_mm_madd_epi16(mins, bsp)), _mm_set1_ps(dmin), macc[r]);
      const __m512i scales =
          _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc))));
      __m512i sumi = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        const __m512i q =
            _mm512_gf2p8affine_epi64_epi8(_mm512_broadcast_i64x4(loadu256(blk.qs + 32 * c)), gf, 0);
        const __m512i p = _mm512_maddubs_epi16(q, loadu512(A.qs + 64 * c));
        sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(sidx[c], scales));
      }
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(f16f(blk.d) * A.d), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m128 m = _mm_add_ps(macc[r], _mm_movehl_ps(macc[r], macc[r]));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    y[r] = hsum(acc[r]) - _mm_cvtss_f32(m);
  }
}

template <int R>
inline void q6_k_rows(index_t nb, const q6_k* w, index_t ldw, const q8_k* a, float* y) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  // Elements 0-63 of a half: low nibbles of ql, high bits (0,1) then (2,3) of qh; 64-127: high
  // nibbles, bits (4,5) then (6,7).
  const __m512i gf_h_lo = _mm512_set_epi64(gf_h2<1>, gf_h2<1>, gf_h2<1>, gf_h2<1>, gf_h2<0>,
                                           gf_h2<0>, gf_h2<0>, gf_h2<0>);
  const __m512i gf_h_hi = _mm512_set_epi64(gf_h2<3>, gf_h2<3>, gf_h2<3>, gf_h2<3>, gf_h2<2>,
                                           gf_h2<2>, gf_h2<2>, gf_h2<2>);
  const __m512i m4 = _mm512_set1_epi8(15);
  // vpermw indices: vector k (64 elements) takes scales 4k..4k+3, 8 words each.
  __m512i sidx[4];
  for (int k = 0; k < 4; ++k)
    sidx[k] =
        _mm512_set_epi64(0x0001000100010001ll * (4 * k + 3), 0x0001000100010001ll * (4 * k + 3),
                         0x0001000100010001ll * (4 * k + 2), 0x0001000100010001ll * (4 * k + 2),
                         0x0001000100010001ll * (4 * k + 1), 0x0001000100010001ll * (4 * k + 1),
                         0x0001000100010001ll * (4 * k), 0x0001000100010001ll * (4 * k));
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next<q6_k, R>(w, ldw, b, 1, 1);
    const q8_k& A = a[b];
    const __m256i bsums = loadu256(A.bsums);
    for (int r = 0; r < R; ++r) {
      const q6_k& blk = w[r * ldw + b];
      const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(blk.scales));
      const __m512i scales = _mm512_castsi256_si512(sc16);
      // sum sc (q - 32) a = sum sc q a - 32 sum sc bsum.
      __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(
          _mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16, bsums), 5)));
      for (int h = 0; h < 2; ++h) {
        const __m512i ql = loadu512(blk.ql + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(loadu256(blk.qh + 32 * h));
        // (x & 15) | y: vpternlogd 0xEA = (A & B) | C with A = x, B = m4, C = y.
        const __m512i q0 =
            _mm512_ternarylogic_epi32(ql, m4, _mm512_gf2p8affine_epi64_epi8(qh, gf_h_lo, 0), 0xEA);
        const __m512i q1 = _mm512_ternarylogic_epi32(
            _mm512_srli_epi16(ql, 4), m4, _mm512_gf2p8affine_epi64_epi8(qh, gf_h_hi, 0), 0xEA);
        const __m512i p0 = _mm512_maddubs_epi16(q0, loadu512(A.qs + 128 * h));
        const __m512i p1 = _mm512_maddubs_epi16(q1, loadu512(A.qs + 128 * h + 64));
        sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_permutexvar_epi16(sidx[2 * h], scales));
        sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_permutexvar_epi16(sidx[2 * h + 1], scales));
      }
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(f16f(blk.d) * A.d), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

}  // namespace avx512
}  // namespace qdetail
}  // namespace tessel

#else

namespace tessel::qdetail {
template <class Arch>
inline constexpr bool use_avx512_qdot = false;
}  // namespace tessel::qdetail

#endif
