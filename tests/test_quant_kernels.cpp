// Quantized dot / GEMV / GEMM kernels: every SIMD kernel against the scalar reference, the
// scalar reference against dequantize + f32 arithmetic, and matmul_q against dequantize + an
// f64 matmul within a bound derived from the activation quantization.

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tessel/ops/qmatmul.hpp"
#include "tessel/quant/quantize.hpp"

using namespace tessel;

namespace {

std::vector<float> randn(std::size_t n, unsigned seed, bool heavy = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::student_t_distribution<float> t(3.f);
  std::vector<float> v(n);
  for (auto& x : v) x = heavy ? t(rng) : g(rng);
  return v;
}

template <class F>
std::vector<F> quantize_rows(const std::vector<float>& w, index_t N, index_t K) {
  std::vector<F> q(static_cast<std::size_t>(N * K / F::block_elems));
  for (index_t r = 0; r < N; ++r)
    F::quantize_row(w.data() + r * K, q.data() + r * (K / F::block_elems), K);
  return q;
}
template <class F>
std::vector<float> dequantize_rows(const std::vector<F>& q, index_t N, index_t K) {
  std::vector<float> w(static_cast<std::size_t>(N * K));
  F::dequantize_row(q.data(), w.data(), N * K);
  return w;
}

// Activations as the kernels see them, and dequantized.
template <class F>
struct activation {
  using A = typename F::vec_dot_type;
  std::vector<A> q;
  std::vector<float> deq;
  explicit activation(const std::vector<float>& x) {
    const index_t K = static_cast<index_t>(x.size());
    if constexpr (std::is_same_v<A, float>) {
      q = x;
      deq = x;
    } else {
      q.resize(static_cast<std::size_t>(K / A::block_elems));
      A::quantize_row(x.data(), q.data(), K);
      deq.resize(x.size());
      A::dequantize_row(q.data(), deq.data(), K);
    }
  }
};

// The SIMD backends whose kernels are checked against the reference: tessel::cpu (the widest
// the build has: AVX-512 under -march=native on an AVX-512 machine, AVX2 under x86-64-v3) and,
// when cpu runs the AVX-512 kernels, the AVX2 backend too, so both paths are tested there.
template <class Fn>
void for_each_simd_backend(Fn&& fn) {
  fn(cpu{});
#if defined(TESSEL_QDOT_AVX512) && defined(__AVX2__) && defined(__FMA__)
  if constexpr (!std::is_same_v<cpu, cpu_simd<xsimd::fma3<xsimd::avx2>>>)
    fn(cpu_simd<xsimd::fma3<xsimd::avx2>>{});
#endif
}

template <class F>
void check_dot_kernels(index_t N, index_t K, unsigned seed) {
  CAPTURE(F::name);
  CAPTURE(N);
  CAPTURE(K);
  const auto wf = randn(static_cast<std::size_t>(N * K), seed, seed % 2 == 1);
  const auto x = randn(static_cast<std::size_t>(K), seed + 100);
  const auto wq = quantize_rows<F>(wf, N, K);
  const auto wd = dequantize_rows(wq, N, K);
  const activation<F> act(x);
  const index_t nb = K / F::block_elems;
  std::vector<float> ys(static_cast<std::size_t>(N)), yv(static_cast<std::size_t>(N));
  kernel<qdot_op, cpu_scalar, F>::run(nb, wq.data(), nb, N, act.q.data(), ys.data());
  for_each_simd_backend([&](auto backend) {
    using B = decltype(backend);
    const std::string backend_name = B::name();
    CAPTURE(backend_name);
    kernel<qdot_op, B, F>::run(nb, wq.data(), nb, N, act.q.data(), yv.data());
    for (index_t r = 0; r < N; ++r) {
      // |w| . |a| bounds the f32 rounding of any summation order.
      double dot = 0, norm = 0;
      for (index_t k = 0; k < K; ++k) {
        dot += double(wd[r * K + k]) * act.deq[k];
        norm += std::fabs(double(wd[r * K + k]) * act.deq[k]);
      }
      if constexpr (requires(F f) { f.m; }) {
        // The _1 formats take the min term from q8_1's s (d * sum(q), stored as f16), not
        // from the dequantized activations.
        for (index_t b = 0; b < nb; ++b) {
          double sa = 0;
          for (index_t k = 32 * b; k < 32 * b + 32; ++k) sa += act.deq[k];
          dot += double(to_f32(wq[r * nb + b].m)) * (to_f32(act.q[b].s) - sa);
        }
      }
      CHECK(std::fabs(yv[r] - ys[r]) <= 1e-5 * norm);
      // The integer formula of the reference equals the dequantized values' dot product.
      CHECK(std::fabs(ys[r] - dot) <= 1e-5 * norm);
    }
  });
}

// Worst-case error of one activation element from quantization to 8 bits: half a step of
// amax/127, plus the f16 rounding of the scale (2^-11 relative, times at most 127 steps).
double act_error_bound(const float* x, index_t n) {
  float amax = 0;
  for (index_t k = 0; k < n; ++k) amax = std::max(amax, std::fabs(x[k]));
  return amax * (0.5 / 127 + 1.0 / 2048) * 1.001;
}

template <class F>
void check_matmul_q(index_t M, index_t N, index_t K, unsigned seed) {
  CAPTURE(F::name);
  CAPTURE(M);
  CAPTURE(N);
  const auto wf = randn(static_cast<std::size_t>(N * K), seed);
  const auto x = randn(static_cast<std::size_t>(M * K), seed + 7, true);
  Tensor<float, DynShape<2>> wt(N, K), xt(M, K), yt(M, N);
  std::copy(wf.begin(), wf.end(), wt.data());
  std::copy(x.begin(), x.end(), xt.data());
  const auto wq = quantize<F>(wt);
  const auto wd = dequantize(wq);
  matmul_q(xt, wq, yt);
  using A = typename F::vec_dot_type;
  // GEMV quantizes x to F's vec_dot_type; the integer GEMM (qgemm_vnni.hpp) to q8_0 blocks.
  const bool gemm_int = M >= qgemm_min_m && qgemm_quantizes_activations<cpu, F>();
  const bool quantized_act = (M < qgemm_min_m && !std::is_same_v<A, float>) || gemm_int;
  const index_t ab = gemm_int ? 32 : quantized_act ? block_elems_v<A> : K;
  for (index_t m = 0; m < M; ++m)
    for (index_t n = 0; n < N; ++n) {
      double ref = 0, norm = 0, bound = 0;
      for (index_t k = 0; k < K; ++k) {
        const double w = wd.data()[n * K + k];
        ref += w * x[static_cast<std::size_t>(m * K + k)];
        norm += std::fabs(w * x[static_cast<std::size_t>(m * K + k)]);
      }
      if (quantized_act) {
        for (index_t b = 0; b < K / ab; ++b) {
          const double e = act_error_bound(x.data() + m * K + b * ab, ab);
          double wsum = 0;
          for (index_t k = b * ab; k < (b + 1) * ab; ++k) wsum += std::fabs(wd.data()[n * K + k]);
          bound += wsum * e;
        }
        if constexpr (requires(F f) { f.m; }) {
          // The _1 formats use q8_1's s = d * sum(q), itself rounded to f16.
          for (index_t b = 0; b < K / 32; ++b) {
            const double e = act_error_bound(x.data() + m * K + b * 32, 32) * 127 * 32 / 1024;
            bound += std::fabs(to_f32(wq.data()[n * (K / 32) + b].m)) * e;
          }
        }
      }
      CHECK(std::fabs(yt.data()[m * N + n] - ref) <= bound + 2e-5 * norm);
    }
}

template <class F>
void check_format(index_t K) {
  // K and K + one block: an odd block count exercises the kernels' single-block tails.
  for (index_t k : {K, K + F::block_elems, K + 3 * F::block_elems})
    for (index_t N : {1, 3, 17, 129}) check_dot_kernels<F>(N, k, static_cast<unsigned>(N));
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    check_matmul_q<F>(1, 129, K, 1);
    check_matmul_q<F>(3, 17, K, 2);
    check_matmul_q<F>(1, 33, K + F::block_elems, 4);  // odd block count
    check_matmul_q<F>(20, 33, K, 3);                  // the dequantize + SGEMM path
  }
  // The dequantize + GEMM path across the AMX GEMM's blocks (MC = 128, KC = 1024, NC = 256)
  // in AMX builds, and the SGEMM's otherwise.
  set_num_threads(2);
  check_matmul_q<F>(133, 270, 1024 + 256, 5);
  set_num_threads(0);
}

// qgemm with row strides and beta against the plain product: y = x Wᵀ + beta y0.
template <class F>
void check_qgemm_strides(index_t M, index_t N, index_t K) {
  CAPTURE(F::name);
  const index_t ldx = K + 5, ldy = N + 3;
  const auto wf = randn(static_cast<std::size_t>(N * K), 11);
  const auto xs = randn(static_cast<std::size_t>(M * ldx), 12, true);
  const auto y0 = randn(static_cast<std::size_t>(M * ldy), 13);
  std::vector<F> w(static_cast<std::size_t>(N * K / F::block_elems));
  for (index_t n = 0; n < N; ++n)
    F::quantize_row(wf.data() + n * K, w.data() + n * (K / F::block_elems), K);
  std::vector<float> x(static_cast<std::size_t>(M * K)), plain(static_cast<std::size_t>(M * N));
  for (index_t m = 0; m < M; ++m) std::copy_n(xs.data() + m * ldx, K, x.data() + m * K);
  qgemm<cpu>(M, N, K, x.data(), w.data(), plain.data());
  auto y = y0;
  qgemm<cpu>(M, N, K, xs.data(), ldx, w.data(), y.data(), ldy, 0.5f);
  for (index_t m = 0; m < M; ++m) {
    for (index_t n = 0; n < N; ++n) {
      const float want = plain[m * N + n] + 0.5f * y0[m * ldy + n];
      CHECK(std::fabs(y[m * ldy + n] - want) <= 1e-5f * (1 + std::fabs(want)));
    }
    for (index_t n = N; n < ldy; ++n) CHECK(y[m * ldy + n] == y0[m * ldy + n]);  // untouched
  }
}

}  // namespace

TEST_CASE("qgemm: row strides, beta, many row blocks") {
  // K = 8192: the integer GEMM (qgemm_vnni.hpp) takes x in blocks of 64 rows.
  set_num_threads(2);
  check_matmul_q<q4_0>(133, 40, 8192, 21);
  check_qgemm_strides<q4_0>(37, 70, 512);
  check_qgemm_strides<q4_k>(37, 70, 512);
  check_qgemm_strides<q6_k>(21, 33, 768);
  check_qgemm_strides<q5_0>(21, 33, 512);  // the dequantize + SGEMM path
  set_num_threads(0);
}

TEST_CASE("q8_0 kernels") {
  check_format<q8_0>(512);
}
TEST_CASE("q4_0 kernels") {
  check_format<q4_0>(512);
}
TEST_CASE("q4_1 kernels") {
  check_format<q4_1>(512);
}
TEST_CASE("q5_0 kernels") {
  check_format<q5_0>(512);
}
TEST_CASE("q5_1 kernels") {
  check_format<q5_1>(512);
}
TEST_CASE("q2_k kernels") {
  check_format<q2_k>(512);
}
TEST_CASE("q3_k kernels") {
  check_format<q3_k>(512);
}
TEST_CASE("q4_k kernels") {
  check_format<q4_k>(512);
}
TEST_CASE("q5_k kernels") {
  check_format<q5_k>(512);
}
TEST_CASE("q6_k kernels") {
  check_format<q6_k>(768);
}
TEST_CASE("nf4 kernels") {
  check_format<nf4>(512);
}
TEST_CASE("int_group kernels") {
  check_format<int4_group<32>>(512);
  check_format<int4_group_sym<128>>(512);
  check_format<int8_group<64>>(512);
  check_format<int8_group_sym<128>>(512);
}

namespace {

// Blocks of random bytes with unit scales (d = dmin = 1) against integer activations (d = 1):
// every product is an integer and, with the ranges below, every partial sum in any order stays
// below 2^24, so the f32 results are exact and the SIMD kernels must equal the reference and
// the exact dot product bit for bit. `amax`: activations in [-amax, amax] (clamped to -128).
template <class F>
void check_exact(index_t N, index_t nb, int amax, unsigned seed) {
  CAPTURE(F::name);
  CAPTURE(N);
  CAPTURE(nb);
  using A = typename F::vec_dot_type;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255), av(std::max(-128, -amax), amax);
  std::vector<F> w(static_cast<std::size_t>(N * nb));
  for (auto& blk : w) {
    auto* p = reinterpret_cast<unsigned char*>(&blk);
    for (std::size_t i = 0; i < sizeof(F); ++i) p[i] = static_cast<unsigned char>(byte(rng));
    blk.d = qdetail::tof16(1.f);
    if constexpr (requires { blk.dmin; }) blk.dmin = qdetail::tof16(1.f);
  }
  const index_t K = nb * F::block_elems;
  std::vector<A> a(static_cast<std::size_t>(K / A::block_elems));
  for (auto& blk : a) {
    for (auto& q : blk.qs) q = static_cast<std::int8_t>(av(rng));
    if constexpr (std::is_same_v<A, q8_k>) {
      blk.d = 1.f;
      for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) sum += blk.qs[16 * g + j];
        blk.bsums[g] = static_cast<std::int16_t>(sum);
      }
    } else {
      blk.d = qdetail::tof16(1.f);
    }
  }
  std::vector<float> wd(static_cast<std::size_t>(N * K)), ad(static_cast<std::size_t>(K));
  F::dequantize_row(w.data(), wd.data(), N * K);
  A::dequantize_row(a.data(), ad.data(), K);
  std::vector<float> ys(static_cast<std::size_t>(N)), yv(static_cast<std::size_t>(N));
  kernel<qdot_op, cpu_scalar, F>::run(nb, w.data(), nb, N, a.data(), ys.data());
  for (index_t r = 0; r < N; ++r) {
    double exact = 0, bound = 0;
    for (index_t k = 0; k < K; ++k) {
      exact += double(wd[r * K + k]) * ad[k];
      bound += std::fabs(double(wd[r * K + k]) * ad[k]);
    }
    REQUIRE(bound < 16777216.0);  // the premise: all partial sums exact in f32
    CHECK(ys[r] == exact);
  }
  for_each_simd_backend([&](auto backend) {
    using B = decltype(backend);
    const std::string backend_name = B::name();
    CAPTURE(backend_name);
    std::fill(yv.begin(), yv.end(), -1.f);
    kernel<qdot_op, B, F>::run(nb, w.data(), nb, N, a.data(), yv.data());
    for (index_t r = 0; r < N; ++r) CHECK(yv[r] == ys[r]);
  });
}

}  // namespace

TEST_CASE("the AVX-512 dot kernels are compiled in where the build has the instructions") {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && defined(__GFNI__)
  CHECK(qdetail::use_avx512_qdot<cpu::arch>);
#elif defined(__AVX2__) && defined(__FMA__)
  CHECK(std::is_same_v<cpu, cpu_simd<xsimd::fma3<xsimd::avx2>>>);
#endif
  MESSAGE("tessel::cpu = " << std::string(cpu::name()));
}

TEST_CASE("SIMD dot kernels are exact on integer data") {
  for (index_t N : {1, 2, 3, 5, 9}) {
    const unsigned seed = static_cast<unsigned>(N);
    // q8_0 / q4_0: every weight byte (q8_0's -128 included); q8_0 activations span [-127, 127]
    // (their quantizer's range: the AVX2 kernel's vpsignb trick needs -a to exist).
    for (index_t nb : {1, 2, 17}) check_exact<q8_0>(N, nb, 127, seed);
    for (index_t nb : {1, 2, 17}) check_exact<q4_0>(N, nb, 127, seed);
    // K-quants: every scale / min / level bit pattern; smaller activations keep the sums exact.
    for (index_t nb : {1, 2, 3}) check_exact<q4_k>(N, nb, 16, seed);
    for (index_t nb : {1, 2, 3}) check_exact<q6_k>(N, nb, 4, seed);
    check_exact<q6_k>(N, 1, 16, seed);
  }
}

TEST_CASE("matmul_q rejects shapes that do not fit") {
  Tensor<float, DynShape<2>> x(2, 64), y(2, 3), ybad(3, 3);
  Tensor<q4_0, DynShape<2>> w(3, 64), wbad(3, 96);
  CHECK_NOTHROW(matmul_q(x, w, y));
  CHECK_THROWS_AS(matmul_q(x, wbad, y), shape_error);
  CHECK_THROWS_AS(matmul_q(x, w, ybad), shape_error);
}

TEST_CASE("act-order (g_idx) int4 weights") {
  const index_t N = 17, K = 128, G = 32;
  std::mt19937 rng(5);
  std::vector<std::int32_t> g_idx(static_cast<std::size_t>(K));
  for (index_t k = 0; k < K; ++k)
    g_idx[static_cast<std::size_t>(k)] = static_cast<std::int32_t>(k % (K / G));
  std::shuffle(g_idx.begin(), g_idx.end(), rng);
  const auto perm = perm_from_g_idx(g_idx, G);
  for (index_t k = 0; k < K; ++k)  // each stored group holds the columns g_idx assigns to it
    CHECK(g_idx[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])] == k / G);
  const auto w = randn(static_cast<std::size_t>(N * K), 31);
  const auto x = randn(static_cast<std::size_t>(2 * K), 32);
  Tensor<float, DynShape<2>> wp(N, K), xt(2, K), yt(2, N);
  for (index_t n = 0; n < N; ++n)
    for (index_t k = 0; k < K; ++k)
      wp(n, k) = w[static_cast<std::size_t>(n * K + perm[static_cast<std::size_t>(k)])];
  std::copy(x.begin(), x.end(), xt.data());
  const auto wq = quantize<int4_group<32>>(wp);
  const auto wd = dequantize(wq);
  matmul_q(xt.view().as_const(), wq.view(), yt.view(), std::span<const index_t>(perm));
  for (index_t m = 0; m < 2; ++m)
    for (index_t n = 0; n < N; ++n) {
      double ref = 0, norm = 0;
      for (index_t k = 0; k < K; ++k) {
        const double t = double(wd(n, k)) *
                         x[static_cast<std::size_t>(m * K + perm[static_cast<std::size_t>(k)])];
        ref += t, norm += std::fabs(t);
      }
      CHECK(std::fabs(yt(m, n) - ref) <= 1e-5 * norm);
    }
  std::vector<std::int32_t> bad(g_idx);
  bad[0] = bad[1] == 0 ? 1 : 0;  // one group gets 33 columns
  if (bad[0] != g_idx[0]) CHECK_THROWS_AS(perm_from_g_idx(bad, G), value_error);
  CHECK_THROWS_AS(perm_from_g_idx(std::vector<std::int32_t>(30, 0), G), shape_error);
}

TEST_CASE("FP8 matmul_q equals the dequantized product") {
  for (index_t M : {1, 3, 20}) {
    const index_t N = 17, K = 96;
    const auto w = randn(static_cast<std::size_t>(N * K), 41);
    const auto x = randn(static_cast<std::size_t>(M * K), 42);
    Tensor<float, DynShape<2>> xt(M, K), yt(M, N);
    std::copy(x.begin(), x.end(), xt.data());
    for (auto mode : {fp8_scaling::per_tensor, fp8_scaling::per_row}) {
      const auto m = quantize_fp8<f8_e5m2>(w.data(), N, K, mode);
      matmul_q(xt.view().as_const(), m, yt.view());
      std::vector<float> row(static_cast<std::size_t>(K));
      for (index_t n = 0; n < N; ++n) {
        dequantize_row(m, n, row.data());
        for (index_t i = 0; i < M; ++i) {
          double ref = 0, norm = 0;
          for (index_t k = 0; k < K; ++k) {
            const double t =
                double(row[static_cast<std::size_t>(k)]) * x[static_cast<std::size_t>(i * K + k)];
            ref += t, norm += std::fabs(t);
          }
          CHECK(std::fabs(yt(i, n) - ref) <= 2e-5 * norm);
        }
      }
    }
  }
}

TEST_CASE("FP8 row kernels equal the reference on every finite byte") {
  auto check = [](auto tag) {
    using E = decltype(tag);
    const index_t K = 256 + 5;  // every byte value, and a scalar tail
    std::vector<E> w(static_cast<std::size_t>(3 * K));
    for (std::size_t i = 0; i < w.size(); ++i) {
      w[i] = E{static_cast<std::uint8_t>((i * 7 + i / 261) & 0xff)};
      if (std::isnan(to_f32(w[i])) || std::isinf(to_f32(w[i]))) w[i] = E{0};
    }
    const auto x = randn(static_cast<std::size_t>(K), 51);
    float ys[3], yv[3];
    kernel<qdot_op, cpu_scalar, E>::run(K, w.data(), K, 3, x.data(), ys);
    kernel<qdot_op, cpu, E>::run(K, w.data(), K, 3, x.data(), yv);
    for (int r = 0; r < 3; ++r) {
      double norm = 0;
      for (index_t k = 0; k < K; ++k)
        norm += std::fabs(double(to_f32(w[static_cast<std::size_t>(r * K + k)])) * x[k]);
      CHECK(std::fabs(yv[r] - ys[r]) <= 1e-5 * norm);
    }
  };
  check(f8_e4m3{});
  check(f8_e5m2{});
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
TEST_CASE("fast row dequantization (GEMM tiles) equals the reference") {
  auto check = [](auto tag) {
    using F = decltype(tag);
    const index_t K = 1024;
    const auto x = randn(static_cast<std::size_t>(K), 61, true);
    std::vector<F> q(static_cast<std::size_t>(K / F::block_elems));
    F::quantize_row(x.data(), q.data(), K);
    std::vector<float> a(static_cast<std::size_t>(K)), b(static_cast<std::size_t>(K));
    F::dequantize_row(q.data(), a.data(), K);
    qdetail::dequantize_row_fast(q.data(), b.data(), K);
    float amax = 0;
    for (float v : a) amax = std::max(amax, std::fabs(v));
    for (index_t k = 0; k < K; ++k)  // an FMA contraction of d*q - m may differ by an ulp
      CHECK(std::fabs(a[k] - b[k]) <= 1e-6f * amax);
  };
  check(q8_0{});
  check(q4_0{});
  check(q4_k{});
  check(q6_k{});
}
#endif

TEST_CASE("vectorized activation quantizers write the reference's bytes") {
  // Gaussian, heavy-tailed, all-zero blocks, exact ties (k + 0.5 steps), a negative extreme
  // first and repeated extremes, at the row lengths of the models (and one block).
  for (index_t K : {index_t{256}, index_t{2048}, index_t{5632}}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> x = randn(static_cast<std::size_t>(K), 100 + unsigned(kind), kind == 1);
      if (kind == 2) {
        std::fill(x.begin(), x.begin() + 256, 0.0f);
        x[300 % K] = -7.0f;
        x[301 % K] = 7.0f;
      }
      if (kind == 3)
        for (std::size_t i = 0; i < x.size(); ++i)
          x[i] = (static_cast<float>(i % 255) - 127.0f) * 0.5f;
      std::vector<q8_0> a(static_cast<std::size_t>(K / 32)), b(a.size());
      q8_0::quantize_row(x.data(), a.data(), K);
      qdetail::quantize_activation(x.data(), b.data(), K);
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(q8_0)) == 0);
      std::vector<q8_k> c(static_cast<std::size_t>(K / 256)), d(c.size());
      q8_k::quantize_row(x.data(), c.data(), K);
      qdetail::quantize_activation(x.data(), d.data(), K);
      CHECK(std::memcmp(c.data(), d.data(), c.size() * sizeof(q8_k)) == 0);
    }
  }
  std::vector<float> x(100);
  std::vector<q8_0> y(4);
  CHECK_THROWS_AS(qdetail::quantize_activation(x.data(), y.data(), 100), shape_error);
}
