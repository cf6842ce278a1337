// Number formats against formulas written here, independently of core/numeric.hpp:
// every f16 and bf16 bit pattern, every fp8 pattern, and the rounding of every midpoint.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <tessel/core/numeric.hpp>

using namespace tessel;

namespace {

// IEEE-style binary float value by the textbook formula, in double.
double formula(std::uint32_t bits, int E, int M, bool ieee_inf) {
  const int bias = (1 << (E - 1)) - 1;
  const std::uint32_t sign = (bits >> (E + M)) & 1u;
  const std::uint32_t e = (bits >> M) & ((1u << E) - 1u);
  const std::uint32_t m = bits & ((1u << M) - 1u);
  const double s = sign ? -1.0 : 1.0;
  if (e == (1u << E) - 1u) {
    if (ieee_inf) return m == 0 ? s * INFINITY : NAN;
    if (m == (1u << M) - 1u) return NAN;  // e4m3fn: only S.1111.111 is NaN
  }
  if (e == 0) return s * std::ldexp(static_cast<double>(m), 1 - bias - M);
  return s * std::ldexp(1.0 + static_cast<double>(m) / (1u << M), static_cast<int>(e) - bias);
}

bool same(double want, float got) {
  if (std::isnan(want)) return std::isnan(got);
  return static_cast<double>(got) == want && std::signbit(want) == std::signbit(got);
}

// Round-to-nearest-even oracle for a positive finite x between two neighbours lo < hi of the
// target format, whose encodings are lo_bits and lo_bits + 1.
template <class T, int E, int M, bool ieee_inf>
void check_rounding_all_midpoints() {
  const std::uint32_t n_pos = 1u << (E + M);  // positive patterns
  int checked = 0;
  for (std::uint32_t b = 0; b + 1 < n_pos; ++b) {
    const double lo = formula(b, E, M, ieee_inf), hi = formula(b + 1, E, M, ieee_inf);
    if (!std::isfinite(lo) || !std::isfinite(hi)) continue;
    const double mid = 0.5 * (lo + hi);
    const float fm = static_cast<float>(mid);
    REQUIRE(static_cast<double>(fm) == mid);  // midpoints of narrow formats are exact in f32
    const std::uint32_t even = (b % 2 == 0) ? b : b + 1;
    CHECK(from_f32<T>(fm).bits == even);
    CHECK(from_f32<T>(-fm).bits == (even | (1u << (E + M))));
    const float above = std::nextafter(fm, INFINITY), below = std::nextafter(fm, 0.f);
    CHECK(from_f32<T>(above).bits == b + 1);
    CHECK(from_f32<T>(below).bits == b);
    CHECK(from_f32<T>(static_cast<float>(lo)).bits == b);
    ++checked;
  }
  CHECK(checked > 0);
}

}  // namespace

TEST_CASE("f16 -> f32 for all 65536 bit patterns matches the formula") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const double want = formula(b, 5, 10, true);
    const f16 h{static_cast<std::uint16_t>(b)};
    INFO("bits " << b);
    CHECK(same(want, to_f32(h)));
    CHECK(same(want, f16_bits_to_f32_soft(h.bits)));
  }
}

TEST_CASE("f16 round trip of all non-NaN patterns is exact; NaN stays NaN") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const f16 h{static_cast<std::uint16_t>(b)};
    const float x = to_f32(h);
    if (std::isnan(x)) {
      CHECK(std::isnan(to_f32(from_f32<f16>(x))));
      CHECK(std::isnan(f16_bits_to_f32_soft(f32_to_f16_bits_soft(x))));
    } else {
      CHECK(from_f32<f16>(x).bits == b);
      CHECK(f32_to_f16_bits_soft(x) == b);
    }
  }
}

TEST_CASE("f32 -> f16 rounds every midpoint to even, and overflows to Inf") {
  check_rounding_all_midpoints<f16, 5, 10, true>();
  // Largest finite 65504; the midpoint to the next (65536 would be 2^16) is 65520.
  CHECK(from_f32<f16>(65519.996f).bits == 0x7bff);
  CHECK(from_f32<f16>(65520.f).bits == 0x7c00);
  CHECK(from_f32<f16>(1e30f).bits == 0x7c00);
  CHECK(from_f32<f16>(-1e30f).bits == 0xfc00);
  // Half the smallest subnormal (2^-25) rounds to zero (even); just above rounds up.
  CHECK(from_f32<f16>(std::ldexp(1.f, -25)).bits == 0);
  CHECK(from_f32<f16>(std::nextafter(std::ldexp(1.f, -25), 1.f)).bits == 1);
  CHECK(from_f32<f16>(std::numeric_limits<float>::denorm_min()).bits == 0);
  CHECK(from_f32<f16>(-0.f).bits == 0x8000);
}

TEST_CASE("software and F16C f32 -> f16 agree on random and special floats") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(bits(rng));
    if (std::isnan(x)) continue;
    INFO("x bits " << std::bit_cast<std::uint32_t>(x));
    REQUIRE(from_f32<f16>(x).bits == f32_to_f16_bits_soft(x));
  }
}

TEST_CASE("bf16 -> f32 for all 65536 bit patterns matches the formula") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const double want = formula(b, 8, 7, true);
    INFO("bits " << b);
    CHECK(same(want, to_f32(bf16{static_cast<std::uint16_t>(b)})));
  }
}

TEST_CASE("f32 -> bf16: exact round trip, midpoints to even, NaN kept") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float x = to_f32(bf16{static_cast<std::uint16_t>(b)});
    if (std::isnan(x)) {
      CHECK(std::isnan(to_f32(from_f32<bf16>(x))));
    } else {
      CHECK(from_f32<bf16>(x).bits == b);
    }
  }
  check_rounding_all_midpoints<bf16, 8, 7, true>();
  CHECK(from_f32<bf16>(std::numeric_limits<float>::max()).bits == 0x7f80);  // rounds up to Inf
  // A NaN whose payload lives only in the low half must not become Inf.
  CHECK(std::isnan(to_f32(from_f32<bf16>(std::bit_cast<float>(0x7f800001u)))));
}

TEST_CASE("fp8 e4m3 and e5m2: all patterns, midpoints, saturation rules") {
  for (std::uint32_t b = 0; b < 256; ++b) {
    INFO("bits " << b);
    CHECK(same(formula(b, 4, 3, false), to_f32(f8_e4m3{static_cast<std::uint8_t>(b)})));
    CHECK(same(formula(b, 5, 2, true), to_f32(f8_e5m2{static_cast<std::uint8_t>(b)})));
    const float x4 = to_f32(f8_e4m3{static_cast<std::uint8_t>(b)});
    if (!std::isnan(x4)) CHECK(from_f32<f8_e4m3>(x4).bits == b);
    const float x5 = to_f32(f8_e5m2{static_cast<std::uint8_t>(b)});
    if (!std::isnan(x5)) CHECK(from_f32<f8_e5m2>(x5).bits == b);
  }
  check_rounding_all_midpoints<f8_e4m3, 4, 3, false>();
  check_rounding_all_midpoints<f8_e5m2, 5, 2, true>();
  CHECK(to_f32(from_f32<f8_e4m3>(448.f)) == 448.f);
  CHECK(to_f32(from_f32<f8_e4m3>(464.f)) == 448.f);     // tie to even (0x7e)
  CHECK(std::isnan(to_f32(from_f32<f8_e4m3>(480.f))));  // past the top: no Inf
  CHECK(std::isnan(to_f32(from_f32<f8_e4m3>(INFINITY))));
  CHECK(std::isinf(to_f32(from_f32<f8_e5m2>(61440.f))));  // midpoint 57344..65536
  CHECK(to_f32(from_f32<f8_e5m2>(61439.f)) == 57344.f);
}

TEST_CASE("int8 and int32 conversions round to nearest even and saturate") {
  CHECK(from_f32<std::int8_t>(2.5f) == 2);
  CHECK(from_f32<std::int8_t>(3.5f) == 4);
  CHECK(from_f32<std::int8_t>(-2.5f) == -2);
  CHECK(from_f32<std::int8_t>(300.f) == 127);
  CHECK(from_f32<std::int8_t>(-300.f) == -128);
  CHECK(from_f32<std::int8_t>(NAN) == 0);
  CHECK(from_f32<std::int32_t>(1e20f) == std::numeric_limits<std::int32_t>::max());
  CHECK(from_f32<std::int32_t>(-7.5f) == -8);
}

TEST_CASE("bulk row conversions equal the scalar ones, tails included") {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 100.f);
  for (int n : {0, 1, 7, 8, 9, 31, 100}) {
    std::vector<float> x(static_cast<std::size_t>(n)), back(static_cast<std::size_t>(n));
    for (auto& v : x) v = nd(rng);
    std::vector<f16> h(static_cast<std::size_t>(n));
    std::vector<bf16> b(static_cast<std::size_t>(n));
    convert_from_f32(x.data(), h.data(), n);
    convert_from_f32(x.data(), b.data(), n);
    for (int i = 0; i < n; ++i) {
      CHECK(h[static_cast<std::size_t>(i)].bits ==
            f32_to_f16_bits_soft(x[static_cast<std::size_t>(i)]));
      CHECK(b[static_cast<std::size_t>(i)].bits ==
            from_f32<bf16>(x[static_cast<std::size_t>(i)]).bits);
    }
    convert_to_f32(h.data(), back.data(), n);
    for (int i = 0; i < n; ++i)
      CHECK(back[static_cast<std::size_t>(i)] ==
            f16_bits_to_f32_soft(h[static_cast<std::size_t>(i)].bits));
    convert_to_f32(b.data(), back.data(), n);
    for (int i = 0; i < n; ++i)
      CHECK(back[static_cast<std::size_t>(i)] == to_f32(b[static_cast<std::size_t>(i)]));
  }
}
