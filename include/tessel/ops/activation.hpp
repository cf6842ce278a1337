#pragma once
// Elementwise activations over contiguous f32 arrays, as kernel-table entries (one op per
// function; a row is an array of its length):
//
//   kernel<op::silu, B>::run(x, n);              // x[i] = silu(x[i]) = x / (1 + e^−x)
//   kernel<op::silu_mul, B>::run(s, m, out, n);  // out[i] = silu(s[i]) · m[i] (SwiGLU's gate,
//                                                // Mamba's output gate; out may alias s or m)
//   kernel<op::gelu, B>::run(x, n, kind);        // x[i] = gelu(x[i]): gelu_kind::erf (exact),
//                                                // ::tanh (GPT-2) or ::quick (CLIP: x·σ(1.702x))
//   kernel<op::geglu, B>::run(h, M, F, a);       // a[i, j] = h[i, j] · gelu_erf(h[i, F + j]),
//                                                // rows i < M of h [M, 2F] (GEGLU)
//
// cpu_scalar: the references (std::exp, std::erf, std::tanh) on the calling thread.
// cpu_simd<Arch>: vectors of Arch; arrays longer than 16 Ki elements are spread over the pool
// in chunks of that size (a shorter one, such as one row, runs on the calling thread).

#include <algorithm>
#include <cmath>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/shape.hpp"

namespace tessel {

/// The GELU variants: the exact erf form, the tanh approximation (GPT-2), and the sigmoid
/// approximation x·σ(1.702 x) (OpenAI's CLIP, "quick_gelu").
enum class gelu_kind { erf, tanh, quick };

namespace op {
/// x = silu(x) in place.
struct silu {};
/// out = silu(s) · m.
struct silu_mul {};
/// x = gelu(x) in place, of a gelu_kind.
struct gelu {};
/// a = h[:, :F] · gelu_erf(h[:, F:]) by rows.
struct geglu {};
}  // namespace op

namespace detail {

inline float silu(float x) noexcept {
  return x / (1.0f + std::exp(-x));
}
inline float gelu(float x, gelu_kind k) noexcept {
  switch (k) {
    case gelu_kind::erf:
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case gelu_kind::tanh: {
      const float c = 0.79788456080286536f;  // sqrt(2/pi)
      return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
    }
    case gelu_kind::quick:
      return x / (1.0f + std::exp(-1.702f * x));
  }
  return x;
}

template <class V>
V gelu_erf_simd(const V& x) noexcept {
  return V(0.5f) * x * (V(1.0f) + xsimd::erf(x * V(0.70710678118654752f)));
}

// The row functions are not inlined: with a static length GCC 12 raises a false
// -Waggressive-loop-optimizations in their tail loops, and a call per chunk or row costs
// nothing next to it. (noipa: no constant-propagated clones either.)
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
  for (; i < n; ++i) x[i] = silu(x[i]);
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
  for (; i < n; ++i) out[i] = silu(s[i]) * m[i];
}

/// The tanh form as x·σ(2u) (0.5·(1 + tanh u) = σ(2u)): one exp instead of a tanh.
template <class Arch>
[[gnu::noipa]] void gelu_row_simd(float* x, index_t n, gelu_kind k) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  const V one(1.0f);
  index_t i = 0;
  switch (k) {
    case gelu_kind::erf:
      for (; i + W <= n; i += W) gelu_erf_simd(V::load_unaligned(x + i)).store_unaligned(x + i);
      break;
    case gelu_kind::tanh: {
      const V c2(-1.5957691216057308f), a(0.044715f);  // −2·sqrt(2/pi)
      for (; i + W <= n; i += W) {
        const V v = V::load_unaligned(x + i);
        (v / (one + xsimd::exp(c2 * (v + a * v * v * v)))).store_unaligned(x + i);
      }
      break;
    }
    case gelu_kind::quick: {
      const V c(-1.702f);
      for (; i + W <= n; i += W) {
        const V v = V::load_unaligned(x + i);
        (v / (one + xsimd::exp(c * v))).store_unaligned(x + i);
      }
      break;
    }
  }
  for (; i < n; ++i) x[i] = gelu(x[i], k);
}

inline constexpr index_t activation_grain = 16384;  // elements per parallel chunk

/// f(lo, hi) over [0, n): on the calling thread up to one chunk, else over the pool.
template <class F>
void activation_chunks(index_t n, F&& f) {
  if (n <= activation_grain) return f(index_t{0}, n);
  parallel_for(0, n, activation_grain, f);
}

}  // namespace detail

template <>
struct kernel<op::silu, cpu_scalar> {
  static void run(float* x, index_t n) {
    for (index_t i = 0; i < n; ++i) x[i] = detail::silu(x[i]);
  }
};
template <class Arch>
struct kernel<op::silu, cpu_simd<Arch>> {
  static void run(float* x, index_t n) {
    detail::activation_chunks(
        n, [&](index_t lo, index_t hi) { detail::silu_row_simd<Arch>(x + lo, hi - lo); });
  }
};

template <>
struct kernel<op::silu_mul, cpu_scalar> {
  static void run(const float* s, const float* m, float* out, index_t n) {
    for (index_t i = 0; i < n; ++i) out[i] = detail::silu(s[i]) * m[i];
  }
};
template <class Arch>
struct kernel<op::silu_mul, cpu_simd<Arch>> {
  static void run(const float* s, const float* m, float* out, index_t n) {
    detail::activation_chunks(n, [&](index_t lo, index_t hi) {
      detail::silu_mul_row_simd<Arch>(s + lo, m + lo, out + lo, hi - lo);
    });
  }
};

template <>
struct kernel<op::gelu, cpu_scalar> {
  static void run(float* x, index_t n, gelu_kind k) {
    for (index_t i = 0; i < n; ++i) x[i] = detail::gelu(x[i], k);
  }
};
template <class Arch>
struct kernel<op::gelu, cpu_simd<Arch>> {
  static void run(float* x, index_t n, gelu_kind k) {
    detail::activation_chunks(
        n, [&](index_t lo, index_t hi) { detail::gelu_row_simd<Arch>(x + lo, hi - lo, k); });
  }
};

template <>
struct kernel<op::geglu, cpu_scalar> {
  static void run(const float* h, index_t M, index_t F, float* a) {
    for (index_t i = 0; i < M; ++i)
      for (index_t j = 0; j < F; ++j)
        a[i * F + j] = h[i * 2 * F + j] * detail::gelu(h[i * 2 * F + F + j], gelu_kind::erf);
  }
};
template <class Arch>
struct kernel<op::geglu, cpu_simd<Arch>> {
  /// Threaded over rows, vectorized with xsimd's erf.
  static void run(const float* h, index_t M, index_t F, float* a) {
    using V = xsimd::batch<float, Arch>;
    constexpr index_t W = static_cast<index_t>(V::size);
    parallel_for(0, M, std::max<index_t>(1, 8192 / std::max<index_t>(F, 1)),
                 [&](index_t lo, index_t hi) {
                   for (index_t i = lo; i < hi; ++i) {
                     const float* x = h + i * 2 * F;
                     const float* g = x + F;
                     float* o = a + i * F;
                     index_t j = 0;
                     for (; j + W <= F; j += W)
                       (V::load_unaligned(x + j) * detail::gelu_erf_simd(V::load_unaligned(g + j)))
                           .store_unaligned(o + j);
                     for (; j < F; ++j) o[j] = x[j] * detail::gelu(g[j], gelu_kind::erf);
                   }
                 });
  }
};

}  // namespace tessel
