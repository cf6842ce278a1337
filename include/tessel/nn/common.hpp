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

/// GELU variant: the exact erf form or GPT-2's tanh approximation.
enum class GeluKind { erf, tanh };

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
  static void softmax(float* x, index_t n) { kernel<op::softmax_row, Backend>::run(x, x, n); }
};
using rows = row_ops<default_backend>;

using tessel::detail::silu;

/// x[i] = silu(x[i]) for i < n, one row, with Backend's kernel.
template <class Backend>
void silu_row(Backend, float* x, index_t n) {
  kernel<op::silu_row, Backend>::run(x, n);
}
inline void silu_row(float* x, index_t n) {
  silu_row(default_backend{}, x, n);
}
/// x[i] = silu(x[i]) for i < n: threaded over chunks of 16 Ki elements.
template <class Backend>
void silu_inplace(Backend, float* x, index_t n) {
  parallel_for(0, n, 16384, [&](index_t lo, index_t hi) {
    kernel<op::silu_row, Backend>::run(x + lo, hi - lo);
  });
}
inline void silu_inplace(float* x, index_t n) {
  silu_inplace(default_backend{}, x, n);
}
/// out[i] = silu(s[i]) * m[i] for i < n, one row (SwiGLU's gate, Mamba-2's output gate); out
/// may alias s or m.
template <class Backend>
void silu_mul_row(Backend, const float* s, const float* m, float* out, index_t n) {
  kernel<op::silu_mul_row, Backend>::run(s, m, out, n);
}
inline void silu_mul_row(const float* s, const float* m, float* out, index_t n) {
  silu_mul_row(default_backend{}, s, m, out, n);
}
/// out[i] = silu(s[i]) * m[i] for i < n: threaded over chunks of 16 Ki elements.
template <class Backend>
void silu_mul(Backend, const float* s, const float* m, float* out, index_t n) {
  parallel_for(0, n, 16384, [&](index_t lo, index_t hi) {
    kernel<op::silu_mul_row, Backend>::run(s + lo, m + lo, out + lo, hi - lo);
  });
}
inline void silu_mul(const float* s, const float* m, float* out, index_t n) {
  silu_mul(default_backend{}, s, m, out, n);
}
inline float gelu(float x, GeluKind k) noexcept {
  return tessel::detail::gelu(x, k == GeluKind::tanh);
}
/// x[i] = gelu(x[i]) for i < n: threaded over chunks of 16 Ki elements.
template <class Backend>
void gelu_inplace(Backend, float* x, index_t n, GeluKind k) {
  parallel_for(0, n, 16384, [&](index_t lo, index_t hi) {
    kernel<op::gelu_row, Backend>::run(x + lo, hi - lo, k == GeluKind::tanh);
  });
}

}  // namespace detail
}  // namespace tessel::nn
