// Shapes, tensors and views: every view is checked against index arithmetic done here, on
// tensors whose element value encodes its own index (v = 100 i + 10 j + k).
#include <doctest/doctest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <tessel/core.hpp>

using namespace tessel;

namespace {
template <class T>
void fill_index(T& t) {
  for (index_t i = 0; i < t.extent(0); ++i)
    for (index_t j = 0; j < t.extent(1); ++j)
      for (index_t k = 0; k < t.extent(2); ++k)
        t(i, j, k) = static_cast<float>(100 * i + 10 * j + k);
}
bool throws_shape_error_with(auto&& f, const std::string& needle) {
  try {
    f();
  } catch (const shape_error& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}
}  // namespace

TEST_CASE("static extents cost no storage; dynamic extents are stored") {
  static_assert(Shape<4, 64>::is_static && Shape<4, 64>::rank == 2);
  static_assert(Shape<4, 64>{}.size() == 256);
  static_assert(Shape<dyn, 64>::rank_dynamic == 1);
  static_assert(std::is_empty_v<Shape<2, 3>>);
  static_assert(sizeof(Shape<dyn, 64, dyn>) == 2 * sizeof(index_t));
  Shape<dyn, 64> s(5);
  CHECK(s.extent(0) == 5);
  CHECK(s.extent(1) == 64);
  CHECK(s.size() == 320);
  CHECK(Shape<dyn, 64>(5, 64) == s);
  CHECK(to_string(s) == "[5, 64]");
  CHECK(
      throws_shape_error_with([] { return Shape<dyn, 64>(5, 63); }, "axis 1 is static 64, got 63"));
  CHECK(throws_shape_error_with([] { return Shape<dyn>(-2); }, "negative"));
}

TEST_CASE("Tensor is 64-byte aligned, zeroed, row-major") {
  Tensor<float, Shape<3, dyn, 5>> t(3, 7, 5);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  CHECK(t.size() == 105);
  CHECK(t.bytes() == 105 * sizeof(float));
  for (float v : t.span()) CHECK(v == 0.f);
  fill_index(t);
  // Row-major: the linear offset of (i, j, k) is (i * 7 + j) * 5 + k.
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 7; ++j)
      for (index_t k = 0; k < 5; ++k)
        CHECK(t.data()[(i * 7 + j) * 5 + k] == static_cast<float>(100 * i + 10 * j + k));
  auto c = t.clone();
  c(0, 0, 0) = 42.f;
  CHECK(t(0, 0, 0) == 0.f);
  CHECK(c(2, 6, 4) == 264.f);
}

TEST_CASE("large host buffers start on a huge-page boundary (Linux), small ones on a cache line") {
  const auto addr = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
  for (std::size_t bytes : {std::size_t{1}, std::size_t{100}, host_space::huge_threshold - 1}) {
    void* p = host_space::allocate(bytes);
    CHECK(addr(p) % tensor_alignment == 0);
    host_space::deallocate(p);
  }
  for (std::size_t bytes : {host_space::huge_threshold, host_space::huge_threshold + 12345}) {
    void* p = host_space::allocate(bytes);
    REQUIRE(p != nullptr);
#if defined(__linux__)
    CHECK(addr(p) % host_space::huge_page == 0);
#endif
    // The whole requested range is usable.
    static_cast<unsigned char*>(p)[bytes - 1] = 7;
    CHECK(static_cast<unsigned char*>(p)[bytes - 1] == 7);
    host_space::deallocate(p);
  }
  Tensor<float, DynShape<1>> big(index_t{1} << 21);  // 8 MiB
#if defined(__linux__)
  CHECK(addr(big.data()) % host_space::huge_page == 0);
#endif
  CHECK(big(big.size() - 1) == 0.0f);
  CHECK_THROWS_AS(host_space::allocate(~std::size_t{0} - 10), value_error);
}

TEST_CASE("oversized tensors are refused instead of overflowing") {
  CHECK_THROWS_AS((Tensor<float, DynShape<2>>(index_t{1} << 40, index_t{1} << 40)), value_error);
}

TEST_CASE("slice, select, permute, transpose, reshape, broadcast") {
  Tensor<float, Shape<4, 6, 5>> t;
  fill_index(t);
  auto s = t.slice(1, 2, 5);  // j in [2, 5)
  CHECK(s.extent(1) == 3);
  CHECK(!s.is_contiguous());
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 3; ++j)
      for (index_t k = 0; k < 5; ++k)
        CHECK(s(i, j, k) == static_cast<float>(100 * i + 10 * (j + 2) + k));

  auto row = t.select(0, 3);  // [6, 5]
  CHECK(row.extent(0) == 6);
  CHECK(row(4, 2) == 342.f);
  auto col = t.select(2, 1);  // [4, 6], k = 1
  CHECK(col(3, 5) == 351.f);
  CHECK(t[2](1, 3) == 213.f);

  auto p = t.permute({2, 0, 1});  // p(k, i, j) = t(i, j, k)
  CHECK(p.extent(0) == 5);
  CHECK(p.extent(1) == 4);
  CHECK(p.extent(2) == 6);
  for (index_t k = 0; k < 5; ++k)
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 6; ++j) CHECK(p(k, i, j) == static_cast<float>(100 * i + 10 * j + k));
  auto tr = t.transpose();  // swap last two
  CHECK(tr(1, 4, 5) == 154.f);

  auto r = t.reshape(24, 5);
  CHECK(r(13, 2) == t(2, 1, 2));
  CHECK(throws_shape_error_with([&] { return t.reshape(7, 5); },
                                "cannot view shape [4, 6, 5] as [7, 5]"));
  CHECK(throws_shape_error_with([&] { return s.reshape(60); }, "non-contiguous"));
  auto rs = t.view().reshape_as<Shape<120>>();
  CHECK(rs(119) == 354.f);

  Tensor<float, Shape<3, 1>> b;
  b(0, 0) = 1;
  b(1, 0) = 2;
  b(2, 0) = 3;
  auto bb = b.broadcast_to(std::array<index_t, 3>{2, 3, 4});
  for (index_t n = 0; n < 2; ++n)
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 4; ++j) CHECK(bb(n, i, j) == static_cast<float>(i + 1));
  CHECK(bb.stride(0) == 0);
  CHECK(bb.stride(2) == 0);
  CHECK(throws_shape_error_with(
      [&] {
        return b.broadcast_to(std::array<index_t, 2>{4, 4});
      },
      "shape [3, 1] cannot broadcast to [4, 4]"));
  CHECK(throws_shape_error_with([&] { return t.slice(1, 4, 7); }, "out of bounds"));
  CHECK(throws_shape_error_with([&] { return t.select(3, 0); }, "axis 3 out of range"));
  CHECK(throws_shape_error_with([&] { return t.permute({0, 0, 1}); }, "not a permutation"));
  CHECK(throws_shape_error_with([&] { return t.view().checked({4, 0, 0}); }, "out of bounds"));
}

TEST_CASE("views of views compose") {
  Tensor<float, DynShape<3>> t(5, 4, 3);
  fill_index(t);
  // t[1:4, :, 2] transposed -> v(j, i) = t(1 + i, j, 2)
  auto v = t.slice(0, 1, 4).select(2, 2).transpose();
  CHECK(v.extent(0) == 4);
  CHECK(v.extent(1) == 3);
  for (index_t j = 0; j < 4; ++j)
    for (index_t i = 0; i < 3; ++i)
      CHECK(v(j, i) == static_cast<float>(100 * (1 + i) + 10 * j + 2));
  TensorView<const float, DynShape<3>> cv = t.view();
  CHECK(cv(4, 3, 2) == 432.f);
}

TEST_CASE("views convert between static and run-time extents that can agree") {
  Tensor<float, Shape<3, 4>> t;
  t(2, 1) = 5.0f;
  // static -> dyn: always; the extents, strides and elements are the same
  TensorView<const float, Shape<dyn, 4>> a = t.view();
  CHECK(a.extent(0) == 3);
  CHECK(a(2, 1) == 5.0f);
  TensorView<float, DynShape<2>> d = t.view();
  CHECK(d.strides() == t.view().strides());
  // dyn -> static: checked at run time
  TensorView<float, Shape<3, dyn>> s = d;
  CHECK(s(2, 1) == 5.0f);
  const auto wrong = [&] {
    TensorView<const float, Shape<dyn, 5>> w = d;
    (void)w;
  };
  CHECK_THROWS_AS(wrong(), shape_error);
  CHECK_THROWS_AS((TensorView<float, Shape<4, dyn>>(d)), shape_error);
  // strided views keep their strides
  const auto col = t.view().slice(1, 1, 3);  // [3, 2], rows 4 apart
  TensorView<float, Shape<3, 2>> c = col;
  CHECK(c.stride(0) == 4);
  CHECK(&c(2, 0) == &t(2, 1));
  // two different static extents never convert; nor do other ranks, or const to mutable
  static_assert(!std::is_convertible_v<TensorView<float, Shape<dyn, 128>>,
                                       TensorView<const float, Shape<dyn, 64>>>);
  static_assert(
      !std::is_convertible_v<TensorView<float, Shape<3, 4>>, TensorView<float, Shape<12>>>);
  static_assert(!std::is_convertible_v<TensorView<const float, Shape<dyn, 4>>,
                                       TensorView<float, Shape<3, 4>>>);
  static_assert(std::is_convertible_v<TensorView<float, Shape<dyn, 4>>,
                                      TensorView<const float, Shape<3, dyn>>>);
}

TEST_CASE("narrow element types are stored as bits and read as f32") {
  Tensor<bf16, Shape<2, 2>> t;
  t.fill(1.0f / 3.0f);
  CHECK(to_f32(t(1, 1)) == to_f32(from_f32<bf16>(1.0f / 3.0f)));
  CHECK(t(0, 1).bits == 0x3eab);  // 1/3 in bf16, rounded to nearest even
}

TEST_CASE("printing is numpy-like and summarises long axes") {
  Tensor<float, Shape<2, 3>> t;
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) t(i, j) = static_cast<float>(i * 3 + j);
  std::ostringstream os;
  os << t;
  CHECK(os.str() == "tensor<f32, [2, 3]>\n[[0, 1, 2],\n [3, 4, 5]]");
  Tensor<float, DynShape<1>> l(10);
  std::ostringstream os2;
  os2 << l;
  CHECK(os2.str() == "tensor<f32, [10]>\n[0, 0, 0, ..., 0, 0, 0]");
}
