#pragma once
// Elementwise nodes (unary, binary, ternary) with numpy broadcasting, the operations models use,
// and the operators and functions that build them. Every operation computes in f32.

#include <math.h>

#include <cmath>
#include <string>
#include <type_traits>

#include "broadcast.hpp"
#include "node.hpp"

namespace tessel {

// ---- operations: scalar f32 semantics (the reference; also the CUDA code) --------------------
// Each has a `name` for error messages. NaN propagates as in numpy / PyTorch.

#define TESSEL_UNARY_OP(NAME, EXPR)                                 \
  struct NAME##_op {                                                \
    static constexpr const char* name = #NAME;                      \
    TESSEL_HOST_DEVICE static float apply(float x) { return EXPR; } \
  };
TESSEL_UNARY_OP(neg, -x)
TESSEL_UNARY_OP(exp, ::expf(x))
TESSEL_UNARY_OP(log, ::logf(x))
TESSEL_UNARY_OP(sqrt, ::sqrtf(x))
TESSEL_UNARY_OP(rsqrt, 1.f / ::sqrtf(x))
TESSEL_UNARY_OP(abs, ::fabsf(x))
TESSEL_UNARY_OP(tanh, ::tanhf(x))
TESSEL_UNARY_OP(erf, ::erff(x))
TESSEL_UNARY_OP(sigmoid, 1.f / (1.f + ::expf(-x)))
TESSEL_UNARY_OP(silu, x / (1.f + ::expf(-x)))
// 0.5 x (1 + erf(x/√2)) written with erfc: no cancellation for x << 0.
TESSEL_UNARY_OP(gelu, 0.5f * x * ::erfcf(-0.70710678118654752f * x))
// 0.5 x (1 + tanh(u)) = x · sigmoid(2u): no cancellation for x << 0.
TESSEL_UNARY_OP(gelu_tanh, x / (1.f + ::expf(-1.5957691216057308f * (x + 0.044715f * x * x * x))))
// log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|).
TESSEL_UNARY_OP(softplus, (x > 0.f ? x : 0.f) + ::log1pf(::expf(-::fabsf(x))))
TESSEL_UNARY_OP(relu, x < 0.f ? 0.f : x)
#undef TESSEL_UNARY_OP

#define TESSEL_BINARY_OP(NAME, EXPR)                                         \
  struct NAME##_op {                                                         \
    static constexpr const char* name = #NAME;                               \
    TESSEL_HOST_DEVICE static float apply(float a, float b) { return EXPR; } \
  };
TESSEL_BINARY_OP(add, a + b)
TESSEL_BINARY_OP(sub, a - b)
TESSEL_BINARY_OP(mul, a* b)
TESSEL_BINARY_OP(div, a / b)
TESSEL_BINARY_OP(pow, ::powf(a, b))
TESSEL_BINARY_OP(minimum, (a != a || b != b) ? a + b : (b < a ? b : a))
TESSEL_BINARY_OP(maximum, (a != a || b != b) ? a + b : (a < b ? b : a))
TESSEL_BINARY_OP(less, a < b ? 1.f : 0.f)
TESSEL_BINARY_OP(less_equal, a <= b ? 1.f : 0.f)
TESSEL_BINARY_OP(greater, a > b ? 1.f : 0.f)
TESSEL_BINARY_OP(greater_equal, a >= b ? 1.f : 0.f)
TESSEL_BINARY_OP(equal, a == b ? 1.f : 0.f)
TESSEL_BINARY_OP(not_equal, a != b ? 1.f : 0.f)
#undef TESSEL_BINARY_OP

/// where(c, a, b): a where c is nonzero (NaN counts as nonzero), else b.
struct where_op {
  static constexpr const char* name = "where";
  TESSEL_HOST_DEVICE static float apply(float c, float a, float b) { return c != 0.f ? a : b; }
};

// ---- bound evaluators ---------------------------------------------------------------------

template <class Op, class A>
struct unary_eval {
  A a;
  TESSEL_HOST_DEVICE float at(const index_t* i) const { return Op::apply(a.at(i)); }
  void seek(const index_t* o) { a.seek(o); }
  float get(index_t j) const { return Op::apply(a.get(j)); }
  template <class V>
  V load(index_t j) const {
    return simd_op<Op>::apply(a.template load<V>(j));
  }
  template <class F>
  void for_each_leaf(F&& f) {
    a.for_each_leaf(f);
  }
};

template <class Op, class A, class B>
struct binary_eval {
  A a;
  B b;
  TESSEL_HOST_DEVICE float at(const index_t* i) const { return Op::apply(a.at(i), b.at(i)); }
  void seek(const index_t* o) {
    a.seek(o);
    b.seek(o);
  }
  float get(index_t j) const { return Op::apply(a.get(j), b.get(j)); }
  template <class V>
  V load(index_t j) const {
    return simd_op<Op>::apply(a.template load<V>(j), b.template load<V>(j));
  }
  template <class F>
  void for_each_leaf(F&& f) {
    a.for_each_leaf(f);
    b.for_each_leaf(f);
  }
};

template <class Op, class A, class B, class C>
struct ternary_eval {
  A a;
  B b;
  C c;
  TESSEL_HOST_DEVICE float at(const index_t* i) const {
    return Op::apply(a.at(i), b.at(i), c.at(i));
  }
  void seek(const index_t* o) {
    a.seek(o);
    b.seek(o);
    c.seek(o);
  }
  float get(index_t j) const { return Op::apply(a.get(j), b.get(j), c.get(j)); }
  template <class V>
  V load(index_t j) const {
    return simd_op<Op>::apply(a.template load<V>(j), b.template load<V>(j), c.template load<V>(j));
  }
  template <class F>
  void for_each_leaf(F&& f) {
    a.for_each_leaf(f);
    b.for_each_leaf(f);
    c.for_each_leaf(f);
  }
};

// ---- nodes ------------------------------------------------------------------------------

template <class Op, class A>
struct unary_expr : expr_base {
  using shape_type = typename A::shape_type;
  using result_type = float;
  static constexpr std::size_t rank = A::rank;
  static constexpr int spaces = A::spaces;
  static constexpr bool has_reduction = A::has_reduction;

  A a;

  decltype(auto) shape() const { return a.shape(); }
  template <std::size_t R, class Ctx>
  auto bind(const std::array<index_t, R>& out, Ctx& ctx) const {
    using BA = decltype(a.template bind<R>(out, ctx));
    return unary_eval<Op, BA>{a.template bind<R>(out, ctx)};
  }
};

template <class Op, class A, class B>
struct binary_expr : expr_base {
  static_assert(detail::broadcast_static<typename A::shape_type, typename B::shape_type>::ok,
                "tessel: elementwise operation on static shapes that cannot broadcast (numpy "
                "rules: shapes align from the right and extents must be equal or 1; the "
                "operation and both Shape<...> types are in the template arguments above)");
  using shape_type = broadcast_shape_t<typename A::shape_type, typename B::shape_type>;
  using result_type = float;
  static constexpr std::size_t rank = shape_type::rank;
  static constexpr int spaces = A::spaces | B::spaces;
  static constexpr bool has_reduction = A::has_reduction || B::has_reduction;

  A a;
  B b;
  shape_type shape_;

  binary_expr(A a_, B b_)
      : a(std::move(a_)),
        b(std::move(b_)),
        shape_(broadcast_shapes(Op::name, a.shape(), b.shape())) {}

  const shape_type& shape() const { return shape_; }
  template <std::size_t R, class Ctx>
  auto bind(const std::array<index_t, R>& out, Ctx& ctx) const {
    using BA = decltype(a.template bind<R>(out, ctx));
    using BB = decltype(b.template bind<R>(out, ctx));
    return binary_eval<Op, BA, BB>{a.template bind<R>(out, ctx), b.template bind<R>(out, ctx)};
  }
};

template <class Op, class A, class B, class C>
struct ternary_expr : expr_base {
  using ab_shape = broadcast_shape_t<typename A::shape_type, typename B::shape_type>;
  static_assert(detail::broadcast_static<typename A::shape_type, typename B::shape_type>::ok &&
                    detail::broadcast_static<ab_shape, typename C::shape_type>::ok,
                "tessel: elementwise operation on static shapes that cannot broadcast (numpy "
                "rules: shapes align from the right and extents must be equal or 1; the "
                "operation and the Shape<...> types are in the template arguments above)");
  using shape_type = broadcast_shape_t<ab_shape, typename C::shape_type>;
  using result_type = float;
  static constexpr std::size_t rank = shape_type::rank;
  static constexpr int spaces = A::spaces | B::spaces | C::spaces;
  static constexpr bool has_reduction = A::has_reduction || B::has_reduction || C::has_reduction;

  A a;
  B b;
  C c;
  shape_type shape_;

  ternary_expr(A a_, B b_, C c_)
      : a(std::move(a_)),
        b(std::move(b_)),
        c(std::move(c_)),
        shape_(broadcast_shapes(Op::name, broadcast_shapes(Op::name, a.shape(), b.shape()),
                                c.shape())) {}

  const shape_type& shape() const { return shape_; }
  template <std::size_t R, class Ctx>
  auto bind(const std::array<index_t, R>& out, Ctx& ctx) const {
    using BA = decltype(a.template bind<R>(out, ctx));
    using BB = decltype(b.template bind<R>(out, ctx));
    using BC = decltype(c.template bind<R>(out, ctx));
    return ternary_eval<Op, BA, BB, BC>{a.template bind<R>(out, ctx), b.template bind<R>(out, ctx),
                                        c.template bind<R>(out, ctx)};
  }
};

// ---- builders -----------------------------------------------------------------------------

template <class X>
concept UnaryOperand = Expr<X> || TensorLike<X>;

template <class A, class B>
concept BinaryOperands = ExprOperand<A> && ExprOperand<B> && !(Arithmetic<A> && Arithmetic<B>);

template <class Op, class A>
auto make_unary(A&& a) {
  return unary_expr<Op, expr_t<A&&>>{{}, as_expr(std::forward<A>(a))};
}
template <class Op, class A, class B>
auto make_binary(A&& a, B&& b) {
  return binary_expr<Op, expr_t<A&&>, expr_t<B&&>>(as_expr(std::forward<A>(a)),
                                                   as_expr(std::forward<B>(b)));
}

#define TESSEL_UNARY_FN(FN, OP)                \
  template <UnaryOperand A>                    \
  auto FN(A&& a) {                             \
    return make_unary<OP>(std::forward<A>(a)); \
  }
TESSEL_UNARY_FN(operator-, neg_op)
TESSEL_UNARY_FN(exp, exp_op)
TESSEL_UNARY_FN(log, log_op)
TESSEL_UNARY_FN(sqrt, sqrt_op)
TESSEL_UNARY_FN(rsqrt, rsqrt_op)
TESSEL_UNARY_FN(abs, abs_op)
TESSEL_UNARY_FN(tanh, tanh_op)
TESSEL_UNARY_FN(erf, erf_op)
TESSEL_UNARY_FN(sigmoid, sigmoid_op)
TESSEL_UNARY_FN(silu, silu_op)
TESSEL_UNARY_FN(gelu, gelu_op)
TESSEL_UNARY_FN(gelu_tanh, gelu_tanh_op)
TESSEL_UNARY_FN(softplus, softplus_op)
TESSEL_UNARY_FN(relu, relu_op)
#undef TESSEL_UNARY_FN

#define TESSEL_BINARY_FN(FN, OP)                                    \
  template <class A, class B>                                       \
  requires BinaryOperands<A, B>                                     \
  auto FN(A&& a, B&& b) {                                           \
    return make_binary<OP>(std::forward<A>(a), std::forward<B>(b)); \
  }
TESSEL_BINARY_FN(operator+, add_op)
TESSEL_BINARY_FN(operator-, sub_op)
TESSEL_BINARY_FN(operator*, mul_op)
TESSEL_BINARY_FN(operator/, div_op)
TESSEL_BINARY_FN(operator<, less_op)
TESSEL_BINARY_FN(operator<=, less_equal_op)
TESSEL_BINARY_FN(operator>, greater_op)
TESSEL_BINARY_FN(operator>=, greater_equal_op)
TESSEL_BINARY_FN(equal, equal_op)
TESSEL_BINARY_FN(not_equal, not_equal_op)
TESSEL_BINARY_FN(pow, pow_op)
TESSEL_BINARY_FN(minimum, minimum_op)
TESSEL_BINARY_FN(maximum, maximum_op)
#undef TESSEL_BINARY_FN

/// Elementwise min / max (numpy minimum / maximum). An integer second argument is ambiguous
/// (a reduction axis or a number?) and rejected: see max(x, axis<I>) in reduce.hpp.
template <class A, class B>
requires BinaryOperands<A, B> &&
    (!std::is_integral_v<std::remove_cvref_t<B>>)auto min(A&& a, B&& b) {
  return make_binary<minimum_op>(std::forward<A>(a), std::forward<B>(b));
}
template <class A, class B>
requires BinaryOperands<A, B> &&
    (!std::is_integral_v<std::remove_cvref_t<B>>)auto max(A&& a, B&& b) {
  return make_binary<maximum_op>(std::forward<A>(a), std::forward<B>(b));
}

/// where(c, a, b): a where c != 0, else b; all three broadcast together.
template <class C, class A, class B>
requires ExprOperand<C> && ExprOperand<A> && ExprOperand<B>
auto where(C&& c, A&& a, B&& b) {
  using EC = expr_t<C&&>;
  using EA = expr_t<A&&>;
  using EB = expr_t<B&&>;
  return ternary_expr<where_op, EC, EA, EB>(
      as_expr(std::forward<C>(c)), as_expr(std::forward<A>(a)), as_expr(std::forward<B>(b)));
}

}  // namespace tessel
