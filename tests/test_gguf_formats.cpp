// GGUF round trip of every tensor format of docs/quantization.md: data quantized by tessel,
// written by GGUFWriter, read back by GGUFFile — bytes identical, metadata identical, and the
// dequantized values equal those of the tensor that was written.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <tessel/io/formats/gguf.hpp>
#include <tessel/io/formats/gguf_writer.hpp>
#include <tessel/quant/formats.hpp>
#include <tessel/quant/quantize.hpp>

using namespace tessel;
using namespace tessel::io;

namespace {

Tensor<float, DynShape<2>> gaussian(index_t rows, index_t cols, unsigned seed) {
  Tensor<float, DynShape<2>> t(rows, cols);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : t.span()) v = nd(rng);
  return t;
}

struct Written {
  std::string name;
  ggml_type type;
  std::vector<std::byte> bytes;
  index_t rows, cols;
};

template <class Format>
void add_quantized(GGUFWriter& w, std::vector<Written>& keep, const std::string& name,
                   const Tensor<float, DynShape<2>>& src,
                   std::vector<Tensor<Format, DynShape<2>>>& q) {
  q.push_back(quantize<Format>(TensorView<const float, DynShape<2>>(src.view())));
  w.add_tensor(name, q.back().view().as_const());
  Written rec{name, ggml_type_of<Format>()->type, {}, src.extent(0), src.extent(1)};
  rec.bytes.resize(q.back().bytes());
  std::memcpy(rec.bytes.data(), q.back().data(), q.back().bytes());
  keep.push_back(std::move(rec));
}

template <class Format>
void check_dequantized(const GGUFFile& g, const std::string& name,
                       const Tensor<Format, DynShape<2>>& q) {
  const auto v = g.tensor(name).template view<Format, 2>();
  CHECK(v.extent(0) == q.extent(0));
  CHECK(v.extent(1) == q.extent(1));
  std::vector<float> a(static_cast<std::size_t>(q.extent(1))), b(a.size());
  const index_t nb = q.extent(1) / Format::block_elems;
  for (index_t r = 0; r < q.extent(0); ++r) {
    Format::dequantize_row(v.data() + r * v.stride(0), a.data(), q.extent(1));
    Format::dequantize_row(q.data() + r * nb, b.data(), q.extent(1));
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }
}

}  // namespace

TEST_CASE("every GGUF tensor format round-trips through tessel's writer and reader") {
  const auto src = gaussian(3, 512, 42);
  GGUFWriter w;
  w.set("general.architecture", std::string("tessel-roundtrip"));
  w.set("general.alignment", std::uint32_t{64});
  w.set("t.f64", 0.125);
  w.set("t.i64", std::int64_t{-5});
  std::vector<Written> keep;

  // Plain formats.
  Tensor<f16, DynShape<2>> h(3, 512);
  Tensor<bf16, DynShape<2>> b(3, 512);
  convert_from_f32(src.data(), h.data(), src.size());
  convert_from_f32(src.data(), b.data(), src.size());
  w.add_tensor("f32", src.view());
  w.add_tensor("f16", h.view());
  w.add_tensor("bf16", b.view());

  std::vector<Tensor<q4_0, DynShape<2>>> t40;
  std::vector<Tensor<q4_1, DynShape<2>>> t41;
  std::vector<Tensor<q5_0, DynShape<2>>> t50;
  std::vector<Tensor<q5_1, DynShape<2>>> t51;
  std::vector<Tensor<q8_0, DynShape<2>>> t80;
  std::vector<Tensor<q8_1, DynShape<2>>> t81;
  std::vector<Tensor<q2_k, DynShape<2>>> t2k;
  std::vector<Tensor<q3_k, DynShape<2>>> t3k;
  std::vector<Tensor<q4_k, DynShape<2>>> t4k;
  std::vector<Tensor<q5_k, DynShape<2>>> t5k;
  std::vector<Tensor<q6_k, DynShape<2>>> t6k;
  std::vector<Tensor<q8_k, DynShape<2>>> t8k;
  add_quantized(w, keep, "q4_0", src, t40);
  add_quantized(w, keep, "q4_1", src, t41);
  add_quantized(w, keep, "q5_0", src, t50);
  add_quantized(w, keep, "q5_1", src, t51);
  add_quantized(w, keep, "q8_0", src, t80);
  add_quantized(w, keep, "q8_1", src, t81);
  add_quantized(w, keep, "q2_k", src, t2k);
  add_quantized(w, keep, "q3_k", src, t3k);
  add_quantized(w, keep, "q4_k", src, t4k);
  add_quantized(w, keep, "q5_k", src, t5k);
  add_quantized(w, keep, "q6_k", src, t6k);
  add_quantized(w, keep, "q8_k", src, t8k);

  const auto file = w.to_bytes();
  const auto g = GGUFFile::from_bytes(file, "roundtrip.gguf");
  CHECK(g.get<std::string_view>("general.architecture") == "tessel-roundtrip");
  CHECK(g.get<double>("t.f64") == 0.125);
  CHECK(g.get<std::int64_t>("t.i64") == -5);
  CHECK(g.alignment() == 64);

  for (const auto& rec : keep) {
    INFO("format " << rec.name);
    const auto& t = g.tensor(rec.name);
    CHECK(t.type == rec.type);
    const auto shape = t.shape();
    REQUIRE(shape.size() == 2);
    CHECK(shape[0] == rec.rows);
    CHECK(shape[1] == rec.cols);
    REQUIRE(t.bytes().size() == rec.bytes.size());
    CHECK(std::memcmp(t.bytes().data(), rec.bytes.data(), rec.bytes.size()) == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(t.bytes().data()) % 64 == 0);
  }
  const auto f = g.tensor("f32").view<float, 2>();
  const auto fh = g.tensor("f16").view<f16, 2>();
  const auto fb = g.tensor("bf16").view<bf16, 2>();
  for (index_t r = 0; r < 3; ++r)
    for (index_t c = 0; c < 512; ++c) {
      CHECK(f(r, c) == src(r, c));
      CHECK(fh(r, c).bits == h(r, c).bits);
      CHECK(fb(r, c).bits == b(r, c).bits);
    }
  check_dequantized(g, "q4_0", t40[0]);
  check_dequantized(g, "q4_k", t4k[0]);
  check_dequantized(g, "q6_k", t6k[0]);
  check_dequantized(g, "q3_k", t3k[0]);
  check_dequantized(g, "q2_k", t2k[0]);
}
