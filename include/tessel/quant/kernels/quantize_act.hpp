#pragma once
// Activation quantizers of the GEMV path: one row of f32 activations to the 8-bit formats the
// integer dot kernels pair with (q8_0 for the 32-element formats, q8_k for the K-quants).
//
//   qdetail::quantize_activation(x, y, n);   // y = F::quantize_row(x, n), F = q8_0 or q8_k
//
// Every GEMV quantizes its input once, in the calling thread, before the threads start: at
// K = 2048..11008 the scalar reference takes 2-10 µs, 1-3% of a 4-bit GEMV, so the AVX2 versions
// here do the same arithmetic eight lanes at a time. They produce the same bytes as the
// reference quantize_row (same products, round-to-nearest-even, same scale): the tests compare
// them byte for byte.

#include <cstring>

#include "tessel/backend/tags.hpp"
#include "tessel/quant/ggml_blocks.hpp"
#include "tessel/quant/kquants.hpp"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

namespace tessel::qdetail {

#if defined(__AVX2__) && defined(__F16C__)
inline float hmax8(__m256 v) noexcept {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

/// 32 int32 (four vectors) saturated to int8, in order.
inline void store_i8x32(__m256i a, __m256i b, __m256i c, __m256i d, std::int8_t* out) noexcept {
  // packs work within 128-bit lanes: the 32-bit groups come out as a0 b0 c0 d0 | a1 b1 c1 d1.
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  const __m256i fixed = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), fixed);
}

inline void quantize_q8_0_avx2(const float* x, q8_0* y, index_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (index_t i = 0; i < n / 32; ++i, x += 32) {
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 m =
        _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, abs_mask), _mm256_and_ps(v1, abs_mask)),
                      _mm256_max_ps(_mm256_and_ps(v2, abs_mask), _mm256_and_ps(v3, abs_mask)));
    const float amax = hmax8(m);
    const float d = amax / 127.f;
    const float id = d != 0 ? 1.f / d : 0.f;
    y[i].d = tof16(d);
    const __m256 s = _mm256_set1_ps(id);
    // cvtps rounds with the current mode (nearest-even by default), as std::nearbyint does.
    store_i8x32(_mm256_cvtps_epi32(_mm256_mul_ps(v0, s)), _mm256_cvtps_epi32(_mm256_mul_ps(v1, s)),
                _mm256_cvtps_epi32(_mm256_mul_ps(v2, s)), _mm256_cvtps_epi32(_mm256_mul_ps(v3, s)),
                y[i].qs);
  }
}

inline void quantize_q8_k_avx2(const float* x, q8_k* y, index_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (index_t i = 0; i < n / qk_k; ++i, x += qk_k) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < qk_k; j += 8)
      m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask));
    const float amax = hmax8(m);
    q8_k& b = y[i];
    if (amax == 0) {
      std::memset(&b, 0, sizeof b);
      continue;
    }
    // The first element of largest magnitude, with its sign (as signed_absmax picks it).
    float v = 0;
    const __m256 am = _mm256_set1_ps(amax);
    for (int j = 0; j < qk_k; j += 8) {
      const int hit = _mm256_movemask_ps(
          _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), am, _CMP_EQ_OQ));
      if (hit) {
        v = x[j + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -128.f / v;
    const __m256 s = _mm256_set1_ps(iscale);
    const __m256i top = _mm256_set1_epi32(127);
    for (int j = 0; j < qk_k; j += 32) {
      __m256i q[4];
      for (int u = 0; u < 4; ++u)
        q[u] = _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * u), s)), top);
      store_i8x32(q[0], q[1], q[2], q[3], b.qs + j);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int g = 0; g < 16; g += 2) {
      // 32 quants -> 16-bit -> pairwise sums (8 x int32): sums of 16 are lanes 0-3 / 4-7.
      const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * g));
      const __m128i q16b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * g + 16));
      const __m256i s0 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(q16), ones);
      const __m256i s1 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(q16b), ones);
      // hadd pairs within lanes: [s0 l0 pair sums, s1 l0 | s0 l1, s1 l1]
      __m256i h = _mm256_hadd_epi32(s0, s1);
      h = _mm256_hadd_epi32(h, h);
      // lane 0: s0(0..3) s1(0..3) ... as (s0 lo-half, s1 lo-half); lane 1: the high halves.
      const int a0 = _mm256_extract_epi32(h, 0) + _mm256_extract_epi32(h, 4);
      const int a1 = _mm256_extract_epi32(h, 1) + _mm256_extract_epi32(h, 5);
      b.bsums[g] = static_cast<std::int16_t>(a0);
      b.bsums[g + 1] = static_cast<std::int16_t>(a1);
    }
    b.d = 1.f / iscale;
  }
}
#endif

/// y = F::quantize_row(x, n) for the activation formats, vectorized where Backend's Arch has
/// AVX2 (the same bytes either way).
template <class Backend = default_backend, class F>
inline void quantize_activation(const float* x, F* y, index_t n) {
#if defined(__AVX2__) && defined(__F16C__)  // only lets the AVX2 versions compile
  if constexpr (is_cpu_simd_v<Backend>) {
    if constexpr (arch_has_avx2_v<typename Backend::arch>) {
      if constexpr (std::is_same_v<F, q8_0>) {
        check_row(F::name, n, F::block_elems);
        return quantize_q8_0_avx2(x, y, n);
      } else if constexpr (std::is_same_v<F, q8_k>) {
        check_row(F::name, n, F::block_elems);
        return quantize_q8_k_avx2(x, y, n);
      }
    }
  }
#endif
  F::quantize_row(x, y, n);
}

}  // namespace tessel::qdetail
