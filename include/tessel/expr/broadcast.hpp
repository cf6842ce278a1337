#pragma once
// numpy broadcasting of shapes: aligned from the right, two extents fit when they are equal or
// one of them is 1. Static shapes are checked by the compiler, dynamic ones at run time.

#include <array>
#include <cstddef>
#include <string>
#include <utility>

#include "tessel/core/error.hpp"
#include "tessel/core/shape.hpp"

namespace tessel {
namespace detail {

inline constexpr index_t bad_extent = -2;  // marks a static broadcast mismatch

/// Extent of axis k of a shape aligned (from the right) to rank R; missing axes are 1.
template <std::size_t R, std::size_t N>
constexpr index_t aligned_extent(const std::array<index_t, N>& e, std::size_t k) {
  return k + N < R ? 1 : e[k + N - R];
}

/// Broadcast of two extents that may be dyn; bad_extent when two static extents clash.
constexpr index_t broadcast_extent(index_t x, index_t y) {
  if (x == y) return x;
  if (x == 1) return y;
  if (y == 1) return x;
  if (x == dyn) return y;  // the run-time extent must be 1 or y
  if (y == dyn) return x;
  return bad_extent;
}

template <auto Arr, class Seq = std::make_index_sequence<Arr.size()>>
struct shape_of_array;
template <auto Arr, std::size_t... I>
struct shape_of_array<Arr, std::index_sequence<I...>> {
  using type = Shape<Arr[I]...>;
};

/// The shape type whose extents (static or dyn) are the constexpr array Arr.
template <auto Arr>
using shape_of_array_t = typename shape_of_array<Arr>::type;

template <class SA, class SB>
struct broadcast_static {
  static constexpr std::size_t rank = SA::rank > SB::rank ? SA::rank : SB::rank;
  static constexpr std::array<index_t, rank> raw = [] {
    std::array<index_t, rank> r{};
    for (std::size_t k = 0; k < rank; ++k)
      r[k] = broadcast_extent(aligned_extent<rank>(SA::static_extents, k),
                              aligned_extent<rank>(SB::static_extents, k));
    return r;
  }();
  static constexpr bool ok = [] {
    for (auto e : raw)
      if (e == bad_extent) return false;
    return true;
  }();
  // On a mismatch the shape type is never used (the node's static_assert fires first).
  static constexpr std::array<index_t, rank> extents = [] {
    auto r = raw;
    for (auto& e : r)
      if (e == bad_extent) e = dyn;
    return r;
  }();
  using type = shape_of_array_t<extents>;
};

/// Whether static shape SE can be written into static shape SD (SE broadcasts to SD).
template <class SE, class SD>
constexpr bool assignable_static() {
  if constexpr (SE::rank > SD::rank) {
    return false;
  } else {
    for (std::size_t k = 0; k < SD::rank; ++k) {
      const index_t e = aligned_extent<SD::rank>(SE::static_extents, k);
      const index_t d = SD::static_extents[k];
      if (e != dyn && d != dyn && e != 1 && e != d) return false;
    }
    return true;
  }
}

}  // namespace detail

/// The broadcast shape type of SA and SB (dyn where an extent is known only at run time).
template <class SA, class SB>
using broadcast_shape_t = typename detail::broadcast_static<SA, SB>::type;

/// The broadcast of two shapes at run time; throws shape_error naming `op` and both shapes.
template <class SA, class SB>
broadcast_shape_t<SA, SB> broadcast_shapes(const char* op, const SA& a, const SB& b) {
  using R = broadcast_shape_t<SA, SB>;
  constexpr std::size_t rank = R::rank;
  const auto ea = a.extents();
  const auto eb = b.extents();
  std::array<index_t, rank> r{};
  for (std::size_t k = 0; k < rank; ++k) {
    const index_t x = detail::aligned_extent<rank>(ea, k);
    const index_t y = detail::aligned_extent<rank>(eb, k);
    if (x != y && x != 1 && y != 1)
      detail::raise<shape_error>({"tessel: ", op, ": shapes ", a, " and ", b, " cannot broadcast"});
    r[k] = x == 1 ? y : x;
  }
  return R::from_array(r);
}

/// Checks that an expression of shape `e` can be written into a destination of shape `d`.
template <class SE, class SD>
void check_assignable(const char* op, const SE& e, const SD& d) {
  static_assert(SE::rank <= SD::rank,
                "tessel: eval: the expression has a higher rank than the destination");
  static_assert(detail::assignable_static<SE, SD>(),
                "tessel: eval: the expression's static shape does not fit the destination's "
                "static shape (numpy broadcasting: each extent must equal the destination's or "
                "be 1)");
  const auto ee = e.extents();
  for (std::size_t k = 0; k < SD::rank; ++k) {
    const index_t x = detail::aligned_extent<SD::rank>(ee, k);
    if (x != 1 && x != d.extent(k))
      detail::raise<shape_error>({"tessel: ", op, ": an expression of shape ", e,
                                  " cannot be written to a destination of shape ", d});
  }
}

}  // namespace tessel
