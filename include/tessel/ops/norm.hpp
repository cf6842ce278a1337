#pragma once
// Normalizations over the last axis.
//   rms_norm:   y = x / sqrt(mean(x^2) + eps) * weight
//   layer_norm: y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias   (biased variance)
//
//   auto y = rms_norm(x, weight, eps);            // a new f32 tensor
//   rms_norm(y, x, weight, eps);                  // into y (any element type; y may be x)
//   rms_norm(cpu_scalar{}, y, x, weight, eps);    // the reference; cpu_simd<A>: SIMD, threaded
//   layer_norm(x, weight, bias, eps) and the same forms.
// weight and bias are rank-1 tensors or views whose length is the last extent of x.

#include <cmath>

#include "rows.hpp"

namespace tessel {

namespace detail {

inline void rms_norm_row_reference(const float* x, float* y, index_t n, const float* w, float eps) {
  double ss = 0;
  for (index_t j = 0; j < n; ++j) ss += static_cast<double>(x[j]) * x[j];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (index_t j = 0; j < n; ++j) y[j] = x[j] * scale * w[j];
}

template <class Arch>
void rms_norm_row_simd(const float* x, float* y, index_t n, const float* w, float eps) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  V acc(0.f);
  index_t j = 0;
  for (; j + W <= n; j += W) {
    const V v = V::load_unaligned(x + j);
    acc = xsimd::fma(v, v, acc);
  }
  float ss = xsimd::hadd(acc);
  for (; j < n; ++j) ss += x[j] * x[j];
  const float scale = 1.f / std::sqrt(ss / static_cast<float>(n) + eps);
  const V vs(scale);
  for (j = 0; j + W <= n; j += W)
    (V::load_unaligned(x + j) * vs * V::load_unaligned(w + j)).store_unaligned(y + j);
  for (; j < n; ++j) y[j] = x[j] * scale * w[j];
}

inline void layer_norm_row_reference(const float* x, float* y, index_t n, const float* w,
                                     const float* b, float eps) {
  double s = 0;
  for (index_t j = 0; j < n; ++j) s += x[j];
  const double mean = s / static_cast<double>(n);
  double v = 0;
  for (index_t j = 0; j < n; ++j) v += (x[j] - mean) * (x[j] - mean);
  const double rstd = 1.0 / std::sqrt(v / static_cast<double>(n) + eps);
  for (index_t j = 0; j < n; ++j) y[j] = static_cast<float>((x[j] - mean) * rstd * w[j] + b[j]);
}

template <class Arch>
void layer_norm_row_simd(const float* x, float* y, index_t n, const float* w, const float* b,
                         float eps) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  V acc(0.f);
  index_t j = 0;
  for (; j + W <= n; j += W) acc += V::load_unaligned(x + j);
  float s = xsimd::hadd(acc);
  for (; j < n; ++j) s += x[j];
  const float mean = s / static_cast<float>(n);
  // Two passes (not E[x^2] - mean^2): no cancellation when |mean| >> std.
  const V vmean(mean);
  acc = V(0.f);
  for (j = 0; j + W <= n; j += W) {
    const V d = V::load_unaligned(x + j) - vmean;
    acc = xsimd::fma(d, d, acc);
  }
  float var = xsimd::hadd(acc);
  for (; j < n; ++j) var += (x[j] - mean) * (x[j] - mean);
  const float rstd = 1.f / std::sqrt(var / static_cast<float>(n) + eps);
  const V vr(rstd);
  for (j = 0; j + W <= n; j += W) {
    const V d = (V::load_unaligned(x + j) - vmean) * vr;
    xsimd::fma(d, V::load_unaligned(w + j), V::load_unaligned(b + j)).store_unaligned(y + j);
  }
  for (; j < n; ++j) y[j] = (x[j] - mean) * rstd * w[j] + b[j];
}

template <class X>
std::string shape_string(const X& x) {
  return to_string(src_view(x).shape());
}

}  // namespace detail

namespace op {
/// One contiguous f32 row of n: run(x, y, n, weight, eps), y may be x.
struct rms_norm_row {};
/// One contiguous f32 row of n: run(x, y, n, weight, bias, eps), y may be x.
struct layer_norm_row {};
}  // namespace op

// Not inlined, as the softmax rows (GCC 12's false -Waggressive-loop-optimizations on static
// lengths).
template <>
struct kernel<op::rms_norm_row, cpu_scalar> {
  [[gnu::noipa]] static void run(const float* x, float* y, index_t n, const float* w, float eps) {
    detail::rms_norm_row_reference(x, y, n, w, eps);
  }
};
template <class Arch>
struct kernel<op::rms_norm_row, cpu_simd<Arch>> {
  [[gnu::noipa]] static void run(const float* x, float* y, index_t n, const float* w, float eps) {
    detail::rms_norm_row_simd<Arch>(x, y, n, w, eps);
  }
};
template <>
struct kernel<op::layer_norm_row, cpu_scalar> {
  [[gnu::noipa]] static void run(const float* x, float* y, index_t n, const float* w,
                                 const float* b, float eps) {
    detail::layer_norm_row_reference(x, y, n, w, b, eps);
  }
};
template <class Arch>
struct kernel<op::layer_norm_row, cpu_simd<Arch>> {
  [[gnu::noipa]] static void run(const float* x, float* y, index_t n, const float* w,
                                 const float* b, float eps) {
    detail::layer_norm_row_simd<Arch>(x, y, n, w, b, eps);
  }
};

/// y = rms_norm(x) * weight over the last axis, on a CPU backend.
template <class Backend, class Y, class X, class Wt>
requires is_cpu_backend_v<Backend>
void rms_norm(Backend, Y&& y, const X& x, const Wt& weight, float eps) {
  const auto xv = detail::src_view(x);
  const auto yv = detail::dst_view(y);
  const index_t n = xv.extent(decltype(xv)::rank - 1);
  const auto w = detail::param_f32("rms_norm", "weight", weight, n, detail::shape_string(x));
  const float* wp = w.data();
  // The reference stays on the calling thread; the SIMD backends spread rows over the pool.
  detail::for_each_row("rms_norm", xv, yv, is_cpu_simd_v<Backend>,
                       [&](const float* xr, float* yr, index_t m) {
                         kernel<op::rms_norm_row, Backend>::run(xr, yr, m, wp, eps);
                       });
}
template <class Y, class X, class Wt>
requires(!is_cpu_backend_v<std::remove_cvref_t<Y>>) void rms_norm(Y&& y, const X& x,
                                                                  const Wt& weight, float eps) {
  rms_norm(cpu{}, std::forward<Y>(y), x, weight, eps);
}
template <class X, class Wt>
auto rms_norm(const X& x, const Wt& weight, float eps) {
  const auto xv = detail::src_view(x);
  Tensor<float, typename decltype(xv)::shape_type> y(xv.shape());
  rms_norm(cpu{}, y, x, weight, eps);
  return y;
}

/// y = layer_norm(x) * weight + bias over the last axis, on a CPU backend.
template <class Backend, class Y, class X, class Wt, class Bs>
requires is_cpu_backend_v<Backend>
void layer_norm(Backend, Y&& y, const X& x, const Wt& weight, const Bs& bias, float eps) {
  const auto xv = detail::src_view(x);
  const auto yv = detail::dst_view(y);
  const index_t n = xv.extent(decltype(xv)::rank - 1);
  const auto xs = detail::shape_string(x);
  const auto w = detail::param_f32("layer_norm", "weight", weight, n, xs);
  const auto b = detail::param_f32("layer_norm", "bias", bias, n, xs);
  const float *wp = w.data(), *bp = b.data();
  detail::for_each_row("layer_norm", xv, yv, is_cpu_simd_v<Backend>,
                       [&](const float* xr, float* yr, index_t m) {
                         kernel<op::layer_norm_row, Backend>::run(xr, yr, m, wp, bp, eps);
                       });
}
template <class Y, class X, class Wt, class Bs>
requires(!is_cpu_backend_v<std::remove_cvref_t<Y>>) void layer_norm(Y&& y, const X& x,
                                                                    const Wt& weight,
                                                                    const Bs& bias, float eps) {
  layer_norm(cpu{}, std::forward<Y>(y), x, weight, bias, eps);
}
template <class X, class Wt, class Bs>
auto layer_norm(const X& x, const Wt& weight, const Bs& bias, float eps) {
  const auto xv = detail::src_view(x);
  Tensor<float, typename decltype(xv)::shape_type> y(xv.shape());
  layer_norm(cpu{}, y, x, weight, bias, eps);
  return y;
}

}  // namespace tessel
