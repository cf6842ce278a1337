#pragma once
// Number formats as types: f32, f16, bf16, f8_e4m3, f8_e5m2, i8, i32.
//
// Narrow floats are standard-layout structs holding their bits, so a buffer read from a file
// can be viewed as an array of them. Conversion to f32 is exact; conversion from f32 rounds to
// nearest, ties to even, keeps NaN a NaN, overflows to Inf (f16, bf16, e5m2) or NaN (e4m3,
// which has no Inf, as in the OCP FP8 "fn" variant), and produces subnormals.

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace tessel {

using f32 = float;
using i8 = std::int8_t;
using i32 = std::int32_t;

namespace detail {

// Encode a float into a small binary float with E exponent bits and M mantissa bits
// (bias 2^(E-1)-1). `ieee_inf`: the all-ones exponent means Inf/NaN (IEEE style); otherwise
// only the all-ones pattern is NaN and there is no Inf (e4m3fn).
template <int E, int M, bool ieee_inf>
constexpr std::uint32_t encode_small_float(float f) noexcept {
  constexpr int bias = (1 << (E - 1)) - 1;
  constexpr std::uint32_t sign_bit = 1u << (E + M);
  constexpr std::uint32_t exp_all = (1u << E) - 1;
  constexpr std::uint32_t inf_pattern = exp_all << M;
  constexpr std::uint32_t nan_pattern =
      ieee_inf ? (inf_pattern | (1u << (M - 1))) : ((exp_all << M) | ((1u << M) - 1));
  constexpr std::uint32_t max_finite = ieee_inf ? inf_pattern - 1 : nan_pattern - 1;

  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 31) ? sign_bit : 0u;
  const std::uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | nan_pattern;
  if (a == 0x7f800000u) return sign | (ieee_inf ? inf_pattern : nan_pattern);

  const int e32 = static_cast<int>(a >> 23);
  // f32 subnormals have the exponent of the smallest normal and no implicit bit.
  const std::uint32_t mant = (a & 0x7fffffu) | (e32 != 0 ? 0x800000u : 0u);
  int e = (e32 != 0 ? e32 : 1) - 127 + bias;  // target biased exponent
  int shift = 23 - M;
  if (e < 1) {  // subnormal in the target format
    shift += 1 - e;
    e = 0;
  }
  if (shift >= 25) return sign;  // below half the smallest subnormal: rounds to zero
  const std::uint32_t q0 = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  const std::uint32_t q = q0 + ((rem > half || (rem == half && (q0 & 1u))) ? 1u : 0u);
  // Adding q (which includes the implicit bit) carries into the exponent on its own.
  const std::uint64_t r =
      e >= 1 ? (static_cast<std::uint64_t>(e - 1) << M) + q : static_cast<std::uint64_t>(q);
  if (r > max_finite) return sign | (ieee_inf ? inf_pattern : nan_pattern);
  return sign | static_cast<std::uint32_t>(r);
}

template <int E, int M, bool ieee_inf>
constexpr float decode_small_float(std::uint32_t h) noexcept {
  constexpr int bias = (1 << (E - 1)) - 1;
  constexpr std::uint32_t exp_all = (1u << E) - 1;
  const std::uint32_t sign = (h >> (E + M)) & 1u;
  const std::uint32_t e = (h >> M) & exp_all;
  const std::uint32_t m = h & ((1u << M) - 1u);
  std::uint32_t bits;
  if (e == exp_all && (ieee_inf || m == (1u << M) - 1u)) {
    bits = (ieee_inf && m == 0) ? 0x7f800000u : 0x7fc00000u;
  } else if (e == 0) {
    // Subnormal: m * 2^(1 - bias - M), exact in f32.
    const float v = static_cast<float>(m) *
                    std::bit_cast<float>(static_cast<std::uint32_t>((127 + 1 - bias - M) << 23));
    bits = std::bit_cast<std::uint32_t>(v);
  } else {
    bits = ((e - bias + 127) << 23) | (m << (23 - M));
  }
  return std::bit_cast<float>(bits | (sign << 31));
}

}  // namespace detail

/// IEEE 754 binary16.
struct f16 {
  std::uint16_t bits;
};
/// bfloat16: the upper half of an f32.
struct bf16 {
  std::uint16_t bits;
};
/// OCP FP8 E4M3 ("fn": no Inf, NaN is S.1111.111, max 448).
struct f8_e4m3 {
  std::uint8_t bits;
};
/// OCP FP8 E5M2 (IEEE-like: Inf and NaN).
struct f8_e5m2 {
  std::uint8_t bits;
};
static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2 && sizeof(f8_e4m3) == 1 &&
              sizeof(f8_e5m2) == 1);

// ---- scalar conversions ---------------------------------------------------------------

inline float to_f32(f16 h) noexcept {
#if defined(__F16C__)
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.bits)));
#else
  return detail::decode_small_float<5, 10, true>(h.bits);
#endif
}
inline float to_f32(bf16 h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h.bits) << 16);
}
constexpr float to_f32(f8_e4m3 h) noexcept {
  return detail::decode_small_float<4, 3, false>(h.bits);
}
constexpr float to_f32(f8_e5m2 h) noexcept {
  return detail::decode_small_float<5, 2, true>(h.bits);
}
constexpr float to_f32(float x) noexcept {
  return x;
}
constexpr float to_f32(std::int8_t x) noexcept {
  return static_cast<float>(x);
}
constexpr float to_f32(std::int32_t x) noexcept {
  return static_cast<float>(x);
}

template <class T>
T from_f32(float x) noexcept;

template <>
inline f16 from_f32<f16>(float x) noexcept {
#if defined(__F16C__)
  return f16{static_cast<std::uint16_t>(
      _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT), 0))};
#else
  return f16{static_cast<std::uint16_t>(detail::encode_small_float<5, 10, true>(x))};
#endif
}
template <>
inline bf16 from_f32<bf16>(float x) noexcept {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((u >> 16) | 0x40u)};
  return bf16{static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}
template <>
inline f8_e4m3 from_f32<f8_e4m3>(float x) noexcept {
  return f8_e4m3{static_cast<std::uint8_t>(detail::encode_small_float<4, 3, false>(x))};
}
template <>
inline f8_e5m2 from_f32<f8_e5m2>(float x) noexcept {
  return f8_e5m2{static_cast<std::uint8_t>(detail::encode_small_float<5, 2, true>(x))};
}
template <>
inline float from_f32<float>(float x) noexcept {
  return x;
}
/// f32 -> i8 rounds to nearest even and saturates to [-128, 127]; NaN gives 0.
template <>
inline std::int8_t from_f32<std::int8_t>(float x) noexcept {
  if (!(x == x)) return 0;
  if (x >= 127.f) return 127;
  if (x <= -128.f) return -128;
  return static_cast<std::int8_t>(__builtin_nearbyintf(x));
}
template <>
inline std::int32_t from_f32<std::int32_t>(float x) noexcept {
  if (!(x == x)) return 0;
  if (x >= 2147483520.f) return 2147483647;
  if (x <= -2147483648.f) return -2147483647 - 1;
  return static_cast<std::int32_t>(__builtin_nearbyintf(x));
}

/// Software (formula) versions, used where F16C is absent and as a cross-check in tests.
constexpr float f16_bits_to_f32_soft(std::uint16_t h) noexcept {
  return detail::decode_small_float<5, 10, true>(h);
}
constexpr std::uint16_t f32_to_f16_bits_soft(float x) noexcept {
  return static_cast<std::uint16_t>(detail::encode_small_float<5, 10, true>(x));
}

// ---- element traits -----------------------------------------------------------------

template <class T>
struct element_traits {
  static constexpr bool is_element = false;
};
#define TESSEL_ELEMENT(T, NAME, FLOAT)              \
  template <>                                       \
  struct element_traits<T> {                        \
    static constexpr bool is_element = true;        \
    static constexpr bool is_floating = FLOAT;      \
    static constexpr std::string_view name = NAME;  \
    static constexpr std::size_t bytes = sizeof(T); \
  };
TESSEL_ELEMENT(float, "f32", true)
TESSEL_ELEMENT(f16, "f16", true)
TESSEL_ELEMENT(bf16, "bf16", true)
TESSEL_ELEMENT(f8_e4m3, "f8_e4m3", true)
TESSEL_ELEMENT(f8_e5m2, "f8_e5m2", true)
TESSEL_ELEMENT(std::int8_t, "i8", false)
TESSEL_ELEMENT(std::int32_t, "i32", false)
#undef TESSEL_ELEMENT

/// An element type tessel computes with (converted to f32 for arithmetic).
template <class T>
concept Element = element_traits<std::remove_cv_t<T>>::is_element;

// ---- bulk row conversion (SIMD where the instructions exist) --------------------------

/// dst[i] = to_f32(src[i]) for i < n.
template <Element T>
inline void convert_to_f32(const T* src, float* dst, std::int64_t n) noexcept {
  std::int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    if (n > 0) std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
#if defined(__F16C__) && defined(__AVX2__)
  if constexpr (std::is_same_v<T, f16>) {
    for (; i + 8 <= n; i += 8) {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
  } else if constexpr (std::is_same_v<T, bf16>) {
    for (; i + 8 <= n; i += 8) {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
  }
#endif
  for (; i < n; ++i) dst[i] = to_f32(src[i]);
}

/// dst[i] = from_f32<T>(src[i]) for i < n (round to nearest even).
template <Element T>
inline void convert_from_f32(const float* src, T* dst, std::int64_t n) noexcept {
  std::int64_t i = 0;
#if defined(__F16C__) && defined(__AVX2__)
  if constexpr (std::is_same_v<T, f16>) {
    for (; i + 8 <= n; i += 8) {
      __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    }
  }
#endif
  for (; i < n; ++i) dst[i] = from_f32<T>(src[i]);
}

}  // namespace tessel
