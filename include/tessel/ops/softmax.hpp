#pragma once
// Numerically stable softmax along the last axis: y = exp(x - max) / sum(exp(x - max)).
//
//   auto y = softmax(x);                 // a new f32 tensor
//   softmax(y, x);                       // into y (any element type; y may be x: in place)
//   softmax(cpu_scalar{}, y, x);         // the reference; cpu_simd<A>: vectorized, threaded
// A row containing NaN gives NaN; a row of -inf gives NaN (0/0), as PyTorch.

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
/// softmax of one contiguous f32 row of n: run(x, y, n), y may be x.
struct softmax_row {};
}  // namespace op

// Row kernels are not inlined: with a static row length GCC 12 raises a false
// -Waggressive-loop-optimizations in their tail loops, and a call per row costs nothing next to
// the row. (noipa: no constant-propagated clones either.)
template <>
struct kernel<op::softmax_row, cpu_scalar> {
  [[gnu::noipa]] static void run(const float* x, float* y, index_t n) {
    detail::softmax_row_reference(x, y, n);
  }
};
template <class Arch>
struct kernel<op::softmax_row, cpu_simd<Arch>> {
  [[gnu::noipa]] static void run(const float* x, float* y, index_t n) {
    detail::softmax_row_simd<Arch>(x, y, n);
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
                       kernel<op::softmax_row, Backend>::run);
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
