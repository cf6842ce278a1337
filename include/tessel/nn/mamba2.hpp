#pragma once
// Mamba2Mixer<Cfg, W>: the Mamba-2 mixer (Dao & Gu 2024) of one layer, on rows of d_model.
// With H = n_heads heads of P = d_inner / H channels, G = n_groups groups of B / C of
// N = d_state lanes, and conv_dim = d_inner + 2·G·N:
//
//   [z, xBC, dt] = in_proj(u)                 ssm_in      [2·d_inner + 2·G·N + H, d_model]
//   xBC   = silu(conv1d(xBC))                 ssm_conv1d  [conv_dim, d_conv] + bias, causal
//   [x, B, C] = xBC                           x [d_inner] = [H, P], B, C [G, N]
//   Δ     = softplus(dt + dt_bias)            ssm_dt.bias [H]
//   y     = ssd_scan(x, Δ, A, B, C, D)        ssm_a [H, 1] = A = −exp(A_log), ssm_d [H, 1]
//   y     = rms_norm(y · silu(z)) · norm      ssm_norm    [G, d_inner / G]: per group of
//                                                         d_inner / G channels
//   out   = out_proj(y)                       ssm_out     [d_model, d_inner]
//
// Head h reads group h / (H / G). Cfg: a struct with compile-time constants dim, d_inner,
// d_state, d_conv, n_heads, n_groups (static shapes), or any object with those fields at run
// time (models::Mamba2Config); norm_eps (default 1e-5) is the gated norm's epsilon. W: the
// format of in_proj and out_proj; the convolution, A, D, the dt bias and the norm are f32.
// Parameter names and shapes are llama.cpp's GGUF `mamba2` ones (blk.N.ssm_*): its converter
// stores A = −exp(A_log) and D as [H, 1] and the norm as [G, d_inner / G].
//
// The decoding state of one sequence (Mamba2State: conv [d_conv−1, conv_dim], ssm [H, P, N])
// is all a layer remembers: its size does not depend on the sequence length.
//
//   nn::Mamba2State st = mixer.make_state();
//   mixer.forward(b, u, st, scratch, out, 1.0f);  // u, out: RowView<dim> [M, dim]; out += ...
//
// forward runs every kernel (projections, conv1d, silu, SSD scan, gated norm) on the backend
// it is given: the scalar references or the SIMD kernels of its instruction set.

#include <string>

#include "linear.hpp"
#include "tessel/ops/activation.hpp"
#include "tessel/ops/conv1d.hpp"
#include "tessel/ops/ssd_scan.hpp"

namespace tessel::nn {

/// The run-time dimensions of a Mamba-2 mixer.
struct Mamba2Dims {
  index_t dim = 0, d_inner = 0, d_state = 0, d_conv = 0, n_heads = 0, n_groups = 0;
  float norm_eps = 1e-5f;
};

/// A config whose mixer dimensions are compile-time constants (static data members).
template <class Cfg>
concept StaticMamba2Config =
    std::is_pointer_v<decltype(&Cfg::dim)> && std::is_pointer_v<decltype(&Cfg::d_inner)> &&
    std::is_pointer_v<decltype(&Cfg::d_state)> && std::is_pointer_v<decltype(&Cfg::d_conv)> &&
    std::is_pointer_v<decltype(&Cfg::n_heads)> && std::is_pointer_v<decltype(&Cfg::n_groups)>;

template <class Cfg>
struct mamba2_extents {
  static constexpr index_t dim = dyn, d_inner = dyn, heads = dyn, groups = dyn, group_size = dyn,
                           proj = dyn;
};
template <StaticMamba2Config Cfg>
struct mamba2_extents<Cfg> {
  static_assert(Cfg::dim > 0 && Cfg::d_inner > 0 && Cfg::d_state > 0 && Cfg::d_conv > 0 &&
                    Cfg::n_heads > 0 && Cfg::n_groups > 0,
                "tessel::nn::Mamba2Mixer: every dimension of the config must be positive");
  static_assert(Cfg::d_inner % Cfg::n_heads == 0 && Cfg::n_heads % Cfg::n_groups == 0,
                "tessel::nn::Mamba2Mixer: n_heads must divide d_inner, n_groups n_heads");
  static constexpr index_t dim = Cfg::dim, d_inner = Cfg::d_inner, heads = Cfg::n_heads,
                           groups = Cfg::n_groups, group_size = Cfg::d_inner / Cfg::n_groups,
                           proj =
                               2 * Cfg::d_inner + 2 * Cfg::n_groups * Cfg::d_state + Cfg::n_heads;
};

template <class Cfg>
Mamba2Dims to_mamba2_dims(const Cfg& c) {
  Mamba2Dims d{index_t(c.dim),    index_t(c.d_inner), index_t(c.d_state),
               index_t(c.d_conv), index_t(c.n_heads), index_t(c.n_groups)};
  if constexpr (requires { c.norm_eps; }) d.norm_eps = float(c.norm_eps);
  return d;
}

/// One sequence's decoding state of one Mamba-2 mixer; zeros for a fresh sequence.
struct Mamba2State {
  Mamba2State() = default;
  Mamba2State(index_t d_conv, index_t conv_dim, index_t heads, index_t headdim, index_t d_state)
      : conv(d_conv - 1, conv_dim), ssm(heads, headdim, d_state) {
    clear();
  }
  void clear() {
    std::fill(conv.data(), conv.data() + conv.size(), 0.0f);
    std::fill(ssm.data(), ssm.data() + ssm.size(), 0.0f);
  }
  index_t bytes() const noexcept { return (conv.size() + ssm.size()) * index_t(sizeof(float)); }

  Tensor<float, DynShape<2>> conv;  // [d_conv−1, conv_dim]: the last inputs, oldest first
  Tensor<float, DynShape<3>> ssm;   // [heads, headdim, d_state]
};

template <class Cfg, WeightFormat W = float>
class Mamba2Mixer {
  using E = mamba2_extents<Cfg>;

 public:
  explicit Mamba2Mixer(const Cfg& cfg = {}) : Mamba2Mixer(to_mamba2_dims(cfg)) {}
  explicit Mamba2Mixer(const Mamba2Dims& d)
      : ssm_in(checked(d).dim, 2 * d.d_inner + 2 * d.n_groups * d.d_state + d.n_heads),
        conv_weight(d.d_inner + 2 * d.n_groups * d.d_state, d.d_conv),
        conv_bias(d.d_inner + 2 * d.n_groups * d.d_state),
        dt_bias(Shape<E::heads>(d.n_heads)),
        A(Shape<E::heads, 1>(d.n_heads, 1)),
        Dskip(Shape<E::heads, 1>(d.n_heads, 1)),
        norm_weight(Shape<E::groups, E::group_size>(d.n_groups, d.d_inner / d.n_groups)),
        ssm_out(d.d_inner, d.dim),
        eps(d.norm_eps),
        d_state_(d.d_state) {}

  index_t dim() const noexcept { return ssm_in.in(); }
  index_t d_inner() const noexcept { return ssm_out.in(); }
  index_t d_state() const noexcept { return d_state_; }
  index_t d_conv() const noexcept { return conv_weight.extent(1); }
  index_t n_heads() const noexcept { return dt_bias.extent(0); }
  index_t n_groups() const noexcept { return norm_weight.extent(0); }
  index_t headdim() const noexcept { return d_inner() / n_heads(); }
  index_t conv_dim() const noexcept { return conv_weight.extent(0); }

  Mamba2State make_state() const {
    return Mamba2State(d_conv(), conv_dim(), n_heads(), headdim(), d_state());
  }
  /// Floats of scratch forward needs for M rows.
  index_t scratch_floats(index_t M) const noexcept {
    return M * (ssm_in.out() + conv_dim() + d_inner());
  }

  /// y[M, dim] = mixer(x[M, dim]) + beta · y, continuing the sequence whose state is st (and
  /// leaving in it the state after these rows), on backend b. scratch: scratch_floats(M) floats.
  template <class Backend>
  void forward(Backend b, RowView<E::dim, const float> xv, Mamba2State& st, ScratchView sv,
               RowView<E::dim> yv, float beta = 0.0f) const {
    const index_t M = xv.extent(0);
    detail::check_rows("tessel::nn::Mamba2Mixer", "output", yv, dim(), M);
    detail::check_scratch("tessel::nn::Mamba2Mixer", sv, scratch_floats(M));
    float* scratch = sv.data();
    const index_t Di = d_inner(), N = d_state(), H = n_heads(), G = n_groups();
    const index_t CD = conv_dim(), PR = ssm_in.out();
    float* zx = scratch;      // [M, PR]: z | xBC | dt
    float* xc = zx + M * PR;  // [M, CD]: silu(conv(xBC)) = x | B | C
    float* ys = xc + M * CD;  // [M, Di]
    ssm_in.forward(b, xv, row_view<E::proj>(zx, M, PR));

    tessel::detail::conv1d_problem c;
    c.L = M, c.D = CD, c.K = d_conv();
    c.x = zx + Di, c.ld_x = PR;
    c.w = conv_weight.data(), c.ld_w = d_conv();
    c.bias = conv_bias.data();
    c.state = st.conv.data(), c.ld_s = CD;
    c.y = xc, c.ld_y = CD;
    kernel<op::conv1d, Backend>::run(c);
    const auto xcv = row_view(xc, M, CD);
    eval(b, xcv, silu(xcv));

    tessel::detail::ssd_problem p;
    p.L = M, p.H = H, p.P = Di / H, p.N = N, p.G = G;
    p.x = xc, p.ld_x = CD;
    p.B = xc + Di, p.ld_B = CD;
    p.C = xc + Di + G * N, p.ld_C = CD;
    p.dt = zx + Di + CD, p.ld_dt = PR;
    p.A = A.data(), p.Dskip = Dskip.data(), p.dt_bias = dt_bias.data();
    p.softplus = true;
    p.y = ys, p.ld_y = Di;
    p.S = st.ssm.data();
    kernel<op::ssd_scan, Backend>::run(p);

    // rms_norm(y · silu(z)) per group of Di / G channels
    kernel<op::gated_group_rms_norm, Backend>::run(zx, PR, ys, Di, M, Di, G, norm_weight.data(),
                                                   eps);
    ssm_out.forward(b, row_view<E::d_inner, const float>(ys, M, Di), yv, beta);
  }

  /// Parameters with GGUF's names: prefix "blk.3." gives blk.3.ssm_in.weight, ...
  template <class V>
  void visit(const std::string& prefix, V&& v) {
    ssm_in.visit(prefix + "ssm_in", v);
    v(prefix + "ssm_conv1d.weight", conv_weight);
    v(prefix + "ssm_conv1d.bias", conv_bias);
    v(prefix + "ssm_dt.bias", dt_bias);
    v(prefix + "ssm_a", A);
    v(prefix + "ssm_d", Dskip);
    v(prefix + "ssm_norm.weight", norm_weight);
    ssm_out.visit(prefix + "ssm_out", v);
  }

  Linear<E::dim, E::proj, W> ssm_in;
  Tensor<float, DynShape<2>> conv_weight;  // [conv_dim, d_conv]
  Tensor<float, DynShape<1>> conv_bias;    // [conv_dim]
  Tensor<float, Shape<E::heads>> dt_bias;
  Tensor<float, Shape<E::heads, 1>> A;  // −exp(A_log)
  Tensor<float, Shape<E::heads, 1>> Dskip;
  Tensor<float, Shape<E::groups, E::group_size>> norm_weight;
  Linear<E::d_inner, E::dim, W> ssm_out;
  float eps;

 private:
  static const Mamba2Dims& checked(const Mamba2Dims& d) {
    if (d.dim <= 0 || d.d_inner <= 0 || d.d_state <= 0 || d.d_conv <= 0 || d.n_heads <= 0 ||
        d.n_groups <= 0 || d.d_inner % d.n_heads != 0 || d.n_heads % d.n_groups != 0)
      throw value_error("tessel::nn::Mamba2Mixer: invalid dimensions (dim " +
                        std::to_string(d.dim) + ", d_inner " + std::to_string(d.d_inner) +
                        ", d_state " + std::to_string(d.d_state) + ", d_conv " +
                        std::to_string(d.d_conv) + ", n_heads " + std::to_string(d.n_heads) +
                        ", n_groups " + std::to_string(d.n_groups) +
                        "): all positive, n_heads dividing d_inner, n_groups dividing n_heads");
    return d;
  }

  index_t d_state_;
};

}  // namespace tessel::nn
