#pragma once
// Expression leaves (tensors, views, scalars) and the protocol every node follows.
//
// A node is a small value (leaves hold a pointer, the shape and the strides) with
//   shape_type, rank, shape()       its numpy-broadcast shape
//   result_type                     the element type materialize() picks by default
//   spaces                          memory spaces of its leaves (bit 1 host, bit 2 cuda)
//   has_reduction                   whether a reduction sits somewhere below
//   bind<R>(out_extents, ctx)       a "bound" evaluator for an output of rank R
// A bound evaluator answers, in f32:
//   at(idx)                         the value at a full output index (host and device)
//   seek(outer) / get(j)            position at an output row, then the value at column j
//   load<V>(j)                      V::size consecutive columns as a SIMD batch V
//   for_each_leaf(f)                f(strides) for every leaf (lets a backend merge axes);
//                                   strides is an array of R index_t (st[k] for axis k)

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "tessel/core/numeric.hpp"
#include "tessel/core/shape.hpp"
#include "tessel/core/tensor.hpp"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define TESSEL_HOST_DEVICE __host__ __device__
#else
#define TESSEL_HOST_DEVICE
#endif

namespace tessel {

/// The vector implementation of an elementwise operation, supplied by a backend
/// (backend/cpu/eval.hpp): `static V apply(V...)` on SIMD batches.
template <class Op>
struct simd_op;

namespace detail {

/// Element -> f32 usable in device code too (host code uses core's conversions).
template <class T>
TESSEL_HOST_DEVICE inline float load_f32(const T& x) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else if constexpr (std::is_same_v<T, bf16>) {
    return __uint_as_float(static_cast<unsigned>(x.bits) << 16);
  } else if constexpr (std::is_same_v<T, f16>) {
    return __half2float(__ushort_as_half(x.bits));
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<float>(x);
  } else {
    static_assert(sizeof(T) == 0, "tessel: this element type is not supported in CUDA kernels");
    return 0.f;
  }
#else
  return to_f32(x);
#endif
}

/// f32 -> element, rounding to nearest even; usable in device code too.
template <class T>
TESSEL_HOST_DEVICE inline T store_f32(float v) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, bf16>) {
    const unsigned u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((u >> 16) | 0x40u)};
    return bf16{static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
  } else if constexpr (std::is_same_v<T, f16>) {
    return f16{__half_as_ushort(__float2half_rn(v))};
  } else if constexpr (std::is_same_v<T, std::int32_t>) {
    return v != v ? 0 : __float2int_rn(fminf(fmaxf(v, -2147483648.f), 2147483520.f));
  } else {
    static_assert(sizeof(T) == 0, "tessel: this element type is not supported in CUDA kernels");
    return T{};
  }
#else
  return from_f32<T>(v);
#endif
}

}  // namespace detail

/// Tag base of every expression node.
struct expr_base {};

template <class E>
concept Expr = std::is_base_of_v<expr_base, std::remove_cvref_t<E>>;

inline constexpr int host_bit = 1;
inline constexpr int cuda_bit = 2;

template <class Space>
inline constexpr int space_bit = std::is_same_v<Space, host_space> ? host_bit : cuda_bit;

// ---- bound evaluators of leaves ---------------------------------------------------------

/// A leaf bound to an output of rank R: strides per output axis (0 where broadcast).
template <class T, std::size_t R>
struct leaf_eval {
  const T* base;
  index_t st[R];  // a plain array: std::array's operator[] is not callable in device code
  const T* row;

  TESSEL_HOST_DEVICE float at(const index_t* idx) const {
    index_t off = 0;
    for (std::size_t k = 0; k < R; ++k) off += idx[k] * st[k];
    return detail::load_f32(base[off]);
  }
  void seek(const index_t* outer) {
    index_t off = 0;
    for (std::size_t k = 0; k + 1 < R; ++k) off += outer[k] * st[k];
    row = base + off;
  }
  float get(index_t j) const { return to_f32(row[j * st[R - 1]]); }
  template <class V>
  V load(index_t j) const {
    constexpr std::size_t W = V::size;
    const index_t s = st[R - 1];
    if constexpr (std::is_same_v<T, float>)
      if (s == 1) return V::load_unaligned(row + j);
    if (s == 0) return V(to_f32(row[0]));  // broadcast along the row: a splat
    alignas(64) float buf[W];
    if (s == 1) {
      convert_to_f32(row + j, buf, static_cast<index_t>(W));
    } else {
      for (std::size_t k = 0; k < W; ++k) buf[k] = to_f32(row[(j + static_cast<index_t>(k)) * s]);
    }
    return V::load_aligned(buf);
  }
  template <class F>
  void for_each_leaf(F&& f) {
    f(st);
  }
};

/// A scalar leaf: the same value everywhere.
struct scalar_eval {
  float v;
  TESSEL_HOST_DEVICE float at(const index_t*) const { return v; }
  void seek(const index_t*) {}
  float get(index_t) const { return v; }
  template <class V>
  V load(index_t) const {
    return V(v);
  }
  template <class F>
  void for_each_leaf(F&&) {}
};

namespace detail {
/// Binds data with extents `e` and strides `st` (rank N) to an output of rank R >= N.
template <std::size_t R, class T, std::size_t N>
leaf_eval<T, R> bind_strided(const T* data, const std::array<index_t, N>& e,
                             const std::array<index_t, N>& st, const std::array<index_t, R>& out) {
  static_assert(R >= N, "tessel: a leaf cannot be bound to an output of lower rank");
  leaf_eval<T, R> b{data, {}, data};
  for (std::size_t k = R - N; k < R; ++k) {
    const std::size_t a = k - (R - N);
    b.st[k] = (e[a] == 1 && out[k] != 1) ? 0 : st[a];
  }
  return b;
}
}  // namespace detail

// ---- leaves -----------------------------------------------------------------------------

/// A tensor or view as an expression leaf (non-owning: the tensor must outlive the expression).
template <class T, class S, class Space>
struct leaf_expr : expr_base {
  static_assert(Element<T>, "tessel: expression leaves must have a number element type");
  using shape_type = S;
  using result_type = float;
  static constexpr std::size_t rank = S::rank;
  static constexpr int spaces = space_bit<Space>;
  static constexpr bool has_reduction = false;

  const T* data;
  S shape_;
  std::array<index_t, rank> strides;

  const S& shape() const { return shape_; }
  template <std::size_t R, class Ctx>
  leaf_eval<T, R> bind(const std::array<index_t, R>& out, Ctx&) const {
    return detail::bind_strided<R>(data, shape_.extents(), strides, out);
  }
};

/// A number as an expression leaf (rank 0: broadcasts to every shape).
struct scalar_expr : expr_base {
  using shape_type = Shape<>;
  using result_type = float;
  static constexpr std::size_t rank = 0;
  static constexpr int spaces = 0;
  static constexpr bool has_reduction = false;

  float value;

  Shape<> shape() const { return {}; }
  template <std::size_t R, class Ctx>
  scalar_eval bind(const std::array<index_t, R>&, Ctx&) const {
    return {value};
  }
};

template <class X>
concept Arithmetic = std::is_arithmetic_v<std::remove_cvref_t<X>>;

template <class X>
concept TensorLike = (is_tensor<std::remove_cvref_t<X>>::value ||
                      is_tensor_view<std::remove_cvref_t<X>>::value) &&
                     Element<typename std::remove_cvref_t<X>::value_type>;

/// What an expression operand may be: a node, a tensor or view of numbers, or a number.
template <class X>
concept ExprOperand = Expr<X> || TensorLike<X> || Arithmetic<X>;

/// The expression node for an operand (nodes pass through; tensors become leaves).
template <class X>
auto as_expr(X&& x) {
  using D = std::remove_cvref_t<X>;
  if constexpr (Expr<D>) {
    return D(x);
  } else if constexpr (Arithmetic<D>) {
    return scalar_expr{{}, static_cast<float>(x)};
  } else if constexpr (is_tensor<D>::value) {
    static_assert(std::is_lvalue_reference_v<X>,
                  "tessel: an expression cannot hold a temporary Tensor (it would dangle): "
                  "store the tensor in a variable first");
    using T = typename D::value_type;
    auto v = x.view();
    return leaf_expr<T, typename D::shape_type, typename D::space>{
        {}, v.data(), v.shape(), v.strides()};
  } else {
    static_assert(TensorLike<D>,
                  "tessel: not an expression operand (expected an expression, "
                  "a Tensor or TensorView of numbers, or a number)");
    using T = typename D::value_type;
    return leaf_expr<T, typename D::shape_type, typename D::space>{
        {}, x.data(), x.shape(), x.strides()};
  }
}

template <class X>
using expr_t = decltype(as_expr(std::declval<X>()));

}  // namespace tessel
