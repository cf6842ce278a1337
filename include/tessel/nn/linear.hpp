#pragma once
// Linear<In, Out, W, Bias>: y = x Wᵀ (+ b), the weight stored [Out, In] in format W as
// PyTorch and GGUF store it. In and Out are static extents or `dyn` (then given to the
// constructor); W is f32, f16, bf16 (read by gemm, widened to f32 in registers), a block
// format (q8_0, q4_0, q4_k, ...: run by the quantized kernels of quant/kernels/qgemm.hpp —
// integer dots against activations quantized to 8 bits for few rows, dequantized tiles into
// the f32 SGEMM for many), or any_weight (nn/any_weight.hpp: the format chosen per tensor at
// load time). A block format without a vec_dot_type runs op::dequant_matmul (per-row widening).
//
//   nn::Linear<64, 172, f16> up;            // static: shapes checked at compile time
//   nn::Linear<dyn, dyn> proj(dim, hidden);  // run-time dimensions
//   up.forward(b, x, y);                     // x RowView<64, const float>, y RowView<172>
//   up.forward(b, x, y, 1.0f);               // y += x Wᵀ (a residual add for free)
// Rows may be strided (the keys of a KV cache are written in place through a strided view).

#include "any_weight.hpp"
#include "common.hpp"
#include "tessel/quant/kernels/qgemm.hpp"

namespace tessel::nn {

template <index_t In, index_t Out, WeightFormat W = float, bool Bias = false>
class Linear {
 public:
  using weight_format = W;
  static constexpr bool has_bias = Bias;
  static constexpr index_t static_in = In, static_out = Out;

  Linear() requires(In != dyn && Out != dyn) = default;
  Linear(index_t in, index_t out) : weight(Shape<Out, In>(out, in)), bias(make_bias(out)) {}

  index_t in() const noexcept { return weight.extent(1); }
  index_t out() const noexcept { return weight.extent(0); }

  /// y[M, Out] = x[M, In] Wᵀ + b + beta · y (beta 0 never reads y), with Backend's kernels.
  /// The rows of x and y must agree, and their widths equal In and Out (shape_error).
  template <class Backend>
  void forward(Backend b, RowView<In, const float> x, RowView<Out> y, float beta = 0.0f) const {
    const index_t M = x.extent(0);
    detail::check_rows("tessel::nn::Linear", "input", x, in());
    detail::check_rows("tessel::nn::Linear", "output", y, out(), M);
    forward_rows(b, x.data(), std::max(x.stride(0), in()), M, y.data(),
                 std::max(y.stride(0), out()), beta);
    if constexpr (Bias) eval(b, y, y + bias);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    v(name + ".weight", weight);
    if constexpr (Bias) v(name + ".bias", bias);
  }

  matrix_storage_t<W, Out, In> weight;
  [[no_unique_address]] std::conditional_t<Bias, Tensor<float, Shape<Out>>, no_param> bias;

 private:
  template <class Backend>
  void forward_rows(Backend, const float* x, index_t ldx, index_t M, float* y, index_t ldy,
                    float beta) const {
    const index_t K = in(), N = out();
    if constexpr (is_dense_weight_v<W>) {
      gemm<Backend>(M, N, K, x, ldx, weight.data(), K, true, y, ldy, beta);
    } else if constexpr (std::is_same_v<W, any_weight>) {
      weight.template matmul<Backend>(x, ldx, M, y, ldy, beta);
    } else if constexpr (QuantFormat<W>) {
      qgemm<Backend>(M, N, K, x, ldx, weight.data(), y, ldy, beta);
    } else {
      kernel<op::dequant_matmul, Backend, W>::run(M, N, K, x, ldx, weight.data(), y, ldy, beta);
    }
  }

  static auto make_bias(index_t out) {
    if constexpr (Bias) {
      return Tensor<float, Shape<Out>>(Shape<Out>(out));
    } else {
      return no_param{};
    }
  }
};

}  // namespace tessel::nn
