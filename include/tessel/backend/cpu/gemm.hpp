#pragma once
// Single-precision matrix products on raw row-major pointers, with f32, f16 or bf16 weights.
//
//   tessel::gemm<Backend>(M, N, K, A, lda, B, ldb, trans_b, C, ldc, beta);
//     C[M,N] = A[M,K] · op(B) + beta · C
//     A: float, row-major, row stride lda >= K
//     B: float, tessel::f16 or tessel::bf16 (widened to f32; products accumulate in f32)
//        trans_b == false: B is [K,N], stride ldb >= N      (op(B) = B)
//        trans_b == true:  B is [N,K], stride ldb >= K      (op(B) = Bᵀ; PyTorch Linear weight)
//     C: float, row-major, stride ldc >= N; beta == 0 never reads C (it may be uninitialized)
//
//   tessel::gemv<Backend>(N, K, W, ldw, x, y, beta);   // y[N] = W[N,K] · x[K] + beta · y
//
// Backend is tessel::cpu_scalar (the reference: a plain triple loop accumulating in double)
// or tessel::cpu_simd<Arch> (tessel::cpu is the best one compiled). The SIMD version packs
// A and B into cache-sized panels (GotoBLAS/BLIS scheme, see gemm_kernels.hpp), runs an
// MR x NR register micro-kernel, threads over blocks of C with the pool in thread_pool.hpp
// (tessel::set_num_threads), and routes M <= 8 to streaming GEMV kernels (gemv.hpp).
// Bad sizes, strides or null pointers throw tessel::value_error / tessel::shape_error.
//
// Both are reachable through the customization point kernel<gemm_op, Backend, TB>::run with
// the same arguments as gemm. Any xsimd float architecture works as Arch (tested: sse2,
// fma3<avx2>, avx512bw); builds for x86-64-v3 get fma3<avx2>. gemm may be called from several
// user threads at once (one job owns the pool, the others run on their own thread), and from
// inside a parallel_for body (it then runs serially).
//
// Measured on the dev machine (one thread, FLOP per CPU-second, see bench/gemm.cpp): AVX2
// 110-117 GFLOP/s for n = 256-2048, 86-91% of the AVX2 FMA peak (125-130); AVX-512 164-178,
// 69-75% of its peak (237), on par with OpenBLAS (157-166). GEMV streams W at 94-99% of the
// read bandwidth (f32, f16, bf16).

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "tessel/backend/cpu/amx_gemm.hpp"
#include "tessel/backend/cpu/gemm_kernels.hpp"
#include "tessel/backend/cpu/gemv.hpp"
#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"

namespace tessel {

/// Tag of the matrix product in kernel<gemm_op, Backend, TB>.
struct gemm_op {};

namespace detail {

/// Cache blocking of the packed GEMM. KC: depth of a rank-k update; one B sliver (KC x NR) is
/// reused across a block of A while A slivers stream from L2, and C is re-read K/KC times.
/// MC: rows of A packed together (MC x KC in L2). NC: columns of B packed together (KC x NC
/// shared by the threads, in L3). Measured on the dev machine (48 KiB L1d, 2 MiB L2): with
/// 6x16 tiles KC = 192..512 and MC = 120..480 are within noise of each other; with 14x32 tiles
/// KC = 512 beats 256 by ~7% (fewer passes over C), and MC = 336 beats 672.
template <class Arch>
struct gemm_blocking {
  static constexpr index_t MR = gemm_tile<Arch>::MR, NR = gemm_tile<Arch>::NR;
  static constexpr index_t KC = NR >= 32 ? 512 : 256;
  static constexpr index_t MC = MR * (MR >= 14 ? 24 : 40);
  static constexpr index_t NC = NR * (4096 / NR);
};

/// beta == 0 writes zeros (never reads C); otherwise scales C in place.
inline void scale_c(index_t M, index_t N, float* C, index_t ldc, float beta) noexcept {
  for (index_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    for (index_t j = 0; j < N; ++j) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
  }
}

template <class Arch, class T>
void gemm_packed(index_t M, index_t N, index_t K, const float* A, index_t lda, const T* B,
                 index_t ldb, bool trans_b, float* C, index_t ldc, float beta) {
  using blk = gemm_blocking<Arch>;
  constexpr index_t MR = blk::MR, NR = blk::NR, KC = blk::KC, NC = blk::NC;
  const index_t nt = num_threads();

  // Blocks of A: as large as MC allows, but a multiple of the thread count so that threads
  // get equal shares of rows.
  index_t n_ic = (M + blk::MC - 1) / blk::MC;
  if (nt > 1) n_ic = (n_ic + nt - 1) / nt * nt;
  const index_t mc_step = std::min(blk::MC, ((M + n_ic - 1) / n_ic + MR - 1) / MR * MR);
  n_ic = (M + mc_step - 1) / mc_step;

  const index_t kc_max = std::min(KC, K);
  const index_t nc_max = (std::min(NC, N) + NR - 1) / NR * NR;
  float* Bp = thread_scratch(1).get(static_cast<std::size_t>(kc_max * nc_max));

  for (index_t jc = 0; jc < N; jc += NC) {
    const index_t nc = std::min(NC, N - jc);
    const index_t n_slivers = (nc + NR - 1) / NR;
    // Few blocks of A for many threads: also split the columns (A blocks get packed twice).
    const index_t n_jg = n_ic >= 2 * nt ? 1 : std::min(n_slivers, (2 * nt + n_ic - 1) / n_ic);
    for (index_t pc = 0; pc < K; pc += KC) {
      const index_t kc = std::min(KC, K - pc);
      const float beta_k = pc == 0 ? beta : 1.0f;

      parallel_for(0, n_slivers, std::max<index_t>(1, 8192 / (kc * NR) + 1),
                   [&](index_t lo, index_t hi) {
                     const index_t j = lo * NR, cols = std::min(nc, hi * NR) - j;
                     float* out = Bp + lo * NR * kc;
                     if (trans_b) {
                       pack_b_cols<NR>(kc, cols, B + (jc + j) * ldb + pc, ldb, out);
                     } else {
                       pack_b_rows<Arch, NR>(kc, cols, B + pc * ldb + jc + j, ldb, out);
                     }
                   });

      parallel_for(0, n_ic * n_jg, 1, [&](index_t lo, index_t hi) {
        float* Ap = thread_scratch(0).get(static_cast<std::size_t>(mc_step * kc));
        index_t packed_ic = -1;
        for (index_t t = lo; t < hi; ++t) {
          const index_t ic = (t / n_jg) * mc_step, g = t % n_jg;
          const index_t mc = std::min(mc_step, M - ic);
          if (ic != packed_ic) {
            pack_a<MR>(mc, kc, A + ic * lda + pc, lda, Ap);
            packed_ic = ic;
          }
          const index_t s_lo = n_slivers * g / n_jg, s_hi = n_slivers * (g + 1) / n_jg;
          for (index_t s = s_lo; s < s_hi; ++s) {
            const index_t j = s * NR, n = std::min(NR, nc - j);
            for (index_t i = 0; i < mc; i += MR) {
              micro_kernel<Arch>(kc, Ap + i * kc, Bp + s * NR * kc, C + (ic + i) * ldc + jc + j,
                                 ldc, beta_k, std::min(MR, mc - i), n);
            }
          }
        }
      });
    }
  }
}

/// Whether gemm on cpu_simd<Arch> with TB weights runs on the AMX tiles (amx_gemm.hpp): f16
/// and bf16 weights (exact in the two-part bf16 split) on the AVX-512 backend of an AMX build,
/// when the process was granted the tile state.
template <class Arch, class TB>
inline bool use_amx() {
#if defined(TESSEL_AMX)
  if constexpr (std::is_base_of_v<xsimd::avx512bw, Arch> && !std::is_same_v<TB, float>)
    return amx_usable();
#endif
  return false;
}

inline void check_gemm_args(index_t M, index_t N, index_t K, const void* A, index_t lda,
                            const void* B, index_t ldb, bool trans_b, const void* C, index_t ldc) {
  const auto s = [](index_t v) { return std::to_string(v); };
  if (M < 0 || N < 0 || K < 0)
    throw value_error("tessel::gemm: sizes must be >= 0, got M=" + s(M) + " N=" + s(N) +
                      " K=" + s(K));
  if (M > 0 && K > 0 && lda < K)
    throw shape_error("tessel::gemm: lda must be >= K=" + s(K) + " (A is [M,K] row-major), got " +
                      s(lda));
  const index_t brow = trans_b ? K : N;
  if (N > 0 && K > 0 && ldb < brow)
    throw shape_error(std::string("tessel::gemm: ldb must be >= ") + (trans_b ? "K=" : "N=") +
                      s(brow) + " (B is " + (trans_b ? "[N,K]" : "[K,N]") + " row-major), got " +
                      s(ldb));
  if (M > 0 && N > 0 && ldc < N)
    throw shape_error("tessel::gemm: ldc must be >= N=" + s(N) + " (C is [M,N] row-major), got " +
                      s(ldc));
  if ((M > 0 && K > 0 && !A) || (N > 0 && K > 0 && !B) || (M > 0 && N > 0 && !C))
    throw value_error("tessel::gemm: null pointer for a non-empty matrix");
}

}  // namespace detail

/// The reference: C = A op(B) + beta C by definition, accumulating in double.
template <class TB>
struct kernel<gemm_op, cpu_scalar, TB> {
  static_assert(detail::is_gemm_weight_v<TB>, "tessel::gemm: B must be float, f16 or bf16");
  static void run(index_t M, index_t N, index_t K, const float* A, index_t lda, const TB* B,
                  index_t ldb, bool trans_b, float* C, index_t ldc, float beta) {
    detail::check_gemm_args(M, N, K, A, lda, B, ldb, trans_b, C, ldc);
    for (index_t i = 0; i < M; ++i) {
      for (index_t j = 0; j < N; ++j) {
        double s = 0.0;
        for (index_t k = 0; k < K; ++k) {
          const TB b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
          s += static_cast<double>(A[i * lda + k]) * static_cast<double>(to_f32(b));
        }
        float& c = C[i * ldc + j];
        c = beta == 0.0f ? static_cast<float>(s)
                         : static_cast<float>(s + static_cast<double>(beta) * c);
      }
    }
  }
};

/// Packed, register-blocked, threaded GEMM; small M goes to the streaming GEMV kernels.
template <class Arch, class TB>
struct kernel<gemm_op, cpu_simd<Arch>, TB> {
  static_assert(detail::is_gemm_weight_v<TB>, "tessel::gemm: B must be float, f16 or bf16");
  static void run(index_t M, index_t N, index_t K, const float* A, index_t lda, const TB* B,
                  index_t ldb, bool trans_b, float* C, index_t ldc, float beta) {
    detail::check_gemm_args(M, N, K, A, lda, B, ldb, trans_b, C, ldc);
    if (M == 0 || N == 0) return;
    if (K == 0) {
      detail::scale_c(M, N, C, ldc, beta);
    } else if (M <= detail::gemv_max_m) {
      detail::gemv_simd<Arch>(M, N, K, A, lda, B, ldb, trans_b, C, ldc, beta);
    } else if (detail::use_amx<Arch, TB>()) {
#if defined(TESSEL_AMX)
      // A split exactly into three bf16 parts; f16 weights into two, bf16 weights are one.
      constexpr auto p = std::is_same_v<TB, bf16> ? detail::amx::precision::exact_a_one_b
                                                  : detail::amx::precision::exact_a_two_b;
      detail::amx::gemm<p>(M, N, K, A, lda, B, ldb, trans_b, C, ldc, beta);
#endif
    } else {
      detail::gemm_packed<Arch>(M, N, K, A, lda, B, ldb, trans_b, C, ldc, beta);
    }
  }
};

/// C[M,N] = A[M,K] · op(B) + beta · C (see the top of this file).
template <class Backend, class TB>
void gemm(index_t M, index_t N, index_t K, const float* A, index_t lda, const TB* B, index_t ldb,
          bool trans_b, float* C, index_t ldc, float beta = 0.0f) {
  kernel<gemm_op, Backend, TB>::run(M, N, K, A, lda, B, ldb, trans_b, C, ldc, beta);
}

/// y[N] = W[N,K] · x[K] + beta · y, W row-major with row stride ldw >= K.
template <class Backend, class TW>
void gemv(index_t N, index_t K, const TW* W, index_t ldw, const float* x, float* y,
          float beta = 0.0f) {
  kernel<gemm_op, Backend, TW>::run(1, N, K, x, K, W, ldw, true, y, N, beta);
}

}  // namespace tessel
