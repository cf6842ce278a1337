#pragma once
// MambaMixer<Cfg, W>: the Mamba-1 mixer (Gu & Dao 2023) of one layer, on rows of d_model:
//
//   [x, z] = in_proj(u)                       ssm_in      [2·d_inner, d_model]  (no bias)
//   x      = silu(conv1d(x))                  ssm_conv1d  [d_inner, d_conv] + bias, causal
//   [δ, B, C] = x_proj(x)                     ssm_x       [dt_rank + 2·d_state, d_inner]
//   Δ      = softplus(dt_proj(δ) + dt_bias)   ssm_dt      [d_inner, dt_rank], ssm_dt.bias
//   y      = selective_scan(x, Δ, A, B, C, D) · silu(z)   ssm_a = A = −exp(A_log), ssm_d = D
//   out    = out_proj(y)                      ssm_out     [d_model, d_inner]
//
// Cfg: a struct with compile-time constants dim, d_inner, d_state, d_conv, dt_rank (static
// shapes), or any object with those fields at run time (models::MambaConfig). W: the format of
// the four projections; the convolution, A, D and the dt bias are f32 (GGUF keeps them F32).
// Parameter names are GGUF's (blk.N.ssm_*); A is held as −exp(A_log), as llama.cpp's converter
// stores ssm_a, so nothing is recomputed per token.
//
// The decoding state of one sequence (MambaState: conv [d_conv−1, d_inner], ssm [d_inner,
// d_state]) is all a layer remembers: its size does not depend on the sequence length.
//
//   nn::MambaState st = mixer.make_state();
//   mixer.forward(b, u, st, scratch, out, 1.0f);  // u, out: RowView<dim> [M, dim]; out += ...
//
// forward runs every kernel (projections, conv1d, silu, selective scan) on the backend it is
// given: the scalar references or the SIMD kernels of its instruction set.
//
// Shapes are checked once, when the layer is built; forward runs the kernels' problem structs
// directly, so a step allocates nothing and checks nothing.

#include <string>

#include "linear.hpp"
#include "tessel/ops/activation.hpp"
#include "tessel/ops/conv1d.hpp"
#include "tessel/ops/selective_scan.hpp"

namespace tessel::nn {

/// The run-time dimensions of a Mamba mixer.
struct MambaDims {
  index_t dim = 0, d_inner = 0, d_state = 0, d_conv = 0, dt_rank = 0;
};

/// A config whose mixer dimensions are compile-time constants (static data members).
template <class Cfg>
concept StaticMambaConfig = std::is_pointer_v<decltype(&Cfg::dim)> &&
    std::is_pointer_v<decltype(&Cfg::d_inner)> && std::is_pointer_v<decltype(&Cfg::d_state)> &&
    std::is_pointer_v<decltype(&Cfg::d_conv)> && std::is_pointer_v<decltype(&Cfg::dt_rank)>;

template <class Cfg>
struct mamba_extents {
  static constexpr index_t dim = dyn, d_inner = dyn, d_state = dyn, dt_rank = dyn, x_out = dyn,
                           xz = dyn;
};
template <StaticMambaConfig Cfg>
struct mamba_extents<Cfg> {
  static_assert(Cfg::dim > 0 && Cfg::d_inner > 0 && Cfg::d_state > 0 && Cfg::d_conv > 0 &&
                    Cfg::dt_rank > 0,
                "tessel::nn::MambaMixer: every dimension of the config must be positive");
  static constexpr index_t dim = Cfg::dim, d_inner = Cfg::d_inner, d_state = Cfg::d_state,
                           dt_rank = Cfg::dt_rank, x_out = Cfg::dt_rank + 2 * Cfg::d_state,
                           xz = 2 * Cfg::d_inner;
};

template <class Cfg>
MambaDims to_mamba_dims(const Cfg& c) {
  return {index_t(c.dim), index_t(c.d_inner), index_t(c.d_state), index_t(c.d_conv),
          index_t(c.dt_rank)};
}

/// One sequence's decoding state of one mixer; zeros for a fresh sequence.
struct MambaState {
  MambaState() = default;
  MambaState(index_t d_conv, index_t d_inner, index_t d_state)
      : conv(d_conv - 1, d_inner), ssm(d_inner, d_state) {
    clear();
  }
  void clear() {
    std::fill(conv.data(), conv.data() + conv.size(), 0.0f);
    std::fill(ssm.data(), ssm.data() + ssm.size(), 0.0f);
  }
  index_t bytes() const noexcept { return (conv.size() + ssm.size()) * index_t(sizeof(float)); }

  Tensor<float, DynShape<2>> conv;  // [d_conv−1, d_inner]: the last inputs, oldest first
  Tensor<float, DynShape<2>> ssm;   // [d_inner, d_state]: h
};

template <class Cfg, WeightFormat W = float>
class MambaMixer {
  using E = mamba_extents<Cfg>;

 public:
  explicit MambaMixer(const Cfg& cfg = {}) : MambaMixer(to_mamba_dims(cfg)) {}
  explicit MambaMixer(const MambaDims& d)
      : ssm_in(checked(d).dim, 2 * d.d_inner),
        conv_weight(d.d_inner, d.d_conv),
        conv_bias(d.d_inner),
        ssm_x(d.d_inner, d.dt_rank + 2 * d.d_state),
        ssm_dt(d.dt_rank, d.d_inner),
        dt_bias(Shape<E::d_inner>(d.d_inner)),
        A(Shape<E::d_inner, E::d_state>(d.d_inner, d.d_state)),
        Dskip(Shape<E::d_inner>(d.d_inner)),
        ssm_out(d.d_inner, d.dim),
        d_state_(d.d_state),
        dt_rank_(d.dt_rank) {}

  index_t dim() const noexcept { return ssm_in.in(); }
  index_t d_inner() const noexcept { return ssm_out.in(); }
  index_t d_state() const noexcept { return E::d_state != dyn ? E::d_state : d_state_; }
  index_t d_conv() const noexcept { return conv_weight.extent(1); }
  index_t dt_rank() const noexcept { return E::dt_rank != dyn ? E::dt_rank : dt_rank_; }

  MambaState make_state() const { return MambaState(d_conv(), d_inner(), d_state()); }
  /// Floats of scratch forward needs for M rows.
  index_t scratch_floats(index_t M) const noexcept {
    return M * (5 * d_inner() + dt_rank() + 2 * d_state());
  }

  /// y[M, dim] = mixer(x[M, dim]) + beta · y, continuing the sequence whose state is st (and
  /// leaving in it the state after these rows), on backend b. scratch: scratch_floats(M) floats.
  template <class Backend>
  void forward(Backend b, RowView<E::dim, const float> xv, MambaState& st, ScratchView sv,
               RowView<E::dim> yv, float beta = 0.0f) const {
    const index_t M = xv.extent(0);
    detail::check_rows("tessel::nn::MambaMixer", "output", yv, dim(), M);
    detail::check_scratch("tessel::nn::MambaMixer", sv, scratch_floats(M));
    float* scratch = sv.data();
    const index_t Di = d_inner(), N = d_state(), R = dt_rank(), XO = R + 2 * N;
    float* xz = scratch;          // [M, 2·Di]: x | z
    float* xc = xz + M * 2 * Di;  // [M, Di]: silu(conv(x))
    float* xdbl = xc + M * Di;    // [M, R + 2N]: δ | B | C
    float* dt = xdbl + M * XO;    // [M, Di]
    float* ys = dt + M * Di;      // [M, Di]
    ssm_in.forward(b, xv, row_view<E::xz>(xz, M, 2 * Di));

    tessel::detail::conv1d_problem c;
    c.L = M, c.D = Di, c.K = d_conv();
    c.x = xz, c.ld_x = 2 * Di;
    c.w = conv_weight.data(), c.ld_w = d_conv();
    c.bias = conv_bias.data();
    c.state = st.conv.data(), c.ld_s = Di;
    c.y = xc, c.ld_y = Di;
    kernel<op::conv1d, Backend>::run(c);
    const auto xcv = row_view<E::d_inner>(xc, M, Di);
    eval(b, xcv, silu(xcv));

    ssm_x.forward(b, xcv, row_view<E::x_out>(xdbl, M, XO));
    // δ is the first R columns of xdbl; ssm_dt's bias goes into the scan's softplus.
    ssm_dt.forward(b, row_view<E::dt_rank, const float>(xdbl, M, R, XO),
                   row_view<E::d_inner>(dt, M, Di));

    tessel::detail::scan_problem p;
    p.L = M, p.D = Di, p.N = N;
    p.u = xc, p.ld_u = Di;
    p.dt = dt, p.ld_dt = Di;
    p.A = A.data(), p.ld_A = N;
    p.B = xdbl + R, p.ld_B = XO;
    p.C = xdbl + R + N, p.ld_C = XO;
    p.Dskip = Dskip.data(), p.dt_bias = dt_bias.data();
    p.z = xz + Di, p.ld_z = 2 * Di;
    p.softplus = true;
    p.y = ys, p.ld_y = Di;
    p.h = st.ssm.data(), p.ld_h = N;
    kernel<op::selective_scan, Backend>::run(p);

    ssm_out.forward(b, row_view<E::d_inner, const float>(ys, M, Di), yv, beta);
  }

  /// Parameters with GGUF's names: prefix "blk.3." gives blk.3.ssm_in.weight, ...
  template <class V>
  void visit(const std::string& prefix, V&& v) {
    ssm_in.visit(prefix + "ssm_in", v);
    v(prefix + "ssm_conv1d.weight", conv_weight);
    v(prefix + "ssm_conv1d.bias", conv_bias);
    ssm_x.visit(prefix + "ssm_x", v);
    ssm_dt.visit(prefix + "ssm_dt", v);
    v(prefix + "ssm_dt.bias", dt_bias);
    v(prefix + "ssm_a", A);
    v(prefix + "ssm_d", Dskip);
    ssm_out.visit(prefix + "ssm_out", v);
  }

  Linear<E::dim, E::xz, W> ssm_in;
  Tensor<float, DynShape<2>> conv_weight;  // [d_inner, d_conv]
  Tensor<float, DynShape<1>> conv_bias;    // [d_inner]
  Linear<E::d_inner, E::x_out, W> ssm_x;
  Linear<E::dt_rank, E::d_inner, W> ssm_dt;
  Tensor<float, Shape<E::d_inner>> dt_bias;
  Tensor<float, Shape<E::d_inner, E::d_state>> A;  // −exp(A_log)
  Tensor<float, Shape<E::d_inner>> Dskip;
  Linear<E::d_inner, E::dim, W> ssm_out;

 private:
  static const MambaDims& checked(const MambaDims& d) {
    if (d.dim <= 0 || d.d_inner <= 0 || d.d_state <= 0 || d.d_conv <= 0 || d.dt_rank <= 0)
      throw value_error("tessel::nn::MambaMixer: invalid dimensions (dim " + std::to_string(d.dim) +
                        ", d_inner " + std::to_string(d.d_inner) + ", d_state " +
                        std::to_string(d.d_state) + ", d_conv " + std::to_string(d.d_conv) +
                        ", dt_rank " + std::to_string(d.dt_rank) + ")");
    return d;
  }

  index_t d_state_, dt_rank_;
};

}  // namespace tessel::nn
