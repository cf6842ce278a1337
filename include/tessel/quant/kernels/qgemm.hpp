#pragma once
// Quantized matrix products on raw pointers, W [N, K] rows of blocks, x / y row-major f32.
//
//   qgemv<Backend>(N, K, W, x, y)         y[N] = W x          (decoding: one activation row)
//   qgemm<Backend>(M, N, K, x, W, y)      y[M, N] = x Wᵀ      (prefill: many rows)
//
// GEMV quantizes x once to the format's vec_dot_type and runs the row dot kernels threaded
// over output rows. GEMM dequantizes tiles of W rows to f32 (threaded) and multiplies with the
// packed f32 SGEMM of gemm.hpp: at M >= 16 the O(M N K) product dominates the O(N K) unpacking,
// and the f32 micro-kernel is faster than an integer one on AVX2 (no 8-bit FMA).

#include <algorithm>
#include <vector>

#include "tessel/backend/cpu/gemm.hpp"
#include "tessel/quant/kernels/qdot.hpp"
#include "tessel/quant/kernels/qdot_avx2.hpp"
#include "tessel/backend/thread_pool.hpp"

namespace tessel {

namespace qdetail {

/// x [K] quantized to the activation format of F (or kept as f32 for f32-paired formats).
template <QuantFormat F>
class prepared_activation {
 public:
  using act = act_t<F>;
  prepared_activation(const float* x, index_t K) {
    if constexpr (std::is_same_v<act, float>) {
      ptr_ = x;
    } else {
      buf_.resize(static_cast<std::size_t>(K / act::block_elems));
      act::quantize_row(x, buf_.data(), K);
      ptr_ = buf_.data();
    }
  }
  const act* data() const noexcept { return ptr_; }

 private:
  std::vector<std::conditional_t<std::is_same_v<act, float>, char, act>> buf_;
  const act* ptr_ = nullptr;
};

template <QuantFormat F>
void check_qmatmul(const char* op, index_t M, index_t N, index_t K) {
  if (M < 0 || N < 0 || K < 0)
    throw shape_error(std::string("tessel::") + op + ": negative extent");
  if (K % F::block_elems != 0)
    throw shape_error(std::string("tessel::") + op + ": K = " + std::to_string(K) +
                      " is not a multiple of the " + std::string(F::name) + " block size " +
                      std::to_string(F::block_elems));
  if constexpr (!std::is_same_v<act_t<F>, float>)
    if (K % act_t<F>::block_elems != 0)
      throw shape_error(std::string("tessel::") + op + ": K = " + std::to_string(K) +
                        " is not a multiple of the activation block size");
}

}  // namespace qdetail

/// y[N] = W[N, K] x[K]; W is N rows of K / block_elems blocks, contiguous.
template <class Backend, QuantFormat F>
void qgemv(index_t N, index_t K, const F* W, const float* x, float* y) {
  qdetail::check_qmatmul<F>("qgemv", 1, N, K);
  if (N == 0) return;
  if (K == 0) {
    std::fill(y, y + N, 0.f);
    return;
  }
  const qdetail::prepared_activation<F> a(x, K);
  const index_t nb = K / F::block_elems;
  // Chunks of whole 4-row groups; about 16 KiB of weights at least per chunk.
  const index_t grain =
      std::max<index_t>(4, (16384 / std::max<index_t>(1, nb * sizeof(F))) / 4 * 4);
  parallel_for(0, N, grain, [&](index_t lo, index_t hi) {
    kernel<qdot_op, Backend, F>::run(nb, W + lo * nb, nb, hi - lo, a.data(), y + lo);
  });
}

/// Rows of x at which qgemm switches from repeated GEMV to dequantize + SGEMM.
inline constexpr index_t qgemm_min_m = 16;

/// y[M, N] = x[M, K] W[N, K]ᵀ, x and y row-major with row strides K and N.
template <class Backend, QuantFormat F>
void qgemm(index_t M, index_t N, index_t K, const float* x, const F* W, float* y) {
  qdetail::check_qmatmul<F>("qgemm", M, N, K);
  if (M < qgemm_min_m || std::is_same_v<Backend, cpu_scalar>) {
    for (index_t m = 0; m < M; ++m) qgemv<Backend>(N, K, W, x + m * K, y + m * N);
    return;
  }
  if (N == 0) return;
  const index_t nb = K / F::block_elems;
  // Tiles of about 16 MiB of f32 weights: big enough that SGEMM's packing of x is amortized.
  const index_t tile =
      std::clamp<index_t>((index_t{16} << 20) / std::max<index_t>(1, 4 * K) / 64 * 64, 64, N);
  std::vector<float> wf(static_cast<std::size_t>(std::min(tile, N) * K));
  for (index_t n0 = 0; n0 < N; n0 += tile) {
    const index_t nt = std::min(tile, N - n0);
    parallel_for(0, nt, 16, [&](index_t lo, index_t hi) {
      for (index_t r = lo; r < hi; ++r) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
        qdetail::dequantize_row_fast(W + (n0 + r) * nb, wf.data() + r * K, K);
#else
        F::dequantize_row(W + (n0 + r) * nb, wf.data() + r * K, K);
#endif
      }
    });
    gemm<Backend>(M, nt, K, x, K, wf.data(), K, true, y + n0, N);
  }
}

}  // namespace tessel
