#pragma once
// Causal depthwise 1-D convolution over time (the short convolution of a Mamba mixer):
//
//   y[t,d] = bias[d] + Σ_k w[d,k] · x[t − (K−1) + k, d]
//
// Layout: time-major, channels contiguous: x, y [L, D] (the layout in_proj produces), w [D, K]
// (PyTorch's Conv1d weight [D, 1, K] without its middle axis), bias [D]. Inputs before t = 0
// are zeros, or come from a carried state [K−1, D]: the last K−1 inputs seen, oldest first.
// With a state, the prompt version leaves in it the last K−1 inputs of state ++ x, so that a
// prompt followed by single steps equals one long prompt. x and y may have any row stride but
// contiguous channels; y must not overlap x or the state.
//
//   conv1d(y, x, w, bias);                     // zeros before t = 0
//   conv1d(y, x, w, bias, state);              // state in (history), state out (last K−1 inputs)
//   conv1d_step(state, x_t, w, bias, y_t);     // one token, x_t / y_t [D]; allocates nothing
//   conv1d(cpu_scalar{}, ...)                  // the reference; cpu_simd<A>: SIMD, threaded
//   kernel<op::conv1d, Backend>::run(problem)  // the same on raw rows (what the layers call)
//
// SIMD: 8 channels per vector, their K taps held in registers (K <= 16; larger K uses the
// reference), walking down time; channel blocks are spread over the pool.

#include <array>
#include <cstring>
#include <string>

#include "../backend/tags.hpp"
#include "../backend/thread_pool.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace tessel {

namespace detail {

struct conv1d_problem {
  index_t L = 0, D = 0, K = 0;
  const float* x = nullptr;
  index_t ld_x = 0;
  const float *w = nullptr, *bias = nullptr;
  index_t ld_w = 0;
  float* state = nullptr;  // [K-1, D] or nullptr (zeros, and no state out)
  index_t ld_s = 0;
  float* y = nullptr;
  index_t ld_y = 0;
};

/// The input at time s (s < 0 reads the state, or zero).
inline float conv1d_input(const conv1d_problem& p, index_t s, index_t d) {
  if (s >= 0) return p.x[s * p.ld_x + d];
  return p.state ? p.state[(s + p.K - 1) * p.ld_s + d] : 0.f;
}

inline void conv1d_reference(const conv1d_problem& p, index_t d0, index_t d1) {
  for (index_t t = 0; t < p.L; ++t)
    for (index_t d = d0; d < d1; ++d) {
      float acc = p.bias[d];
      for (index_t k = 0; k < p.K; ++k)
        acc += p.w[d * p.ld_w + k] * conv1d_input(p, t - (p.K - 1) + k, d);
      p.y[t * p.ld_y + d] = acc;
    }
}

/// The new state, channels [d0, d1): the last K−1 rows of state ++ x. Rows are written in
/// ascending order, each reading a later row of the old state, so in place is safe.
inline void conv1d_state_out(const conv1d_problem& p, index_t d0, index_t d1) {
  if (!p.state) return;
  const index_t n = (d1 - d0) * static_cast<index_t>(sizeof(float));
  for (index_t j = 0; j + 1 < p.K; ++j) {
    const index_t s = p.L + j - (p.K - 1);  // time of the input that becomes row j
    const float* src = s >= 0 ? p.x + s * p.ld_x + d0 : p.state + (s + p.K - 1) * p.ld_s + d0;
    std::memmove(p.state + j * p.ld_s + d0, src, static_cast<std::size_t>(n));
  }
}

inline constexpr index_t conv1d_max_taps = 16;

template <class Arch>
void conv1d_simd_block(const conv1d_problem& p, index_t d0, index_t d1) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  const index_t K = p.K;
  index_t d = d0;
  for (; d + W <= d1; d += W) {
    std::array<V, conv1d_max_taps> wv;
    alignas(64) float lanes[W];
    for (index_t k = 0; k < K; ++k) {
      for (index_t j = 0; j < W; ++j) lanes[j] = p.w[(d + j) * p.ld_w + k];
      wv[static_cast<std::size_t>(k)] = V::load_aligned(lanes);
    }
    const V b = V::load_unaligned(p.bias + d);
    const index_t head = std::min(p.L, K - 1);  // steps that reach back before t = 0
    for (index_t t = 0; t < head; ++t) {
      V acc = b;
      for (index_t k = 0; k < K; ++k) {
        const index_t s = t - (K - 1) + k;
        V xv;
        if (s >= 0)
          xv = V::load_unaligned(p.x + s * p.ld_x + d);
        else if (p.state)
          xv = V::load_unaligned(p.state + (s + K - 1) * p.ld_s + d);
        else
          continue;
        acc = xsimd::fma(wv[static_cast<std::size_t>(k)], xv, acc);
      }
      acc.store_unaligned(p.y + t * p.ld_y + d);
    }
    for (index_t t = head; t < p.L; ++t) {
      const float* xr = p.x + (t - (K - 1)) * p.ld_x + d;
      V acc = b;
      for (index_t k = 0; k < K; ++k)
        acc = xsimd::fma(wv[static_cast<std::size_t>(k)], V::load_unaligned(xr + k * p.ld_x), acc);
      acc.store_unaligned(p.y + t * p.ld_y + d);
    }
  }
  conv1d_reference(p, d, d1);  // the channels that do not fill a vector
}

}  // namespace detail

namespace op {
/// The causal depthwise convolution of a detail::conv1d_problem (state in and out).
struct conv1d {};
}  // namespace op

/// The reference.
template <>
struct kernel<op::conv1d, cpu_scalar> {
  static void run(const detail::conv1d_problem& p) {
    if (p.L == 0 || p.D == 0) return;
    detail::conv1d_reference(p, 0, p.D);
    detail::conv1d_state_out(p, 0, p.D);
  }
};

/// Vectors of Arch over the channels, channel blocks over the pool.
template <class Arch>
struct kernel<op::conv1d, cpu_simd<Arch>> {
  static void run(const detail::conv1d_problem& p) {
    if (p.L == 0 || p.D == 0) return;
    constexpr index_t W = static_cast<index_t>(xsimd::batch<float, Arch>::size);
    auto body = [&](index_t lo, index_t hi) {
      if (p.K <= detail::conv1d_max_taps)
        detail::conv1d_simd_block<Arch>(p, lo, hi);
      else
        detail::conv1d_reference(p, lo, hi);
      detail::conv1d_state_out(p, lo, hi);  // after this block's outputs have read the old state
    };
    // Channel blocks of whole vectors (grain 64 channels: a cache line of each row).
    if (p.L * p.D * p.K >= (index_t{1} << 16) && p.D > 8 * W)
      parallel_for(0, p.D, 8 * W, body);
    else
      body(0, p.D);
  }
};

namespace detail {

/// The convolution on the backend's kernel.
template <class Backend>
void conv1d_run(Backend, const conv1d_problem& p) {
  kernel<op::conv1d, Backend>::run(p);
}

template <class View>
void conv1d_expect(const char* op, const char* what, const View& v,
                   std::array<index_t, View::rank> e, const std::string& ref) {
  if (v.shape().extents() != e)
    throw shape_error(std::string("tessel: ") + op + ": " + what + " has shape " +
                      to_string(v.shape()) + ", expected " + to_string(e) + " (from " + ref + ")");
  if (v.stride(View::rank - 1) != 1 && v.extent(View::rank - 1) > 1)
    throw shape_error(std::string("tessel: ") + op + ": " + what + " of shape " +
                      to_string(v.shape()) + " must be contiguous along its last axis (stride " +
                      std::to_string(v.stride(View::rank - 1)) + ")");
}

inline conv1d_problem conv1d_setup(const char* op, TensorView<float, DynShape<2>> y,
                                   TensorView<const float, DynShape<2>> x,
                                   TensorView<const float, DynShape<2>> w,
                                   TensorView<const float, DynShape<1>> bias, float* state_data,
                                   const TensorView<const float, DynShape<2>>* state) {
  const index_t L = x.extent(0), D = x.extent(1), K = w.extent(1);
  const std::string ref =
      "x of shape " + to_string(x.shape()) + " and weight of shape " + to_string(w.shape());
  if (K < 1)
    throw shape_error(std::string("tessel: ") + op + ": weight of shape " + to_string(w.shape()) +
                      " has no taps");
  conv1d_expect(op, "x", x, {L, D}, ref);
  conv1d_expect(op, "weight", w, {D, K}, ref);
  conv1d_expect(op, "bias", bias, {D}, ref);
  conv1d_expect(op, "y", TensorView<const float, DynShape<2>>(y), {L, D}, ref);
  if (state) conv1d_expect(op, "state", *state, {K - 1, D}, ref);
  conv1d_problem p;
  p.L = L, p.D = D, p.K = K;
  p.x = x.data(), p.ld_x = x.stride(0);
  p.w = w.data(), p.ld_w = w.stride(0);
  p.bias = bias.data();
  p.state = state_data, p.ld_s = state ? state->stride(0) : 0;
  p.y = y.data(), p.ld_y = y.stride(0);
  return p;
}

}  // namespace detail

/// y [L,D] = the causal depthwise convolution of x [L,D] with w [D,K] plus bias [D], zeros
/// before t = 0.
template <class Backend>
requires is_cpu_backend_v<Backend>
void conv1d(Backend backend, TensorView<float, DynShape<2>> y,
            TensorView<const float, DynShape<2>> x, TensorView<const float, DynShape<2>> w,
            TensorView<const float, DynShape<1>> bias) {
  detail::conv1d_run(backend, detail::conv1d_setup("conv1d", y, x, w, bias, nullptr, nullptr));
}
/// The same, continuing from state [K−1,D] (the previous inputs, oldest first), which receives
/// the last K−1 inputs of state ++ x.
template <class Backend>
requires is_cpu_backend_v<Backend>
void conv1d(Backend backend, TensorView<float, DynShape<2>> y,
            TensorView<const float, DynShape<2>> x, TensorView<const float, DynShape<2>> w,
            TensorView<const float, DynShape<1>> bias, TensorView<float, DynShape<2>> state) {
  const TensorView<const float, DynShape<2>> sc = state;
  detail::conv1d_run(backend, detail::conv1d_setup("conv1d", y, x, w, bias, state.data(), &sc));
}
inline void conv1d(TensorView<float, DynShape<2>> y, TensorView<const float, DynShape<2>> x,
                   TensorView<const float, DynShape<2>> w,
                   TensorView<const float, DynShape<1>> bias) {
  conv1d(default_backend{}, y, x, w, bias);
}
inline void conv1d(TensorView<float, DynShape<2>> y, TensorView<const float, DynShape<2>> x,
                   TensorView<const float, DynShape<2>> w,
                   TensorView<const float, DynShape<1>> bias,
                   TensorView<float, DynShape<2>> state) {
  conv1d(default_backend{}, y, x, w, bias, state);
}
/// A new y [L,D], zeros before t = 0.
inline Tensor<float, DynShape<2>> conv1d(TensorView<const float, DynShape<2>> x,
                                         TensorView<const float, DynShape<2>> w,
                                         TensorView<const float, DynShape<1>> bias) {
  Tensor<float, DynShape<2>> y(x.extent(0), x.extent(1));
  conv1d(default_backend{}, y, x, w, bias);
  return y;
}

/// One decoding step: y_t [D] from x_t [D] and state [K−1,D], then x_t joins the state.
template <class Backend>
requires is_cpu_backend_v<Backend>
void conv1d_step(Backend backend, TensorView<float, DynShape<2>> state,
                 TensorView<const float, DynShape<1>> x, TensorView<const float, DynShape<2>> w,
                 TensorView<const float, DynShape<1>> bias, TensorView<float, DynShape<1>> y) {
  const index_t D = x.extent(0);
  if (y.extent(0) != D)
    throw shape_error("tessel: conv1d_step: y has shape " + to_string(y.shape()) + ", expected " +
                      to_string(x.shape()) + " (the shape of x)");
  // A step is a prompt of length 1: rank-1 views become [1, D] rows.
  const TensorView<const float, DynShape<2>> x2(x.data(), DynShape<2>(index_t{1}, D),
                                                {D, x.stride(0)});
  const TensorView<float, DynShape<2>> y2(y.data(), DynShape<2>(index_t{1}, D), {D, y.stride(0)});
  const TensorView<const float, DynShape<2>> sc = state;
  detail::conv1d_run(backend,
                     detail::conv1d_setup("conv1d_step", y2, x2, w, bias, state.data(), &sc));
}
inline void conv1d_step(TensorView<float, DynShape<2>> state,
                        TensorView<const float, DynShape<1>> x,
                        TensorView<const float, DynShape<2>> w,
                        TensorView<const float, DynShape<1>> bias,
                        TensorView<float, DynShape<1>> y) {
  conv1d_step(default_backend{}, state, x, w, bias, y);
}

}  // namespace tessel
