#pragma once
// The attention blocks of a diffusion U-Net and VAE, with diffusers' parameter names:
//
//   CrossAttention (Attention): to_q, to_k, to_v (bias: QkvBias), to_out.0 (bias); softmax
//     attention of queries x [T, dim] over keys / values from a context [L, ctx_dim] (or from x:
//     self-attention), `heads` heads of dim / heads, scale 1/√head_dim.
//   BasicTransformerBlock: x += attn1(norm1(x));  x += attn2(norm2(x), context);
//     x += ff.net.2(GEGLU(ff.net.0.proj(norm3(x))))   GEGLU(h, g) = h · GELU_erf(g), inner 4·dim
//   SpatialTransformer (Transformer2DModel, Stable Diffusion 1.x layout): GroupNorm(eps 1e-6)
//     → proj_in (1×1 conv) → transformer_blocks.0 … → proj_out (1×1 conv) → + x, the blocks
//     running over the H·W pixels of each image as a sequence.
//   AttentionBlock (the VAE mid-block's attention): group_norm → single-head self-attention with
//     biased to_q / to_k / to_v / to_out.0 over the pixels → + x.
//
//   nn::SpatialTransformer st(channels, heads, context_dim, groups);
//   auto y = st.forward(b, x.view(), ctx, L);   // x [N, C, H, W], ctx [N, L, context_dim] rows,
//                                               // on backend b
//
// Attention runs per (image, head) as two GEMMs (scores = Q Kᵀ, out = softmax(scores) V) over
// blocks of query rows, keeping the score block within 16 MiB.

#include <optional>
#include <vector>

#include "conv.hpp"
#include "linear.hpp"
#include "norm.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/ops/activation.hpp"
#include "tessel/ops/softmax.hpp"

namespace tessel::nn {

using Rows = Tensor<float, DynShape<2>>;

namespace detail {

/// out [N·T, D] = softmax(q kᵀ / √hd) v per image and head; q [N·T, D], k, v [N·L, D].
template <class Backend>
void multi_head_attention(Backend, const float* q, const float* k, const float* v, index_t N,
                          index_t T, index_t L, index_t D, index_t heads, float* out) {
  const index_t hd = D / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const index_t block = std::max<index_t>(1, std::min<index_t>(T, (index_t{1} << 22) / L));
  std::vector<float> s(static_cast<std::size_t>(block * L));
  for (index_t n = 0; n < N; ++n)
    for (index_t h = 0; h < heads; ++h) {
      const float* kh = k + n * L * D + h * hd;
      const float* vh = v + n * L * D + h * hd;
      for (index_t t0 = 0; t0 < T; t0 += block) {
        const index_t m = std::min(block, T - t0);
        const index_t row0 = n * T + t0;
        gemm<Backend>(m, L, hd, q + row0 * D + h * hd, D, kh, D, true, s.data(), L);
        kernel<op::softmax, Backend>::run(s.data(), s.data(), m, L, scale);
        gemm<Backend>(m, hd, L, s.data(), L, vh, D, false, out + row0 * D + h * hd, D);
      }
    }
}

/// Tiles of the transposes between NCHW and pixel rows: 16 × 16 floats, one cache line per row.
inline constexpr index_t transpose_tile = 16;

/// Rows [N·H·W, C] (pixels as tokens) of x [N, C, H, W]; threaded over tiles of pixels.
inline Rows nchw_to_rows(View4 x) {
  const index_t N = x.extent(0), C = x.extent(1), P = x.extent(2) * x.extent(3);
  constexpr index_t T = transpose_tile;
  Rows r(N * P, C);
  const index_t pt = (P + T - 1) / T;
  parallel_for(0, N * pt, 1, [&](index_t lo, index_t hi) {
    for (index_t t = lo; t < hi; ++t) {
      const index_t n = t / pt, p0 = (t % pt) * T, p1 = std::min(P, p0 + T);
      for (index_t c0 = 0; c0 < C; c0 += T) {
        const index_t c1 = std::min(C, c0 + T);
        for (index_t c = c0; c < c1; ++c) {
          const float* src = x.data() + (n * C + c) * P;
          float* dst = r.data() + n * P * C + c;
          for (index_t p = p0; p < p1; ++p) dst[p * C] = src[p];
        }
      }
    }
  });
  return r;
}

/// residual + rows [N·H·W, C] laid back out as [N, C, H, W] (residual's shape); threaded.
inline Act4 rows_to_nchw_add(const Rows& r, View4 residual) {
  const index_t N = residual.extent(0), C = residual.extent(1),
                P = residual.extent(2) * residual.extent(3);
  constexpr index_t T = transpose_tile;
  Act4 y(N, C, residual.extent(2), residual.extent(3));
  const index_t ct = (C + T - 1) / T;
  parallel_for(0, N * ct, 1, [&](index_t lo, index_t hi) {
    for (index_t t = lo; t < hi; ++t) {
      const index_t n = t / ct, c0 = (t % ct) * T, c1 = std::min(C, c0 + T);
      for (index_t p0 = 0; p0 < P; p0 += T) {
        const index_t p1 = std::min(P, p0 + T);
        for (index_t c = c0; c < c1; ++c) {
          const float* src = r.data() + n * P * C + c;
          const float* res = residual.data() + (n * C + c) * P;
          float* dst = y.data() + (n * C + c) * P;
          for (index_t p = p0; p < p1; ++p) dst[p] = src[p * C] + res[p];
        }
      }
    }
  });
  return y;
}

/// y[M, out] = x[M, in] · w[out, in, 1, 1]ᵀ + b: a 1×1 convolution on pixel rows.
template <class Backend, class W>
Rows conv1x1_rows(Backend, const Rows& x, const BasicConv2d<W>& conv) {
  const index_t M = x.extent(0), K = conv.in(), N = conv.out();
  if (x.extent(1) != K || conv.weight.extent(2) != 1 || conv.weight.extent(3) != 1)
    throw shape_error("tessel::nn: 1x1 projection of rows " + to_string(x.shape()) +
                      " by a weight " + to_string(conv.weight.shape()));
  Rows y(M, N);
  gemm<Backend>(M, N, K, x.data(), K, conv.weight.data(), K, true, y.data(), N);
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) y.data()[i * N + j] += conv.bias.data()[j];
  return y;
}

}  // namespace detail

/// W: the projections' weight format (float, f16, bf16).
template <bool QkvBias = false, class W = float>
class CrossAttention {
 public:
  CrossAttention(index_t dim, index_t context_dim, index_t heads)
      : to_q(dim, dim),
        to_k(context_dim, dim),
        to_v(context_dim, dim),
        to_out(dim, dim),
        heads(heads) {
    if (heads <= 0 || dim % heads != 0)
      throw value_error("tessel::nn::CrossAttention: " + std::to_string(heads) +
                        " heads do not divide the dimension " + std::to_string(dim));
  }

  index_t dim() const noexcept { return to_q.in(); }
  index_t context_dim() const noexcept { return to_k.in(); }

  /// y[N·T, dim] = attention(x[N·T, dim], context[N·L, context_dim]) + beta · y. A null
  /// context is self-attention (L = T).
  template <class Backend>
  void forward(Backend b, const float* x, index_t N, index_t T, const float* context, index_t L,
               float* y, float beta = 0.0f) const {
    const index_t D = dim();
    if (!context) {
      if (context_dim() != D)
        throw shape_error("tessel::nn::CrossAttention: self-attention needs context_dim == dim");
      context = x;
      L = T;
    }
    std::vector<float> q(static_cast<std::size_t>(N * T * D)),
        k(static_cast<std::size_t>(N * L * D)), v(k.size()), att(q.size());
    const auto xv = row_view<dyn, const float>(x, N * T, D);
    const auto cv = row_view<dyn, const float>(context, N * L, context_dim());
    to_q.forward(b, xv, row_view(q.data(), N * T, D));
    to_k.forward(b, cv, row_view(k.data(), N * L, D));
    to_v.forward(b, cv, row_view(v.data(), N * L, D));
    detail::multi_head_attention(b, q.data(), k.data(), v.data(), N, T, L, D, heads, att.data());
    to_out.forward(b, row_view<dyn, const float>(att.data(), N * T, D), row_view(y, N * T, D),
                   beta);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    to_q.visit(name + ".to_q", v);
    to_k.visit(name + ".to_k", v);
    to_v.visit(name + ".to_v", v);
    to_out.visit(name + ".to_out.0", v);
  }

  Linear<dyn, dyn, W, QkvBias> to_q, to_k, to_v;
  Linear<dyn, dyn, W, true> to_out;
  index_t heads;
};

template <class W = float>
class BasicTransformerBlock {
 public:
  BasicTransformerBlock(index_t dim, index_t heads, index_t context_dim)
      : norm1(dim, 1e-5f),
        attn1(dim, dim, heads),
        norm2(dim, 1e-5f),
        attn2(dim, context_dim, heads),
        norm3(dim, 1e-5f),
        ff_proj(dim, 8 * dim),
        ff_out(4 * dim, dim) {}

  /// x[N·T, dim] updated in place; context [N·L, context_dim].
  template <class Backend>
  void forward(Backend b, float* x, index_t N, index_t T, const float* context, index_t L) const {
    const index_t D = norm1.dim(), M = N * T, F = 4 * D;
    std::vector<float> t(static_cast<std::size_t>(M * D));
    const auto xv = row_view(x, M, D), tv = row_view(t.data(), M, D);
    norm1.forward(b, xv, tv);
    attn1.forward(b, t.data(), N, T, nullptr, 0, x, 1.0f);
    norm2.forward(b, xv, tv);
    attn2.forward(b, t.data(), N, T, context, L, x, 1.0f);
    norm3.forward(b, xv, tv);
    std::vector<float> g(static_cast<std::size_t>(M * 2 * F)), a(static_cast<std::size_t>(M * F));
    ff_proj.forward(b, tv, row_view(g.data(), M, 2 * F));
    kernel<op::geglu, Backend>::run(g.data(), M, F, a.data());
    ff_out.forward(b, row_view<dyn, const float>(a.data(), M, F), xv, 1.0f);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    norm1.visit(name + ".norm1", v);
    attn1.visit(name + ".attn1", v);
    norm2.visit(name + ".norm2", v);
    attn2.visit(name + ".attn2", v);
    norm3.visit(name + ".norm3", v);
    ff_proj.visit(name + ".ff.net.0.proj", v);
    ff_out.visit(name + ".ff.net.2", v);
  }

  LayerNorm<dyn> norm1;
  CrossAttention<false, W> attn1;
  LayerNorm<dyn> norm2;
  CrossAttention<false, W> attn2;
  LayerNorm<dyn> norm3;
  Linear<dyn, dyn, W, true> ff_proj, ff_out;
};

/// W: the weight format of the projections, attention and feed-forward (float, f16, bf16).
template <class W = float>
class BasicSpatialTransformer {
 public:
  BasicSpatialTransformer(index_t channels, index_t heads, index_t context_dim, index_t groups,
                          index_t depth = 1)
      : norm(groups, channels, 1e-6f),
        proj_in(channels, channels, 1),
        proj_out(channels, channels, 1) {
    for (index_t d = 0; d < depth; ++d) blocks.emplace_back(channels, heads, context_dim);
  }

  index_t channels() const noexcept { return proj_in.in(); }
  index_t context_dim() const noexcept { return blocks.front().attn2.context_dim(); }

  /// x [N, C, H, W], context [N·L, context_dim] rows -> [N, C, H, W].
  template <class Backend>
  Act4 forward(Backend b, View4 x, const float* context, index_t L) const {
    if (x.extent(1) != channels())
      throw shape_error("tessel::nn::SpatialTransformer: input " + to_string(x.shape()) +
                        " should have " + std::to_string(channels()) + " channels");
    if (!context || L <= 0)
      throw value_error("tessel::nn::SpatialTransformer: cross-attention needs a context");
    const index_t N = x.extent(0), T = x.extent(2) * x.extent(3);
    Rows h = detail::conv1x1_rows(b, detail::nchw_to_rows(norm.forward(b, x).view()), proj_in);
    for (const auto& blk : blocks) blk.forward(b, h.data(), N, T, context, L);
    return detail::rows_to_nchw_add(detail::conv1x1_rows(b, h, proj_out), x);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    norm.visit(name + ".norm", v);
    proj_in.visit(name + ".proj_in", v);
    for (std::size_t d = 0; d < blocks.size(); ++d)
      blocks[d].visit(name + ".transformer_blocks." + std::to_string(d), v);
    proj_out.visit(name + ".proj_out", v);
  }

  GroupNorm norm;
  BasicConv2d<W> proj_in;
  std::vector<BasicTransformerBlock<W>> blocks;
  BasicConv2d<W> proj_out;
};
using SpatialTransformer = BasicSpatialTransformer<float>;

class AttentionBlock {
 public:
  AttentionBlock(index_t channels, index_t groups)
      : group_norm(groups, channels, 1e-6f), attn(channels, channels, 1) {}

  template <class Backend>
  Act4 forward(Backend b, View4 x) const {
    if (x.extent(1) != attn.dim())
      throw shape_error("tessel::nn::AttentionBlock: input " + to_string(x.shape()) +
                        " should have " + std::to_string(attn.dim()) + " channels");
    const index_t N = x.extent(0), T = x.extent(2) * x.extent(3);
    const Rows h = detail::nchw_to_rows(group_norm.forward(b, x).view());
    Rows y(N * T, attn.dim());
    attn.forward(b, h.data(), N, T, nullptr, 0, y.data());
    return detail::rows_to_nchw_add(y, x);
  }

  template <class V>
  void visit(const std::string& name, V&& v) {
    group_norm.visit(name + ".group_norm", v);
    attn.visit(name, v);
  }

  GroupNorm group_norm;
  CrossAttention<true> attn;
};

}  // namespace tessel::nn
