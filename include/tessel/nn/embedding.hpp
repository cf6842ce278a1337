#pragma once
// Embedding<Vocab, Dim, W>: a table of Vocab rows of Dim, stored in format W (GGUF name
// `token_embd`); lookup widens the row of each token to f32.

#include <span>

#include "any_weight.hpp"
#include "common.hpp"
#include "tessel/ops/embedding.hpp"

namespace tessel::nn {

template <index_t Vocab, index_t Dim, WeightFormat W = float>
class Embedding {
 public:
  using weight_format = W;

  Embedding() requires(Vocab != dyn && Dim != dyn) = default;
  Embedding(index_t vocab, index_t dim) : weight(Shape<Vocab, Dim>(vocab, dim)) {}

  index_t vocab() const noexcept { return weight.extent(0); }
  index_t dim() const noexcept { return weight.extent(1); }

  /// out[i, :] = row tokens[i] (out: [tokens.size(), Dim], rows may be strided); a token
  /// outside [0, Vocab) is a value_error (nothing is written then). The rows are gathered by
  /// Backend's op::embedding_rows kernel.
  template <class Backend, class Id>
  void forward(Backend, std::span<const Id> tokens, RowView<Dim> out) const {
    lookup<Backend>(tokens, out, false);
  }

  /// out[i, :] += row tokens[i] (BERT's token-type embedding is added to the others).
  template <class Backend, class Id>
  void forward_add(Backend, std::span<const Id> tokens, RowView<Dim> out) const {
    lookup<Backend>(tokens, out, true);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
  }

  matrix_storage_t<W, Vocab, Dim> weight;

 private:
  template <class Backend, class Id>
  void lookup(std::span<const Id> tokens, RowView<Dim> out, bool add) const {
    const index_t n = static_cast<index_t>(tokens.size());
    detail::check_rows("tessel::nn::Embedding", "output", out, dim(), n);
    for (const Id id : tokens) {
      const auto t = static_cast<index_t>(id);
      if (t < 0 || t >= vocab())
        throw value_error("tessel::nn::Embedding: token " + std::to_string(t) +
                          " is outside the vocabulary of " + std::to_string(vocab()));
    }
    if constexpr (std::is_same_v<W, any_weight>) {
      if (n > 0 && weight.empty())
        throw value_error("tessel::nn::Embedding: a table of " + std::to_string(vocab()) +
                          " rows was used before any weights were loaded");
      with_weight_kind(weight.kind(), [&]<class T>(type_tag<T>) {
        gather<Backend, T>(weight.template data<T>(), tokens, out, add);
      });
    } else {
      gather<Backend, W>(weight.data(), tokens, out, add);
    }
  }
  /// One kernel call for contiguous rows, one per row for strided ones.
  template <class Backend, class T, class Id>
  void gather(const T* table, std::span<const Id> tokens, RowView<Dim> out, bool add) const {
    const index_t n = static_cast<index_t>(tokens.size()), D = dim();
    if (n <= 1 || out.stride(0) == D) {
      kernel<op::embedding_rows, Backend, T>::run(table, D, tokens.data(), n, out.data(), add);
    } else {
      for (index_t i = 0; i < n; ++i)
        kernel<op::embedding_rows, Backend, T>::run(table, D, tokens.data() + i, 1,
                                                    out.data() + i * out.stride(0), add);
    }
  }
};

}  // namespace tessel::nn
