#pragma once
// Whole-tensor quantize / dequantize, threaded over rows (the last axis holds the blocks).

#include <vector>

#include "formats.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

namespace qdetail {
// Offset (in units) of row r of a view: r enumerates the leading axes in row-major order.
template <class V>
index_t row_offset(const V& v, index_t r) {
  index_t off = 0;
  for (std::size_t k = V::rank - 1; k-- > 0;) {
    const index_t e = v.extent(k);
    off += (r % e) * v.stride(k);
    r /= e;
  }
  return off;
}
template <class V>
index_t row_count(const V& v) {
  index_t rows = 1;
  for (std::size_t k = 0; k + 1 < V::rank; ++k) rows *= v.extent(k);
  return rows;
}
}  // namespace qdetail

/// Quantizes every row of `x` (any strides) to Format: a tensor of the same shape.
template <QuantFormat Format, class S>
Tensor<Format, S> quantize(TensorView<const float, S> x) {
  static_assert(S::rank >= 1, "tessel::quantize: needs at least one axis");
  Tensor<Format, S> out(x.shape());
  const index_t K = x.extent(S::rank - 1);
  const index_t rows = qdetail::row_count(x);
  const index_t nb = K / Format::block_elems;
  Format* dst = out.data();
  parallel_for(0, rows, 8, [&](index_t lo, index_t hi) {
    std::vector<float> tmp(x.stride(S::rank - 1) == 1 ? 0 : static_cast<std::size_t>(K));
    for (index_t r = lo; r < hi; ++r) {
      const float* src = x.data() + qdetail::row_offset(x, r);
      if (!tmp.empty()) {
        for (index_t k = 0; k < K; ++k)
          tmp[static_cast<std::size_t>(k)] = src[k * x.stride(S::rank - 1)];
        src = tmp.data();
      }
      Format::quantize_row(src, dst + r * nb, K);
    }
  });
  return out;
}
template <QuantFormat Format, class S>
Tensor<Format, S> quantize(TensorView<float, S> x) {
  return quantize<Format>(x.as_const());
}
template <QuantFormat Format, class S>
Tensor<Format, S> quantize(const Tensor<float, S>& x) {
  return quantize<Format>(x.view());
}

/// Dequantizes every row of `w` to a contiguous f32 tensor of the same shape.
template <QuantFormat Format, class S>
Tensor<float, S> dequantize(TensorView<const Format, S> w) {
  static_assert(S::rank >= 1, "tessel::dequantize: needs at least one axis");
  Tensor<float, S> out(w.shape());
  const index_t K = w.extent(S::rank - 1);
  const index_t rows = qdetail::row_count(w);
  if (w.stride(S::rank - 1) != 1)
    throw shape_error("tessel::dequantize: the blocks of a row must be contiguous");
  parallel_for(0, rows, 8, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r)
      Format::dequantize_row(w.data() + qdetail::row_offset(w, r), out.data() + r * K, K);
  });
  return out;
}
template <QuantFormat Format, class S>
Tensor<float, S> dequantize(TensorView<Format, S> w) {
  return dequantize<Format>(w.as_const());
}
template <QuantFormat Format, class S>
Tensor<float, S> dequantize(const Tensor<Format, S>& w) {
  return dequantize<Format>(w.view());
}

}  // namespace tessel
