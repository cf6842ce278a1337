#pragma once
// matmul on tensors: C = A · B (+ beta · C), picking the packed SIMD GEMM or the streaming
// GEMV of backend/cpu/gemm.hpp.
//
//   matmul(A, B, C)          A [M,K] f32, B [K,N] f32 / f16 / bf16, C [M,N] f32
//   matmul(A, B, C, beta)    C = A·B + beta·C
//   auto C = matmul(A, B)    a new f32 tensor (static shape when M and N are static)
//   matmul(backend, ...)     with an explicit backend (cpu_scalar is the reference)
//
// B may be any strided view: a transposed weight W.transpose() of a [N,K] weight (the
// PyTorch Linear / GGUF layout, y = x · Wᵀ) is used in place without copying. Static shapes
// whose inner extents differ do not compile; run-time mismatches throw shape_error naming
// both shapes. A or C with a non-unit column stride are staged through a contiguous copy.

#include <type_traits>

#include "../backend/cpu/gemm.hpp"
#include "../backend/tags.hpp"
#include "../core/tensor.hpp"

namespace tessel {

namespace detail {

template <class VA, class VB>
constexpr void check_matmul_static() {
  using SA = typename VA::shape_type;
  using SB = typename VB::shape_type;
  static_assert(SA::rank == 2 && SB::rank == 2, "tessel::matmul: A and B must be matrices");
  constexpr index_t ka = SA::template static_extent<1>, kb = SB::template static_extent<0>;
  static_assert(ka == dyn || kb == dyn || ka == kb,
                "tessel::matmul: the columns of A must equal the rows of B");
}

template <class T>
decltype(auto) as_view(T&& t) {
  if constexpr (is_tensor<std::remove_cvref_t<T>>::value) {
    return t.view();
  } else {
    return std::forward<T>(t);
  }
}

template <class VA>
void stage_contiguous(const VA& a, Tensor<float, DynShape<2>>& tmp) {
  tmp = Tensor<float, DynShape<2>>(a.extent(0), a.extent(1));
  for (index_t i = 0; i < a.extent(0); ++i)
    for (index_t k = 0; k < a.extent(1); ++k) tmp(i, k) = to_f32(a(i, k));
}

}  // namespace detail

template <class Backend, class TA, class TB, class TC>
requires(std::is_empty_v<Backend>) void matmul(Backend, const TA& a_in, const TB& b_in, TC&& c_in,
                                               float beta = 0.0f) {
  const auto a = detail::as_view(a_in);
  const auto b = detail::as_view(b_in);
  auto c = detail::as_view(c_in);
  using VA = std::remove_cvref_t<decltype(a)>;
  using VB = std::remove_cvref_t<decltype(b)>;
  using VC = std::remove_cvref_t<decltype(c)>;
  detail::check_matmul_static<VA, VB>();
  static_assert(VC::rank == 2, "tessel::matmul: C must be a matrix");
  static_assert(std::is_same_v<typename VA::value_type, float> &&
                    std::is_same_v<typename VC::value_type, float>,
                "tessel::matmul: A and C must hold f32 (B may be f32, f16 or bf16)");
  static_assert(!std::is_const_v<typename VC::element_type>, "tessel::matmul: C is read-only");
  using SA = typename VA::shape_type;
  using SB = typename VB::shape_type;
  using SC = typename VC::shape_type;
  static_assert(SA::template static_extent<0> == dyn || SC::template static_extent<0> == dyn ||
                    SA::template static_extent<0> == SC::template static_extent<0>,
                "tessel::matmul: C must have as many rows as A");
  static_assert(SB::template static_extent<1> == dyn || SC::template static_extent<1> == dyn ||
                    SB::template static_extent<1> == SC::template static_extent<1>,
                "tessel::matmul: C must have as many columns as B");

  const index_t M = a.extent(0), K = a.extent(1), N = b.extent(1);
  if (b.extent(0) != K || c.extent(0) != M || c.extent(1) != N)
    detail::raise<shape_error>({"tessel::matmul: A ", a.shape(), " times B ", b.shape(), " into C ",
                                c.shape(), ": expected B [", K, ", N] and C [", M, ", ", N, "]"});
  if (M == 0 || N == 0) return;

  // A: row-major with unit column stride, else staged.
  Tensor<float, DynShape<2>> a_tmp(0, 0), c_tmp(0, 0);
  const float* ap = a.data();
  index_t lda = a.stride(0);
  if (a.stride(1) != 1 || (M > 1 && lda < K)) {
    detail::stage_contiguous(a, a_tmp);
    ap = a_tmp.data();
    lda = K;
  }
  // B: [K,N] with unit column stride, or the transpose of a row-major [N,K] weight.
  using WB = typename VB::value_type;
  const WB* bp = b.data();
  bool trans_b = false;
  index_t ldb = b.stride(0);
  Tensor<WB, DynShape<2>> b_tmp(0, 0);
  if (b.stride(1) == 1 && (K <= 1 || ldb >= N)) {
    trans_b = false;
  } else if (b.stride(0) == 1 && (N <= 1 || b.stride(1) >= K)) {
    trans_b = true;
    ldb = b.stride(1);
  } else {
    b_tmp = Tensor<WB, DynShape<2>>(K, N);
    for (index_t k = 0; k < K; ++k)
      for (index_t n = 0; n < N; ++n) b_tmp(k, n) = b(k, n);
    bp = b_tmp.data();
    ldb = N;
  }
  if (K == 1 && !trans_b) ldb = std::max<index_t>(ldb, N);
  if (N == 1 && trans_b) ldb = std::max<index_t>(ldb, K);
  // C: row-major with unit column stride, else computed into a staging buffer.
  float* cp = c.data();
  index_t ldc = c.stride(0);
  const bool stage_c = c.stride(1) != 1 || (M > 1 && ldc < N);
  if (stage_c) {
    c_tmp = Tensor<float, DynShape<2>>(M, N);
    if (beta != 0.0f)
      for (index_t i = 0; i < M; ++i)
        for (index_t n = 0; n < N; ++n) c_tmp(i, n) = c(i, n);
    cp = c_tmp.data();
    ldc = N;
  }
  if (M == 1) ldc = std::max<index_t>(ldc, N);
  if (M == 1) lda = std::max<index_t>(lda, K);
  kernel<gemm_op, Backend, WB>::run(M, N, K, ap, lda, bp, ldb, trans_b, cp, ldc, beta);
  if (stage_c)
    for (index_t i = 0; i < M; ++i)
      for (index_t n = 0; n < N; ++n) c(i, n) = c_tmp(i, n);
}

template <class TA, class TB, class TC>
requires(!std::is_empty_v<TA>) void matmul(const TA& a, const TB& b, TC&& c, float beta = 0.0f) {
  matmul(cpu{}, a, b, std::forward<TC>(c), beta);
}

/// A new f32 tensor A · B; its shape is static where M and N are.
template <class TA, class TB>
requires(!std::is_empty_v<TA>) auto matmul(const TA& a_in, const TB& b_in) {
  const auto a = detail::as_view(a_in);
  const auto b = detail::as_view(b_in);
  using SA = typename std::remove_cvref_t<decltype(a)>::shape_type;
  using SB = typename std::remove_cvref_t<decltype(b)>::shape_type;
  using SC = Shape<SA::template static_extent<0>, SB::template static_extent<1>>;
  Tensor<float, SC> c(SC::from_array({a.extent(0), b.extent(1)}));
  matmul(cpu{}, a, b, c.view());
  return c;
}

}  // namespace tessel
