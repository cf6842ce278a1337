#pragma once
// eval(tessel::cuda{}, dst, e): the whole elementwise tree as ONE fused CUDA kernel (a
// grid-stride loop; each thread computes whole output elements through the nodes' `at`,
// which are __host__ __device__). Leaves and destination must live in cuda_space; element
// types f32, f16, bf16, i32 (and i8 for leaves). Reductions inside the tree are not supported
// on CUDA yet (a compile error says so).

#if !defined(__CUDACC__)
#error "tessel/backend/cuda/eval.cuh must be compiled by nvcc"
#endif

#include <cuda_runtime.h>

#include <string>
#include <type_traits>

#include "tessel/backend/tags.hpp"
#include "tessel/core/error.hpp"
#include "tessel/expr/expr.hpp"

namespace tessel {
namespace detail {

/// Extents and strides passed by value to the kernel (std::array is host-only there).
template <std::size_t R>
struct cuda_dims {
  index_t ext[R];
  index_t dst_st[R];
};

struct cuda_ctx {
  template <class Red, class B, std::size_t R>
  void reduce(B&, const std::array<index_t, R>&, std::size_t, float*) {}  // never bound
};

template <class T, std::size_t R, class B>
__global__ void cuda_eval_kernel(T* dst, cuda_dims<R> d, index_t total, B b) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    index_t idx[R];
    index_t rem = i, off = 0;
    for (std::size_t k = R; k-- > 0;) {
      idx[k] = rem % d.ext[k];
      rem /= d.ext[k];
      off += idx[k] * d.dst_st[k];
    }
    dst[off] = store_f32<T>(b.at(idx));
  }
}

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw error(std::string("tessel: cuda eval: ") + what + ": " + cudaGetErrorString(e));
}

template <class T, class S>
auto cuda_dst_view(Tensor<T, S, cuda_space>& t) {
  if constexpr (S::rank == 0) {
    return TensorView<T, Shape<1>, cuda_space>(t.data(), Shape<1>{});
  } else {
    return t.view();
  }
}
template <class T, class S>
auto cuda_dst_view(const TensorView<T, S, cuda_space>& v) {
  return v;
}

}  // namespace detail

/// dst = e on the GPU, as one kernel on `stream` (default stream 0); returns without waiting.
template <class D, class X>
requires ExprOperand<X>
void eval(cuda, D&& dst, X&& x, cudaStream_t stream = 0) {
  auto view = detail::cuda_dst_view(dst);
  using View = decltype(view);
  using T = typename View::element_type;
  static_assert(!std::is_const_v<T>, "tessel: eval: the destination has const elements");
  const auto e = as_expr(std::forward<X>(x));
  using E = std::remove_cvref_t<decltype(e)>;
  static_assert((E::spaces & host_bit) == 0,
                "tessel: eval(cuda, ...): every tensor of the expression must be in cuda_space");
  static_assert(!E::has_reduction,
                "tessel: eval(cuda, ...): reductions inside a CUDA expression are not supported "
                "yet; reduce on the host or in a separate kernel");
  check_assignable("eval", e.shape(), view.shape());
  constexpr std::size_t R = View::rank;
  detail::cuda_dims<R> d{};
  index_t total = 1;
  for (std::size_t k = 0; k < R; ++k) {
    d.ext[k] = view.extent(k);
    d.dst_st[k] = view.stride(k);
    total *= d.ext[k];
  }
  if (total == 0) return;
  detail::cuda_ctx ctx;
  const auto b = e.template bind<R>(view.shape().extents(), ctx);
  const int block = 256;
  const index_t want = (total + block - 1) / block;
  const int grid = static_cast<int>(want < 65535 * 8 ? want : 65535 * 8);
  detail::cuda_eval_kernel<<<grid, block, 0, stream>>>(view.data(), d, total, b);
  detail::cuda_check(cudaGetLastError(), "kernel launch");
}

}  // namespace tessel
