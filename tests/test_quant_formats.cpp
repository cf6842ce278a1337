// Quantization formats: hand-built blocks against the formats' formulas, and the error of
// quantize -> dequantize on Gaussian and heavy-tailed data against documented bounds.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "tessel/quant/quantize.hpp"

using namespace tessel;

namespace {

float h2f(f16 h) {
  return to_f32(h);
}
f16 f2h(float x) {
  return from_f32<f16>(x);
}

std::vector<float> gaussian(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
std::vector<float> student_t(std::size_t n, unsigned seed) {  // heavy tails (3 dof)
  std::mt19937 rng(seed);
  std::student_t_distribution<float> d(3.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <class F>
double rel_rmse(const std::vector<float>& x) {
  const index_t n = static_cast<index_t>(x.size());
  std::vector<F> q(static_cast<std::size_t>(n / F::block_elems));
  F::quantize_row(x.data(), q.data(), n);
  std::vector<float> y(x.size());
  F::dequantize_row(q.data(), y.data(), n);
  double se = 0, s2 = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    se += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    s2 += double(x[i]) * x[i];
  }
  return std::sqrt(se / s2);
}

// Relative RMSE bounds (error RMS / data RMS), documented in docs/quantization.md: the
// measured value plus a small margin. Gaussian, Student-t(3).
template <class F>
void check_rmse(double bound_gauss, double bound_t) {
  const auto g = gaussian(1 << 16, 1), t = student_t(1 << 16, 2);
  const double eg = rel_rmse<F>(g), et = rel_rmse<F>(t);
  std::printf("rmse %-10s gaussian %.4f%%  student-t %.4f%%\n", std::string(F::name).c_str(),
              100 * eg, 100 * et);
  CHECK(eg < bound_gauss);
  CHECK(et < bound_t);
  CHECK(eg > bound_gauss * 0.8);  // a bound far above the measurement would be meaningless
}

}  // namespace

namespace {
// Random bytes for the quant fields of a hand-built block (the scales are set explicitly).
void fill_bytes(void* p, std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(rng());
}
template <class F>
std::vector<float> deq(const F& b) {
  std::vector<float> y(F::block_elems);
  F::dequantize_row(&b, y.data(), F::block_elems);
  return y;
}
// The 6-bit scale/min unpacking of q4_k / q5_k as the GGUF spec gives it.
void spec_scale_min(int j, const std::uint8_t* q, int& d, int& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}
}  // namespace

TEST_CASE("hand-built 32-element ggml blocks dequantize to the formula") {
  SUBCASE("q8_0") {
    q8_0 b{};
    b.d = f2h(0.25f);
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::int8_t>(4 * j - 64);
    const auto y = deq(b);
    for (int j = 0; j < 32; ++j) CHECK(y[j] == 0.25f * float(4 * j - 64));
  }
  SUBCASE("q4_0 and q4_1") {
    q4_0 a{};
    q4_1 b{};
    a.d = b.d = f2h(0.5f);
    b.m = f2h(-1.5f);
    for (int j = 0; j < 16; ++j) a.qs[j] = b.qs[j] = static_cast<std::uint8_t>(j | ((15 - j) << 4));
    const auto ya = deq(a), yb = deq(b);
    for (int j = 0; j < 16; ++j) {
      CHECK(ya[j] == 0.5f * float(j - 8));
      CHECK(ya[j + 16] == 0.5f * float(7 - j));
      CHECK(yb[j] == 0.5f * float(j) - 1.5f);
      CHECK(yb[j + 16] == 0.5f * float(15 - j) - 1.5f);
    }
  }
  SUBCASE("q5_0 and q5_1") {
    q5_0 a{};
    q5_1 b{};
    a.d = b.d = f2h(0.25f);
    b.m = f2h(2.f);
    const std::uint32_t qh = 0xA5C3F00Fu;
    std::memcpy(a.qh, &qh, 4);
    std::memcpy(b.qh, &qh, 4);
    fill_bytes(a.qs, 16, 7);
    std::memcpy(b.qs, a.qs, 16);
    const auto ya = deq(a), yb = deq(b);
    for (int j = 0; j < 32; ++j) {
      const int lo = j < 16 ? (a.qs[j] & 15) : (a.qs[j - 16] >> 4);
      const int q = lo + 16 * int((qh >> j) & 1);
      CHECK(ya[j] == 0.25f * float(q - 16));
      CHECK(yb[j] == 0.25f * float(q) + 2.f);
    }
  }
}

TEST_CASE("hand-built K-quant super-blocks dequantize to the GGUF formula") {
  const float d = 0.125f, dmin = 0.0625f;
  SUBCASE("q2_k") {
    q2_k b{};
    fill_bytes(&b, sizeof b, 11);
    b.d = f2h(d), b.dmin = f2h(dmin);
    const auto y = deq(b);
    std::vector<float> ref;
    const std::uint8_t* q = b.qs;
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int half = 0; half < 2; ++half) {
          const int sc = b.scales[is++];
          for (int l = 0; l < 16; ++l)
            ref.push_back(d * float(sc & 15) * float((q[l + 16 * half] >> shift) & 3) -
                          dmin * float(sc >> 4));
        }
    for (int e = 0; e < 256; ++e) CHECK(y[e] == doctest::Approx(ref[e]).epsilon(1e-6));
  }
  SUBCASE("q3_k") {
    q3_k b{};
    fill_bytes(&b, sizeof b, 12);
    b.d = f2h(d);
    const auto y = deq(b);
    int sc[16];
    for (int j = 0; j < 16; ++j) {
      const int lo = j < 8 ? (b.scales[j] & 15) : (b.scales[j - 8] >> 4);
      sc[j] = (lo | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    }
    std::vector<float> ref;
    const std::uint8_t* q = b.qs;
    int is = 0, m = 1;
    for (int n = 0; n < 256; n += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2, m <<= 1)
        for (int half = 0; half < 2; ++half) {
          const float dl = d * float(sc[is++]);
          for (int l = 16 * half; l < 16 * half + 16; ++l)
            ref.push_back(dl * float(((q[l] >> shift) & 3) - ((b.hmask[l] & m) ? 0 : 4)));
        }
    for (int e = 0; e < 256; ++e) CHECK(y[e] == doctest::Approx(ref[e]).epsilon(1e-6));
  }
  SUBCASE("q4_k and q5_k") {
    q4_k a{};
    q5_k b{};
    fill_bytes(&a, sizeof a, 13);
    fill_bytes(&b, sizeof b, 14);
    a.d = b.d = f2h(d), a.dmin = b.dmin = f2h(dmin);
    const auto ya = deq(a), yb = deq(b);
    std::vector<float> ra, rb;
    for (int c = 0; c < 4; ++c)
      for (int half = 0; half < 2; ++half) {
        int sa, ma, sb, mb;
        spec_scale_min(2 * c + half, a.scales, sa, ma);
        spec_scale_min(2 * c + half, b.scales, sb, mb);
        for (int l = 0; l < 32; ++l) {
          const int qa = half ? a.qs[32 * c + l] >> 4 : a.qs[32 * c + l] & 15;
          int qb = half ? b.qs[32 * c + l] >> 4 : b.qs[32 * c + l] & 15;
          if (b.qh[l] & (1 << (2 * c + half))) qb += 16;
          ra.push_back(d * float(sa) * float(qa) - dmin * float(ma));
          rb.push_back(d * float(sb) * float(qb) - dmin * float(mb));
        }
      }
    for (int e = 0; e < 256; ++e) {
      CHECK(ya[e] == doctest::Approx(ra[e]).epsilon(1e-6));
      CHECK(yb[e] == doctest::Approx(rb[e]).epsilon(1e-6));
    }
  }
  SUBCASE("q6_k") {
    q6_k b{};
    fill_bytes(&b, sizeof b, 15);
    b.d = f2h(d);
    const auto y = deq(b);
    std::vector<float> ref(256);
    for (int n = 0; n < 2; ++n) {
      const std::uint8_t* ql = b.ql + 64 * n;
      const std::uint8_t* qh = b.qh + 32 * n;
      const std::int8_t* sc = b.scales + 8 * n;
      float* o = ref.data() + 128 * n;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        o[l] = d * sc[is] * float(((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = d * sc[is + 2] * float(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = d * sc[is + 4] * float(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = d * sc[is + 6] * float(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    for (int e = 0; e < 256; ++e) CHECK(y[e] == doctest::Approx(ref[e]).epsilon(1e-6));
  }
  SUBCASE("q8_k: the block sums are the sums of 16 quants") {
    const auto x = gaussian(512, 5);
    q8_k b[2];
    q8_k::quantize_row(x.data(), b, 512);
    for (const auto& blk : b)
      for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int l = 0; l < 16; ++l) s += blk.qs[16 * g + l];
        CHECK(blk.bsums[g] == s);
      }
  }
}

TEST_CASE("hand-built NF4 and int-group blocks") {
  nf4 b{};
  b.absmax = 2.f;
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::uint8_t>((j % 16) | ((15 - j % 16) << 4));
  const auto y = deq(b);
  for (int j = 0; j < 32; ++j) {
    CHECK(y[j] == 2.f * nf4_levels[j % 16]);
    CHECK(y[j + 32] == 2.f * nf4_levels[15 - j % 16]);
  }
  int4_group<32> g{};
  g.scale = f2h(0.5f);
  g.zero = 3;
  for (int j = 0; j < 16; ++j) g.qs[j] = static_cast<std::uint8_t>(j | ((15 - j) << 4));
  const auto yg = deq(g);
  for (int j = 0; j < 16; ++j) {
    CHECK(yg[j] == 0.5f * float(j - 3));
    CHECK(yg[j + 16] == 0.5f * float(12 - j));
  }
  int8_group_sym<32> s{};
  s.scale = f2h(0.25f);
  s.zero = 128;
  for (int j = 0; j < 32; ++j) s.qs[j] = static_cast<std::uint8_t>(8 * j);
  const auto ys = deq(s);
  for (int j = 0; j < 32; ++j) CHECK(ys[j] == 0.25f * float(8 * j - 128));
}

TEST_CASE("quantizers produce the levels the formula inverts") {
  // Values exactly on the grid of a hand-chosen scale come back exactly.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = 0.5f * float((j % 16) - 8);  // includes -8 * 0.5
  q4_0 b;
  q4_0::quantize_row(x.data(), &b, 32);
  CHECK(h2f(b.d) == 0.5f);  // the extreme value -4 maps to level -8 (q = 0)
  const auto y = deq(b);
  for (int j = 0; j < 32; ++j) CHECK(y[j] == x[j]);
}

TEST_CASE("bad row lengths throw shape_error") {
  std::vector<float> x(48);
  std::vector<q4_0> b(2);
  CHECK_THROWS_AS(q4_0::quantize_row(x.data(), b.data(), 48), shape_error);
  std::vector<q4_k> k(1);
  CHECK_THROWS_AS(q4_k::dequantize_row(k.data(), x.data(), 48), shape_error);
  CHECK_THROWS_AS((Tensor<q4_0, DynShape<2>>(3, 40)), shape_error);
}

TEST_CASE("whole-tensor quantize / dequantize equals the row functions, threaded") {
  const auto x = gaussian(17 * 512, 9);
  Tensor<float, DynShape<2>> t(17, 512);
  std::memcpy(t.data(), x.data(), x.size() * 4);
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    const auto q = quantize<q4_k>(t);
    const auto y = dequantize(q);
    std::vector<q4_k> rq(2);
    std::vector<float> ry(512);
    for (int r = 0; r < 17; ++r) {
      q4_k::quantize_row(x.data() + 512 * r, rq.data(), 512);
      CHECK(std::memcmp(rq.data(), q.data() + 2 * r, 2 * sizeof(q4_k)) == 0);
      q4_k::dequantize_row(rq.data(), ry.data(), 512);
      CHECK(std::memcmp(ry.data(), y.data() + 512 * r, 512 * 4) == 0);
    }
    // A strided view (the transpose of a [512, 17] copy) quantizes the same values.
    Tensor<float, DynShape<2>> u(512, 17);
    for (index_t r = 0; r < 17; ++r)
      for (index_t k = 0; k < 512; ++k) u(k, r) = t(r, k);
    const auto qu = quantize<q4_k>(u.transpose());
    CHECK(std::memcmp(qu.data(), q.data(), q.bytes()) == 0);
    // Rows of a view whose length is not a whole number of blocks are rejected.
    CHECK_THROWS_AS(quantize<q4_k>(u.view()), shape_error);
  }
  set_num_threads(0);
}

TEST_CASE("quantize -> dequantize error is within the per-format bounds") {
  check_rmse<q8_0>(0.0060, 0.0095);
  check_rmse<q8_1>(0.0060, 0.0095);
  check_rmse<q8_k>(0.0075, 0.0196);
  check_rmse<q4_0>(0.093, 0.135);
  check_rmse<q4_1>(0.085, 0.108);
  check_rmse<q5_0>(0.046, 0.071);
  check_rmse<q5_1>(0.041, 0.053);
  check_rmse<q2_k>(0.31, 0.36);
  check_rmse<q3_k>(0.157, 0.197);
  check_rmse<q4_k>(0.078, 0.099);
  check_rmse<q5_k>(0.039, 0.051);
  check_rmse<q6_k>(0.019, 0.028);
  check_rmse<nf4>(0.099, 0.130);
  check_rmse<int4_group<32>>(0.087, 0.109);
  check_rmse<int4_group<128>>(0.108, 0.175);
  check_rmse<int4_group_sym<128>>(0.126, 0.238);
  check_rmse<int8_group<128>>(0.0064, 0.0111);
  check_rmse<int8_group_sym<64>>(0.0064, 0.0120);
}

TEST_CASE("NF4 double quantization of the absmax values") {
  const auto x = gaussian(64 * 600, 21);  // 600 blocks: 3 groups of 256, the last partial
  std::vector<nf4> b(600), orig;
  nf4::quantize_row(x.data(), b.data(), 64 * 600);
  orig = b;
  const auto dq = double_quantize(b);
  REQUIRE(dq.code.size() == 600);
  REQUIRE(dq.scale.size() == 3);
  CHECK(dq.bytes() == 4 + 3 * 4 + 600);  // vs 2400 bytes of f32 absmax
  for (std::size_t k = 0; k < 600; ++k) {
    // Each decoded absmax is within half a step of the original, and is what the codes say.
    CHECK(std::fabs(b[k].absmax - orig[k].absmax) <= 0.5f * dq.scale[k / 256] * 1.0001f);
    CHECK(b[k].absmax == dq.absmax(k));
    CHECK(std::memcmp(b[k].qs, orig[k].qs, 32) == 0);
  }
  // The second level costs little accuracy: 8-bit scales add well under 1% to the error.
  std::vector<float> y(x.size());
  nf4::dequantize_row(b.data(), y.data(), static_cast<index_t>(x.size()));
  double se = 0, s2 = 0;
  for (std::size_t i = 0; i < x.size(); ++i) se += (x[i] - y[i]) * (x[i] - y[i]), s2 += x[i] * x[i];
  CHECK(std::sqrt(se / s2) < 0.099 * 1.01);
}

TEST_CASE("FP8 weights: per-tensor and per-row scales") {
  const index_t N = 5, K = 64;
  auto x = gaussian(static_cast<std::size_t>(N * K), 22);
  for (index_t k = 0; k < K; ++k) x[static_cast<std::size_t>(2 * K + k)] *= 100.f;  // a loud row
  for (auto mode : {fp8_scaling::per_tensor, fp8_scaling::per_row}) {
    const auto m = quantize_fp8<f8_e4m3>(x.data(), N, K, mode);
    CHECK(m.scale.size() == (mode == fp8_scaling::per_row ? std::size_t(N) : 1u));
    std::vector<float> row(static_cast<std::size_t>(K));
    for (index_t r = 0; r < N; ++r) {
      dequantize_row(m, r, row.data());
      float amax = 0;
      for (index_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[r * K + k]));
      CHECK(amax / m.row_scale(r) <= 448.f * (1 + 1e-6f));  // the largest maps to the top
      for (index_t k = 0; k < K; ++k) {
        // e4m3: 3 mantissa bits, half an ulp is 2^-4 relative; subnormals step 2^-9.
        const float v = x[static_cast<std::size_t>(r * K + k)];
        CHECK(std::fabs(row[static_cast<std::size_t>(k)] - v) <=
              std::fabs(v) * 0.0625f + m.row_scale(r) * 0x1p-10f * 1.001f);
      }
    }
  }
}
