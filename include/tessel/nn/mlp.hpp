#pragma once
// Feed-forward blocks, with GGUF names:
//   GatedMLP<Dim, Hidden, W> (SwiGLU, Llama): y = ffn_down(silu(ffn_gate(x)) ⊙ ffn_up(x))
//   MLP<Dim, Hidden, W, Bias> (GPT-2, BERT):   y = ffn_down(gelu(ffn_up(x)))
// forward takes a scratch area of scratch_floats(M) floats, so a decode loop allocates nothing.

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
  void forward(Backend b, const float* x, index_t M, float* y, float* scratch,
               float beta = 0.0f) const {
    const index_t H = hidden();
    float* g = scratch;
    float* u = scratch + M * H;
    ffn_gate.forward(b, x, M, g);
    ffn_up.forward(b, x, M, u);
    detail::silu_mul(b, g, u, g, M * H);
    ffn_down.forward(b, g, M, y, beta);
  }
  void forward(const float* x, index_t M, float* y, float* scratch, float beta = 0.0f) const {
    forward(default_backend{}, x, M, y, scratch, beta);
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
  void forward(Backend b, const float* x, index_t M, float* y, float* scratch,
               float beta = 0.0f) const {
    ffn_up.forward(b, x, M, scratch);
    detail::gelu_inplace(b, scratch, M * hidden(), gelu);
    ffn_down.forward(b, scratch, M, y, beta);
  }
  void forward(const float* x, index_t M, float* y, float* scratch, float beta = 0.0f) const {
    forward(default_backend{}, x, M, y, scratch, beta);
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
