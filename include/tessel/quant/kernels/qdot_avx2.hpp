#pragma once
// AVX2 row dot products of quantized weights (kernel<qdot_op, cpu_simd<A>, F> for an Arch with
// AVX2: arch_has_avx2_v; other architectures use the references of qdot.hpp).
//
// Integer formats use the GGUF engines' scheme: unsigned levels times signed 8-bit activations
// with vpmaddubsw, pairs summed with vpmaddwd, one f32 FMA per (sub-)block. Offsets (q4_0's -8,
// q6_k's -32) and mins are applied afterwards through the activations' block sums, so the
// unpacking stays at shift-and-mask. Four rows are walked together so that each activation
// block is loaded once for four weight streams. nf4 / int_group dequantize in registers and
// use f32 FMAs. Per-block integer sums equal the reference exactly; only the f32 summation
// order differs.

#include <vector>

#include "qdot.hpp"
#include "qdot_avx512.hpp"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

namespace tessel {
namespace qdetail {

inline float hsum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline int hsum_i32(__m256i v) noexcept {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}
inline __m256i loadu256(const void* p) noexcept {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// The R rows of a group are R interleaved streams, which the hardware prefetchers follow
// poorly when rows are short (2.3 KB for q4_0 at K = 4096). The rows of a chunk are contiguous,
// so while a group is computed the next group's bytes are prefetched in one linear sweep: at
// block step b, the step's share (R blocks' worth) of the next group.
template <class F, int R>
inline void prefetch_next_group(const F* w, index_t ldw, index_t b) noexcept {
#ifndef TESSEL_NO_QPREFETCH
  const char* p =
      reinterpret_cast<const char*>(w + R * ldw) + static_cast<std::size_t>(b) * R * sizeof(F);
  for (std::size_t o = 0; o < R * sizeof(F); o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
#else
  (void)w, (void)ldw, (void)b;
#endif
}

// Rows of a chunk are processed R at a time; `body<R>(w_rows, y)` does R rows.
// G rows per group: measured best per format (more rows share activation loads; the
// K-quants' per-row work is large enough that one row at a time schedules better).
template <int G, class Body>
inline void for_row_groups(index_t rows, Body&& body) {
  index_t r = 0;
  for (; r + G <= rows; r += G) body.template operator()<G>(r);
  for (; r < rows; ++r) body.template operator()<1>(r);
}

template <int R>
inline void q8_0_rows(index_t nb, const q8_0* w, index_t ldw, const q8_0* a, float* y) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<q8_0, R>(w, ldw, b);
    const __m256i ya = loadu256(a[b].qs);
    const float da = f16f(a[b].d);
    for (int r = 0; r < R; ++r) {
      const q8_0& blk = w[r * ldw + b];
      const __m256i wq = loadu256(blk.qs);
      // |w| * sign(a, w) = w * a with the unsigned operand vpmaddubsw needs.
      const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(wq), _mm256_sign_epi8(ya, wq));
      const __m256i s = _mm256_madd_epi16(p, ones);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(f16f(blk.d) * da), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

template <int R>
inline void q4_0_rows(index_t nb, const q4_0* w, index_t ldw, const q8_0* a, float* y) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(15),
                eights = _mm256_set1_epi8(8);
  // Lane 1 of the broadcast 16 bytes shifts by 4: low nibbles in lane 0, high in lane 1.
  const __m256i nshift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<q4_0, R>(w, ldw, b);
    const __m256i ya = loadu256(a[b].qs);
    // sum (q - 8) a = sum q a - 8 sum a, the second term once per activation block.
    const __m256i ysum8 = _mm256_madd_epi16(_mm256_maddubs_epi16(eights, ya), ones);
    const float da = f16f(a[b].d);
    __m256 scale[R];
    if constexpr (R == 4) {
      // The four rows' f16 scales converted in one instruction (the bit gathering runs on
      // the scalar ALUs, which the vector loop leaves idle).
      std::uint64_t bits = 0;
      for (int r = 0; r < R; ++r)
        bits |= static_cast<std::uint64_t>(w[r * ldw + b].d.bits) << (16 * r);
      const __m128 d4 = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(bits))),
                                   _mm_set1_ps(da));
      const __m256 d8 = _mm256_set_m128(d4, d4);
      scale[0] = _mm256_shuffle_ps(d8, d8, 0x00);
      scale[1] = _mm256_shuffle_ps(d8, d8, 0x55);
      scale[2] = _mm256_shuffle_ps(d8, d8, 0xaa);
      scale[3] = _mm256_shuffle_ps(d8, d8, 0xff);
    } else {
      for (int r = 0; r < R; ++r) scale[r] = _mm256_set1_ps(f16f(w[r * ldw + b].d) * da);
    }
    for (int r = 0; r < R; ++r) {
      const q4_0& blk = w[r * ldw + b];
      const __m256i q =
          _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs)));
      const __m256i qq = _mm256_and_si256(_mm256_srlv_epi32(q, nshift), m4);
      const __m256i s =
          _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(qq, ya), ones), ysum8);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale[r], acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

// q4_k / q5_k 6-bit scales and mins as 8 bytes each (see get_scale_min_k4).
inline void k4_scales(const std::uint8_t* s, std::uint32_t sc[2], std::uint32_t mn[2]) noexcept {
  std::uint32_t u[3];
  std::memcpy(u, s, 12);
  sc[0] = u[0] & 0x3f3f3f3fu;
  mn[0] = u[1] & 0x3f3f3f3fu;
  sc[1] = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
  mn[1] = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
}

template <int R>
inline void q4_k_rows(index_t nb, const q4_k* w, index_t ldw, const q8_k* a, float* y) {
  __m256 acc[R];
  float macc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps(), macc[r] = 0;
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256i smask[8];  // broadcast 16-bit scale j to all lanes
  for (int j = 0; j < 8; ++j)
    smask[j] = _mm256_set1_epi16(static_cast<short>(((2 * j + 1) << 8) | (2 * j)));
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<q4_k, R>(w, ldw, b);
    const q8_k& A = a[b];
    const __m128i bs_lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(A.bsums));
    const __m128i bs_hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(A.bsums + 8));
    const __m128i bsp = _mm_hadd_epi16(bs_lo, bs_hi);  // sums of the 8 sub-blocks of 32
    for (int r = 0; r < R; ++r) {
      const q4_k& blk = w[r * ldw + b];
      std::uint32_t sc[2], mn[2];
      k4_scales(blk.scales, sc, mn);
      const __m128i mins =
          _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(mn[1]), static_cast<int>(mn[0])));
      const __m128i mp = _mm_madd_epi16(mins, bsp);
      __m128i ms = _mm_add_epi32(mp, _mm_unpackhi_epi64(mp, mp));
      ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 1));
      const __m256i scales = _mm256_broadcastsi128_si256(
          _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(sc[1]), static_cast<int>(sc[0]))));
      __m256i sumi = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        const __m256i q = loadu256(blk.qs + 32 * c);
        const __m256i lo = _mm256_and_si256(q, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, loadu256(A.qs + 64 * c)),
                                              _mm256_shuffle_epi8(scales, smask[2 * c]));
        const __m256i phi =
            _mm256_madd_epi16(_mm256_maddubs_epi16(hi, loadu256(A.qs + 64 * c + 32)),
                              _mm256_shuffle_epi8(scales, smask[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
      }
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16f(blk.d) * A.d), acc[r]);
      macc[r] += f16f(blk.dmin) * A.d * static_cast<float>(_mm_cvtsi128_si32(ms));
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]) - macc[r];
}

template <int R>
inline void q6_k_rows(index_t nb, const q6_k* w, index_t ldw, const q8_k* a, float* y) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
  __m256i smask[4];  // lane 0: scale 2k of the half, lane 1: scale 2k + 1
  for (int k = 0; k < 4; ++k)
    smask[k] =
        _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(((4 * k + 3) << 8) | (4 * k + 2))),
                         _mm_set1_epi16(static_cast<short>(((4 * k + 1) << 8) | (4 * k))));
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<q6_k, R>(w, ldw, b);
    const q8_k& A = a[b];
    const __m256i bsums = loadu256(A.bsums);
    for (int r = 0; r < R; ++r) {
      const q6_k& blk = w[r * ldw + b];
      const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
      // sum sc (q - 32) a = sum sc q a - 32 sum sc bsum.
      __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8), bsums), 5);
      sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
      for (int h = 0; h < 2; ++h) {
        const __m256i scales = _mm256_broadcastsi128_si256(
            _mm_cvtepi8_epi16(h == 0 ? sc8 : _mm_unpackhi_epi64(sc8, sc8)));
        const __m256i ql0 = loadu256(blk.ql + 64 * h), ql1 = loadu256(blk.ql + 64 * h + 32);
        const __m256i qh = loadu256(blk.qh + 32 * h);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                               _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
        q[1] =
            _mm256_or_si256(_mm256_and_si256(ql1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
        q[2] =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
        q[3] =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
        for (int k = 0; k < 4; ++k) {
          const __m256i p = _mm256_maddubs_epi16(q[k], loadu256(A.qs + 128 * h + 32 * k));
          sumi =
              _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(scales, smask[k])));
        }
      }
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16f(blk.d) * A.d), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

// 32 bits -> 32 bytes, 0xFF where the bit is set (byte j <- bit j).
inline __m256i bits_to_bytes(const std::uint8_t* p) noexcept {
  std::uint32_t x;
  std::memcpy(&x, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(x)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i probe = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, probe), probe);
}

// The 32-element formats other than q4_0 / q8_0: unsigned levels (offset or min applied after).
template <class F, int R>
inline void q32_rows(index_t nb, const F* w, index_t ldw, const act_t<F>* a, float* y) {
  constexpr bool has_min = requires(F f) {
    f.m;
  };
  constexpr bool five = requires(F f) {
    f.qh;
  };
  __m256 acc[R];
  float macc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps(), macc[r] = 0;
  const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(15),
                off = _mm256_set1_epi8(five ? 16 : 8), b5 = _mm256_set1_epi8(16);
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<F, R>(w, ldw, b);
    const __m256i ya = loadu256(a[b].qs);
    __m256i yoff = _mm256_setzero_si256();
    if constexpr (!has_min) yoff = _mm256_madd_epi16(_mm256_maddubs_epi16(off, ya), ones);
    const float da = f16f(a[b].d);
    for (int r = 0; r < R; ++r) {
      const F& blk = w[r * ldw + b];
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs));
      __m256i qq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
      if constexpr (five) qq = _mm256_or_si256(qq, _mm256_and_si256(bits_to_bytes(blk.qh), b5));
      __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(qq, ya), ones);
      if constexpr (!has_min) s = _mm256_sub_epi32(s, yoff);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(f16f(blk.d) * da), acc[r]);
      if constexpr (has_min) macc[r] += f16f(blk.m) * f16f(a[b].s);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]) + macc[r];
}
template <int R>
inline void q4_1_rows(index_t nb, const q4_1* w, index_t ldw, const q8_1* a, float* y) {
  q32_rows<q4_1, R>(nb, w, ldw, a, y);
}
template <int R>
inline void q5_0_rows(index_t nb, const q5_0* w, index_t ldw, const q8_0* a, float* y) {
  q32_rows<q5_0, R>(nb, w, ldw, a, y);
}
template <int R>
inline void q5_1_rows(index_t nb, const q5_1* w, index_t ldw, const q8_1* a, float* y) {
  q32_rows<q5_1, R>(nb, w, ldw, a, y);
}

template <int R>
inline void q5_k_rows(index_t nb, const q5_k* w, index_t ldw, const q8_k* a, float* y) {
  __m256 acc[R];
  float macc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps(), macc[r] = 0;
  const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
  __m256i smask[8];
  for (int j = 0; j < 8; ++j)
    smask[j] = _mm256_set1_epi16(static_cast<short>(((2 * j + 1) << 8) | (2 * j)));
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<q5_k, R>(w, ldw, b);
    const q8_k& A = a[b];
    const __m128i bsp =
        _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(A.bsums)),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(A.bsums + 8)));
    for (int r = 0; r < R; ++r) {
      const q5_k& blk = w[r * ldw + b];
      std::uint32_t sc[2], mn[2];
      k4_scales(blk.scales, sc, mn);
      const __m128i mp = _mm_madd_epi16(
          _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(mn[1]), static_cast<int>(mn[0]))),
          bsp);
      __m128i ms = _mm_add_epi32(mp, _mm_unpackhi_epi64(mp, mp));
      ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 1));
      const __m256i scales = _mm256_broadcastsi128_si256(
          _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(sc[1]), static_cast<int>(sc[0]))));
      const __m256i qh = loadu256(blk.qh);
      __m256i sumi = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        const __m256i q = loadu256(blk.qs + 32 * c);
        const __m256i hlo =
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
        const __m256i hhi =
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), hlo);
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), hhi);
        sumi = _mm256_add_epi32(sumi,
                                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, loadu256(A.qs + 64 * c)),
                                                  _mm256_shuffle_epi8(scales, smask[2 * c])));
        sumi = _mm256_add_epi32(
            sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, loadu256(A.qs + 64 * c + 32)),
                                    _mm256_shuffle_epi8(scales, smask[2 * c + 1])));
      }
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16f(blk.d) * A.d), acc[r]);
      macc[r] += f16f(blk.dmin) * A.d * static_cast<float>(_mm_cvtsi128_si32(ms));
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]) - macc[r];
}

// q2_k and q3_k: 2-bit fields at shift 2j of 32 bytes, 16 sub-blocks of 16 with 16-bit
// scales in `sc16` (lane 0 takes scale 2k, lane 1 scale 2k + 1 of each half).
template <bool Three>
inline __m256i k23_sum(const std::uint8_t* qs, const std::uint8_t* hmask, const std::int8_t* a,
                       const std::int16_t* sc16) {
  const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  __m256i sumi = _mm256_setzero_si256();
  const __m256i hm = Three ? loadu256(hmask) : _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h) {
    const __m256i q = loadu256(qs + 32 * h);
    for (int j = 0; j < 4; ++j) {
      __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
      if constexpr (Three)  // the high bit set means "not minus 4": level + 4 in [0, 7]
        v = _mm256_or_si256(
            v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), one), 2));
      const int g = 8 * h + 2 * j;
      const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(sc16[g + 1]), _mm_set1_epi16(sc16[g]));
      sumi = _mm256_add_epi32(
          sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(v, loadu256(a + 128 * h + 32 * j)), scale));
    }
  }
  return sumi;
}

template <int R>
inline void q2_k_rows(index_t nb, const q2_k* w, index_t ldw, const q8_k* a, float* y) {
  __m256 acc[R];
  float macc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps(), macc[r] = 0;
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<q2_k, R>(w, ldw, b);
    const q8_k& A = a[b];
    const __m256i bsums = loadu256(A.bsums);
    for (int r = 0; r < R; ++r) {
      const q2_k& blk = w[r * ldw + b];
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
      const __m256i mins =
          _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15)));
      alignas(32) std::int16_t sc16[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc16),
                         _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(15))));
      const __m256i sumi = k23_sum<false>(blk.qs, nullptr, A.qs, sc16);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16f(blk.d) * A.d), acc[r]);
      macc[r] +=
          f16f(blk.dmin) * A.d * static_cast<float>(hsum_i32(_mm256_madd_epi16(mins, bsums)));
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]) - macc[r];
}

template <int R>
inline void q3_k_rows(index_t nb, const q3_k* w, index_t ldw, const q8_k* a, float* y) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (index_t b = 0; b < nb; ++b) {
    prefetch_next_group<q3_k, R>(w, ldw, b);
    const q8_k& A = a[b];
    const __m256i bsums = loadu256(A.bsums);
    for (int r = 0; r < R; ++r) {
      const q3_k& blk = w[r * ldw + b];
      alignas(32) std::int16_t sc16[16];
      for (int j = 0; j < 16; ++j) sc16[j] = static_cast<std::int16_t>(blk.scale(j) - 32);
      // sum sc (v - 4) a = sum sc v a - 4 sum sc bsum.
      const __m256i corr = _mm256_slli_epi32(
          _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(sc16)), bsums), 2);
      const __m256i sumi = _mm256_sub_epi32(k23_sum<true>(blk.qs, blk.hmask, A.qs, sc16), corr);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16f(blk.d) * A.d), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

// NF4: the 16 levels are two 8-entry tables; vpermps picks within one, bit 3 chooses. The
// tables are scaled by the block's absmax, so the FMAs go straight into 8 independent
// accumulators (one FMA chain would be latency-bound).
inline void nf4_rows1(index_t nb, const nf4* w, index_t ldw, const float* x, float* y) {
  const __m256 lo = _mm256_loadu_ps(nf4_levels), hi = _mm256_loadu_ps(nf4_levels + 8);
  const __m256i m15 = _mm256_set1_epi32(15);
  __m256 acc[8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (index_t b = 0; b < nb; ++b, x += 64) {
    prefetch_next_group<nf4, 1>(w, ldw, b);
    const __m256 am = _mm256_set1_ps(w[b].absmax);
    const __m256 slo = _mm256_mul_ps(lo, am), shi = _mm256_mul_ps(hi, am);
    for (int j = 0; j < 32; j += 8) {
      const __m256i q =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w[b].qs + j)));
      const __m256i i0 = _mm256_and_si256(q, m15), i1 = _mm256_srli_epi32(q, 4);
      const __m256 v0 =
          _mm256_blendv_ps(_mm256_permutevar8x32_ps(slo, i0), _mm256_permutevar8x32_ps(shi, i0),
                           _mm256_castsi256_ps(_mm256_slli_epi32(i0, 28)));
      const __m256 v1 =
          _mm256_blendv_ps(_mm256_permutevar8x32_ps(slo, i1), _mm256_permutevar8x32_ps(shi, i1),
                           _mm256_castsi256_ps(_mm256_slli_epi32(i1, 28)));
      acc[j / 8] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + j), acc[j / 8]);
      acc[4 + j / 8] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + j + 32), acc[4 + j / 8]);
    }
  }
  *y = hsum(
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
                    _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7]))));
}

// Integer groups: (q - zero) widened to f32; 4 accumulators per group, then one FMA by the
// group's scale.
template <int Bits, index_t G, bool Asym>
inline void int_group_rows1(index_t nb, const int_group<Bits, G, Asym>* w, index_t ldw,
                            const float* x, float* y) {
  using F = int_group<Bits, G, Asym>;
  __m256 tot = _mm256_setzero_ps();
  const __m256i m15 = _mm256_set1_epi32(15);
  for (index_t b = 0; b < nb; ++b, x += G) {
    prefetch_next_group<F, 1>(w, ldw, b);
    const F& blk = w[b];
    const __m256i z = _mm256_set1_epi32(blk.zero);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    if constexpr (Bits == 4) {
      for (int j = 0; j < G / 2; j += 8) {
        const __m256i q =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.qs + j)));
        const __m256 v0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(q, m15), z));
        const __m256 v1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(q, 4), z));
        acc[(j / 8) % 2] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + j), acc[(j / 8) % 2]);
        acc[2 + (j / 8) % 2] =
            _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + j + G / 2), acc[2 + (j / 8) % 2]);
      }
    } else {
      for (int j = 0; j < G; j += 8) {
        const __m256i q =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.qs + j)));
        acc[(j / 8) % 4] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, z)),
                                           _mm256_loadu_ps(x + j), acc[(j / 8) % 4]);
      }
    }
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    tot = _mm256_fmadd_ps(sum, _mm256_set1_ps(f16f(blk.scale)), tot);
  }
  *y = hsum(tot);
}

}  // namespace qdetail

#define TESSEL_QDOT_AVX2(FMT, FN, G)                                                               \
  template <class Arch>                                                                            \
  requires arch_has_avx2_v<Arch>                                                                   \
  struct kernel<qdot_op, cpu_simd<Arch>, FMT> {                                                    \
    using act = qdetail::act_t<FMT>;                                                               \
    static void run(index_t nb, const FMT* w, index_t ldw, index_t rows, const act* a, float* y) { \
      qdetail::for_row_groups<G>(                                                                  \
          rows, [&]<int R>(index_t r) { qdetail::FN<R>(nb, w + r * ldw, ldw, a, y + r); });        \
    }                                                                                              \
  };
// The hot formats have AVX-512 kernels (qdot_avx512.hpp), used when Arch is an AVX-512
// architecture and the translation unit has the instructions; G512 rows per group there.
#if defined(TESSEL_QDOT_AVX512)
#define TESSEL_QDOT_AVX2_512(FMT, FN, G, G512)                                                     \
  template <class Arch>                                                                            \
  requires arch_has_avx2_v<Arch>                                                                   \
  struct kernel<qdot_op, cpu_simd<Arch>, FMT> {                                                    \
    using act = qdetail::act_t<FMT>;                                                               \
    static void run(index_t nb, const FMT* w, index_t ldw, index_t rows, const act* a, float* y) { \
      if constexpr (qdetail::use_avx512_qdot<Arch>) {                                              \
        qdetail::for_row_groups<G512>(rows, [&]<int R>(index_t r) {                                \
          qdetail::avx512::FN<R>(nb, w + r * ldw, ldw, a, y + r);                                  \
        });                                                                                        \
      } else {                                                                                     \
        qdetail::for_row_groups<G>(                                                                \
            rows, [&]<int R>(index_t r) { qdetail::FN<R>(nb, w + r * ldw, ldw, a, y + r); });      \
      }                                                                                            \
    }                                                                                              \
  };
#else
#define TESSEL_QDOT_AVX2_512(FMT, FN, G, G512) TESSEL_QDOT_AVX2(FMT, FN, G)
#endif
// Rows per group under AVX-512 (G512), measured A/B with the L2 prefetch of qdot_avx512.hpp (2
// threads, variants interleaved call by call in one process, GB/s at 4096 x 4096 / 11008 x 4096
// / 4096 x 11008, and the GEMVs of a 1.1B Llama decode step at K = 2048 / 5632):
//   q8_0 2 rows against 4: 27.2 / 26.3 / 25.5 -> 32.0 / 29.5 / 28.3, decode 26.0 -> 30.8.
//   q4_0 2 rows against 4: 23.0 / 23.2 / 22.9 -> 25.8 / 25.8 / 23.5, decode 22.5 -> 24.3;
//        1 row 19.9 / 19.7 / 19.4, 3 rows 24.0 / 24.1 / 23.5 (4 rows 23.5 / 23.6 / 23.2).
//   q4_k 4 rows against 2: 24.7 / 24.6 / 23.7 -> 25.4 / 25.1 / 25.8.
//   q6_k 4 rows against 2: 30.3 / 25.5 / 29.5 -> 30.1 / 30.1 / 29.8 in one run, 28.7 / 28.8 /
//        28.2 -> 28.6 / 28.4 / 28.6 in another.
TESSEL_QDOT_AVX2_512(q8_0, q8_0_rows, 4, 2)
#if defined(TESSEL_QDOT_AVX512)
// q4_0 under AVX-512: the 4-block kernel, with the activations arranged once per call.
template <class Arch>
requires arch_has_avx2_v<Arch>
struct kernel<qdot_op, cpu_simd<Arch>, q4_0> {
  using act = qdetail::act_t<q4_0>;
  static void run(index_t nb, const q4_0* w, index_t ldw, index_t rows, const act* a, float* y) {
    if constexpr (qdetail::use_avx512_qdot<Arch>) {
      thread_local std::vector<qdetail::avx512::q4_0_act4> buf;
      if (buf.size() < static_cast<std::size_t>(nb / 4))
        buf.resize(static_cast<std::size_t>(nb / 4));
      qdetail::avx512::arrange_q4_0_act(a, nb / 4, buf.data());
      const qdetail::avx512::q4_0_act4* a4 = buf.data();
      qdetail::for_row_groups<2>(rows, [&]<int R>(index_t r) {
        qdetail::avx512::q4_0_rows4<R>(nb, w + r * ldw, ldw, a, a4, y + r);
      });
    } else {
      qdetail::for_row_groups<4>(
          rows, [&]<int R>(index_t r) { qdetail::q4_0_rows<R>(nb, w + r * ldw, ldw, a, y + r); });
    }
  }
};
#else
TESSEL_QDOT_AVX2(q4_0, q4_0_rows, 4)
#endif
TESSEL_QDOT_AVX2_512(q4_k, q4_k_rows, 1, 4)
TESSEL_QDOT_AVX2_512(q6_k, q6_k_rows, 2, 4)
TESSEL_QDOT_AVX2(q4_1, q4_1_rows, 4)
TESSEL_QDOT_AVX2(q5_0, q5_0_rows, 4)
TESSEL_QDOT_AVX2(q5_1, q5_1_rows, 4)
TESSEL_QDOT_AVX2(q2_k, q2_k_rows, 1)
TESSEL_QDOT_AVX2(q3_k, q3_k_rows, 1)
TESSEL_QDOT_AVX2(q5_k, q5_k_rows, 1)
#undef TESSEL_QDOT_AVX2
#undef TESSEL_QDOT_AVX2_512

template <class Arch>
requires arch_has_avx2_v<Arch>
struct kernel<qdot_op, cpu_simd<Arch>, nf4> {
  static void run(index_t nb, const nf4* w, index_t ldw, index_t rows, const float* x, float* y) {
    for (index_t r = 0; r < rows; ++r) qdetail::nf4_rows1(nb, w + r * ldw, ldw, x, y + r);
  }
};
template <class Arch, int Bits, index_t G, bool Asym>
requires arch_has_avx2_v<Arch>
struct kernel<qdot_op, cpu_simd<Arch>, int_group<Bits, G, Asym>> {
  static void run(index_t nb, const int_group<Bits, G, Asym>* w, index_t ldw, index_t rows,
                  const float* x, float* y) {
    for (index_t r = 0; r < rows; ++r) qdetail::int_group_rows1(nb, w + r * ldw, ldw, x, y + r);
  }
};

// FP8 widened through f16, which holds both formats exactly: e5m2 is the upper byte of an
// f16; e4m3's exponent bias is 8 below f16's, so its 7 magnitude bits shifted into place read
// as an f16 2^8 too small (subnormals included), fixed by one multiply at the end.
template <class Arch, class E>
requires(Fp8<E>&& arch_has_avx2_v<Arch>) struct kernel<qdot_op, cpu_simd<Arch>, E> {
  static __m256 widen8(const E* p) noexcept {
    const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    if constexpr (std::is_same_v<E, f8_e5m2>) {
      return _mm256_cvtph_ps(_mm_slli_epi16(b, 8));
    } else {
      const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8),
                                     _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7f)), 7));
      return _mm256_cvtph_ps(h);
    }
  }
  static void run(index_t K, const E* w, index_t ldw, index_t rows, const float* x, float* y) {
    constexpr float fix = std::is_same_v<E, f8_e4m3> ? 256.f : 1.f;
    for (index_t r = 0; r < rows; ++r) {
      const E* row = w + r * ldw;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      index_t k = 0;
      for (; k + 16 <= K; k += 16) {
        a0 = _mm256_fmadd_ps(widen8(row + k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(widen8(row + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      }
      float s = qdetail::hsum(_mm256_add_ps(a0, a1)) * fix;
      for (; k < K; ++k) s += to_f32(row[k]) * x[k];
      y[r] = s;
    }
  }
};

namespace qdetail {

// Row dequantization for the GEMM tiles (the same products as the references; only a
// possible FMA contraction of the reference's d*q - m can differ, by an ulp).
inline void store_levels(__m128i bytes16, __m256 scale, __m256 sub, float* y) noexcept {
  const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes16));
  const __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(bytes16, 8)));
  _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(a, scale), sub));
  _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(b, scale), sub));
}
// 32 signed bytes -> 32 floats scaled (and shifted).
inline void store_levels32(__m256i q, __m256 scale, __m256 sub, float* y) noexcept {
  store_levels(_mm256_castsi256_si128(q), scale, sub, y);
  store_levels(_mm256_extracti128_si256(q, 1), scale, sub, y + 16);
}

template <class F>
inline void dequantize_row_fast(const F* x, float* y, index_t n) {
  const __m256 zero = _mm256_setzero_ps();
  if constexpr (std::is_same_v<F, q8_0>) {
    check_row(F::name, n, F::block_elems);
    for (index_t i = 0; i < n / 32; ++i, y += 32)
      store_levels32(loadu256(x[i].qs), _mm256_set1_ps(f16f(x[i].d)), zero, y);
  } else if constexpr (std::is_same_v<F, q4_0>) {
    check_row(F::name, n, F::block_elems);
    const __m256i m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    const __m256i nshift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    for (index_t i = 0; i < n / 32; ++i, y += 32) {
      const __m256i q =
          _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs)));
      const __m256i v = _mm256_sub_epi8(_mm256_and_si256(_mm256_srlv_epi32(q, nshift), m4), eight);
      store_levels32(v, _mm256_set1_ps(f16f(x[i].d)), zero, y);
    }
  } else if constexpr (std::is_same_v<F, q4_k>) {
    check_row(F::name, n, F::block_elems);
    const __m256i m4 = _mm256_set1_epi8(15);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k) {
      const float d = f16f(x[i].d), dmin = f16f(x[i].dmin);
      for (int c = 0; c < 4; ++c) {
        std::uint8_t sc0, m0, sc1, m1;
        get_scale_min_k4(2 * c, x[i].scales, sc0, m0);
        get_scale_min_k4(2 * c + 1, x[i].scales, sc1, m1);
        const __m256i q = loadu256(x[i].qs + 32 * c);
        store_levels32(_mm256_and_si256(q, m4), _mm256_set1_ps(d * sc0), _mm256_set1_ps(dmin * m0),
                       y + 64 * c);
        store_levels32(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_set1_ps(d * sc1),
                       _mm256_set1_ps(dmin * m1), y + 64 * c + 32);
      }
    }
  } else if constexpr (std::is_same_v<F, q6_k>) {
    check_row(F::name, n, F::block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k) {
      alignas(32) std::int8_t q[256];
      x[i].unpack(q);
      const float d = f16f(x[i].d);
      for (int g = 0; g < 16; ++g)
        store_levels(_mm_load_si128(reinterpret_cast<const __m128i*>(q + 16 * g)),
                     _mm256_set1_ps(d * static_cast<float>(x[i].scales[g])), zero, y + 16 * g);
    }
  } else {
    F::dequantize_row(x, y, n);
  }
}

}  // namespace qdetail

}  // namespace tessel
#endif
