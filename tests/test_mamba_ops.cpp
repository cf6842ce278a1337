// conv1d and selective_scan: against PyTorch goldens (tools/golden/mamba_ops_golden.py, the
// paper's recurrence as a float64 loop), SIMD against the scalar reference on odd sizes, and a
// prompt against the same tokens fed one step at a time. The kernel table of the Mamba layers
// (conv1d, selective_scan, ssd_scan, silu, silu_mul, gated_group_rms_norm): each cpu_simd<Arch>
// entry against its cpu_scalar one, at every instruction set the build can run.

#include <doctest/doctest.h>

#include "kernel_backends.hpp"

#include <cmath>
#include <random>
#include <string>
#include <tessel/io/formats/npy.hpp>
#include <tessel/ops/activation.hpp>
#include <tessel/ops/conv1d.hpp>
#include <tessel/ops/selective_scan.hpp>
#include <tessel/ops/ssd_scan.hpp>
#include <tuple>
#include <vector>

using namespace tessel;

namespace {

using M = Tensor<float, DynShape<2>>;
using Vec = Tensor<float, DynShape<1>>;
using avx = cpu_simd<cpu_best_arch>;

const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/mamba/";

template <std::size_t R>
Tensor<float, DynShape<R>> load(const std::string& name) {
  return io::NpyFile::open(data_dir + name + ".npy").array().to_tensor<float, R>();
}

M random_matrix(index_t r, index_t c, unsigned seed, float lo = -1.f, float hi = 1.f) {
  M t(r, c);
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = d(g);
  return t;
}
Vec random_vector(index_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  Vec t(n);
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = d(g);
  return t;
}
/// A = -exp(A_log), as a layer computes it at load time.
M negative_exp(const M& a_log) {
  M a(a_log.extent(0), a_log.extent(1));
  for (index_t i = 0; i < a.size(); ++i) a.data()[i] = -std::exp(a_log.data()[i]);
  return a;
}

/// |got - want| <= rel * (|want| + rms(want)) element by element (rms: the outputs' scale, so
/// values that cancel to near zero are not held to a relative bound they cannot meet).
void check_close(const std::string& what, TensorView<const float, DynShape<2>> got,
                 TensorView<const float, DynShape<2>> want, double rel) {
  REQUIRE(got.shape() == want.shape());
  REQUIRE(want.is_contiguous());
  const index_t n = want.size();
  const index_t cols = want.extent(1);
  double ss = 0;
  for (index_t i = 0; i < n; ++i) ss += double(want.data()[i]) * want.data()[i];
  const double scale = std::sqrt(ss / double(std::max<index_t>(n, 1)));
  for (index_t i = 0; i < n; ++i) {
    // got may be a strided view: walk it by (row, col).
    const double g = got.data()[(i / cols) * got.stride(0) + (i % cols) * got.stride(1)];
    const double w = want.data()[i];
    if (!(std::fabs(g - w) <= rel * (std::fabs(w) + scale))) {
      FAIL_CHECK(what << ": element " << i << " (row " << i / cols << ", col " << i % cols
                      << "): got " << g << ", want " << w);
      return;
    }
  }
}

struct ScanCase {
  M u, dt, A, B, C, z;
  Vec D, dt_bias;
  selective_scan_inputs inputs() const {
    selective_scan_inputs in{.u = u, .dt = dt, .A = A, .B = B, .C = C};
    if (D.size()) in.D = D;
    if (dt_bias.size()) in.dt_bias = dt_bias;
    if (z.size()) in.z = z;
    return in;
  }
  /// Row t of every per-token input, as a step.
  selective_scan_step_inputs step(index_t t) const {
    selective_scan_step_inputs s{
        .u = u.view()[t], .dt = dt.view()[t], .A = A, .B = B.view()[t], .C = C.view()[t]};
    if (D.size()) s.D = D;
    if (dt_bias.size()) s.dt_bias = dt_bias;
    if (z.size()) s.z = z.view()[t];
    return s;
  }
};

ScanCase random_scan(index_t L, index_t D, index_t N, unsigned seed, bool gate, bool bias) {
  ScanCase c{random_matrix(L, D, seed),
             random_matrix(L, D, seed + 1, -3.f, 1.f),
             negative_exp(random_matrix(D, N, seed + 2, 0.f, 2.8f)),
             random_matrix(L, N, seed + 3),
             random_matrix(L, N, seed + 4),
             gate ? random_matrix(L, D, seed + 5, -3.f, 3.f) : M(0, 0),
             random_vector(D, seed + 6),
             bias ? random_vector(D, seed + 7, -4.f, -1.f) : Vec(0)};
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------- conv1d

TEST_CASE("conv1d: PyTorch golden, with a carried state (D = 128, L = 64)") {
  const auto x = load<2>("conv_a_x"), w = load<2>("conv_a_w"), s0 = load<2>("conv_a_state0");
  const auto b = load<1>("conv_a_b");
  const auto y_want = load<2>("conv_a_y"), s_want = load<2>("conv_a_state");
  for (int backend = 0; backend < 2; ++backend) {
    CAPTURE(backend);
    M y(x.extent(0), x.extent(1));
    M state = s0.clone();
    if (backend == 0)
      conv1d(cpu_scalar{}, y, x, w, b, state);
    else
      conv1d(avx{}, y, x, w, b, state);
    check_close("conv1d y", y, y_want, 1e-5);
    check_close("conv1d state", state, s_want, 0);  // the state is copied inputs: exact
  }
}

TEST_CASE("conv1d: PyTorch golden, zeros before t = 0 (D = 196, L = 33)") {
  const auto x = load<2>("conv_b_x"), w = load<2>("conv_b_w");
  const auto b = load<1>("conv_b_b");
  const auto y_want = load<2>("conv_b_y");
  M y(x.extent(0), x.extent(1));
  conv1d(cpu_scalar{}, y, x, w, b);
  check_close("conv1d scalar", y, y_want, 1e-5);
  check_close("conv1d simd", conv1d(x, w, b), y_want, 1e-5);
}

TEST_CASE("conv1d: SIMD and threads against the scalar reference, odd sizes") {
  for (index_t D : {1, 7, 9, 37, 203, 1030})
    for (index_t L : {1, 2, 3, 17, 130})
      for (index_t K : {1, 4, 5}) {
        CAPTURE(D);
        CAPTURE(L);
        CAPTURE(K);
        const unsigned seed = static_cast<unsigned>(D * 1000 + L * 10 + K);
        const auto x = random_matrix(L, D, seed), w = random_matrix(D, K, seed + 1);
        const auto b = random_vector(D, seed + 2);
        const auto s0 = random_matrix(K - 1, D, seed + 3);
        M y_ref(L, D), y(L, D);
        M s_ref = s0.clone(), s = s0.clone();
        conv1d(cpu_scalar{}, y_ref, x, w, b, s_ref);
        conv1d(avx{}, y, x, w, b, s);
        check_close("conv1d simd y", y, y_ref, 1e-6);
        check_close("conv1d simd state", s, s_ref, 0);
        conv1d(cpu_scalar{}, y_ref, x, w, b);
        conv1d(avx{}, y, x, w, b);
        check_close("conv1d simd y (no state)", y, y_ref, 1e-6);
      }
}

TEST_CASE("conv1d: a prompt then single steps equals one long prompt") {
  const index_t L = 23, D = 45, K = 4;
  const auto x = random_matrix(L, D, 11), w = random_matrix(D, K, 12);
  const auto b = random_vector(D, 13);
  const auto s0 = random_matrix(K - 1, D, 14);
  M y_all(L, D);
  M s_all = s0.clone();
  conv1d(cpu_scalar{}, y_all, x, w, b, s_all);
  for (index_t split : {0, 1, 2, 3, 10, 23}) {
    CAPTURE(split);
    M s = s0.clone();
    const float* state_buffer = s.data();
    M y(L, D);
    conv1d(y.slice(0, 0, split), x.slice(0, 0, split), w, b, s);
    for (index_t t = split; t < L; ++t) conv1d_step(s, x.view()[t], w, b, y.view()[t]);
    CHECK(s.data() == state_buffer);  // the state stays in the caller's buffer
    check_close("prompt + steps", y, y_all, 1e-6);
    check_close("final state", s, s_all, 0);
  }
}

TEST_CASE("conv1d: strided rows (x and y inside wider matrices)") {
  const index_t L = 19, D = 37, K = 4;
  const auto xz = random_matrix(L, 2 * D + 3, 21), w = random_matrix(D, K, 22);
  const auto b = random_vector(D, 23);
  const M x = [&] {
    M t(L, D);
    for (index_t i = 0; i < L; ++i)
      for (index_t j = 0; j < D; ++j) t(i, j) = xz(i, j + 3);
    return t;
  }();
  M wide(L, 2 * D);
  conv1d(wide.slice(1, D, 2 * D), xz.slice(1, 3, 3 + D), w, b);
  M y_ref(L, D);
  conv1d(cpu_scalar{}, y_ref, x, w, b);
  check_close("strided conv1d", wide.slice(1, D, 2 * D), y_ref, 1e-6);
}

TEST_CASE("conv1d: shape errors name the op and the shapes") {
  const auto x = random_matrix(8, 16, 1), w = random_matrix(16, 4, 2);
  const auto b = random_vector(16, 3);
  M y(8, 16), bad_y(8, 15), bad_state(2, 16);
  CHECK_THROWS_AS(conv1d(bad_y, x, w, b), shape_error);
  CHECK_THROWS_WITH_AS(conv1d(y, x, random_matrix(15, 4, 4), b),
                       doctest::Contains("conv1d: weight has shape [15, 4], expected [16, 4]"),
                       shape_error);
  CHECK_THROWS_WITH_AS(conv1d(y, x, w, b, bad_state),
                       doctest::Contains("state has shape [2, 16], expected [3, 16] (from x "
                                         "of shape [8, 16] and weight of shape [16, 4])"),
                       shape_error);
  Vec yt(16);
  CHECK_THROWS_AS(conv1d_step(bad_state, x.view()[0], w, b, yt), shape_error);
  CHECK_THROWS_AS(conv1d(y, x, w, random_vector(17, 5)), shape_error);
}

// -------------------------------------------------------------------------- selective_scan

TEST_CASE("selective_scan: PyTorch golden, gate, dt_bias, initial state (D = 128, L = 64)") {
  ScanCase c{load<2>("scan_a_u"), load<2>("scan_a_dt"),     negative_exp(load<2>("scan_a_A_log")),
             load<2>("scan_a_B"), load<2>("scan_a_C"),      load<2>("scan_a_z"),
             load<1>("scan_a_D"), load<1>("scan_a_dt_bias")};
  const auto h0 = load<2>("scan_a_h0"), y_want = load<2>("scan_a_y"), h_want = load<2>("scan_a_h");
  for (int backend = 0; backend < 2; ++backend) {
    CAPTURE(backend);
    M y(c.u.extent(0), c.u.extent(1));
    M h = h0.clone();
    if (backend == 0)
      selective_scan(cpu_scalar{}, y, c.inputs(), h);
    else
      selective_scan(avx{}, y, c.inputs(), h);
    check_close("scan y", y, y_want, 1e-4);
    check_close("scan h", h, h_want, 1e-4);
  }
}

TEST_CASE("selective_scan: PyTorch golden, no gate, no dt_bias, softplus past 20 (D = 196)") {
  ScanCase c{load<2>("scan_b_u"),
             load<2>("scan_b_dt"),
             negative_exp(load<2>("scan_b_A_log")),
             load<2>("scan_b_B"),
             load<2>("scan_b_C"),
             M(0, 0),
             load<1>("scan_b_D"),
             Vec(0)};
  const auto y_want = load<2>("scan_b_y"), h_want = load<2>("scan_b_h");
  const index_t D = c.u.extent(1), N = c.A.extent(1);
  for (int backend = 0; backend < 2; ++backend) {
    CAPTURE(backend);
    M h(D, N);  // zeros
    M y = backend == 0 ? M(c.u.extent(0), D) : selective_scan(c.inputs(), h);
    if (backend == 0) selective_scan(cpu_scalar{}, y, c.inputs(), h);
    check_close("scan y", y, y_want, 1e-4);
    check_close("scan h", h, h_want, 1e-4);
  }
}

TEST_CASE("selective_scan: both SIMD layouts and threads against the scalar reference") {
  using Arch = cpu_best_arch;
  for (index_t N : {16, 5, 1, 70})
    for (index_t D : {1, 7, 9, 37, 203, 1030})
      for (index_t L : {1, 3, 17, 64}) {
        CAPTURE(N);
        CAPTURE(D);
        CAPTURE(L);
        const bool gate = (D + L) % 2 == 0;
        const auto c = random_scan(L, D, N, static_cast<unsigned>(N * 7 + D * 3 + L), gate, !gate);
        const auto h0 = random_matrix(D, N, 99);
        M y_ref(L, D);
        M h_ref = h0.clone();
        detail::scan_problem p;
        selective_scan(cpu_scalar{}, y_ref, c.inputs(), h_ref);
        // Each layout directly (automatic picks by L and N), then through the public call.
        for (auto v : {detail::scan_variant::over_d, detail::scan_variant::over_n}) {
          if (v == detail::scan_variant::over_d && N > detail::scan_max_lanes_n) continue;
          CAPTURE(static_cast<int>(v));
          M y(L, D);
          M h = h0.clone();
          const auto in = c.inputs();
          p.L = L, p.D = D, p.N = N;
          p.u = in.u.data(), p.ld_u = D, p.dt = in.dt.data(), p.ld_dt = D;
          p.A = in.A.data(), p.ld_A = N, p.B = in.B.data(), p.ld_B = N;
          p.C = in.C.data(), p.ld_C = N, p.Dskip = in.D.data(), p.dt_bias = in.dt_bias.data();
          p.z = in.z.data(), p.ld_z = D, p.y = y.data(), p.ld_y = D, p.h = h.data(), p.ld_h = N;
          detail::scan_simd<Arch>(p, v);
          check_close("simd y", y, y_ref, 1e-5);
          check_close("simd h", h, h_ref, 1e-5);
        }
        M y(L, D);
        M h = h0.clone();
        selective_scan(y, c.inputs(), h);
        check_close("cpu y", y, y_ref, 1e-5);
        check_close("cpu h", h, h_ref, 1e-5);
      }
}

TEST_CASE("selective_scan: a prompt then single steps equals one long prompt") {
  const index_t L = 29, D = 51, N = 16;
  for (bool gate : {false, true}) {
    CAPTURE(gate);
    const auto c = random_scan(L, D, N, 7, gate, true);
    const auto h0 = random_matrix(D, N, 8);
    M y_all(L, D);
    M h_all = h0.clone();
    selective_scan(cpu_scalar{}, y_all, c.inputs(), h_all);
    for (index_t split : {0, 1, 5, 28, 29}) {
      CAPTURE(split);
      M h = h0.clone();
      const float* state_buffer = h.data();
      M y(L, D);
      auto head = c.inputs();
      head.u = c.u.slice(0, 0, split), head.dt = c.dt.slice(0, 0, split);
      head.B = c.B.slice(0, 0, split), head.C = c.C.slice(0, 0, split);
      if (gate) head.z = c.z.slice(0, 0, split);
      selective_scan(y.slice(0, 0, split), head, h);
      for (index_t t = split; t < L; ++t) selective_scan_step(y.view()[t], c.step(t), h);
      CHECK(h.data() == state_buffer);  // the state stays in the caller's buffer
      check_close("prompt + steps y", y, y_all, 1e-5);
      check_close("prompt + steps h", h, h_all, 1e-5);
    }
    // The scalar step against the scalar prompt: the same arithmetic, so equal exactly.
    M h = h0.clone();
    M y(L, D);
    for (index_t t = 0; t < L; ++t) selective_scan_step(cpu_scalar{}, y.view()[t], c.step(t), h);
    check_close("scalar steps y", y, y_all, 0);
    check_close("scalar steps h", h, h_all, 0);
  }
}

TEST_CASE("selective_scan: inputs as column slices of wider projections") {
  // x_proj's output [L, dt_rank + 2N] holds dt | B | C; in_proj's [L, 2D] holds x | z.
  const index_t L = 13, D = 40, N = 16, R = 5;
  const auto xz = random_matrix(L, 2 * D, 31), dbc = random_matrix(L, R + 2 * N, 32);
  const auto dt = random_matrix(L, D, 33, -3.f, 0.f);
  const auto A = negative_exp(random_matrix(D, N, 34, 0.f, 2.f));
  const auto Dk = random_vector(D, 35);
  const auto h0 = random_matrix(D, N, 36);
  auto copy = [](auto v) {
    M t(v.extent(0), v.extent(1));
    for (index_t i = 0; i < t.extent(0); ++i)
      for (index_t j = 0; j < t.extent(1); ++j) t(i, j) = v(i, j);
    return t;
  };
  const M u = copy(xz.slice(1, 0, D)), z = copy(xz.slice(1, D, 2 * D));
  const M B = copy(dbc.slice(1, R, R + N)), C = copy(dbc.slice(1, R + N, R + 2 * N));
  M y_ref(L, D);
  M h_ref = h0.clone();
  selective_scan(cpu_scalar{}, y_ref, {.u = u, .dt = dt, .A = A, .B = B, .C = C, .D = Dk, .z = z},
                 h_ref);
  M out(L, 3 * D);
  M h = h0.clone();
  selective_scan(out.slice(1, D, 2 * D),
                 {.u = xz.slice(1, 0, D),
                  .dt = dt,
                  .A = A,
                  .B = dbc.slice(1, R, R + N),
                  .C = dbc.slice(1, R + N, R + 2 * N),
                  .D = Dk,
                  .z = xz.slice(1, D, 2 * D)},
                 h);
  check_close("strided y", out.slice(1, D, 2 * D), y_ref, 1e-5);
  check_close("strided h", h, h_ref, 1e-5);
}

TEST_CASE("selective_scan: shape errors name the op and the shapes") {
  const auto c = random_scan(8, 16, 4, 1, true, true);
  M y(8, 16), h(16, 4), bad_h(16, 5), bad_y(7, 16);
  CHECK_NOTHROW(selective_scan(y, c.inputs(), h));
  CHECK_THROWS_WITH_AS(selective_scan(y, c.inputs(), bad_h),
                       doctest::Contains("selective_scan: h has shape [16, 5], expected [16, 4] "
                                         "(from A of shape [16, 4])"),
                       shape_error);
  CHECK_THROWS_AS(selective_scan(bad_y, c.inputs(), h), shape_error);
  auto in = c.inputs();
  const auto B_bad = random_matrix(8, 5, 2);
  in.B = B_bad;
  CHECK_THROWS_WITH_AS(selective_scan(y, in, h),
                       doctest::Contains("B has shape [8, 5], expected [8, 4]"), shape_error);
  in = c.inputs();
  const auto D_bad = random_vector(15, 3);
  in.D = D_bad;
  CHECK_THROWS_AS(selective_scan(y, in, h), shape_error);
  in = c.inputs();
  in.A = c.A.transpose();  // [4, 16] with a non-unit last stride
  CHECK_THROWS_AS(selective_scan(y, in, h), shape_error);
  Vec yt(16), yt_bad(15);
  CHECK_NOTHROW(selective_scan_step(yt, c.step(0), h));
  CHECK_THROWS_AS(selective_scan_step(yt_bad, c.step(0), h), shape_error);
  CHECK_THROWS_AS(selective_scan_step(yt, c.step(0), bad_h), shape_error);
}

// ---------------------------------------------------------------------------- kernel table

namespace {

using test::random_floats;
using test::table_backends;

void check_vec(const std::string& what, const std::vector<float>& got,
               const std::vector<float>& want, double rel) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= rel * (std::fabs(double(want[i])) + 1.0))) {
      FAIL_CHECK(what << ": element " << i << ": got " << got[i] << ", want " << want[i]);
      return;
    }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("kernel table: each SIMD entry equals its scalar reference, odd sizes",
                          Backend, kernel_table) {
  CAPTURE(std::string(Backend::name()));
  SUBCASE("silu and silu_mul (one row; past a parallel chunk)") {
    for (index_t n : {1, 7, 15, 33, 1001, 40003}) {
      CAPTURE(n);
      const auto x0 = random_floats(n, unsigned(n)), m = random_floats(n, unsigned(n) + 1);
      auto want = x0, got = x0;
      kernel<op::silu, cpu_scalar>::run(want.data(), n);
      kernel<op::silu, Backend>::run(got.data(), n);
      check_vec("silu", got, want, 1e-6);
      std::vector<float> o_ref(x0.size()), o(x0.size());
      kernel<op::silu_mul, cpu_scalar>::run(x0.data(), m.data(), o_ref.data(), n);
      kernel<op::silu_mul, Backend>::run(x0.data(), m.data(), o.data(), n);
      check_vec("silu_mul", o, o_ref, 1e-6);
      auto in_place = m;  // out aliases m, as the Mamba-2 gate uses it
      kernel<op::silu_mul, Backend>::run(x0.data(), in_place.data(), in_place.data(), n);
      check_vec("silu_mul in place", in_place, o_ref, 1e-6);
    }
  }
  SUBCASE("gated_group_rms_norm (strided rows, 1 to 3 groups)") {
    struct Dims {
      index_t M, Di, G;
    };
    for (const auto d : {Dims{1, 1, 1}, Dims{3, 9, 3}, Dims{5, 46, 2}, Dims{7, 129, 3}}) {
      CAPTURE(d.M);
      CAPTURE(d.Di);
      CAPTURE(d.G);
      const index_t ld_z = d.Di + 5, ld_y = d.Di + 3;
      const auto z = random_floats(d.M * ld_z, 3), w = random_floats(d.Di, 4, 0.5f, 1.5f);
      const auto y0 = random_floats(d.M * ld_y, 5);
      auto want = y0, got = y0;
      kernel<op::gated_group_rms_norm, cpu_scalar>::run(z.data(), ld_z, want.data(), ld_y, d.M,
                                                        d.Di, d.G, w.data(), 1e-5f);
      kernel<op::gated_group_rms_norm, Backend>::run(z.data(), ld_z, got.data(), ld_y, d.M, d.Di,
                                                     d.G, w.data(), 1e-5f);
      check_vec("gated_group_rms_norm", got, want, 1e-5);
    }
  }
  SUBCASE("conv1d (with a state; K over the register limit)") {
    for (index_t D : {1, 9, 203})
      for (index_t L : {1, 17})
        for (index_t K : {4, 17}) {
          CAPTURE(D);
          CAPTURE(L);
          CAPTURE(K);
          const auto x = random_matrix(L, D, 1), w = random_matrix(D, K, 2);
          const auto b = random_vector(D, 3);
          const auto s0 = random_matrix(K - 1, D, 4);
          M y_ref(L, D), y(L, D);
          M s_ref = s0.clone(), s = s0.clone();
          conv1d(cpu_scalar{}, y_ref, x, w, b, s_ref);
          conv1d(Backend{}, y, x, w, b, s);
          check_close("conv1d y", y, y_ref, 1e-6);
          check_close("conv1d state", s, s_ref, 0);
        }
  }
  SUBCASE("selective_scan (over channels; over lanes for N 70)") {
    for (index_t N : {5, 70})
      for (index_t D : {7, 37})
        for (index_t L : {1, 17}) {
          CAPTURE(N);
          CAPTURE(D);
          CAPTURE(L);
          const auto c = random_scan(L, D, N, unsigned(N + D + L), L > 1, true);
          const auto h0 = random_matrix(D, N, 9);
          M y_ref(L, D), y(L, D);
          M h_ref = h0.clone(), h = h0.clone();
          selective_scan(cpu_scalar{}, y_ref, c.inputs(), h_ref);
          selective_scan(Backend{}, y, c.inputs(), h);
          check_close("scan y", y, y_ref, 1e-5);
          check_close("scan h", h, h_ref, 1e-5);
        }
  }
  SUBCASE("ssd_scan (steps over N, prompts over P)") {
    struct Dims {
      index_t L, H, P, N, G;
    };
    for (const auto d : {Dims{1, 2, 8, 5, 1}, Dims{3, 4, 16, 9, 2}, Dims{19, 3, 16, 33, 1},
                         Dims{17, 2, 12, 7, 2}}) {
      CAPTURE(d.L);
      CAPTURE(d.P);
      CAPTURE(d.N);
      const index_t HP = d.H * d.P, GN = d.G * d.N;
      const auto x = random_matrix(d.L, HP, 11), dt = random_matrix(d.L, d.H, 12, -3.f, 1.f);
      const auto B = random_matrix(d.L, GN, 13), C = random_matrix(d.L, GN, 14);
      auto A = random_vector(d.H, 15, 0.f, 2.f);
      for (index_t i = 0; i < d.H; ++i) A.data()[i] = -std::exp(A.data()[i]);
      const auto Dk = random_vector(d.H, 16), bias = random_vector(d.H, 17, -3.f, 0.f);
      const ssd_scan_inputs in{
          .x = x, .dt = dt, .A = A, .B = B, .C = C, .D = Dk, .dt_bias = bias, .groups = d.G};
      Tensor<float, DynShape<3>> S_ref(d.H, d.P, d.N), S(d.H, d.P, d.N);
      const auto s0 = random_floats(S.size(), 18, -1.f, 1.f);
      std::copy(s0.begin(), s0.end(), S_ref.data());
      std::copy(s0.begin(), s0.end(), S.data());
      M y_ref(d.L, HP), y(d.L, HP);
      ssd_scan(cpu_scalar{}, y_ref, in, S_ref);
      ssd_scan(Backend{}, y, in, S);
      check_close("ssd y", y, y_ref, 2e-5);
      const TensorView<const float, DynShape<2>> s_ref2(S_ref.data(), DynShape<2>(d.H * d.P, d.N),
                                                        {d.N, 1});
      const TensorView<const float, DynShape<2>> s2(S.data(), DynShape<2>(d.H * d.P, d.N),
                                                    {d.N, 1});
      check_close("ssd S", s2, s_ref2, 2e-5);
    }
  }
}
TEST_CASE_TEMPLATE_APPLY(kernel_table, table_backends);
