// TensorView <-> Eigen::Map: element identity through strides, and writes through the map.
#include <doctest/doctest.h>

#include <tessel/backend/eigen/bridge.hpp>

using namespace tessel;

TEST_CASE("a strided tensor view maps to Eigen without copying") {
  Tensor<float, Shape<4, 6>> t;
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 6; ++j) t(i, j) = static_cast<float>(10 * i + j);
  auto m = as_eigen(t);
  CHECK(m.data() == t.data());
  CHECK(m(3, 5) == 35.f);
  auto tr = as_eigen(t.view().slice(1, 1, 5).transpose());  // [4 cols -> rows] x 4
  CHECK(tr.rows() == 4);
  CHECK(tr.cols() == 4);
  for (index_t r = 0; r < 4; ++r)
    for (index_t c = 0; c < 4; ++c) CHECK(tr(r, c) == static_cast<float>(10 * c + (r + 1)));
  // Writes land in the tensor.
  m(2, 2) = -1.f;
  CHECK(t(2, 2) == -1.f);
  // A product through Eigen equals the sum written out here.
  Eigen::MatrixXf p = as_eigen(t.view().transpose()) * as_eigen(t);
  float want = 0;
  for (index_t k = 0; k < 4; ++k) want += t(k, 1) * t(k, 4);
  CHECK(p(1, 4) == doctest::Approx(want));
  auto col = as_eigen(t.select(1, 3));
  CHECK(col.size() == 4);
  CHECK(col(3) == 33.f);
}

TEST_CASE("Eigen matrices of both storage orders view as tensors") {
  Eigen::MatrixXf cm(3, 5);  // column-major
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm(3, 5);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) cm(i, j) = rm(i, j) = static_cast<float>(i * 5 + j);
  auto vc = view_of(cm);
  auto vr = view_of(rm);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 5; ++j) {
      CHECK(vc(i, j) == static_cast<float>(i * 5 + j));
      CHECK(vr(i, j) == static_cast<float>(i * 5 + j));
    }
  CHECK(vr.is_contiguous());
  CHECK(!vc.is_contiguous());
}
