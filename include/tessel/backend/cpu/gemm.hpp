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
// MR x NR register micro-kernel, threads over column chunks of C with the pool in
// thread_pool.hpp (tessel::set_num_threads; see gemm_packed below), and routes M <= 8 to
// streaming GEMV kernels (gemv.hpp).
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
#include <atomic>
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

/// Cache blocking of the packed GEMM. KC: depth of a rank-k update (C is re-read K/KC times);
/// an A micro-panel (MR x KC) stays in L1 while the B slivers (KC x NR) of a column chunk
/// stream past it from L2. NCHUNK: slivers per chunk (KC x NCHUNK·NR floats in L2, 512 KiB
/// with 14 x 32 tiles). MAXA: floats of packed A per row block (all of K at once); MAXA_NARROW
/// the same when B is narrow (1 MiB: half the L2). MC / NC:
/// conv2d's implicit GEMM (ops/conv2d.hpp) packs MC x KC of A per thread (L2) and KC x NC of B
/// shared by the threads (L3). Measured on the dev machine
/// (48 KiB L1d, 2 MiB L2): with 14x32 tiles KC = 512 beats 256 by ~7% and 384 / 768 by 1-5%.
template <class Arch>
struct gemm_blocking {
  static constexpr index_t MR = gemm_tile<Arch>::MR, NR = gemm_tile<Arch>::NR;
  static constexpr index_t KC = NR >= 32 ? 512 : 256;
  static constexpr index_t MC = MR * (MR >= 14 ? 24 : 40);
  static constexpr index_t NC = NR * (4096 / NR);
  static constexpr index_t NCHUNK = 8;
  static constexpr index_t MAXA = index_t{4} << 20;
  static constexpr index_t MAXA_NARROW = index_t{1} << 18;
};

/// beta == 0 writes zeros (never reads C); otherwise scales C in place.
inline void scale_c(index_t M, index_t N, float* C, index_t ldc, float beta) noexcept {
  for (index_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    for (index_t j = 0; j < N; ++j) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
  }
}

// A block of rows is packed once for all of K (threads share the work and the buffer of the
// calling thread). Then threads claim column chunks one at a time (an atomic counter: a
// descheduled thread holds up at most one chunk) and pack that chunk's B slivers themselves,
// so they sit in the thread's own L2; per KC block, each A micro-panel meets every sliver of
// the chunk before the next one is loaded (A in L1, B from L2). Measured against the previous
// scheme (A blocks of MC rows per thread, B panels packed by all threads between two barriers
// per KC block, sliver-major inner loop), f16 weights, M = 512, the 1.1B Llama's matrices
// weighted by their FLOPs: +3-5% at 2 threads, +7-8% at 1.
template <class Arch, class T>
void gemm_packed(index_t M, index_t N, index_t K, const float* A, index_t lda, const T* B,
                 index_t ldb, bool trans_b, float* C, index_t ldc, float beta) {
  using blk = gemm_blocking<Arch>;
  constexpr index_t MR = blk::MR, NR = blk::NR, KC = blk::KC;
  const index_t n_kb = (K + KC - 1) / KC, n_sl = (N + NR - 1) / NR;
  const index_t nt = detail::in_parallel_region() ? 1 : num_threads();
  // Column chunks: up to NCHUNK slivers, and at least one chunk per thread where N allows;
  // with fewer chunks than threads the rows are split too (B is then packed more than once).
  const index_t chunk = std::clamp<index_t>((n_sl + nt - 1) / nt, 1, blk::NCHUNK);
  const index_t n_chunks = (n_sl + chunk - 1) / chunk;
  // With one chunk per row, each A micro-panel meets the slivers of one chunk only: the tasks
  // pack their micro-panels themselves, just before use (in L1), and there is no shared pass.
  // Otherwise A is packed in row blocks of equal size (B is packed once per block: no thin last
  // block); with narrow B (N < M / 2) blocks that stay in L2, as the shared pass would
  // otherwise write A out to L3 and read it back for little reuse.
  const bool a_inline = n_chunks == 1 || n_chunks < nt;
  const index_t a_budget = 2 * N >= M ? blk::MAXA : blk::MAXA_NARROW;
  const index_t mb_cap = a_inline ? M : std::max<index_t>(MR, a_budget / K / MR * MR);
  const index_t n_blocks = (M + mb_cap - 1) / mb_cap;
  const index_t mb_max = ((M + n_blocks - 1) / n_blocks + MR - 1) / MR * MR;
  const index_t mp_max = (std::min(M, mb_max) + MR - 1) / MR;  // micro-panels per block
  float* Ap = a_inline ? nullptr : thread_scratch(0).get(static_cast<std::size_t>(mp_max * MR * K));

  for (index_t m0 = 0; m0 < M; m0 += mb_max) {
    const index_t mb = std::min(mb_max, M - m0), n_mp = (mb + MR - 1) / MR;
    // KC block p of the packed rows: n_mp micro-panels of MR x kc_p, from Ap + n_mp·MR·KC·p.
    // At least ~64 KiB of A per task: a small A is packed on the calling thread (no barrier).
    const index_t grain = std::max<index_t>(4, 16384 / (MR * std::min(K, KC)));
    if (!a_inline)
      parallel_for(0, n_mp * n_kb, grain, [&](index_t lo, index_t hi) {
        for (index_t t = lo; t < hi; ++t) {
          const index_t p = t / n_mp, i = t % n_mp;
          const index_t pc = p * KC, kc = std::min(KC, K - pc), r0 = i * MR;
          pack_a<Arch, MR>(std::min(MR, mb - r0), kc, A + (m0 + r0) * lda + pc, lda,
                           Ap + n_mp * MR * KC * p + i * MR * kc);
        }
      });
    const index_t n_rg = n_chunks >= nt ? 1 : std::min(n_mp, (nt + n_chunks - 1) / n_chunks);
    const index_t tasks = n_rg * n_chunks;
    std::atomic<index_t> next{0};
    parallel_for_each_thread([&](int, int) {
      float* Bp = thread_scratch(1).get(static_cast<std::size_t>(chunk * NR * std::min(KC, K)));
      float* Apan = a_inline ? thread_scratch(0).get(static_cast<std::size_t>(MR * std::min(KC, K)))
                             : nullptr;
      for (index_t t = next.fetch_add(1, std::memory_order_relaxed); t < tasks;
           t = next.fetch_add(1, std::memory_order_relaxed)) {
        const index_t c = t % n_chunks, rg = t / n_chunks;
        const index_t s0 = c * chunk, s1 = std::min(n_sl, s0 + chunk);
        const index_t j0 = s0 * NR, cols = std::min(N, s1 * NR) - j0;
        const index_t i_lo = n_mp * rg / n_rg, i_hi = n_mp * (rg + 1) / n_rg;
        for (index_t p = 0; p < n_kb; ++p) {
          const index_t pc = p * KC, kc = std::min(KC, K - pc);
          const float beta_k = pc == 0 ? beta : 1.0f;
          if (trans_b) {
            pack_b_cols<Arch, NR>(kc, cols, B + j0 * ldb + pc, ldb, Bp);
          } else {
            pack_b_rows<Arch, NR>(kc, cols, B + pc * ldb + j0, ldb, Bp);
          }
          for (index_t i = i_lo; i < i_hi; ++i) {
            const index_t r0 = i * MR, m = std::min(MR, mb - r0);
            float* Ci = C + (m0 + r0) * ldc;
            const float* Ai = Apan;
            if (a_inline) {
              pack_a<Arch, MR>(m, kc, A + (m0 + r0) * lda + pc, lda, Apan);
            } else {
              Ai = Ap + n_mp * MR * KC * p + i * MR * kc;
            }
            for (index_t s = s0; s < s1; ++s) {
              const index_t j = s * NR;
              micro_kernel<Arch>(kc, Ai, Bp + (s - s0) * NR * kc, Ci + j, ldc, beta_k, m,
                                 std::min(NR, N - j));
            }
          }
        }
      }
    });
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
  if (M < 0 || N < 0 || K < 0)
    detail::raise<value_error>({"tessel::gemm: sizes must be >= 0, got M=", M, " N=", N, " K=", K});
  if (M > 0 && K > 0 && lda < K)
    detail::raise<shape_error>(
        {"tessel::gemm: lda must be >= K=", K, " (A is [M,K] row-major), got ", lda});
  const index_t brow = trans_b ? K : N;
  if (N > 0 && K > 0 && ldb < brow)
    detail::raise<shape_error>({"tessel::gemm: ldb must be >= ", trans_b ? "K=" : "N=", brow,
                                " (B is ", trans_b ? "[N,K]" : "[K,N]", " row-major), got ", ldb});
  if (M > 0 && N > 0 && ldc < N)
    detail::raise<shape_error>(
        {"tessel::gemm: ldc must be >= N=", N, " (C is [M,N] row-major), got ", ldc});
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
