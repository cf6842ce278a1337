#pragma once
// Quantized matrix products on raw pointers, W [N, K] rows of blocks, x / y row-major f32.
//
//   qgemv<Backend>(N, K, W, x, y)         y[N] = W x          (decoding: one activation row)
//   qgemm<Backend>(M, N, K, x, W, y)      y[M, N] = x Wᵀ      (prefill: many rows)
//   qgemv<Backend>(N, K, W, x, y, beta)   y = W x + beta · y  (beta 0 never reads y)
//   qgemm<Backend>(M, N, K, x, ldx, W, y, ldy, beta)   row strides and beta, as gemm has
//
// GEMV quantizes x once to the format's vec_dot_type and runs the row dot kernels threaded
// over output rows. GEMM dequantizes tiles of W rows to f32 (threaded) and multiplies with the
// packed f32 SGEMM of gemm.hpp: at M >= 16 the O(M N K) product dominates the O(N K) unpacking,
// and the f32 micro-kernel is faster than an integer one on AVX2 (no 8-bit FMA).

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "tessel/backend/cpu/gemm.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/quant/kernels/qdot.hpp"
#include "tessel/quant/kernels/qdot_avx2.hpp"
#include "tessel/quant/kernels/qgemm_vnni.hpp"
#include "tessel/quant/kernels/quantize_act.hpp"

namespace tessel {

namespace qdetail {

/// x [K] quantized to the activation format of F (or kept as f32 for f32-paired formats), by
/// Backend's quantizer.
template <class Backend, QuantFormat F>
class prepared_activation {
 public:
  using act = act_t<F>;
  prepared_activation(const float* x, index_t K) {
    if constexpr (std::is_same_v<act, float>) {
      ptr_ = x;
    } else {
      // One buffer per calling thread, grown once: a decode loop allocates nothing.
      thread_local std::vector<act> buf;
      if (buf.size() < static_cast<std::size_t>(K / act::block_elems))
        buf.resize(static_cast<std::size_t>(K / act::block_elems));
      qdetail::quantize_activation<Backend>(x, buf.data(), K);
      ptr_ = buf.data();
    }
  }
  const act* data() const noexcept { return ptr_; }

 private:
  const act* ptr_ = nullptr;
};

/// F::dequantize_row, with the AVX2 rows of qdot_avx2.hpp where Backend's Arch has AVX2.
template <class Backend, class F>
void dequantize_row_for(const F* x, float* y, index_t n) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)  // only lets them compile
  if constexpr (is_cpu_simd_v<Backend>) {
    if constexpr (arch_has_avx2_v<typename Backend::arch>) return dequantize_row_fast(x, y, n);
  }
#endif
  F::dequantize_row(x, y, n);
}

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
/// With beta: y[N] = W x + beta · y (beta 0 never reads y).
template <class Backend, QuantFormat F>
void qgemv(index_t N, index_t K, const F* W, const float* x, float* y, float beta = 0.0f) {
  qdetail::check_qmatmul<F>("qgemv", 1, N, K);
  if (N == 0) return;
  if (K == 0) {
    for (index_t n = 0; n < N; ++n) y[n] = beta == 0.0f ? 0.0f : beta * y[n];
    return;
  }
  const qdetail::prepared_activation<Backend, F> a(x, K);
  const index_t nb = K / F::block_elems;
  // Chunks of whole 4-row groups; about 16 KiB of weights at least per chunk (measured: 128 KiB
  // chunks decode the 1.1B Llama no faster at 2 threads; one contiguous chunk per thread, or
  // 2 or 8 per thread, instead of parallel_for's 4: q8_0 GEMV at 2 threads within 2%).
  const index_t grain =
      std::max<index_t>(4, (16384 / std::max<index_t>(1, nb * sizeof(F))) / 4 * 4);
  parallel_for(0, N, grain, [&](index_t lo, index_t hi) {
    if (beta == 0.0f) {
      kernel<qdot_op, Backend, F>::run(nb, W + lo * nb, nb, hi - lo, a.data(), y + lo);
      return;
    }
    // The dots of a chunk go to a small per-thread buffer, then y = dot + beta · y.
    constexpr index_t step = 256;
    alignas(64) float t[step];
    for (index_t r = lo; r < hi; r += step) {
      const index_t n = std::min(step, hi - r);
      kernel<qdot_op, Backend, F>::run(nb, W + r * nb, nb, n, a.data(), t);
      for (index_t i = 0; i < n; ++i) y[r + i] = t[i] + beta * y[r + i];
    }
  });
}

/// Rows of x at which qgemm switches from repeated GEMV to dequantize + SGEMM.
inline constexpr index_t qgemm_min_m = 16;

/// Whether qgemm<Backend, F> at M >= qgemm_min_m quantizes x to q8_0 blocks and multiplies in
/// integers (qgemm_vnni.hpp: the GGUF block formats on the AVX-512 backend, when the AMX
/// tiles are not usable) rather than dequantizing W to f32.
template <class Backend, QuantFormat F>
bool qgemm_quantizes_activations() {
#if defined(TESSEL_QGEMM_VNNI)
  if constexpr (is_cpu_simd_v<Backend>) {
    if constexpr (qdetail::use_avx512_qdot<typename Backend::arch> && qdetail::vnni::supported<F>)
      return !detail::use_amx<typename Backend::arch, f16>() && !qdetail::vnni::disabled();
  }
#endif
  return false;
}

/// y[M, N] = x[M, K] W[N, K]ᵀ + beta · y, x and y row-major with row strides ldx >= K and
/// ldy >= N (beta 0 never reads y).
template <class Backend, QuantFormat F>
void qgemm(index_t M, index_t N, index_t K, const float* x, index_t ldx, const F* W, float* y,
           index_t ldy, float beta = 0.0f) {
  qdetail::check_qmatmul<F>("qgemm", M, N, K);
  if (ldx < K || ldy < N)
    throw shape_error("tessel::qgemm: row strides ldx " + std::to_string(ldx) + " / ldy " +
                      std::to_string(ldy) + " are below K " + std::to_string(K) + " / N " +
                      std::to_string(N));
  if (M < qgemm_min_m || std::is_same_v<Backend, cpu_scalar>) {
    for (index_t m = 0; m < M; ++m) qgemv<Backend>(N, K, W, x + m * ldx, y + m * ldy, beta);
    return;
  }
  if (N == 0) return;
#if defined(TESSEL_QGEMM_VNNI)
  if constexpr (qdetail::vnni::supported<F>) {
    if (qgemm_quantizes_activations<Backend, F>()) {
      qdetail::vnni::gemm<F>(M, N, K, x, ldx, W, y, ldy, beta);
      return;
    }
  }
#endif
  const index_t nb = K / F::block_elems;
  // Tiles of about 16 MiB of f32 weights: big enough that SGEMM's packing of x is amortized.
  const index_t tile =
      std::clamp<index_t>((index_t{16} << 20) / std::max<index_t>(1, 4 * K) / 64 * 64, 64, N);
  // Grown once per calling thread: repeated prefill chunks reuse it.
  // (The workers below must use this thread's buffer through a pointer: naming a thread_local
  // inside the task would give each worker its own, empty one.)
  thread_local std::vector<float> wf_buf;
  if (wf_buf.size() < static_cast<std::size_t>(std::min(tile, N) * K))
    wf_buf.resize(static_cast<std::size_t>(std::min(tile, N) * K));
  float* const wf = wf_buf.data();
  for (index_t n0 = 0; n0 < N; n0 += tile) {
    const index_t nt = std::min(tile, N - n0);
    parallel_for(0, nt, 16, [&](index_t lo, index_t hi) {
      for (index_t r = lo; r < hi; ++r)
        qdetail::dequantize_row_for<Backend>(W + (n0 + r) * nb, wf + r * K, K);
    });
    if constexpr (is_cpu_simd_v<Backend>) {
      if (detail::use_amx<typename Backend::arch, f16>()) {
        // Two bf16 parts of x and of the dequantized weights (see amx_gemm.hpp).
#if defined(TESSEL_AMX)
        detail::amx::gemm<detail::amx::precision::two_a_two_b>(M, nt, K, x, ldx, wf, K, true,
                                                               y + n0, ldy, beta);
#endif
        continue;
      }
    }
    gemm<Backend>(M, nt, K, x, ldx, wf, K, true, y + n0, ldy, beta);
  }
}

/// y[M, N] = x[M, K] W[N, K]ᵀ, x and y row-major with row strides K and N.
template <class Backend, QuantFormat F>
void qgemm(index_t M, index_t N, index_t K, const float* x, const F* W, float* y) {
  qgemm<Backend>(M, N, K, x, K, W, y, N, 0.0f);
}

namespace op {
/// y[M, N] = x[M, K] W[N, K]ᵀ + beta · y for a block format W that has only dequantize_row
/// (no vec_dot_type, so no qdot_op kernels): run(M, N, K, x, ldx, W, y, ldy, beta), the
/// arguments of qgemm. Each row of W is widened to f32 once and dotted with every row of x.
struct dequant_matmul {};
}  // namespace op

/// The reference, threaded over rows of W; the SIMD backends use it too (a format without
/// integer dot kernels is a user's experiment, not a hot path).
template <class F>
struct kernel<op::dequant_matmul, cpu_scalar, F> {
  static void run(index_t M, index_t N, index_t K, const float* x, index_t ldx, const F* W,
                  float* y, index_t ldy, float beta) {
    const index_t row_units = K / F::block_elems;
    parallel_for(0, N, std::max<index_t>(1, 16384 / std::max<index_t>(K * M, 1)),
                 [&](index_t lo, index_t hi) {
                   // Grows once per thread, then reused: no allocation in a decode loop.
                   thread_local std::vector<float> row;
                   if (static_cast<index_t>(row.size()) < K) row.resize(std::size_t(K));
                   for (index_t n = lo; n < hi; ++n) {
                     F::dequantize_row(W + n * row_units, row.data(), K);
                     for (index_t m = 0; m < M; ++m) {
                       const float* xm = x + m * ldx;
                       float s = 0.0f;
                       for (index_t k = 0; k < K; ++k) s += row[std::size_t(k)] * xm[k];
                       float& out = y[m * ldy + n];
                       out = beta == 0.0f ? s : s + beta * out;
                     }
                   }
                 });
  }
};

}  // namespace tessel
