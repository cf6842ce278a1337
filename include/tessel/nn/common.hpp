#pragma once
// What every layer template in nn/ shares: weight-format traits, the parameter visitor
// convention, and the typed views layers take their activations as.
//
// Layers keep their weights as members (tessel::Tensor with a static or `dyn` shape) and name
// them as GGUF does, so a loader walks them with
//
//   layer.visit("blk.3.attn_q", [](const std::string& name, auto& tensor) { ... });
//
// which calls the visitor with "blk.3.attn_q.weight" (and ".bias" where there is one).
// Activations are RowView<D>: M rows of D features (TensorView<float, Shape<dyn, D>>), D
// static where the layer's extent is, so wiring a layer's output into a layer of another
// static width is a compile error, and a run-time width that differs is a shape_error. Rows
// may be strided (a KV cache's rows); the features of a row are contiguous.
//
//   nn::Linear<64, 128> up;  nn::Linear<128, 64> down;
//   up.forward(b, x, h);     // x: RowView<64, const float> [M, 64], h: RowView<128> [M, 128]
//   down.forward(b, h, y);   // up's output typed as down's input

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "tessel/backend/cpu/eval.hpp"  // the layers' elementwise steps are expressions
#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/shape.hpp"
#include "tessel/core/tensor.hpp"
#include "tessel/ops/activation.hpp"  // gelu_kind
#include "tessel/ops/matmul.hpp"      // gemm, which the layers call
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

/// M rows of D features (D static or dyn) in host memory: a layer's input (T = const float)
/// or output (T = float).
template <index_t D, class T = float>
using RowView = TensorView<T, Shape<dyn, D>, host_space>;
/// A layer's scratch area: at least the scratch_floats(...) it asks for (a decode loop that
/// keeps one allocates nothing).
using ScratchView = TensorView<float, Shape<dyn>, host_space>;

/// M rows of d floats at p, row i at p + i · ld (ld 0: packed rows): a RowView<D> over a
/// buffer. A static D must equal d (shape_error).
template <index_t D = dyn, class T>
RowView<D, T> row_view(T* p, index_t M, index_t d = D, index_t ld = 0) {
  if (M < 0 || d < 0 || ld < 0 || (ld != 0 && ld < d))
    throw shape_error("tessel::nn::row_view: " + std::to_string(M) + " rows of " +
                      std::to_string(d) + " with a row stride of " + std::to_string(ld));
  return {p, Shape<dyn, D>(M, d), {ld ? ld : d, 1}};
}
/// Rows [begin, end) of a RowView, of the same type (static width kept).
template <index_t D, class T>
RowView<D, T> row_range(const RowView<D, T>& v, index_t begin, index_t end) {
  if (begin < 0 || end < begin || end > v.extent(0))
    throw shape_error("tessel::nn::row_range: rows [" + std::to_string(begin) + ", " +
                      std::to_string(end) + ") of " + to_string(v.shape()));
  return {v.data() + begin * v.stride(0), Shape<dyn, D>(end - begin, v.extent(1)), v.strides()};
}
/// n floats at p as a scratch area.
inline ScratchView scratch_view(float* p, index_t n) {
  return {p, Shape<dyn>(n)};
}

namespace detail {

/// Throws shape_error unless a view holds rows of `cols` contiguous features (what the row
/// kernels read), `rows` of them where rows >= 0.
template <class T, class S>
void check_rows(const char* who, const char* what, const TensorView<T, S, host_space>& v,
                index_t cols, index_t rows = -1) {
  if (v.extent(1) != cols || (rows >= 0 && v.extent(0) != rows) ||
      (v.extent(0) > 1 && v.stride(0) < cols) || (cols > 1 && v.stride(1) != 1))
    throw shape_error(std::string(who) + ": " + what + " " + to_string(v.shape()) +
                      " (row stride " + std::to_string(v.stride(0)) + ") should be " +
                      (rows >= 0 ? std::to_string(rows) : std::string("M")) + " rows of " +
                      std::to_string(cols) + " contiguous features");
}
/// Throws shape_error unless a scratch view holds at least n floats.
inline void check_scratch(const char* who, const ScratchView& s, index_t n) {
  if (s.extent(0) < n || (n > 1 && s.stride(0) != 1))
    throw shape_error(std::string(who) + ": scratch of " + std::to_string(s.extent(0)) +
                      " floats; this call needs " + std::to_string(n) + " contiguous ones");
}

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

}  // namespace detail
}  // namespace tessel::nn
