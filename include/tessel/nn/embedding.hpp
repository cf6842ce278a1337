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

  /// out[i, :] = row tokens[i]; a token outside [0, Vocab) is a value_error (nothing is
  /// written then). The rows are gathered by Backend's op::embedding_rows kernel.
  template <class Backend, class Id>
  void forward(Backend, std::span<const Id> tokens, float* out) const {
    lookup<Backend>(tokens, out, false);
  }

  template <class Id>
  void forward(std::span<const Id> tokens, float* out) const {
    forward(default_backend{}, tokens, out);
  }

  /// out[i, :] += row tokens[i] (BERT's token-type embedding is added to the others).
  template <class Backend, class Id>
  void forward_add(Backend, std::span<const Id> tokens, float* out) const {
    lookup<Backend>(tokens, out, true);
  }
  template <class Id>
  void forward_add(std::span<const Id> tokens, float* out) const {
    forward_add(default_backend{}, tokens, out);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
  }

  matrix_storage_t<W, Vocab, Dim> weight;

 private:
  template <class Backend, class Id>
  void lookup(std::span<const Id> tokens, float* out, bool add) const {
    for (const Id id : tokens) {
      const auto t = static_cast<index_t>(id);
      if (t < 0 || t >= vocab())
        throw value_error("tessel::nn::Embedding: token " + std::to_string(t) +
                          " is outside the vocabulary of " + std::to_string(vocab()));
    }
    const index_t n = static_cast<index_t>(tokens.size());
    if constexpr (std::is_same_v<W, any_weight>) {
      if (n > 0 && weight.empty())
        throw value_error("tessel::nn::Embedding: a table of " + std::to_string(vocab()) +
                          " rows was used before any weights were loaded");
      with_weight_kind(weight.kind(), [&]<class T>(type_tag<T>) {
        kernel<op::embedding_rows, Backend, T>::run(weight.template data<T>(), dim(), tokens.data(),
                                                    n, out, add);
      });
    } else {
      kernel<op::embedding_rows, Backend, W>::run(weight.data(), dim(), tokens.data(), n, out, add);
    }
  }
};

}  // namespace tessel::nn
