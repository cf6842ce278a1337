// .npy / .npz reader and writer, against files written by numpy (tools/golden/io_npy.py), whose
// values follow formulas recomputed here; and the mnist-ddpm reference .npz.

#include <doctest/doctest.h>

#include "skip.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <tessel/io/formats/npy.hpp>

using namespace tessel;
using namespace tessel::io;
namespace fs = std::filesystem;

namespace {
const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/io/";
float fval(index_t i) {
  return float(i) * 0.25f - 1.f;
}
std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}
}  // namespace

TEST_CASE("npy: dtypes written by numpy") {
  const auto f4 = NpyFile::open(data_dir + "npy_f4.npy").array().to_tensor<float, 3>();
  CHECK(f4.extent(0) == 2);
  CHECK(f4.extent(2) == 4);
  for (index_t i = 0; i < f4.size(); ++i) CHECK(f4.data()[i] == fval(i));
  const auto f2 = NpyFile::open(data_dir + "npy_f2.npy").array().to_tensor<f16, 1>();
  for (index_t i = 0; i < 5; ++i) CHECK(to_f32(f2(i)) == fval(i));
  const auto i4 = NpyFile::open(data_dir + "npy_i4.npy").array().to_tensor<std::int32_t, 2>();
  CHECK(i4(2, 1) == 5 % 100 - 50);
  const auto i8 = NpyFile::open(data_dir + "npy_i8.npy").array().to_tensor<std::int64_t, 1>();
  CHECK(i8(3) == -47);
  const auto i1 = NpyFile::open(data_dir + "npy_i1.npy").array().to_tensor<std::int8_t, 1>();
  CHECK(i1(6) == -44);
  const auto u1 = NpyFile::open(data_dir + "npy_u1.npy").array().to_tensor<std::uint8_t, 2>();
  CHECK(u1(1, 1) == 3);
  const auto f8 = NpyFile::open(data_dir + "npy_f8.npy").array().to_tensor<double, 1>();
  CHECK(f8(2) == -0.5);
  const auto b1 = NpyFile::open(data_dir + "npy_b1.npy").array().to_tensor<bool, 1>();
  CHECK(b1(0));
  CHECK(!b1(1));
  CHECK(b1(3));
  const auto scf = NpyFile::open(data_dir + "npy_scalar.npy");  // arrays point into their file
  const auto& sc = scf.array();
  CHECK(sc.shape.empty());
  CHECK((sc.to_tensor<float, 1>()(0)) == 2.5f);
  CHECK_THROWS_WITH_AS((NpyFile::open(data_dir + "npy_f4.npy").array().to_tensor<double, 3>()),
                       doctest::Contains("dtype '<f4', not '<f8'"), format_error);
}

TEST_CASE("npy: format versions 2 and 3, Fortran order") {
  for (const char* f : {"npy_v2.npy", "npy_v3.npy"}) {
    CAPTURE(f);
    const auto a = NpyFile::open(data_dir + f).array().to_tensor<float, 2>();
    CHECK(a.extent(0) == 3);
    CHECK(a.extent(1) == 5);
    for (index_t i = 0; i < 15; ++i) CHECK(a.data()[i] == fval(i));
  }
  const auto faf = NpyFile::open(data_dir + "npy_fortran.npy");
  const auto& fa = faf.array();
  CHECK(fa.fortran_order);
  const auto t = fa.to_tensor<float, 3>();
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j)
      for (index_t k = 0; k < 2; ++k) CHECK(t(i, j, k) == fval((i * 4 + j) * 2 + k));
}

TEST_CASE("npz: numpy.savez archives") {
  const auto z = NpzFile::open(data_dir + "npz_pair.npz");
  CHECK(z.arrays().size() == 2);
  const auto x = z.get<float, 2>("x");
  CHECK(x(1, 2) == fval(5));
  const auto s = z.get<std::int64_t, 1>("steps");
  CHECK(s(4) == -46);
  CHECK_THROWS_AS(z.array("nope"), format_error);
}

TEST_CASE("npz: the mnist-ddpm references (written by numpy.savez)" *
          doctest::test_suite("needs_models")) {
  const std::string refs = tessel_test::models_dir() + "/mnist-ddpm/refs_seed0.npz";
  if (!tessel_test::have(refs, "the mnist-ddpm references")) return;
  const auto r = NpzFile::open(refs);
  CHECK(r.arrays().size() == 6);
  CHECK(r.array("eps_in").shape == std::vector<std::int64_t>{8, 1, 28, 28});
  CHECK(r.array("eps_t").shape == std::vector<std::int64_t>{8});
  CHECK(r.array("ddim_steps").shape == std::vector<std::int64_t>{50});
  CHECK(r.array("ddim_out").shape == std::vector<std::int64_t>{4, 1, 28, 28});
}

TEST_CASE("npy writer: numpy's own bytes for the same array, and strided views") {
  const auto expected = read_all(data_dir + "npy_f4.npy");
  Tensor<float, Shape<2, 3, 4>> t;
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = fval(i);
  const auto got = npy_bytes(t.view().as_const());
  REQUIRE(got.size() == expected.size());
  CHECK(std::memcmp(got.data(), expected.data(), got.size()) == 0);
  const auto e1 = read_all(data_dir + "npy_i8.npy");
  Tensor<std::int64_t, Shape<4>> v;
  for (index_t i = 0; i < 4; ++i) v(i) = i % 100 - 50;
  const auto g1 = npy_bytes(v.view().as_const());
  REQUIRE(g1.size() == e1.size());
  CHECK(std::memcmp(g1.data(), e1.data(), g1.size()) == 0);

  // A transposed view is written in its own (C) order.
  Tensor<float, Shape<2, 3>> m;
  for (index_t i = 0; i < 6; ++i) m.data()[i] = float(i);
  const auto path = (fs::temp_directory_path() / "tessel_test_npy_t.npy").string();
  write_npy(path, m.transpose().as_const());
  const auto back = NpyFile::open(path).array().to_tensor<float, 2>();
  CHECK(back.extent(0) == 3);
  CHECK(back(2, 1) == m(1, 2));
  CHECK(back(1, 0) == m(0, 1));
  fs::remove(path);
}
