#pragma once
// Rows of a table gathered into f32 activations (token embeddings, learned positions), as a
// kernel-table entry over the table's format W (float, f16, bf16 or a block format):
//
//   kernel<op::embedding_rows, B, W>::run(table, dim, ids, n, out, add);
//     out[i, :] = table[ids[i], :] for i < n (+= when add: BERT's token types), widened to f32
//   kernel<op::embedding_rows, B, W>::run(table, dim, first, n, out, add);
//     the same for rows first, first + 1, ... (learned absolute positions)
//
// table: rows of dim elements (dim / W::block_elems blocks); out: n rows of dim floats. The
// caller checks the ids against the table (the kernel trusts them). A lookup is a copy or one
// dequantized row per token, next to matrix products over the same rows: there is no SIMD
// specialization, the SIMD backends use the reference.

#include <type_traits>
#include <vector>

#include "tessel/backend/tags.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

namespace op {
struct embedding_rows {};
}  // namespace op

template <class W>
struct kernel<op::embedding_rows, cpu_scalar, W> {
  template <class Id>
  static void run(const W* table, index_t dim, const Id* ids, index_t n, float* out, bool add) {
    for (index_t i = 0; i < n; ++i)
      row(table, dim, static_cast<index_t>(ids[i]), out + i * dim, add);
  }
  static void run(const W* table, index_t dim, index_t first, index_t n, float* out, bool add) {
    for (index_t i = 0; i < n; ++i) row(table, dim, first + i, out + i * dim, add);
  }

 private:
  static void row(const W* table, index_t dim, index_t r, float* out, bool add) {
    const W* src = table + r * (dim / block_elems_v<W>);
    if constexpr (!is_block_format_v<W>) {
      for (index_t j = 0; j < dim; ++j) out[j] = add ? out[j] + to_f32(src[j]) : to_f32(src[j]);
    } else if (!add) {
      W::dequantize_row(src, out, dim);
    } else {
      // Grows once per thread, then reused: no allocation in a decode loop.
      thread_local std::vector<float> buf;
      if (static_cast<index_t>(buf.size()) < dim) buf.resize(static_cast<std::size_t>(dim));
      W::dequantize_row(src, buf.data(), dim);
      for (index_t j = 0; j < dim; ++j) out[j] += buf[static_cast<std::size_t>(j)];
    }
  }
};

}  // namespace tessel
