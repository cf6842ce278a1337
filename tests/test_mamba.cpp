// nn::MambaMixer and models::Mamba: against PyTorch goldens (tools/golden/mamba_golden.py, the
// paper's equations as a sequential float64 loop over random weights), loaded from the HF-named
// safetensors file the script writes and from a GGUF file written here by tessel's writer; a
// prompt against the same tokens fed one step at a time; no allocation while decoding. Every
// golden runs on the scalar reference backend (cpu_scalar) and on default_backend (SIMD), with
// the same tolerances.

// The counting operator new below is malloc-based and its delete calls free: GCC 12 flags
// every inlined new/delete pair of the file as mismatched, a false positive for replacements.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <tessel/io/formats/gguf_writer.hpp>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/load/load_mamba.hpp>
#include <tessel/io/load/write_llama.hpp>
#include <tessel/models/hybrid.hpp>
#include <tessel/models/mamba.hpp>
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
using Model = models::Mamba<models::MambaConfig, float>;

template <std::size_t R>
Tensor<float, DynShape<R>> load(const std::string& name) {
  return io::NpyFile::open(data_dir + name + ".npy").array().to_tensor<float, R>();
}

std::vector<int> load_tokens(const std::string& name) {
  const auto t = load<1>(name);
  std::vector<int> ids(std::size_t(t.size()));
  for (index_t i = 0; i < t.size(); ++i) ids[std::size_t(i)] = int(t.data()[i]);
  return ids;
}

/// |got - want| <= rel · (|want| + rms(want)) for every element (rms: the outputs' scale).
void check_close(const std::string& what, const float* got, const float* want, index_t n,
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
      return;
    }
  }
  MESSAGE(what << ": worst relative error " << worst);
}

struct Tiny {  // the golden model's dimensions as compile-time constants
  static constexpr int dim = 64, layers = 2, vocab = 96, d_inner = 128, d_state = 16, d_conv = 4,
                       dt_rank = 4;
};
struct Wrong {
  static constexpr int dim = 64, layers = 2, vocab = 96, d_inner = 128, d_state = 8, d_conv = 4,
                       dt_rank = 4;
};

Model load_hf() {
  return io::load_safetensors_mamba<float>(data_dir + "model.safetensors");
}
/// The same model running on Backend.
template <class Backend>
models::Mamba<models::MambaConfig, float, Backend> load_hf_on() {
  return io::load_mamba_safetensors<models::Mamba<models::MambaConfig, float, Backend>>(
      io::SafetensorsCheckpoint::open(data_dir + "model.safetensors"));
}

/// The model written as a GGUF `mamba` file by tessel's writer, with llama.cpp's names/keys.
std::string write_gguf(Model& m, const std::string& name,
                       const std::function<void(io::GGUFWriter&)>& extra = {}) {
  io::GGUFWriter w;
  const auto& c = m.config();
  w.set("general.architecture", "mamba");
  w.set("mamba.embedding_length", std::uint32_t(c.dim));
  w.set("mamba.block_count", std::uint32_t(c.layers));
  w.set("mamba.ssm.conv_kernel", std::uint32_t(c.d_conv));
  w.set("mamba.ssm.inner_size", std::uint32_t(c.d_inner));
  w.set("mamba.ssm.state_size", std::uint32_t(c.d_state));
  w.set("mamba.ssm.time_step_rank", std::uint32_t(c.dt_rank));
  w.set("mamba.attention.layer_norm_rms_epsilon", c.norm_eps);
  m.visit([&](const std::string& n, auto& t) { w.add_tensor(n, t.view()); });
  if (extra) extra(w);
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  w.write(path);
  return path;
}

}  // namespace

TEST_CASE_TEMPLATE("MambaMixer: PyTorch golden (layer 0, 48 rows, fresh state)", Backend,
                   cpu_scalar, default_backend) {
  const Model m = load_hf();
  const auto& mixer = m.blk[0].mixer;
  const auto u = load<2>("model_mixer_in"), want = load<2>("model_mixer_out");
  const index_t L = u.extent(0), D = u.extent(1);
  REQUIRE(D == mixer.dim());
  CHECK(mixer.d_inner() == 128);
  CHECK(mixer.d_state() == 16);
  CHECK(mixer.d_conv() == 4);
  CHECK(mixer.dt_rank() == 4);
  nn::MambaState st = mixer.make_state();
  std::vector<float> scratch(std::size_t(mixer.scratch_floats(L))), y(std::size_t(L * D));
  mixer.forward(Backend{}, nn::row_view(u.data(), L, D), st,
                nn::scratch_view(scratch.data(), index_t(scratch.size())),
                nn::row_view(y.data(), L, D));
  check_close(std::string("mixer ") + Backend::name(), y.data(), want.data(), L * D, D, 1e-4);

  SUBCASE("the same rows as a prompt of 17 and single steps") {
    nn::MambaState s2 = mixer.make_state();
    std::vector<float> y2(std::size_t(L * D));
    mixer.forward(Backend{}, nn::row_view(u.data(), 17, D), s2,
                  nn::scratch_view(scratch.data(), index_t(scratch.size())),
                  nn::row_view(y2.data(), 17, D));
    for (index_t t = 17; t < L; ++t)
      mixer.forward(Backend{}, nn::row_view(u.data() + t * D, 1, D), s2,
                    nn::scratch_view(scratch.data(), index_t(scratch.size())),
                    nn::row_view(y2.data() + t * D, 1, D));
    check_close("mixer by steps", y2.data(), want.data(), L * D, D, 1e-4);
  }
}

TEST_CASE_TEMPLATE("Mamba: logits from the HF safetensors file equal PyTorch's", Backend,
                   cpu_scalar, default_backend) {
  const auto m = load_hf_on<Backend>();
  CHECK(m.config().dim == 64);
  CHECK(m.config().layers == 2);
  CHECK(m.config().vocab == 96);
  CHECK(!m.output.has_value());  // tied
  const auto ids = load_tokens("model_tokens");
  const auto want = load<2>("model_logits");
  const index_t n = index_t(ids.size()), V = m.vocab();
  std::vector<float> all(std::size_t(n * V));
  auto s = m.new_state();
  const auto last = m.forward(s, std::span<const int>(ids), 0, all.data());
  check_close("logits", all.data(), want.data(), n * V, V, 1e-4);
  check_close("last logits", last.data(), want.data() + (n - 1) * V, V, V, 1e-4);
  CHECK(s.position() == n);
}

TEST_CASE_TEMPLATE("Mamba: a GGUF file written by tessel loads to the same logits", Backend,
                   cpu_scalar, default_backend) {
  Model hf = load_hf();
  const std::string path = write_gguf(hf, "tessel_test_mamba.gguf");
  auto g = io::load_mamba_gguf<models::Mamba<models::MambaConfig, float, Backend>>(
      io::GGUFFile::open(path));
  CHECK(g.config().d_inner == 128);
  CHECK(g.config().dt_rank == 4);
  CHECK(!g.output.has_value());
  // ssm_a is A = −exp(A_log), as llama.cpp's converter writes it.
  const auto st = io::SafetensorsFile::open(data_dir + "model.safetensors");
  const auto a_log0 = st.tensor("backbone.layers.1.mixer.A_log").view<float, 2>();
  CHECK(g.blk[1].mixer.A.data()[5] == doctest::Approx(-std::exp(a_log0.data()[5])));
  const auto ids = load_tokens("model_tokens");
  const auto want = load<2>("model_logits");
  const index_t n = index_t(ids.size()), V = g.vocab();
  std::vector<float> all(std::size_t(n * V));
  auto gs = g.new_state();
  g.forward(gs, std::span<const int>(ids), 0, all.data());
  check_close("GGUF logits", all.data(), want.data(), n * V, V, 1e-4);

  SUBCASE("f16 weights stay close") {
    auto h = io::load_mamba_gguf<models::Mamba<models::MambaConfig, f16, Backend>>(
        io::GGUFFile::open(path));
    auto hs = h.new_state();
    h.forward(hs, std::span<const int>(ids), 0, all.data());
    check_close("f16 logits", all.data(), want.data(), n * V, V, 2e-2);
  }
  SUBCASE("a static config: same logits; a mismatch is a format_error") {
    auto s = io::load_mamba_gguf<models::Mamba<Tiny, float, Backend>>(io::GGUFFile::open(path));
    auto ss = s.new_state();
    s.forward(ss, std::span<const int>(ids), 0, all.data());
    check_close("static logits", all.data(), want.data(), n * V, V, 1e-4);
    using WrongModel = models::Mamba<Wrong, float>;
    CHECK_THROWS_AS(io::load_mamba_gguf<WrongModel>(io::GGUFFile::open(path)), format_error);
  }
  std::filesystem::remove(path);
}

TEST_CASE("Mamba: an ssm_a that holds A_log (values >= 0) is a format_error") {
  Model hf = load_hf();
  for (auto& b : hf.blk)
    for (index_t i = 0; i < b.mixer.A.size(); ++i)
      b.mixer.A.data()[i] = std::log(-b.mixer.A.data()[i]);  // back to A_log: some >= 0
  const std::string path = write_gguf(hf, "tessel_test_mamba_alog.gguf");
  CHECK_THROWS_AS(io::load_gguf_mamba<float>(path), format_error);
  std::filesystem::remove(path);
}

TEST_CASE("Mamba: an untied GGUF `output` is used as the head") {
  Model hf = load_hf();
  // output = 2 · token_embd: the head is linear in its weight, so the logits double exactly.
  Tensor<float, DynShape<2>> out(hf.vocab(), hf.config().dim);
  for (index_t i = 0; i < out.size(); ++i) out.data()[i] = 2.0f * hf.token_embd.weight.data()[i];
  const std::string path = write_gguf(hf, "tessel_test_mamba_untied.gguf", [&](io::GGUFWriter& w) {
    w.add_tensor("output.weight", out.view());
  });
  Model m = io::load_gguf_mamba<float>(path);
  REQUIRE(m.output.has_value());
  const std::vector<int> ids{3, 1, 4, 1, 5};
  auto ms = m.new_state();
  auto hs = hf.new_state();
  const auto a = m.forward(ms, std::span<const int>(ids), 0);
  const auto b = hf.forward(hs, std::span<const int>(ids), 0);
  std::vector<float> twice(b.begin(), b.end());
  for (float& v : twice) v *= 2.0f;
  check_close("untied head", a.data(), twice.data(), m.vocab(), m.vocab(), 1e-6);
  std::filesystem::remove(path);
}

TEST_CASE("Mamba: a 256-token prompt equals 256 single steps, which allocate nothing") {
  const Model m = load_hf();
  const index_t n = 256, V = m.vocab();
  std::vector<int> ids(static_cast<std::size_t>(n));
  std::mt19937 g(42);
  for (auto& t : ids) t = int(g() % std::uint32_t(V));
  std::vector<float> prompt(std::size_t(n * V)), steps(std::size_t(n * V));
  auto s = m.new_state();
  m.forward(s, std::span<const int>(ids), 0, prompt.data());
  const index_t state_bytes = s.state_bytes();
  CHECK(state_bytes == 2 * (3 * 128 + 128 * 16) * 4);

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
  check_close("steps vs prompt", steps.data(), prompt.data(), n * V, V, 1e-4);

  SUBCASE("a prompt in chunks (max_batch 7) equals the whole prompt") {
    auto c = m.new_state({.max_batch = 7});
    CHECK(c.max_batch() == 7);
    std::vector<float> chunked(std::size_t(n * V));
    m.forward(c, std::span<const int>(ids), 0, chunked.data());
    check_close("chunked", chunked.data(), prompt.data(), n * V, V, 1e-4);
  }
}

TEST_CASE("Mamba with any_weight: Q8_0 matrices run the quantized kernels") {
  Model hf = load_hf();
  // F32 file: any_weight holds the f32 bytes and runs the same gemm as Mamba<float>.
  const std::string f32_path = write_gguf(hf, "tessel_test_mamba_any_f32.gguf");
  using Any = models::Mamba<models::MambaConfig, nn::any_weight>;
  Any a = io::load_gguf_mamba<nn::any_weight>(f32_path);
  const auto ids = load_tokens("model_tokens");
  const index_t n = index_t(ids.size()), V = a.vocab();
  std::vector<float> want(std::size_t(n * V)), got(want.size());
  auto hs = hf.new_state();
  auto as = a.new_state();
  hf.forward(hs, std::span<const int>(ids), 0, want.data());
  a.forward(as, std::span<const int>(ids), 0, got.data());
  CHECK(got == want);

  // Q8_0 where rows hold whole blocks (ssm_dt's rows of dt_rank 4 stay F16), conv / A / vectors
  // in F32. The oracle: the same file loaded as Mamba<float> (dequantized at load, f32 matmuls).
  io::GGUFWriter w;
  const auto& c = hf.config();
  w.set("general.architecture", "mamba");
  w.set("mamba.embedding_length", std::uint32_t(c.dim));
  w.set("mamba.block_count", std::uint32_t(c.layers));
  w.set("mamba.ssm.conv_kernel", std::uint32_t(c.d_conv));
  w.set("mamba.ssm.inner_size", std::uint32_t(c.d_inner));
  w.set("mamba.ssm.state_size", std::uint32_t(c.d_state));
  w.set("mamba.ssm.time_step_rank", std::uint32_t(c.dt_rank));
  w.set("mamba.attention.layer_norm_rms_epsilon", c.norm_eps);
  std::vector<io::GGUFTensorData> keep;
  keep.reserve(64);
  hf.visit([&](const std::string& name, auto& t) {
    const auto e = t.shape().extents();
    const bool matrix =
        name.ends_with(".weight") && e.size() == 2 && !name.ends_with("conv1d.weight");
    auto& d =
        keep.emplace_back(io::gguf_weight(std::span<const float>(t.data(), std::size_t(t.size())),
                                          std::vector<std::int64_t>(e.begin(), e.end()),
                                          matrix ? io::ggml_type::Q8_0 : io::ggml_type::F32));
    w.add_tensor(name, d.type, d.shape, d.bytes);
  });
  const std::string q_path =
      (std::filesystem::temp_directory_path() / "tessel_test_mamba_any_q8_0.gguf").string();
  w.write(q_path);
  Any q = io::load_gguf_mamba<nn::any_weight>(q_path);
  CHECK(q.blk[0].mixer.ssm_in.weight.kind() == nn::weight_kind::q8_0);
  CHECK(q.blk[0].mixer.ssm_x.weight.kind() == nn::weight_kind::q8_0);
  CHECK(q.blk[0].mixer.ssm_dt.weight.kind() == nn::weight_kind::f16);
  CHECK(q.token_embd.weight.kind() == nn::weight_kind::q8_0);
  Model deq = io::load_gguf_mamba<float>(q_path);
  auto ds = deq.new_state();
  deq.forward(ds, std::span<const int>(ids), 0, want.data());
  // A prompt of n >= qgemm_min_m rows: dequantized tiles into the f32 SGEMM, as the oracle,
  // or the integer GEMM (qgemm_vnni.hpp) with x quantized to q8_0, as the steps below.
  REQUIRE(n >= qgemm_min_m);
  auto qs = q.new_state();
  q.forward(qs, std::span<const int>(ids), 0, got.data());
  check_close("Q8_0 prompt", got.data(), want.data(), n * V, V,
              qgemm_quantizes_activations<default_backend, q8_0>() ? 5e-2 : 1e-4);
  // One token at a time: activations quantized to 8 bits (q8_0) in every matmul. Each element
  // moves by at most 0.44% of its block's largest value, so each product by at most ~0.5% of
  // sum |w||x|; four matmuls a layer, two layers and the head compound it to a few percent of
  // the logits' scale at worst: 5e-2 relative (check_close's measure).
  std::vector<float> steps(want.size());
  auto first = q.forward(qs, std::span<const int>(ids.data(), 1), 0);  // warms thread-locals
  std::copy(first.begin(), first.end(), steps.begin());
  const long before = g_allocations.load();
  for (index_t t = 1; t < n; ++t) {
    const auto out = q.forward(qs, std::span<const int>(ids.data() + t, 1), t);
    std::copy(out.begin(), out.end(), steps.begin() + t * V);
  }
  CHECK(g_allocations.load() - before == 0);
  check_close("Q8_0 steps", steps.data(), want.data(), n * V, V, 5e-2);
  std::filesystem::remove(f32_path);
  std::filesystem::remove(q_path);
}

TEST_CASE("Mamba: bad input") {
  const Model m = load_hf();
  auto s = m.new_state();
  const int bad = 96, ok = 1;
  CHECK_THROWS_AS(m.forward(s, std::span<const int>(&bad, 1), 0), value_error);
  CHECK_THROWS_AS(m.forward(s, std::span<const int>(), 0), value_error);
  m.forward(s, std::span<const int>(&ok, 1), 0);
  CHECK_THROWS_AS(m.forward(s, std::span<const int>(&ok, 1), 5), value_error);  // not position 1
  CHECK_NOTHROW(m.forward(s, std::span<const int>(&ok, 1), 1));
  models::MambaConfig c = m.config();
  c.d_state = 0;
  CHECK_THROWS_AS(Model{c}, value_error);

  // A fresh state has seen no tokens: only position 0 starts it.
  auto fresh = m.new_state();
  CHECK_THROWS_AS(m.forward(fresh, std::span<const int>(&ok, 1), 1), value_error);
  CHECK(fresh.position() == 0);
  // A state's context: the request (not above the model's), and positions stay inside it.
  CHECK(m.new_state().max_seq() == m.max_seq());
  CHECK_THROWS_AS(m.new_state({.max_seq = -1}), value_error);
  CHECK_THROWS_AS(m.new_state({.max_seq = m.max_seq() + 1}), value_error);
  auto short_ctx = m.new_state({.max_seq = 4});
  const std::vector<int> five(5, ok);
  CHECK_THROWS_AS(m.forward(short_ctx, std::span<const int>(five), 0), value_error);
  CHECK_NOTHROW(m.forward(short_ctx, std::span<const int>(five.data(), 4), 0));
  CHECK_THROWS_AS(m.forward(short_ctx, std::span<const int>(&ok, 1), 4), value_error);
  // A state made by a model of other dimensions is refused, not read out of bounds.
  models::MambaConfig one = m.config();
  one.layers = 1;
  const Model other(one);
  auto foreign = other.new_state();
  CHECK_THROWS_AS(m.forward(foreign, std::span<const int>(&ok, 1), 0), value_error);
}

// ------------------------------------------------------------- several sequences, one model

TEST_CASE("Mamba: two states over one const model decode independently on two threads") {
  models::MambaConfig c;
  c.dim = 32, c.layers = 2, c.vocab = 40, c.d_inner = 64, c.d_state = 8, c.d_conv = 4;
  c.dt_rank = 4;
  Model src(c);
  // Random weights; A and dt_bias as Mamba initialises them, so the scan stays finite.
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  src.visit([&](const std::string& name, auto& t) {
    const index_t cols = t.shape().extents().back();
    for (index_t i = 0; i < t.size(); ++i) {
      float v = nd(g) / std::sqrt(float(cols));
      if (name.ends_with("norm.weight")) v = 1.0f + 0.1f * nd(g);
      if (name.ends_with(".ssm_a")) v = -float(1 + i % cols);
      if (name.ends_with(".ssm_dt.bias")) v = -4.0f + 0.5f * nd(g);
      if (name.ends_with(".ssm_d")) v = 1.0f;
      t.data()[i] = v;
    }
  });
  const Model& m = src;
  test::check_two_threads(m, 48);
}

// ------------------------------------------------------------------------------ the hybrid

namespace {
struct TinyJamba {  // tools/golden/hybrid_golden.py's model
  static constexpr int dim = 64, layers = 4, vocab = 96, max_seq = 64, d_inner = 128, d_state = 16,
                       d_conv = 4, dt_rank = 4, heads = 4, kv_heads = 2, hidden = 128,
                       attn_period = 4, attn_offset = 2;
};
using Jamba = models::Hybrid<TinyJamba, float>;

/// Every parameter from the golden's F16 safetensors file, by its GGUF name.
template <class Hybrid>
void load_hybrid(Hybrid& m, const io::SafetensorsFile& f) {
  m.visit([&](const std::string& name, auto& t) {
    const io::SafetensorsTensor* s = f.find(name);
    if (!s) FAIL("the golden file has no tensor " << name);
    REQUIRE(s->dtype == io::st_dtype::F16);
    io::TensorSource src{s->name, io::ggml_type::F16, s->shape, s->data, &f.path(), 0};
    io::detail::load_tensor(t, src);
  });
}
}  // namespace

// On cpu_scalar the norms, Mamba mixers and head run the references; attention and the MLPs
// take no backend yet (default_backend).
TEST_CASE_TEMPLATE("Hybrid (Jamba-style, 1 attention layer in 4): logits equal PyTorch's", Backend,
                   cpu_scalar, default_backend) {
  using Hy = models::Hybrid<TinyJamba, float, Backend>;
  static_assert(Hy::attention_layers() == 1 && Hy::is_attention(2));
  static_assert(models::Decoder<Hy> && models::Decoder<Jamba>);
  auto m = std::make_unique<Hy>();
  const auto f = io::SafetensorsFile::open(data_dir + "hybrid.safetensors");
  load_hybrid(*m, f);
  auto s =
      m->new_state({.max_batch = 16});  // prefill in chunks of 16: the KV cache and states carry
  CHECK(s.max_seq() == 64);
  CHECK(m->mixers.size() == 3);
  CHECK(m->attns.size() == 1);
  const auto ids = load_tokens("hybrid_tokens");
  const auto want = load<2>("hybrid_logits");
  const index_t n = index_t(ids.size()), V = m->vocab();
  std::vector<float> all(std::size_t(n * V));
  m->forward(s, std::span<const int>(ids), 0, all.data());
  check_close("hybrid logits", all.data(), want.data(), n * V, V, 1e-4);

  SUBCASE("a prompt of 9 then single steps") {
    std::vector<float> steps(std::size_t(n * V));
    m->forward(s, std::span<const int>(ids.data(), 9), 0, steps.data());
    for (index_t t = 9; t < n; ++t) {
      const auto out = m->forward(s, std::span<const int>(ids.data() + t, 1), t);
      std::copy(out.begin(), out.end(), steps.begin() + t * V);
    }
    check_close("hybrid steps", steps.data(), want.data(), n * V, V, 1e-4);
  }
  SUBCASE("two states, two threads") {
    test::check_two_threads(static_cast<const Hy&>(*m), 24);
  }
  SUBCASE("past the context is a value_error") {
    std::vector<int> many(65, 1);
    CHECK_THROWS_AS(m->forward(s, std::span<const int>(many), 0), value_error);
    CHECK_THROWS_AS(m->new_state({.max_seq = 65}), value_error);
    const int one = 1;
    auto fresh = m->new_state();
    CHECK_THROWS_AS(m->forward(fresh, std::span<const int>(&one, 1), 3), value_error);
  }
  SUBCASE("a state of a shorter context (a KV cache of fewer rows) gives the same logits") {
    const index_t k = std::min<index_t>(n, 20);
    auto shorter = m->new_state({.max_seq = k, .max_batch = 8});
    CHECK(shorter.max_seq() == k);
    CHECK(shorter.state_bytes() < s.state_bytes());
    std::vector<float> part(std::size_t(k * V));
    m->forward(shorter, std::span<const int>(ids.data(), std::size_t(k)), 0, part.data());
    check_close("hybrid, short context", part.data(), want.data(), k * V, V, 1e-4);
    const int one = 1;
    CHECK_THROWS_AS(m->forward(shorter, std::span<const int>(&one, 1), k), value_error);
  }
}
