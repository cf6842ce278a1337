#pragma once
// PositionEmbedding<MaxPos, Dim, W>: learned absolute positions (GPT-2 `position_embd`,
// BERT `position_embeddings`): a table of MaxPos rows of Dim whose row p is added to the
// activation of the token at position p.
//
//   pos_embd.add(b, x, pos);   // x[i, :] += row (pos + i) for the M rows of x (RowView<Dim>)

#include "common.hpp"
#include "tessel/ops/embedding.hpp"

namespace tessel::nn {

template <index_t MaxPos, index_t Dim, WeightFormat W = float>
class PositionEmbedding {
 public:
  using weight_format = W;

  PositionEmbedding() requires(MaxPos != dyn && Dim != dyn) = default;
  PositionEmbedding(index_t max_pos, index_t dim) : weight(Shape<MaxPos, Dim>(max_pos, dim)) {}

  index_t max_pos() const noexcept { return weight.extent(0); }
  index_t dim() const noexcept { return weight.extent(1); }

  /// x[i, :] += row pos + i for the M rows of x (rows may be strided), by Backend's
  /// op::embedding_rows kernel; positions past the table are a value_error.
  template <class Backend>
  void add(Backend, RowView<Dim> x, index_t pos) const {
    const index_t M = x.extent(0), D = dim();
    detail::check_rows("tessel::nn::PositionEmbedding", "input", x, D);
    if (pos < 0 || pos + M > max_pos())
      throw value_error("tessel::nn::PositionEmbedding: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + M) + " exceed the table of " +
                        std::to_string(max_pos()));
    if (M <= 1 || x.stride(0) == D) {
      kernel<op::embedding_rows, Backend, W>::run(weight.data(), D, pos, M, x.data(), true);
    } else {
      for (index_t i = 0; i < M; ++i)
        kernel<op::embedding_rows, Backend, W>::run(weight.data(), D, pos + i, 1,
                                                    x.data() + i * x.stride(0), true);
    }
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
  }

  Tensor<W, Shape<MaxPos, Dim>> weight;
};

}  // namespace tessel::nn
