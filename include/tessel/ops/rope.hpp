#pragma once
// Rotary position embedding of one position's heads, as a kernel-table entry:
//   op::rope_rows  run(v, n_heads, head_dim, half, cos, sin, adjacent)
// rotates pair i < half of each of the n_heads consecutive heads of v (head_dim apart) by the
// angle whose cosine and sine are cos[i] and sin[i]; the pair is (2i, 2i+1) when adjacent,
// (i, i + half) otherwise. Dimensions past 2·half are left alone (partial rotary).

#include <cstdint>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/tags.hpp"
#include "tessel/core/shape.hpp"

namespace tessel {

namespace op {
struct rope_rows {};
}  // namespace op

namespace detail {
inline void rope_pair(float& a, float& b, float c, float s) noexcept {
  const float x0 = a, x1 = b;
  a = x0 * c - x1 * s;
  b = x0 * s + x1 * c;
}
/// Lane i of a batch_constant: i ^ 1 (swaps the two lanes of every pair).
struct swap_pair_lanes {
  static constexpr std::uint32_t get(std::size_t i, std::size_t) {
    return static_cast<std::uint32_t>(i ^ 1);
  }
};
}  // namespace detail

template <>
struct kernel<op::rope_rows, cpu_scalar> {
  static void run(float* v, index_t n_heads, index_t head_dim, index_t half, const float* c,
                  const float* s, bool adjacent) {
    const index_t stride = adjacent ? 1 : half;
    const index_t step = adjacent ? 2 : 1;
    for (index_t h = 0; h < n_heads; ++h) {
      float* x = v + h * head_dim;
      for (index_t i = 0; i < half; ++i)
        detail::rope_pair(x[i * step], x[i * step + stride], c[i], s[i]);
    }
  }
};

/// SIMD: half-split pairs are W pairs per vector pair (x[i..], x[half + i..]); adjacent pairs
/// are W / 2 pairs per vector, rotated as x · (c, c) + swap(x) · (−s, s) with the cosines and
/// signed sines laid out pairwise once per call (for all heads) and the lanes of each pair
/// swapped by a swizzle. The same products and sums as the reference (where the compiler
/// contracts either into an FMA, the results differ by a rounding).
template <class Arch>
struct kernel<op::rope_rows, cpu_simd<Arch>> {
  using V = xsimd::batch<float, Arch>;
  static constexpr index_t W = static_cast<index_t>(V::size);

  static void run(float* v, index_t n_heads, index_t head_dim, index_t half, const float* c,
                  const float* s, bool adjacent) {
    if (adjacent) {
      // Grows once per thread, then reused: no allocation in a decode loop.
      thread_local std::vector<float> cs;
      if (cs.size() < static_cast<std::size_t>(4 * half))
        cs.resize(static_cast<std::size_t>(4 * half));
      float* c2 = cs.data();
      float* s2 = c2 + 2 * half;
      for (index_t i = 0; i < half; ++i) {
        c2[2 * i] = c2[2 * i + 1] = c[i];
        s2[2 * i] = -s[i];
        s2[2 * i + 1] = s[i];
      }
      for (index_t h = 0; h < n_heads; ++h) adjacent_head(v + h * head_dim, half, c2, s2, c, s);
    } else {
      for (index_t h = 0; h < n_heads; ++h) split_head(v + h * head_dim, half, c, s);
    }
  }

  // Not inlined, as the activations' rows (GCC 12's false -Waggressive-loop-optimizations on
  // static lengths).
  [[gnu::noipa]] static void split_head(float* x, index_t half, const float* c, const float* s) {
    float* y = x + half;
    index_t i = 0;
    for (; i + W <= half; i += W) {
      const V a = V::load_unaligned(x + i), b = V::load_unaligned(y + i);
      const V cv = V::load_unaligned(c + i), sv = V::load_unaligned(s + i);
      (a * cv - b * sv).store_unaligned(x + i);
      (a * sv + b * cv).store_unaligned(y + i);
    }
    for (; i < half; ++i) detail::rope_pair(x[i], y[i], c[i], s[i]);
  }
  [[gnu::noipa]] static void adjacent_head(float* x, index_t half, const float* c2, const float* s2,
                                           const float* c, const float* s) {
    constexpr auto swap =
        xsimd::make_batch_constant<xsimd::batch<std::uint32_t, Arch>, detail::swap_pair_lanes>();
    index_t j = 0;  // float index; W is even, so j stays on a pair boundary
    for (; j + W <= 2 * half; j += W) {
      const V a = V::load_unaligned(x + j);
      (a * V::load_unaligned(c2 + j) + xsimd::swizzle(a, swap) * V::load_unaligned(s2 + j))
          .store_unaligned(x + j);
    }
    for (index_t i = j / 2; i < half; ++i) detail::rope_pair(x[2 * i], x[2 * i + 1], c[i], s[i]);
  }
};

}  // namespace tessel
