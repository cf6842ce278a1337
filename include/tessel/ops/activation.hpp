#pragma once
// Elementwise activations over one contiguous f32 row, as kernel-table entries:
//   op::silu_row       run(x, n):          x[i] = silu(x[i])
//   op::silu_mul_row   run(s, m, out, n):  out[i] = silu(s[i]) · m[i] (out may alias s or m)
//   op::gelu_row       run(x, n, tanh):    x[i] = gelu(x[i]), the tanh approximation if tanh
// Not inlined: with a static row length GCC 12 raises a false -Waggressive-loop-optimizations
// in their tail loops, and a call per row costs nothing next to the row. (noipa: no
// constant-propagated clones either.)

#include <cmath>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/tags.hpp"
#include "tessel/core/shape.hpp"

namespace tessel {

namespace op {
struct silu_row {};
struct silu_mul_row {};
struct gelu_row {};
}  // namespace op

namespace detail {

inline float silu(float x) noexcept {
  return x / (1.0f + std::exp(-x));
}
/// The exact erf form, or GPT-2's tanh approximation.
inline float gelu(float x, bool tanh_approx) noexcept {
  if (!tanh_approx) return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
  const float c = 0.79788456080286536f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
}

}  // namespace detail

template <>
struct kernel<op::silu_row, cpu_scalar> {
  [[gnu::noipa]] static void run(float* x, index_t n) {
    for (index_t i = 0; i < n; ++i) x[i] = detail::silu(x[i]);
  }
};
template <class Arch>
struct kernel<op::silu_row, cpu_simd<Arch>> {
  [[gnu::noipa]] static void run(float* x, index_t n) {
    using V = xsimd::batch<float, Arch>;
    constexpr index_t W = static_cast<index_t>(V::size);
    const V one(1.0f);
    index_t i = 0;
    for (; i + W <= n; i += W) {
      const V v = V::load_unaligned(x + i);
      (v / (one + xsimd::exp(-v))).store_unaligned(x + i);
    }
    for (; i < n; ++i) x[i] = detail::silu(x[i]);
  }
};

template <>
struct kernel<op::silu_mul_row, cpu_scalar> {
  [[gnu::noipa]] static void run(const float* s, const float* m, float* out, index_t n) {
    for (index_t i = 0; i < n; ++i) out[i] = detail::silu(s[i]) * m[i];
  }
};
template <class Arch>
struct kernel<op::silu_mul_row, cpu_simd<Arch>> {
  [[gnu::noipa]] static void run(const float* s, const float* m, float* out, index_t n) {
    using V = xsimd::batch<float, Arch>;
    constexpr index_t W = static_cast<index_t>(V::size);
    const V one(1.0f);
    index_t i = 0;
    for (; i + W <= n; i += W) {
      const V v = V::load_unaligned(s + i);
      (v / (one + xsimd::exp(-v)) * V::load_unaligned(m + i)).store_unaligned(out + i);
    }
    for (; i < n; ++i) out[i] = detail::silu(s[i]) * m[i];
  }
};

// No SIMD version (the SIMD backends fall back to this one): GELU runs once per MLP hidden
// element, next to two matrix products over it.
template <>
struct kernel<op::gelu_row, cpu_scalar> {
  [[gnu::noipa]] static void run(float* x, index_t n, bool tanh_approx) {
    for (index_t i = 0; i < n; ++i) x[i] = detail::gelu(x[i], tanh_approx);
  }
};

}  // namespace tessel
