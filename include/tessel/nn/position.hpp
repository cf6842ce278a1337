#pragma once
// PositionEmbedding<MaxPos, Dim, W>: learned absolute positions (GPT-2 `position_embd`,
// BERT `position_embeddings`): a table of MaxPos rows of Dim whose row p is added to the
// activation of the token at position p.
//
//   pos_embd.add(x, M, pos);   // x[i, :] += row (pos + i), i < M

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

  /// x[i, :] += row pos + i for i < M; positions past the table are a value_error.
  void add(float* x, index_t M, index_t pos) const {
    if (pos < 0 || M < 0 || pos + M > max_pos())
      throw value_error("tessel::nn::PositionEmbedding: positions " + std::to_string(pos) + " to " +
                        std::to_string(pos + M) + " exceed the table of " +
                        std::to_string(max_pos()));
    const index_t D = dim(), row_units = D / block_elems_v<W>;
    if constexpr (std::is_same_v<W, float>) {
      for (index_t i = 0; i < M; ++i) {
        const float* r = weight.data() + (pos + i) * D;
        for (index_t j = 0; j < D; ++j) x[i * D + j] += r[j];
      }
    } else {
      // One row widened at a time: thread_local so a decode step does not allocate.
      thread_local std::vector<float> row;
      if (static_cast<index_t>(row.size()) < D) row.resize(std::size_t(D));
      for (index_t i = 0; i < M; ++i) {
        detail::weight_row_f32(weight.data() + (pos + i) * row_units, row.data(), D);
        for (index_t j = 0; j < D; ++j) x[i * D + j] += row[std::size_t(j)];
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
