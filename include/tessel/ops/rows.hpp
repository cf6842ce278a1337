#pragma once
// Row-wise operations over the last axis (softmax, rms_norm, layer_norm): the rows of an input
// view and an output view of the same shape, walked in lockstep and spread over the thread
// pool. A row kernel sees f32 rows; rows of other element types, or with a non-unit stride,
// are converted through a per-task buffer.

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "tessel/backend/cpu/eval.hpp"
#include "tessel/backend/thread_pool.hpp"

namespace tessel::detail {

/// A read-only view of a Tensor or TensorView.
template <class T, class S, class Sp>
TensorView<const T, S, Sp> src_view(const Tensor<T, S, Sp>& t) {
  return t.view();
}
template <class T, class S, class Sp>
TensorView<const std::remove_const_t<T>, S, Sp> src_view(const TensorView<T, S, Sp>& v) {
  return v.as_const();
}

template <class V>
index_t row_offset(const V& v, index_t r) {
  index_t off = 0;
  for (std::size_t k = V::rank - 1; k-- > 0;) {
    off += (r % v.extent(k)) * v.stride(k);
    r /= v.extent(k);
  }
  return off;
}

/// A rank-1 parameter (weight, bias) of length n, read into f32.
template <class P>
std::vector<float> param_f32(const char* op, const char* what, const P& p, index_t n,
                             const std::string& x_shape) {
  const auto v = src_view(p);
  static_assert(decltype(v)::rank == 1, "tessel: a norm weight / bias must have rank 1");
  if (v.extent(0) != n)
    throw shape_error(std::string("tessel: ") + op + ": " + what + " of shape " +
                      to_string(v.shape()) + " does not match the last axis of input shape " +
                      x_shape);
  std::vector<float> r(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    r[static_cast<std::size_t>(i)] = to_f32(v.data()[i * v.stride(0)]);
  return r;
}

/// Calls kernel(const float* x, float* y, n) for every row of x / y (same shape; y may be x).
template <class XV, class YV, class K>
void for_each_row(const char* op, const XV& x, const YV& y, bool threaded, K kernel) {
  static_assert(XV::rank >= 1, "tessel: row operations need a tensor of rank >= 1");
  static_assert(std::is_same_v<typename XV::space, host_space> &&
                    std::is_same_v<typename YV::space, host_space>,
                "tessel: CPU row operations need host_space tensors");
  if (x.shape().extents() != y.shape().extents())
    throw shape_error(std::string("tessel: ") + op + ": output shape " + to_string(y.shape()) +
                      " differs from input shape " + to_string(x.shape()));
  using TX = std::remove_const_t<typename XV::element_type>;
  using TY = typename YV::element_type;
  const index_t n = x.extent(XV::rank - 1);
  const index_t rows = n == 0 ? 0 : x.size() / n;
  const index_t sx = x.stride(XV::rank - 1), sy = y.stride(XV::rank - 1);
  auto body = [&](index_t lo, index_t hi) {
    std::vector<float> xb, yb;
    for (index_t r = lo; r < hi; ++r) {
      const TX* xr = x.data() + row_offset(x, r);
      TY* yr = y.data() + row_offset(y, r);
      const float* xf;
      if constexpr (std::is_same_v<TX, float>) {
        if (sx == 1) xf = xr;
      }
      if (!std::is_same_v<TX, float> || sx != 1) {
        xb.resize(static_cast<std::size_t>(n));
        for (index_t j = 0; j < n; ++j) xb[static_cast<std::size_t>(j)] = to_f32(xr[j * sx]);
        xf = xb.data();
      }
      if constexpr (std::is_same_v<TY, float>) {
        if (sy == 1) {
          kernel(xf, yr, n);
          continue;
        }
      }
      yb.resize(static_cast<std::size_t>(n));
      kernel(xf, yb.data(), n);
      for (index_t j = 0; j < n; ++j) yr[j * sy] = from_f32<TY>(yb[static_cast<std::size_t>(j)]);
    }
  };
  if (threaded && rows > 1 && rows * n >= parallel_threshold) {
    parallel_for(0, rows, std::max<index_t>(1, 4096 / n), body);
  } else {
    body(0, rows);
  }
}

/// Horizontal maximum of a batch (xsimd 8 has none).
template <class V>
float hmax(const V& v) {
  alignas(64) float lanes[V::size];
  v.store_aligned(lanes);
  float m = lanes[0];
  for (std::size_t k = 1; k < V::size; ++k)
    m = (lanes[k] > m || lanes[k] != lanes[k]) ? lanes[k] : m;
  return m;
}

}  // namespace tessel::detail
