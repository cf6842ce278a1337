#pragma once
// Shapes whose extents are known at compile time or at run time (`dyn`), as in
// std::extents / CuTe: static extents cost no storage, only dynamic ones are stored.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "error.hpp"

namespace tessel {

using index_t = std::int64_t;

/// An extent known only at run time.
inline constexpr index_t dyn = -1;

namespace detail {
// The checks of every Shape constructor, out of line: each instantiation only calls them.
[[noreturn, gnu::cold, gnu::noinline]] inline void negative_extent(index_t v) {
  raise<shape_error>({"tessel::Shape: negative extent ", v});
}
[[noreturn, gnu::cold, gnu::noinline]] inline void static_extent_mismatch(std::size_t axis,
                                                                          index_t expected,
                                                                          index_t got) {
  raise<shape_error>({"tessel::Shape: axis ", axis, " is static ", expected, ", got ", got});
}
template <index_t... Es>
constexpr std::size_t count_dyn() {
  return ((Es == dyn ? 1u : 0u) + ... + 0u);
}
// Storage of the dynamic extents; an all-static shape is an empty type.
template <std::size_t N>
struct dyn_extents : std::array<index_t, N> {};
template <>
struct dyn_extents<0> {
  constexpr index_t operator[](std::size_t) const noexcept { return 0; }
};
}  // namespace detail

template <index_t... Es>
class Shape {
  static_assert(((Es == dyn || Es >= 0) && ...), "tessel::Shape: an extent must be >= 0 or dyn");

 public:
  static constexpr std::size_t rank = sizeof...(Es);
  static constexpr std::size_t rank_dynamic = detail::count_dyn<Es...>();
  static constexpr bool is_static = rank_dynamic == 0;
  static constexpr std::array<index_t, rank> static_extents{Es...};

  /// The extent of axis I if known at compile time, else dyn.
  template <std::size_t I>
  static constexpr index_t static_extent = static_extents[I];

  constexpr Shape() noexcept : dyn_{} {}

  /// Either every extent (static ones must match) or only the dynamic ones.
  template <class... Ints>
  requires(sizeof...(Ints) > 0 && (std::is_integral_v<Ints> && ...) &&
           (sizeof...(Ints) == rank ||
            sizeof...(Ints) == rank_dynamic)) constexpr explicit Shape(Ints... ns)
      : dyn_{} {
    const std::array<index_t, sizeof...(Ints)> v{static_cast<index_t>(ns)...};
    if constexpr (sizeof...(Ints) == rank) {
      assign_all(v);
    } else {
      for (std::size_t i = 0; i < rank_dynamic; ++i) {
        if (v[i] < 0) detail::negative_extent(v[i]);
        dyn_[i] = v[i];
      }
    }
  }

  /// From a run-time array of all extents; static extents must match.
  static constexpr Shape from_array(const std::array<index_t, rank>& all) {
    Shape s;
    s.assign_all(all);
    return s;
  }

  constexpr index_t extent(std::size_t i) const noexcept {
    if (static_extents[i] != dyn) return static_extents[i];
    return dyn_[dyn_slot(i)];
  }
  constexpr index_t operator[](std::size_t i) const noexcept { return extent(i); }

  constexpr std::array<index_t, rank> extents() const noexcept {
    std::array<index_t, rank> r{};
    for (std::size_t i = 0; i < rank; ++i) r[i] = extent(i);
    return r;
  }

  /// Number of elements.
  constexpr index_t size() const noexcept {
    index_t n = 1;
    for (std::size_t i = 0; i < rank; ++i) n *= extent(i);
    return n;
  }

  friend constexpr bool operator==(const Shape& a, const Shape& b) noexcept {
    return a.extents() == b.extents();
  }

 private:
  static constexpr std::size_t dyn_slot(std::size_t i) noexcept {
    std::size_t k = 0;
    for (std::size_t j = 0; j < i; ++j) k += static_extents[j] == dyn ? 1 : 0;
    return k;
  }
  template <std::size_t N>
  constexpr void assign_all(const std::array<index_t, N>& v) {
    for (std::size_t i = 0; i < rank; ++i) {
      if (v[i] < 0) detail::negative_extent(v[i]);
      if (static_extents[i] != dyn) {
        if (v[i] != static_extents[i]) detail::static_extent_mismatch(i, static_extents[i], v[i]);
      } else if constexpr (rank_dynamic > 0) {
        dyn_[dyn_slot(i)] = v[i];
      }
    }
  }

  [[no_unique_address]] detail::dyn_extents<rank_dynamic> dyn_;
};

namespace detail {
template <class Seq>
struct dyn_shape_impl;
template <std::size_t... I>
struct dyn_shape_impl<std::index_sequence<I...>> {
  using type = Shape<((void)I, dyn)...>;
};
template <class T>
struct is_shape : std::false_type {};
template <index_t... Es>
struct is_shape<Shape<Es...>> : std::true_type {};
}  // namespace detail

/// A shape of rank R whose extents are all known at run time.
template <std::size_t R>
using DynShape = typename detail::dyn_shape_impl<std::make_index_sequence<R>>::type;

template <class S>
concept ShapeType = detail::is_shape<S>::value;

/// "[2, 3, 4]"
template <std::size_t R>
std::string to_string(const std::array<index_t, R>& e) {
  return detail::concat({e});
}
template <index_t... Es>
std::string to_string(const Shape<Es...>& s) {
  return to_string(s.extents());
}

/// Multiply two sizes, throwing value_error instead of overflowing.
inline index_t checked_mul(index_t a, index_t b, const char* what = "size") {
  index_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    detail::raise<value_error>({"tessel: ", what, " overflows (", a, " x ", b, ")"});
  return r;
}

}  // namespace tessel
