#pragma once
// Reductions along one axis: sum, mean, max, argmax. The axis is static (`axis<1>`, negative
// counts from the end) or run-time (`dyn_axis(i)`, or a plain integer for sum/mean/argmax).
// The reduced axis is kept with extent 1 by default, so `exp(x - max(x, axis<1>))` broadcasts;
// pass `keepdims<false>` to drop it.
//
// Evaluation: a reduction inside a tree computes its reduced values into a buffer first (once,
// when the tree is bound), then acts as a leaf over that buffer; the rest of the tree is still
// one pass.

#include <climits>
#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "elementwise.hpp"

namespace tessel {

template <int I>
struct static_axis {
  static constexpr int value = I;
};
/// A reduction axis known at compile time.
template <int I>
inline constexpr static_axis<I> axis{};

struct dyn_axis_t {
  index_t value;
};
/// A reduction axis known at run time.
constexpr dyn_axis_t dyn_axis(index_t a) {
  return {a};
}

template <bool K>
struct keepdims_t {};
template <bool K>
inline constexpr keepdims_t<K> keepdims{};

// ---- reduction operations: state, step, result ------------------------------------------

struct sum_red {
  static constexpr const char* name = "sum";
  static constexpr bool needs_nonempty = false;
  using result_type = float;
  struct state {
    double v;  // the reference accumulates in double
  };
  static state init() { return {0.0}; }
  static void step(state& s, float v, index_t) { s.v += v; }
  static float result(const state& s, index_t) { return static_cast<float>(s.v); }
};
struct mean_red {
  static constexpr const char* name = "mean";
  static constexpr bool needs_nonempty = false;
  using result_type = float;
  using state = sum_red::state;
  static state init() { return {0.0}; }
  static void step(state& s, float v, index_t) { s.v += v; }
  static float result(const state& s, index_t n) {
    return static_cast<float>(n ? s.v / static_cast<double>(n) : std::nan(""));
  }
};
/// max propagates NaN (as numpy.max).
struct max_red {
  static constexpr const char* name = "max";
  static constexpr bool needs_nonempty = true;
  using result_type = float;
  struct state {
    float v;
  };
  static state init() { return {-std::numeric_limits<float>::infinity()}; }
  static void step(state& s, float v, index_t) {
    if (s.v == s.v && (v != v || v > s.v)) s.v = v;
  }
  static float result(const state& s, index_t) { return s.v; }
};
/// argmax: the first index of the maximum; a NaN counts as the maximum (as numpy.argmax).
/// The index travels through the f32 tree, exact up to 2^24.
struct argmax_red {
  static constexpr const char* name = "argmax";
  static constexpr bool needs_nonempty = true;
  using result_type = std::int32_t;
  struct state {
    float v;
    index_t i;
  };
  static state init() { return {-std::numeric_limits<float>::infinity(), -1}; }
  static void step(state& s, float v, index_t k) {
    if (s.i < 0 || (s.v == s.v && (v != v || v > s.v))) s = {v, k};
  }
  static float result(const state& s, index_t) { return static_cast<float>(s.i); }
};

/// A bound reduction: its values, computed at bind time, viewed as a leaf.
template <std::size_t R>
struct reduce_eval {
  std::shared_ptr<const float[]> buf;  // shared by the copies each thread makes
  leaf_eval<float, R> leaf;

  float at(const index_t* i) const { return leaf.at(i); }
  void seek(const index_t* o) { leaf.seek(o); }
  float get(index_t j) const { return leaf.get(j); }
  template <class V>
  V load(index_t j) const {
    return leaf.template load<V>(j);
  }
  template <class F>
  void for_each_leaf(F&& f) {
    leaf.for_each_leaf(f);
  }
};

inline constexpr int runtime_axis = INT_MIN;

namespace detail {
template <class S, int Axis, bool Keep>
struct reduced_shape {
  static constexpr std::size_t rank = Keep ? S::rank : S::rank - 1;
  static constexpr std::array<index_t, rank> extents = [] {
    std::array<index_t, rank> r{};
    for (std::size_t k = 0, j = 0; k < S::rank; ++k) {
      if (static_cast<int>(k) != Axis) {
        r[j++] = S::static_extents[k];
      } else if (Keep) {
        r[j++] = 1;
      }
    }
    return r;
  }();
  using type = shape_of_array_t<extents>;
};
template <class S, bool Keep>
struct reduced_shape<S, runtime_axis, Keep> {
  using type = DynShape<Keep ? S::rank : S::rank - 1>;
};
}  // namespace detail

template <class Red, class A, int Axis, bool Keep>
struct reduce_expr : expr_base {
  static constexpr std::size_t in_rank = A::rank;
  static_assert(in_rank >= 1, "tessel: cannot reduce a rank-0 expression along an axis");
  using shape_type = typename detail::reduced_shape<typename A::shape_type, Axis, Keep>::type;
  using result_type = typename Red::result_type;
  static constexpr std::size_t rank = shape_type::rank;
  static constexpr int spaces = A::spaces;
  static constexpr bool has_reduction = true;

  A a;
  std::size_t axis_;
  shape_type shape_;

  reduce_expr(A a_, index_t ax) : a(std::move(a_)) {
    const index_t r = static_cast<index_t>(in_rank);
    if (ax < -r || ax >= r)
      detail::raise<shape_error>(
          {"tessel: ", Red::name, ": axis ", ax, " out of range for shape ", a.shape()});
    axis_ = static_cast<std::size_t>(ax < 0 ? ax + r : ax);
    const auto ce = a.shape().extents();
    std::array<index_t, rank> e{};
    for (std::size_t k = 0, j = 0; k < in_rank; ++k) {
      if (k != axis_) {
        e[j++] = ce[k];
      } else if (Keep) {
        e[j++] = 1;
      }
    }
    shape_ = shape_type::from_array(e);
  }

  const shape_type& shape() const { return shape_; }
  std::size_t reduced_axis() const { return axis_; }

  template <std::size_t R, class Ctx>
  reduce_eval<R> bind(const std::array<index_t, R>& out, Ctx& ctx) const {
    const auto ce = a.shape().extents();
    auto cb = a.template bind<in_rank>(ce, ctx);
    const index_t n_out = shape_.size();
    if (Red::needs_nonempty && ce[axis_] == 0 && n_out > 0)
      detail::raise<shape_error>({"tessel: ", Red::name, ": reduction over the empty axis ", axis_,
                                  " of shape ", a.shape()});
    // Padded by 16 floats: vector loops may not read past n_out, but GCC cannot always prove it.
    std::shared_ptr<float[]> buf(n_out > 0 ? new float[static_cast<std::size_t>(n_out) + 16]
                                           : nullptr);
    if (n_out > 0) ctx.template reduce<Red>(cb, ce, axis_, buf.get());
    const auto se = shape_.extents();
    const auto st = detail::contiguous_strides(shape_, 1);
    return {buf, detail::bind_strided<R>(static_cast<const float*>(buf.get()), se, st, out)};
  }
};

template <class Red, int I, class A, bool K>
auto make_reduce(A&& a, keepdims_t<K>) {
  using E = expr_t<A&&>;
  constexpr int r = static_cast<int>(E::rank);
  static_assert(I >= -r && I < r, "tessel: reduction axis out of range for the expression's rank");
  constexpr int ax = I < 0 ? I + r : I;
  return reduce_expr<Red, E, ax, K>(as_expr(std::forward<A>(a)), ax);
}
template <class Red, class A, bool K>
auto make_reduce(A&& a, index_t ax, keepdims_t<K>) {
  using E = expr_t<A&&>;
  return reduce_expr<Red, E, runtime_axis, K>(as_expr(std::forward<A>(a)), ax);
}

#define TESSEL_REDUCE_FN(FN, RED)                             \
  template <UnaryOperand A, int I, bool K = true>             \
  auto FN(A&& a, static_axis<I>, keepdims_t<K> k = {}) {      \
    return make_reduce<RED, I>(std::forward<A>(a), k);        \
  }                                                           \
  template <UnaryOperand A, bool K = true>                    \
  auto FN(A&& a, dyn_axis_t ax, keepdims_t<K> k = {}) {       \
    return make_reduce<RED>(std::forward<A>(a), ax.value, k); \
  }
TESSEL_REDUCE_FN(sum, sum_red)
TESSEL_REDUCE_FN(mean, mean_red)
TESSEL_REDUCE_FN(max, max_red)
TESSEL_REDUCE_FN(argmax, argmax_red)
#undef TESSEL_REDUCE_FN

// A plain integer axis where it cannot be mistaken for a number.
#define TESSEL_REDUCE_INT_FN(FN, RED)                                         \
  template <UnaryOperand A, class I, bool K = true>                           \
  requires std::is_integral_v<I>                                              \
  auto FN(A&& a, I ax, keepdims_t<K> k = {}) {                                \
    return make_reduce<RED>(std::forward<A>(a), static_cast<index_t>(ax), k); \
  }
TESSEL_REDUCE_INT_FN(sum, sum_red)
TESSEL_REDUCE_INT_FN(mean, mean_red)
TESSEL_REDUCE_INT_FN(argmax, argmax_red)
#undef TESSEL_REDUCE_INT_FN

template <UnaryOperand A, class I>
requires std::is_integral_v<std::remove_cvref_t<I>>
void max(A&&, I) {
  static_assert(!sizeof(I*),
                "tessel::max(x, n) with an integer n is ambiguous: write max(x, axis<n>) or "
                "max(x, dyn_axis(n)) to reduce along axis n, or max(x, float(n)) for the "
                "elementwise maximum");
}

}  // namespace tessel
