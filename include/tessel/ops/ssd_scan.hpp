#pragma once
// The Mamba-2 scan (Dao & Gu 2024, "state space duality"): a selective state-space recurrence
// whose transition is a scalar per head. For head h (of H, each of P = headdim channels), its
// group g = h / (H / G) and t = 0..L−1:
//
//   Δ[t,h]     = softplus(dt[t,h] + dt_bias[h])             (softplus and dt_bias optional)
//   S[h,p,n]   = exp(Δ[t,h]·A[h]) · S[h,p,n] + Δ[t,h] · x[t,h,p] · B[t,g,n]
//   y[t,h,p]   = Σ_n C[t,g,n] · S[h,p,n] + D[h] · x[t,h,p]   (D optional)
//
// Layout: time-major. x, y [L, H·P] (head h's channels at h·P .. h·P+P−1), dt [L, H], B, C
// [L, G·N]; A, D, dt_bias [H] (A = −exp(A_log), negative); the state S [H, P, N] (PyTorch's
// ssm_state of one sequence). Every matrix may have any row stride with a contiguous last axis,
// so the x / B / C / dt columns of the Mamba-2 in_proj and conv outputs are used in place.
//
//   ssd_scan_inputs in{.x = x, .dt = dt, .A = A, .B = B, .C = C, .D = D, .dt_bias = b,
//                       .groups = G};       // H from A's length, P = cols(x) / H, N = cols(B) / G
//   ssd_scan(y, in, S);                      // S [H, P, N]: initial state in, final state out
//   ssd_scan(cpu_scalar{}, y, in, S);        // the reference
//   kernel<op::ssd_scan, Backend>::run(problem);  // the same on raw rows (the layers)
//   ssd_scan_step(y_t, step_in, S);          // one token (rank-1 x_t, dt_t, B_t, C_t)
//
// Kernels. Because the decay exp(Δ·A) is one scalar per head and step (Mamba-1 has one per
// channel and lane), the inner loop is a multiply and two FMAs per state element, no exp:
//   - over_n: each row S[h,p,:] updated in place, SIMD along N, one horizontal sum per (t, p).
//     No scratch and no transpose: the decode step and prompts shorter than
//     ssd_min_rows_over_p rows.
//   - over_p_regs (prompts): a head's state transposed once per call into a per-thread
//     [P/W][N][W] block (p in the vector lanes, so y[t, p..p+W) needs no horizontal sum and B,
//     C are broadcasts); per block of 32 steps and vector of W channels, 8 state lanes stay in
//     registers across all 32 steps, so the inner loop loads and stores no state.
//   - over_p: the same layout with the state in memory (kept as a measured alternative).
// Heads are spread over the thread pool. A chunked SSD form (intra-chunk matrix products
// C·Bᵀ, M·X, inter-chunk state passing, all through gemm) was prototyped and measured slower
// here than over_p_regs at mamba2-130m's shapes (P 64, N 128: 10.5 vs 14.5 G state updates/s
// on one AVX2 core at chunk 32, worse at 64 and 128), so the sequential recurrence stays
// (figures: docs/mamba.md).

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../backend/tags.hpp"
#include "../backend/thread_pool.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"
#include "norm.hpp"
#include "selective_scan.hpp"

namespace tessel {

/// The inputs of a whole-prompt Mamba-2 scan; D and dt_bias may be left empty.
struct ssd_scan_inputs {
  TensorView<const float, DynShape<2>> x, dt;           // [L, H·P] [L, H]
  TensorView<const float, DynShape<1>> A;               // [H]
  TensorView<const float, DynShape<2>> B, C;            // [L, G·N] [L, G·N]
  TensorView<const float, DynShape<1>> D{}, dt_bias{};  // [H] [H]
  index_t groups = 1;                                   // G
  bool dt_softplus = true;                              // Δ = softplus(dt + dt_bias)
};

/// The inputs of one decoding step; D and dt_bias may be left empty.
struct ssd_scan_step_inputs {
  TensorView<const float, DynShape<1>> x, dt, A, B, C;  // [H·P] [H] [H] [G·N] [G·N]
  TensorView<const float, DynShape<1>> D{}, dt_bias{};
  index_t groups = 1;
  bool dt_softplus = true;
};

namespace detail {

/// One Mamba-2 scan as raw rows: row t of a matrix M is M + t * ld_M.
struct ssd_problem {
  index_t L = 0, H = 0, P = 0, N = 0, G = 1;
  const float *x = nullptr, *dt = nullptr, *A = nullptr, *B = nullptr, *C = nullptr;
  index_t ld_x = 0, ld_dt = 0, ld_B = 0, ld_C = 0;
  const float *Dskip = nullptr, *dt_bias = nullptr;
  bool softplus = true;
  float* y = nullptr;
  index_t ld_y = 0;
  float* S = nullptr;  // [H, P, N], contiguous
};

inline float ssd_delta(const ssd_problem& p, index_t t, index_t h) {
  const float v = p.dt[t * p.ld_dt + h] + (p.dt_bias ? p.dt_bias[h] : 0.f);
  return p.softplus ? softplus_ref(v) : v;
}

inline index_t ssd_group(const ssd_problem& p, index_t h) {
  return h / (p.H / p.G);
}

/// The reference: the equations as written, heads [h0, h1).
inline void ssd_heads_reference(const ssd_problem& p, index_t h0, index_t h1) {
  for (index_t h = h0; h < h1; ++h) {
    const index_t g = ssd_group(p, h);
    float* S = p.S + h * p.P * p.N;
    for (index_t t = 0; t < p.L; ++t) {
      const float delta = ssd_delta(p, t, h);
      const float dA = std::exp(delta * p.A[h]);
      const float* x = p.x + t * p.ld_x + h * p.P;
      const float* B = p.B + t * p.ld_B + g * p.N;
      const float* C = p.C + t * p.ld_C + g * p.N;
      float* y = p.y + t * p.ld_y + h * p.P;
      for (index_t i = 0; i < p.P; ++i) {
        float acc = 0.f;
        for (index_t n = 0; n < p.N; ++n) {
          float& s = S[i * p.N + n];
          s = dA * s + delta * x[i] * B[n];
          acc += C[n] * s;
        }
        y[i] = acc + (p.Dskip ? p.Dskip[h] * x[i] : 0.f);
      }
    }
  }
}

/// SIMD along N, each state row updated in place; any P and N.
template <class Arch>
void ssd_heads_over_n(const ssd_problem& p, index_t h0, index_t h1) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  const index_t N = p.N, Nv = N / W * W;
  for (index_t h = h0; h < h1; ++h) {
    const index_t g = ssd_group(p, h);
    float* S = p.S + h * p.P * N;
    const float dskip = p.Dskip ? p.Dskip[h] : 0.f;
    for (index_t t = 0; t < p.L; ++t) {
      const float delta = ssd_delta(p, t, h);
      const V dA(std::exp(delta * p.A[h]));
      const float* x = p.x + t * p.ld_x + h * p.P;
      const float* B = p.B + t * p.ld_B + g * N;
      const float* C = p.C + t * p.ld_C + g * N;
      float* y = p.y + t * p.ld_y + h * p.P;
      for (index_t i = 0; i < p.P; ++i) {
        float* s = S + i * N;
        const float dx = delta * x[i];
        const V vdx(dx);
        V acc0(0.f), acc1(0.f);
        index_t n = 0;
        for (; n + 2 * W <= Nv; n += 2 * W) {
          const V s0 = xsimd::fma(dA, V::load_unaligned(s + n), vdx * V::load_unaligned(B + n));
          const V s1 =
              xsimd::fma(dA, V::load_unaligned(s + n + W), vdx * V::load_unaligned(B + n + W));
          s0.store_unaligned(s + n);
          s1.store_unaligned(s + n + W);
          acc0 = xsimd::fma(V::load_unaligned(C + n), s0, acc0);
          acc1 = xsimd::fma(V::load_unaligned(C + n + W), s1, acc1);
        }
        if (n < Nv) {
          const V s0 = xsimd::fma(dA, V::load_unaligned(s + n), vdx * V::load_unaligned(B + n));
          s0.store_unaligned(s + n);
          acc0 = xsimd::fma(V::load_unaligned(C + n), s0, acc0);
          n += W;
        }
        float acc = xsimd::hadd(acc0 + acc1);
        const float a = dA.get(0);
        for (; n < N; ++n) {
          s[n] = a * s[n] + dx * B[n];
          acc += C[n] * s[n];
        }
        y[i] = acc + dskip * x[i];
      }
    }
  }
}

/// SIMD along P (W channels per vector), the head's state transposed into a per-thread block
/// for the whole call. P must be a multiple of W.
template <class Arch>
void ssd_heads_over_p(const ssd_problem& p, index_t h0, index_t h1) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  const index_t N = p.N, P = p.P, nb = P / W;
  // Grows once per thread, then reused (prompts only: the step kernel never comes here).
  thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> blk;
  if (static_cast<index_t>(blk.size()) < P * N) blk.resize(std::size_t(P * N));
  float* T = blk.data();  // T[(b*N + n)*W + j] = S[h, b*W + j, n]
  for (index_t h = h0; h < h1; ++h) {
    const index_t g = ssd_group(p, h);
    float* S = p.S + h * P * N;
    for (index_t i = 0; i < P; ++i)
      for (index_t n = 0; n < N; ++n) T[((i / W) * N + n) * W + i % W] = S[i * N + n];
    const V dskip(p.Dskip ? p.Dskip[h] : 0.f);
    for (index_t t = 0; t < p.L; ++t) {
      const float delta = ssd_delta(p, t, h);
      const V dA(std::exp(delta * p.A[h])), vdelta(delta);
      const float* x = p.x + t * p.ld_x + h * P;
      const float* B = p.B + t * p.ld_B + g * N;
      const float* C = p.C + t * p.ld_C + g * N;
      float* y = p.y + t * p.ld_y + h * P;
      for (index_t b = 0; b < nb; ++b) {
        const V xv = V::load_unaligned(x + b * W);
        const V dx = vdelta * xv;
        float* Tb = T + b * N * W;
        V acc0(0.f), acc1(0.f);
        index_t n = 0;
        for (; n + 2 <= N; n += 2) {
          const V s0 = xsimd::fma(dA, V::load_aligned(Tb + n * W), dx * V(B[n]));
          const V s1 = xsimd::fma(dA, V::load_aligned(Tb + (n + 1) * W), dx * V(B[n + 1]));
          s0.store_aligned(Tb + n * W);
          s1.store_aligned(Tb + (n + 1) * W);
          acc0 = xsimd::fma(V(C[n]), s0, acc0);
          acc1 = xsimd::fma(V(C[n + 1]), s1, acc1);
        }
        if (n < N) {
          const V s0 = xsimd::fma(dA, V::load_aligned(Tb + n * W), dx * V(B[n]));
          s0.store_aligned(Tb + n * W);
          acc0 = xsimd::fma(V(C[n]), s0, acc0);
        }
        xsimd::fma(dskip, xv, acc0 + acc1).store_unaligned(y + b * W);
      }
    }
    for (index_t i = 0; i < P; ++i)
      for (index_t n = 0; n < N; ++n) S[i * N + n] = T[((i / W) * N + n) * W + i % W];
  }
}

inline constexpr index_t ssd_time_block = 32;  // steps whose Δ, decay and x live on the stack

/// K state lanes n0..n0+K−1 of W channels (one vector each) held in registers across the
/// steps [0, T) of a time block: y[t, W channels] += Σ_k C[t, n0+k] · S_k (first: = ...).
template <class Arch, int K>
inline void ssd_regs_block(float* Tb, index_t n0, index_t T, const float* dA, const float* xd,
                           const float* B, index_t ld_B, const float* C, index_t ld_C, float* yacc,
                           bool first) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  V s[K];
  for (int k = 0; k < K; ++k) s[k] = V::load_aligned(Tb + (n0 + k) * W);
  for (index_t t = 0; t < T; ++t) {
    const V a(dA[t]);
    const V dx = V::load_aligned(xd + t * W);  // Δ_t · x_t
    const float* b = B + t * ld_B + n0;
    const float* c = C + t * ld_C + n0;
    V acc = first ? V(0.f) : V::load_aligned(yacc + t * W);
    for (int k = 0; k < K; ++k) {
      s[k] = xsimd::fma(a, s[k], dx * V(b[k]));
      acc = xsimd::fma(V(c[k]), s[k], acc);
    }
    acc.store_aligned(yacc + t * W);
  }
  for (int k = 0; k < K; ++k) s[k].store_aligned(Tb + (n0 + k) * W);
}

/// SIMD along P with the state in registers: the head's state transposed into a per-thread
/// [P/W][N][W] block; per time block of ssd_time_block steps and per vector of W channels, 8
/// state lanes at a time stay in registers for all the block's steps, so the inner loop has no
/// state load or store (two broadcasts, a multiply and two FMAs per update). P must be a
/// multiple of W.
template <class Arch>
void ssd_heads_over_p_regs(const ssd_problem& p, index_t h0, index_t h1) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  constexpr index_t TB = ssd_time_block;
  const index_t N = p.N, P = p.P, nb = P / W;
  thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> blk;
  if (static_cast<index_t>(blk.size()) < P * N) blk.resize(std::size_t(P * N));
  float* T = blk.data();  // T[(b*N + n)*W + j] = S[h, b*W + j, n]
  alignas(64) float dA[TB], dl[TB], xd[TB * W], yacc[TB * W];
  for (index_t h = h0; h < h1; ++h) {
    const index_t g = ssd_group(p, h);
    float* S = p.S + h * P * N;
    for (index_t i = 0; i < P; ++i)
      for (index_t n = 0; n < N; ++n) T[((i / W) * N + n) * W + i % W] = S[i * N + n];
    const V dskip(p.Dskip ? p.Dskip[h] : 0.f);
    for (index_t t0 = 0; t0 < p.L; t0 += TB) {
      const index_t nt = std::min(TB, p.L - t0);
      for (index_t t = 0; t < nt; ++t) {
        dl[t] = ssd_delta(p, t0 + t, h);
        dA[t] = std::exp(dl[t] * p.A[h]);
      }
      const float* B = p.B + t0 * p.ld_B + g * N;
      const float* C = p.C + t0 * p.ld_C + g * N;
      for (index_t b = 0; b < nb; ++b) {
        const float* x = p.x + t0 * p.ld_x + h * P + b * W;
        for (index_t t = 0; t < nt; ++t)
          (V(dl[t]) * V::load_unaligned(x + t * p.ld_x)).store_aligned(xd + t * W);
        float* Tb = T + b * N * W;
        index_t n = 0;
        for (; n + 8 <= N; n += 8)
          ssd_regs_block<Arch, 8>(Tb, n, nt, dA, xd, B, p.ld_B, C, p.ld_C, yacc, n == 0);
        for (; n < N; ++n)
          ssd_regs_block<Arch, 1>(Tb, n, nt, dA, xd, B, p.ld_B, C, p.ld_C, yacc, n == 0);
        float* y = p.y + t0 * p.ld_y + h * P + b * W;
        for (index_t t = 0; t < nt; ++t)
          xsimd::fma(dskip, V::load_unaligned(x + t * p.ld_x), V::load_aligned(yacc + t * W))
              .store_unaligned(y + t * p.ld_y);
      }
    }
    for (index_t i = 0; i < P; ++i)
      for (index_t n = 0; n < N; ++n) S[i * N + n] = T[((i / W) * N + n) * W + i % W];
  }
}

enum class ssd_variant { automatic, over_n, over_p, over_p_regs };

/// Prompts at least this long take the register-blocked kernel (measured crossover at P 64,
/// N 128: its transpose in and out costs about four steps of the in-place kernel).
inline constexpr index_t ssd_min_rows_over_p = 16;

template <class Arch>
void ssd_simd(const ssd_problem& p, ssd_variant v = ssd_variant::automatic) {
  constexpr index_t W = static_cast<index_t>(xsimd::batch<float, Arch>::size);
  if (v == ssd_variant::automatic)
    v = p.L >= ssd_min_rows_over_p && p.P % W == 0 ? ssd_variant::over_p_regs : ssd_variant::over_n;
  if (v != ssd_variant::over_n && p.P % W != 0) v = ssd_variant::over_n;
  auto body = [&](index_t lo, index_t hi) {
    if (v == ssd_variant::over_p)
      ssd_heads_over_p<Arch>(p, lo, hi);
    else if (v == ssd_variant::over_p_regs)
      ssd_heads_over_p_regs<Arch>(p, lo, hi);
    else
      ssd_heads_over_n<Arch>(p, lo, hi);
  };
  if (p.L * p.H * p.P * p.N >= (index_t{1} << 15) && p.H > 1)
    parallel_for(0, p.H, 1, body);
  else
    body(0, p.H);
}

}  // namespace detail

namespace op {
/// The Mamba-2 scan of a detail::ssd_problem (S in and out).
struct ssd_scan {};
}  // namespace op

/// The reference (the variant only chooses among SIMD kernels).
template <>
struct kernel<op::ssd_scan, cpu_scalar> {
  static void run(const detail::ssd_problem& p,
                  detail::ssd_variant = detail::ssd_variant::automatic) {
    if (p.L == 0 || p.H == 0) return;
    detail::ssd_heads_reference(p, 0, p.H);
  }
};

/// Vectors of Arch (over N for steps, over P for prompts), heads over the pool.
template <class Arch>
struct kernel<op::ssd_scan, cpu_simd<Arch>> {
  static void run(const detail::ssd_problem& p,
                  detail::ssd_variant v = detail::ssd_variant::automatic) {
    if (p.L == 0 || p.H == 0) return;
    detail::ssd_simd<Arch>(p, v);
  }
};

namespace detail {

/// The scan on the backend's kernel.
template <class Backend>
void ssd_run(Backend, const ssd_problem& p, ssd_variant v = ssd_variant::automatic) {
  kernel<op::ssd_scan, Backend>::run(p, v);
}

/// Checks the head / group structure shared by both entry points.
inline void ssd_check_heads(const char* op, index_t HP, index_t H, index_t GN, index_t G) {
  if (H < 1 || G < 1 || HP % H != 0 || GN % G != 0 || H % G != 0)
    throw shape_error(std::string("tessel: ") + op + ": " + std::to_string(HP) +
                      " channels of x, " + std::to_string(H) + " heads (from A), " +
                      std::to_string(GN) + " columns of B and " + std::to_string(G) +
                      " groups: the heads must split x evenly, the groups B and C and the heads");
}

}  // namespace detail

namespace op {
/// Mamba-2's output gate and grouped norm, on M rows of d_inner channels split into G groups:
/// y = rms_norm(y · silu(z)) per group, with the weight [G, d_inner / G].
struct gated_group_rms_norm {};
}  // namespace op

template <>
struct kernel<op::gated_group_rms_norm, cpu_scalar> {
  static void run(const float* z, index_t ld_z, float* y, index_t ld_y, index_t M, index_t Di,
                  index_t G, const float* w, float eps) {
    const index_t GS = Di / G;
    for (index_t m = 0; m < M; ++m) {
      float* yr = y + m * ld_y;
      kernel<op::silu_mul, cpu_scalar>::run(z + m * ld_z, yr, yr, Di);
      for (index_t g = 0; g < G; ++g)
        detail::rms_norm_row_reference(yr + g * GS, yr + g * GS, GS, w + g * GS, eps);
    }
  }
};
template <class Arch>
struct kernel<op::gated_group_rms_norm, cpu_simd<Arch>> {
  static void run(const float* z, index_t ld_z, float* y, index_t ld_y, index_t M, index_t Di,
                  index_t G, const float* w, float eps) {
    const index_t GS = Di / G;
    for (index_t m = 0; m < M; ++m) {
      float* yr = y + m * ld_y;
      detail::silu_mul_row_simd<Arch>(z + m * ld_z, yr, yr, Di);
      for (index_t g = 0; g < G; ++g) norm_row(yr + g * GS, GS, w + g * GS, eps);
    }
  }
  // Not inlined, as the activations' rows (GCC 12's false -Waggressive-loop-optimizations).
  [[gnu::noipa]] static void norm_row(float* y, index_t n, const float* w, float eps) {
    detail::rms_norm_row_simd<Arch>(y, y, n, w, eps);
  }
};

/// The whole-prompt Mamba-2 scan: y [L, H·P] from the inputs; S [H, P, N] is the initial
/// state and receives the final one. y must not overlap the inputs.
template <class Backend>
requires is_cpu_backend_v<Backend>
void ssd_scan(Backend backend, TensorView<float, DynShape<2>> y, const ssd_scan_inputs& in,
              TensorView<float, DynShape<3>> S,
              detail::ssd_variant variant = detail::ssd_variant::automatic) {
  constexpr const char* op = "ssd_scan";
  const index_t L = in.x.extent(0), HP = in.x.extent(1), H = in.A.extent(0), GN = in.B.extent(1),
                G = in.groups;
  detail::ssd_check_heads(op, HP, H, GN, G);
  const index_t P = HP / H, N = GN / G;
  const std::string xs = detail::shape_of(in.x), bs = detail::shape_of(in.B);
  detail::scan_expect(op, "dt", in.dt, {L, H}, "x", xs);
  detail::scan_expect(op, "B", in.B, {L, GN}, "x", xs);
  detail::scan_expect(op, "C", in.C, {L, GN}, "B", bs);
  detail::scan_expect(op, "x", in.x, {L, HP}, "x", xs);
  if (in.D.data()) detail::scan_expect(op, "D", in.D, {H}, "A", detail::shape_of(in.A));
  if (in.dt_bias.data())
    detail::scan_expect(op, "dt_bias", in.dt_bias, {H}, "A", detail::shape_of(in.A));
  detail::scan_expect(op, "y", TensorView<const float, DynShape<2>>(y), {L, HP}, "x", xs);
  if (S.shape().extents() != std::array<index_t, 3>{H, P, N} || S.stride(0) != P * N ||
      S.stride(1) != N || (N > 1 && S.stride(2) != 1))
    throw shape_error(std::string("tessel: ") + op + ": the state has shape " +
                      to_string(S.shape()) + ", expected a contiguous " +
                      to_string(std::array<index_t, 3>{H, P, N}) + " (heads, headdim, d_state)");
  detail::ssd_problem p;
  p.L = L, p.H = H, p.P = P, p.N = N, p.G = G;
  p.x = in.x.data(), p.ld_x = in.x.stride(0);
  p.dt = in.dt.data(), p.ld_dt = in.dt.stride(0);
  p.A = in.A.data();
  p.B = in.B.data(), p.ld_B = in.B.stride(0);
  p.C = in.C.data(), p.ld_C = in.C.stride(0);
  p.Dskip = in.D.data(), p.dt_bias = in.dt_bias.data();
  p.softplus = in.dt_softplus;
  p.y = y.data(), p.ld_y = y.stride(0);
  p.S = S.data();
  detail::ssd_run(backend, p, variant);
}
inline void ssd_scan(TensorView<float, DynShape<2>> y, const ssd_scan_inputs& in,
                     TensorView<float, DynShape<3>> S) {
  ssd_scan(default_backend{}, y, in, S);
}
/// A new y [L, H·P]; S [H, P, N] carries the state in and out.
inline Tensor<float, DynShape<2>> ssd_scan(const ssd_scan_inputs& in,
                                           TensorView<float, DynShape<3>> S) {
  Tensor<float, DynShape<2>> y(in.x.extent(0), in.x.extent(1));
  ssd_scan(default_backend{}, y, in, S);
  return y;
}

/// One decoding step: y_t [H·P] from x_t [H·P], dt_t [H], B_t, C_t [G·N]; S [H, P, N] is
/// updated in place. Allocates nothing.
template <class Backend>
requires is_cpu_backend_v<Backend>
void ssd_scan_step(Backend backend, TensorView<float, DynShape<1>> y,
                   const ssd_scan_step_inputs& in, TensorView<float, DynShape<3>> S) {
  const auto row = [](const auto& v) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(v.data())>>;
    return TensorView<const T, DynShape<2>>(v.data(), DynShape<2>(index_t{1}, v.extent(0)),
                                            {v.extent(0), v.stride(0)});
  };
  ssd_scan_inputs p{.x = row(in.x),
                    .dt = row(in.dt),
                    .A = in.A,
                    .B = row(in.B),
                    .C = row(in.C),
                    .D = in.D,
                    .dt_bias = in.dt_bias,
                    .groups = in.groups,
                    .dt_softplus = in.dt_softplus};
  const TensorView<float, DynShape<2>> y2(y.data(), DynShape<2>(index_t{1}, y.extent(0)),
                                          {y.extent(0), y.stride(0)});
  ssd_scan(backend, y2, p, S, detail::ssd_variant::over_n);
}
inline void ssd_scan_step(TensorView<float, DynShape<1>> y, const ssd_scan_step_inputs& in,
                          TensorView<float, DynShape<3>> S) {
  ssd_scan_step(default_backend{}, y, in, S);
}

}  // namespace tessel
