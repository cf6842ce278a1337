#include <doctest/doctest.h>

#include "skip.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "tessel/backend/cpu/gemm.hpp"

using tessel::index_t;

namespace {

struct threads_guard {
  int saved = tessel::num_threads();
  ~threads_guard() { tessel::set_num_threads(saved); }
};

template <class T>
T from_float(float x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    return tessel::from_f32<T>(x);
  }
}

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, float>) return "f32";
  if constexpr (std::is_same_v<T, tessel::f16>) return "f16";
  if constexpr (std::is_same_v<T, tessel::bf16>) return "bf16";
}

// Closed form of sum_{k<K} (i + k) (k - j): with S1 = sum k, S2 = sum k^2,
// = i S1 - i j K + S2 - j S1. Small integers, so every intermediate is exact in float.
double closed_form(index_t i, index_t j, index_t K) {
  const double S1 = K * (K - 1) / 2.0, S2 = (K - 1) * K * (2.0 * K - 1) / 6.0;
  return i * S1 - static_cast<double>(i * j * K) + S2 - j * S1;
}

template <class Backend, class T>
void check_closed_form(bool trans_b) {
  const index_t M = 5, N = 7, K = 9, lda = 11, ldb = 13, ldc = 10;
  std::vector<float> A(M * lda, 99.0f), C(M * ldc, -1.0f);
  std::vector<T> B((trans_b ? N : K) * ldb, from_float<T>(99.0f));
  for (index_t i = 0; i < M; ++i)
    for (index_t k = 0; k < K; ++k) A[i * lda + k] = static_cast<float>(i + k);
  for (index_t k = 0; k < K; ++k)
    for (index_t j = 0; j < N; ++j)
      (trans_b ? B[j * ldb + k] : B[k * ldb + j]) = from_float<T>(static_cast<float>(k - j));
  tessel::gemm<Backend>(M, N, K, A.data(), lda, B.data(), ldb, trans_b, C.data(), ldc, 1.0f);
  for (index_t i = 0; i < M; ++i) {
    for (index_t j = 0; j < N; ++j)
      CHECK(C[i * ldc + j] == static_cast<float>(closed_form(i, j, K) - 1.0));
    for (index_t j = N; j < ldc; ++j) CHECK(C[i * ldc + j] == -1.0f);  // padding untouched
  }
}

// One random product: Backend against the scalar reference, with a tolerance from the
// standard dot-product error bound |fl(s) - s| <= K u sum|a_k b_k| (u = 2^-24, two
// accumulation orders differ by at most twice that), where sum|a_k b_k| is itself the
// reference applied to |A| and |B|.
template <class Backend, class T>
void check_random(std::mt19937_64& rng, index_t M, index_t N, index_t K, bool trans_b, float beta,
                  bool strided) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const index_t pad = strided ? 3 : 0;
  const index_t lda = K + pad, ldb = (trans_b ? K : N) + pad, ldc = N + pad;
  const index_t b_rows = trans_b ? N : K;
  std::vector<float> A(static_cast<std::size_t>(M * lda)), Aabs(A.size());
  std::vector<T> B(static_cast<std::size_t>(b_rows * ldb)), Babs(B.size());
  for (std::size_t i = 0; i < A.size(); ++i) Aabs[i] = std::fabs(A[i] = dist(rng));
  for (std::size_t i = 0; i < B.size(); ++i) {
    B[i] = from_float<T>(dist(rng));
    Babs[i] = from_float<T>(std::fabs(tessel::to_f32(B[i])));
  }
  std::vector<float> C0(static_cast<std::size_t>(M * ldc));
  for (auto& c : C0) c = beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : dist(rng);
  std::vector<float> C = C0, R = C0, bound(C0.size(), 0.0f);
  tessel::gemm<Backend>(M, N, K, A.data(), lda, B.data(), ldb, trans_b, C.data(), ldc, beta);
  tessel::gemm<tessel::cpu_scalar>(M, N, K, A.data(), lda, B.data(), ldb, trans_b, R.data(), ldc,
                                   beta);
  tessel::gemm<tessel::cpu_scalar>(M, N, K, Aabs.data(), lda, Babs.data(), ldb, trans_b,
                                   bound.data(), ldc, 0.0f);
  int bad = 0;
  for (index_t i = 0; i < M; ++i) {
    for (index_t j = 0; j < N; ++j) {
      const std::size_t at = static_cast<std::size_t>(i * ldc + j);
      const double c0 = beta == 0.0f ? 0.0 : std::fabs(beta * C0[at]);
      const double tol = 2.0 * (K + 2) * 0x1p-24 * (bound[at] + c0) + 1e-30;
      if (!(std::fabs(static_cast<double>(C[at]) - R[at]) <= tol)) ++bad;
    }
    for (index_t j = N; j < ldc; ++j) {
      const std::size_t at = static_cast<std::size_t>(i * ldc + j);
      if (!(std::isnan(C0[at]) ? std::isnan(C[at]) : C[at] == C0[at])) ++bad;  // untouched
    }
  }
  CHECK_MESSAGE(bad == 0, Backend::name(), " ", type_name<T>(), " M=", M, " N=", N, " K=", K,
                " trans_b=", trans_b, " beta=", beta, " strided=", strided,
                " threads=", tessel::num_threads());
}

template <class Backend>
void check_backend() {
  threads_guard guard;
  std::mt19937_64 rng(42);
  // Sizes around every boundary: 1, primes, vector width (4/8/16), tiles (6/14 x 16/32),
  // KC = 256 / 512, column chunks (8 slivers), fewer chunks than threads (rows split, A packed
  // by the tasks), and with 3 threads narrow B (N < M / 2) with M x K past MAXA_NARROW = 256 Ki
  // floats of packed A (three row blocks).
  struct shape {
    index_t M, N, K;
  };
  const shape shapes[] = {{1, 1, 1},     {1, 37, 53},  {2, 33, 17},    {3, 16, 64},  {4, 45, 300},
                          {5, 1, 1},     {5, 31, 257}, {6, 16, 8},     {7, 17, 3},   {13, 29, 1},
                          {14, 32, 31},  {15, 33, 47}, {29, 63, 101},  {64, 64, 64}, {97, 50, 513},
                          {350, 40, 30}, {8, 77, 301}, {9, 23, 45},    {9, 4100, 3}, {1, 700, 40},
                          {37, 1, 19},   {20, 7, 0},   {600, 70, 1000}};
  for (int threads : {1, 3}) {
    tessel::set_num_threads(threads);
    int variant = 0;
    for (const auto& s : shapes) {
      for (bool trans_b : {false, true}) {
        const float beta = (variant % 3 == 0) ? 0.0f : (variant % 3 == 1 ? 1.0f : -0.5f);
        const bool strided = variant % 2 == 1;
        ++variant;
        check_random<Backend, float>(rng, s.M, s.N, s.K, trans_b, beta, strided);
        check_random<Backend, tessel::f16>(rng, s.M, s.N, s.K, trans_b, beta, !strided);
        check_random<Backend, tessel::bf16>(rng, s.M, s.N, s.K, trans_b, beta, strided);
      }
    }
  }
}

}  // namespace

TEST_CASE("scalar reference gemm matches a closed form, all layouts and weight formats") {
  for (bool trans_b : {false, true}) {
    check_closed_form<tessel::cpu_scalar, float>(trans_b);
    check_closed_form<tessel::cpu_scalar, tessel::f16>(trans_b);
    check_closed_form<tessel::cpu_scalar, tessel::bf16>(trans_b);
  }
}

TEST_CASE("SIMD gemm matches the closed form exactly on small integers") {
  for (bool trans_b : {false, true}) {
    check_closed_form<tessel::cpu, float>(trans_b);
    check_closed_form<tessel::cpu, tessel::f16>(trans_b);
    check_closed_form<tessel::cpu, tessel::bf16>(trans_b);
  }
}

TEST_CASE("cpu_simd<fma3<avx2>> gemm matches the reference on random shapes") {
  check_backend<tessel::cpu_simd<xsimd::fma3<xsimd::avx2>>>();
}

#if XSIMD_WITH_AVX512BW
TEST_CASE("cpu_simd<avx512bw> gemm matches the reference on random shapes" *
          doctest::test_suite("needs_avx512")) {
  check_backend<tessel::cpu_simd<xsimd::avx512bw>>();
}
#else
TEST_CASE("cpu_simd<avx512bw> gemm matches the reference on random shapes" *
          doctest::test_suite("needs_avx512")) {
  tessel_test::skip("built without AVX-512 (-DTESSEL_MARCH=native on an AVX-512 machine)");
}
#endif

#if defined(TESSEL_AMX)
// f16 / bf16 weights on the AVX-512 backend of an AMX build run on the tiles (amx_gemm.hpp):
// the shapes above cross its 32 x 32 edges; these also cross its MC = 128, KC = 1024 and
// NC = 256 blocks, against the same f32 error bound.
TEST_CASE("AMX gemm (f16 / bf16 weights) meets the f32 error bound across its blocks" *
          doctest::test_suite("needs_amx")) {
  // Without the tiles the checks below still run, on the f32 path, but AMX is untested.
  if (!tessel::detail::amx_usable())
    tessel_test::skip("the tile state was not granted (or TESSEL_AMX=0): the f32 path ran instead");
  threads_guard guard;
  std::mt19937_64 rng(7);
  for (int threads : {1, 2}) {
    tessel::set_num_threads(threads);
    for (bool trans_b : {false, true}) {
      check_random<tessel::cpu_simd<xsimd::avx512bw>, tessel::f16>(rng, 161, 300, 1100, trans_b,
                                                                   0.0f, trans_b);
      check_random<tessel::cpu_simd<xsimd::avx512bw>, tessel::bf16>(rng, 130, 290, 1030, trans_b,
                                                                    -0.5f, !trans_b);
    }
  }
}
#else
TEST_CASE("AMX gemm (f16 / bf16 weights) meets the f32 error bound across its blocks" *
          doctest::test_suite("needs_amx")) {
  tessel_test::skip("built without AMX (-DTESSEL_MARCH=native on a machine with AMX-BF16/FP16)");
}
#endif

TEST_CASE("cpu_simd<sse2> (4 lanes, no F16C path) gemm matches the reference") {
  check_backend<tessel::cpu_simd<xsimd::sse2>>();
}

TEST_CASE("gemv computes y = W x + beta y") {
  threads_guard guard;
  tessel::set_num_threads(2);
  const index_t N = 301, K = 129, ldw = 131;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<tessel::bf16> W(N * ldw);
  std::vector<float> x(K), y(N), y0(N);
  for (auto& w : W) w = tessel::from_f32<tessel::bf16>(dist(rng));
  for (auto& v : x) v = dist(rng);
  for (auto& v : y) v = dist(rng);
  y0 = y;
  tessel::gemv<tessel::cpu>(N, K, W.data(), ldw, x.data(), y.data(), 1.0f);
  for (index_t n = 0; n < N; ++n) {
    double s = y0[n];
    for (index_t k = 0; k < K; ++k) s += static_cast<double>(tessel::to_f32(W[n * ldw + k])) * x[k];
    CHECK(y[n] == doctest::Approx(s).epsilon(1e-5).scale(1.0));
  }
}

TEST_CASE("gemm with K = 0 scales C by beta; beta = 0 clears NaN") {
  std::vector<float> C = {1.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f, 4.0f};
  const float* none = nullptr;
  tessel::gemm<tessel::cpu>(2, 2, 0, none, 0, none, 0, false, C.data(), 2, 2.0f);
  CHECK(C[0] == 2.0f);
  CHECK(C[3] == 8.0f);
  tessel::gemm<tessel::cpu>(2, 2, 0, none, 0, none, 0, false, C.data(), 2, 0.0f);
  for (float c : C) CHECK(c == 0.0f);
}

TEST_CASE("gemm rejects bad sizes, strides and null pointers with clear errors") {
  std::vector<float> A(64), B(64), C(64);
  using tessel::cpu;
  CHECK_THROWS_AS(tessel::gemm<cpu>(-1, 2, 2, A.data(), 2, B.data(), 2, false, C.data(), 2),
                  tessel::value_error);
  CHECK_THROWS_AS(tessel::gemm<cpu>(2, 2, 4, A.data(), 3, B.data(), 2, false, C.data(), 2),
                  tessel::shape_error);
  CHECK_THROWS_AS(tessel::gemm<cpu>(2, 3, 4, A.data(), 4, B.data(), 2, false, C.data(), 3),
                  tessel::shape_error);  // ldb < N
  CHECK_THROWS_AS(tessel::gemm<cpu>(2, 3, 4, A.data(), 4, B.data(), 3, true, C.data(), 3),
                  tessel::shape_error);  // trans_b: ldb < K
  CHECK_THROWS_AS(tessel::gemm<cpu>(2, 3, 4, A.data(), 4, B.data(), 3, false, C.data(), 2),
                  tessel::shape_error);
  CHECK_THROWS_AS(tessel::gemm<cpu>(2, 3, 4, A.data(), 4, static_cast<const float*>(nullptr), 3,
                                    false, C.data(), 3),
                  tessel::value_error);
  CHECK_THROWS_AS(tessel::gemm<tessel::cpu_scalar>(2, 3, 4, A.data(), 4, B.data(), 3, false,
                                                   static_cast<float*>(nullptr), 3),
                  tessel::value_error);
  try {
    tessel::gemm<cpu>(2, 2, 4, A.data(), 3, B.data(), 2, false, C.data(), 2);
  } catch (const tessel::shape_error& e) {
    CHECK(std::string(e.what()).find("lda must be >= K=4") != std::string::npos);
  }
}
