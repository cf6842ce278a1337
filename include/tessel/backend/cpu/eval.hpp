#pragma once
// CPU evaluation of expression trees (see expr/expr.hpp for the API):
//   cpu_scalar      the reference (expr/scalar_eval.hpp): one element at a time, one thread
//   cpu_simd<Arch>  xsimd batches along the innermost axis (contiguous leaves are vector loads,
//                   leaves broadcast along it are splats, strided leaves are gathered), axes
//                   merged where every operand is contiguous across them, tails done
//                   element by element, rows / chunks of rows spread over the thread pool.

#include <algorithm>
#include <array>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/expr/expr.hpp"

namespace tessel {

// ---- vector versions of the operations ----------------------------------------------------

/// Any operation without a vector version runs its scalar version lane by lane.
template <class Op>
struct simd_op {
  template <class V, class... Vs>
  static V apply(const V& a, const Vs&... rest) {
    constexpr std::size_t W = V::size;
    alignas(64) float x[1 + sizeof...(Vs)][W];
    a.store_aligned(x[0]);
    int k = 1;
    ((rest.store_aligned(x[k++])), ...);
    alignas(64) float r[W];
    for (std::size_t i = 0; i < W; ++i) {
      if constexpr (sizeof...(Vs) == 0) r[i] = Op::apply(x[0][i]);
      if constexpr (sizeof...(Vs) == 1) r[i] = Op::apply(x[0][i], x[1][i]);
      if constexpr (sizeof...(Vs) == 2) r[i] = Op::apply(x[0][i], x[1][i], x[2][i]);
    }
    return V::load_aligned(r);
  }
};

namespace detail {
/// xsimd's float exp overflows from 88.3763 on, below the true limit 88.7228: lanes above 88
/// take exp(x/2)^2 instead.
template <class V>
inline V simd_exp(const V& x) {
  V r = xsimd::exp(x);
  const auto big = x > V(88.f);
  if (xsimd::any(big)) {
    const V h = xsimd::exp(V(0.5f) * x);
    r = xsimd::select(big, h * h, r);
  }
  return r;
}
}  // namespace detail

#define TESSEL_SIMD_UNARY(OP, EXPR) \
  template <>                       \
  struct simd_op<OP> {              \
    template <class V>              \
    static V apply(const V& x) {    \
      return EXPR;                  \
    }                               \
  };
TESSEL_SIMD_UNARY(neg_op, -x)
TESSEL_SIMD_UNARY(exp_op, detail::simd_exp(x))
TESSEL_SIMD_UNARY(log_op, xsimd::log(x))
TESSEL_SIMD_UNARY(sqrt_op, xsimd::sqrt(x))
TESSEL_SIMD_UNARY(rsqrt_op, V(1.f) / xsimd::sqrt(x))
TESSEL_SIMD_UNARY(abs_op, xsimd::abs(x))
TESSEL_SIMD_UNARY(tanh_op, xsimd::tanh(x))
TESSEL_SIMD_UNARY(erf_op, xsimd::erf(x))
TESSEL_SIMD_UNARY(sigmoid_op, V(1.f) / (V(1.f) + xsimd::exp(-x)))
TESSEL_SIMD_UNARY(silu_op, x / (V(1.f) + xsimd::exp(-x)))
TESSEL_SIMD_UNARY(gelu_op, V(0.5f) * x * xsimd::erfc(V(-0.70710678118654752f) * x))
TESSEL_SIMD_UNARY(gelu_tanh_op, x / (V(1.f) + xsimd::exp(V(-1.5957691216057308f) *
                                                         (x + V(0.044715f) * x * x * x))))
TESSEL_SIMD_UNARY(softplus_op, xsimd::max(x, V(0.f)) + xsimd::log1p(xsimd::exp(-xsimd::abs(x))))
TESSEL_SIMD_UNARY(relu_op, xsimd::select(x < V(0.f), V(0.f), x))
#undef TESSEL_SIMD_UNARY

#define TESSEL_SIMD_BINARY(OP, EXPR)         \
  template <>                                \
  struct simd_op<OP> {                       \
    template <class V>                       \
    static V apply(const V& a, const V& b) { \
      return EXPR;                           \
    }                                        \
  };
TESSEL_SIMD_BINARY(add_op, a + b)
TESSEL_SIMD_BINARY(sub_op, a - b)
TESSEL_SIMD_BINARY(mul_op, a* b)
TESSEL_SIMD_BINARY(div_op, a / b)
// pow has no vector version: xsimd::pow is off by up to ~30 ulp (measured); lane-wise powf.
TESSEL_SIMD_BINARY(minimum_op, xsimd::select(xsimd::isnan(a) | xsimd::isnan(b), a + b,
                                             xsimd::select(b < a, b, a)))
TESSEL_SIMD_BINARY(maximum_op, xsimd::select(xsimd::isnan(a) | xsimd::isnan(b), a + b,
                                             xsimd::select(a < b, b, a)))
TESSEL_SIMD_BINARY(less_op, xsimd::select(a < b, V(1.f), V(0.f)))
TESSEL_SIMD_BINARY(less_equal_op, xsimd::select(a <= b, V(1.f), V(0.f)))
TESSEL_SIMD_BINARY(greater_op, xsimd::select(a > b, V(1.f), V(0.f)))
TESSEL_SIMD_BINARY(greater_equal_op, xsimd::select(a >= b, V(1.f), V(0.f)))
TESSEL_SIMD_BINARY(equal_op, xsimd::select(a == b, V(1.f), V(0.f)))
// (xsimd's != is an ordered compare: false for NaN; numpy's is true)
TESSEL_SIMD_BINARY(not_equal_op, xsimd::select(a == b, V(0.f), V(1.f)))
#undef TESSEL_SIMD_BINARY

template <>
struct simd_op<where_op> {
  template <class V>
  static V apply(const V& c, const V& a, const V& b) {
    return xsimd::select(c == V(0.f), b, a);  // a NaN condition picks a, as the reference
  }
};

namespace detail {

/// Below this many elements a loop stays on the calling thread.
inline constexpr index_t parallel_threshold = index_t{1} << 16;

template <class Red>
inline constexpr bool simd_reducible_v =
    std::is_same_v<Red, sum_red> || std::is_same_v<Red, mean_red> || std::is_same_v<Red, max_red>;

template <class Red, class V>
V simd_combine(const V& acc, const V& v) {
  if constexpr (std::is_same_v<Red, max_red>) {
    return xsimd::select((v > acc) | xsimd::isnan(v), v, acc);  // NaN, once in, stays
  } else {
    return acc + v;
  }
}
template <class Red>
float scalar_combine(float acc, float v) {
  if constexpr (std::is_same_v<Red, max_red>) {
    return (v > acc || v != v) ? v : acc;
  } else {
    return acc + v;
  }
}
template <class Red>
constexpr float identity_of() {
  return std::is_same_v<Red, max_red> ? -std::numeric_limits<float>::infinity() : 0.f;
}

/// The binding context of cpu_simd: sum / mean / max reductions in vectors, others by the
/// reference loop.
template <class Arch>
struct simd_ctx {
  template <class Red, class B, std::size_t R>
  void reduce(B& b, const std::array<index_t, R>& ce, std::size_t axis, float* out) {
    if constexpr (!simd_reducible_v<Red>) {
      reduce_reference<Red>(b, ce, axis, out);
    } else {
      using V = xsimd::batch<float, Arch>;
      constexpr index_t W = static_cast<index_t>(V::size);
      auto oe = ce;
      oe[axis] = 1;
      const index_t n = ce[R - 1];
      const index_t rows = outer_count(ce);
      auto out_row = [&](const std::array<index_t, R>& idx) {
        index_t orow = 0;
        for (std::size_t k = 0; k + 1 < R; ++k) orow = orow * oe[k] + (k == axis ? 0 : idx[k]);
        return orow;
      };
      auto finish = [&](float s) {
        return std::is_same_v<Red, mean_red> ? s / static_cast<float>(ce[axis]) : s;
      };
      if (axis == R - 1) {
        // One value per row: rows are independent, spread them over the threads.
        auto body = [&](index_t lo, index_t hi) {
          B lb = b;
          std::array<index_t, R> idx{};
          index_t rem = lo;
          for (std::size_t k = R - 1; k-- > 0;) idx[k] = rem % ce[k], rem /= ce[k];
          for (index_t r = lo; r < hi; ++r, next_outer(idx, ce)) {
            lb.seek(idx.data());
            V acc(identity_of<Red>());
            index_t j = 0;
            for (; j + W <= n; j += W) acc = simd_combine<Red>(acc, lb.template load<V>(j));
            float s;
            if constexpr (std::is_same_v<Red, max_red>) {
              alignas(64) float lanes[V::size];
              acc.store_aligned(lanes);
              s = lanes[0];
              for (std::size_t k = 1; k < V::size; ++k) s = scalar_combine<Red>(s, lanes[k]);
            } else {
              s = xsimd::hadd(acc);
            }
            for (; j < n; ++j) s = scalar_combine<Red>(s, lb.get(j));
            out[out_row(idx)] = finish(s);
          }
        };
        if (rows * n >= parallel_threshold && rows > 1) {
          parallel_for(0, rows, std::max<index_t>(1, 4096 / std::max<index_t>(n, 1)), body);
        } else {
          body(0, rows);
        }
      } else {
        // Rows accumulate into rows of `out`: elementwise vector updates.
        index_t n_out = 1;
        for (auto e : oe) n_out *= e;
        std::fill(out, out + n_out, identity_of<Red>());
        std::array<index_t, R> idx{};
        for (index_t r = 0; r < rows; ++r, next_outer(idx, ce)) {
          b.seek(idx.data());
          float* o = out + out_row(idx) * n;
          index_t j = 0;
          for (; j + W <= n; j += W)
            simd_combine<Red>(V::load_unaligned(o + j), b.template load<V>(j))
                .store_unaligned(o + j);
          for (; j < n; ++j) o[j] = scalar_combine<Red>(o[j], b.get(j));
        }
        if constexpr (std::is_same_v<Red, mean_red>)
          for (index_t i = 0; i < n_out; ++i) out[i] = finish(out[i]);
      }
    }
  }
};

/// Merges outer axes into the innermost one while dst and every leaf are contiguous across
/// them, so that e.g. a [1000, 3] tensor runs as one row of 3000.
template <std::size_t R, class B>
void merge_axes(std::array<index_t, R>& ext, std::array<index_t, R>& dst_st, B& b) {
  for (std::size_t k = R - 1; k-- > 0;) {
    if (ext[k] == 1) continue;
    const index_t inner = ext[R - 1];
    bool ok = dst_st[k] == dst_st[R - 1] * inner;
    b.for_each_leaf([&](const auto& st) { ok = ok && st[k] == st[R - 1] * inner; });
    if (!ok) return;
    ext[R - 1] *= ext[k];
    ext[k] = 1;
  }
}

template <class V, class T>
inline void store_batch(T* p, const V& v) {
  if constexpr (std::is_same_v<T, float>) {
    v.store_unaligned(p);
  } else {
    alignas(64) float buf[V::size];
    v.store_aligned(buf);
    convert_from_f32(buf, p, static_cast<index_t>(V::size));
  }
}

/// d[j * ds] = b(j) for j in [j0, j1).
template <class V, class T, class B>
inline void simd_row(const B& b, T* d, index_t ds, index_t j0, index_t j1) {
  constexpr index_t W = static_cast<index_t>(V::size);
  index_t j = j0;
  if (ds == 1) {
    for (; j + W <= j1; j += W) store_batch(d + j, b.template load<V>(j));
  } else {
    for (; j + W <= j1; j += W) {
      alignas(64) float buf[V::size];
      b.template load<V>(j).store_aligned(buf);
      for (index_t k = 0; k < W; ++k) d[(j + k) * ds] = from_f32<T>(buf[k]);
    }
  }
  for (; j < j1; ++j) d[j * ds] = from_f32<T>(b.get(j));
}

template <class Arch, class T, class S, class E>
void eval_simd(const TensorView<T, S, host_space>& dst, const E& e, bool threaded) {
  using V = xsimd::batch<float, Arch>;
  constexpr index_t W = static_cast<index_t>(V::size);
  auto ext = eval_extents(dst.shape());
  constexpr std::size_t R = std::tuple_size_v<decltype(ext)>;
  auto dst_st = eval_strides(dst);
  simd_ctx<Arch> ctx;
  auto b = e.template bind<R>(ext, ctx);
  merge_axes(ext, dst_st, b);
  const index_t n = ext[R - 1];
  const index_t rows = outer_count(ext);
  if (n == 0 || rows == 0) return;
  // Work units: (row, chunk of a row); chunks keep long rows divisible among threads.
  const index_t chunk = n <= 32768 ? n : 16384;
  const index_t per_row = (n + chunk - 1) / chunk;
  const index_t units = rows * per_row;
  auto body = [&](index_t lo, index_t hi) {
    auto lb = b;  // each thread positions its own copy
    std::array<index_t, R> idx{};
    index_t cur = -1;
    T* drow = nullptr;
    for (index_t u = lo; u < hi; ++u) {
      const index_t r = u / per_row, c = u % per_row;
      if (r != cur) {
        index_t rem = r;
        for (std::size_t k = R - 1; k-- > 0;) idx[k] = rem % ext[k], rem /= ext[k];
        lb.seek(idx.data());
        index_t off = 0;
        for (std::size_t k = 0; k + 1 < R; ++k) off += idx[k] * dst_st[k];
        drow = dst.data() + off;
        cur = r;
      }
      const index_t j0 = c * chunk, j1 = std::min(n, j0 + chunk);
      simd_row<V>(lb, drow, dst_st[R - 1], j0, j1);
    }
  };
  if (threaded && rows * n >= parallel_threshold && units > 1 && num_threads() > 1) {
    const index_t grain = std::max<index_t>(1, (parallel_threshold / 4) / std::min(n, chunk));
    parallel_for(0, units, grain, body);
  } else {
    body(0, units);
  }
  (void)W;
}

template <class T, class S, class Sp>
auto dst_view(Tensor<T, S, Sp>& t) {
  if constexpr (S::rank == 0) {
    return TensorView<T, Shape<1>, Sp>(t.data(), Shape<1>{});  // (rank-0 views do not exist)
  } else {
    return t.view();
  }
}
template <class T, class S, class Sp>
TensorView<T, S, Sp> dst_view(const TensorView<T, S, Sp>& v) {
  return v;
}

template <class D>
concept HostDestination = requires(D& d) {
  dst_view(d);
}
&&std::is_same_v<typename std::remove_cvref_t<D>::space, host_space>;

}  // namespace detail

/// dst = e on a CPU backend (cpu_scalar: the reference; cpu_simd<A>: vectorized, threaded).
template <class Backend, class D, class X>
requires is_cpu_backend_v<Backend> && ExprOperand<X>
void eval(Backend, D&& dst, X&& x) {
  auto view = detail::dst_view(dst);
  using View = decltype(view);
  static_assert(!std::is_const_v<typename View::element_type>,
                "tessel: eval: the destination has const elements");
  static_assert(std::is_same_v<typename View::space, host_space>,
                "tessel: eval on a CPU backend needs a host_space destination");
  const auto e = as_expr(std::forward<X>(x));
  using E = std::remove_cvref_t<decltype(e)>;
  static_assert((E::spaces & cuda_bit) == 0,
                "tessel: eval: an expression over cuda_space tensors needs the cuda backend "
                "(eval(tessel::cuda{}, dst, e) from a .cu file)");
  check_assignable("eval", e.shape(), view.shape());
  if constexpr (std::is_same_v<Backend, cpu_scalar>) {
    detail::scalar_ctx ctx;
    detail::eval_reference(view, e, ctx);
  } else {
    detail::eval_simd<typename Backend::arch>(view, e, true);
  }
}

/// dst = e with the best CPU backend of this build (tessel::cpu).
template <class D, class X>
requires ExprOperand<X> &&(!is_cpu_backend_v<std::remove_cvref_t<D>>)void eval(D&& dst, X&& x) {
  eval(cpu{}, std::forward<D>(dst), std::forward<X>(x));
}

/// A new tensor holding e (element type T: f32, or i32 for argmax, unless given).
template <class T = void, class Backend = cpu, class X>
requires ExprOperand<X> && is_cpu_backend_v<Backend>
auto materialize(X&& x, Backend be = {}) {
  const auto e = as_expr(std::forward<X>(x));
  using E = std::remove_cvref_t<decltype(e)>;
  using Out = std::conditional_t<std::is_void_v<T>, typename E::result_type, T>;
  Tensor<Out, typename E::shape_type> t(e.shape());
  eval(be, t, e);
  return t;
}

}  // namespace tessel
