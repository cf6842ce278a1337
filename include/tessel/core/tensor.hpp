#pragma once
// Tensor (owning, contiguous, 64-byte aligned) and TensorView (strided, non-owning).
//
// The element type may be a number type (f32, f16, ...) or a block format (q4_0, ...): a
// block format is a struct with `static constexpr index_t block_elems`, stored whole along the
// last axis. Extents always count logical elements; strides count stored units (elements, or
// blocks along the last axis of a block format).

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <ostream>
#include <span>
#include <type_traits>
#include <utility>

#include "error.hpp"
#include "memory.hpp"
#include "numeric.hpp"
#include "shape.hpp"

namespace tessel {

/// How many logical elements one stored unit of T holds (1 for numbers, 32 for q4_0, ...).
template <class T>
inline constexpr index_t block_elems_v = 1;
template <class T>
requires requires {
  T::block_elems;
}
inline constexpr index_t block_elems_v<T> = T::block_elems;

template <class T>
inline constexpr bool is_block_format_v = (block_elems_v<T> > 1);

namespace detail {
template <class S>
constexpr std::array<index_t, S::rank> contiguous_strides(const S& shape, index_t block) {
  std::array<index_t, S::rank> st{};
  index_t s = 1;
  for (std::size_t i = S::rank; i-- > 0;) {
    st[i] = s;
    const index_t e = i + 1 == S::rank ? shape.extent(i) / block : shape.extent(i);
    s *= e;
  }
  return st;
}
/// Whether shapes S and S2 (of one rank) can describe the same extents: no axis static in both
/// with different values.
template <class S, class S2>
constexpr bool extents_may_agree() {
  for (std::size_t i = 0; i < S::rank; ++i)
    if (S::static_extents[i] != dyn && S2::static_extents[i] != dyn &&
        S::static_extents[i] != S2::static_extents[i])
      return false;
  return true;
}
template <class T, class S>
void check_block_divisible(const S& shape) {
  if constexpr (S::rank > 0 && is_block_format_v<T>) {
    constexpr index_t last = S::template static_extent<S::rank - 1>;
    static_assert(last == dyn || last % block_elems_v<T> == 0,
                  "tessel: the last extent of a block-format tensor must be a multiple of the "
                  "format's block size");
    if (shape.extent(S::rank - 1) % block_elems_v<T> != 0)
      detail::raise<shape_error>({"tessel: last extent ", shape.extent(S::rank - 1),
                                  " is not a multiple of the block size ", block_elems_v<T>});
  }
}
}  // namespace detail

template <class T, ShapeType S, MemorySpace Space = host_space>
class TensorView {
 public:
  using value_type = std::remove_const_t<T>;
  using element_type = T;
  using shape_type = S;
  using space = Space;
  static constexpr std::size_t rank = S::rank;
  static constexpr index_t block = block_elems_v<value_type>;

  constexpr TensorView() = default;
  /// A contiguous row-major view of `data`.
  constexpr TensorView(T* data, const S& shape)
      : data_(data), shape_(shape), strides_(detail::contiguous_strides(shape, block)) {
    detail::check_block_divisible<value_type>(shape);
  }
  constexpr TensorView(T* data, const S& shape, const std::array<index_t, rank>& strides)
      : data_(data), shape_(shape), strides_(strides) {}

  /// A view of const elements converts implicitly from a mutable one.
  template <class U>
  requires(std::is_const_v<T>&& std::is_same_v<const U, T>) constexpr TensorView(
      const TensorView<U, S, Space>& o)
      : data_(o.data()), shape_(o.shape()), strides_(o.strides()) {}
  /// A view converts to a view of other static extents where they can agree: a static extent
  /// becomes dyn freely, a dyn one becomes static with a run-time check (shape_error); two
  /// different static extents do not convert (a compile error at the call).
  template <class U, class S2>
  requires(!std::is_same_v<S2, S> && S2::rank == S::rank &&
           (std::is_same_v<U, T> || std::is_same_v<const U, T>)&&detail::extents_may_agree<
               S, S2>()) constexpr TensorView(const TensorView<U, S2, Space>& o)
      : data_(o.data()), shape_(S::from_array(o.shape().extents())), strides_(o.strides()) {}

  constexpr T* data() const noexcept { return data_; }
  constexpr const S& shape() const noexcept { return shape_; }
  constexpr index_t extent(std::size_t i) const noexcept { return shape_.extent(i); }
  constexpr index_t stride(std::size_t i) const noexcept { return strides_[i]; }
  constexpr const std::array<index_t, rank>& strides() const noexcept { return strides_; }
  constexpr index_t size() const noexcept { return shape_.size(); }
  constexpr bool empty() const noexcept { return size() == 0; }

  constexpr bool is_contiguous() const noexcept {
    return strides_ == detail::contiguous_strides(shape_, block);
  }

  /// Element access (numbers only; host memory only).
  template <class... I>
  requires(sizeof...(I) == rank && (std::is_integral_v<I> && ...) && block == 1 &&
           Space::host_accessible) constexpr T&
  operator()(I... idx) const noexcept {
    const std::array<index_t, rank> ix{static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t k = 0; k < rank; ++k) off += ix[k] * strides_[k];
    return data_[off];
  }
  constexpr T& at(const std::array<index_t, rank>& ix) const noexcept
      requires(block == 1 && Space::host_accessible) {
    index_t off = 0;
    for (std::size_t k = 0; k < rank; ++k) off += ix[k] * strides_[k];
    return data_[off];
  }
  /// Bounds-checked access; throws shape_error.
  T& checked(const std::array<index_t, rank>& ix) const
      requires(block == 1 && Space::host_accessible) {
    for (std::size_t k = 0; k < rank; ++k)
      if (ix[k] < 0 || ix[k] >= extent(k))
        detail::raise<shape_error>({"tessel: index ", ix, " out of bounds for shape ", shape_});
    return at(ix);
  }

  /// Elements [begin, end) of `axis` (a view with run-time extents).
  TensorView<T, DynShape<rank>, Space> slice(std::size_t axis, index_t begin, index_t end) const {
    check_axis(axis, "slice");
    if (begin < 0 || end < begin || end > extent(axis))
      detail::raise<shape_error>({"tessel: slice [", begin, ", ", end, ") of axis ", axis,
                                  " out of bounds for shape ", shape_});
    index_t b = begin;
    if (axis + 1 == rank && block > 1) {
      if (begin % block || end % block)
        throw shape_error("tessel: slice of a block-format tensor must cut at block boundaries");
      b = begin / block;
    }
    auto e = shape_.extents();
    e[axis] = end - begin;
    return {data_ + b * strides_[axis], DynShape<rank>::from_array(e), strides_};
  }

  /// The sub-tensor at `index` along `axis` (rank one lower).
  template <std::size_t R = rank>
  requires(R >= 1) TensorView<T, DynShape<R - 1>, Space> select(std::size_t axis, index_t index)
  const {
    check_axis(axis, "select");
    if (axis + 1 == rank && block > 1)
      throw shape_error("tessel: cannot select single elements of a block format");
    if (index < 0 || index >= extent(axis))
      detail::raise<shape_error>(
          {"tessel: select index ", index, " on axis ", axis, " out of bounds for shape ", shape_});
    std::array<index_t, R - 1> e{}, st{};
    for (std::size_t k = 0, j = 0; k < rank; ++k)
      if (k != axis) e[j] = extent(k), st[j++] = strides_[k];
    return {data_ + index * strides_[axis], DynShape<R - 1>::from_array(e), st};
  }
  /// Row i of the first axis.
  auto operator[](index_t i) const requires(rank >= 2) { return select(0, i); }

  /// Axes reordered: result axis k is this view's axis perm[k].
  TensorView<T, DynShape<rank>, Space> permute(const std::array<std::size_t, rank>& perm) const {
    static_assert(block == 1, "tessel: block formats cannot be permuted");
    std::array<bool, rank> seen{};
    std::array<index_t, rank> e{}, st{};
    for (std::size_t k = 0; k < rank; ++k) {
      if (perm[k] >= rank || seen[perm[k]])
        detail::raise<shape_error>(
            {"tessel: permute: not a permutation of the ", rank, " axes of shape ", shape_});
      seen[perm[k]] = true;
      e[k] = extent(perm[k]);
      st[k] = strides_[perm[k]];
    }
    return {data_, DynShape<rank>::from_array(e), st};
  }
  /// The last two axes swapped.
  auto transpose() const requires(rank >= 2) {
    std::array<std::size_t, rank> p{};
    for (std::size_t k = 0; k < rank; ++k) p[k] = k;
    std::swap(p[rank - 1], p[rank - 2]);
    return permute(p);
  }

  /// The same elements with another shape; the view must be contiguous.
  template <std::size_t N>
  TensorView<T, DynShape<N>, Space> reshape(const std::array<index_t, N>& e) const {
    index_t n = 1;
    for (auto x : e) n = checked_mul(n, x, "reshape size");
    if (n != size())
      detail::raise<shape_error>({"tessel: reshape: cannot view shape ", shape_, " as ", e});
    if (!is_contiguous())
      detail::raise<shape_error>({"tessel: reshape of a non-contiguous view of shape ", shape_});
    return {data_, DynShape<N>::from_array(e)};
  }
  template <class... I>
  requires(sizeof...(I) > 0 && (std::is_integral_v<I> && ...)) auto reshape(I... e) const {
    return reshape(std::array<index_t, sizeof...(I)>{static_cast<index_t>(e)...});
  }
  /// Compile-time reshape to a static shape (sizes checked by the compiler where both are static).
  template <ShapeType S2>
  TensorView<T, S2, Space> reshape_as(const S2& s2 = S2{}) const {
    if constexpr (S::is_static && S2::is_static)
      static_assert(S{}.size() == S2{}.size(), "tessel: reshape_as: sizes differ");
    if (s2.size() != size() || !is_contiguous())
      detail::raise<shape_error>({"tessel: reshape: cannot view shape ", shape_, " as ", s2});
    return {data_, s2};
  }

  /// numpy broadcasting: this view repeated (stride 0) to `target`.
  template <std::size_t N>
  TensorView<T, DynShape<N>, Space> broadcast_to(const std::array<index_t, N>& target) const {
    static_assert(N >= rank, "tessel: broadcast_to cannot lower the rank");
    static_assert(block == 1, "tessel: block formats cannot be broadcast");
    std::array<index_t, N> st{};
    for (std::size_t k = 0; k < N; ++k) {
      if (k < N - rank) continue;  // new leading axes: stride 0
      const std::size_t a = k - (N - rank);
      if (extent(a) == target[k]) {
        st[k] = strides_[a];
      } else if (extent(a) == 1) {
        st[k] = 0;
      } else {
        detail::raise<shape_error>(
            {"tessel: broadcast_to: shape ", shape_, " cannot broadcast to ", target});
      }
    }
    return {data_, DynShape<N>::from_array(target), st};
  }

  /// The same view with run-time extents (for code that takes DynShape views).
  TensorView<T, DynShape<rank>, Space> as_dynamic() const {
    return {data_, DynShape<rank>::from_array(shape_.extents()), strides_};
  }
  TensorView<const value_type, S, Space> as_const() const { return {data_, shape_, strides_}; }

 private:
  void check_axis(std::size_t axis, const char* op) const {
    if (axis >= rank)
      detail::raise<shape_error>(
          {"tessel: ", op, ": axis ", axis, " out of range for shape ", shape_});
  }

  T* data_ = nullptr;
  [[no_unique_address]] S shape_{};
  std::array<index_t, rank> strides_{};
};

/// An owning, contiguous, 64-byte aligned tensor. Move-only: copy with clone().
template <class T, ShapeType S, MemorySpace Space = host_space>
class Tensor {
  struct deleter {
    void operator()(T* p) const noexcept { Space::deallocate(p); }
  };

 public:
  using value_type = T;
  using shape_type = S;
  using space = Space;
  static constexpr std::size_t rank = S::rank;
  static constexpr index_t block = block_elems_v<T>;
  static_assert(std::is_trivially_copyable_v<T>, "tessel::Tensor holds trivially copyable units");

  /// A static shape needs no arguments; elements start at zero (all-zero bits).
  Tensor() requires(S::is_static) : Tensor(S{}) {}
  explicit Tensor(const S& shape) : shape_(shape) {
    detail::check_block_divisible<T>(shape);
    index_t units = 1;
    for (std::size_t i = 0; i < rank; ++i)
      units = checked_mul(units, i + 1 == rank ? shape.extent(i) / block : shape.extent(i),
                          "tensor size");
    const index_t bytes = checked_mul(units, static_cast<index_t>(sizeof(T)), "tensor bytes");
    units_ = units;
    data_.reset(static_cast<T*>(Space::allocate(static_cast<std::size_t>(bytes))));
    if constexpr (Space::host_accessible)
      if (bytes) std::memset(static_cast<void*>(data_.get()), 0, static_cast<std::size_t>(bytes));
  }
  template <class... I>
  requires(sizeof...(I) > 0 && (std::is_integral_v<I> && ...)) explicit Tensor(I... e)
      : Tensor(S(e...)) {}

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  Tensor clone() const requires(Space::host_accessible) {
    Tensor t(shape_);
    if (units_) std::memcpy(static_cast<void*>(t.data()), data(), bytes());
    return t;
  }

  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  const S& shape() const noexcept { return shape_; }
  index_t extent(std::size_t i) const noexcept { return shape_.extent(i); }
  index_t size() const noexcept { return shape_.size(); }
  /// Stored units (elements, or blocks for block formats) and bytes.
  index_t units() const noexcept { return units_; }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(units_) * sizeof(T); }
  std::span<T> span() noexcept { return {data(), static_cast<std::size_t>(units_)}; }
  std::span<const T> span() const noexcept { return {data(), static_cast<std::size_t>(units_)}; }

  TensorView<T, S, Space> view() noexcept { return {data(), shape_}; }
  TensorView<const T, S, Space> view() const noexcept { return {data(), shape_}; }
  operator TensorView<T, S, Space>() noexcept { return view(); }
  operator TensorView<const T, S, Space>() const noexcept { return view(); }

  template <class... I>
  requires(sizeof...(I) == rank && (std::is_integral_v<I> && ...) && block == 1 &&
           Space::host_accessible) T&
  operator()(I... idx) noexcept {
    return view()(idx...);
  }
  template <class... I>
  requires(sizeof...(I) == rank && (std::is_integral_v<I> && ...) && block == 1 &&
           Space::host_accessible) const T&
  operator()(I... idx) const noexcept {
    return view()(idx...);
  }

  // The view operations, on the whole tensor.
  auto slice(std::size_t axis, index_t b, index_t e) { return view().slice(axis, b, e); }
  auto slice(std::size_t axis, index_t b, index_t e) const { return view().slice(axis, b, e); }
  auto select(std::size_t axis, index_t i) { return view().select(axis, i); }
  auto select(std::size_t axis, index_t i) const { return view().select(axis, i); }
  auto operator[](index_t i) requires(rank >= 2) { return view()[i]; }
  auto operator[](index_t i) const requires(rank >= 2) { return view()[i]; }
  auto permute(const std::array<std::size_t, rank>& p) { return view().permute(p); }
  auto permute(const std::array<std::size_t, rank>& p) const { return view().permute(p); }
  auto transpose() { return view().transpose(); }
  auto transpose() const { return view().transpose(); }
  template <class... I>
  auto reshape(I... e) {
    return view().reshape(e...);
  }
  template <class... I>
  auto reshape(I... e) const {
    return view().reshape(e...);
  }
  template <std::size_t N>
  auto broadcast_to(const std::array<index_t, N>& t) const {
    return view().broadcast_to(t);
  }

  /// Fill every element with `v` (numbers only).
  void fill(float v) requires(block == 1 && Space::host_accessible) {
    const T x = from_f32<T>(v);
    std::fill(data(), data() + units_, x);
  }

 private:
  [[no_unique_address]] S shape_{};
  index_t units_ = 0;
  std::unique_ptr<T, deleter> data_;
};

template <class T>
struct is_tensor : std::false_type {};
template <class T, class S, class Sp>
struct is_tensor<Tensor<T, S, Sp>> : std::true_type {};
template <class T>
struct is_tensor_view : std::false_type {};
template <class T, class S, class Sp>
struct is_tensor_view<TensorView<T, S, Sp>> : std::true_type {};

/// A contiguous view of existing memory, with run-time extents.
template <class T, class... I>
requires((std::is_integral_v<I> && ...)) TensorView<T, DynShape<sizeof...(I)>> make_view(T* data,
                                                                                         I... e) {
  return {data, DynShape<sizeof...(I)>(e...)};
}

// ---- printing -----------------------------------------------------------------------

namespace detail {
template <class V>
void print_rec(std::ostream& os, const V& v, std::array<index_t, V::rank>& ix, std::size_t axis,
               int indent) {
  constexpr index_t edge = 3;  // numpy-style summarization of long axes
  const index_t n = v.extent(axis);
  os << '[';
  for (index_t i = 0; i < n; ++i) {
    if (n > 2 * edge + 1 && i == edge) {
      os << "..., ";
      i = n - edge - 1;
      continue;
    }
    ix[axis] = i;
    if (axis + 1 == V::rank) {
      os << to_f32(v.at(ix));
    } else {
      print_rec(os, v, ix, axis + 1, indent + 1);
    }
    if (i + 1 < n) {
      os << ',';
      if (axis + 1 == V::rank) {
        os << ' ';
      } else {
        os << '\n' << std::string(static_cast<std::size_t>(indent + 1), ' ');
      }
    }
  }
  os << ']';
}
}  // namespace detail

template <class T, class S>
requires(block_elems_v<std::remove_const_t<T>> == 1) std::ostream& operator<<(
    std::ostream& os, const TensorView<T, S, host_space>& v) {
  os << "tensor<" << element_traits<std::remove_const_t<T>>::name << ", " << to_string(v.shape())
     << ">";
  if constexpr (S::rank == 0) {
    os << ' ' << to_f32(*v.data());
  } else {
    os << '\n';
    std::array<index_t, S::rank> ix{};
    if (v.size() == 0) {
      os << "[]";
    } else {
      detail::print_rec(os, v, ix, 0, 0);
    }
  }
  return os;
}
template <class T, class S>
requires(block_elems_v<T> == 1) std::ostream& operator<<(std::ostream& os,
                                                         const Tensor<T, S, host_space>& t) {
  return os << t.view();
}

}  // namespace tessel
