#pragma once
// 2-D convolution over NCHW tensors, as torch.nn.functional.conv2d computes it:
//
//   y[n,k,oh,ow] = bias[k] + Σ_{c,r,s} w[k,c,r,s] · x[n, g·Cg + c, oh·stride − pad + r·dil,
//                                                     ow·stride − pad + s·dil]
//
// with g = k / (K/groups), Cg = C/groups, zeros outside the input. Layouts: x [N,C,H,W],
// w [K, C/groups, R, S] (PyTorch's Conv2d weight), bias [K], y [N,K,OH,OW] with
// OH = (H + 2·pad − dil·(R−1) − 1) / stride + 1 (likewise OW). All contiguous f32.
//
//   auto y = conv2d(x, w, bias, {.stride = 2, .padding = 1});   // a new tensor
//   auto y = conv2d(x, w, {.groups = 4});                       // no bias
//   conv2d(y, x, w, bias, opts);                                // into y
//   conv2d(cpu_scalar{}, y, x, w, bias, opts);  // the reference; cpu_simd<A>: fast, threaded
//
// Fast path (cpu_simd): im2col + the packed SGEMM. For each image and group the input patches
// of a block of output pixels are unfolded into col [Cg·R·S, P] and y[Kg, P] = w[Kg, Cg·R·S] ·
// col. The blocks of P keep col within a few MiB (measured: as fast as unfolding the whole
// image, at a fraction of the memory). A 1×1 stride-1 unpadded convolution is a GEMM on x
// itself; depthwise convolutions (one input and one output channel per group) run direct
// loops over planes instead (a GEMM with M = 1 would be a GEMV per plane).

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "tessel/backend/cpu/gemm.hpp"
#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

/// Stride, zero padding and dilation (the same along H and W), and channel groups.
struct conv2d_options {
  index_t stride = 1, padding = 0, dilation = 1, groups = 1;
};

namespace detail {

struct conv2d_problem {
  index_t N = 0, C = 0, H = 0, W = 0;  // input
  index_t K = 0, R = 0, S = 0;         // output channels, kernel height and width
  index_t OH = 0, OW = 0, G = 1, stride = 1, pad = 0, dil = 1;
  const float* x = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;  // nullptr: no bias
  float* y = nullptr;
  index_t cg() const noexcept { return C / G; }
  index_t kg() const noexcept { return K / G; }
};

/// The reference: direct loops, accumulating in double. Output channels [k0, k1) of image n.
inline void conv2d_reference(const conv2d_problem& p, index_t n, index_t k0, index_t k1) {
  const index_t Cg = p.cg(), Kg = p.kg();
  for (index_t k = k0; k < k1; ++k) {
    const index_t c0 = (k / Kg) * Cg;
    for (index_t oh = 0; oh < p.OH; ++oh)
      for (index_t ow = 0; ow < p.OW; ++ow) {
        double acc = p.bias ? p.bias[k] : 0.0;
        for (index_t c = 0; c < Cg; ++c)
          for (index_t r = 0; r < p.R; ++r) {
            const index_t ih = oh * p.stride - p.pad + r * p.dil;
            if (ih < 0 || ih >= p.H) continue;
            for (index_t s = 0; s < p.S; ++s) {
              const index_t iw = ow * p.stride - p.pad + s * p.dil;
              if (iw < 0 || iw >= p.W) continue;
              acc += static_cast<double>(p.w[((k * Cg + c) * p.R + r) * p.S + s]) *
                     p.x[((n * p.C + c0 + c) * p.H + ih) * p.W + iw];
            }
          }
        p.y[((n * p.K + k) * p.OH + oh) * p.OW + ow] = static_cast<float>(acc);
      }
  }
}

/// The output columns [lo, hi) of output row oh whose input column ow·stride − pad + s·dil is
/// inside [0, W): the rest read padding.
inline std::array<index_t, 2> conv2d_valid_cols(const conv2d_problem& p, index_t s) {
  const index_t off = s * p.dil - p.pad;  // iw = ow·stride + off
  index_t lo = off >= 0 ? 0 : (-off + p.stride - 1) / p.stride;
  index_t hi = p.W - off <= 0 ? 0 : (p.W - off + p.stride - 1) / p.stride;
  lo = std::min(lo, p.OW);
  hi = std::clamp(hi, lo, p.OW);
  return {lo, hi};
}

/// col[row, j] for rows [r0, r1) of the unfolded input (row = (c·R + r)·S + s) and output pixels
/// [q0, q0 + nq) of image n, group g; ld = nq.
inline void conv2d_im2col(const conv2d_problem& p, index_t n, index_t g, index_t q0, index_t nq,
                          index_t r0, index_t r1, float* col) {
  const index_t RS = p.R * p.S;
  for (index_t row = r0; row < r1; ++row) {
    const index_t c = row / RS, r = (row / p.S) % p.R, s = row % p.S;
    const float* xc = p.x + (n * p.C + g * p.cg() + c) * p.H * p.W;
    const auto [lo, hi] = conv2d_valid_cols(p, s);
    const index_t off = s * p.dil - p.pad;
    float* out = col + row * nq;
    index_t j = 0;
    for (index_t q = q0; q < q0 + nq;) {  // one output row (or its part) at a time
      const index_t oh = q / p.OW, ow0 = q % p.OW;
      const index_t ow1 = std::min(p.OW, ow0 + (q0 + nq - q));
      const index_t ih = oh * p.stride - p.pad + r * p.dil;
      if (ih < 0 || ih >= p.H) {
        std::fill(out + j, out + j + (ow1 - ow0), 0.f);
      } else {
        const float* xr = xc + ih * p.W + off;
        const index_t a = std::clamp(lo, ow0, ow1), b = std::clamp(hi, a, ow1);
        std::fill(out + j, out + j + (a - ow0), 0.f);
        float* o = out + j + (a - ow0);
        if (p.stride == 1) {
          std::copy(xr + a, xr + b, o);
        } else {
          for (index_t ow = a; ow < b; ++ow) *o++ = xr[ow * p.stride];
        }
        std::fill(out + j + (b - ow0), out + j + (ow1 - ow0), 0.f);
      }
      j += ow1 - ow0;
      q += ow1 - ow0;
    }
  }
}

/// Depthwise (Cg = Kg = 1): direct loops over the planes [lo, hi) of N·K, vectorized by the
/// compiler along ow for stride 1.
inline void conv2d_depthwise(const conv2d_problem& p, index_t lo, index_t hi) {
  for (index_t plane = lo; plane < hi; ++plane) {
    const index_t k = plane % p.K;
    const float* xc = p.x + plane * p.H * p.W;  // C = K: input plane = output plane index
    float* yc = p.y + plane * p.OH * p.OW;
    std::fill(yc, yc + p.OH * p.OW, p.bias ? p.bias[k] : 0.f);
    for (index_t r = 0; r < p.R; ++r)
      for (index_t s = 0; s < p.S; ++s) {
        const float wv = p.w[(k * p.R + r) * p.S + s];
        const auto [a, b] = conv2d_valid_cols(p, s);
        const index_t off = s * p.dil - p.pad;
        for (index_t oh = 0; oh < p.OH; ++oh) {
          const index_t ih = oh * p.stride - p.pad + r * p.dil;
          if (ih < 0 || ih >= p.H) continue;
          const float* xr = xc + ih * p.W + off;
          float* yr = yc + oh * p.OW;
          if (p.stride == 1) {
            for (index_t ow = a; ow < b; ++ow) yr[ow] += wv * xr[ow];
          } else {
            for (index_t ow = a; ow < b; ++ow) yr[ow] += wv * xr[ow * p.stride];
          }
        }
      }
  }
}

/// Floats of col per block of output pixels: 2 Mi floats (8 MiB) at most.
inline constexpr index_t conv2d_col_budget = index_t{1} << 21;

template <class Backend>
void conv2d_run(Backend, const conv2d_problem& p) {
  if (p.N == 0 || p.K == 0 || p.OH == 0 || p.OW == 0) return;
  if constexpr (std::is_same_v<Backend, cpu_scalar>) {
    for (index_t n = 0; n < p.N; ++n) conv2d_reference(p, n, 0, p.K);
  } else {
    const index_t Cg = p.cg(), Kg = p.kg(), P = p.OH * p.OW, KD = Cg * p.R * p.S;
    if (Cg == 1 && Kg == 1) {
      const index_t work = p.R * p.S * P;
      parallel_for(0, p.N * p.K,
                   std::max<index_t>(1, (index_t{1} << 15) / std::max<index_t>(work, 1)),
                   [&](index_t lo, index_t hi) { conv2d_depthwise(p, lo, hi); });
      return;
    }
    // y starts at the bias (or zero) and the GEMMs accumulate into it (beta = 1).
    parallel_for(0, p.N * p.K, std::max<index_t>(1, 16384 / P), [&](index_t lo, index_t hi) {
      for (index_t plane = lo; plane < hi; ++plane)
        std::fill(p.y + plane * P, p.y + (plane + 1) * P, p.bias ? p.bias[plane % p.K] : 0.f);
    });
    const bool direct = p.R == 1 && p.S == 1 && p.stride == 1 && p.pad == 0;
    // Blocks of whole multiples of 64 pixels (the GEMM's panel width divides them).
    index_t nq = std::max<index_t>(64, conv2d_col_budget / std::max<index_t>(KD, 1) / 64 * 64);
    nq = std::min(nq, P);
    thread_local std::vector<float> col;
    if (!direct && static_cast<index_t>(col.size()) < KD * nq)
      col.resize(static_cast<std::size_t>(KD * nq));
    for (index_t n = 0; n < p.N; ++n)
      for (index_t g = 0; g < p.G; ++g) {
        const float* wg = p.w + g * Kg * KD;
        float* yg = p.y + (n * p.K + g * Kg) * P;
        if (direct) {
          gemm<Backend>(Kg, P, KD, wg, KD, p.x + (n * p.C + g * Cg) * P, P, false, yg, P, 1.f);
          continue;
        }
        for (index_t q0 = 0; q0 < P; q0 += nq) {
          const index_t m = std::min(nq, P - q0);
          float* cp = col.data();
          parallel_for(0, KD, std::max<index_t>(1, 8192 / m),
                       [&](index_t lo, index_t hi) { conv2d_im2col(p, n, g, q0, m, lo, hi, cp); });
          gemm<Backend>(Kg, m, KD, wg, KD, cp, m, false, yg + q0, P, 1.f);
        }
      }
  }
}

[[noreturn]] inline void conv2d_fail(const std::string& what,
                                     const TensorView<const float, DynShape<4>>& x,
                                     const TensorView<const float, DynShape<4>>& w) {
  throw shape_error("tessel: conv2d: " + what + " (input shape " + to_string(x.shape()) +
                    ", weight shape " + to_string(w.shape()) + ")");
}

template <class V>
bool conv2d_contiguous(const V& v) {
  index_t s = 1;
  for (std::size_t i = V::rank; i-- > 0;) {
    if (v.extent(i) != 1 && v.stride(i) != s) return false;
    s *= v.extent(i);
  }
  return true;
}

/// The output extents [N, K, OH, OW], after checking x, w and the options.
inline std::array<index_t, 4> conv2d_out_shape(TensorView<const float, DynShape<4>> x,
                                               TensorView<const float, DynShape<4>> w,
                                               const conv2d_options& o) {
  if (o.stride < 1 || o.dilation < 1 || o.padding < 0 || o.groups < 1)
    conv2d_fail("stride " + std::to_string(o.stride) + ", padding " + std::to_string(o.padding) +
                    ", dilation " + std::to_string(o.dilation) + ", groups " +
                    std::to_string(o.groups) + " are not valid",
                x, w);
  const index_t C = x.extent(1), K = w.extent(0);
  if (C % o.groups != 0 || K % o.groups != 0)
    conv2d_fail("input channels " + std::to_string(C) + " and output channels " +
                    std::to_string(K) + " must be multiples of groups " + std::to_string(o.groups),
                x, w);
  if (w.extent(1) != C / o.groups)
    conv2d_fail("the weight's axis 1 must be C / groups = " + std::to_string(C / o.groups), x, w);
  const index_t eh = o.dilation * (w.extent(2) - 1) + 1, ew = o.dilation * (w.extent(3) - 1) + 1;
  const index_t hp = x.extent(2) + 2 * o.padding, wp = x.extent(3) + 2 * o.padding;
  if (w.extent(2) < 1 || w.extent(3) < 1 || hp < eh || wp < ew)
    conv2d_fail("the (dilated) kernel is larger than the padded input", x, w);
  return {x.extent(0), K, (hp - eh) / o.stride + 1, (wp - ew) / o.stride + 1};
}

inline conv2d_problem conv2d_setup(TensorView<float, DynShape<4>> y,
                                   TensorView<const float, DynShape<4>> x,
                                   TensorView<const float, DynShape<4>> w, const float* bias,
                                   index_t bias_len, const conv2d_options& o) {
  const auto e = conv2d_out_shape(x, w, o);
  if (y.shape().extents() != e)
    conv2d_fail("output shape " + to_string(y.shape()) + " should be " + to_string(e), x, w);
  if (bias && bias_len != e[1])
    conv2d_fail("bias of length " + std::to_string(bias_len) + " should have length " +
                    std::to_string(e[1]),
                x, w);
  if (!conv2d_contiguous(x) || !conv2d_contiguous(w) || !conv2d_contiguous(y))
    conv2d_fail("input, weight and output must be contiguous", x, w);
  conv2d_problem p;
  p.N = x.extent(0), p.C = x.extent(1), p.H = x.extent(2), p.W = x.extent(3);
  p.K = e[1], p.R = w.extent(2), p.S = w.extent(3), p.OH = e[2], p.OW = e[3];
  p.G = o.groups, p.stride = o.stride, p.pad = o.padding, p.dil = o.dilation;
  p.x = x.data(), p.w = w.data(), p.bias = bias, p.y = y.data();
  return p;
}

inline const float* conv2d_bias_data(TensorView<const float, DynShape<1>> b) {
  if (b.extent(0) > 1 && b.stride(0) != 1)
    throw shape_error("tessel: conv2d: bias of shape " + to_string(b.shape()) +
                      " must be contiguous");
  return b.data();
}

}  // namespace detail

/// y [N,K,OH,OW] = conv2d(x [N,C,H,W], w [K,C/groups,R,S]) + bias [K].
template <class Backend>
requires is_cpu_backend_v<Backend>
void conv2d(Backend backend, TensorView<float, DynShape<4>> y,
            TensorView<const float, DynShape<4>> x, TensorView<const float, DynShape<4>> w,
            TensorView<const float, DynShape<1>> bias, const conv2d_options& o = {}) {
  detail::conv2d_run(
      backend, detail::conv2d_setup(y, x, w, detail::conv2d_bias_data(bias), bias.extent(0), o));
}
/// The same without bias.
template <class Backend>
requires is_cpu_backend_v<Backend>
void conv2d(Backend backend, TensorView<float, DynShape<4>> y,
            TensorView<const float, DynShape<4>> x, TensorView<const float, DynShape<4>> w,
            const conv2d_options& o = {}) {
  detail::conv2d_run(backend, detail::conv2d_setup(y, x, w, nullptr, 0, o));
}
inline void conv2d(TensorView<float, DynShape<4>> y, TensorView<const float, DynShape<4>> x,
                   TensorView<const float, DynShape<4>> w,
                   TensorView<const float, DynShape<1>> bias, const conv2d_options& o = {}) {
  conv2d(cpu{}, y, x, w, bias, o);
}
inline void conv2d(TensorView<float, DynShape<4>> y, TensorView<const float, DynShape<4>> x,
                   TensorView<const float, DynShape<4>> w, const conv2d_options& o = {}) {
  conv2d(cpu{}, y, x, w, o);
}

/// A new tensor [N,K,OH,OW].
inline Tensor<float, DynShape<4>> conv2d(TensorView<const float, DynShape<4>> x,
                                         TensorView<const float, DynShape<4>> w,
                                         TensorView<const float, DynShape<1>> bias,
                                         const conv2d_options& o = {}) {
  Tensor<float, DynShape<4>> y(DynShape<4>::from_array(detail::conv2d_out_shape(x, w, o)));
  conv2d(cpu{}, y.view(), x, w, bias, o);
  return y;
}
inline Tensor<float, DynShape<4>> conv2d(TensorView<const float, DynShape<4>> x,
                                         TensorView<const float, DynShape<4>> w,
                                         const conv2d_options& o = {}) {
  Tensor<float, DynShape<4>> y(DynShape<4>::from_array(detail::conv2d_out_shape(x, w, o)));
  conv2d(cpu{}, y.view(), x, w, o);
  return y;
}

}  // namespace tessel
