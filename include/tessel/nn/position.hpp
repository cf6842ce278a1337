#pragma once
// PositionEmbedding<MaxPos, Dim, W>: learned absolute positions (GPT-2 `position_embd`,
// BERT `position_embeddings`): a table of MaxPos rows of Dim whose row p is added to the
// activation of the token at position p.
//
//   pos_embd.add(b, x, M, pos);   // x[i, :] += row (pos + i), i < M, on backend b

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

  /// x[i, :] += row pos + i for i < M, by Backend's op::embedding_rows kernel; positions past
  /// the table are a value_error.
  template <class Backend>
  void add(Backend, float* x, index_t M, index_t pos) const {
    if (pos < 0 || M < 0 || pos + M > max_pos())
      throw value_error("tessel::nn::PositionEmbedding: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + M) + " exceed the table of " +
                        std::to_string(max_pos()));
    kernel<op::embedding_rows, Backend, W>::run(weight.data(), dim(), pos, M, x, true);
  }
  void add(float* x, index_t M, index_t pos) const { add(default_backend{}, x, M, pos); }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
  }

  Tensor<W, Shape<MaxPos, Dim>> weight;
};

}  // namespace tessel::nn
