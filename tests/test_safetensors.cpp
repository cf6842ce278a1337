// safetensors reader and writer, against files written by a spec-following Python script
// (tools/golden/io_safetensors.py) whose values follow a formula recomputed here.

#include <doctest/doctest.h>

#include "skip.hpp"

#include <filesystem>
#include <fstream>
#include <tessel/io/formats/safetensors.hpp>

using namespace tessel;
using namespace tessel::io;
namespace fs = std::filesystem;

namespace {
const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/io/";

std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}
template <class T>
T load(const SafetensorsTensor& t, std::size_t i) {
  T v;
  std::memcpy(&v, t.data + i * sizeof(T), sizeof(T));
  return v;
}
}  // namespace

TEST_CASE("safetensors: every dtype, metadata, scalars and empty tensors") {
  const auto f = SafetensorsFile::open(data_dir + "st_all_dtypes.safetensors");
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "ünïcode ok");
  CHECK(f.tensors().size() == 14);
  CHECK(f.data_offset() % 8 == 0);

  const auto d = f.tensor("t_f64").view<double, 2>();
  CHECK(d.extent(0) == 2);
  CHECK(d.extent(1) == 3);
  CHECK(d(1, 2) == 5 * 0.5 - 3);
  const auto s = f.tensor("t_f32").view<float, 1>();
  for (int i = 0; i < 5; ++i) CHECK(s(i) == float(i) * 0.5f - 3.f);
  const auto h = f.tensor("t_f16").view<f16, 3>();
  CHECK(to_f32(h(1, 1, 1)) == 7 * 0.5f - 3.f);
  const auto b = f.tensor("t_bf16").view<bf16, 2>();
  CHECK(to_f32(b(2, 0)) == 2 * 0.5f - 3.f);
  const auto e4 = f.tensor("t_f8_e4m3").view<f8_e4m3, 1>();
  CHECK(e4(0).bits == 0);
  const auto e5 = f.tensor("t_f8_e5m2").view<f8_e5m2, 1>();
  CHECK(to_f32(e5(15)) == -1.0f * to_f32(e5(7)));  // 0xF0 is the negation of 0x70
  CHECK(to_f32(e5(7)) == 8192.f);                  // 0x70: 2^(28 - 15)
  // I64 sits at an offset that is not a multiple of 8: the view refuses, the bytes still work.
  const auto& i64 = f.tensor("t_i64");
  CHECK(i64.begin % 8 != 0);
  CHECK_THROWS_WITH_AS((i64.view<std::int64_t, 1>()), doctest::Contains("not aligned"),
                       format_error);
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(load<std::int64_t>(i64, i) == std::int64_t(double(i) * 0.5 - 3));
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(load<std::int32_t>(f.tensor("t_i32"), i) == std::int32_t(double(i) * 0.5 - 3));
  for (std::size_t i = 0; i < 3; ++i)
    CHECK(load<std::int16_t>(f.tensor("t_i16"), i) == std::int16_t(double(i) * 0.5 - 3));
  const auto i8 = f.tensor("t_i8").view<std::int8_t, 1>();
  CHECK(i8(6) == 0);
  CHECK(i8(0) == -3);
  const auto u8 = f.tensor("t_u8").view<std::uint8_t, 2>();
  CHECK(u8(1, 2) == 5);
  const auto bo = f.tensor("t_bool").view<bool, 1>();
  CHECK(bo(0));
  CHECK(!bo(1));
  CHECK(bo(3));
  CHECK(f.tensor("scalar").shape.empty());
  CHECK(f.tensor("scalar").n_elements() == 1);
  CHECK(load<float>(f.tensor("scalar"), 0) == -3.f);
  CHECK(f.tensor("empty").n_elements() == 0);
  CHECK(f.tensor("empty").shape == std::vector<std::int64_t>{0, 4});

  CHECK_THROWS_WITH_AS((f.tensor("t_f32").view<f16, 1>()),
                       doctest::Contains("has dtype F32, not F16"), format_error);
  CHECK_THROWS_AS((f.tensor("t_f32").view<float, 2>()), shape_error);
  CHECK_THROWS_AS(f.tensor("missing"), format_error);
}

TEST_CASE("safetensors: f8 decoding of the stored bytes follows the OCP formats") {
  const auto f = SafetensorsFile::open(data_dir + "st_all_dtypes.safetensors");
  // Bytes are i * 16: e4m3 0x30 = exponent 6 (bias 7) = 0.5; 0x40 = 2.0; e5m2 0x30 = 2^(12-15).
  const auto e4 = f.tensor("t_f8_e4m3").view<f8_e4m3, 1>();
  CHECK(to_f32(e4(3)) == 0.5f);
  CHECK(to_f32(e4(4)) == 2.0f);
  const auto e5 = f.tensor("t_f8_e5m2").view<f8_e5m2, 1>();
  CHECK(to_f32(e5(3)) == 0.125f);
}

TEST_CASE("safetensors writer: same bytes as the spec-following Python writer") {
  const auto expected = read_all(data_dir + "st_all_dtypes.safetensors");
  const auto src = SafetensorsFile::from_bytes(expected, "expected");
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "ünïcode ok");
  for (const auto& t : src.tensors()) w.add(t.name, t.dtype, t.shape, t.bytes());
  const auto got = w.to_bytes();
  REQUIRE(got.size() == expected.size());
  CHECK(std::memcmp(got.data(), expected.data(), got.size()) == 0);

  Tensor<float, Shape<2, 2>> x;
  x(0, 1) = 3.5f;
  SafetensorsWriter w2;
  w2.add("x", x.view().as_const());
  const auto path = (fs::temp_directory_path() / "tessel_test_st.safetensors").string();
  w2.write(path);
  const auto r = SafetensorsFile::open(path);
  CHECK((r.tensor("x").view<float, 2>()(0, 1)) == 3.5f);
  fs::remove(path);
}

TEST_CASE("safetensors: a sharded checkpoint through its index") {
  const auto c = SafetensorsCheckpoint::open(data_dir + "st_sharded.safetensors.index.json");
  CHECK(c.shards().size() == 2);
  CHECK(c.tensors().size() == 3);
  const auto w = c.tensor("a.weight").view<float, 2>();
  CHECK(w(3, 2) == 11 * 0.5f - 3.f);
  const auto bw = c.tensor("b.weight").view<f16, 2>();
  CHECK(to_f32(bw(1, 3)) == 7 * 0.5f - 3.f);
  CHECK(c.tensor("b.weight").file->ends_with("st_sharded-00002-of-00002.safetensors"));
  const auto single =
      SafetensorsCheckpoint::open(data_dir + "st_sharded-00001-of-00002.safetensors");
  CHECK(single.tensors().size() == 2);
  CHECK_THROWS_AS(single.tensor("b.weight"), value_error);
}

TEST_CASE("safetensors: the mnist-ddpm checkpoint (written by another tool) opens" *
          doctest::test_suite("needs_models")) {
  const std::string path = tessel_test::models_dir() + "/mnist-ddpm/ddpm_mnist.safetensors";
  if (!tessel_test::have(path, "the mnist-ddpm checkpoint")) return;
  const auto f = SafetensorsFile::open(path);
  CHECK(f.tensors().size() == 29);
  const auto w = f.tensor("gt.blocks.1.net.0.weight").view<float, 4>();
  CHECK(w.extent(0) == 32);
  CHECK(w.extent(1) == 16);
  CHECK(w.extent(2) == 7);
}
