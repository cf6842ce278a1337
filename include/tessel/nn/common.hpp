#pragma once
// What every layer template in nn/ shares: weight-format traits, the parameter visitor
// convention, and the private row loops the layers run on raw f32 activations.
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

#include "tessel/backend/cpu/gemm.hpp"
#include "tessel/backend/tags.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/shape.hpp"
#include "tessel/core/tensor.hpp"
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

// Row kernels: the SIMD versions in ops/ where the build has them. Not inlined: with a static
// row length GCC 12 raises a false -Waggressive-loop-optimizations in their tail loops, and a
// call per row costs nothing next to the row. (noipa: no constant-propagated clones either.)
template <class Backend>
struct row_ops {  // cpu_scalar: the references
  static void rms_norm(const float* x, float* y, index_t n, const float* w, float eps) {
    tessel::detail::rms_norm_row_reference(x, y, n, w, eps);
  }
  static void layer_norm(const float* x, float* y, index_t n, const float* w, const float* b,
                         float eps) {
    tessel::detail::layer_norm_row_reference(x, y, n, w, b, eps);
  }
  static void softmax(float* x, index_t n) { tessel::detail::softmax_row_reference(x, x, n); }
};
template <class Arch>
struct row_ops<cpu_simd<Arch>> {
  [[gnu::noipa]] static void rms_norm(const float* x, float* y, index_t n, const float* w,
                                      float eps) {
    tessel::detail::rms_norm_row_simd<Arch>(x, y, n, w, eps);
  }
  [[gnu::noipa]] static void layer_norm(const float* x, float* y, index_t n, const float* w,
                                        const float* b, float eps) {
    tessel::detail::layer_norm_row_simd<Arch>(x, y, n, w, b, eps);
  }
  [[gnu::noipa]] static void softmax(float* x, index_t n) {
    tessel::detail::softmax_row_simd<Arch>(x, x, n);
  }
};
using rows = row_ops<cpu>;

inline float silu(float x) noexcept {
  return x / (1.0f + std::exp(-x));
}
/// x[i] = silu(x[i]) for i < n, one row: vectorized where the build has SIMD. Not inlined, as
/// row_ops (GCC 12's false -Waggressive-loop-optimizations on static lengths).
[[gnu::noipa]] inline void silu_row(float* x, index_t n) {
  index_t i = 0;
  if constexpr (requires { typename cpu::arch; }) {
    using V = xsimd::batch<float, typename cpu::arch>;
    constexpr index_t W = static_cast<index_t>(V::size);
    const V one(1.0f);
    for (; i + W <= n; i += W) {
      const V v = V::load_unaligned(x + i);
      (v / (one + xsimd::exp(-v))).store_unaligned(x + i);
    }
  }
  for (; i < n; ++i) x[i] = silu(x[i]);
}
/// x[i] = silu(x[i]) for i < n: vectorized, threaded over chunks of 16 Ki elements.
inline void silu_inplace(float* x, index_t n) {
  parallel_for(0, n, 16384, [&](index_t lo, index_t hi) { silu_row(x + lo, hi - lo); });
}
/// out[i] = silu(s[i]) * m[i] for i < n, one row (SwiGLU's gate, Mamba-2's output gate); out
/// may alias s or m. Vectorized where the build has SIMD; not inlined, as silu_row.
[[gnu::noipa]] inline void silu_mul_row(const float* s, const float* m, float* out, index_t n) {
  index_t i = 0;
  if constexpr (requires { typename cpu::arch; }) {
    using V = xsimd::batch<float, typename cpu::arch>;
    constexpr index_t W = static_cast<index_t>(V::size);
    const V one(1.0f);
    for (; i + W <= n; i += W) {
      const V v = V::load_unaligned(s + i);
      (v / (one + xsimd::exp(-v)) * V::load_unaligned(m + i)).store_unaligned(out + i);
    }
  }
  for (; i < n; ++i) out[i] = silu(s[i]) * m[i];
}
/// out[i] = silu(s[i]) * m[i] for i < n: vectorized, threaded over chunks of 16 Ki elements.
inline void silu_mul(const float* s, const float* m, float* out, index_t n) {
  parallel_for(0, n, 16384,
               [&](index_t lo, index_t hi) { silu_mul_row(s + lo, m + lo, out + lo, hi - lo); });
}
inline float gelu(float x, GeluKind k) noexcept {
  if (k == GeluKind::erf) return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
  const float c = 0.79788456080286536f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
}

}  // namespace detail
}  // namespace tessel::nn
