#pragma once
// Elementwise activations on raw f32 arrays, through the kernel table:
//
//   kernel<op::silu, Backend>::run(x, n);               // x[i] = silu(x[i]) = x / (1 + e^−x)
//   kernel<op::silu_mul, Backend>::run(s, m, out, n);   // out[i] = silu(s[i]) · m[i]
//
// out may alias s or m. The cpu_simd<Arch> kernels use vectors of Arch and spread chunks of
// 16 Ki elements over the pool; the cpu_scalar ones are the references (std::exp).

#include <cmath>

#include "../backend/tags.hpp"
#include "../backend/thread_pool.hpp"
#include "../core/shape.hpp"

namespace tessel {

namespace op {
/// x = silu(x) in place.
struct silu {};
/// out = silu(s) · m (a SwiGLU gate; Mamba's output gate).
struct silu_mul {};
}  // namespace op

namespace detail {

inline float silu_ref(float x) noexcept {
  return x / (1.0f + std::exp(-x));
}

// Not inlined: with a static length GCC 12 raises a false -Waggressive-loop-optimizations in
// the tail loops, and a call per chunk costs nothing next to the chunk.
template <class Arch>
[[gnu::noipa]] void silu_row_simd(float* x, index_t n) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  const V one(1.0f);
  index_t i = 0;
  for (; i + W <= n; i += W) {
    const V v = V::load_unaligned(x + i);
    (v / (one + xsimd::exp(-v))).store_unaligned(x + i);
  }
  for (; i < n; ++i) x[i] = silu_ref(x[i]);
}

template <class Arch>
[[gnu::noipa]] void silu_mul_row_simd(const float* s, const float* m, float* out, index_t n) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  const V one(1.0f);
  index_t i = 0;
  for (; i + W <= n; i += W) {
    const V v = V::load_unaligned(s + i);
    (v / (one + xsimd::exp(-v)) * V::load_unaligned(m + i)).store_unaligned(out + i);
  }
  for (; i < n; ++i) out[i] = silu_ref(s[i]) * m[i];
}

inline constexpr index_t activation_grain = 16384;  // elements per parallel chunk

}  // namespace detail

template <>
struct kernel<op::silu, cpu_scalar> {
  static void run(float* x, index_t n) {
    for (index_t i = 0; i < n; ++i) x[i] = detail::silu_ref(x[i]);
  }
};
template <class Arch>
struct kernel<op::silu, cpu_simd<Arch>> {
  static void run(float* x, index_t n) {
    if (n <= detail::activation_grain) return detail::silu_row_simd<Arch>(x, n);
    parallel_for(0, n, detail::activation_grain,
                 [&](index_t lo, index_t hi) { detail::silu_row_simd<Arch>(x + lo, hi - lo); });
  }
};

template <>
struct kernel<op::silu_mul, cpu_scalar> {
  static void run(const float* s, const float* m, float* out, index_t n) {
    for (index_t i = 0; i < n; ++i) out[i] = detail::silu_ref(s[i]) * m[i];
  }
};
template <class Arch>
struct kernel<op::silu_mul, cpu_simd<Arch>> {
  static void run(const float* s, const float* m, float* out, index_t n) {
    if (n <= detail::activation_grain) return detail::silu_mul_row_simd<Arch>(s, m, out, n);
    parallel_for(0, n, detail::activation_grain, [&](index_t lo, index_t hi) {
      detail::silu_mul_row_simd<Arch>(s + lo, m + lo, out + lo, hi - lo);
    });
  }
};

}  // namespace tessel
