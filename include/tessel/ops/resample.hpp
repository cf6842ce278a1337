#pragma once
// Resampling of NCHW images by 2 (the U-Net's up and down paths):
//
//   auto y = upsample_nearest2x(x);   // [N,C,H,W] -> [N,C,2H,2W]: y[.., i, j] = x[.., i/2, j/2]
//   auto y = avg_pool2d_2x2(x);       // [N,C,H,W] -> [N,C,H/2,W/2] (floor, as PyTorch): the
//                                     // mean of each 2×2 block
//   upsample_nearest2x(y, x); avg_pool2d_2x2(y, x);   // into y
//   auto y = pad2d_zero(x, 0, 1, 0, 1);   // [N,C,H,W] -> [N,C,H+top+bottom,W+left+right]
// Both match torch.nn.functional.interpolate(scale_factor=2, mode="nearest") and
// avg_pool2d(kernel_size=2); pad2d_zero(x, left, right, top, bottom) matches F.pad(x, (left,
// right, top, bottom)) with zeros (the VAE encoder's asymmetric padding before a stride-2 conv).
// They are memory-bound copies: the kernels (op::upsample_nearest2x, op::avg_pool2d_2x2,
// op::pad2d_zero) run the same plain per-plane loops, one thread for cpu_scalar, threaded over
// planes for cpu_simd<Arch> (the compiler vectorizes them). Contiguous f32 only; every function
// takes a backend tag first or runs on default_backend.

#include <algorithm>
#include <string>

#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

namespace op {
/// [planes, H, W] -> [planes, 2H, 2W], nearest neighbour.
struct upsample_nearest2x {};
/// [planes, H, W] -> [planes, H/2, W/2], the mean of each 2×2 block.
struct avg_pool2d_2x2 {};
/// [planes, H, W] -> [planes, H + top + bottom, W + left + right], zeros around.
struct pad2d_zero {};
}  // namespace op

namespace detail {
inline void upsample_nearest2x_planes(const float* xp, float* yp, index_t H, index_t W, index_t lo,
                                      index_t hi) {
  for (index_t pl = lo; pl < hi; ++pl)
    for (index_t i = 0; i < H; ++i) {
      const float* xr = xp + (pl * H + i) * W;
      float* y0 = yp + (pl * 2 * H + 2 * i) * 2 * W;
      for (index_t j = 0; j < W; ++j) y0[2 * j] = y0[2 * j + 1] = xr[j];
      std::copy(y0, y0 + 2 * W, y0 + 2 * W);
    }
}
inline void avg_pool2d_2x2_planes(const float* xp, float* yp, index_t H, index_t W, index_t lo,
                                  index_t hi) {
  const index_t OH = H / 2, OW = W / 2;
  for (index_t pl = lo; pl < hi; ++pl)
    for (index_t i = 0; i < OH; ++i) {
      const float* a = xp + (pl * H + 2 * i) * W;
      const float* b = a + W;
      float* yr = yp + (pl * OH + i) * OW;
      for (index_t j = 0; j < OW; ++j)
        yr[j] = 0.25f * ((a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]));
    }
}
inline void pad2d_zero_planes(const float* xp, float* yp, index_t H, index_t W, index_t left,
                              index_t right, index_t top, index_t bottom, index_t lo, index_t hi) {
  const index_t OH = H + top + bottom, OW = W + left + right;
  for (index_t pl = lo; pl < hi; ++pl) {
    float* yq = yp + pl * OH * OW;
    std::fill(yq, yq + OH * OW, 0.0f);
    for (index_t i = 0; i < H; ++i) {
      const float* xr = xp + (pl * H + i) * W;
      std::copy(xr, xr + W, yq + (top + i) * OW + left);
    }
  }
}
/// Planes per task: about 16 Ki floats of the larger side.
inline index_t resample_grain(index_t plane) {
  return std::max<index_t>(1, 16384 / std::max<index_t>(1, plane));
}
}  // namespace detail

template <>
struct kernel<op::upsample_nearest2x, cpu_scalar> {
  static void run(const float* x, float* y, index_t planes, index_t H, index_t W) {
    detail::upsample_nearest2x_planes(x, y, H, W, 0, planes);
  }
};
template <class Arch>
struct kernel<op::upsample_nearest2x, cpu_simd<Arch>> {
  static void run(const float* x, float* y, index_t planes, index_t H, index_t W) {
    parallel_for(0, planes, detail::resample_grain(H * W), [&](index_t lo, index_t hi) {
      detail::upsample_nearest2x_planes(x, y, H, W, lo, hi);
    });
  }
};
template <>
struct kernel<op::avg_pool2d_2x2, cpu_scalar> {
  static void run(const float* x, float* y, index_t planes, index_t H, index_t W) {
    detail::avg_pool2d_2x2_planes(x, y, H, W, 0, planes);
  }
};
template <class Arch>
struct kernel<op::avg_pool2d_2x2, cpu_simd<Arch>> {
  static void run(const float* x, float* y, index_t planes, index_t H, index_t W) {
    parallel_for(0, planes, detail::resample_grain(H * W), [&](index_t lo, index_t hi) {
      detail::avg_pool2d_2x2_planes(x, y, H, W, lo, hi);
    });
  }
};
template <>
struct kernel<op::pad2d_zero, cpu_scalar> {
  static void run(const float* x, float* y, index_t planes, index_t H, index_t W, index_t left,
                  index_t right, index_t top, index_t bottom) {
    detail::pad2d_zero_planes(x, y, H, W, left, right, top, bottom, 0, planes);
  }
};
template <class Arch>
struct kernel<op::pad2d_zero, cpu_simd<Arch>> {
  static void run(const float* x, float* y, index_t planes, index_t H, index_t W, index_t left,
                  index_t right, index_t top, index_t bottom) {
    parallel_for(0, planes, detail::resample_grain((H + top + bottom) * (W + left + right)),
                 [&](index_t lo, index_t hi) {
                   detail::pad2d_zero_planes(x, y, H, W, left, right, top, bottom, lo, hi);
                 });
  }
};

namespace detail {
inline void resample_check(const char* op, TensorView<float, DynShape<4>> y,
                           TensorView<const float, DynShape<4>> x, std::array<index_t, 4> want) {
  if (y.shape().extents() != want)
    throw shape_error(std::string("tessel: ") + op + ": output shape " + to_string(y.shape()) +
                      " should be " + to_string(want) + " for input shape " + to_string(x.shape()));
  const auto contiguous = [](const auto& v) {
    return v.stride(3) == 1 && v.stride(2) == v.extent(3) &&
           v.stride(1) == v.extent(2) * v.extent(3) && v.stride(0) == v.extent(1) * v.stride(1);
  };
  if (!contiguous(x) || !contiguous(y))
    throw shape_error(std::string("tessel: ") + op + ": input shape " + to_string(x.shape()) +
                      " and output shape " + to_string(y.shape()) + " must be contiguous");
}
}  // namespace detail

template <class Backend>
requires is_cpu_backend_v<Backend>
void upsample_nearest2x(Backend, TensorView<float, DynShape<4>> y,
                        TensorView<const float, DynShape<4>> x) {
  const index_t H = x.extent(2), W = x.extent(3);
  detail::resample_check("upsample_nearest2x", y, x, {x.extent(0), x.extent(1), 2 * H, 2 * W});
  kernel<op::upsample_nearest2x, Backend>::run(x.data(), y.data(), x.extent(0) * x.extent(1), H, W);
}
inline void upsample_nearest2x(TensorView<float, DynShape<4>> y,
                               TensorView<const float, DynShape<4>> x) {
  upsample_nearest2x(default_backend{}, y, x);
}
template <class Backend = default_backend>
requires is_cpu_backend_v<Backend> Tensor<float, DynShape<4>> upsample_nearest2x(
    TensorView<const float, DynShape<4>> x, Backend b = {}) {
  Tensor<float, DynShape<4>> y(x.extent(0), x.extent(1), 2 * x.extent(2), 2 * x.extent(3));
  upsample_nearest2x(b, y.view(), x);
  return y;
}

template <class Backend>
requires is_cpu_backend_v<Backend>
void avg_pool2d_2x2(Backend, TensorView<float, DynShape<4>> y,
                    TensorView<const float, DynShape<4>> x) {
  const index_t H = x.extent(2), W = x.extent(3);
  detail::resample_check("avg_pool2d_2x2", y, x, {x.extent(0), x.extent(1), H / 2, W / 2});
  kernel<op::avg_pool2d_2x2, Backend>::run(x.data(), y.data(), x.extent(0) * x.extent(1), H, W);
}
inline void avg_pool2d_2x2(TensorView<float, DynShape<4>> y,
                           TensorView<const float, DynShape<4>> x) {
  avg_pool2d_2x2(default_backend{}, y, x);
}
template <class Backend = default_backend>
requires is_cpu_backend_v<Backend> Tensor<float, DynShape<4>> avg_pool2d_2x2(
    TensorView<const float, DynShape<4>> x, Backend b = {}) {
  Tensor<float, DynShape<4>> y(x.extent(0), x.extent(1), x.extent(2) / 2, x.extent(3) / 2);
  avg_pool2d_2x2(b, y.view(), x);
  return y;
}

/// x with `left` / `right` zero columns and `top` / `bottom` zero rows around every plane.
template <class Backend = default_backend>
requires is_cpu_backend_v<Backend> Tensor<float, DynShape<4>> pad2d_zero(
    TensorView<const float, DynShape<4>> x, index_t left, index_t right, index_t top,
    index_t bottom, Backend = {}) {
  if (left < 0 || right < 0 || top < 0 || bottom < 0)
    throw value_error("tessel: pad2d_zero: padding must not be negative");
  const index_t H = x.extent(2), W = x.extent(3), OH = H + top + bottom, OW = W + left + right;
  Tensor<float, DynShape<4>> y(x.extent(0), x.extent(1), OH, OW);
  detail::resample_check("pad2d_zero", y.view(), x, {x.extent(0), x.extent(1), OH, OW});
  kernel<op::pad2d_zero, Backend>::run(x.data(), y.data(), x.extent(0) * x.extent(1), H, W, left,
                                       right, top, bottom);
  return y;
}

}  // namespace tessel
