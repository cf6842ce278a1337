// softmax, rms_norm, layer_norm over the last axis, against their formulas in double.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <tessel/ops/norm.hpp>
#include <tessel/ops/softmax.hpp>
#include <vector>

using namespace tessel;

namespace {

template <class T, class S>
void fill_random(Tensor<T, S>& t, float lo, float hi, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t i = 0; i < t.units(); ++i) t.data()[i] = from_f32<T>(d(g));
}

// The formulas, in double, on one row.
std::vector<double> softmax_ref(const std::vector<double>& x) {
  double m = -INFINITY;
  for (double v : x) m = std::max(m, v);
  double z = 0;
  for (double v : x) z += std::exp(v - m);
  std::vector<double> y;
  for (double v : x) y.push_back(std::exp(v - m) / z);
  return y;
}
std::vector<double> rms_ref(const std::vector<double>& x, const std::vector<double>& w,
                            double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> y;
  for (std::size_t j = 0; j < x.size(); ++j) y.push_back(x[j] * r * w[j]);
  return y;
}
std::vector<double> layer_ref(const std::vector<double>& x, const std::vector<double>& w,
                              const std::vector<double>& b, double eps) {
  double s = 0;
  for (double v : x) s += v;
  const double mean = s / static_cast<double>(x.size());
  double var = 0;
  for (double v : x) var += (v - mean) * (v - mean);
  const double r = 1 / std::sqrt(var / static_cast<double>(x.size()) + eps);
  std::vector<double> y;
  for (std::size_t j = 0; j < x.size(); ++j) y.push_back((x[j] - mean) * r * w[j] + b[j]);
  return y;
}

template <class V>
std::vector<double> row_of(const V& v, index_t i) {
  std::vector<double> r;
  for (index_t j = 0; j < v.extent(1); ++j) r.push_back(to_f32(v(i, j)));
  return r;
}
std::vector<double> vec_of(const Tensor<float, DynShape<1>>& t) {
  std::vector<double> r;
  for (index_t j = 0; j < t.size(); ++j) r.push_back(t(j));
  return r;
}

// |got - want| <= rel * (|want| + scale): scale is the outputs' typical magnitude.
template <class V>
void check_rows(std::string what, const V& got, index_t i, const std::vector<double>& want,
                double rel, double scale) {
  for (index_t j = 0; j < got.extent(1); ++j) {
    const double w = want[static_cast<std::size_t>(j)];
    const double g = to_f32(got(i, j));
    if (!(std::fabs(g - w) <= rel * (std::fabs(w) + scale))) {
      FAIL_CHECK(what << " row " << i << " col " << j << ": got " << g << " want " << w);
      return;
    }
  }
}

}  // namespace

TEST_CASE("softmax, rms_norm, layer_norm match their formulas (both backends, odd sizes)") {
  const float eps = 1e-5f;
  for (index_t n : {1, 7, 8, 33, 1000, 4099}) {
    const index_t rows = n > 1000 ? 19 : 70;  // 19 x 4099 > the threaded threshold
    Tensor<float, DynShape<2>> x(rows, n);
    Tensor<float, DynShape<1>> w(n), b(n);
    fill_random(x, -8.f, 8.f, static_cast<unsigned>(n));
    fill_random(w, 0.5f, 1.5f, 2);
    fill_random(b, -1.f, 1.f, 3);
    for (int backend = 0; backend < 2; ++backend) {
      Tensor<float, DynShape<2>> ys(rows, n), yr(rows, n), yl(rows, n);
      if (backend == 0) {
        softmax(cpu_scalar{}, ys, x);
        rms_norm(cpu_scalar{}, yr, x, w, eps);
        layer_norm(cpu_scalar{}, yl, x, w, b, eps);
      } else {
        softmax(cpu{}, ys, x);
        rms_norm(cpu{}, yr, x, w, eps);
        layer_norm(cpu{}, yl, x, w, b, eps);
      }
      for (index_t i = 0; i < rows; ++i) {
        const auto xr = row_of(x, i);
        check_rows("softmax", ys, i, softmax_ref(xr), 1e-5, 0);
        check_rows("rms_norm", yr, i, rms_ref(xr, vec_of(w), eps), 1e-5, 1);
        check_rows("layer_norm", yl, i, layer_ref(xr, vec_of(w), vec_of(b), eps), 1e-5, 1);
      }
    }
  }
}

TEST_CASE("row operations: in place, views, f16 / bf16, returned tensors") {
  const index_t rows = 13, n = 45;
  Tensor<bf16, DynShape<2>> xb(rows, n);
  fill_random(xb, -4.f, 4.f, 8);
  Tensor<float, DynShape<1>> w(n), b(n);
  fill_random(w, 0.5f, 1.5f, 9);
  fill_random(b, -1.f, 1.f, 10);
  // bf16 in, f16 out: computed in f32, rounded once at the store.
  Tensor<f16, DynShape<2>> yh(rows, n);
  layer_norm(yh, xb, w, b, 1e-6f);
  for (index_t i = 0; i < rows; ++i)
    check_rows("layer_norm bf16->f16", yh, i, layer_ref(row_of(xb, i), vec_of(w), vec_of(b), 1e-6),
               1e-3, 1e-3);
  // In place, on a float copy.
  Tensor<float, DynShape<2>> x(rows, n);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = to_f32(xb.data()[i]);
  auto expect = softmax(x);
  softmax(x, x);
  for (index_t i = 0; i < x.size(); ++i) CHECK(x.data()[i] == expect.data()[i]);
  // A transposed (strided) input and output.
  Tensor<float, DynShape<2>> xt(n, rows), yt(n, rows);
  fill_random(xt, -3.f, 3.f, 11);
  Tensor<float, DynShape<1>> wr(n);
  fill_random(wr, 0.5f, 1.5f, 12);
  rms_norm(yt.transpose(), xt.transpose(), wr, 1e-6f);
  const auto xv = xt.transpose();
  const auto yv = yt.transpose();
  for (index_t i = 0; i < rows; ++i)
    check_rows("rms_norm strided", yv, i, rms_ref(row_of(xv, i), vec_of(wr), 1e-6), 1e-5, 1);
  auto r = rms_norm(x, w, 1e-6f);
  static_assert(std::is_same_v<decltype(r), Tensor<float, DynShape<2>>>);
}

TEST_CASE("softmax edge values: -inf entries, huge values, NaN") {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor<float, Shape<3, 11>> x;
  for (int j = 0; j < 11; ++j) {
    x(0, j) = j % 2 ? -inf : static_cast<float>(j);  // masked entries
    x(1, j) = 1e30f * static_cast<float>(j % 3);     // would overflow without the shift
    x(2, j) = static_cast<float>(j);
  }
  x(2, 4) = std::numeric_limits<float>::quiet_NaN();
  for (int backend = 0; backend < 2; ++backend) {
    Tensor<float, Shape<3, 11>> y;
    if (backend) {
      softmax(cpu{}, y, x);
    } else {
      softmax(cpu_scalar{}, y, x);
    }
    std::vector<double> r0;
    for (int j = 0; j < 11; ++j) r0.push_back(x(0, j));
    const auto want0 = softmax_ref(r0);
    for (int j = 0; j < 11; ++j)
      CHECK(std::fabs(y(0, j) - want0[static_cast<std::size_t>(j)]) <= 1e-6);
    // Row 1: the three entries equal to 2e30 share the mass.
    for (int j = 0; j < 11; ++j) CHECK(y(1, j) == doctest::Approx(j % 3 == 2 ? 1.0 / 3 : 0.0));
    for (int j = 0; j < 11; ++j) CHECK(std::isnan(y(2, j)));
  }
}

TEST_CASE("row operations report shape mismatches") {
  Tensor<float, DynShape<2>> x(4, 6), y(4, 5);
  Tensor<float, DynShape<1>> w(5), b(6);
  auto message_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const shape_error& e) {
      return e.what();
    }
    return "(no shape_error)";
  };
  const std::string m1 = message_of([&] { (void)rms_norm(x, w, 1e-5f); });
  CHECK(m1.find("rms_norm") != std::string::npos);
  CHECK(m1.find("[5]") != std::string::npos);
  CHECK(m1.find("[4, 6]") != std::string::npos);
  const std::string m2 = message_of([&] { softmax(y, x); });
  CHECK(m2.find("softmax") != std::string::npos);
  CHECK(m2.find("[4, 5]") != std::string::npos);
  CHECK(m2.find("[4, 6]") != std::string::npos);
  const std::string m3 = message_of([&] { (void)layer_norm(x, b, w, 1e-5f); });
  CHECK(m3.find("layer_norm") != std::string::npos);
  CHECK(m3.find("bias") != std::string::npos);
}
