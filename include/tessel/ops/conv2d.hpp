#pragma once
// 2-D convolution over NCHW tensors, as torch.nn.functional.conv2d computes it:
//
//   y[n,k,oh,ow] = bias[k] + Σ_{c,r,s} w[k,c,r,s] · x[n, g·Cg + c, oh·stride − pad + r·dil,
//                                                     ow·stride − pad + s·dil]
//
// with g = k / (K/groups), Cg = C/groups, zeros outside the input. Layouts: x [N,C,H,W],
// w [K, C/groups, R, S] (PyTorch's Conv2d weight), bias [K], y [N,K,OH,OW] with
// OH = (H + 2·pad − dil·(R−1) − 1) / stride + 1 (likewise OW). All contiguous f32.
//
//   auto y = conv2d(x, w, bias, {.stride = 2, .padding = 1});   // a new tensor
//   auto y = conv2d(x, w, {.groups = 4});                       // no bias
//   conv2d(y, x, w, bias, opts);                                // into y
//   conv2d(cpu_scalar{}, y, x, w, bias, opts);  // the reference; cpu_simd<A>: fast, threaded
//   conv2d(default_backend{}, y, x, w16.view(), bias, opts);  // f16 / bf16 weights (a TensorView
//   of them)
//
// Fast path (cpu_simd): 3×3 stride-1 convolutions with ≥ 32 channels and ≥ 128 output 2×2
// tiles run as Winograd F(2×2, 3×3) (conv2d_winograd below: 2.25× fewer multiplies, 16 SGEMMs
// between vectorized transforms). Everything else: an implicit GEMM. Per group, y[Kg, N·P] = w[Kg,
// Cg·R·S] · unfold(x), where unfold(x) (im2col) is never stored: each KC × NR panel of it is packed
// straight from x into the packed SGEMM's B layout, and the SGEMM's micro-kernel and cache blocking
// (backend/cpu/gemm_kernels.hpp) do the rest. The columns run over the output pixels of all
// images, so a batch packs the weights once. Weights may be f16 / bf16 (widened when packed).
// Depthwise convolutions (one input and one output channel per group) run direct loops over
// planes instead (a GEMM with M = 1 would be a GEMV per plane).

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "tessel/backend/cpu/gemm.hpp"
#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel {

/// Stride, zero padding and dilation (the same along H and W), and channel groups.
struct conv2d_options {
  index_t stride = 1, padding = 0, dilation = 1, groups = 1;
};

namespace detail {

/// 2×2 output tiles (all images) from which a 3×3 stride-1 convolution with at least 32 input
/// and output channels per group runs as Winograd F(2×2, 3×3) rather than as the implicit GEMM.
/// Measured (1 thread, GFLOP/s counted as direct convolution): 64×64×320 235 vs 155, 32×32×640
/// 211 vs 160, 16×16×1280 batch 2 (128 tiles) 169 vs 156, but batch 1 (64 tiles) 119 vs 152:
/// there the weight transform (16·K·C floats) and the thin GEMMs cost more than the 2.25×
/// fewer multiplies save. Tests lower it to reach the Winograd path on small images.
inline index_t conv2d_winograd_min_tiles = 128;
/// Floats of the transformed input and output held at a time (64 MiB): larger images run in
/// chunks of rows of tiles (a 512×512×128 VAE layer would otherwise need 1 GiB).
inline index_t conv2d_winograd_scratch = index_t{1} << 24;

template <class T>
inline constexpr bool conv2d_half_v = std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

template <class TW = float>
struct conv2d_problem {
  index_t N = 0, C = 0, H = 0, W = 0;  // input
  index_t K = 0, R = 0, S = 0;         // output channels, kernel height and width
  index_t OH = 0, OW = 0, G = 1, stride = 1, pad = 0, dil = 1;
  const float* x = nullptr;
  const TW* w = nullptr;
  const float* bias = nullptr;  // nullptr: no bias
  float* y = nullptr;
  index_t cg() const noexcept { return C / G; }
  index_t kg() const noexcept { return K / G; }
};

/// The reference: direct loops, accumulating in double. Output channels [k0, k1) of image n.
template <class TW>
void conv2d_reference(const conv2d_problem<TW>& p, index_t n, index_t k0, index_t k1) {
  const index_t Cg = p.cg(), Kg = p.kg();
  for (index_t k = k0; k < k1; ++k) {
    const index_t c0 = (k / Kg) * Cg;
    for (index_t oh = 0; oh < p.OH; ++oh)
      for (index_t ow = 0; ow < p.OW; ++ow) {
        double acc = p.bias ? p.bias[k] : 0.0;
        for (index_t c = 0; c < Cg; ++c)
          for (index_t r = 0; r < p.R; ++r) {
            const index_t ih = oh * p.stride - p.pad + r * p.dil;
            if (ih < 0 || ih >= p.H) continue;
            for (index_t s = 0; s < p.S; ++s) {
              const index_t iw = ow * p.stride - p.pad + s * p.dil;
              if (iw < 0 || iw >= p.W) continue;
              acc += static_cast<double>(weight_to_f32(p.w[((k * Cg + c) * p.R + r) * p.S + s])) *
                     p.x[((n * p.C + c0 + c) * p.H + ih) * p.W + iw];
            }
          }
        p.y[((n * p.K + k) * p.OH + oh) * p.OW + ow] = static_cast<float>(acc);
      }
  }
}

/// The output columns [lo, hi) of an output row whose input column ow·stride − pad + s·dil is
/// inside [0, W): the rest read padding.
template <class TW>
std::array<index_t, 2> conv2d_valid_cols(const conv2d_problem<TW>& p, index_t s) {
  const index_t off = s * p.dil - p.pad;  // iw = ow·stride + off
  index_t lo = off >= 0 ? 0 : (-off + p.stride - 1) / p.stride;
  index_t hi = p.W - off <= 0 ? 0 : (p.W - off + p.stride - 1) / p.stride;
  lo = std::min(lo, p.OW);
  hi = std::clamp(hi, lo, p.OW);
  return {lo, hi};
}

/// Depthwise (Cg = Kg = 1): direct loops over the planes [lo, hi) of N·K, vectorized by the
/// compiler along ow for stride 1.
template <class TW>
void conv2d_depthwise(const conv2d_problem<TW>& p, index_t lo, index_t hi) {
  for (index_t plane = lo; plane < hi; ++plane) {
    const index_t k = plane % p.K;
    const float* xc = p.x + plane * p.H * p.W;  // C = K: input plane = output plane index
    float* yc = p.y + plane * p.OH * p.OW;
    std::fill(yc, yc + p.OH * p.OW, p.bias ? p.bias[k] : 0.f);
    for (index_t r = 0; r < p.R; ++r)
      for (index_t s = 0; s < p.S; ++s) {
        const float wv = weight_to_f32(p.w[(k * p.R + r) * p.S + s]);
        const auto [a, b] = conv2d_valid_cols(p, s);
        const index_t off = s * p.dil - p.pad;
        for (index_t oh = 0; oh < p.OH; ++oh) {
          const index_t ih = oh * p.stride - p.pad + r * p.dil;
          if (ih < 0 || ih >= p.H) continue;
          const float* xr = xc + ih * p.W;  // iw = ow·stride + off, inside [0, W) for [a, b)
          float* yr = yc + oh * p.OW;
          if (p.stride == 1) {
            for (index_t ow = a; ow < b; ++ow) yr[ow] += wv * xr[ow + off];
          } else {
            for (index_t ow = a; ow < b; ++ow) yr[ow] += wv * xr[ow * p.stride + off];
          }
        }
      }
  }
}

/// Packs rows [0, mc) × columns [0, kc) of the weight matrix (row-major, stride lda) into
/// MR-row slivers (k-major, MR floats per k), widening f16 / bf16 to f32; the last sliver is
/// zero-padded to MR rows. When Arch has AVX, 8 rows × 8 columns at a time go through an
/// in-register transpose (the deep U-Net levels, with few output pixels, spend most of their
/// time here).
template <int MR, class Arch, class TW>
void conv2d_pack_a(index_t mc, index_t kc, const TW* A, index_t lda, float* out) noexcept {
  for (index_t i0 = 0; i0 < mc; i0 += MR) {
    const index_t rows = std::min<index_t>(MR, mc - i0);
    const TW* src = A + i0 * lda;
    index_t k0 = 0;
#if defined(__AVX__)  // only lets the intrinsics compile: Arch chooses the path
    if constexpr (std::is_base_of_v<xsimd::avx, Arch> || std::is_base_of_v<xsimd::avx512f, Arch>)
      for (; k0 + 8 <= kc; k0 += 8) {
        for (int rb = 0; rb < MR; rb += 8) {
          __m256 v[8];
          for (int i = 0; i < 8; ++i)
            v[i] = rb + i < rows ? load8_f32<Arch>(src + (rb + i) * lda + k0) : _mm256_setzero_ps();
          transpose8(v);
          if (rb + 8 <= MR) {
            for (int i = 0; i < 8; ++i) _mm256_storeu_ps(out + (k0 + i) * MR + rb, v[i]);
          } else {
            const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(MR - rb), lanes);
            for (int i = 0; i < 8; ++i) _mm256_maskstore_ps(out + (k0 + i) * MR + rb, mask, v[i]);
          }
        }
      }
#endif
    for (index_t k = k0; k < kc; ++k)
      for (int r = 0; r < MR; ++r)
        out[k * MR + r] = r < rows ? weight_to_f32(src[r * lda + k]) : 0.0f;
    out += MR * kc;
  }
}

/// One NR-column sliver of the (never materialised) unfolded input, straight into the packed
/// layout of the GEMM's B (k-major, NR floats per row): rows [pc, pc + kc) of the unfolded
/// input (row = (c·R + r)·S + s within group g), columns [q, q + cols) of the output pixels of
/// all images (column = n·OH·OW + oh·OW + ow); columns [cols, NR) are zeros. vcols[s] = the
/// valid output columns of kernel column s.
template <int NR, class TW>
void conv2d_pack_b(const conv2d_problem<TW>& p, index_t g, index_t q, index_t cols, index_t pc,
                   index_t kc, const std::array<index_t, 2>* vcols, float* out) noexcept {
  struct run {  // output pixels [ow0, ow1) of row oh of image n, at sliver column j
    index_t plane0, oh, ow0, ow1, j;
  };
  run runs[NR];
  int nr = 0;
  const index_t P = p.OH * p.OW;
  for (index_t j = 0; j < cols;) {
    const index_t qq = q + j, n = qq / P, pix = qq % P, oh = pix / p.OW, ow0 = pix % p.OW;
    const index_t len = std::min(p.OW - ow0, cols - j);
    runs[nr++] = {(n * p.C + g * p.cg()) * p.H * p.W, oh, ow0, ow0 + len, j};
    j += len;
  }
  const index_t RS = p.R * p.S, HW = p.H * p.W;
  index_t c = pc / RS, r = (pc % RS) / p.S, s = pc % p.S;
  for (index_t kk = 0; kk < kc; ++kk) {
    float* o = out + kk * NR;
    const index_t off = s * p.dil - p.pad;
    const index_t lo = vcols[s][0], hi = vcols[s][1];
    for (int i = 0; i < nr; ++i) {
      const run& u = runs[i];
      float* d = o + u.j;  // d[ow − ow0] for ow in [ow0, ow1)
      const index_t ih = u.oh * p.stride - p.pad + r * p.dil;
      if (ih < 0 || ih >= p.H) {
        for (index_t j = 0; j < u.ow1 - u.ow0; ++j) d[j] = 0.f;
        continue;
      }
      const float* xr = p.x + u.plane0 + c * HW + ih * p.W;  // iw = ow·stride + off
      const index_t a = std::clamp(lo, u.ow0, u.ow1), b = std::clamp(hi, a, u.ow1);
      for (index_t ow = u.ow0; ow < a; ++ow) d[ow - u.ow0] = 0.f;
      if (p.stride == 1 && b > a) {
        const float* xs = xr + (a + off);
        float* ds = d + (a - u.ow0);
        for (index_t j = 0; j < b - a; ++j) ds[j] = xs[j];
      } else if (p.stride != 1) {
        for (index_t ow = a; ow < b; ++ow) d[ow - u.ow0] = xr[ow * p.stride + off];
      }
      for (index_t ow = b; ow < u.ow1; ++ow) d[ow - u.ow0] = 0.f;
    }
    for (index_t j = cols; j < NR; ++j) o[j] = 0.f;
    if (++s == p.S) {
      s = 0;
      if (++r == p.R) r = 0, ++c;
    }
  }
}

/// Implicit GEMM: y[Kg, N·P] += w[Kg, KD] · unfold(x)[KD, N·P] per group, blocked as the packed
/// SGEMM (gemm_kernels.hpp: the same micro-kernel and cache blocks), with the B panels packed
/// straight from x. The columns run over the pixels of all images, so a batch shares one
/// packing of the weights; a sliver that straddles two images goes through a scratch tile.
/// y holds the bias already.
template <class Arch, class TW>
void conv2d_implicit(const conv2d_problem<TW>& p) {
  using blk = gemm_blocking<Arch>;
  constexpr index_t MR = blk::MR, NR = blk::NR, KC = blk::KC, NC = blk::NC;
  const index_t Cg = p.cg(), Kg = p.kg(), P = p.OH * p.OW, KD = Cg * p.R * p.S, NP = p.N * P;
  const index_t nt = num_threads();
  index_t n_ic = (Kg + blk::MC - 1) / blk::MC;
  if (nt > 1) n_ic = (n_ic + nt - 1) / nt * nt;
  const index_t mc_step = std::min(blk::MC, ((Kg + n_ic - 1) / n_ic + MR - 1) / MR * MR);
  n_ic = (Kg + mc_step - 1) / mc_step;

  std::vector<std::array<index_t, 2>> vcols(static_cast<std::size_t>(p.S));
  for (index_t s = 0; s < p.S; ++s) vcols[static_cast<std::size_t>(s)] = conv2d_valid_cols(p, s);
  const index_t kc_max = std::min(KC, KD), nc_max = (std::min(NC, NP) + NR - 1) / NR * NR;
  thread_local scratch_buffer b_buf;
  float* Bp = b_buf.get(static_cast<std::size_t>(kc_max * nc_max));

  for (index_t g = 0; g < p.G; ++g) {
    const TW* wg = p.w + g * Kg * KD;
    for (index_t jc = 0; jc < NP; jc += NC) {
      const index_t nc = std::min(NC, NP - jc), n_sl = (nc + NR - 1) / NR;
      const index_t n_jg = n_ic >= 2 * nt ? 1 : std::min(n_sl, (2 * nt + n_ic - 1) / n_ic);
      for (index_t pc = 0; pc < KD; pc += KC) {
        const index_t kc = std::min(KC, KD - pc);
        parallel_for(0, n_sl, std::max<index_t>(1, 4096 / (kc * NR) + 1),
                     [&](index_t lo, index_t hi) {
                       for (index_t sl = lo; sl < hi; ++sl)
                         conv2d_pack_b<NR>(p, g, jc + sl * NR, std::min(NR, nc - sl * NR), pc, kc,
                                           vcols.data(), Bp + sl * NR * kc);
                     });
        parallel_for(0, n_ic * n_jg, 1, [&](index_t lo, index_t hi) {
          thread_local scratch_buffer a_buf;
          float* Ap = a_buf.get(static_cast<std::size_t>(mc_step * kc));
          index_t packed_ic = -1;
          for (index_t t = lo; t < hi; ++t) {
            const index_t ic = (t / n_jg) * mc_step, jg = t % n_jg;
            const index_t mc = std::min(mc_step, Kg - ic);
            if (ic != packed_ic) {
              conv2d_pack_a<MR, Arch>(mc, kc, wg + ic * KD + pc, KD, Ap);
              packed_ic = ic;
            }
            const index_t s_lo = n_sl * jg / n_jg, s_hi = n_sl * (jg + 1) / n_jg;
            for (index_t sl = s_lo; sl < s_hi; ++sl) {
              const index_t q = jc + sl * NR, n = std::min(NR, nc - sl * NR);
              const index_t img = q / P, pix = q % P;
              const float* bs = Bp + sl * NR * kc;
              if (pix + n <= P) {
                float* cq = p.y + (img * p.K + g * Kg + ic) * P + pix;
                for (index_t i = 0; i < mc; i += MR)
                  micro_kernel<Arch>(kc, Ap + i * kc, bs, cq + i * P, P, 1.0f, std::min(MR, mc - i),
                                     n);
              } else {  // the sliver spans images: a scratch tile, then added column by column
                alignas(64) float tile[MR * NR];
                for (index_t i = 0; i < mc; i += MR) {
                  const index_t m = std::min(MR, mc - i);
                  micro_kernel<Arch>(kc, Ap + i * kc, bs, tile, NR, 0.0f, m, n);
                  for (index_t j = 0; j < n; ++j) {
                    const index_t im = (q + j) / P, px = (q + j) % P;
                    float* cy = p.y + (im * p.K + g * Kg + ic + i) * P + px;
                    for (index_t rr = 0; rr < m; ++rr) cy[rr * P] += tile[rr * NR + j];
                  }
                }
              }
            }
          }
        });
      }
    }
  }
}

/// r[(i·4 + j)·n + t] = (d_i B)[j] for input row i of n tiles: the 1-D transform along the row,
/// from its even / odd columns eo[2i·st + t], eo[(2i + 1)·st + t] (d = e_t, o_t, e_t+1, o_t+1).
inline void winograd_rows(const float* __restrict eo, index_t st, index_t n,
                          float* __restrict r) noexcept {
  for (int i = 0; i < 4; ++i) {
    const float* e = eo + 2 * i * st;
    const float* o = e + st;
    float* r0 = r + (i * 4) * n;
    for (index_t t = 0; t < n; ++t) {
      r0[t] = e[t] - e[t + 1];
      r0[n + t] = o[t] + e[t + 1];
      r0[2 * n + t] = e[t + 1] - o[t];
      r0[3 * n + t] = o[t] - o[t + 1];
    }
  }
}

/// v[(i·4 + j)·ld + t] = the transform Bᵀ across rows i of r (the second half of Bᵀ d B).
inline void winograd_cols(const float* __restrict r, index_t n, float* __restrict v,
                          index_t ld) noexcept {
  for (int j = 0; j < 4; ++j) {
    const float* r0 = r + j * n;
    const float* r1 = r0 + 4 * n;
    const float* r2 = r1 + 4 * n;
    const float* r3 = r2 + 4 * n;
    float* v0 = v + j * ld;
    float* v1 = v0 + 4 * ld;
    float* v2 = v1 + 4 * ld;
    float* v3 = v2 + 4 * ld;
    for (index_t t = 0; t < n; ++t) {
      v0[t] = r0[t] - r2[t];
      v1[t] = r1[t] + r2[t];
      v2[t] = r2[t] - r1[t];
      v3[t] = r1[t] - r3[t];
    }
  }
}

/// q[(a·2 + b)·n + t] = (Aᵀ M_t A)[a][b] for n tiles, M[ξ·ld + t].
inline void winograd_out(const float* __restrict m, index_t ld, index_t n,
                         float* __restrict q) noexcept {
  for (index_t t = 0; t < n; ++t) {
    float s0[4], s1[4];
    for (int j = 0; j < 4; ++j) {
      const float m0 = m[j * ld + t], m1 = m[(4 + j) * ld + t], m2 = m[(8 + j) * ld + t],
                  m3 = m[(12 + j) * ld + t];
      s0[j] = m0 + m1 + m2;
      s1[j] = m1 - m2 - m3;
    }
    q[t] = s0[0] + s0[1] + s0[2];
    q[n + t] = s0[1] - s0[2] - s0[3];
    q[2 * n + t] = s1[0] + s1[1] + s1[2];
    q[3 * n + t] = s1[1] - s1[2] - s1[3];
  }
}

/// Winograd F(2×2, 3×3) (Lavin & Gray 2016) for 3×3, stride 1, dilation 1: the output in 2×2
/// tiles, each from a 4×4 input tile; per group
///   U[ξ][k, c] = (G g_kc Gᵀ)[ξ],  V[ξ][c, t] = (Bᵀ d_ct B)[ξ],  M[ξ] = U[ξ] · V[ξ] (16 SGEMMs),
///   y_kt = Aᵀ M_kt A
/// with Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
/// Aᵀ = [1 1 1 0; 0 1 −1 −1]: 16 multiply-adds per tile and channel pair instead of 36 (2.25×
/// fewer), for transforms that are linear in the pixels. The input and output transforms run
/// along rows of tiles (even / odd input columns split first), so they vectorize.
inline bool conv2d_winograd_fits(index_t R, index_t S, index_t stride, index_t dil, index_t Cg,
                                 index_t Kg, index_t tiles) {
  return R == 3 && S == 3 && stride == 1 && dil == 1 && Cg >= 32 && Kg >= 32 &&
         tiles >= conv2d_winograd_min_tiles;
}

template <class Backend, class TW>
void conv2d_winograd(const conv2d_problem<TW>& p) {
  const index_t Cg = p.cg(), Kg = p.kg();
  const index_t TH = (p.OH + 1) / 2, TWn = (p.OW + 1) / 2, rows = p.N * TH;
  // Rows of tiles (over all images) per chunk: V and M within conv2d_winograd_scratch floats.
  const index_t chunk =
      std::clamp<index_t>(conv2d_winograd_scratch / (16 * (Cg + Kg) * TWn), 1, rows);
  const index_t Tmax = chunk * TWn;
  thread_local scratch_buffer u_buf, v_buf, m_buf;
  float* U = u_buf.get(static_cast<std::size_t>(16 * Kg * Cg));
  float* V = v_buf.get(static_cast<std::size_t>(16 * Cg * Tmax));
  float* M = m_buf.get(static_cast<std::size_t>(16 * Kg * Tmax));
  for (index_t g = 0; g < p.G; ++g) {
    // Weights: U[ξ][k][c] = G g Gᵀ, a row k at a time into a buffer, then 16 contiguous copies
    // (16 interleaved store streams 4 KiB-multiples apart would thrash one L1 set).
    parallel_for(0, Kg, std::max<index_t>(1, 2048 / Cg), [&](index_t lo, index_t hi) {
      std::vector<float> row(static_cast<std::size_t>(16 * Cg));
      for (index_t k = lo; k < hi; ++k) {
        for (index_t c = 0; c < Cg; ++c) {
          const TW* w = p.w + ((g * Kg + k) * Cg + c) * 9;
          float gg[9], t[4][3];
          for (int i = 0; i < 9; ++i) gg[i] = weight_to_f32(w[i]);
          for (int j = 0; j < 3; ++j) {
            t[0][j] = gg[j];
            t[1][j] = 0.5f * (gg[j] + gg[3 + j] + gg[6 + j]);
            t[2][j] = 0.5f * (gg[j] - gg[3 + j] + gg[6 + j]);
            t[3][j] = gg[6 + j];
          }
          float* u = row.data() + c;
          for (int i = 0; i < 4; ++i) {
            u[(i * 4 + 0) * Cg] = t[i][0];
            u[(i * 4 + 1) * Cg] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
            u[(i * 4 + 2) * Cg] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
            u[(i * 4 + 3) * Cg] = t[i][2];
          }
        }
        for (index_t xi = 0; xi < 16; ++xi)
          std::copy(row.data() + xi * Cg, row.data() + (xi + 1) * Cg, U + (xi * Kg + k) * Cg);
      }
    });
    for (index_t r0 = 0; r0 < rows; r0 += chunk) {
      const index_t r1 = std::min(rows, r0 + chunk), T = (r1 - r0) * TWn;
      // Input: V[ξ][c][t], t = (n·TH + th − r0)·TW + tw; one row of tiles at a time.
      parallel_for(0, Cg, 1, [&](index_t lo, index_t hi) {
        const index_t st = TWn + 1;
        std::vector<float> eo(static_cast<std::size_t>(8 * st + 16 * TWn));
        for (index_t c = lo; c < hi; ++c) {
          for (index_t row = r0; row < r1; ++row) {
            const index_t n = row / TH, th = row % TH;
            const float* xc = p.x + ((n * p.C + g * Cg + c) * p.H) * p.W;
            for (int i = 0; i < 4; ++i) {  // input row i of the tile row: even / odd columns
              float* e = eo.data() + 2 * i * st;
              float* o = e + st;
              const index_t ih = 2 * th - p.pad + i;
              if (ih < 0 || ih >= p.H) {
                std::fill(e, e + 2 * st, 0.f);
              } else {
                const float* xr = xc + ih * p.W;
                for (index_t j = 0; j <= TWn; ++j) {
                  const index_t a = 2 * j - p.pad, b = a + 1;
                  e[j] = a >= 0 && a < p.W ? xr[a] : 0.f;
                  o[j] = b >= 0 && b < p.W ? xr[b] : 0.f;
                }
              }
            }
            float* r = eo.data() + 8 * st;  // r[(i·4 + j)·TW + tw]: rows transformed along j
            winograd_rows(eo.data(), st, TWn, r);
            winograd_cols(r, TWn, V + c * T + (row - r0) * TWn, Cg * T);
          }
        }
      });
      for (index_t xi = 0; xi < 16; ++xi)
        gemm<Backend>(Kg, T, Cg, U + xi * Kg * Cg, Cg, V + xi * Cg * T, T, false, M + xi * Kg * T,
                      T, 0.0f);
      // Output: y = bias + Aᵀ M A, one row of tiles at a time.
      parallel_for(0, Kg, 1, [&](index_t lo, index_t hi) {
        std::vector<float> q(static_cast<std::size_t>(4 * TWn));
        for (index_t k = lo; k < hi; ++k) {
          const index_t kk = g * Kg + k;
          const float bias = p.bias ? p.bias[kk] : 0.f;
          for (index_t row = r0; row < r1; ++row) {
            const index_t n = row / TH, th = row % TH;
            float* yk = p.y + (n * p.K + kk) * p.OH * p.OW;
            winograd_out(M + k * T + (row - r0) * TWn, Kg * T, TWn, q.data());
            for (int a = 0; a < 2 && 2 * th + a < p.OH; ++a) {
              float* yr = yk + (2 * th + a) * p.OW;
              const float* q0 = q.data() + 2 * a * TWn;
              const float* q1 = q0 + TWn;
              for (index_t tw = 0; tw < p.OW / 2; ++tw) {
                yr[2 * tw] = bias + q0[tw];
                yr[2 * tw + 1] = bias + q1[tw];
              }
              if (p.OW % 2) yr[p.OW - 1] = bias + q0[TWn - 1];
            }
          }
        }
      });
    }
  }
}

}  // namespace detail

namespace op {
/// y = conv2d(x, w) + bias on a detail::conv2d_problem<TW> (TW: float, f16, bf16 weights).
struct conv2d {};
}  // namespace op

/// The reference: direct loops accumulating in double, one thread.
template <>
struct kernel<op::conv2d, cpu_scalar> {
  template <class TW>
  static void run(const detail::conv2d_problem<TW>& p) {
    for (index_t n = 0; n < p.N; ++n) detail::conv2d_reference(p, n, 0, p.K);
  }
};

/// Depthwise loops, Winograd F(2×2, 3×3) or the implicit GEMM on Arch's micro-kernel, threaded.
template <class Arch>
struct kernel<op::conv2d, cpu_simd<Arch>> {
  template <class TW>
  static void run(const detail::conv2d_problem<TW>& p) {
    using namespace detail;
    const index_t P = p.OH * p.OW;
    if (p.cg() == 1 && p.kg() == 1) {
      const index_t work = p.R * p.S * P;
      parallel_for(0, p.N * p.K,
                   std::max<index_t>(1, (index_t{1} << 15) / std::max<index_t>(work, 1)),
                   [&](index_t lo, index_t hi) { conv2d_depthwise(p, lo, hi); });
      return;
    }
    if (conv2d_winograd_fits(p.R, p.S, p.stride, p.dil, p.cg(), p.kg(),
                             p.N * ((p.OH + 1) / 2) * ((p.OW + 1) / 2))) {
      conv2d_winograd<cpu_simd<Arch>>(p);
      return;
    }
    // y starts at the bias (or zero) and the GEMM accumulates into it.
    parallel_for(0, p.N * p.K, std::max<index_t>(1, 16384 / P), [&](index_t lo, index_t hi) {
      for (index_t plane = lo; plane < hi; ++plane)
        std::fill(p.y + plane * P, p.y + (plane + 1) * P, p.bias ? p.bias[plane % p.K] : 0.f);
    });
    if (p.cg() * p.R * p.S == 0) return;
    conv2d_implicit<Arch>(p);
  }
};

namespace detail {

template <class Backend, class TW>
void conv2d_run(Backend, const conv2d_problem<TW>& p) {
  if (p.N == 0 || p.K == 0 || p.OH == 0 || p.OW == 0) return;
  kernel<op::conv2d, Backend>::run(p);
}

template <class TW>
[[noreturn]] void conv2d_fail(const std::string& what,
                              const TensorView<const float, DynShape<4>>& x,
                              const TensorView<const TW, DynShape<4>>& w) {
  throw shape_error("tessel: conv2d: " + what + " (input shape " + to_string(x.shape()) +
                    ", weight shape " + to_string(w.shape()) + ")");
}

template <class V>
bool conv2d_contiguous(const V& v) {
  index_t s = 1;
  for (std::size_t i = V::rank; i-- > 0;) {
    if (v.extent(i) != 1 && v.stride(i) != s) return false;
    s *= v.extent(i);
  }
  return true;
}

/// The output extents [N, K, OH, OW], after checking x, w and the options.
template <class TW>
std::array<index_t, 4> conv2d_out_shape(TensorView<const float, DynShape<4>> x,
                                        TensorView<const TW, DynShape<4>> w,
                                        const conv2d_options& o) {
  if (o.stride < 1 || o.dilation < 1 || o.padding < 0 || o.groups < 1)
    conv2d_fail("stride " + std::to_string(o.stride) + ", padding " + std::to_string(o.padding) +
                    ", dilation " + std::to_string(o.dilation) + ", groups " +
                    std::to_string(o.groups) + " are not valid",
                x, w);
  const index_t C = x.extent(1), K = w.extent(0);
  if (C % o.groups != 0 || K % o.groups != 0)
    conv2d_fail("input channels " + std::to_string(C) + " and output channels " +
                    std::to_string(K) + " must be multiples of groups " + std::to_string(o.groups),
                x, w);
  if (w.extent(1) != C / o.groups)
    conv2d_fail("the weight's axis 1 must be C / groups = " + std::to_string(C / o.groups), x, w);
  const index_t eh = o.dilation * (w.extent(2) - 1) + 1, ew = o.dilation * (w.extent(3) - 1) + 1;
  const index_t hp = x.extent(2) + 2 * o.padding, wp = x.extent(3) + 2 * o.padding;
  if (w.extent(2) < 1 || w.extent(3) < 1 || hp < eh || wp < ew)
    conv2d_fail("the (dilated) kernel is larger than the padded input", x, w);
  return {x.extent(0), K, (hp - eh) / o.stride + 1, (wp - ew) / o.stride + 1};
}

template <class TW>
conv2d_problem<TW> conv2d_setup(TensorView<float, DynShape<4>> y,
                                TensorView<const float, DynShape<4>> x,
                                TensorView<const TW, DynShape<4>> w, const float* bias,
                                index_t bias_len, const conv2d_options& o) {
  const auto e = conv2d_out_shape(x, w, o);
  if (y.shape().extents() != e)
    conv2d_fail("output shape " + to_string(y.shape()) + " should be " + to_string(e), x, w);
  if (bias && bias_len != e[1])
    conv2d_fail("bias of length " + std::to_string(bias_len) + " should have length " +
                    std::to_string(e[1]),
                x, w);
  if (!conv2d_contiguous(x) || !conv2d_contiguous(w) || !conv2d_contiguous(y))
    conv2d_fail("input, weight and output must be contiguous", x, w);
  conv2d_problem<TW> p;
  p.N = x.extent(0), p.C = x.extent(1), p.H = x.extent(2), p.W = x.extent(3);
  p.K = e[1], p.R = w.extent(2), p.S = w.extent(3), p.OH = e[2], p.OW = e[3];
  p.G = o.groups, p.stride = o.stride, p.pad = o.padding, p.dil = o.dilation;
  p.x = x.data(), p.w = w.data(), p.bias = bias, p.y = y.data();
  return p;
}

inline const float* conv2d_bias_data(TensorView<const float, DynShape<1>> b) {
  if (b.extent(0) > 1 && b.stride(0) != 1)
    throw shape_error("tessel: conv2d: bias of shape " + to_string(b.shape()) +
                      " must be contiguous");
  return b.data();
}

}  // namespace detail

/// y [N,K,OH,OW] = conv2d(x [N,C,H,W], w [K,C/groups,R,S]) + bias [K].
template <class Backend>
requires is_cpu_backend_v<Backend>
void conv2d(Backend backend, TensorView<float, DynShape<4>> y,
            TensorView<const float, DynShape<4>> x, TensorView<const float, DynShape<4>> w,
            TensorView<const float, DynShape<1>> bias, const conv2d_options& o = {}) {
  detail::conv2d_run(
      backend, detail::conv2d_setup(y, x, w, detail::conv2d_bias_data(bias), bias.extent(0), o));
}
/// The same without bias.
template <class Backend>
requires is_cpu_backend_v<Backend>
void conv2d(Backend backend, TensorView<float, DynShape<4>> y,
            TensorView<const float, DynShape<4>> x, TensorView<const float, DynShape<4>> w,
            const conv2d_options& o = {}) {
  detail::conv2d_run(backend, detail::conv2d_setup(y, x, w, nullptr, 0, o));
}
/// f16 / bf16 weights (w a TensorView of f16 or bf16, const or not), widened to f32 as the
/// weight panels are packed; products accumulate in f32.
template <class Backend, class TW>
requires is_cpu_backend_v<Backend> && detail::conv2d_half_v<std::remove_const_t<TW>>
void conv2d(Backend backend, TensorView<float, DynShape<4>> y,
            TensorView<const float, DynShape<4>> x, TensorView<TW, DynShape<4>> w,
            TensorView<const float, DynShape<1>> bias, const conv2d_options& o = {}) {
  using T = std::remove_const_t<TW>;
  detail::conv2d_run(backend,
                     detail::conv2d_setup(y, x, TensorView<const T, DynShape<4>>(w),
                                          detail::conv2d_bias_data(bias), bias.extent(0), o));
}
template <class Backend, class TW>
requires is_cpu_backend_v<Backend> && detail::conv2d_half_v<std::remove_const_t<TW>>
void conv2d(Backend backend, TensorView<float, DynShape<4>> y,
            TensorView<const float, DynShape<4>> x, TensorView<TW, DynShape<4>> w,
            const conv2d_options& o = {}) {
  using T = std::remove_const_t<TW>;
  detail::conv2d_run(
      backend, detail::conv2d_setup(y, x, TensorView<const T, DynShape<4>>(w), nullptr, 0, o));
}
inline void conv2d(TensorView<float, DynShape<4>> y, TensorView<const float, DynShape<4>> x,
                   TensorView<const float, DynShape<4>> w,
                   TensorView<const float, DynShape<1>> bias, const conv2d_options& o = {}) {
  conv2d(default_backend{}, y, x, w, bias, o);
}
inline void conv2d(TensorView<float, DynShape<4>> y, TensorView<const float, DynShape<4>> x,
                   TensorView<const float, DynShape<4>> w, const conv2d_options& o = {}) {
  conv2d(default_backend{}, y, x, w, o);
}

/// A new tensor [N,K,OH,OW].
inline Tensor<float, DynShape<4>> conv2d(TensorView<const float, DynShape<4>> x,
                                         TensorView<const float, DynShape<4>> w,
                                         TensorView<const float, DynShape<1>> bias,
                                         const conv2d_options& o = {}) {
  Tensor<float, DynShape<4>> y(DynShape<4>::from_array(detail::conv2d_out_shape(x, w, o)));
  conv2d(default_backend{}, y.view(), x, w, bias, o);
  return y;
}
inline Tensor<float, DynShape<4>> conv2d(TensorView<const float, DynShape<4>> x,
                                         TensorView<const float, DynShape<4>> w,
                                         const conv2d_options& o = {}) {
  Tensor<float, DynShape<4>> y(DynShape<4>::from_array(detail::conv2d_out_shape(x, w, o)));
  conv2d(default_backend{}, y.view(), x, w, o);
  return y;
}

}  // namespace tessel
