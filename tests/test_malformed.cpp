// Malformed files, each built here from a valid one by one change, must be refused with
// tessel::format_error whose message names the reason; none may crash or allocate wildly.

#include <doctest/doctest.h>

#include <functional>

#include <tessel/io/gguf.hpp>
#include <tessel/io/gguf_writer.hpp>
#include <tessel/io/llama2c.hpp>
#include <tessel/io/npy.hpp>
#include <tessel/io/safetensors.hpp>
#include <tessel/io/torch.hpp>
#include "io_test_zip.hpp"

using namespace tessel;
using namespace tessel::io;
using bytes_t = std::vector<std::byte>;

namespace {
int n_cases = 0;

template <class Open>
void rejects(Open open, const bytes_t& b, const std::string& why) {
  ++n_cases;
  CAPTURE(why);
  try {
    open(b);
    FAIL("accepted a malformed file");
  } catch (const format_error& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find(why) != std::string::npos);
    CHECK(msg.find("test.bin") == 0);  // names the file
  }
}
const auto open_gguf = [](const bytes_t& b) { GGUFFile::from_bytes(b, "test.bin"); };
const auto open_st = [](const bytes_t& b) { SafetensorsFile::from_bytes(b, "test.bin"); };
const auto open_npy = [](const bytes_t& b) { NpyFile::from_bytes(b, "test.bin"); };
const auto open_npz = [](const bytes_t& b) { NpzFile::from_bytes(b, "test.bin"); };
const auto open_torch = [](const bytes_t& b) { TorchFile::from_bytes(b, "test.bin"); };
const auto open_l2c = [](const bytes_t& b) { Llama2cFile::from_bytes(b, "test.bin"); };

std::size_t find(const bytes_t& b, std::string_view s) {
  for (std::size_t i = 0; i + s.size() <= b.size(); ++i)
    if (std::memcmp(b.data() + i, s.data(), s.size()) == 0) return i;
  FAIL("marker not found: " << s);
  return 0;
}
template <class T>
bytes_t with(bytes_t b, std::size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
  return b;
}
bytes_t with_text(bytes_t b, std::string_view from, std::string_view to) {
  REQUIRE(from.size() == to.size());
  const auto at = find(b, from);
  std::memcpy(b.data() + at, to.data(), to.size());
  return b;
}

// ---- a valid GGUF file and the places to break -----------------------------------------
bytes_t base_gguf(int depth = 1) {
  static std::vector<float> fa(16, 1.f);
  static std::vector<std::byte> qb(34), hb(8);
  GGUFWriter w;
  w.set("general.architecture", "base");
  w.set("general.alignment", std::uint32_t(64));
  w.set("k.bool", true);
  w.set("k.str", "hello");
  w.set("k.arr", gguf::encode_array(std::vector<std::uint32_t>{1, 2, 3}));
  GGUFEncoded nest = gguf::encode_array(std::vector<std::int8_t>{1});
  for (int d = 0; d < depth; ++d) nest = gguf::encode_arrays({nest});
  w.set("k.nest", nest);
  const std::vector<std::int64_t> sa{2, 8}, sb{1, 32}, sc{4};
  w.add_tensor("ta", ggml_type::F32, sa, std::as_bytes(std::span(fa)));
  w.add_tensor("tb", ggml_type::Q8_0, sb, qb);
  w.add_tensor("tc", ggml_type::F16, sc, hb);
  return w.to_bytes();
}
// Offsets of a tensor info's fields, found from its name.
std::size_t info_at(const bytes_t& b, std::string_view name) {
  return find(b, name) + name.size();
}

using io_test::pickle;
using io_test::torch_file;
using io_test::zip;

bytes_t tiny_llama2c(std::int32_t vocab = 3) {
  const std::int32_t h[7] = {4, 6, 1, 2, 1, vocab, 2};
  const std::size_t floats = 3 * 4 + 4 + 16 + 8 + 8 + 16 + 4 + 24 + 24 + 24 + 4 + 2 * 2;
  bytes_t b(28 + floats * 4);
  std::memcpy(b.data(), h, 28);
  return b;
}
}  // namespace

TEST_CASE("malformed GGUF files") {
  const auto b = base_gguf();
  REQUIRE_NOTHROW(open_gguf(b));
  const auto g = GGUFFile::from_bytes(b, "base");
  const std::size_t data_end = g.data_offset() + g.tensor("tc").offset + g.tensor("tc").n_bytes;

  // Truncated inside every section: header, metadata, tensor infos, data.
  for (std::size_t n = 0; n < data_end; ++n) {
    CAPTURE(n);
    const bytes_t t(b.begin(), b.begin() + std::ptrdiff_t(n));
    CHECK_THROWS_AS(open_gguf(t), format_error);
  }
  rejects(open_gguf, bytes_t(b.begin(), b.begin() + 10), "truncated");
  rejects(open_gguf, with<char>(b, 0, 'X'), "not a GGUF file");
  rejects(open_gguf, with<std::uint32_t>(b, 4, 1), "unsupported GGUF version 1");
  rejects(open_gguf, with<std::uint32_t>(b, 4, 4), "unsupported GGUF version 4");
  rejects(open_gguf, with<std::uint64_t>(b, 8, std::uint64_t(1) << 60), "tensor count");
  rejects(open_gguf, with<std::uint64_t>(b, 16, std::uint64_t(1) << 60), "metadata count");
  rejects(open_gguf, with<std::uint64_t>(b, 24, ~std::uint64_t(0)), "past the end of the file");
  const auto kbool = info_at(b, "k.bool");
  rejects(open_gguf, with<std::uint32_t>(b, kbool, 13), "unknown metadata value type 13");
  rejects(open_gguf, with<std::uint8_t>(b, kbool + 4, 2), "bool value is neither 0 nor 1");
  rejects(open_gguf, with<std::uint8_t>(b, find(b, "k.str"), 0xFF), "not valid UTF-8");
  rejects(open_gguf, with<std::uint8_t>(b, find(b, "hello") + 1, 0xC0), "not valid UTF-8");
  rejects(open_gguf, with_text(b, "k.str", "k.arr"), "duplicate metadata key 'k.arr'");
  const auto karr = info_at(b, "k.arr");
  rejects(open_gguf, with<std::uint32_t>(b, karr + 4, 77), "unknown array element type 77");
  rejects(open_gguf, with<std::uint64_t>(b, karr + 8, std::uint64_t(1) << 61),
          "exceeds the bytes left");
  rejects(open_gguf, base_gguf(9), "arrays nested deeper than 8");
  rejects(open_gguf, with<std::uint32_t>(b, info_at(b, "general.alignment") + 4, 48),
          "not a power of two");
  rejects(open_gguf, with<std::uint32_t>(b, info_at(b, "general.alignment"), 5),
          "'general.alignment' has type i32, expected u32");
  const auto ta = info_at(b, "ta"), tb = info_at(b, "tb");
  rejects(open_gguf, with<std::uint32_t>(b, ta, 5), "has 5 dimensions");
  rejects(open_gguf, with<std::uint32_t>(b, ta, 0), "has 0 dimensions");
  rejects(open_gguf, with<std::uint64_t>(b, ta + 4, std::uint64_t(1) << 62),
          "element count overflows");
  rejects(open_gguf, with<std::uint64_t>(b, ta + 4, std::uint64_t(1) << 63),
          "element count overflows");
  rejects(open_gguf, with<std::uint32_t>(b, ta + 20, 31), "unknown or unsupported ggml type 31");
  rejects(open_gguf, with<std::uint64_t>(b, tb + 4, 33), "not a multiple of the Q8_0 block");
  rejects(open_gguf, with<std::uint64_t>(b, tb + 24, 64 + 4), "not a multiple of the alignment");
  rejects(open_gguf, with<std::uint64_t>(b, tb + 24, std::uint64_t(1) << 40),
          "outside the data section");
  rejects(open_gguf, with<std::uint64_t>(b, tb + 24, 0), "overlaps tensor");
  rejects(open_gguf, with_text(b, "tb", "ta"), "duplicate tensor name 'ta'");
  rejects(open_gguf, with<std::uint8_t>(b, find(b, "tb"), 0xFF), "tensor name is not valid UTF-8");
}

TEST_CASE("malformed safetensors files") {
  SafetensorsWriter w;
  static const float a[4] = {1, 2, 3, 4};
  static const std::int8_t i[3] = {1, 2, 3};
  w.set_metadata("format", "pt");
  w.add("a", st_dtype::F32, {2, 2}, std::as_bytes(std::span(a)));
  w.add("b", st_dtype::I8, {3}, std::as_bytes(std::span(i)));
  const auto b = w.to_bytes();
  REQUIRE_NOTHROW(open_st(b));
  for (std::size_t n = 0; n < b.size(); ++n) {
    CAPTURE(n);
    CHECK_THROWS_AS(open_st(bytes_t(b.begin(), b.begin() + std::ptrdiff_t(n))), format_error);
  }
  rejects(open_st, with<std::uint64_t>(b, 0, 1u << 20), "past the end of the file");
  rejects(open_st, with_text(b, "{\"__", "[\"__"), "not valid JSON");
  rejects(open_st, with_text(b, "\"a\":{", "\"a\":["), "not valid JSON");
  rejects(open_st, with<std::uint8_t>(b, find(b, "\"a\"") + 1, 0xFF),
          "not valid JSON (or not UTF-8)");
  rejects(open_st, with_text(b, "\"F32\"", "\"F31\""), "unknown dtype 'F31'");
  rejects(open_st, with_text(b, "[2,2]", "[2,-]"), "not valid JSON");
  rejects(open_st, with_text(b, "[2,2]", "[2,3]"), "shape and dtype need 6 x 4");
  rejects(open_st, with_text(b, "\"pt\"", "1234"), "is not a string");
  rejects(open_st, with_text(b, "[16,19]", "[16,99]"), "lie outside the data buffer");
  rejects(open_st, with_text(b, "[0,16]", "[9,16]"), "shape and dtype need 4 x 4");
  rejects(open_st, with_text(b, "[16,19]", "[15,18]"), "overlaps");
  auto holed = with_text(b, "[16,19]", "[17,20]");
  holed.push_back(std::byte{0});
  rejects(open_st, holed, "hole in the data buffer before tensor 'b'");
  // The last tensor ends early: bytes at the end are covered by nothing.
  auto longer = b;
  longer.push_back(std::byte{0});
  rejects(open_st, longer, "not covered by any tensor");
  rejects(open_st, with_text(b, "\"shape\":[3]", "\"shape\":{3}"), "not valid JSON");
  rejects(open_st, with_text(b, "[3]", "[0]"), "shape and dtype need 0 x 1");
}

TEST_CASE("malformed .npy / .npz files") {
  Tensor<float, Shape<2, 3>> t;
  const auto b = npy_bytes(t.view().as_const());
  REQUIRE_NOTHROW(open_npy(b));
  for (std::size_t n = 0; n < b.size(); ++n) {
    CAPTURE(n);
    CHECK_THROWS_AS(open_npy(bytes_t(b.begin(), b.begin() + std::ptrdiff_t(n))), format_error);
  }
  rejects(open_npy, with<char>(b, 1, 'X'), "bad magic");
  rejects(open_npy, with<std::uint8_t>(b, 6, 4), "unsupported .npy version 4");
  rejects(open_npy, with<std::uint16_t>(b, 8, 60000), "truncated");
  rejects(open_npy, with_text(b, "'<f4'", "'>f4'"), "unsupported dtype '>f4'");
  rejects(open_npy, with_text(b, "(2, 3)", "(2, 4)"), "shape and dtype need 8 x 4");
  rejects(open_npy, with_text(b, "(2, 3)", "(2, x)"), "shape extent is not a non-negative integer");
  rejects(open_npy, with_text(b, "False", "Fals "), "fortran_order is not True or False");
  rejects(open_npy, with_text(b, "'descr'", "'dtype'"), "unknown key 'dtype'");
  bytes_t ovf = b;
  {
    std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }";
    h.append(118 - h.size() - 1, ' ');
    h += '\n';
    std::memcpy(ovf.data() + 10, h.data(), h.size());
  }
  rejects(open_npy, ovf, "overflows");

  const auto z = zip({{"x.npy", std::string(reinterpret_cast<const char*>(b.data()), b.size())}});
  REQUIRE_NOTHROW(open_npz(z));
  rejects(open_npz, bytes_t(z.begin(), z.end() - 3), "no end of central directory");
  rejects(open_npz, zip({{"x.npy", "abc"}}, 8), "is compressed (method 8)");
  rejects(open_npz, with<std::uint32_t>(z, z.size() - 6, 0x7FFFFFFF), "central directory");
  rejects(open_npz, with<std::uint8_t>(z, 30 + 5 + 140, 0x7F), "CRC-32 mismatch");
}

TEST_CASE("malformed torch.save files and refused pickles") {
  REQUIRE_NOTHROW(open_torch(torch_file(pickle())));
  const auto f = TorchFile::from_bytes(torch_file(pickle()), "ok");
  CHECK(f.tensor("w").shape == std::vector<std::int64_t>{2, 2});
  rejects(open_torch, torch_file(pickle("os\nsystem\n")),
          "global 'os system', which is not allowed");
  rejects(open_torch, torch_file(pickle("builtins\nexec\n")),
          "'builtins exec', which is not allowed");
  rejects(open_torch, torch_file(pickle(), std::string(12, '\0')), "holds 12 bytes, not 4 x 4");
  rejects(open_torch, torch_file(pickle("torch._utils\n_rebuild_tensor_v2\n", 4, 2, 2)),
          "reaches outside its storage");
  rejects(open_torch, torch_file(pickle(), std::string(16, '\0'), 8), "is compressed");
  rejects(open_torch, torch_file("\x80\x02R."), "on an empty stack");
  rejects(open_torch, torch_file("\x80\x02h\x05."), "unknown memo key 5");
  rejects(open_torch, torch_file("\x80\x02i."), "opcode 0x69 is not supported");
  rejects(open_torch, torch_file("\x80\x02\x8a\x09"), "LONG1 of 9 bytes");
  rejects(open_torch, torch_file("\x80\x02}"), "truncated");
  rejects(open_torch, torch_file("\x80\x02)K\x01K\x02s."), "SETITEM target: expected dict");
  rejects(open_torch, zip({{"archive/data.pkl", pickle()}}), "has no entry archive/data/0");
  rejects(open_torch,
          zip({{"archive/data.pkl", pickle()},
               {"archive/byteorder", "big"},
               {"archive/data/0", std::string(16, '\0')}}),
          "byteorder is not 'little'");
}

TEST_CASE("malformed llama2.c checkpoints") {
  const auto b = tiny_llama2c();
  REQUIRE_NOTHROW(open_l2c(b));
  for (std::size_t n = 0; n < b.size(); n += 3) {
    CAPTURE(n);
    CHECK_THROWS_AS(open_l2c(bytes_t(b.begin(), b.begin() + std::ptrdiff_t(n))), format_error);
  }
  rejects(open_l2c, with<std::int32_t>(b, 0, -4), "dim is -4");
  rejects(open_l2c, with<std::int32_t>(b, 0, 5), "not a multiple of n_heads");
  rejects(open_l2c, with<std::int32_t>(b, 16, 3), "not a multiple of n_kv_heads");
  rejects(open_l2c, with<std::int32_t>(b, 20, INT32_MIN), "vocab_size is");
  rejects(open_l2c, with<std::int32_t>(b, 8, 0x7FFFFFFF), "the header implies");
  rejects(open_l2c, with<std::int32_t>(b, 20, -3), "the header implies");  // classifier missing
}

TEST_CASE("malformed-file count") {
  MESSAGE(n_cases << " hand-made malformed files refused with a reason");
  CHECK(n_cases >= 30);
}
