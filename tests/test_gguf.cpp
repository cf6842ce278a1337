// GGUF reader and writer, against files written by another tool: llama.cpp's stories260K
// conversions (summarised independently by tools/golden/io_gguf.py) and a file the same script
// writes from the GGUF specification.

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "skip.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tessel/io/formats/gguf.hpp>
#include <tessel/io/formats/gguf_writer.hpp>
#include <tessel/quant/ggml_blocks.hpp>
#include <tessel/quant/kquants.hpp>

using namespace tessel;
using namespace tessel::io;
namespace fs = std::filesystem;

namespace {
const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/io/";
const std::string stories_dir = tessel_test::models_dir() + "/stories260K/gguf/";

std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

std::uint32_t crc32(std::span<const std::byte> b) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (auto x : b) {
    c ^= std::to_integer<std::uint32_t>(x);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

bool have_models() {
  return tessel_test::have(stories_dir, "the stories260K GGUF files");
}
}  // namespace

TEST_CASE("gguf: every metadata type and several tensor formats (spec-following Python file)") {
  const auto g = GGUFFile::open(data_dir + "gguf_all_types.gguf");
  CHECK(g.version() == 3);
  CHECK(g.alignment() == 64);
  CHECK(g.data_offset() % 64 == 0);
  CHECK(g.keys().size() == 21);
  CHECK(g.keys()[0] == "general.architecture");
  CHECK(g.get<std::string_view>("general.architecture") == "tessel-test");
  CHECK(g.get<std::uint8_t>("t.u8") == 200);
  CHECK(g.get<std::int8_t>("t.i8") == -100);
  CHECK(g.get<std::uint16_t>("t.u16") == 60000);
  CHECK(g.get<std::int16_t>("t.i16") == -30000);
  CHECK(g.get<std::uint32_t>("t.u32") == 4000000000u);
  CHECK(g.get<std::int32_t>("t.i32") == -2000000000);
  CHECK(g.get<float>("t.f32") == 1.5f);
  CHECK(g.get<bool>("t.bool") == true);
  CHECK(g.get<std::string>("t.string") == "héllo, wörld ✓");
  CHECK(g.get<std::uint64_t>("t.u64") == 18000000000000000000ull);
  CHECK(g.get<std::int64_t>("t.i64") == -9000000000000000000ll);
  CHECK(g.get<double>("t.f64") == 2.718281828459045);
  CHECK(g.get_int("t.u16") == 60000);
  CHECK(g.get_float("t.f32") == 1.5);
  CHECK(g.get_array<std::uint8_t>("t.arr.u8") == std::vector<std::uint8_t>{1, 2, 255});
  CHECK(g.get_array<std::int32_t>("t.arr.i32") == std::vector<std::int32_t>{-1, 0, 7});
  CHECK(g.get_array<float>("t.arr.f32") == std::vector<float>{0.25f, -2.0f});
  CHECK(g.get_array<bool>("t.arr.bool") == std::vector<bool>{true, false, true});
  CHECK(g.get_strings("t.arr.str") == std::vector<std::string_view>{"a", "", "日本"});
  CHECK(g.get_array<std::int64_t>("t.arr.empty").empty());
  const auto& nested = g.value("t.arr.nested").items(g.path(), "t.arr.nested");
  REQUIRE(nested.size() == 3);
  CHECK(nested[0].array<std::int16_t>(g.path(), "[0]") == std::vector<std::int16_t>{1, -2});
  CHECK(nested[1].strings(g.path(), "[1]") == std::vector<std::string_view>{"x"});
  const auto& inner = nested[2].items(g.path(), "[2]");
  REQUIRE(inner.size() == 1);
  CHECK(inner[0].array<std::uint64_t>(g.path(), "[2][0]") == std::vector<std::uint64_t>{9});

  // Typed getters say what is wrong.
  CHECK_THROWS_WITH_AS(g.get<std::int32_t>("t.u32"),
                       doctest::Contains("'t.u32' has type u32, expected i32"), format_error);
  CHECK_THROWS_WITH_AS(g.get<float>("nope"), doctest::Contains("missing metadata key 'nope'"),
                       format_error);
  CHECK_THROWS_WITH_AS(g.get_array<float>("t.arr.i32"),
                       doctest::Contains("array of i32, expected array of f32"), format_error);
  CHECK(g.get_or<std::uint32_t>("absent", 7u) == 7u);

  REQUIRE(g.tensors().size() == 6);
  const auto f = g.tensor("f32").view<float, 2>();
  CHECK(f.extent(0) == 2);
  CHECK(f.extent(1) == 3);
  CHECK(f(0, 0) == 1.f);
  CHECK(f(1, 2) == 6.f);
  CHECK(f(1, 0) == 4.f);
  const auto h = g.tensor("f16").view<f16, 1>();
  CHECK(to_f32(h(0)) == 1.f);
  CHECK(to_f32(h(1)) == -0.5f);
  CHECK(to_f32(h(2)) == 65504.f);
  const auto i = g.tensor("i32").view<std::int32_t, 1>();
  CHECK(i(0) == -2);
  CHECK(i(4) == 2);
  const auto& q = g.tensor("q8_0");
  CHECK(q.type == ggml_type::Q8_0);
  CHECK(q.shape() == std::vector<std::int64_t>{2, 32});
  CHECK(q.n_bytes == 68);
  CHECK(std::to_integer<int>(q.bytes()[5]) == 35);
  CHECK(g.tensor("q4_k").n_bytes == 144);
  const auto b = g.tensor("bf16").view<bf16, 4>();
  CHECK(b.extent(0) == 2);
  CHECK(b.extent(3) == 2);
  CHECK(to_f32(b(0, 0, 0, 0)) == 1.f);
  CHECK(to_f32(b(0, 0, 0, 1)) == -2.f);
  CHECK(g.tensor("bf16").view<bf16, 4>().is_contiguous());
  CHECK_THROWS_WITH_AS((g.tensor("f32").view<f16, 2>()),
                       doctest::Contains("'f32' is stored as F32, not F16"), format_error);
  CHECK_THROWS_AS((g.tensor("f32").view<float, 1>()), shape_error);
  for (const auto& t : g.tensors())
    CHECK(reinterpret_cast<std::uintptr_t>(t.data) % 64 == 0);  // mapping is page-aligned
}

TEST_CASE("gguf: version 2 files (same layout as version 3) read the same") {
  auto b = read_all(data_dir + "gguf_all_types.gguf");
  const std::uint32_t v2 = 2;
  std::memcpy(b.data() + 4, &v2, 4);
  const auto g = GGUFFile::from_bytes(b, "v2");
  CHECK(g.version() == 2);
  CHECK(g.get<std::string_view>("t.string") == "héllo, wörld ✓");
  CHECK((g.tensor("f32").view<float, 2>()(1, 2)) == 6.f);
}

TEST_CASE("gguf writer: reproduces the spec-following Python file byte for byte") {
  const auto expected = read_all(data_dir + "gguf_all_types.gguf");
  GGUFWriter w;
  w.set("general.architecture", "tessel-test");
  w.set("general.alignment", std::uint32_t(64));
  w.set("t.u8", std::uint8_t(200));
  w.set("t.i8", std::int8_t(-100));
  w.set("t.u16", std::uint16_t(60000));
  w.set("t.i16", std::int16_t(-30000));
  w.set("t.u32", std::uint32_t(4000000000u));
  w.set("t.i32", std::int32_t(-2000000000));
  w.set("t.f32", 1.5f);
  w.set("t.bool", true);
  w.set("t.string", "héllo, wörld ✓");
  w.set("t.u64", std::uint64_t(18000000000000000000ull));
  w.set("t.i64", std::int64_t(-9000000000000000000ll));
  w.set("t.f64", 2.718281828459045);
  w.set("t.arr.u8", gguf::encode_array(std::vector<std::uint8_t>{1, 2, 255}));
  w.set("t.arr.i32", gguf::encode_array(std::vector<std::int32_t>{-1, 0, 7}));
  w.set("t.arr.f32", gguf::encode_array(std::vector<float>{0.25f, -2.f}));
  w.set("t.arr.bool", gguf::encode_array(std::vector<bool>{true, false, true}));
  w.set("t.arr.str", gguf::encode_strings(std::vector<std::string>{"a", "", "日本"}));
  w.set("t.arr.empty", gguf::encode_array(std::vector<std::int64_t>{}));
  w.set("t.arr.nested",
        gguf::encode_arrays(
            {gguf::encode_array(std::vector<std::int16_t>{1, -2}),
             gguf::encode_strings(std::vector<std::string>{"x"}),
             gguf::encode_arrays({gguf::encode_array(std::vector<std::uint64_t>{9})})}));
  // Tensor data taken from the Python file's own tensors, written in the same order.
  const auto src = GGUFFile::from_bytes(expected, "expected");
  for (const auto& t : src.tensors()) {
    const auto s = t.shape();
    w.add_tensor(std::string(t.name), t.type, s, t.bytes());
  }
  const auto got = w.to_bytes();
  REQUIRE(got.size() == expected.size());
  CHECK(std::memcmp(got.data(), expected.data(), got.size()) == 0);

  // Also through a real file, and a typed TensorView.
  GGUFWriter w2;
  Tensor<float, Shape<2, 3>> x;
  for (int k = 0; k < 6; ++k) x.data()[k] = float(k) - 2.5f;
  w2.add_tensor("x", x.view().as_const());
  const auto path = (fs::temp_directory_path() / "tessel_test_gguf_w2.gguf").string();
  w2.write(path);
  const auto r = GGUFFile::open(path);
  const auto v = r.tensor("x").view<float, 2>();
  CHECK(v(1, 2) == 2.5f);
  CHECK(r.tensor("x").shape() == std::vector<std::int64_t>{2, 3});
  fs::remove(path);
}

TEST_CASE("gguf: llama.cpp-written stories260K files match the independent Python summary" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  std::ifstream jf(data_dir + "gguf_stories.json");
  REQUIRE(jf.good());
  const auto summary = nlohmann::json::parse(jf);
  REQUIRE(summary.size() == 5);
  for (const auto& [file, s] : summary.items()) {
    CAPTURE(file);
    const auto g = GGUFFile::open(stories_dir + file);
    CHECK(g.version() == s["version"].get<std::uint32_t>());
    CHECK(g.alignment() == s["alignment"].get<std::uint32_t>());
    CHECK(g.data_offset() == s["data_offset"].get<std::uint64_t>());
    CHECK(g.file_size() == s["size"].get<std::size_t>());
    CHECK(g.keys().size() == s["metadata"].size());
    for (const auto& [key, m] : s["metadata"].items()) {
      CAPTURE(key);
      const auto& v = g.value(key);
      CHECK(unsigned(v.type()) == m["type"].get<unsigned>());
      const auto t = gguf_type(m["type"].get<unsigned>());
      if (t == gguf_type::string) {
        CHECK(g.get<std::string>(key) == m["value"].get<std::string>());
      } else if (t == gguf_type::u32) {
        CHECK(g.get<std::uint32_t>(key) == m["value"].get<std::uint32_t>());
      } else if (t == gguf_type::f32) {
        CHECK(g.get<float>(key) == m["value"].get<float>());
      } else if (t == gguf_type::array) {
        CHECK(v.count() == m["count"].get<std::uint64_t>());
        const auto et = gguf_type(m["elem_type"].get<unsigned>());
        CHECK(v.elem_type() == et);
        if (et == gguf_type::string) {
          CHECK(g.get_strings(key).front() == m["first"].get<std::string>());
          CHECK(g.get_strings(key).back() == m["last"].get<std::string>());
        } else if (et == gguf_type::f32) {
          CHECK(g.get_array<float>(key).back() == m["last"].get<float>());
        } else if (et == gguf_type::i32) {
          CHECK(g.get_array<std::int32_t>(key).front() == m["first"].get<std::int32_t>());
        }
      }
    }
    REQUIRE(g.tensors().size() == s["tensors"].size());
    for (std::size_t i = 0; i < g.tensors().size(); ++i) {
      const auto& t = g.tensors()[i];
      const auto& e = s["tensors"][i];
      CAPTURE(t.name);
      CHECK(t.name == e["name"].get<std::string>());
      CHECK(std::string(name(t.type)) == e["type"].get<std::string>());
      const auto ne = e["ne"].get<std::vector<std::int64_t>>();
      CHECK(t.n_dims == int(ne.size()));
      for (std::size_t d = 0; d < ne.size(); ++d) CHECK(t.ne[d] == ne[d]);
      CHECK(t.offset == e["offset"].get<std::uint64_t>());
      CHECK(t.n_bytes == e["bytes"].get<std::uint64_t>());
      CHECK(crc32(t.bytes()) == e["crc32"].get<std::uint32_t>());
    }
  }
  const auto g = GGUFFile::open(stories_dir + "stories260K-f32.gguf");
  CHECK(g.get_int("llama.block_count") == 5);
  const auto emb = g.tensor("token_embd.weight").view<float, 2>();
  CHECK(emb.extent(0) == 512);
  CHECK(emb.extent(1) == 64);
}

TEST_CASE("gguf writer: rewriting llama.cpp's files gives the same bytes" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  for (const char* file :
       {"stories260K-f32.gguf", "stories260K-Q4_0-mixed.gguf", "stories260K-Q4_K_M.gguf"}) {
    CAPTURE(file);
    const auto g = GGUFFile::open(stories_dir + file);
    GGUFWriter w;
    for (auto k : g.keys()) w.set(std::string(k), g.value(k));
    for (const auto& t : g.tensors())
      w.add_tensor(std::string(t.name), t.type, t.shape(), t.bytes());
    const auto out = w.to_bytes();
    REQUIRE(out.size() == g.file_size());
    const auto orig = read_all(stories_dir + file);
    CHECK(std::memcmp(out.data(), orig.data(), out.size()) == 0);
  }
}

TEST_CASE("gguf: opening a 1 GiB file costs time for its metadata only") {
  const auto path = (fs::temp_directory_path() / "tessel_test_gguf_1g.gguf").string();
  GGUFWriter w;
  w.set("general.architecture", "big");
  const std::vector<std::int64_t> shape{16384, 16384};  // 256 Mi f32 = 1 GiB, written as a hole
  w.reserve_tensor("big", ggml_type::F32, shape);
  w.write(path);
  REQUIRE(fs::file_size(path) > (std::uintmax_t(1) << 30));
  // The writer leaves the file on disk, out of the page cache (io::settle_written_file). Read its
  // first page back without read-ahead, as a file opened before would hold it, so the check
  // below sees the pages the parser touches, not the kernel's read-ahead around a cold page.
  {
    const int fd = ::open(path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    char head[4096];
    CHECK(::pread(fd, head, sizeof head, 0) == ssize_t(sizeof head));
    ::close(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto g = GGUFFile::open(path);
  const auto t1 = std::chrono::steady_clock::now();
  const auto& t = g.tensor("big");
  CHECK(t.n_bytes == (std::uint64_t(1) << 30));
  // No page of the tensor data was read: mincore reports none of them resident.
  const long page = sysconf(_SC_PAGESIZE);
  const auto* base = reinterpret_cast<const std::byte*>(
      reinterpret_cast<std::uintptr_t>(t.data) / std::uintptr_t(page) * std::uintptr_t(page));
  std::vector<unsigned char> resident(std::size_t(t.n_bytes / std::uint64_t(page)));
  REQUIRE(mincore(const_cast<std::byte*>(base) + page, resident.size() * std::size_t(page),
                  resident.data()) == 0);
  std::size_t n = 0;
  for (auto r : resident) n += r & 1;
  CHECK(n == 0);
  const double us = std::chrono::duration<double, std::micro>(t1 - t0).count();
  MESSAGE("opened a " << (fs::file_size(path) >> 20) << " MiB GGUF in " << us << " us");
  CHECK(us < 100000);  // reading 1 GiB would take far longer than 0.1 s
  fs::remove(path);
}

TEST_CASE("gguf: quantized tensors view as tessel's block formats" *
          doctest::test_suite("needs_models")) {
  static_assert(ggml_type_of<q8_0>()->type == ggml_type::Q8_0);
  static_assert(ggml_type_of<q4_k>()->type == ggml_type::Q4_K);
  static_assert(ggml_type_of<q6_k>()->type == ggml_type::Q6_K);
  static_assert(ggml_type_of<q5_1>()->type == ggml_type::Q5_1);
  static_assert(ggml_type_of<q4_0>()->type == ggml_type::Q4_0);  // not IQ4_NL (same geometry)
  for (const auto& ti : ggml_types) CHECK(find_ggml_type(std::uint32_t(ti.type)) == &ti);
  if (!have_models()) return;
  const auto g = GGUFFile::open(stories_dir + "stories260K-Q4_0-mixed.gguf");
  const auto& q = g.tensor("blk.0.attn_q.weight");
  REQUIRE(q.type == ggml_type::Q4_0);
  const auto v = q.view<q4_0, 2>();
  CHECK(v.extent(0) == 64);
  CHECK(v.extent(1) == 64);
  CHECK(v.stride(0) == 2);  // two blocks per row
  CHECK(reinterpret_cast<const std::byte*>(v.data()) == q.data);
  CHECK_THROWS_AS((q.view<q8_0, 2>()), format_error);
  const auto out = g.tensor("output.weight").view<q8_0, 2>();
  CHECK(out.extent(0) == 512);
}
