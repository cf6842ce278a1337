#pragma once
// Feed-forward blocks, with GGUF names:
//   GatedMLP<Dim, Hidden, W> (SwiGLU, Llama): y = ffn_down(silu(ffn_gate(x)) ⊙ ffn_up(x))
//   MLP<Dim, Hidden, W, Bias> (GPT-2, BERT):   y = ffn_down(gelu(ffn_up(x)))
// forward takes x [M, Dim] and y [M, Dim] as RowViews and a scratch area of at least
// scratch_floats(M) floats, so a decode loop allocates nothing; the activations between the
// matrix products are expressions evaluated on the layer's backend.

#include "linear.hpp"

namespace tessel::nn {

template <index_t Dim, index_t Hidden, WeightFormat W = float>
class GatedMLP {
 public:
  GatedMLP() requires(Dim != dyn && Hidden != dyn) = default;
  GatedMLP(index_t dim, index_t hidden)
      : ffn_gate(dim, hidden), ffn_up(dim, hidden), ffn_down(hidden, dim) {}

  index_t dim() const noexcept { return ffn_gate.in(); }
  index_t hidden() const noexcept { return ffn_gate.out(); }
  index_t scratch_floats(index_t M) const noexcept { return 2 * M * hidden(); }

  /// y[M, Dim] = mlp(x) + beta · y, with Backend's kernels.
  template <class Backend>
  void forward(Backend b, RowView<Dim, const float> x, RowView<Dim> y, ScratchView scratch,
               float beta = 0.0f) const {
    const index_t M = x.extent(0), H = hidden();
    detail::check_scratch("tessel::nn::GatedMLP", scratch, scratch_floats(M));
    const auto g = row_view<Hidden>(scratch.data(), M, H);
    const auto u = row_view<Hidden>(scratch.data() + M * H, M, H);
    ffn_gate.forward(b, x, g);
    ffn_up.forward(b, x, u);
    eval(b, g, silu(g) * u);
    ffn_down.forward(b, g, y, beta);
  }

  template <class V>
  void visit(const std::string& prefix, V&& v) {
    ffn_gate.visit(prefix + "ffn_gate", v);
    ffn_up.visit(prefix + "ffn_up", v);
    ffn_down.visit(prefix + "ffn_down", v);
  }

  Linear<Dim, Hidden, W> ffn_gate;
  Linear<Dim, Hidden, W> ffn_up;
  Linear<Hidden, Dim, W> ffn_down;
};

template <index_t Dim, index_t Hidden, WeightFormat W = float, bool Bias = true>
class MLP {
 public:
  explicit MLP(GeluKind gelu = GeluKind::erf) requires(Dim != dyn && Hidden != dyn) : gelu(gelu) {}
  MLP(index_t dim, index_t hidden, GeluKind gelu = GeluKind::erf)
      : ffn_up(dim, hidden), ffn_down(hidden, dim), gelu(gelu) {}

  index_t dim() const noexcept { return ffn_up.in(); }
  index_t hidden() const noexcept { return ffn_up.out(); }
  index_t scratch_floats(index_t M) const noexcept { return M * hidden(); }

  /// y[M, Dim] = mlp(x) + beta · y, with Backend's kernels.
  template <class Backend>
  void forward(Backend b, RowView<Dim, const float> x, RowView<Dim> y, ScratchView scratch,
               float beta = 0.0f) const {
    const index_t M = x.extent(0);
    detail::check_scratch("tessel::nn::MLP", scratch, scratch_floats(M));
    const auto h = row_view<Hidden>(scratch.data(), M, hidden());
    ffn_up.forward(b, x, h);
    switch (gelu) {
      case GeluKind::tanh:
        eval(b, h, gelu_tanh(h));
        break;
      case GeluKind::quick:
        eval(b, h, h * sigmoid(1.702f * h));
        break;
      case GeluKind::erf:
        eval(b, h, tessel::gelu(h));
        break;
    }
    ffn_down.forward(b, h, y, beta);
  }

  template <class V>
  void visit(const std::string& prefix, V&& v) {
    ffn_up.visit(prefix + "ffn_up", v);
    ffn_down.visit(prefix + "ffn_down", v);
  }

  Linear<Dim, Hidden, W, Bias> ffn_up;
  Linear<Hidden, Dim, W, Bias> ffn_down;
  GeluKind gelu;
};

}  // namespace tessel::nn
