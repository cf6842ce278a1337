#pragma once
// The scalar evaluation of an expression tree: the reference every backend is tested against.
// Straightforward loops, one element at a time, no axis merging, no threads.

#include <array>
#include <vector>

#include "broadcast.hpp"
#include "node.hpp"
#include "reduce.hpp"

namespace tessel {
namespace detail {

/// Advances the outer index (axes 0..R-2 of extents e) in row-major order.
template <std::size_t R>
inline void next_outer(std::array<index_t, R>& idx, const std::array<index_t, R>& e) {
  for (std::size_t k = R - 1; k-- > 0;) {
    if (++idx[k] < e[k]) return;
    idx[k] = 0;
  }
}

/// Number of rows: product of the extents of axes 0..R-2.
template <std::size_t R>
inline index_t outer_count(const std::array<index_t, R>& e) {
  index_t n = 1;
  for (std::size_t k = 0; k + 1 < R; ++k) n *= e[k];
  return n;
}

/// Reduces bound child `b` (extents ce) along `axis` into `out` (ce with ce[axis] = 1,
/// row-major), one element at a time.
template <class Red, class B, std::size_t R>
void reduce_reference(B& b, const std::array<index_t, R>& ce, std::size_t axis, float* out) {
  auto oe = ce;
  oe[axis] = 1;
  index_t n_out = 1;
  for (auto e : oe) n_out *= e;
  std::vector<typename Red::state> acc(static_cast<std::size_t>(n_out), Red::init());
  const index_t n = ce[R - 1];
  const index_t rows = outer_count(ce);
  std::array<index_t, R> idx{};
  for (index_t r = 0; r < rows; ++r, next_outer(idx, ce)) {
    b.seek(idx.data());
    index_t orow = 0;  // row of `out` (axes 0..R-2 of oe, idx[axis] read as 0)
    for (std::size_t k = 0; k + 1 < R; ++k) orow = orow * oe[k] + (k == axis ? 0 : idx[k]);
    if (axis == R - 1) {
      auto& s = acc[static_cast<std::size_t>(orow)];
      for (index_t j = 0; j < n; ++j) Red::step(s, b.get(j), j);
    } else {
      for (index_t j = 0; j < n; ++j)
        Red::step(acc[static_cast<std::size_t>(orow * n + j)], b.get(j), idx[axis]);
    }
  }
  for (index_t i = 0; i < n_out; ++i)
    out[i] = Red::result(acc[static_cast<std::size_t>(i)], ce[axis]);
}

/// The binding context of the scalar reference: reductions use reduce_reference.
struct scalar_ctx {
  template <class Red, class B, std::size_t R>
  void reduce(B& b, const std::array<index_t, R>& ce, std::size_t axis, float* out) {
    reduce_reference<Red>(b, ce, axis, out);
  }
};

/// The extents of `s`, or {1} for rank 0 (evaluation always works on at least one axis).
template <class S>
auto eval_extents(const S& s) {
  if constexpr (S::rank == 0) {
    return std::array<index_t, 1>{1};
  } else {
    return s.extents();
  }
}
template <class T, class S, class Sp>
auto eval_strides(const TensorView<T, S, Sp>& d) {
  if constexpr (S::rank == 0) {
    return std::array<index_t, 1>{0};
  } else {
    return d.strides();
  }
}

/// dst = e, one element at a time (e's shape must broadcast to dst's; checked by the caller).
template <class T, class S, class E, class Ctx>
void eval_reference(const TensorView<T, S, host_space>& dst, const E& e, Ctx& ctx) {
  const auto ext = eval_extents(dst.shape());
  constexpr std::size_t R = std::tuple_size_v<std::decay_t<decltype(ext)>>;
  const auto dst_st = eval_strides(dst);
  auto b = e.template bind<R>(ext, ctx);
  const index_t n = ext[R - 1];
  const index_t rows = outer_count(ext);
  if (n == 0) return;
  std::array<index_t, R> idx{};
  for (index_t r = 0; r < rows; ++r, next_outer(idx, ext)) {
    b.seek(idx.data());
    index_t off = 0;
    for (std::size_t k = 0; k + 1 < R; ++k) off += idx[k] * dst_st[k];
    T* row = dst.data() + off;
    for (index_t j = 0; j < n; ++j) row[j * dst_st[R - 1]] = from_f32<T>(b.get(j));
  }
}

}  // namespace detail
}  // namespace tessel
