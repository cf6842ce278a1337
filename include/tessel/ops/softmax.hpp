#pragma once
// Numerically stable softmax along the last axis: y = exp(x - max) / sum(exp(x - max)).
//
//   auto y = softmax(x);                 // a new f32 tensor
//   softmax(y, x);                       // into y (any element type; y may be x: in place)
//   softmax(cpu_scalar{}, y, x);         // the reference; cpu_simd<A>: vectorized, threaded
// A row containing NaN gives NaN; a row of -inf gives NaN (0/0), as PyTorch.

#include <algorithm>
#include <cmath>

#include "rows.hpp"

namespace tessel {

namespace detail {

inline void softmax_row_reference(const float* x, float* y, index_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (index_t j = 0; j < n; ++j) m = (x[j] > m || x[j] != x[j]) ? x[j] : m;
  double s = 0;
  for (index_t j = 0; j < n; ++j) s += (y[j] = ::expf(x[j] - m));
  const float inv = static_cast<float>(1.0 / s);
  for (index_t j = 0; j < n; ++j) y[j] *= inv;
}

template <class Arch>
void softmax_row_simd(const float* x, float* y, index_t n) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  index_t j = 0;
  V vm(-std::numeric_limits<float>::infinity());
  for (; j + W <= n; j += W) {
    const V v = V::load_unaligned(x + j);
    vm = xsimd::select((v > vm) | xsimd::isnan(v), v, vm);
  }
  float m = hmax(vm);
  for (; j < n; ++j) m = (x[j] > m || x[j] != x[j]) ? x[j] : m;
  V vs(0.f);
  const V vmax(m);
  for (j = 0; j + W <= n; j += W) {
    const V e = simd_exp(V::load_unaligned(x + j) - vmax);
    e.store_unaligned(y + j);
    vs += e;
  }
  float s = xsimd::hadd(vs);
  for (; j < n; ++j) s += (y[j] = ::expf(x[j] - m));
  const float inv = 1.f / s;
  const V vinv(inv);
  for (j = 0; j + W <= n; j += W) (V::load_unaligned(y + j) * vinv).store_unaligned(y + j);
  for (; j < n; ++j) y[j] *= inv;
}

}  // namespace detail

namespace op {
/// Rows i < M of x [M, n]: y[i] = softmax(scale · x[i]); run(x, y, M, n, scale), y may be x
/// (one row: M = 1; attention scores: scale = 1/sqrt(head size)).
struct softmax {};
}  // namespace op

// The row functions are not inlined: with a static row length GCC 12 raises a false
// -Waggressive-loop-optimizations in their tail loops, and a call per row costs nothing next to
// the row. (noipa: no constant-propagated clones either.)
template <>
struct kernel<op::softmax, cpu_scalar> {
  static void run(const float* x, float* y, index_t M, index_t n, float scale = 1.0f) {
    for (index_t i = 0; i < M; ++i) row(x + i * n, y + i * n, n, scale);
  }
  [[gnu::noipa]] static void row(const float* x, float* y, index_t n, float scale) {
    if (scale == 1.0f) return detail::softmax_row_reference(x, y, n);
    for (index_t j = 0; j < n; ++j) y[j] = x[j] * scale;
    detail::softmax_row_reference(y, y, n);
  }
};
/// Rows spread over the pool (a single row runs on the calling thread, as inside attention).
template <class Arch>
struct kernel<op::softmax, cpu_simd<Arch>> {
  static void run(const float* x, float* y, index_t M, index_t n, float scale = 1.0f) {
    if (M == 1) return row(x, y, n, scale);
    parallel_for(0, M, std::max<index_t>(1, 4096 / std::max<index_t>(n, 1)),
                 [&](index_t lo, index_t hi) {
                   for (index_t i = lo; i < hi; ++i) row(x + i * n, y + i * n, n, scale);
                 });
  }
  [[gnu::noipa]] static void row(const float* x, float* y, index_t n, float scale) {
    if (scale == 1.0f) return detail::softmax_row_simd<Arch>(x, y, n);
    for (index_t j = 0; j < n; ++j) y[j] = x[j] * scale;
    detail::softmax_row_simd<Arch>(y, y, n);
  }
};

/// y = softmax(x) along the last axis, on a CPU backend.
template <class Backend, class Y, class X>
requires is_cpu_backend_v<Backend>
void softmax(Backend, Y&& y, const X& x) {
  const auto xv = detail::src_view(x);
  const auto yv = detail::dst_view(y);
  // The reference stays on the calling thread; the SIMD backends spread rows over the pool.
  detail::for_each_row("softmax", xv, yv, is_cpu_simd_v<Backend>,
                       [](const float* xr, float* yr, index_t n) {
                         kernel<op::softmax, Backend>::run(xr, yr, 1, n);
                       });
}

/// y = softmax(x) along the last axis (y may be x).
template <class Y, class X>
requires(!is_cpu_backend_v<std::remove_cvref_t<Y>>) void softmax(Y&& y, const X& x) {
  softmax(cpu{}, std::forward<Y>(y), x);
}

/// softmax(x) along the last axis as a new f32 tensor.
template <class X>
auto softmax(const X& x) {
  const auto xv = detail::src_view(x);
  Tensor<float, typename decltype(xv)::shape_type> y(xv.shape());
  softmax(cpu{}, y, x);
  return y;
}

}  // namespace tessel
