#pragma once
// What every layer template in nn/ shares: weight-format traits, the parameter visitor
// convention, and the row operations the layers run on raw f32 activations (kernel-table
// entries of the backend a layer is given).
//
// Layers keep their weights as members (tessel::Tensor with a static or `dyn` shape) and name
// them as GGUF does, so a loader walks them with
//
//   layer.visit("blk.3.attn_q", [](const std::string& name, auto& tensor) { ... });
//
// which calls the visitor with "blk.3.attn_q.weight" (and ".bias" where there is one).
// Activations are row-major f32 arrays of M rows passed as pointers: layers run inside the
// decode loop, where views and shape checks per call would cost more than the work.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/shape.hpp"
#include "tessel/core/tensor.hpp"
#include "tessel/ops/activation.hpp"
#include "tessel/ops/matmul.hpp"  // gemm, which the layers call
#include "tessel/ops/norm.hpp"
#include "tessel/ops/softmax.hpp"

namespace tessel::nn {

/// The run-time weight format (nn/any_weight.hpp): each matrix takes its tensor's format.
struct any_weight {};

/// Weight formats gemm reads directly (other formats are block formats, dequantized per row).
template <class W>
inline constexpr bool is_dense_weight_v =
    std::is_same_v<W, float> || std::is_same_v<W, f16> || std::is_same_v<W, bf16>;

template <class W>
concept WeightFormat = is_dense_weight_v<W> || std::is_same_v<W, any_weight> ||
    requires(const W* x, float* y, index_t n) {
  W::block_elems;
  W::dequantize_row(x, y, n);
};

/// Where the two halves of a rotated pair sit inside a head.
enum class RopeStyle {
  adjacent,    // (2i, 2i+1): Meta's Llama, llama2.c, GGUF `llama` (ggml rope mode 0)
  half_split,  // (i, i + d/2): GPT-NeoX, Hugging Face Llama (ggml rope mode NEOX)
};

/// GELU variant: the exact erf form, GPT-2's tanh approximation or CLIP's quick_gelu.
using GeluKind = tessel::gelu_kind;

/// An empty member for a parameter a layer does not have (an absent bias).
struct no_param {};

namespace detail {

/// A shape of rank 2 from run-time extents that must agree with the static ones.
template <index_t A, index_t B>
Shape<A, B> shape2(index_t a, index_t b) {
  return Shape<A, B>(a, b);
}

/// One row of a weight matrix widened to f32 (dense formats or block formats).
template <class W>
void weight_row_f32(const W* row, float* out, index_t n) {
  if constexpr (is_dense_weight_v<W>) {
    for (index_t j = 0; j < n; ++j) out[j] = to_f32(row[j]);
  } else {
    W::dequantize_row(row, out, n);
  }
}

// Row operations of a backend, found in the kernel table (ops/norm.hpp, ops/softmax.hpp,
// ops/activation.hpp). Layers call the kernels directly; these names stay for callers that
// take the backend as row_ops<Backend> (or `rows`: the default backend).
template <class Backend>
struct row_ops {
  static void rms_norm(const float* x, float* y, index_t n, const float* w, float eps) {
    kernel<op::rms_norm_row, Backend>::run(x, y, n, w, eps);
  }
  static void layer_norm(const float* x, float* y, index_t n, const float* w, const float* b,
                         float eps) {
    kernel<op::layer_norm_row, Backend>::run(x, y, n, w, b, eps);
  }
  static void softmax(float* x, index_t n) { kernel<op::softmax, Backend>::run(x, x, 1, n); }
};
using rows = row_ops<default_backend>;

using tessel::detail::silu;

/// out[i] = silu(s[i]) * m[i] for i < n (out may alias s or m): op::silu_mul.
template <class Backend>
void silu_mul(Backend, const float* s, const float* m, float* out, index_t n) {
  kernel<op::silu_mul, Backend>::run(s, m, out, n);
}
/// x[i] = gelu(x[i]) for i < n: op::gelu.
template <class Backend>
void gelu_inplace(Backend, float* x, index_t n, GeluKind k) {
  kernel<op::gelu, Backend>::run(x, n, k);
}

}  // namespace detail
}  // namespace tessel::nn
