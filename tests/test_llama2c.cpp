// llama2.c checkpoints: stories260K.bin (written by llama2.c's export) against the same model
// converted to GGUF by llama.cpp (stories260K-f32.gguf), tensor by tensor.

#include <doctest/doctest.h>

#include "skip.hpp"

#include <filesystem>
#include <tessel/io/formats/gguf.hpp>
#include <tessel/io/formats/llama2c.hpp>

using namespace tessel;
using namespace tessel::io;
namespace fs = std::filesystem;

TEST_CASE("llama2c: stories260K.bin header and every tensor equal llama.cpp's f32 GGUF" *
          doctest::test_suite("needs_models")) {
  const std::string dir = tessel_test::models_dir() + "/stories260K/";
  if (!tessel_test::have(dir + "stories260K.bin", "the stories260K checkpoint")) return;
  const auto m = Llama2cFile::open(dir + "stories260K.bin");
  const auto& c = m.config();
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.vocab_size == 512);
  CHECK(c.seq_len == 512);
  CHECK(c.shared_classifier);
  CHECK(c.kv_dim() == 32);
  CHECK(m.tensors().size() == 1 + 9 * 5 + 2);

  const auto g = GGUFFile::open(dir + "gguf/stories260K-f32.gguf");
  CHECK(g.tensors().size() == m.tensors().size());
  for (const auto& t : g.tensors()) {
    CAPTURE(t.name);
    const auto* l = m.find(t.name);
    REQUIRE(l != nullptr);
    CHECK(l->shape == t.shape());
    REQUIRE(std::size_t(l->n_elements()) * 4 == t.n_bytes);
    CHECK(std::memcmp(l->data, t.data, t.n_bytes) == 0);
  }
  const auto wq = m.tensor("blk.4.attn_q.weight").view<2>();
  CHECK(wq.extent(0) == 64);
  CHECK(m.tensor("output.weight").data == m.tensor("token_embd.weight").data);
  CHECK(m.tensor("blk.0.ffn_down.weight").shape == std::vector<std::int64_t>{64, 172});
}

TEST_CASE("llama2c: a separate classifier (negative vocab_size) and exact size checks") {
  // A tiny model built here: dim 4, hidden 6, 1 layer, 2 heads, 1 kv head, vocab -3, seq 2.
  const std::int32_t h[7] = {4, 6, 1, 2, 1, -3, 2};
  const std::int64_t floats = 3 * 4 + 4 + 16 + 8 + 8 + 16 + 4 + 24 + 24 + 24 + 4 + 2 * 2 + 12;
  std::vector<std::byte> b(28 + std::size_t(floats) * 4);
  std::memcpy(b.data(), h, 28);
  for (std::int64_t i = 0; i < floats; ++i) {
    const float v = float(i);
    std::memcpy(b.data() + 28 + i * 4, &v, 4);
  }
  const auto m = Llama2cFile::from_bytes(b, "tiny.bin");
  CHECK(!m.config().shared_classifier);
  CHECK(m.config().vocab_size == 3);
  const auto cls = m.tensor("output.weight").view<2>();
  CHECK(cls(0, 0) == float(floats - 12));  // after the two skipped frequency tables
  CHECK(m.tensor("blk.0.attn_k.weight").shape == std::vector<std::int64_t>{2, 4});
  CHECK(m.tensor("blk.0.ffn_norm.weight").view<1>()(0) == float(12 + 4 + 16 + 8 + 8 + 16));
  b.push_back(std::byte{0});
  CHECK_THROWS_WITH_AS(Llama2cFile::from_bytes(b, "tiny.bin"),
                       doctest::Contains("the header implies"), format_error);
}
