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
// They are memory-bound copies, written once (no separate reference:
// the loops are as plain as one would write it), threaded over planes. Contiguous f32 only.

#include <algorithm>
#include <string>

#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

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

inline void upsample_nearest2x(TensorView<float, DynShape<4>> y,
                               TensorView<const float, DynShape<4>> x) {
  const index_t H = x.extent(2), W = x.extent(3);
  detail::resample_check("upsample_nearest2x", y, x, {x.extent(0), x.extent(1), 2 * H, 2 * W});
  const float* xp = x.data();
  float* yp = y.data();
  parallel_for(0, x.extent(0) * x.extent(1),
               std::max<index_t>(1, 16384 / std::max<index_t>(1, H * W)),
               [&](index_t lo, index_t hi) {
                 for (index_t pl = lo; pl < hi; ++pl)
                   for (index_t i = 0; i < H; ++i) {
                     const float* xr = xp + (pl * H + i) * W;
                     float* y0 = yp + (pl * 2 * H + 2 * i) * 2 * W;
                     for (index_t j = 0; j < W; ++j) y0[2 * j] = y0[2 * j + 1] = xr[j];
                     std::copy(y0, y0 + 2 * W, y0 + 2 * W);
                   }
               });
}
inline Tensor<float, DynShape<4>> upsample_nearest2x(TensorView<const float, DynShape<4>> x) {
  Tensor<float, DynShape<4>> y(x.extent(0), x.extent(1), 2 * x.extent(2), 2 * x.extent(3));
  upsample_nearest2x(y.view(), x);
  return y;
}

inline void avg_pool2d_2x2(TensorView<float, DynShape<4>> y,
                           TensorView<const float, DynShape<4>> x) {
  const index_t H = x.extent(2), W = x.extent(3), OH = H / 2, OW = W / 2;
  detail::resample_check("avg_pool2d_2x2", y, x, {x.extent(0), x.extent(1), OH, OW});
  const float* xp = x.data();
  float* yp = y.data();
  parallel_for(0, x.extent(0) * x.extent(1),
               std::max<index_t>(1, 16384 / std::max<index_t>(1, H * W)),
               [&](index_t lo, index_t hi) {
                 for (index_t pl = lo; pl < hi; ++pl)
                   for (index_t i = 0; i < OH; ++i) {
                     const float* a = xp + (pl * H + 2 * i) * W;
                     const float* b = a + W;
                     float* yr = yp + (pl * OH + i) * OW;
                     for (index_t j = 0; j < OW; ++j)
                       yr[j] = 0.25f * ((a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]));
                   }
               });
}
inline Tensor<float, DynShape<4>> avg_pool2d_2x2(TensorView<const float, DynShape<4>> x) {
  Tensor<float, DynShape<4>> y(x.extent(0), x.extent(1), x.extent(2) / 2, x.extent(3) / 2);
  avg_pool2d_2x2(y.view(), x);
  return y;
}

/// x with `left` / `right` zero columns and `top` / `bottom` zero rows around every plane.
inline Tensor<float, DynShape<4>> pad2d_zero(TensorView<const float, DynShape<4>> x, index_t left,
                                             index_t right, index_t top, index_t bottom) {
  if (left < 0 || right < 0 || top < 0 || bottom < 0)
    throw value_error("tessel: pad2d_zero: padding must not be negative");
  const index_t H = x.extent(2), W = x.extent(3), OH = H + top + bottom, OW = W + left + right;
  Tensor<float, DynShape<4>> y(x.extent(0), x.extent(1), OH, OW);
  detail::resample_check("pad2d_zero", y.view(), x, {x.extent(0), x.extent(1), OH, OW});
  const float* xp = x.data();
  float* yp = y.data();
  parallel_for(0, x.extent(0) * x.extent(1),
               std::max<index_t>(1, 16384 / std::max<index_t>(1, OH * OW)),
               [&](index_t lo, index_t hi) {
                 for (index_t pl = lo; pl < hi; ++pl) {
                   float* yq = yp + pl * OH * OW;
                   std::fill(yq, yq + OH * OW, 0.0f);
                   for (index_t i = 0; i < H; ++i) {
                     const float* xr = xp + (pl * H + i) * W;
                     std::copy(xr, xr + W, yq + (top + i) * OW + left);
                   }
                 }
               });
  return y;
}

}  // namespace tessel
