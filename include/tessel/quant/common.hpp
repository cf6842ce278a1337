#pragma once
// Helpers shared by the quantization formats: rounding, argument checks, the format concept.

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/shape.hpp"

namespace tessel {

/// A block quantization format: a trivially copyable struct holding one block, with its size,
/// its reference row quantizer / dequantizer and the activation format its dot product uses.
template <class F>
concept QuantFormat = requires(const float* x, F* b, const F* cb, float* y, index_t n) {
  { F::block_elems } -> std::convertible_to<index_t>;
  { F::block_bytes } -> std::convertible_to<std::size_t>;
  { F::name } -> std::convertible_to<std::string_view>;
  typename F::vec_dot_type;
  F::quantize_row(x, b, n);
  F::dequantize_row(cb, y, n);
}
&&sizeof(F) == F::block_bytes;

namespace qdetail {

/// Round to nearest, ties to even (as the hardware does; the quantizers only need "nearest").
inline int nearest_int(float x) noexcept {
  return static_cast<int>(std::nearbyint(x));
}

inline void check_row(std::string_view fmt, index_t n, index_t block) {
  if (n < 0 || n % block != 0)
    throw shape_error("tessel::" + std::string(fmt) + ": row length " + std::to_string(n) +
                      " is not a multiple of the block size " + std::to_string(block));
}

inline float f16f(f16 h) noexcept {
  return to_f32(h);
}
inline f16 tof16(float x) noexcept {
  return from_f32<f16>(x);
}

}  // namespace qdetail
}  // namespace tessel
