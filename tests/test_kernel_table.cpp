// Kernel-table entries of the transformer layers (ops/activation.hpp, ops/rope.hpp,
// ops/softmax.hpp, ops/embedding.hpp, ops/attention.hpp, op::dequant_matmul): each SIMD entry
// against its scalar reference on random inputs with odd sizes, on every instruction set the
// build can run (the best one, and AVX2 + FMA and SSE2 below it: a kernel's path must follow
// its Arch), and each reference against its formula in double.

#include <doctest/doctest.h>

#include "kernel_backends.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <tessel/nn/embedding.hpp>
#include <tessel/nn/linear.hpp>
#include <tessel/nn/position.hpp>
#include <tessel/ops/activation.hpp>
#include <tessel/ops/attention.hpp>
#include <tessel/ops/embedding.hpp>
#include <tessel/ops/rope.hpp>
#include <tessel/ops/softmax.hpp>
#include <tessel/quant/ggml_blocks.hpp>
#include <tessel/quant/kquants.hpp>
#include <tuple>
#include <vector>

using namespace tessel;

namespace {

using best = cpu_simd<cpu_best_arch>;
using test::random_floats;
using test::table_backends;

// |got - want| <= tol · (|want| + 1): relative for large values, absolute near zero.
void check_vec(const std::string& what, const std::vector<float>& got,
               const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= tol * (std::fabs(want[i]) + 1.0))) {
      FAIL_CHECK(what << ": element " << i << ": got " << got[i] << ", want " << want[i]);
      return;
    }
}
void check_vec(const std::string& what, const std::vector<float>& got,
               const std::vector<float>& want, double tol) {
  check_vec(what, got, std::vector<double>(want.begin(), want.end()), tol);
}

double gelu_ref(double x, gelu_kind k) {
  switch (k) {
    case gelu_kind::erf:
      return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case gelu_kind::tanh:
      return 0.5 * x *
             (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    case gelu_kind::quick:
      return x / (1.0 + std::exp(-1.702 * x));
  }
  return 0;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("kernel table: each SIMD entry equals its scalar reference, odd sizes",
                          Backend, kernel_table) {
  CAPTURE(std::string(Backend::name()));

  SUBCASE("gelu: erf, tanh and quick forms (one row; past a parallel chunk)") {
    for (const gelu_kind k : {gelu_kind::erf, gelu_kind::tanh, gelu_kind::quick}) {
      for (index_t n : {1, 7, 15, 33, 1001, 40003}) {
        CAPTURE(int(k));
        CAPTURE(n);
        const auto x = random_floats(n, unsigned(n) + 17, -6.f, 6.f);
        auto want = x, got = x;
        kernel<op::gelu, cpu_scalar>::run(want.data(), n, k);
        kernel<op::gelu, Backend>::run(got.data(), n, k);
        // xsimd's erf and exp are within a few ulp of std's, and the tanh form's SIMD identity
        // 0.5·(1 + tanh u) = σ(2u) adds a few roundings: a few ulp of the output, plus an
        // absolute 1e-6 where 1 + erf / 1 + e^(...) cancel for x far below 0 (outputs ~ 0).
        check_vec("gelu SIMD", got, want, 1e-6);
        std::vector<double> exact(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) exact[i] = gelu_ref(x[i], k);
        check_vec("gelu reference", want, exact, 1e-6);
      }
    }
  }

  SUBCASE("geglu (rows of 2F, odd F)") {
    for (index_t F : {1, 5, 37}) {
      const index_t M = 9;
      const auto h = random_floats(M * 2 * F, unsigned(F) + 3);
      std::vector<float> a(std::size_t(M * F)), r(a.size());
      kernel<op::geglu, Backend>::run(h.data(), M, F, a.data());
      kernel<op::geglu, cpu_scalar>::run(h.data(), M, F, r.data());
      check_vec("geglu F=" + std::to_string(F), a, r, 1e-6);
    }
  }

  SUBCASE("softmax: M rows, scale, in place and out of place") {
    for (index_t n : {1, 3, 17, 77, 1001}) {
      const index_t M = 13;
      CAPTURE(n);
      const auto x = random_floats(M * n, unsigned(n), -10.f, 10.f);
      for (const float scale : {1.0f, 0.125f}) {
        std::vector<float> want(x.size()), got(x.size()), in_place = x;
        kernel<op::softmax, cpu_scalar>::run(x.data(), want.data(), M, n, scale);
        kernel<op::softmax, Backend>::run(x.data(), got.data(), M, n, scale);
        kernel<op::softmax, Backend>::run(in_place.data(), in_place.data(), M, n, scale);
        // exp within a few ulp; sums of up to 1001 terms in f32 (the SIMD kernel in W partial
        // sums, the reference in double): 1e-5 relative.
        check_vec("softmax", got, want, 1e-5);
        check_vec("softmax in place", in_place, want, 1e-5);
        std::vector<double> exact(x.size());
        for (index_t i = 0; i < M; ++i) {
          double m = -1e300, s = 0;
          for (index_t j = 0; j < n; ++j) m = std::max(m, double(scale) * x[i * n + j]);
          for (index_t j = 0; j < n; ++j) s += std::exp(double(scale) * x[i * n + j] - m);
          for (index_t j = 0; j < n; ++j)
            exact[i * n + j] = std::exp(double(scale) * x[i * n + j] - m) / s;
        }
        check_vec("softmax reference", want, exact, 1e-5);
      }
    }
  }

  SUBCASE("rope_rows: adjacent and half-split pairs, odd halves, partial rotary") {
    struct Dims {
      index_t heads, head_dim, half;
    };
    for (const auto d : {Dims{1, 2, 1}, Dims{3, 8, 4}, Dims{2, 14, 7}, Dims{3, 24, 9},
                         Dims{4, 64, 32}, Dims{3, 70, 35}, Dims{2, 128, 48}}) {
      for (const bool adjacent : {true, false}) {
        CAPTURE(d.head_dim);
        CAPTURE(d.half);
        CAPTURE(adjacent);
        const auto v0 = random_floats(d.heads * d.head_dim, unsigned(d.head_dim) + 5);
        const auto ang = random_floats(d.half, unsigned(d.half) + 9, -3.2f, 3.2f);
        std::vector<float> c(ang.size()), s(ang.size());
        for (std::size_t i = 0; i < ang.size(); ++i)
          c[i] = std::cos(ang[i]), s[i] = std::sin(ang[i]);
        auto want = v0, got = v0;
        kernel<op::rope_rows, cpu_scalar>::run(want.data(), d.heads, d.head_dim, d.half, c.data(),
                                               s.data(), adjacent);
        kernel<op::rope_rows, Backend>::run(got.data(), d.heads, d.head_dim, d.half, c.data(),
                                            s.data(), adjacent);
        // The same two products and one sum per output; only an FMA contraction (by the
        // compiler, in either kernel) may differ: two roundings of |x0 c| + |x1 s| <= 8, 1e-6.
        check_vec("rope SIMD", got, want, 1e-6);
        // The reference against the rotation in double; dimensions past 2·half untouched.
        std::vector<double> exact(v0.begin(), v0.end());
        for (index_t h = 0; h < d.heads; ++h)
          for (index_t i = 0; i < d.half; ++i) {
            const index_t a = h * d.head_dim + (adjacent ? 2 * i : i);
            const index_t b = a + (adjacent ? 1 : d.half);
            const double x0 = v0[a], x1 = v0[b], cc = c[i], ss = s[i];
            exact[a] = x0 * cc - x1 * ss;
            exact[b] = x0 * ss + x1 * cc;
          }
        check_vec("rope reference", want, exact, 1e-6);
        for (index_t h = 0; h < d.heads; ++h)
          for (index_t j = 2 * d.half; j < d.head_dim; ++j)
            CHECK(got[h * d.head_dim + j] == v0[h * d.head_dim + j]);
      }
    }
  }

  SUBCASE("attention_row: the decode row on Arch's vectors (fallback for odd head sizes)") {
    for (index_t hd : {8, 16, 12, 64}) {
      for (index_t T : {1, 5, 8, 19, 70}) {
        CAPTURE(hd);
        CAPTURE(T);
        const index_t kvd = 3 * hd;  // the head's rows inside wider cache rows
        const auto q = random_floats(hd, 3u), kc = random_floats(T * kvd, 5u),
                   vc = random_floats(T * kvd, 9u);
        const float scale = 1.0f / std::sqrt(float(hd));
        std::vector<float> s(static_cast<std::size_t>(T)), os(static_cast<std::size_t>(hd)),
            ov(os.size());
        kernel<op::attention_row<dyn>, cpu_scalar>::run(q.data(), kc.data() + hd, vc.data() + hd,
                                                        kvd, T, hd, scale, s.data(), os.data());
        kernel<op::attention_row<dyn>, Backend>::run(q.data(), kc.data() + hd, vc.data() + hd, kvd,
                                                     T, hd, scale, s.data(), ov.data());
        check_vec("attention_row", ov, os, 1e-5);
      }
    }
  }

  SUBCASE("embedding_rows: f32, f16, bf16, q8_0 and q4_k tables; ids and consecutive rows") {
    const index_t V = 7, D = 256, n = 5;
    const auto table = random_floats(V * D, 31u);
    const std::int64_t ids[n] = {6, 0, 3, 3, 1};
    const auto base = random_floats(n * D, 37u);
    const auto check_format = [&]<class W>(W*, const char* name) {
      CAPTURE(name);
      std::vector<W> t(std::size_t(V * D / block_elems_v<W>));
      std::vector<float> widened(table.size());  // the table as the format holds it
      if constexpr (is_block_format_v<W>) {
        W::quantize_row(table.data(), t.data(), V * D);
        W::dequantize_row(t.data(), widened.data(), V * D);
      } else {
        for (std::size_t i = 0; i < t.size(); ++i) t[i] = from_f32<W>(table[i]);
        for (std::size_t i = 0; i < t.size(); ++i) widened[i] = to_f32(t[i]);
      }
      std::vector<double> rows(std::size_t(n * D)), added(rows.size()), pos(rows.size());
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < D; ++j) {
          rows[i * D + j] = widened[ids[i] * D + j];
          added[i * D + j] = double(base[i * D + j]) + widened[ids[i] * D + j];
          pos[i * D + j] = double(base[i * D + j]) + widened[(2 + i) * D + j];
        }
      std::vector<float> out(rows.size()), acc = base, at = base;
      kernel<op::embedding_rows, Backend, W>::run(t.data(), D, ids, n, out.data(), false);
      kernel<op::embedding_rows, Backend, W>::run(t.data(), D, ids, n, acc.data(), true);
      kernel<op::embedding_rows, Backend, W>::run(t.data(), D, index_t{2}, n, at.data(), true);
      check_vec("rows", out, rows, 0);
      check_vec("rows added", acc, added, 1e-7);
      check_vec("consecutive rows added", at, pos, 1e-7);
    };
    check_format(static_cast<float*>(nullptr), "f32");
    check_format(static_cast<f16*>(nullptr), "f16");
    check_format(static_cast<bf16*>(nullptr), "bf16");
    check_format(static_cast<q8_0*>(nullptr), "q8_0");
    check_format(static_cast<q4_k*>(nullptr), "q4_k");
  }
}
TEST_CASE_TEMPLATE_APPLY(kernel_table, table_backends);

namespace {
// A block format with only dequantize_row (no vec_dot_type, so no qdot_op kernels): pairs of
// f16 values, the second scaled by 2.
struct pair16 {
  static constexpr index_t block_elems = 2;
  f16 v[2];
  static void dequantize_row(const pair16* x, float* y, index_t n) {
    for (index_t i = 0; i < n / 2; ++i) {
      y[2 * i] = to_f32(x[i].v[0]);
      y[2 * i + 1] = 2.0f * to_f32(x[i].v[1]);
    }
  }
};
static_assert(nn::WeightFormat<pair16> && !QuantFormat<pair16>);
}  // namespace

TEST_CASE_TEMPLATE("dequant_matmul: a format without integer dots, through Linear", Backend,
                   cpu_scalar, default_backend) {
  const index_t K = 38, N = 11;
  const auto w = random_floats(N * K, 41u), x = random_floats(7 * K, 43u);
  nn::Linear<K, N, pair16> lin;
  for (index_t r = 0; r < N; ++r)
    for (index_t k = 0; k < K; k += 2) {
      lin.weight.data()[(r * K + k) / 2] = {from_f32<f16>(w[r * K + k]),
                                            from_f32<f16>(w[r * K + k + 1] / 2)};
    }
  for (const index_t M : {1, 7}) {
    CAPTURE(M);
    std::vector<double> want(std::size_t(M * N));
    for (index_t m = 0; m < M; ++m)
      for (index_t n = 0; n < N; ++n) {
        double s = 0;
        for (index_t k = 0; k < K; ++k) {
          const pair16& b = lin.weight.data()[(n * K + k) / 2];
          s += double(x[m * K + k]) * (k % 2 == 0 ? to_f32(b.v[0]) : 2.0 * to_f32(b.v[1]));
        }
        want[m * N + n] = s;
      }
    std::vector<float> y(want.size());
    lin.forward(Backend{}, nn::row_view<K, const float>(x.data(), M, K),
                nn::row_view<N>(y.data(), M, N));
    // K = 38 f32 products summed in f32: 38 roundings of at most |x||w| <= 16 each, 1e-5.
    check_vec("y = x Wᵀ", y, want, 1e-5);
    std::vector<float> y2(want.size(), 1.0f);
    lin.forward(Backend{}, nn::row_view<K, const float>(x.data(), M, K),
                nn::row_view<N>(y2.data(), M, N),
                0.5f);  // y = x Wᵀ + 0.5 · y
    for (auto& v : want) v += 0.5;
    check_vec("y = x Wᵀ + 0.5 y", y2, want, 1e-5);
  }
}

TEST_CASE_TEMPLATE("Embedding and PositionEmbedding gather through the table", Backend, cpu_scalar,
                   default_backend) {
  const index_t V = 5, D = 64;
  const auto table = random_floats(V * D, 51u);
  // any_weight: the format is the matrix's (here q8_0), dispatched once per lookup.
  nn::Embedding<dyn, dyn, nn::any_weight> e(V, D);
  std::vector<q8_0> q(std::size_t(V * D / 32));
  q8_0::quantize_row(table.data(), q.data(), V * D);
  e.weight.assign(q.data());
  std::vector<float> widened(table.size());
  q8_0::dequantize_row(q.data(), widened.data(), V * D);
  const int toks[3] = {4, 0, 4};
  std::vector<float> out(3 * D), add(3 * D, 1.0f);
  e.forward(Backend{}, std::span<const int>(toks), nn::row_view(out.data(), 3, D));
  e.forward_add(Backend{}, std::span<const int>(toks), nn::row_view(add.data(), 3, D));
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < D; ++j) {
      CHECK(out[i * D + j] == widened[toks[i] * D + j]);
      CHECK(add[i * D + j] == 1.0f + widened[toks[i] * D + j]);
    }
  // Strided rows (ld = D + 5, as a view into a wider buffer): one gather per row, the gaps kept.
  const index_t ld = D + 5;
  std::vector<float> wide(std::size_t(3 * ld), -7.0f);
  e.forward(Backend{}, std::span<const int>(toks), nn::row_view(wide.data(), 3, D, ld));
  for (index_t i = 0; i < 3; ++i) {
    for (index_t j = 0; j < D; ++j) CHECK(wide[i * ld + j] == widened[toks[i] * D + j]);
    for (index_t j = D; j < ld; ++j) CHECK(wide[i * ld + j] == -7.0f);
  }
  std::vector<float> xw(std::size_t(2 * ld), 0.25f);
  nn::PositionEmbedding<dyn, dyn> pf(V, D);
  std::copy(table.begin(), table.end(), pf.weight.data());
  pf.add(Backend{}, nn::row_view(xw.data(), 2, D, ld), 1);  // rows 1 and 2
  for (index_t i = 0; i < 2; ++i) {
    for (index_t j = 0; j < D; ++j) CHECK(xw[i * ld + j] == 0.25f + table[(1 + i) * D + j]);
    for (index_t j = D; j < ld; ++j) CHECK(xw[i * ld + j] == 0.25f);
  }
  const int bad[2] = {1, 5};
  CHECK_THROWS_AS(e.forward(Backend{}, std::span<const int>(bad), nn::row_view(out.data(), 2, D)),
                  value_error);
  nn::Embedding<dyn, dyn, nn::any_weight> unloaded(V, D);
  CHECK_THROWS_AS(
      unloaded.forward(Backend{}, std::span<const int>(toks), nn::row_view(out.data(), 3, D)),
      value_error);

  nn::PositionEmbedding<dyn, dyn, bf16> p(V, D);
  for (index_t i = 0; i < V * D; ++i) p.weight.data()[i] = from_f32<bf16>(table[i]);
  std::vector<float> x(2 * D, 0.5f);
  p.add(Backend{}, nn::row_view(x.data(), 2, D), 3);  // rows 3 and 4
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < D; ++j)
      CHECK(x[i * D + j] == 0.5f + to_f32(p.weight.data()[(3 + i) * D + j]));
  CHECK_THROWS_AS(p.add(Backend{}, nn::row_view(x.data(), 2, D), 4), value_error);
}
