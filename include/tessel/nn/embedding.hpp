#pragma once
// Embedding<Vocab, Dim, W>: a table of Vocab rows of Dim, stored in format W (GGUF name
// `token_embd`); lookup widens the row of each token to f32.

#include <span>

#include "any_weight.hpp"
#include "common.hpp"

namespace tessel::nn {

template <index_t Vocab, index_t Dim, WeightFormat W = float>
class Embedding {
 public:
  using weight_format = W;

  Embedding() requires(Vocab != dyn && Dim != dyn) = default;
  Embedding(index_t vocab, index_t dim) : weight(Shape<Vocab, Dim>(vocab, dim)) {}

  index_t vocab() const noexcept { return weight.extent(0); }
  index_t dim() const noexcept { return weight.extent(1); }

  /// out[i, :] = row tokens[i] (out: [tokens.size(), Dim]); a token outside [0, Vocab) is a
  /// value_error. A lookup is a copy (or the weight format's row dequantization), the same on
  /// every CPU backend: the backend is taken for the uniform layer signature.
  template <class Backend, class Id>
  void forward(Backend, std::span<const Id> tokens, RowView<Dim> out) const {
    const index_t D = dim();
    detail::check_rows("tessel::nn::Embedding", "output", out, D, index_t(tokens.size()));
    for (std::size_t i = 0; i < tokens.size(); ++i)
      row(check_token(tokens[i]), out.data() + index_t(i) * out.stride(0));
  }

  /// out[i, :] += row tokens[i] (BERT's token-type embedding is added to the others).
  template <class Backend, class Id>
  void forward_add(Backend b, std::span<const Id> tokens, RowView<Dim> out) const {
    const index_t D = dim();
    detail::check_rows("tessel::nn::Embedding", "output", out, D, index_t(tokens.size()));
    thread_local std::vector<float> buf;  // grows once per thread
    if (static_cast<index_t>(buf.size()) < D) buf.resize(std::size_t(D));
    const auto r = row_view<Dim, const float>(buf.data(), 1, D);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      row(check_token(tokens[i]), buf.data());
      const auto o = row_range(out, index_t(i), index_t(i) + 1);
      eval(b, o, o + r);
    }
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
  }

  matrix_storage_t<W, Vocab, Dim> weight;

 private:
  template <class Id>
  index_t check_token(Id id) const {
    const auto t = static_cast<index_t>(id);
    if (t < 0 || t >= vocab())
      throw value_error("tessel::nn::Embedding: token " + std::to_string(t) +
                        " is outside the vocabulary of " + std::to_string(vocab()));
    return t;
  }

  void row(index_t t, float* out) const {
    if constexpr (std::is_same_v<W, any_weight>) {
      weight.row_f32(t, out);
    } else {
      const index_t D = dim();
      detail::weight_row_f32(weight.data() + t * (D / block_elems_v<W>), out, D);
    }
  }
};

}  // namespace tessel::nn
