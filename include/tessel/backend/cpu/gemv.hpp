#pragma once
// Matrix products with few rows of A (M <= gemv_max_m): LLM decoding, y = W x. These are
// bound by reading B once from memory, so they skip packing and stream B directly, several
// rows (or column blocks) at a time with independent accumulators, threaded over N.

#include <algorithm>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/cpu/gemm_kernels.hpp"
#include "tessel/backend/thread_pool.hpp"

namespace tessel::detail {

/// Largest M routed to the streaming kernels instead of the packed GEMM (measured with
/// bench/gemm.cpp: below it re-reading B per row costs less than packing it).
inline constexpr index_t gemv_max_m = 4;

inline float apply_beta(float acc, float beta, const float* c) noexcept {
  return beta == 0.0f ? acc : beta * *c + acc;
}

/// R rows of Bt ([N, K], trans_b) dotted with one row x of A: out[r] = <Bt[r], x>.
template <class Arch, int R, class T>
inline void dot_rows(index_t K, const T* Bt, index_t ldb, const float* x, float* out) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  batch acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = batch(0.0f);
  index_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) {
    const batch x0 = batch::load_unaligned(x + k), x1 = batch::load_unaligned(x + k + W);
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

/// C[0:M, n_lo:n_hi] = beta C + A Btᵀ with Bt [N, K]: rows of Bt are read once from memory;
/// a block of 4 rows stays in cache while every row of A uses it.
template <class Arch, class T>
void gemv_trans_range(index_t M, index_t n_lo, index_t n_hi, index_t K, const float* A, index_t lda,
                      const T* Bt, index_t ldb, float* C, index_t ldc, float beta) noexcept {
  constexpr int R = 4;
  index_t n = n_lo;
  float out[R];
  for (; n + R <= n_hi; n += R) {
    for (index_t m = 0; m < M; ++m) {
      dot_rows<Arch, R>(K, Bt + n * ldb, ldb, A + m * lda, out);
      float* c = C + m * ldc + n;
      for (int r = 0; r < R; ++r) c[r] = apply_beta(out[r], beta, c + r);
    }
  }
  for (; n < n_hi; ++n) {
    for (index_t m = 0; m < M; ++m) {
      dot_rows<Arch, 1>(K, Bt + n * ldb, ldb, A + m * lda, out);
      float* c = C + m * ldc + n;
      c[0] = apply_beta(out[0], beta, c);
    }
  }
}

/// MB rows of A times a block of NV vectors of columns of B ([K, N], not transposed):
/// acc[m][v] += A[m, k] * B[k, v*W ...] for every k; B's rows are read in one pass.
template <class Arch, int MB, int NV, class T>
inline void axpy_block(index_t K, const float* A, index_t lda, const T* B, index_t ldb, float* C,
                       index_t ldc, float beta) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr index_t W = batch::size;
  batch acc[MB][NV];
  for (int m = 0; m < MB; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = batch(0.0f);
  for (index_t k = 0; k < K; ++k) {
    batch b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load_f32<Arch>(B + k * ldb + v * W);
    for (int m = 0; m < MB; ++m) {
      const batch a(A[m * lda + k]);
      for (int v = 0; v < NV; ++v) acc[m][v] = xsimd::fma(a, b[v], acc[m][v]);
    }
  }
  for (int m = 0; m < MB; ++m) {
    for (int v = 0; v < NV; ++v) {
      float* c = C + m * ldc + v * W;
      if (beta == 0.0f) {
        acc[m][v].store_unaligned(c);
      } else {
        xsimd::fma(batch(beta), batch::load_unaligned(c), acc[m][v]).store_unaligned(c);
      }
    }
  }
}

template <class Arch, int MB, class T>
void gemv_notrans_rows(index_t n_lo, index_t n_hi, index_t K, const float* A, index_t lda,
                       const T* B, index_t ldb, float* C, index_t ldc, float beta) noexcept {
  constexpr index_t W = xsimd::batch<float, Arch>::size;
  index_t n = n_lo;
  for (; n + 2 * W <= n_hi; n += 2 * W)
    axpy_block<Arch, MB, 2>(K, A, lda, B + n, ldb, C + n, ldc, beta);
  for (; n + W <= n_hi; n += W) axpy_block<Arch, MB, 1>(K, A, lda, B + n, ldb, C + n, ldc, beta);
  for (; n < n_hi; ++n) {
    for (int m = 0; m < MB; ++m) {
      float s = 0.0f;
      for (index_t k = 0; k < K; ++k) s += A[m * lda + k] * weight_to_f32(B[k * ldb + n]);
      C[m * ldc + n] = apply_beta(s, beta, C + m * ldc + n);
    }
  }
}

/// C[0:M, n_lo:n_hi] = beta C + A B with B [K, N]: column blocks of B, up to 4 rows of A at once.
template <class Arch, class T>
void gemv_notrans_range(index_t M, index_t n_lo, index_t n_hi, index_t K, const float* A,
                        index_t lda, const T* B, index_t ldb, float* C, index_t ldc,
                        float beta) noexcept {
  for (index_t m = 0; m < M; m += 4) {
    const float* a = A + m * lda;
    float* c = C + m * ldc;
    switch (std::min<index_t>(4, M - m)) {
      case 1:
        gemv_notrans_rows<Arch, 1>(n_lo, n_hi, K, a, lda, B, ldb, c, ldc, beta);
        break;
      case 2:
        gemv_notrans_rows<Arch, 2>(n_lo, n_hi, K, a, lda, B, ldb, c, ldc, beta);
        break;
      case 3:
        gemv_notrans_rows<Arch, 3>(n_lo, n_hi, K, a, lda, B, ldb, c, ldc, beta);
        break;
      default:
        gemv_notrans_rows<Arch, 4>(n_lo, n_hi, K, a, lda, B, ldb, c, ldc, beta);
        break;
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
    const index_t grain = std::max<index_t>(4, (min_elems / std::max<index_t>(K, 1) + 3) / 4 * 4);
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
