#pragma once
// Element and row kernels of the diffusion layers (U-Net, VAE), found through the kernel table:
//
//   kernel<op::silu_inplace, B>::run(x, n);         // x[i] = x[i] · sigmoid(x[i])
//   kernel<op::geglu, B>::run(h, M, F, a);          // a[i, j] = h[i, j] · GELU_erf(h[i, F + j])
//   kernel<op::scaled_softmax_rows, B>::run(s, M, L, scale);   // each row: softmax(scale · row)
//
// cpu_scalar runs the plain loops on one thread; cpu_simd<Arch> runs Arch's vectors, threaded.

#include <algorithm>
#include <cmath>

#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/ops/activations.hpp"
#include "tessel/ops/softmax.hpp"

namespace tessel {

namespace op {
/// x[i] = SiLU(x[i]) for i < n: op::silu itself (ops/activations.hpp), kept under this name
/// for the diffusion layers.
using silu_inplace = silu;
/// a[i, j] = h[i, j] · GELU_erf(h[i, F + j]) for rows i < M of h [M, 2F]: GEGLU.
struct geglu {};
/// Row i < M of s [M, L] becomes softmax(scale · s[i]) (attention scores).
struct scaled_softmax_rows {};
}  // namespace op

namespace detail {
inline float gelu_erf_scalar(float x) noexcept {
  return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
}
}  // namespace detail

template <>
struct kernel<op::geglu, cpu_scalar> {
  static void run(const float* h, index_t M, index_t F, float* a) {
    for (index_t i = 0; i < M; ++i)
      for (index_t j = 0; j < F; ++j)
        a[i * F + j] = h[i * 2 * F + j] * detail::gelu_erf_scalar(h[i * 2 * F + F + j]);
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
                   const V half(0.5f), one(1.0f), rsqrt2(0.70710678118654752f);
                   for (index_t i = lo; i < hi; ++i) {
                     const float* x = h + i * 2 * F;
                     const float* g = x + F;
                     float* o = a + i * F;
                     index_t j = 0;
                     for (; j + W <= F; j += W) {
                       const V gv = V::load_unaligned(g + j);
                       const V ge = half * gv * (one + xsimd::erf(gv * rsqrt2));
                       (V::load_unaligned(x + j) * ge).store_unaligned(o + j);
                     }
                     for (; j < F; ++j) o[j] = x[j] * detail::gelu_erf_scalar(g[j]);
                   }
                 });
  }
};

template <>
struct kernel<op::scaled_softmax_rows, cpu_scalar> {
  static void run(float* s, index_t M, index_t L, float scale) {
    for (index_t i = 0; i < M; ++i) {
      float* r = s + i * L;
      for (index_t j = 0; j < L; ++j) r[j] *= scale;
      detail::softmax_row_reference(r, r, L);
    }
  }
};
template <class Arch>
struct kernel<op::scaled_softmax_rows, cpu_simd<Arch>> {
  static void run(float* s, index_t M, index_t L, float scale) {
    parallel_for(0, M, std::max<index_t>(1, 4096 / std::max<index_t>(L, 1)),
                 [&](index_t lo, index_t hi) {
                   for (index_t i = lo; i < hi; ++i) {
                     float* r = s + i * L;
                     for (index_t j = 0; j < L; ++j) r[j] *= scale;
                     row(r, L);
                   }
                 });
  }
  [[gnu::noipa]] static void row(float* r, index_t L) { detail::softmax_row_simd<Arch>(r, r, L); }
};

}  // namespace tessel
