#pragma once
// PositionEmbedding<MaxPos, Dim, W>: learned absolute positions (GPT-2 `position_embd`,
// BERT `position_embeddings`): a table of MaxPos rows of Dim whose row p is added to the
// activation of the token at position p.
//
//   pos_embd.add(b, x, pos);   // x[i, :] += row (pos + i) for the M rows of x (RowView<Dim>)

#include "common.hpp"

namespace tessel::nn {

template <index_t MaxPos, index_t Dim, WeightFormat W = float>
class PositionEmbedding {
 public:
  using weight_format = W;

  PositionEmbedding() requires(MaxPos != dyn && Dim != dyn) = default;
  PositionEmbedding(index_t max_pos, index_t dim) : weight(Shape<MaxPos, Dim>(max_pos, dim)) {}

  index_t max_pos() const noexcept { return weight.extent(0); }
  index_t dim() const noexcept { return weight.extent(1); }

  /// x[i, :] += row pos + i for the M rows of x; positions past the table are a value_error.
  template <class Backend>
  void add(Backend b, RowView<Dim> x, index_t pos) const {
    const index_t M = x.extent(0), D = dim();
    detail::check_rows("tessel::nn::PositionEmbedding", "input", x, D);
    if (pos < 0 || pos + M > max_pos())
      throw value_error("tessel::nn::PositionEmbedding: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + M) + " exceed the table of " +
                        std::to_string(max_pos()));
    if constexpr (std::is_same_v<W, float>) {
      const auto rows = weight.slice(0, pos, pos + M);
      eval(b, x, x + rows);
    } else {
      // One row widened at a time: thread_local so a decode step does not allocate.
      const index_t row_units = D / block_elems_v<W>;
      thread_local std::vector<float> row;
      if (static_cast<index_t>(row.size()) < D) row.resize(std::size_t(D));
      const auto r = row_view<Dim, const float>(row.data(), 1, D);
      for (index_t i = 0; i < M; ++i) {
        detail::weight_row_f32(weight.data() + (pos + i) * row_units, row.data(), D);
        const auto xi = row_range(x, i, i + 1);
        eval(b, xi, xi + r);
      }
    }
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
  }

  Tensor<W, Shape<MaxPos, Dim>> weight;
};

}  // namespace tessel::nn
