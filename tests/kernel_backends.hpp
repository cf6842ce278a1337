#pragma once
// What the kernel tests share: the SIMD backends a kernel is checked on (the build's best
// instruction set and, where it is wider, AVX2 + FMA and SSE2, so a kernel's vector width is
// seen to follow its Arch, not the build's flags) and seeded uniform random inputs.

#include <random>
#include <tessel/backend/tags.hpp>
#include <tessel/core/shape.hpp>
#include <tuple>
#include <vector>

namespace tessel::test {

#if XSIMD_WITH_AVX512BW
using table_backends =
    std::tuple<cpu_simd<cpu_best_arch>, cpu_simd<xsimd::fma3<xsimd::avx2>>, cpu_simd<xsimd::sse2>>;
#elif XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2
using table_backends = std::tuple<cpu_simd<cpu_best_arch>, cpu_simd<xsimd::sse2>>;
#else
using table_backends = std::tuple<cpu_simd<cpu_best_arch>>;
#endif

/// n values uniform in [lo, hi), the same for the same seed.
inline std::vector<float> random_floats(index_t n, unsigned seed, float lo = -4.f, float hi = 4.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace tessel::test
