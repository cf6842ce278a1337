#pragma once
// The Mamba-1 selective scan (Gu & Dao 2023, Algorithm 2 with the zero-order-hold Ā and the
// simplified B̄ = Δ·B of the reference implementation), per channel d and state n:
//
//   Δ[t,d]   = softplus(dt[t,d] + dt_bias[d])       (softplus and dt_bias optional)
//   h[d,n]   = exp(Δ[t,d]·A[d,n]) · h[d,n] + Δ[t,d] · B[t,n] · u[t,d]
//   y[t,d]   = Σ_n C[t,n] · h[d,n] + D[d] · u[t,d]  (D optional)
//   y[t,d]  *= silu(z[t,d])                          (gate optional)
//
// Layout: time-major, channels contiguous. u, dt, z, y are [L, D]; B, C are [L, N]; A and the
// state h are [D, N] (h as PyTorch's ssm_state [D, N] for one sequence). A is the negative
// matrix -exp(A_log): a layer computes it once at load time, not per token. Every matrix may
// have any row stride (slices of in_proj / x_proj outputs are used in place) but its last axis
// must be contiguous.
//
//   selective_scan_inputs in{.u = u, .dt = dt, .A = A, .B = B, .C = C, .D = D, .dt_bias = b,
//                             .z = z};               // D, dt_bias, z: leave empty to omit
//   selective_scan(y, in, h);                         // h: initial state in, final state out
//   selective_scan(cpu_scalar{}, y, in, h);           // the reference; cpu_simd<A>: SIMD
//   kernel<op::selective_scan, Backend>::run(problem); // the same on raw rows (the layers)
//   selective_scan_step(y_t, step_in, h);             // one token: rank-1 u_t, dt_t, B_t, C_t...
//
// A prompt followed by steps equals one long prompt (h carries everything). Neither kernel
// allocates: the state and outputs are caller buffers, scratch lives on the stack.
//
// SIMD: 8 channels per vector, each state lane n kept in its own vector, so the Σ_n needs no
// horizontal add and every exp is a full vector (measured 3x faster than vectorizing over the
// N = 16 lanes of one channel for a prompt, 2x for one step: docs/mamba.md). N > 64
// vectorizes over the N lanes instead, on h in place. Channel blocks are spread over the pool.
// The exp is xsimd::exp: a leaner range-reduced polynomial (no special-case selects) measured
// no faster here, so the library's stays.

#include <algorithm>
#include <cmath>
#include <string>

#include "../backend/tags.hpp"
#include "../backend/thread_pool.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"

namespace tessel {

/// The inputs of a whole-prompt scan; D, dt_bias and z may be left empty (data() == nullptr).
struct selective_scan_inputs {
  TensorView<const float, DynShape<2>> u, dt, A, B, C;  // [L,D] [L,D] [D,N] [L,N] [L,N]
  TensorView<const float, DynShape<1>> D{}, dt_bias{};  // [D] [D]
  TensorView<const float, DynShape<2>> z{};             // [L,D]
  bool dt_softplus = true;                              // Δ = softplus(dt + dt_bias)
};

/// The inputs of one decoding step; D, dt_bias and z_t may be left empty.
struct selective_scan_step_inputs {
  TensorView<const float, DynShape<1>> u, dt;  // [D] [D]
  TensorView<const float, DynShape<2>> A;      // [D,N]
  TensorView<const float, DynShape<1>> B, C;   // [N] [N]
  TensorView<const float, DynShape<1>> D{}, dt_bias{}, z{};
  bool dt_softplus = true;
};

namespace detail {

/// One scan as raw rows: row t of a matrix M is M + t * ld_M.
struct scan_problem {
  index_t L = 0, D = 0, N = 0;
  const float *u = nullptr, *dt = nullptr, *A = nullptr, *B = nullptr, *C = nullptr;
  index_t ld_u = 0, ld_dt = 0, ld_A = 0, ld_B = 0, ld_C = 0;
  const float *Dskip = nullptr, *dt_bias = nullptr, *z = nullptr;
  index_t ld_z = 0;
  bool softplus = true;
  float* y = nullptr;
  index_t ld_y = 0;
  float* h = nullptr;
  index_t ld_h = 0;
};

inline float softplus_ref(float x) {
  // PyTorch's threshold: above 20, log1p(exp(x)) == x in f32.
  return x > 20.f ? x : std::log1p(std::exp(x));
}

inline float scan_delta(const scan_problem& p, index_t t, index_t d) {
  float v = p.dt[t * p.ld_dt + d] + (p.dt_bias ? p.dt_bias[d] : 0.f);
  return p.softplus ? softplus_ref(v) : v;
}

inline float scan_finish(const scan_problem& p, index_t t, index_t d, float acc) {
  const float uu = p.u[t * p.ld_u + d];
  float y = acc + (p.Dskip ? p.Dskip[d] * uu : 0.f);
  if (p.z) {
    const float zz = p.z[t * p.ld_z + d];
    y *= detail::silu(zz);
  }
  return y;
}

/// The reference: the recurrence as written, one channel at a time.
inline void scan_channels_reference(const scan_problem& p, index_t d0, index_t d1) {
  for (index_t d = d0; d < d1; ++d) {
    float* h = p.h + d * p.ld_h;
    const float* a = p.A + d * p.ld_A;
    for (index_t t = 0; t < p.L; ++t) {
      const float delta = scan_delta(p, t, d);
      const float du = delta * p.u[t * p.ld_u + d];
      const float* b = p.B + t * p.ld_B;
      const float* c = p.C + t * p.ld_C;
      float acc = 0.f;
      for (index_t n = 0; n < p.N; ++n) {
        h[n] = std::exp(delta * a[n]) * h[n] + du * b[n];
        acc += c[n] * h[n];
      }
      p.y[t * p.ld_y + d] = scan_finish(p, t, d, acc);
    }
  }
}

/// SIMD over the N state lanes of one channel, h updated in place (any N).
template <class Arch>
void scan_channels_over_n(const scan_problem& p, index_t d0, index_t d1) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  for (index_t d = d0; d < d1; ++d) {
    float* h = p.h + d * p.ld_h;
    const float* a = p.A + d * p.ld_A;
    for (index_t t = 0; t < p.L; ++t) {
      const float delta = scan_delta(p, t, d);
      const float du = delta * p.u[t * p.ld_u + d];
      const float* b = p.B + t * p.ld_B;
      const float* c = p.C + t * p.ld_C;
      const V vdelta(delta), vdu(du);
      V acc(0.f);
      index_t n = 0;
      for (; n + W <= p.N; n += W) {
        const V dA = xsimd::exp(vdelta * V::load_unaligned(a + n));
        const V hn = xsimd::fma(dA, V::load_unaligned(h + n), vdu * V::load_unaligned(b + n));
        hn.store_unaligned(h + n);
        acc = xsimd::fma(V::load_unaligned(c + n), hn, acc);
      }
      float s = xsimd::hadd(acc);
      for (; n < p.N; ++n) {
        h[n] = std::exp(delta * a[n]) * h[n] + du * b[n];
        s += c[n] * h[n];
      }
      p.y[t * p.ld_y + d] = scan_finish(p, t, d, s);
    }
  }
}

inline constexpr index_t scan_max_lanes_n = 64;  // N of the channel-vector kernel's stack state

/// SIMD over 8 channels at once (one vector per state lane n), for N <= scan_max_lanes_n.
/// [d0, d1) must hold whole vectors.
template <class Arch>
void scan_channels_over_d(const scan_problem& p, index_t d0, index_t d1) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  alignas(64) float hT[scan_max_lanes_n * W];  // hT[n*W + j] = h[d+j, n]
  alignas(64) float aT[scan_max_lanes_n * W];
  const index_t N = p.N;
  const V zero(0.f), one(1.f), twenty(20.f);
  for (index_t d = d0; d + W <= d1; d += W) {
    for (index_t j = 0; j < W; ++j)
      for (index_t n = 0; n < N; ++n) {
        hT[n * W + j] = p.h[(d + j) * p.ld_h + n];
        aT[n * W + j] = p.A[(d + j) * p.ld_A + n];
      }
    const V bias = p.dt_bias ? V::load_unaligned(p.dt_bias + d) : zero;
    const V dskip = p.Dskip ? V::load_unaligned(p.Dskip + d) : zero;
    for (index_t t = 0; t < p.L; ++t) {
      V delta = V::load_unaligned(p.dt + t * p.ld_dt + d) + bias;
      if (p.softplus) delta = xsimd::select(delta > twenty, delta, xsimd::log1p(xsimd::exp(delta)));
      const V uu = V::load_unaligned(p.u + t * p.ld_u + d);
      const V du = delta * uu;
      const float* b = p.B + t * p.ld_B;
      const float* c = p.C + t * p.ld_C;
      // Two accumulators: the Σ_n chain is otherwise one long dependency.
      V acc0(0.f), acc1(0.f);
      index_t n = 0;
      for (; n + 2 <= N; n += 2) {
        const V dA0 = xsimd::exp(delta * V::load_aligned(aT + n * W));
        const V dA1 = xsimd::exp(delta * V::load_aligned(aT + (n + 1) * W));
        const V h0 = xsimd::fma(dA0, V::load_aligned(hT + n * W), du * V(b[n]));
        const V h1 = xsimd::fma(dA1, V::load_aligned(hT + (n + 1) * W), du * V(b[n + 1]));
        h0.store_aligned(hT + n * W);
        h1.store_aligned(hT + (n + 1) * W);
        acc0 = xsimd::fma(V(c[n]), h0, acc0);
        acc1 = xsimd::fma(V(c[n + 1]), h1, acc1);
      }
      if (n < N) {
        const V dA = xsimd::exp(delta * V::load_aligned(aT + n * W));
        const V hn = xsimd::fma(dA, V::load_aligned(hT + n * W), du * V(b[n]));
        hn.store_aligned(hT + n * W);
        acc0 = xsimd::fma(V(c[n]), hn, acc0);
      }
      V yv = xsimd::fma(dskip, uu, acc0 + acc1);
      if (p.z) {
        const V zz = V::load_unaligned(p.z + t * p.ld_z + d);
        yv *= zz / (one + xsimd::exp(-zz));
      }
      yv.store_unaligned(p.y + t * p.ld_y + d);
    }
    for (index_t j = 0; j < W; ++j)
      for (index_t n = 0; n < N; ++n) p.h[(d + j) * p.ld_h + n] = hT[n * W + j];
  }
}

enum class scan_variant { automatic, over_d, over_n };

template <class Arch>
void scan_simd(const scan_problem& p, scan_variant v = scan_variant::automatic) {
  constexpr index_t W = static_cast<index_t>(xsimd::batch<float, Arch>::size);
  if (v == scan_variant::automatic)
    v = p.N <= scan_max_lanes_n ? scan_variant::over_d : scan_variant::over_n;
  auto body = [&](index_t lo, index_t hi) {
    if (v == scan_variant::over_d) {
      const index_t whole = lo + (hi - lo) / W * W;
      scan_channels_over_d<Arch>(p, lo, whole);
      scan_channels_over_n<Arch>(p, whole, hi);  // the tail channels of the last block
    } else {
      scan_channels_over_n<Arch>(p, lo, hi);
    }
  };
  const index_t work = p.L * p.D * p.N;
  if (work >= (index_t{1} << 15) && p.D > W)
    parallel_for(0, p.D, W, body);  // grain W keeps every chunk but the last whole vectors
  else
    body(0, p.D);
}

inline std::string shape_of(const TensorView<const float, DynShape<2>>& v) {
  return to_string(v.shape());
}
inline std::string shape_of(const TensorView<const float, DynShape<1>>& v) {
  return to_string(v.shape());
}

[[noreturn]] inline void scan_mismatch(const char* op, const char* what, const std::string& got,
                                       const std::string& want, const char* ref,
                                       const std::string& ref_shape) {
  throw shape_error(std::string("tessel: ") + op + ": " + what + " has shape " + got +
                    ", expected " + want + " (from " + ref + " of shape " + ref_shape + ")");
}

template <class View>
void scan_expect(const char* op, const char* what, const View& v, std::array<index_t, View::rank> e,
                 const char* ref, const std::string& ref_shape) {
  if (v.shape().extents() != e)
    scan_mismatch(op, what, to_string(v.shape()), to_string(e), ref, ref_shape);
  if (v.stride(View::rank - 1) != 1 && v.extent(View::rank - 1) > 1)
    throw shape_error(std::string("tessel: ") + op + ": " + what + " of shape " +
                      to_string(v.shape()) + " must be contiguous along its last axis (stride " +
                      std::to_string(v.stride(View::rank - 1)) + ")");
}

}  // namespace detail

namespace op {
/// The Mamba-1 selective scan of a detail::scan_problem (h in and out).
struct selective_scan {};
}  // namespace op

/// The reference.
template <>
struct kernel<op::selective_scan, cpu_scalar> {
  static void run(const detail::scan_problem& p) {
    if (p.L == 0 || p.D == 0) return;
    detail::scan_channels_reference(p, 0, p.D);
  }
};

/// Vectors of Arch over channels (or over the state lanes for a large N), threaded.
template <class Arch>
struct kernel<op::selective_scan, cpu_simd<Arch>> {
  static void run(const detail::scan_problem& p,
                  detail::scan_variant v = detail::scan_variant::automatic) {
    if (p.L == 0 || p.D == 0) return;
    detail::scan_simd<Arch>(p, v);
  }
};

namespace detail {
/// The scan on the backend's kernel.
template <class Backend>
void scan_run(Backend, const scan_problem& p) {
  kernel<op::selective_scan, Backend>::run(p);
}
}  // namespace detail

/// The whole-prompt scan: y [L,D] from the inputs; h [D,N] is the initial state and receives
/// the final one. y must not overlap the inputs.
template <class Backend>
requires is_cpu_backend_v<Backend>
void selective_scan(Backend backend, TensorView<float, DynShape<2>> y,
                    const selective_scan_inputs& in, TensorView<float, DynShape<2>> h) {
  constexpr const char* op = "selective_scan";
  const index_t L = in.u.extent(0), D = in.u.extent(1), N = in.A.extent(1);
  const std::string us = detail::shape_of(in.u), as = detail::shape_of(in.A);
  detail::scan_expect(op, "u", in.u, {L, D}, "u", us);
  detail::scan_expect(op, "dt", in.dt, {L, D}, "u", us);
  detail::scan_expect(op, "A", in.A, {D, N}, "u", us);
  detail::scan_expect(op, "B", in.B, {L, N}, "A", as);
  detail::scan_expect(op, "C", in.C, {L, N}, "A", as);
  if (in.D.data()) detail::scan_expect(op, "D", in.D, {D}, "u", us);
  if (in.dt_bias.data()) detail::scan_expect(op, "dt_bias", in.dt_bias, {D}, "u", us);
  if (in.z.data()) detail::scan_expect(op, "z", in.z, {L, D}, "u", us);
  detail::scan_expect(op, "y", TensorView<const float, DynShape<2>>(y), {L, D}, "u", us);
  detail::scan_expect(op, "h", TensorView<const float, DynShape<2>>(h), {D, N}, "A", as);
  detail::scan_problem p;
  p.L = L, p.D = D, p.N = N;
  p.u = in.u.data(), p.ld_u = in.u.stride(0);
  p.dt = in.dt.data(), p.ld_dt = in.dt.stride(0);
  p.A = in.A.data(), p.ld_A = in.A.stride(0);
  p.B = in.B.data(), p.ld_B = in.B.stride(0);
  p.C = in.C.data(), p.ld_C = in.C.stride(0);
  p.Dskip = in.D.data(), p.dt_bias = in.dt_bias.data();
  p.z = in.z.data(), p.ld_z = in.z.data() ? in.z.stride(0) : 0;
  p.softplus = in.dt_softplus;
  p.y = y.data(), p.ld_y = y.stride(0);
  p.h = h.data(), p.ld_h = h.stride(0);
  detail::scan_run(backend, p);
}
inline void selective_scan(TensorView<float, DynShape<2>> y, const selective_scan_inputs& in,
                           TensorView<float, DynShape<2>> h) {
  selective_scan(default_backend{}, y, in, h);
}
/// A new y [L,D]; h [D,N] carries the state in and out.
inline Tensor<float, DynShape<2>> selective_scan(const selective_scan_inputs& in,
                                                 TensorView<float, DynShape<2>> h) {
  Tensor<float, DynShape<2>> y(in.u.extent(0), in.u.extent(1));
  selective_scan(default_backend{}, y, in, h);
  return y;
}

/// One decoding step: y_t [D] from u_t, dt_t [D], B_t, C_t [N]; h [D,N] is updated in place.
template <class Backend>
requires is_cpu_backend_v<Backend>
void selective_scan_step(Backend backend, TensorView<float, DynShape<1>> y,
                         const selective_scan_step_inputs& in, TensorView<float, DynShape<2>> h) {
  constexpr const char* op = "selective_scan_step";
  const index_t D = in.u.extent(0), N = in.A.extent(1);
  const std::string us = detail::shape_of(in.u), as = detail::shape_of(in.A);
  detail::scan_expect(op, "dt", in.dt, {D}, "u", us);
  detail::scan_expect(op, "u", in.u, {D}, "u", us);
  detail::scan_expect(op, "A", in.A, {D, N}, "u", us);
  detail::scan_expect(op, "B", in.B, {N}, "A", as);
  detail::scan_expect(op, "C", in.C, {N}, "A", as);
  if (in.D.data()) detail::scan_expect(op, "D", in.D, {D}, "u", us);
  if (in.dt_bias.data()) detail::scan_expect(op, "dt_bias", in.dt_bias, {D}, "u", us);
  if (in.z.data()) detail::scan_expect(op, "z", in.z, {D}, "u", us);
  detail::scan_expect(op, "y", TensorView<const float, DynShape<1>>(y), {D}, "u", us);
  detail::scan_expect(op, "h", TensorView<const float, DynShape<2>>(h), {D, N}, "A", as);
  detail::scan_problem p;
  p.L = 1, p.D = D, p.N = N;
  p.u = in.u.data(), p.dt = in.dt.data(), p.A = in.A.data(), p.ld_A = in.A.stride(0);
  p.B = in.B.data(), p.C = in.C.data();
  p.Dskip = in.D.data(), p.dt_bias = in.dt_bias.data(), p.z = in.z.data();
  p.softplus = in.dt_softplus;
  p.y = y.data();
  p.h = h.data(), p.ld_h = h.stride(0);
  detail::scan_run(backend, p);
}
inline void selective_scan_step(TensorView<float, DynShape<1>> y,
                                const selective_scan_step_inputs& in,
                                TensorView<float, DynShape<2>> h) {
  selective_scan_step(default_backend{}, y, in, h);
}

}  // namespace tessel
