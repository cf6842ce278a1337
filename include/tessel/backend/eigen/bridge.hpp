#pragma once
// Zero-copy bridge between TensorView and Eigen::Map, both ways. Strides carry over, so a
// transposed or sliced view maps without copying.

#include <Eigen/Core>
#include <type_traits>

#include "../../core/tensor.hpp"

namespace tessel {

template <class T>
using eigen_matrix_map = Eigen::Map<
    std::conditional_t<std::is_const_v<T>,
                       const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic,
                                           Eigen::RowMajor>,
                       Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>,
    Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

template <class T>
using eigen_vector_map =
    Eigen::Map<std::conditional_t<std::is_const_v<T>,
                                  const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                                  Eigen::Matrix<T, Eigen::Dynamic, 1>>,
               Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>>;

/// A rank-2 host view as an Eigen matrix map (row i, column j = view(i, j)).
template <class T, class S>
requires(S::rank == 2 && std::is_arithmetic_v<std::remove_const_t<T>>)
    eigen_matrix_map<T> as_eigen(const TensorView<T, S, host_space>& v) {
  return eigen_matrix_map<T>(
      v.data(), v.extent(0), v.extent(1),
      Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(v.stride(0), v.stride(1)));
}
/// A rank-1 host view as an Eigen vector map.
template <class T, class S>
requires(S::rank == 1 && std::is_arithmetic_v<std::remove_const_t<T>>)
    eigen_vector_map<T> as_eigen(const TensorView<T, S, host_space>& v) {
  return eigen_vector_map<T>(v.data(), v.extent(0),
                             Eigen::InnerStride<Eigen::Dynamic>(v.stride(0)));
}
template <class T, class S>
auto as_eigen(Tensor<T, S, host_space>& t) {
  return as_eigen(t.view());
}
template <class T, class S>
auto as_eigen(const Tensor<T, S, host_space>& t) {
  return as_eigen(t.view());
}

/// An Eigen dense object with direct access (Matrix, Map, Block, ...) as a rank-2 view.
template <class Derived>
auto view_of(Eigen::PlainObjectBase<Derived>& m) {
  using Scalar = typename Derived::Scalar;
  const index_t rs = Derived::IsRowMajor ? m.outerStride() : m.innerStride();
  const index_t cs = Derived::IsRowMajor ? m.innerStride() : m.outerStride();
  return TensorView<Scalar, DynShape<2>>(m.data(), DynShape<2>(m.rows(), m.cols()), {rs, cs});
}
template <class Derived>
auto view_of(const Eigen::PlainObjectBase<Derived>& m) {
  using Scalar = typename Derived::Scalar;
  const index_t rs = Derived::IsRowMajor ? m.outerStride() : m.innerStride();
  const index_t cs = Derived::IsRowMajor ? m.innerStride() : m.outerStride();
  return TensorView<const Scalar, DynShape<2>>(m.data(), DynShape<2>(m.rows(), m.cols()), {rs, cs});
}

}  // namespace tessel
