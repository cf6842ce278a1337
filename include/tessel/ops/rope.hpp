#pragma once
// Rotary position embedding of one position's heads, as a kernel-table entry:
//   op::rope_rows  run(v, n_heads, head_dim, half, cos, sin, adjacent)
// rotates pair i < half of each of the n_heads consecutive heads of v (head_dim apart) by the
// angle whose cosine and sine are cos[i] and sin[i]; the pair is (2i, 2i+1) when adjacent,
// (i, i + half) otherwise. Dimensions past 2·half are left alone (partial rotary).

#include "tessel/backend/tags.hpp"
#include "tessel/core/shape.hpp"

namespace tessel {

namespace op {
struct rope_rows {};
}  // namespace op

// No SIMD version (the SIMD backends fall back to this one): a position's heads are a few
// hundred floats next to the projections that produce them.
template <>
struct kernel<op::rope_rows, cpu_scalar> {
  static void run(float* v, index_t n_heads, index_t head_dim, index_t half, const float* c,
                  const float* s, bool adjacent) {
    const index_t stride = adjacent ? 1 : half;
    const index_t step = adjacent ? 2 : 1;
    for (index_t h = 0; h < n_heads; ++h) {
      float* x = v + h * head_dim;
      for (index_t i = 0; i < half; ++i) {
        float& a = x[i * step];
        float& b = x[i * step + stride];
        const float x0 = a, x1 = b;
        a = x0 * c[i] - x1 * s[i];
        b = x0 * s[i] + x1 * c[i];
      }
    }
  }
};

}  // namespace tessel
