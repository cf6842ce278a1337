// ops/matmul on tensors and views against a double-precision triple loop written here.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <tessel/ops/matmul.hpp>

using namespace tessel;

namespace {
std::mt19937 rng(11);
template <class V>
void randomize(V&& v) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j)
      v(i, j) = from_f32<std::remove_cvref_t<decltype(v(i, j))>>(u(rng));
}
template <class VA, class VB, class VC>
void check_product(const VA& a, const VB& b, const VC& c, float beta = 0.f,
                   const Tensor<float, DynShape<2>>* c0 = nullptr) {
  const index_t M = a.extent(0), K = a.extent(1), N = b.extent(1);
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      double want = c0 ? beta * static_cast<double>((*c0)(i, j)) : 0.0;
      for (index_t k = 0; k < K; ++k)
        want += static_cast<double>(to_f32(a(i, k))) * static_cast<double>(to_f32(b(k, j)));
      REQUIRE(std::abs(c(i, j) - want) <= 1e-5 * static_cast<double>(K) + 1e-6);
    }
}
}  // namespace

TEST_CASE("static shapes: C = A B") {
  Tensor<float, Shape<5, 7>> a;
  Tensor<float, Shape<7, 3>> b;
  randomize(a.view());
  randomize(b.view());
  auto c = matmul(a, b);
  static_assert(std::is_same_v<decltype(c), Tensor<float, Shape<5, 3>>>);
  check_product(a.view(), b.view(), c.view());
}

TEST_CASE("x · Wᵀ with f16 and bf16 weights stored [N, K], used in place") {
  for (index_t M : {1, 3, 40}) {
    Tensor<float, DynShape<2>> x(M, 70);
    Tensor<f16, DynShape<2>> wh(33, 70);
    Tensor<bf16, DynShape<2>> wb(33, 70);
    randomize(x.view());
    randomize(wh.view());
    randomize(wb.view());
    Tensor<float, DynShape<2>> y(M, 33);
    matmul(x, wh.transpose(), y);
    check_product(x.view(), wh.transpose(), y.view());
    matmul(x, wb.transpose(), y);
    check_product(x.view(), wb.transpose(), y.view());
  }
}

TEST_CASE("strided A, transposed C, beta accumulation, scalar backend") {
  Tensor<float, DynShape<2>> big(40, 50), b(30, 9), ct(9, 6);
  randomize(big.view());
  randomize(b.view());
  randomize(ct.view());
  auto a = big.view().slice(0, 4, 10).slice(1, 10, 40);  // [6, 30], row stride 50
  auto c = ct.view().transpose();                        // [6, 9], column stride 6
  Tensor<float, DynShape<2>> c0(6, 9);
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 9; ++j) c0(i, j) = c(i, j);
  matmul(a, b, c, 0.5f);
  check_product(a, b.view(), c, 0.5f, &c0);
  Tensor<float, DynShape<2>> r(6, 9);
  matmul(cpu_scalar{}, a, b, r);
  check_product(a, b.view(), r.view());
  // A column view of a matrix (non-unit column stride) is staged.
  auto at = big.view().transpose().slice(0, 0, 6).slice(1, 0, 30);  // [6, 30], col stride 50
  matmul(at, b, r);
  check_product(at, b.view(), r.view());
}

TEST_CASE("run-time shape mismatch names both shapes") {
  Tensor<float, DynShape<2>> a(4, 5), b(6, 3), c(4, 3);
  try {
    matmul(a, b, c);
    FAIL("expected shape_error");
  } catch (const shape_error& e) {
    const std::string m = e.what();
    CHECK(m.find("matmul") != std::string::npos);
    CHECK(m.find("[4, 5]") != std::string::npos);
    CHECK(m.find("[6, 3]") != std::string::npos);
  }
}
