#pragma once
// Dot products of quantized weight rows with prepared activations: the scalar references.
//
//   kernel<qdot_op, Backend, F>::run(nb, w, ldw, rows, a, y)
//     y[r] = dot(row r of w, a) for r < rows; a row is nb blocks, rows are ldw blocks apart.
//     a: the activations quantized to F::vec_dot_type (q8_0 / q8_1 / q8_k), or f32 for the
//     formats that pair with f32 (nf4, int_group), nb * F::block_elems of them.
//
// The references follow the formats' formulas on integers: per (sub-)block an exact integer
// sum of products, scaled in f32. cpu_simd<A> kernels (qdot_avx2.hpp) must match them.

#include <cstring>

#include "tessel/backend/tags.hpp"
#include "tessel/quant/formats.hpp"

namespace tessel {

/// Tag of the quantized row dot product in kernel<qdot_op, Backend, Format>.
struct qdot_op {};

namespace qdetail {

template <class F>
using act_t = typename F::vec_dot_type;

// One block's dot product, reference form.
inline float block_dot(const q8_0& w, const q8_0& a) {
  int s = 0;
  for (int j = 0; j < 32; ++j) s += w.qs[j] * a.qs[j];
  return f16f(w.d) * f16f(a.d) * static_cast<float>(s);
}
inline float block_dot(const q4_0& w, const q8_0& a) {
  int s = 0;
  for (int j = 0; j < 16; ++j)
    s += ((w.qs[j] & 15) - 8) * a.qs[j] + ((w.qs[j] >> 4) - 8) * a.qs[j + 16];
  return f16f(w.d) * f16f(a.d) * static_cast<float>(s);
}
inline float block_dot(const q4_1& w, const q8_1& a) {
  int s = 0;
  for (int j = 0; j < 16; ++j) s += (w.qs[j] & 15) * a.qs[j] + (w.qs[j] >> 4) * a.qs[j + 16];
  return f16f(w.d) * f16f(a.d) * static_cast<float>(s) + f16f(w.m) * f16f(a.s);
}
inline float block_dot(const q5_0& w, const q8_0& a) {
  std::uint32_t qh;
  std::memcpy(&qh, w.qh, 4);
  int s = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = (w.qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (w.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    s += (lo - 16) * a.qs[j] + (hi - 16) * a.qs[j + 16];
  }
  return f16f(w.d) * f16f(a.d) * static_cast<float>(s);
}
inline float block_dot(const q5_1& w, const q8_1& a) {
  std::uint32_t qh;
  std::memcpy(&qh, w.qh, 4);
  int s = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = (w.qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (w.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    s += lo * a.qs[j] + hi * a.qs[j + 16];
  }
  return f16f(w.d) * f16f(a.d) * static_cast<float>(s) + f16f(w.m) * f16f(a.s);
}
// K-quants: sum over sub-blocks of scale * integer dot, minus the min term through bsums.
inline float block_dot(const q2_k& w, const q8_k& a) {
  std::uint8_t q[256];
  w.unpack(q);
  int sum = 0, msum = 0;
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int l = 0; l < 16; ++l) s += q[16 * g + l] * a.qs[16 * g + l];
    sum += (w.scales[g] & 15) * s;
    msum += (w.scales[g] >> 4) * a.bsums[g];
  }
  return a.d * (f16f(w.d) * static_cast<float>(sum) - f16f(w.dmin) * static_cast<float>(msum));
}
inline float block_dot(const q3_k& w, const q8_k& a) {
  std::int8_t q[256];
  w.unpack(q);
  int sum = 0;
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int l = 0; l < 16; ++l) s += q[16 * g + l] * a.qs[16 * g + l];
    sum += (w.scale(g) - 32) * s;
  }
  return a.d * f16f(w.d) * static_cast<float>(sum);
}
template <class K45>
inline float block_dot_k45(const K45& w, const q8_k& a) {
  std::uint8_t q[256];
  w.unpack(q);
  int sum = 0, msum = 0;
  for (int j = 0; j < 8; ++j) {
    std::uint8_t sc, m;
    get_scale_min_k4(j, w.scales, sc, m);
    int s = 0;
    for (int l = 0; l < 32; ++l) s += q[32 * j + l] * a.qs[32 * j + l];
    sum += sc * s;
    msum += m * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
  }
  return a.d * (f16f(w.d) * static_cast<float>(sum) - f16f(w.dmin) * static_cast<float>(msum));
}
inline float block_dot(const q4_k& w, const q8_k& a) {
  return block_dot_k45(w, a);
}
inline float block_dot(const q5_k& w, const q8_k& a) {
  return block_dot_k45(w, a);
}
inline float block_dot(const q6_k& w, const q8_k& a) {
  std::int8_t q[256];
  w.unpack(q);
  int sum = 0;
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int l = 0; l < 16; ++l) s += q[16 * g + l] * a.qs[16 * g + l];
    sum += w.scales[g] * s;
  }
  return a.d * f16f(w.d) * static_cast<float>(sum);
}
inline float block_dot(const q8_k& w, const q8_k& a) {
  int s = 0;
  for (int j = 0; j < 256; ++j) s += w.qs[j] * a.qs[j];
  return w.d * a.d * static_cast<float>(s);
}
// Formats paired with f32 activations: dequantize the block, f32 dot.
template <class F>
requires std::is_same_v<typename F::vec_dot_type, float>
inline float block_dot(const F& w, const float* x) {
  float v[F::block_elems];
  F::dequantize_row(&w, v, F::block_elems);
  float s = 0;
  for (index_t j = 0; j < F::block_elems; ++j) s += v[j] * x[j];
  return s;
}

}  // namespace qdetail

/// The reference row dot products.
template <QuantFormat F>
struct kernel<qdot_op, cpu_scalar, F> {
  using act = qdetail::act_t<F>;
  static void run(index_t nb, const F* w, index_t ldw, index_t rows, const act* a, float* y) {
    for (index_t r = 0; r < rows; ++r) {
      const F* row = w + r * ldw;
      float s = 0;
      for (index_t b = 0; b < nb; ++b) {
        if constexpr (std::is_same_v<act, float>) {
          s += qdetail::block_dot(row[b], a + b * F::block_elems);
        } else {
          s += qdetail::block_dot(row[b], a[b]);
        }
      }
      y[r] = s;
    }
  }
};

/// FP8 rows (unscaled: the caller applies the per-tensor / per-row scale): f32 dot products.
template <class E>
requires(std::is_same_v<E, f8_e4m3> ||
         std::is_same_v<E, f8_e5m2>) struct kernel<qdot_op, cpu_scalar, E> {
  static void run(index_t K, const E* w, index_t ldw, index_t rows, const float* x, float* y) {
    for (index_t r = 0; r < rows; ++r) {
      float s = 0;
      for (index_t k = 0; k < K; ++k) s += to_f32(w[r * ldw + k]) * x[k];
      y[r] = s;
    }
  }
};

}  // namespace tessel
