#pragma once
// Matrix products with few rows of A (M <= gemv_max_m): LLM decoding, y = W x. These are
// bound by reading B once from memory, so they skip packing and stream B directly, several
// rows (or column blocks) at a time with independent accumulators, threaded over N.

#include <algorithm>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/cpu/gemm_kernels.hpp"
#include "tessel/backend/thread_pool.hpp"

namespace tessel::detail {

/// Largest M routed to the streaming kernels instead of the packed GEMM. Measured (1 thread,
/// W 4096x4096 f32): streaming wins up to M = 8 in both layouts (trans_b: 4.2 ms at M = 1,
/// 10.9 at M = 8, 14.5 at M = 12 against 12-12.6 ms packed; B [K,N]: 5.8, 8.6, 15.5 against
/// 14-16 ms), because packing B costs as much as streaming it a few times.
inline constexpr index_t gemv_max_m = 8;

inline float apply_beta(float acc, float beta, const float* c) noexcept {
  return beta == 0.0f ? acc : beta * *c + acc;
}

/// R rows of Bt ([N, K], trans_b) dotted with one row x of A: out[r] = <Bt[r], x>. When `next`
/// is set, the R rows there are prefetched along the way: the hardware prefetcher restarts at
/// every new row, and warming the next block keeps more of memory's bandwidth in flight
/// (bf16 weights: 12.9 -> 14.5 GB/s on one thread).
template <class Arch, int R, class T>
inline void dot_rows(index_t K, const T* Bt, index_t ldb, const float* x, float* out,
                     const T* next) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  batch acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = batch(0.0f);
  index_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) {
    const batch x0 = batch::load_unaligned(x + k), x1 = batch::load_unaligned(x + k + W);
    if (next)
      for (int r = 0; r < R; ++r) __builtin_prefetch(next + r * ldb + k, 0, 1);
    for (int r = 0; r < R; ++r) {
      acc0[r] = xsimd::fma(load_f32<Arch>(Bt + r * ldb + k), x0, acc0[r]);
      acc1[r] = xsimd::fma(load_f32<Arch>(Bt + r * ldb + k + W), x1, acc1[r]);
    }
  }
  for (; k + W <= K; k += W) {
    const batch x0 = batch::load_unaligned(x + k);
    for (int r = 0; r < R; ++r) acc0[r] = xsimd::fma(load_f32<Arch>(Bt + r * ldb + k), x0, acc0[r]);
  }
  for (int r = 0; r < R; ++r) {
    float s = xsimd::hadd(acc0[r] + acc1[r]);
    for (index_t kk = k; kk < K; ++kk) s += weight_to_f32(Bt[r * ldb + kk]) * x[kk];
    out[r] = s;
  }
}

/// Rows of Bt streamed together: ~64 KiB of row data in flight for K = 4096 (half-precision
/// rows are half as long; 8 of them read 5% faster than 4 on the dev machine).
template <class T>
inline constexpr int gemv_rows = sizeof(T) == 2 ? 8 : 4;

/// C[0:M, n_lo:n_hi] = beta C + A Btᵀ with Bt [N, K]: rows of Bt are read once from memory;
/// a block of rows stays in cache while every row of A uses it.
template <class Arch, class T>
void gemv_trans_range(index_t M, index_t n_lo, index_t n_hi, index_t K, const float* A, index_t lda,
                      const T* Bt, index_t ldb, float* C, index_t ldc, float beta) noexcept {
  constexpr int R = gemv_rows<T>;
  index_t n = n_lo;
  float out[R];
  for (; n + R <= n_hi; n += R) {
    const T* next = n + 2 * R <= n_hi ? Bt + (n + R) * ldb : nullptr;
    for (index_t m = 0; m < M; ++m) {
      dot_rows<Arch, R>(K, Bt + n * ldb, ldb, A + m * lda, out, m == 0 ? next : nullptr);
      float* c = C + m * ldc + n;
      for (int r = 0; r < R; ++r) c[r] = apply_beta(out[r], beta, c + r);
    }
  }
  for (; n < n_hi; ++n) {
    for (index_t m = 0; m < M; ++m) {
      dot_rows<Arch, 1>(K, Bt + n * ldb, ldb, A + m * lda, out, static_cast<const T*>(nullptr));
      float* c = C + m * ldc + n;
      c[0] = apply_beta(out[0], beta, c);
    }
  }
}

/// C[0:M, n_lo:n_hi] = beta C + A B with B [K, N] (not transposed), M <= gemv_max_m. Rows of B
/// are read contiguously, a block of NB columns at a time, 4 rows of B per step; the M x NB
/// partial sums live in an L1-resident buffer. (Walking down a narrow column strip instead
/// touches a new page every row: 4 GB/s against 16 for this order.)
template <class Arch, class T>
void gemv_notrans_range(index_t M, index_t n_lo, index_t n_hi, index_t K, const float* A,
                        index_t lda, const T* B, index_t ldb, float* C, index_t ldc,
                        float beta) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size, NB = 512, MMAX = 8;
  alignas(64) float acc[MMAX * NB];
  for (index_t m0 = 0; m0 < M; m0 += MMAX) {
    const index_t mb = std::min(MMAX, M - m0);
    const float* Am = A + m0 * lda;
    for (index_t n0 = n_lo; n0 < n_hi; n0 += NB) {
      const index_t nb = std::min(NB, n_hi - n0), nv = nb / W * W;
      std::fill(acc, acc + mb * NB, 0.0f);
      index_t k = 0;
      for (; k + 4 <= K; k += 4) {
        const T* b = B + k * ldb + n0;
        for (index_t j = 0; j < nv; j += W) {
          const batch b0 = load_f32<Arch>(b + j), b1 = load_f32<Arch>(b + ldb + j);
          const batch b2 = load_f32<Arch>(b + 2 * ldb + j), b3 = load_f32<Arch>(b + 3 * ldb + j);
          for (index_t m = 0; m < mb; ++m) {
            const float* a = Am + m * lda + k;
            batch c = batch::load_aligned(acc + m * NB + j);
            c = xsimd::fma(batch(a[0]), b0, c);
            c = xsimd::fma(batch(a[1]), b1, c);
            c = xsimd::fma(batch(a[2]), b2, c);
            c = xsimd::fma(batch(a[3]), b3, c);
            c.store_aligned(acc + m * NB + j);
          }
        }
        for (index_t j = nv; j < nb; ++j)
          for (index_t m = 0; m < mb; ++m)
            for (index_t i = 0; i < 4; ++i)
              acc[m * NB + j] += Am[m * lda + k + i] * weight_to_f32(b[i * ldb + j]);
      }
      for (; k < K; ++k) {
        const T* b = B + k * ldb + n0;
        for (index_t j = 0; j < nv; j += W) {
          const batch b0 = load_f32<Arch>(b + j);
          for (index_t m = 0; m < mb; ++m) {
            batch c = batch::load_aligned(acc + m * NB + j);
            xsimd::fma(batch(Am[m * lda + k]), b0, c).store_aligned(acc + m * NB + j);
          }
        }
        for (index_t j = nv; j < nb; ++j)
          for (index_t m = 0; m < mb; ++m) acc[m * NB + j] += Am[m * lda + k] * weight_to_f32(b[j]);
      }
      for (index_t m = 0; m < mb; ++m) {
        float* c = C + (m0 + m) * ldc + n0;
        for (index_t j = 0; j < nb; ++j) c[j] = apply_beta(acc[m * NB + j], beta, c + j);
      }
    }
  }
}

/// The small-M product, threaded over N. Chunks hold at least ~64 KiB of B so that waking
/// the pool pays off; small products run on the calling thread.
template <class Arch, class T>
void gemv_simd(index_t M, index_t N, index_t K, const float* A, index_t lda, const T* B,
               index_t ldb, bool trans_b, float* C, index_t ldc, float beta) {
  constexpr index_t W = xsimd::batch<float, Arch>::size;
  const index_t min_elems = 16384;
  if (trans_b) {
    constexpr index_t R = gemv_rows<T>;
    const index_t grain =
        std::max<index_t>(R, (min_elems / std::max<index_t>(K, 1) + R - 1) / R * R);
    parallel_for(0, N, grain, [&](index_t lo, index_t hi) {
      gemv_trans_range<Arch>(M, lo, hi, K, A, lda, B, ldb, C, ldc, beta);
    });
  } else {
    const index_t grain = std::max<index_t>(
        2 * W, (min_elems / std::max<index_t>(K, 1) + 2 * W - 1) / (2 * W) * 2 * W);
    parallel_for(0, N, grain, [&](index_t lo, index_t hi) {
      gemv_notrans_range<Arch>(M, lo, hi, K, A, lda, B, ldb, C, ldc, beta);
    });
  }
}

}  // namespace tessel::detail
