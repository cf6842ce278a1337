#pragma once
// Group normalization (Wu & He 2018), as torch.nn.functional.group_norm computes it: the C
// channels of x [N, C, *] are split into `groups` groups of C/groups channels, each group of
// each sample is normalized by its own mean and (biased) variance, then every channel is scaled
// and shifted by weight[c], bias[c]:
//
//   y[n,c,i] = (x[n,c,i] − mean[n,g]) / sqrt(var[n,g] + eps) · weight[c] + bias[c]
//
//   auto y = group_norm(x, weight, bias, groups, eps);           // a new tensor
//   group_norm(y, x, weight, bias, groups, eps);                 // into y (y may be x)
//   group_norm(cpu_scalar{}, y, x, weight, bias, groups, eps);   // the reference (double)
//   group_norm_silu(default_backend{}, y, x, weight, bias, groups, eps);  // SiLU(group_norm(x))
// x, y contiguous f32 of rank >= 2; weight, bias [C]. Both run kernel<op::group_norm, Backend>.
// The fast version (cpu_simd<Arch>) runs two SIMD passes per
// group (mean, then squared deviations: no cancellation when |mean| >> std) and one fused
// multiply-add pass per channel, (x − mean)·(rstd·w) + b; groups of samples are spread over the
// thread pool.

#include <cmath>
#include <string>
#include <type_traits>

#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"
#include "tessel/ops/rows.hpp"

namespace tessel {

namespace detail {

struct group_norm_problem {
  index_t N = 0, C = 0, HW = 0, G = 1;
  float eps = 1e-5f;
  bool silu = false;  // y = SiLU(group_norm(x)): the pair every ResBlock runs, in one pass
  const float *x = nullptr, *w = nullptr, *b = nullptr;
  float* y = nullptr;
};

inline void group_norm_reference(const group_norm_problem& p, index_t ng) {
  const index_t Cg = p.C / p.G, c0 = (ng % p.G) * Cg, len = Cg * p.HW;
  const float* x = p.x + ng * len;
  double s = 0;
  for (index_t i = 0; i < len; ++i) s += x[i];
  const double mean = s / static_cast<double>(len);
  double v = 0;
  for (index_t i = 0; i < len; ++i) v += (x[i] - mean) * (x[i] - mean);
  const double rstd = 1.0 / std::sqrt(v / static_cast<double>(len) + p.eps);
  for (index_t c = 0; c < Cg; ++c)
    for (index_t i = 0; i < p.HW; ++i) {
      const index_t j = c * p.HW + i;
      const double v = (x[j] - mean) * rstd * p.w[c0 + c] + p.b[c0 + c];
      p.y[ng * len + j] = static_cast<float>(p.silu ? v / (1.0 + std::exp(-v)) : v);
    }
}

template <class Arch>
void group_norm_simd(const group_norm_problem& p, index_t ng) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  const index_t Cg = p.C / p.G, c0 = (ng % p.G) * Cg, len = Cg * p.HW;
  const float* x = p.x + ng * len;
  float* y = p.y + ng * len;
  V acc(0.f);
  index_t i = 0;
  for (; i + W <= len; i += W) acc += V::load_unaligned(x + i);
  double s = xsimd::hadd(acc);
  for (; i < len; ++i) s += x[i];
  const float mean = static_cast<float>(s / static_cast<double>(len));
  const V vm(mean);
  acc = V(0.f);
  for (i = 0; i + W <= len; i += W) {
    const V d = V::load_unaligned(x + i) - vm;
    acc = xsimd::fma(d, d, acc);
  }
  double v = xsimd::hadd(acc);
  for (; i < len; ++i) v += (x[i] - mean) * (x[i] - mean);
  const float rstd = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(len) + p.eps));
  for (index_t c = 0; c < Cg; ++c) {
    // (x − mean)·a + b, not x·a + (b − mean·a): the latter cancels when |mean| >> std.
    const float a = rstd * p.w[c0 + c];
    const V va(a), vb(p.b[c0 + c]);
    const float* xc = x + c * p.HW;
    float* yc = y + c * p.HW;
    index_t j = 0;
    if (p.silu) {
      const V one(1.f);
      for (; j + W <= p.HW; j += W) {
        const V v = xsimd::fma(V::load_unaligned(xc + j) - vm, va, vb);
        (v / (one + xsimd::exp(-v))).store_unaligned(yc + j);
      }
      for (; j < p.HW; ++j) {
        const float v = (xc[j] - mean) * a + p.b[c0 + c];
        yc[j] = v / (1.f + std::exp(-v));
      }
    } else {
      for (; j + W <= p.HW; j += W)
        xsimd::fma(V::load_unaligned(xc + j) - vm, va, vb).store_unaligned(yc + j);
      for (; j < p.HW; ++j) yc[j] = (xc[j] - mean) * a + p.b[c0 + c];
    }
  }
}

template <class V>
bool gn_contiguous(const V& v) {
  index_t s = 1;
  for (std::size_t i = V::rank; i-- > 0;) {
    if (v.extent(i) != 1 && v.stride(i) != s) return false;
    s *= v.extent(i);
  }
  return true;
}

}  // namespace detail

namespace op {
/// y = group_norm(x) · w + b (and SiLU of it when p.silu) on a detail::group_norm_problem.
struct group_norm {};
}  // namespace op

/// The reference: statistics and normalization in double, one thread.
template <>
struct kernel<op::group_norm, cpu_scalar> {
  static void run(const detail::group_norm_problem& p) {
    for (index_t ng = 0; ng < p.N * p.G; ++ng) detail::group_norm_reference(p, ng);
  }
};

/// Arch's vectors, (sample, group) pairs spread over the thread pool.
template <class Arch>
struct kernel<op::group_norm, cpu_simd<Arch>> {
  static void run(const detail::group_norm_problem& p) {
    const index_t len = p.C / p.G * p.HW;
    parallel_for(0, p.N * p.G, std::max<index_t>(1, 16384 / len), [&](index_t lo, index_t hi) {
      for (index_t ng = lo; ng < hi; ++ng) detail::group_norm_simd<Arch>(p, ng);
    });
  }
};

namespace detail {

template <class Backend, class Y, class X, class Wt, class Bs>
void group_norm_run(Backend, Y&& y_, const X& x_, const Wt& weight_, const Bs& bias_,
                    index_t groups, float eps, bool silu) {
  const auto x = detail::src_view(x_);
  const auto y = detail::dst_view(y_);
  const auto weight = detail::src_view(weight_), bias = detail::src_view(bias_);
  static_assert(decltype(x)::rank >= 2 && decltype(y)::rank == decltype(x)::rank,
                "tessel: group_norm needs input and output [N, C, ...] of the same rank >= 2");
  static_assert(decltype(weight)::rank == 1 && decltype(bias)::rank == 1,
                "tessel: group_norm's weight and bias have rank 1");
  static_assert(std::is_same_v<typename decltype(y)::element_type, float> &&
                    std::is_same_v<typename decltype(x)::value_type, float>,
                "tessel: group_norm runs on f32 tensors");
  const auto fail = [&](const std::string& what) {
    throw shape_error("tessel: group_norm: " + what + " (input shape " + to_string(x.shape()) +
                      ", weight shape " + to_string(weight.shape()) + ", bias shape " +
                      to_string(bias.shape()) + ", groups " + std::to_string(groups) + ")");
  };
  const index_t C = x.extent(1);
  if (groups < 1 || C % groups != 0) fail("the channels must split into whole groups");
  if (weight.extent(0) != C || bias.extent(0) != C) fail("weight and bias must have length C");
  if (y.shape().extents() != x.shape().extents())
    fail("output shape " + to_string(y.shape()) + " differs from the input shape");
  if (!detail::gn_contiguous(x) || !detail::gn_contiguous(y) || !detail::gn_contiguous(weight) ||
      !detail::gn_contiguous(bias))
    fail("all tensors must be contiguous");
  detail::group_norm_problem p;
  p.N = x.extent(0), p.C = C, p.G = groups, p.eps = eps, p.silu = silu;
  p.HW = C == 0 || p.N == 0 ? 0 : x.size() / (p.N * C);
  p.x = x.data(), p.w = weight.data(), p.b = bias.data(), p.y = y.data();
  if (p.HW == 0) return;
  kernel<op::group_norm, Backend>::run(p);
}

}  // namespace detail

/// y = group_norm(x [N, C, *]) · weight [C] + bias [C], on a CPU backend. x, y: Tensors or
/// views of f32 with the same rank (>= 2); weight, bias: rank 1.
template <class Backend, class Y, class X, class Wt, class Bs>
requires is_cpu_backend_v<Backend>
void group_norm(Backend b, Y&& y, const X& x, const Wt& weight, const Bs& bias, index_t groups,
                float eps) {
  detail::group_norm_run(b, std::forward<Y>(y), x, weight, bias, groups, eps, false);
}
/// y = SiLU(group_norm(x) · weight + bias) in the same pass (y may be x).
template <class Backend, class Y, class X, class Wt, class Bs>
requires is_cpu_backend_v<Backend>
void group_norm_silu(Backend b, Y&& y, const X& x, const Wt& weight, const Bs& bias, index_t groups,
                     float eps) {
  detail::group_norm_run(b, std::forward<Y>(y), x, weight, bias, groups, eps, true);
}
template <class Y, class X, class Wt, class Bs>
requires(!is_cpu_backend_v<std::remove_cvref_t<Y>>) void group_norm(Y&& y, const X& x,
                                                                    const Wt& weight,
                                                                    const Bs& bias, index_t groups,
                                                                    float eps) {
  group_norm(default_backend{}, std::forward<Y>(y), x, weight, bias, groups, eps);
}
/// A new f32 tensor of x's shape.
template <class X, class Wt, class Bs>
auto group_norm(const X& x, const Wt& weight, const Bs& bias, index_t groups, float eps) {
  const auto xv = detail::src_view(x);
  Tensor<float, typename decltype(xv)::shape_type> y(xv.shape());
  group_norm(default_backend{}, y, x, weight, bias, groups, eps);
  return y;
}

}  // namespace tessel
