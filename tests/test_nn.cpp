// nn/ layer templates against PyTorch (tools/golden/llama_golden.py: random weights, small
// configs), in static and run-time shapes, f32 and narrower weight formats.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "tessel/io/formats/npy.hpp"
#include "tessel/io/load/load_llama.hpp"
#include "tessel/nn/attention.hpp"
#include "tessel/nn/embedding.hpp"
#include "tessel/nn/kv_cache.hpp"
#include "tessel/nn/linear.hpp"
#include "tessel/nn/mlp.hpp"
#include "tessel/nn/norm.hpp"
#include "tessel/nn/rope.hpp"
#include "tessel/ops/activation.hpp"
#include "tessel/quant/ggml_blocks.hpp"

using namespace tessel;
using tessel::index_t;

namespace {

const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/llama";

const io::NpzFile& layers() {
  static const io::NpzFile f = io::NpzFile::open(data_dir + "/layers.npz");
  return f;
}
Tensor<float, DynShape<2>> mat(const std::string& n) {
  return layers().get<float, 2>(n);
}
Tensor<float, DynShape<1>> vec(const std::string& n) {
  return layers().get<float, 1>(n);
}

// Largest |a - b| relative to the largest |b|.
float rel_err(const float* a, const float* b, index_t n) {
  float d = 0, m = 0;
  for (index_t i = 0; i < n; ++i) {
    d = std::max(d, std::fabs(a[i] - b[i]));
    m = std::max(m, std::fabs(b[i]));
  }
  return d / std::max(m, 1e-30f);
}

template <class T, class S, class U>
void fill_from(Tensor<T, S>& dst, const U& src) {
  REQUIRE(dst.size() == src.size());
  for (index_t i = 0; i < dst.size(); ++i) dst.data()[i] = from_f32<T>(src.data()[i]);
}

// Attention over all rows at once (prefill) and one row at a time (decode) against PyTorch.
template <class B, class A>
void check_attention(A& att, const std::string& name, float theta, nn::RopeStyle style) {
  fill_from(att.attn_q.weight, mat(name + "_wq"));
  fill_from(att.attn_k.weight, mat(name + "_wk"));
  fill_from(att.attn_v.weight, mat(name + "_wv"));
  fill_from(att.attn_output.weight, mat(name + "_wo"));
  const auto x = mat("x"), want = mat(name + "_y");
  const index_t T = x.extent(0), D = x.extent(1), max_seq = 8;
  nn::Rope rope(att.head_dim(), att.head_dim(), max_seq, theta, style);
  nn::KVCache<dyn, dyn> cache(1, max_seq, att.kv_dim());
  std::vector<float> scratch(std::size_t(att.scratch_floats(T, max_seq))), y(std::size_t(T * D));
  const auto sv = nn::scratch_view(scratch.data(), index_t(scratch.size()));
  att.forward(B{}, x.view(), 0, cache.keys_view(0), cache.values_view(0), rope, sv,
              nn::row_view(y.data(), T, D));
  CHECK(rel_err(y.data(), want.data(), T * D) < 1e-5f);
  std::vector<float> y1(std::size_t(T * D));
  for (index_t i = 0; i < T; ++i)
    att.forward(B{}, nn::row_view(x.data() + i * D, 1, D), i, cache.keys_view(0),
                cache.values_view(0), rope, sv, nn::row_view(y1.data() + i * D, 1, D));
  CHECK(rel_err(y1.data(), want.data(), T * D) < 1e-5f);
  // The cache is full up to max_seq: one more row than fits is an error.
  CHECK_THROWS_AS(att.forward(B{}, x.view(), max_seq - T + 1, cache.keys_view(0),
                              cache.values_view(0), rope, sv, nn::row_view(y.data(), T, D)),
                  value_error);
}

}  // namespace

// Every layer test runs on the scalar reference and on the build's SIMD backend.
#define TESSEL_BACKENDS tessel::cpu_scalar, tessel::default_backend

TEST_CASE_TEMPLATE("RMSNorm and LayerNorm match PyTorch", B, TESSEL_BACKENDS) {
  const auto x = mat("x");
  const index_t T = x.extent(0);
  std::vector<float> y(std::size_t(x.size()));
  nn::RMSNorm<32> rms(1e-5f);
  fill_from(rms.weight, vec("rms_w"));
  rms.forward(B{}, x.view(), nn::row_view(y.data(), T, 32));
  CHECK(rel_err(y.data(), mat("rms_y").data(), x.size()) < 1e-6f);
  nn::LayerNorm<dyn> ln(32, 1e-5f);
  fill_from(ln.weight, vec("ln_w"));
  fill_from(ln.bias, vec("ln_b"));
  ln.forward(B{}, x.view(), nn::row_view(y.data(), T, 32));
  CHECK(rel_err(y.data(), mat("ln_y").data(), x.size()) < 1e-5f);
}

TEST_CASE_TEMPLATE("SwiGLU and GELU MLPs match PyTorch", B, TESSEL_BACKENDS) {
  const auto x = mat("x");
  const index_t T = x.extent(0);
  std::vector<float> y(std::size_t(x.size()));
  {
    nn::GatedMLP<32, 48> mlp;
    fill_from(mlp.ffn_gate.weight, mat("gate"));
    fill_from(mlp.ffn_up.weight, mat("up"));
    fill_from(mlp.ffn_down.weight, mat("down"));
    std::vector<float> s(std::size_t(mlp.scratch_floats(T)));
    mlp.forward(B{}, x.view(), nn::row_view(y.data(), T, 32),
                nn::scratch_view(s.data(), index_t(s.size())));
    CHECK(rel_err(y.data(), mat("swiglu_y").data(), x.size()) < 1e-5f);
  }
  {  // run-time shapes, f16 weights: within f16 rounding of the weights
    nn::GatedMLP<dyn, dyn, f16> mlp(32, 48);
    fill_from(mlp.ffn_gate.weight, mat("gate"));
    fill_from(mlp.ffn_up.weight, mat("up"));
    fill_from(mlp.ffn_down.weight, mat("down"));
    std::vector<float> s(std::size_t(mlp.scratch_floats(T)));
    mlp.forward(B{}, x.view(), nn::row_view(y.data(), T, 32),
                nn::scratch_view(s.data(), index_t(s.size())));
    const float e = rel_err(y.data(), mat("swiglu_y").data(), x.size());
    CHECK(e < 3e-3f);
    CHECK(e > 0.0f);  // f16 really rounds
  }
  for (auto [kind, name] :
       {std::pair{nn::GeluKind::erf, "gelu_erf_y"}, std::pair{nn::GeluKind::tanh, "gelu_tanh_y"}}) {
    nn::MLP<32, dyn> mlp(32, 48, kind);
    fill_from(mlp.ffn_up.weight, mat("up"));
    fill_from(mlp.ffn_up.bias, vec("up_b"));
    fill_from(mlp.ffn_down.weight, mat("down"));
    fill_from(mlp.ffn_down.bias, vec("down_b"));
    std::vector<float> s(std::size_t(mlp.scratch_floats(T)));
    mlp.forward(B{}, x.view(), nn::row_view(y.data(), T, 32),
                nn::scratch_view(s.data(), index_t(s.size())));
    CHECK(rel_err(y.data(), mat(name).data(), x.size()) < 1e-5f);
  }
}

TEST_CASE_TEMPLATE("RoPE: adjacent pairs and half-split match PyTorch", B, TESSEL_BACKENDS) {
  const auto x = mat("rope_x");
  const index_t T = x.extent(0);
  for (auto [style, name] : {std::pair{nn::RopeStyle::adjacent, "rope_adjacent"},
                             std::pair{nn::RopeStyle::half_split, "rope_half_split"}}) {
    nn::Rope rope(8, 8, T, 10000.0f, style);
    std::vector<float> v(x.data(), x.data() + x.size());
    for (index_t p = 0; p < T; ++p) rope.apply(B{}, v.data() + p * 8, 1, p);
    CHECK(rel_err(v.data(), mat(name).data(), x.size()) < 1e-6f);
  }
  CHECK_THROWS_AS(nn::Rope(8, 7, 4, 10000.0f, nn::RopeStyle::adjacent), value_error);
  nn::Rope rope(8, 8, 4, 10000.0f, nn::RopeStyle::adjacent);
  float v[8] = {};
  CHECK_THROWS_AS(rope.apply(B{}, v, 1, 4), value_error);
}

TEST_CASE_TEMPLATE("Attention: causal GQA (adjacent RoPE) and MQA (half-split RoPE) match PyTorch",
                   B, TESSEL_BACKENDS) {
  SUBCASE("GQA, static shapes") {
    nn::Attention<32, 8, 4> att;
    check_attention<B>(att, "gqa", 10000.0f, nn::RopeStyle::adjacent);
  }
  SUBCASE("GQA, run-time shapes") {
    nn::Attention<dyn, dyn, dyn> att(32, 8, 4);
    check_attention<B>(att, "gqa", 10000.0f, nn::RopeStyle::adjacent);
  }
  SUBCASE("MQA, half-split, theta 5e5") {
    nn::Attention<32, 8, 1> att;
    check_attention<B>(att, "mqa", 500000.0f, nn::RopeStyle::half_split);
  }
  CHECK_THROWS_AS((nn::Attention<dyn, dyn, dyn>(32, 8, 3)), value_error);
  CHECK_THROWS_AS((nn::Attention<dyn, 8, dyn>(32, 4, 2)), shape_error);
}

// Long prompts take the SGEMM path (rows in blocks of 128, heads across threads): a prompt of
// 300 rows in chunks of 200 and 100 (the second at pos 200, so its blocks see cached keys),
// against attention written out in f64 from the same projections and the same RoPE tables,
// and against the row-by-row decode path.
TEST_CASE_TEMPLATE("Attention: long chunked prompts equal an f64 reference and row-by-row decoding",
                   B, TESSEL_BACKENDS) {
  const index_t D = 64, H = 4, KvH = 2, hd = D / H, kvd = hd * KvH, T = 300, max_seq = 320;
  nn::Attention<dyn, dyn, dyn> att(D, H, KvH);
  std::uint32_t state = 12345u;
  const auto rnd = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
  };
  for (auto* l : {&att.attn_q, &att.attn_k, &att.attn_v, &att.attn_output})
    for (index_t i = 0; i < l->weight.size(); ++i) l->weight.data()[i] = rnd() * 0.5f;
  std::vector<float> x(std::size_t(T * D));
  for (auto& v : x) v = rnd();
  nn::Rope rope(hd, hd, max_seq, 10000.0f, nn::RopeStyle::adjacent);

  // Reference: projections in f64, rounded to f32 and rotated by the same tables, then
  // softmax(q k / sqrt(hd)) v per head in f64 and the output projection.
  const auto project = [&](const auto& l, index_t out) {
    std::vector<float> r(std::size_t(T * out));
    for (index_t t = 0; t < T; ++t)
      for (index_t o = 0; o < out; ++o) {
        double a = 0;
        for (index_t k = 0; k < D; ++k)
          a += double(x[std::size_t(t * D + k)]) * double(l.weight.data()[o * D + k]);
        r[std::size_t(t * out + o)] = float(a);
      }
    return r;
  };
  auto q = project(att.attn_q, D), k = project(att.attn_k, kvd), v = project(att.attn_v, kvd);
  for (index_t t = 0; t < T; ++t) {
    rope.apply(B{}, q.data() + t * D, H, t);
    rope.apply(B{}, k.data() + t * kvd, KvH, t);
  }
  std::vector<double> ctx(std::size_t(T * D)), want(std::size_t(T * D)),
      s(static_cast<std::size_t>(T));
  for (index_t h = 0; h < H; ++h) {
    const index_t off = (h / (H / KvH)) * hd;
    for (index_t t = 0; t < T; ++t) {
      double mx = -1e300, sum = 0;
      for (index_t u = 0; u <= t; ++u) {
        double d = 0;
        for (index_t j = 0; j < hd; ++j)
          d += double(q[std::size_t(t * D + h * hd + j)]) *
               double(k[std::size_t(u * kvd + off + j)]);
        s[std::size_t(u)] = d / std::sqrt(double(hd));
        mx = std::max(mx, s[std::size_t(u)]);
      }
      for (index_t u = 0; u <= t; ++u)
        sum += (s[std::size_t(u)] = std::exp(s[std::size_t(u)] - mx));
      for (index_t j = 0; j < hd; ++j) {
        double a = 0;
        for (index_t u = 0; u <= t; ++u)
          a += s[std::size_t(u)] * double(v[std::size_t(u * kvd + off + j)]);
        ctx[std::size_t(t * D + h * hd + j)] = a / sum;
      }
    }
  }
  for (index_t t = 0; t < T; ++t)
    for (index_t o = 0; o < D; ++o) {
      double a = 0;
      for (index_t j = 0; j < D; ++j)
        a += ctx[std::size_t(t * D + j)] * double(att.attn_output.weight.data()[o * D + j]);
      want[std::size_t(t * D + o)] = a;
    }
  const auto err = [&](const std::vector<float>& y) {
    double d = 0, m = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      d = std::max(d, std::fabs(double(y[i]) - want[i]));
      m = std::max(m, std::fabs(want[i]));
    }
    return d / m;
  };

  nn::KVCache<dyn, dyn> cache(1, max_seq, kvd);
  std::vector<float> scratch(std::size_t(att.scratch_floats(200, max_seq))), y(x.size()),
      y1(x.size());
  const auto sv = nn::scratch_view(scratch.data(), index_t(scratch.size()));
  att.forward(B{}, nn::row_view(x.data(), 200, D), 0, cache.keys_view(0), cache.values_view(0),
              rope, sv, nn::row_view(y.data(), 200, D));
  att.forward(B{}, nn::row_view(x.data() + 200 * D, 100, D), 200, cache.keys_view(0),
              cache.values_view(0), rope, sv, nn::row_view(y.data() + 200 * D, 100, D));
  CHECK(err(y) < 1e-5);
  for (index_t t = 0; t < T; ++t)
    att.forward(B{}, nn::row_view(x.data() + t * D, 1, D), t, cache.keys_view(0),
                cache.values_view(0), rope, sv, nn::row_view(y1.data() + t * D, 1, D));
  CHECK(err(y1) < 1e-5);
}

TEST_CASE("Linear: block-format weights against their dequantized f32 values") {
  const auto w = mat("gate");  // [48, 32]
  const auto x = mat("x");     // [6, 32]
  nn::Linear<32, 48, q8_0> lq;
  q8_0::quantize_row(w.data(), lq.weight.data(), w.size());
  nn::Linear<32, 48> lf;
  q8_0::dequantize_row(lq.weight.data(), lf.weight.data(), w.size());
  // 18 rows (x three times): at M >= qgemm_min_m the quantized Linear either dequantizes tiles
  // into the f32 SGEMM, so it equals the f32 Linear up to summation order, or (the integer GEMM
  // of qgemm_vnni.hpp) quantizes x to q8_0 as the GEMV below does, within the same bound.
  std::vector<float> x18(18 * 32);
  for (std::size_t i = 0; i < x18.size(); ++i) x18[i] = x.data()[i % (6 * 32)];
  std::vector<float> a(18 * 48), b(18 * 48);
  const default_backend be{};
  const auto x18v = nn::row_view<32, const float>(x18.data(), 18);
  lq.forward(be, x18v, nn::row_view<48>(a.data(), 18));
  lf.forward(be, x18v, nn::row_view<48>(b.data(), 18));
  // Worst-case error of row m's outputs against the f32 Linear with x quantized to q8_0: half a
  // step of amax/127 plus the f16 rounding of the scale (2^-11 relative, times at most 127
  // steps) per activation, times sum |w|.
  const auto q8_bound = [&](index_t m, index_t n) {
    float amax = 0;
    for (index_t k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x.data()[m * 32 + k]));
    const double e = amax * (0.5 / 127 + 1.0 / 2048) * 1.001;
    double wsum = 0, norm = 0;
    for (index_t k = 0; k < 32; ++k) {
      wsum += std::fabs(lf.weight.data()[n * 32 + k]);
      norm += std::fabs(lf.weight.data()[n * 32 + k] * x.data()[m * 32 + k]);
    }
    return wsum * e + 1e-5 * norm;
  };
  if (qgemm_quantizes_activations<cpu, q8_0>()) {
    for (index_t m = 0; m < 18; ++m)
      for (index_t n = 0; n < 48; ++n)
        CHECK(std::fabs(a[std::size_t(m * 48 + n)] - b[std::size_t(m * 48 + n)]) <=
              q8_bound(m % 6, n));
  } else {
    CHECK(rel_err(a.data(), b.data(), 18 * 48) < 1e-5f);
  }
  // and beta accumulates: y = x Wᵀ + 1 · y
  auto a2 = a;
  lq.forward(be, x18v, nn::row_view<48>(a2.data(), 18), 1.0f);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] *= 2;
  CHECK(rel_err(a2.data(), a.data(), 18 * 48) < 1e-5f);

  // 6 rows: the integer GEMV with each row of x quantized to q8_0 (one block of 32). Each
  // activation moves by at most half a step of amax/127 plus the f16 rounding of the scale
  // (2^-11 relative, times at most 127 steps), so each output by at most that times sum |w|.
  std::vector<float> q6(6 * 48), f6(6 * 48, 0.5f), f6_beta(6 * 48, 0.5f);
  lq.forward(be, x.view(), nn::row_view<48>(q6.data(), 6));
  lf.forward(be, x.view(), nn::row_view<48>(f6.data(), 6));
  for (index_t m = 0; m < 6; ++m)
    for (index_t n = 0; n < 48; ++n)
      CHECK(std::fabs(q6[std::size_t(m * 48 + n)] - f6[std::size_t(m * 48 + n)]) <= q8_bound(m, n));
  lq.forward(be, x.view(), nn::row_view<48>(f6_beta.data(), 6),
             1.0f);  // beta on the GEMV path: 0.5 + x Wᵀ
  for (std::size_t i = 0; i < q6.size(); ++i) CHECK(f6_beta[i] == doctest::Approx(q6[i] + 0.5f));
}

TEST_CASE("Embedding: rows by token, out-of-range tokens rejected") {
  nn::Embedding<dyn, 4, bf16> e(3, 4);
  for (index_t i = 0; i < 12; ++i) e.weight.data()[i] = from_f32<bf16>(float(i));
  const int toks[2] = {2, 0};
  float out[8];
  e.forward(default_backend{}, std::span<const int>(toks), nn::row_view<4>(out, 2));
  CHECK(out[0] == 8.0f);
  CHECK(out[3] == 11.0f);
  CHECK(out[4] == 0.0f);
  const int bad[1] = {3};
  CHECK_THROWS_AS(e.forward(default_backend{}, std::span<const int>(bad), nn::row_view<4>(out, 1)),
                  value_error);
}

TEST_CASE_TEMPLATE("Whole Llama (GQA, separate classifier) matches PyTorch logits", B,
                   TESSEL_BACKENDS) {
  auto m =
      io::load_llama2c<models::Llama<models::LlamaConfig, float, B>>(data_dir + "/tiny_llama.bin");
  const io::NpzFile ref = io::NpzFile::open(data_dir + "/tiny_llama.npz");
  const auto tokens = ref.get<std::int32_t, 1>("tokens");
  const auto want = ref.get<float, 2>("logits");
  const index_t T = tokens.size(), V = m.vocab();
  REQUIRE(want.extent(1) == V);
  const std::span<const std::int32_t> ids(tokens.data(), std::size_t(T));
  std::vector<float> all(std::size_t(T * V));
  auto st = m.new_state();
  auto last = m.forward(st, ids, 0, all.data());
  CHECK(rel_err(all.data(), want.data(), T * V) < 1e-4f);
  CHECK(rel_err(last.data(), want.data() + (T - 1) * V, V) < 1e-4f);
  // Token by token through the KV cache: the same logits.
  std::vector<float> step(std::size_t(T * V));
  for (index_t i = 0; i < T; ++i) {
    auto l = m.forward(st, ids.subspan(std::size_t(i), 1), i);
    std::copy(l.begin(), l.end(), step.begin() + i * V);
  }
  CHECK(rel_err(step.data(), want.data(), T * V) < 1e-4f);
  // Prefill in chunks of 3 rows gives the same logits as one chunk (up to summation order:
  // gemm sends M <= 4 to its GEMV kernels).
  auto sc = m.new_state({.max_batch = 3});
  std::vector<float> chunked(std::size_t(T * V));
  m.forward(sc, ids, 0, chunked.data());
  CHECK(rel_err(chunked.data(), all.data(), T * V) < 1e-5f);
  // The context is 16 positions.
  CHECK_THROWS_AS(m.forward(st, ids, 16 - T + 1), value_error);
  const std::int32_t bad = 40;
  CHECK_THROWS_AS(m.forward(st, std::span(&bad, 1), 0), value_error);
}

// Static widths are checked by the compiler (tests/compile_fail/typed_layer_static_width.cpp);
// run-time widths, row counts, cache rows and scratch sizes that disagree are shape_errors,
// raised before anything is written.
TEST_CASE_TEMPLATE("Typed activations: dynamic shape mismatches throw shape_error", B,
                   TESSEL_BACKENDS) {
  std::vector<float> xs(8 * 64, 0.5f), ys(8 * 128, 7.0f);
  const auto x = [&](index_t m, index_t d) {
    return nn::row_view<dyn, const float>(xs.data(), m, d);
  };
  const auto y = [&](index_t m, index_t d) { return nn::row_view(ys.data(), m, d); };
  nn::Linear<dyn, dyn> lin(64, 128);
  CHECK_NOTHROW(lin.forward(B{}, x(8, 64), y(8, 128)));
  CHECK(ys[0] == 0.0f);  // zero weights: it ran
  ys.assign(ys.size(), 7.0f);
  CHECK_THROWS_AS(lin.forward(B{}, x(8, 32), y(8, 128)), shape_error);  // input width != In
  CHECK_THROWS_AS(lin.forward(B{}, x(8, 64), y(8, 64)), shape_error);   // output width != Out
  CHECK_THROWS_AS(lin.forward(B{}, x(8, 64), y(7, 128)), shape_error);  // rows differ
  CHECK(ys[0] == 7.0f);                                                 // nothing written
  // A strided output (rows 128 apart, 64 wide) is fine; a row stride below the width is not.
  nn::Linear<dyn, dyn> half(64, 64);
  CHECK_NOTHROW(half.forward(B{}, x(4, 64), nn::row_view(ys.data(), 4, 64, 128)));
  CHECK_THROWS_AS(
      half.forward(B{}, x(4, 64),
                   TensorView<float, Shape<dyn, dyn>>(ys.data(), Shape<dyn, dyn>(4, 64), {32, 1})),
      shape_error);

  // A run-time view into a layer of static widths: the width is checked as it converts.
  nn::Linear<64, 128> st;
  CHECK_NOTHROW(st.forward(B{}, make_view(xs.data(), 8, 64), make_view(ys.data(), 8, 128)));
  CHECK_THROWS_AS(st.forward(B{}, make_view(xs.data(), 16, 32), make_view(ys.data(), 16, 128)),
                  shape_error);
  CHECK_THROWS_AS(st.forward(B{}, make_view(xs.data(), 8, 64), make_view(ys.data(), 16, 64)),
                  shape_error);

  nn::RMSNorm<dyn> rms(64, 1e-5f);
  CHECK_THROWS_AS(rms.forward(B{}, x(8, 64), y(4, 64)), shape_error);
  nn::LayerNorm<dyn> ln(64, 1e-5f);
  CHECK_THROWS_AS(ln.forward(B{}, x(8, 64), y(8, 32)), shape_error);

  nn::GatedMLP<dyn, dyn> mlp(64, 96);
  std::vector<float> s(std::size_t(mlp.scratch_floats(8)));
  CHECK_NOTHROW(
      mlp.forward(B{}, x(8, 64), y(8, 64), nn::scratch_view(s.data(), index_t(s.size()))));
  CHECK_THROWS_AS(
      mlp.forward(B{}, x(8, 64), y(8, 64), nn::scratch_view(s.data(), index_t(s.size()) - 1)),
      shape_error);
  nn::MLP<dyn, dyn> gelu(64, 96);
  CHECK_THROWS_AS(
      gelu.forward(B{}, x(8, 64), y(8, 96), nn::scratch_view(s.data(), index_t(s.size()))),
      shape_error);

  nn::Attention<dyn, dyn, dyn> att(64, 4, 2);  // kv_dim 32
  nn::KVCache<dyn, dyn> cache(1, 16, 32);
  nn::Rope rope(16, 16, 16, 10000.0f, nn::RopeStyle::adjacent);
  std::vector<float> as(std::size_t(att.scratch_floats(8, 16)));
  const auto asv = nn::scratch_view(as.data(), index_t(as.size()));
  CHECK_NOTHROW(
      att.forward(B{}, x(8, 64), 0, cache.keys_view(0), cache.values_view(0), rope, asv, y(8, 64)));
  // cache rows of another width, caches of different lengths, a scratch too small
  CHECK_THROWS_AS(att.forward(B{}, x(8, 64), 0, nn::row_view(cache.keys(0), 8, 64),
                              nn::row_view(cache.values(0), 8, 64), rope, asv, y(8, 64)),
                  shape_error);
  CHECK_THROWS_AS(att.forward(B{}, x(8, 64), 0, cache.keys_view(0),
                              nn::row_view(cache.values(0), 8, 32), rope, asv, y(8, 64)),
                  shape_error);
  CHECK_THROWS_AS(att.forward(B{}, x(8, 64), 0, cache.keys_view(0), cache.values_view(0), rope,
                              nn::scratch_view(as.data(), 10), y(8, 64)),
                  shape_error);
  CHECK_THROWS_AS(
      att.forward(B{}, x(8, 64), 0, cache.keys_view(0), cache.values_view(0), rope, asv, y(4, 64)),
      shape_error);
  // bidirectional: rows that do not split into B sequences, a mask of another length
  std::vector<float> bs(std::size_t(att.bidirectional_scratch_floats(2, 4)));
  const auto bsv = nn::scratch_view(bs.data(), index_t(bs.size()));
  const std::vector<int> mask(8, 1);
  CHECK_NOTHROW(
      att.forward_bidirectional(B{}, x(8, 64), 2, std::span<const int>(mask), bsv, y(8, 64)));
  CHECK_THROWS_AS(
      att.forward_bidirectional(B{}, x(8, 64), 3, std::span<const int>(), bsv, y(8, 64)),
      shape_error);
  CHECK_THROWS_AS(att.forward_bidirectional(B{}, x(8, 64), 2, std::span<const int>(mask.data(), 7),
                                            bsv, y(8, 64)),
                  shape_error);

  nn::Embedding<dyn, dyn> emb(10, 64);
  const int toks[3] = {1, 2, 3};
  CHECK_NOTHROW(emb.forward(B{}, std::span<const int>(toks), y(3, 64)));
  CHECK_THROWS_AS(emb.forward(B{}, std::span<const int>(toks), y(2, 64)), shape_error);
  CHECK_THROWS_AS(emb.forward(B{}, std::span<const int>(toks), y(3, 32)), shape_error);
}

// Each kernel-table entry's SIMD kernel against its scalar reference, on random rows of odd
// lengths (vector tails) and lengths the vectors divide.
namespace {

std::vector<float> random_floats(index_t n, std::uint32_t seed, float scale = 1.0f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = (static_cast<float>(seed >> 8) / 16777216.0f - 0.5f) * 2.0f * scale;
  }
  return v;
}

using simd_backend = default_backend;

}  // namespace

TEST_CASE("Row kernels: the SIMD backend against the scalar reference") {
  for (index_t n : {1, 7, 16, 33, 100, 257}) {
    CAPTURE(n);
    const auto x = random_floats(n, 1u + std::uint32_t(n), 4.0f);
    const auto m = random_floats(n, 7u + std::uint32_t(n));
    const auto w = random_floats(n, 11u + std::uint32_t(n));
    const auto b = random_floats(n, 13u + std::uint32_t(n));
    std::vector<float> ys(x.size()), yv(x.size());
    const auto close = [&](float tol) {
      for (std::size_t i = 0; i < ys.size(); ++i)
        CHECK(yv[i] == doctest::Approx(ys[i]).epsilon(tol).scale(1.0));
    };
    kernel<op::softmax, cpu_scalar>::run(x.data(), ys.data(), 1, n);
    kernel<op::softmax, simd_backend>::run(x.data(), yv.data(), 1, n);
    close(1e-5f);
    kernel<op::rms_norm_row, cpu_scalar>::run(x.data(), ys.data(), n, w.data(), 1e-5f);
    kernel<op::rms_norm_row, simd_backend>::run(x.data(), yv.data(), n, w.data(), 1e-5f);
    close(1e-5f);
    kernel<op::layer_norm_row, cpu_scalar>::run(x.data(), ys.data(), n, w.data(), b.data(), 1e-5f);
    kernel<op::layer_norm_row, simd_backend>::run(x.data(), yv.data(), n, w.data(), b.data(),
                                                  1e-5f);
    close(1e-5f);
    ys = x;
    yv = x;
    kernel<op::silu, cpu_scalar>::run(ys.data(), n);
    kernel<op::silu, simd_backend>::run(yv.data(), n);
    close(1e-5f);
    kernel<op::silu_mul, cpu_scalar>::run(x.data(), m.data(), ys.data(), n);
    kernel<op::silu_mul, simd_backend>::run(x.data(), m.data(), yv.data(), n);
    close(1e-5f);
    // The silu of a known point, so the reference itself is checked: silu(1) = 1 / (1 + e⁻¹).
    float one = 1.0f;
    kernel<op::silu, simd_backend>::run(&one, 1);
    CHECK(one == doctest::Approx(0.7310585786f));
  }
}

TEST_CASE("Attention kernels: the SIMD backend against the scalar reference") {
  // Decode rows: head sizes the 8-wide vectors divide (static and run-time) and one they do
  // not (the SIMD kernel's fallback), over key counts with and without a vector tail.
  for (index_t hd : {8, 16, 12}) {
    for (index_t T : {1, 5, 8, 19}) {
      CAPTURE(hd);
      CAPTURE(T);
      const index_t kvd = 3 * hd;  // the head's rows inside wider cache rows
      const auto q = random_floats(hd, 3u), kc = random_floats(T * kvd, 5u),
                 vc = random_floats(T * kvd, 9u);
      const float scale = 1.0f / std::sqrt(float(hd));
      const auto sz = [](index_t n) { return static_cast<std::size_t>(n); };
      std::vector<float> s(sz(T)), os(sz(hd)), ov(sz(hd)), od(sz(hd));
      kernel<op::attention_row<dyn>, cpu_scalar>::run(q.data(), kc.data() + hd, vc.data() + hd, kvd,
                                                      T, hd, scale, s.data(), os.data());
      kernel<op::attention_row<dyn>, simd_backend>::run(q.data(), kc.data() + hd, vc.data() + hd,
                                                        kvd, T, hd, scale, s.data(), ov.data());
      if (hd == 16)
        kernel<op::attention_row<16>, simd_backend>::run(q.data(), kc.data() + hd, vc.data() + hd,
                                                         kvd, T, 0, scale, s.data(), od.data());
      else
        od = ov;
      for (index_t d = 0; d < hd; ++d) {
        CHECK(ov[std::size_t(d)] == doctest::Approx(os[std::size_t(d)]).epsilon(1e-5).scale(1.0));
        CHECK(od[std::size_t(d)] == doctest::Approx(os[std::size_t(d)]).epsilon(1e-5).scale(1.0));
      }
    }
  }
  // Prefill: odd row counts, after cached positions, GQA and a head size of 12.
  for (auto [M, pos, H, KvH, hd] :
       {std::array<index_t, 5>{17, 0, 4, 2, 16}, std::array<index_t, 5>{37, 11, 3, 1, 12},
        std::array<index_t, 5>{150, 5, 2, 2, 8}}) {
    CAPTURE(M);
    CAPTURE(pos);
    const index_t D = H * hd, kvd = KvH * hd, T = pos + M;
    const auto q = random_floats(M * D, 21u), kc = random_floats(T * kvd, 23u),
               vc = random_floats(T * kvd, 29u);
    std::vector<float> as(std::size_t(M * D)), av(std::size_t(M * D)), ar(std::size_t(M * D));
    kernel<op::attention_prefill, cpu_scalar>::run(q.data(), M, pos, kc.data(), vc.data(),
                                                   as.data(), H, KvH, hd);
    kernel<op::attention_prefill, simd_backend>::run(q.data(), M, pos, kc.data(), vc.data(),
                                                     av.data(), H, KvH, hd);
    // The same rows through the decode kernel, one row at a time.
    std::vector<float> s(static_cast<std::size_t>(T));
    for (index_t i = 0; i < M; ++i)
      for (index_t h = 0; h < H; ++h) {
        const index_t off = (h / (H / KvH)) * hd;
        kernel<op::attention_row<dyn>, cpu_scalar>::run(
            q.data() + i * D + h * hd, kc.data() + off, vc.data() + off, kvd, pos + i + 1, hd,
            1.0f / std::sqrt(float(hd)), s.data(), ar.data() + i * D + h * hd);
      }
    for (std::size_t i = 0; i < as.size(); ++i) {
      CHECK(as[i] == doctest::Approx(ar[i]).epsilon(1e-5).scale(1.0));
      CHECK(av[i] == doctest::Approx(ar[i]).epsilon(1e-5).scale(1.0));
    }
  }
}
