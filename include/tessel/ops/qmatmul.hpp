#pragma once
// Matrix products with quantized weights: y = x · Wᵀ, W [N, K] in a block format.
//
//   matmul_q(x, W, y)            x [M, K] f32, W [N, K] Format, y [M, N] f32
//   matmul_q(backend, x, W, y)   with an explicit backend (cpu_scalar is the reference)
//   matmul_q(x, W, y, perm)      act-order int_group weights: W's columns were stored in the
//                                order perm (perm_from_g_idx), x is gathered the same way
//
// M < qgemm_min_m runs the integer GEMV kernels once per row of x; larger M dequantizes tiles
// of W for the f32 SGEMM. Shapes that do not fit throw shape_error naming both.

#include <span>
#include <vector>

#include "../core/tensor.hpp"
#include "../quant/formats.hpp"
#include "../quant/kernels/qgemm.hpp"

namespace tessel {

namespace qdetail {
template <class VX, class VW, class VY>
void check_matmul_q(const VX& x, const VW& w, const VY& y) {
  static_assert(VX::rank == 2 && VW::rank == 2 && VY::rank == 2,
                "tessel::matmul_q: x, W and y must be matrices");
  auto shapes = [&] {
    return " (x " + to_string(x.shape()) + ", W " + to_string(w.shape()) + ", y " +
           to_string(y.shape()) + ")";
  };
  if (x.extent(1) != w.extent(1))
    throw shape_error("tessel::matmul_q: the columns of x must equal the columns of W" + shapes());
  if (y.extent(0) != x.extent(0) || y.extent(1) != w.extent(0))
    throw shape_error("tessel::matmul_q: y must be [rows of x, rows of W]" + shapes());
  if (!x.is_contiguous() || !w.is_contiguous() || !y.is_contiguous())
    throw shape_error("tessel::matmul_q: x, W and y must be contiguous" + shapes());
}
}  // namespace qdetail

template <class Backend, class Format, class SX, class SW, class SY>
requires(std::is_empty_v<Backend>&& QuantFormat<Format>) void matmul_q(
    Backend, TensorView<const float, SX> x, TensorView<const Format, SW> w,
    TensorView<float, SY> y) {
  qdetail::check_matmul_q(x, w, y);
  qgemm<Backend>(x.extent(0), w.extent(0), x.extent(1), x.data(), w.data(), y.data());
}

template <class Format, class SX, class SW, class SY>
requires QuantFormat<Format>
void matmul_q(TensorView<const float, SX> x, TensorView<const Format, SW> w,
              TensorView<float, SY> y) {
  matmul_q(cpu{}, x, w, y);
}
template <class Format, class SX, class SW, class SY>
requires QuantFormat<Format>
void matmul_q(const Tensor<float, SX>& x, const Tensor<Format, SW>& w, Tensor<float, SY>& y) {
  matmul_q(cpu{}, x.view(), w.view(), y.view());
}
template <class Backend, class Format, class SX, class SW, class SY>
requires(std::is_empty_v<Backend>&& QuantFormat<Format>) void matmul_q(Backend b,
                                                                       const Tensor<float, SX>& x,
                                                                       const Tensor<Format, SW>& w,
                                                                       Tensor<float, SY>& y) {
  matmul_q(b, x.view(), w.view(), y.view());
}

/// Act-order (GPTQ desc_act) weights: column k of W holds input feature perm[k].
template <class Format, class SX, class SW, class SY>
requires QuantFormat<Format>
void matmul_q(TensorView<const float, SX> x, TensorView<const Format, SW> w,
              TensorView<float, SY> y, std::span<const index_t> perm) {
  const index_t M = x.extent(0), K = x.extent(1);
  if (static_cast<index_t>(perm.size()) != K)
    throw shape_error("tessel::matmul_q: permutation of " + std::to_string(perm.size()) +
                      " columns for K = " + std::to_string(K));
  Tensor<float, DynShape<2>> xp(M, K);
  for (index_t m = 0; m < M; ++m)
    for (index_t k = 0; k < K; ++k) {
      const index_t p = perm[static_cast<std::size_t>(k)];
      if (p < 0 || p >= K) throw value_error("tessel::matmul_q: permutation entry out of range");
      xp.data()[m * K + k] = x(m, p);
    }
  matmul_q(cpu{}, TensorView<const float, DynShape<2>>(xp.view()), w, y);
}

/// y = x · Wᵀ for FP8 weights with per-tensor or per-row scales (f32 dot of widened rows).
template <class Backend, Fp8 E, class SX, class SY>
requires std::is_empty_v<Backend>
void matmul_q(Backend, TensorView<const float, SX> x, const fp8_matrix<E>& w,
              TensorView<float, SY> y) {
  const index_t M = x.extent(0), K = x.extent(1), N = w.rows();
  if (w.cols() != K || y.extent(0) != M || y.extent(1) != N)
    throw shape_error("tessel::matmul_q: fp8 weights " + to_string(w.w.shape()) + " do not fit x " +
                      to_string(x.shape()) + " and y " + to_string(y.shape()));
  if (!x.is_contiguous() || !y.is_contiguous())
    throw shape_error("tessel::matmul_q: x and y must be contiguous");
  if (M >= qgemm_min_m && !std::is_same_v<Backend, cpu_scalar>) {
    // Dequantize to f32 (scales applied) and use the SGEMM.
    Tensor<float, DynShape<2>> wf(N, K);
    parallel_for(0, N, 16, [&](index_t lo, index_t hi) {
      for (index_t r = lo; r < hi; ++r) dequantize_row(w, r, wf.data() + r * K);
    });
    gemm<Backend>(M, N, K, x.data(), K, wf.data(), K, true, y.data(), N);
    return;
  }
  for (index_t m = 0; m < M; ++m) {
    const float* xr = x.data() + m * K;
    float* yr = y.data() + m * N;
    parallel_for(0, N, 16, [&](index_t lo, index_t hi) {
      kernel<qdot_op, Backend, E>::run(K, w.w.data() + lo * K, K, hi - lo, xr, yr + lo);
      for (index_t r = lo; r < hi; ++r) yr[r] *= w.row_scale(r);
    });
  }
}

template <Fp8 E, class SX, class SY>
void matmul_q(TensorView<const float, SX> x, const fp8_matrix<E>& w, TensorView<float, SY> y) {
  matmul_q(cpu{}, x, w, y);
}

}  // namespace tessel
