// Mamba-2: the SSD scan kernels (SIMD against the scalar reference and both against PyTorch
// goldens), nn::Mamba2Mixer and models::Mamba2 against tools/golden/mamba2_golden.py (the
// equations as a sequential float64 loop over random weights), loaded from the HF-named
// safetensors files the script writes and from GGUF `mamba2` files written here by tessel's
// writer; a prompt against the same tokens one step at a time; no allocation while decoding;
// bad files. Every golden runs on the scalar reference backend (cpu_scalar) and on
// default_backend (SIMD), with the same tolerances.

// The counting operator new below is malloc-based and its delete calls free: GCC 12 flags
// every inlined new/delete pair of the file as mismatched, a false positive for replacements.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <tessel/io/formats/gguf_writer.hpp>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/load/load_mamba.hpp>
#include <tessel/io/load/load_mamba2.hpp>
#include <tessel/models/mamba2.hpp>
#include <tessel/ops/ssd_scan.hpp>
#include <vector>

#include "two_states.hpp"

// Every allocation of the program is counted, so a test can assert that a loop makes none.
namespace {
std::atomic<long> g_allocations{0};
}
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void* operator new(std::size_t n, std::align_val_t a) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return operator new(n, a);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

using namespace tessel;

namespace {

const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/mamba/";
using Model = models::Mamba2<models::Mamba2Config, float>;
using tessel::detail::ssd_variant;

template <std::size_t R>
Tensor<float, DynShape<R>> load(const std::string& name) {
  return io::NpyFile::open(data_dir + name + ".npy").array().to_tensor<float, R>();
}
bool exists(const std::string& name) {
  return std::filesystem::exists(data_dir + name + ".npy");
}

std::vector<int> load_tokens(const std::string& name) {
  const auto t = load<1>(name);
  std::vector<int> ids(std::size_t(t.size()));
  for (index_t i = 0; i < t.size(); ++i) ids[std::size_t(i)] = int(t.data()[i]);
  return ids;
}

/// |got - want| <= rel · (|want| + rms(want)) for every element (rms: the outputs' scale).
double check_close(const std::string& what, const float* got, const float* want, index_t n,
                   index_t cols, double rel) {
  double ss = 0;
  for (index_t i = 0; i < n; ++i) ss += double(want[i]) * want[i];
  const double scale = std::sqrt(ss / double(std::max<index_t>(n, 1)));
  double worst = 0;
  for (index_t i = 0; i < n; ++i) {
    const double err = std::fabs(double(got[i]) - want[i]) / (std::fabs(want[i]) + scale);
    worst = std::max(worst, err);
    if (!(err <= rel)) {
      FAIL_CHECK(what << ": element " << i << " (row " << i / cols << ", col " << i % cols
                      << "): got " << got[i] << ", want " << want[i]);
      return worst;
    }
  }
  MESSAGE(what << ": worst relative error " << worst);
  return worst;
}

std::string model_path(const std::string& tag) {
  return data_dir + "mamba2_" + tag + "/model.safetensors";
}
Model load_hf(const std::string& tag) {
  return io::load_safetensors_mamba2<float>(model_path(tag));
}
/// The same model running on Backend.
template <class Backend>
models::Mamba2<models::Mamba2Config, float, Backend> load_hf_on(const std::string& tag) {
  return io::load_mamba2_safetensors<models::Mamba2<models::Mamba2Config, float, Backend>>(
      io::SafetensorsCheckpoint::open(model_path(tag)));
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / name).string();
}

/// The model written as a GGUF `mamba2` file by tessel's writer, with llama.cpp's names/keys.
std::string write_gguf(Model& m, const std::string& name,
                       const std::function<void(io::GGUFWriter&)>& extra = {},
                       index_t groups_key = -1) {
  io::GGUFWriter w;
  const auto& c = m.config();
  w.set("general.architecture", "mamba2");
  w.set("mamba2.embedding_length", std::uint32_t(c.dim));
  w.set("mamba2.block_count", std::uint32_t(c.layers));
  w.set("mamba2.ssm.conv_kernel", std::uint32_t(c.d_conv));
  w.set("mamba2.ssm.inner_size", std::uint32_t(c.d_inner));
  w.set("mamba2.ssm.state_size", std::uint32_t(c.d_state));
  w.set("mamba2.ssm.time_step_rank", std::uint32_t(c.n_heads));
  w.set("mamba2.ssm.group_count", std::uint32_t(groups_key >= 0 ? groups_key : c.n_groups));
  w.set("mamba2.attention.layer_norm_rms_epsilon", c.norm_eps);
  m.visit([&](const std::string& n, auto& t) { w.add_tensor(n, t.view()); });
  if (extra) extra(w);
  const std::string path = temp_path(name);
  w.write(path);
  return path;
}

// ------------------------------------------------------------------------------ the scan

/// A random scan problem with its own storage.
struct ScanCase {
  index_t L, H, P, N, G;
  std::vector<float> x, dt, A, B, C, D, bias, S0;
  ScanCase(index_t L_, index_t H_, index_t P_, index_t N_, index_t G_, std::uint32_t seed)
      : L(L_), H(H_), P(P_), N(N_), G(G_) {
    std::mt19937 g(seed);
    std::normal_distribution<float> nd;
    std::uniform_real_distribution<float> ud(1.f, 16.f);
    const auto fill = [&](std::vector<float>& v, std::size_t n, float s, float o) {
      v.resize(n);
      for (auto& e : v) e = o + s * nd(g);
    };
    fill(x, std::size_t(L * H * P), 1, 0);
    fill(dt, std::size_t(L * H), 1, -2);
    A.resize(std::size_t(H));
    for (auto& a : A) a = -ud(g);
    fill(B, std::size_t(L * G * N), 1, 0);
    fill(C, std::size_t(L * G * N), 1, 0);
    fill(D, std::size_t(H), 0.1f, 1);
    fill(bias, std::size_t(H), 0.5f, 0);
    fill(S0, std::size_t(H * P * N), 0.5f, 0);
  }
  tessel::detail::ssd_problem problem(float* y, float* S, index_t t0 = 0, index_t n = -1) const {
    tessel::detail::ssd_problem p;
    p.L = n < 0 ? L : n, p.H = H, p.P = P, p.N = N, p.G = G;
    p.x = x.data() + t0 * H * P, p.ld_x = H * P;
    p.dt = dt.data() + t0 * H, p.ld_dt = H;
    p.A = A.data();
    p.B = B.data() + t0 * G * N, p.ld_B = G * N;
    p.C = C.data() + t0 * G * N, p.ld_C = G * N;
    p.Dskip = D.data(), p.dt_bias = bias.data();
    p.y = y + t0 * H * P, p.ld_y = H * P;
    p.S = S;
    return p;
  }
};

/// Elementwise within tol · (|want| + 1) (the values are O(1)).
void check_near(const std::vector<float>& got, const std::vector<float>& want, double tol,
                const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * (std::fabs(want[i]) + 1.0))) {
      FAIL_CHECK(what << ": element " << i << ": got " << got[i] << ", want " << want[i]);
      return;
    }
}

/// A golden scan from the script: y and the final state, for a backend and variant.
template <class Backend>
void golden_scan(const std::string& tag, Backend be, ssd_variant v) {
  const std::string pre = "mamba2_scan_" + tag + "_";
  const auto x = load<2>(pre + "x"), dt = load<2>(pre + "dt"), B = load<2>(pre + "B"),
             C = load<2>(pre + "C"), want_y = load<2>(pre + "y");
  const auto A = load<1>(pre + "A");
  const auto want_S = load<3>(pre + "S");
  auto S = load<3>(pre + "S0");
  const bool has_d = exists(pre + "D"), has_bias = exists(pre + "dt_bias");
  Tensor<float, DynShape<1>> D(has_d ? load<1>(pre + "D") : Tensor<float, DynShape<1>>(0));
  Tensor<float, DynShape<1>> bias(has_bias ? load<1>(pre + "dt_bias")
                                           : Tensor<float, DynShape<1>>(0));
  const index_t G = B.extent(1) / S.extent(2);
  ssd_scan_inputs in{.x = x, .dt = dt, .A = A, .B = B, .C = C, .groups = G};
  if (has_d) in.D = D;
  if (has_bias) in.dt_bias = bias;
  Tensor<float, DynShape<2>> y(x.extent(0), x.extent(1));
  ssd_scan(be, y.view(), in, S.view(), v);
  const index_t cols = y.extent(1);
  const double e1 = check_close("scan " + tag + " y (" + Backend::name() + ")", y.data(),
                                want_y.data(), y.size(), cols, 1e-4);
  const double e2 =
      check_close("scan " + tag + " state", S.data(), want_S.data(), S.size(), S.extent(2), 1e-4);
  CHECK(e1 <= 1e-4);
  CHECK(e2 <= 1e-4);
}

}  // namespace

TEST_CASE("ssd_scan: PyTorch goldens (G 2, P 16, N 16, D and dt_bias; G 1, P 12, N 5)") {
  for (const char* tag : {"a", "b"}) {
    golden_scan(tag, cpu_scalar{}, ssd_variant::automatic);
    golden_scan(tag, default_backend{}, ssd_variant::automatic);
    golden_scan(tag, default_backend{}, ssd_variant::over_n);
    golden_scan(tag, default_backend{}, ssd_variant::over_p);       // P 12: falls back to over_n
    golden_scan(tag, default_backend{}, ssd_variant::over_p_regs);  // the same
  }
}

TEST_CASE("ssd_scan: SIMD kernels equal the scalar reference (odd sizes, tails, groups)") {
  struct Dims {
    index_t L, H, P, N, G;
  };
  const Dims cases[] = {{1, 1, 1, 1, 1},    {3, 2, 8, 5, 1},      {17, 4, 16, 16, 2},
                        {64, 6, 12, 33, 3}, {9, 8, 64, 128, 1},   {40, 3, 24, 70, 1},
                        {5, 16, 8, 9, 4},   {64, 24, 64, 128, 1}, {70, 2, 16, 19, 2},
                        {33, 4, 32, 8, 1}};
  std::uint32_t seed = 1;
  for (const auto& d : cases) {
    const ScanCase sc(d.L, d.H, d.P, d.N, d.G, seed++);
    std::vector<float> y_ref(std::size_t(d.L * d.H * d.P)), S_ref = sc.S0;
    tessel::detail::ssd_run(cpu_scalar{}, sc.problem(y_ref.data(), S_ref.data()));
    for (const auto v : {ssd_variant::over_n, ssd_variant::over_p, ssd_variant::over_p_regs,
                         ssd_variant::automatic}) {
      CAPTURE(d.L);
      CAPTURE(d.H);
      CAPTURE(d.P);
      CAPTURE(d.N);
      CAPTURE(d.G);
      CAPTURE(int(v));
      std::vector<float> y(y_ref.size()), S = sc.S0;
      tessel::detail::ssd_run(default_backend{}, sc.problem(y.data(), S.data()), v);
      check_near(y, y_ref, 2e-5, "y");
      check_near(S, S_ref, 2e-5, "S");
    }
  }
}

TEST_CASE("ssd_scan: a prompt then single steps equals the whole prompt") {
  const ScanCase sc(50, 8, 16, 32, 2, 77);
  std::vector<float> y_all(std::size_t(50 * 8 * 16)), S_all = sc.S0;
  tessel::detail::ssd_run(default_backend{}, sc.problem(y_all.data(), S_all.data()));
  for (const index_t split : {index_t{0}, index_t{1}, index_t{13}, index_t{49}}) {
    CAPTURE(split);
    std::vector<float> y(y_all.size()), S = sc.S0;
    if (split > 0)
      tessel::detail::ssd_run(default_backend{}, sc.problem(y.data(), S.data(), 0, split));
    const index_t HP = sc.H * sc.P, GN = sc.G * sc.N;
    Tensor<float, DynShape<3>> St(sc.H, sc.P, sc.N);
    std::copy(S.begin(), S.end(), St.data());
    const TensorView<const float, DynShape<1>> A(sc.A.data(), DynShape<1>(sc.H));
    for (index_t t = split; t < sc.L; ++t) {
      ssd_scan_step_inputs in{
          .x = TensorView<const float, DynShape<1>>(sc.x.data() + t * HP, DynShape<1>(HP)),
          .dt = TensorView<const float, DynShape<1>>(sc.dt.data() + t * sc.H, DynShape<1>(sc.H)),
          .A = A,
          .B = TensorView<const float, DynShape<1>>(sc.B.data() + t * GN, DynShape<1>(GN)),
          .C = TensorView<const float, DynShape<1>>(sc.C.data() + t * GN, DynShape<1>(GN)),
          .D = TensorView<const float, DynShape<1>>(sc.D.data(), DynShape<1>(sc.H)),
          .dt_bias = TensorView<const float, DynShape<1>>(sc.bias.data(), DynShape<1>(sc.H)),
          .groups = sc.G};
      ssd_scan_step(TensorView<float, DynShape<1>>(y.data() + t * HP, DynShape<1>(HP)), in,
                    St.view());
    }
    std::copy(St.data(), St.data() + St.size(), S.begin());
    check_near(y, y_all, 1e-5, "y");
    check_near(S, S_all, 1e-5, "S");
  }
}

TEST_CASE("ssd_scan: shape errors") {
  Tensor<float, DynShape<2>> x(4, 32), dt(4, 2), B(4, 16), C(4, 16), y(4, 32);
  Tensor<float, DynShape<1>> A(2);
  Tensor<float, DynShape<3>> S(2, 16, 16), Sbad(2, 16, 8);
  ssd_scan_inputs in{.x = x, .dt = dt, .A = A, .B = B, .C = C, .groups = 1};
  CHECK_NOTHROW(ssd_scan(y.view(), in, S.view()));
  CHECK_THROWS_AS(ssd_scan(y.view(), in, Sbad.view()), shape_error);
  in.groups = 3;  // does not divide B's 16 columns or the 2 heads
  CHECK_THROWS_AS(ssd_scan(y.view(), in, S.view()), shape_error);
  in.groups = 1;
  Tensor<float, DynShape<2>> dt3(4, 3);
  in.dt = dt3;
  CHECK_THROWS_AS(ssd_scan(y.view(), in, S.view()), shape_error);
  in.dt = dt;
  Tensor<float, DynShape<2>> C5(5, 16);
  in.C = C5;
  try {
    ssd_scan(y.view(), in, S.view());
    FAIL("no error");
  } catch (const shape_error& e) {
    MESSAGE(std::string(e.what()));
    CHECK(std::string(e.what()).find("ssd_scan: C has shape [5, 16]") != std::string::npos);
  }
}

// ------------------------------------------------------------------------------ the mixer

TEST_CASE_TEMPLATE("Mamba2Mixer: PyTorch golden (layer 0, 48 rows, fresh state), 1 and 2 groups",
                   Backend, cpu_scalar, default_backend) {
  for (const std::string tag : {"g1", "g2"}) {
    CAPTURE(tag);
    const Model m = load_hf(tag);
    const auto& mixer = m.blk[0].mixer;
    const auto u = load<2>("mamba2_" + tag + "_mixer_in"),
               want = load<2>("mamba2_" + tag + "_mixer_out");
    const index_t L = u.extent(0), D = u.extent(1);
    REQUIRE(D == mixer.dim());
    CHECK(mixer.d_inner() == 128);
    CHECK(mixer.d_state() == 16);
    CHECK(mixer.d_conv() == 4);
    CHECK(mixer.n_heads() == 8);
    CHECK(mixer.headdim() == 16);
    CHECK(mixer.n_groups() == (tag == "g1" ? 1 : 2));
    nn::Mamba2State st = mixer.make_state();
    std::vector<float> scratch(std::size_t(mixer.scratch_floats(L))), y(std::size_t(L * D));
    mixer.forward(Backend{}, nn::row_view(u.data(), L, D), st,
                  nn::scratch_view(scratch.data(), index_t(scratch.size())),
                  nn::row_view(y.data(), L, D));
    CHECK(check_close("mixer " + tag + " " + Backend::name(), y.data(), want.data(), L * D, D,
                      1e-4) <= 1e-4);

    nn::Mamba2State s2 = mixer.make_state();
    std::vector<float> y2(std::size_t(L * D));
    mixer.forward(Backend{}, nn::row_view(u.data(), 17, D), s2,
                  nn::scratch_view(scratch.data(), index_t(scratch.size())),
                  nn::row_view(y2.data(), 17, D));
    for (index_t t = 17; t < L; ++t)
      mixer.forward(Backend{}, nn::row_view(u.data() + t * D, 1, D), s2,
                    nn::scratch_view(scratch.data(), index_t(scratch.size())),
                    nn::row_view(y2.data() + t * D, 1, D));
    CHECK(check_close("mixer by steps " + tag, y2.data(), want.data(), L * D, D, 1e-4) <= 1e-4);
  }
}

// ------------------------------------------------------------------------------ the model

namespace {
struct Tiny2 {  // mamba2_g1's dimensions as compile-time constants
  static constexpr int dim = 64, layers = 2, vocab = 96, d_inner = 128, d_state = 16, d_conv = 4,
                       n_heads = 8, n_groups = 1;
};
struct Wrong2 {
  static constexpr int dim = 64, layers = 2, vocab = 96, d_inner = 128, d_state = 16, d_conv = 4,
                       n_heads = 8, n_groups = 2;
};
}  // namespace

TEST_CASE_TEMPLATE("Mamba2: logits from the HF safetensors files equal PyTorch's", Backend,
                   cpu_scalar, default_backend) {
  for (const std::string tag : {"g1", "g2"}) {
    CAPTURE(tag);
    const auto m = load_hf_on<Backend>(tag);
    CHECK(m.config().dim == 64);
    CHECK(m.config().layers == 2);
    CHECK(m.config().vocab == 96);
    CHECK(m.config().n_heads == 8);
    CHECK(m.config().n_groups == (tag == "g1" ? 1 : 2));
    CHECK(m.output.has_value() == (tag == "g2"));  // g2 has its own lm_head
    const auto ids = load_tokens("mamba2_" + tag + "_tokens");
    const auto want = load<2>("mamba2_" + tag + "_logits");
    const index_t n = index_t(ids.size()), V = m.vocab();
    std::vector<float> all(std::size_t(n * V));
    auto s = m.new_state();
    const auto last = m.forward(s, std::span<const int>(ids), 0, all.data());
    CHECK(check_close("logits " + tag, all.data(), want.data(), n * V, V, 1e-4) <= 1e-4);
    check_close("last logits", last.data(), want.data() + (n - 1) * V, V, V, 1e-4);
    CHECK(s.position() == n);
  }
}

TEST_CASE_TEMPLATE("Mamba2: a GGUF file written by tessel loads to the same logits", Backend,
                   cpu_scalar, default_backend) {
  for (const std::string tag : {"g1", "g2"}) {
    CAPTURE(tag);
    Model written = load_hf(tag);
    const std::string path = write_gguf(written, "tessel_test_mamba2_" + tag + ".gguf");
    const auto hf = load_hf_on<Backend>(tag);  // the same backend: bit for bit
    auto g = io::load_mamba2_gguf<models::Mamba2<models::Mamba2Config, float, Backend>>(
        io::GGUFFile::open(path));
    CHECK(g.config().n_heads == 8);
    CHECK(g.config().n_groups == hf.config().n_groups);
    CHECK(g.output.has_value() == hf.output.has_value());
    {  // llama.cpp's shapes: ssm_a / ssm_d [H, 1], ssm_norm [G, d_inner / G]
      const auto f = io::GGUFFile::open(path);
      CHECK(f.tensor("blk.0.ssm_a").shape() == std::vector<std::int64_t>{8, 1});
      CHECK(f.tensor("blk.0.ssm_d").shape() == std::vector<std::int64_t>{8, 1});
      CHECK(f.tensor("blk.0.ssm_norm.weight").shape() ==
            std::vector<std::int64_t>{hf.config().n_groups, 128 / hf.config().n_groups});
      CHECK(f.tensor("blk.0.ssm_conv1d.weight").shape() ==
            std::vector<std::int64_t>{128 + 2 * 16 * hf.config().n_groups, 4});
    }
    // ssm_a is A = −exp(A_log), as llama.cpp's converter writes it.
    const auto st = io::SafetensorsFile::open(model_path(tag));
    const auto& alog = *st.find("backbone.layers.1.mixer.A_log");
    io::TensorSource src{alog.name,  tag == "g1" ? io::ggml_type::F16 : io::ggml_type::F32,
                         alog.shape, alog.data,
                         &st.path(), 0};
    float a5 = 0;
    io::detail::source_row_f32(src, 5, 1, &a5);
    CHECK(g.blk[1].mixer.A.data()[5] == doctest::Approx(-std::exp(a5)));

    const auto ids = load_tokens("mamba2_" + tag + "_tokens");
    const auto want = load<2>("mamba2_" + tag + "_logits");
    const index_t n = index_t(ids.size()), V = g.vocab();
    std::vector<float> all(std::size_t(n * V)), from_hf(all.size());
    auto gs = g.new_state();
    g.forward(gs, std::span<const int>(ids), 0, all.data());
    CHECK(check_close("GGUF logits " + tag, all.data(), want.data(), n * V, V, 1e-4) <= 1e-4);
    auto hs = hf.new_state();
    hf.forward(hs, std::span<const int>(ids), 0, from_hf.data());
    CHECK(all == from_hf);  // the same numbers, bit for bit

    if (tag == "g1") {
      auto h = io::load_mamba2_gguf<models::Mamba2<models::Mamba2Config, f16, Backend>>(
          io::GGUFFile::open(path));
      auto fs = h.new_state();
      h.forward(fs, std::span<const int>(ids), 0, all.data());
      // g1's weights are f16 values: f16 storage is exact, only activations differ.
      check_close("f16 logits", all.data(), want.data(), n * V, V, 1e-4);

      auto s =
          io::load_mamba2_gguf<models::Mamba2<Tiny2, float, Backend>>(io::GGUFFile::open(path));
      auto ss = s.new_state();
      s.forward(ss, std::span<const int>(ids), 0, all.data());
      check_close("static logits", all.data(), want.data(), n * V, V, 1e-4);
      using WrongModel = models::Mamba2<Wrong2, float>;
      CHECK_THROWS_AS(io::load_mamba2_gguf<WrongModel>(io::GGUFFile::open(path)), format_error);
    }
    std::filesystem::remove(path);
  }
}

TEST_CASE("Mamba2: a 256-token prompt equals 256 single steps, which allocate nothing") {
  const Model m = load_hf("g2");
  const index_t n = 256, V = m.vocab();
  std::vector<int> ids(static_cast<std::size_t>(n));
  std::mt19937 g(42);
  for (auto& t : ids) t = int(g() % std::uint32_t(V));
  std::vector<float> prompt(std::size_t(n * V)), steps(std::size_t(n * V));
  auto s = m.new_state();
  m.forward(s, std::span<const int>(ids), 0, prompt.data());
  const index_t state_bytes = s.state_bytes();
  // Per layer: conv [3, 128 + 2·2·16] + ssm [8, 16, 16] floats.
  CHECK(state_bytes == 2 * (3 * 192 + 8 * 16 * 16) * 4);

  auto first = m.forward(s, std::span<const int>(ids.data(), 1), 0);  // warms thread-locals
  std::copy(first.begin(), first.end(), steps.begin());
  const long before = g_allocations.load();
  for (index_t t = 1; t < n; ++t) {
    const auto out = m.forward(s, std::span<const int>(ids.data() + t, 1), t);
    std::copy(out.begin(), out.end(), steps.begin() + t * V);
  }
  const long allocs = g_allocations.load() - before;
  CHECK(allocs == 0);
  CHECK(s.state_bytes() == state_bytes);  // the state does not grow with the sequence
  CHECK(check_close("steps vs prompt", steps.data(), prompt.data(), n * V, V, 1e-4) <= 1e-4);

  // A prompt in chunks (max_batch 7) equals the whole prompt.
  auto c = m.new_state({.max_batch = 7});
  CHECK(c.max_batch() == 7);
  std::vector<float> chunked(std::size_t(n * V));
  m.forward(c, std::span<const int>(ids), 0, chunked.data());
  CHECK(check_close("chunked", chunked.data(), prompt.data(), n * V, V, 1e-4) <= 1e-4);
}

TEST_CASE("Mamba2: two states over one const model decode independently on two threads") {
  static_assert(models::Decoder<Model> && models::Decoder<models::Mamba2<Tiny2, f16>>);
  const Model m = load_hf("g2");
  test::check_two_threads(m, 40);
}

TEST_CASE("Mamba2: bad files are format_errors") {
  Model hf = load_hf("g2");
  const std::string good = write_gguf(hf, "tessel_test_mamba2_good.gguf");
  const auto bytes = [&] {
    std::ifstream in(good, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
  }();
  const auto write_bytes = [](const std::string& p, const char* d, std::size_t n) {
    std::ofstream out(p, std::ios::binary);
    out.write(d, std::streamsize(n));
  };

  SUBCASE("a truncated GGUF file") {
    const std::string p = temp_path("tessel_test_mamba2_trunc.gguf");
    for (const std::size_t keep : {bytes.size() - 100, bytes.size() / 2, std::size_t{40}}) {
      write_bytes(p, bytes.data(), keep);
      CHECK_THROWS_AS(io::load_gguf_mamba2<float>(p), format_error);
    }
    std::filesystem::remove(p);
  }
  SUBCASE("a truncated safetensors file") {
    std::ifstream in(model_path("g2"), std::ios::binary);
    std::vector<char> st((std::istreambuf_iterator<char>(in)), {});
    const auto dir = std::filesystem::temp_directory_path() / "tessel_test_mamba2_st";
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(data_dir + "mamba2_g2/config.json", dir / "config.json",
                               std::filesystem::copy_options::overwrite_existing);
    const std::string p = (dir / "model.safetensors").string();
    write_bytes(p, st.data(), st.size() - 64);
    CHECK_THROWS_AS(io::load_safetensors_mamba2<float>(p), format_error);
    // Whole, but without config.json: the group count is unknown.
    write_bytes(p, st.data(), st.size());
    std::filesystem::remove(dir / "config.json");
    CHECK_THROWS_AS(io::load_safetensors_mamba2<float>(p), format_error);
    io::Mamba2LoadOptions o;
    o.n_groups = 2;
    CHECK_NOTHROW(io::load_safetensors_mamba2<float>(p, o));
    o.n_groups = 3;  // does not divide the 8 heads
    CHECK_THROWS_AS(io::load_safetensors_mamba2<float>(p, o), format_error);
    std::filesystem::remove_all(dir);
  }
  SUBCASE("a group count that does not match the tensors") {
    const std::string p = write_gguf(hf, "tessel_test_mamba2_groups.gguf", {}, 1);
    CHECK_THROWS_AS(io::load_gguf_mamba2<float>(p), format_error);
    std::filesystem::remove(p);
  }
  SUBCASE("an ssm_a holding A_log (values >= 0)") {
    Model m = load_hf("g2");
    for (auto& b : m.blk)
      for (index_t i = 0; i < b.mixer.A.size(); ++i)
        b.mixer.A.data()[i] = std::log(-b.mixer.A.data()[i]);  // back to A_log: >= 0
    const std::string p = write_gguf(m, "tessel_test_mamba2_alog.gguf");
    CHECK_THROWS_AS(io::load_gguf_mamba2<float>(p), format_error);
    std::filesystem::remove(p);
  }
  SUBCASE("a Mamba-1 file, or a Mamba-1 loader on a Mamba-2 file") {
    CHECK_THROWS_AS(io::load_gguf_mamba<float>(good), format_error);
    CHECK_THROWS_AS(io::load_safetensors_mamba2<float>(data_dir + "model.safetensors"),
                    format_error);
  }
  std::filesystem::remove(good);
}

TEST_CASE("Mamba2: bad input") {
  const Model m = load_hf("g1");
  auto s = m.new_state();
  const int bad = 96, ok = 1;
  CHECK_THROWS_AS(m.forward(s, std::span<const int>(&bad, 1), 0), value_error);
  CHECK_THROWS_AS(m.forward(s, std::span<const int>(), 0), value_error);
  m.forward(s, std::span<const int>(&ok, 1), 0);
  CHECK_THROWS_AS(m.forward(s, std::span<const int>(&ok, 1), 5), value_error);
  CHECK_NOTHROW(m.forward(s, std::span<const int>(&ok, 1), 1));
  auto fresh = m.new_state();  // has seen no tokens: only position 0 starts it
  CHECK_THROWS_AS(m.forward(fresh, std::span<const int>(&ok, 1), 1), value_error);
  // A state of the g2 model (two groups: other state sizes) is refused.
  const Model g2 = load_hf("g2");
  auto foreign = g2.new_state();
  CHECK_THROWS_AS(m.forward(foreign, std::span<const int>(&ok, 1), 0), value_error);
  models::Mamba2Config c = m.config();
  c.n_heads = 7;  // does not divide d_inner 128
  CHECK_THROWS_AS(Model{c}, value_error);
}
