// GPT-2 against PyTorch: a random GPT-2 in Hugging Face's safetensors layout and the logits of
// an independent forward pass (tools/golden/gpt2_golden.py, F.multi_head_attention_forward in
// f64). Prefill, token-by-token decode, chunked prefill, a static config, and a GGUF `gpt2` file
// written with tessel's writer from the same weights (fused attn_qkv, tokenizer keys).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tessel/io/formats/gguf_writer.hpp"
#include "tessel/io/formats/npy.hpp"
#include "tessel/io/load/load_gpt2.hpp"
#include "tessel/io/load/load_llama.hpp"

namespace {

const std::string dir = std::string(TESSEL_TEST_DATA_DIR) + "/gpt2";
const std::string st_path = dir + "/model.safetensors";

struct Golden {
  std::vector<tessel::token_id> tokens;
  std::vector<float> logits;  // [T, vocab]
};

Golden golden() {
  const auto z = tessel::io::NpzFile::open(dir + "/golden.npz");
  const auto t = z.get<std::int32_t, 1>("tokens");
  const auto l = z.get<float, 2>("logits");
  Golden g;
  g.tokens.assign(t.data(), t.data() + t.size());
  g.logits.assign(l.data(), l.data() + l.size());
  return g;
}

/// max |a − b| / max |b|: the error relative to the logits' scale.
double rel_err(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(double(a[i]) - double(b[i])));
    m = std::max(m, std::abs(double(b[i])));
  }
  return d / m;
}

template <class Model>
std::vector<float> prefill_all(const Model& m, std::span<const tessel::token_id> ids,
                               tessel::models::StateOptions so = {}) {
  std::vector<float> out(ids.size() * std::size_t(m.vocab()));
  auto st = m.new_state(so);
  m.forward(st, ids, 0, out.data());
  return out;
}

template <class Model>
std::vector<float> decode_each(const Model& m, std::span<const tessel::token_id> ids) {
  std::vector<float> out;
  auto st = m.new_state();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto l = m.forward(st, ids.subspan(i, 1), tessel::index_t(i));
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

struct Tiny {  // tools/golden/gpt2_golden.py's config
  static constexpr int dim = 64, hidden = 128, layers = 2, heads = 4, vocab = 300, max_seq = 32;
};
struct WrongHidden : Tiny {  // a hidden size the file does not have
  static constexpr int hidden = 256;
};

// The golden checks run on the scalar reference and on the build's SIMD backend, with the same
// tolerances.
#define TESSEL_BACKENDS tessel::cpu_scalar, tessel::default_backend

template <class W, class B>
using RunTime = tessel::models::GPT2<tessel::models::GPT2Config, W, B>;

}  // namespace

TEST_CASE_TEMPLATE("gpt2 safetensors: prefill and decode logits match PyTorch", B,
                   TESSEL_BACKENDS) {
  const Golden g = golden();
  auto m = tessel::io::load_gpt2<RunTime<float, B>>(st_path);  // heads from config.json
  const auto& c = m.config();
  CHECK(c.dim == 64);
  CHECK(c.hidden == 128);
  CHECK(c.layers == 2);
  CHECK(c.heads == 4);
  CHECK(c.vocab == 300);
  CHECK(c.max_seq == 32);

  const auto pre = prefill_all(m, g.tokens);
  CHECK(rel_err(pre, g.logits) < 1e-4);
  auto st = m.new_state();
  const auto last = m.forward(st, std::span<const tessel::token_id>(g.tokens), 0);
  CHECK(rel_err(last, std::span(g.logits).last(std::size_t(c.vocab))) < 1e-4);

  const auto dec = decode_each(m, g.tokens);
  CHECK(rel_err(dec, g.logits) < 1e-4);
  CHECK(rel_err(dec, pre) < 1e-5);  // the cache path computes the same numbers

  // Prefill in chunks of 3 rows, then decode the rest: the same logits.
  CHECK(rel_err(prefill_all(m, g.tokens, {.max_batch = 3}), g.logits) < 1e-4);
}

TEST_CASE_TEMPLATE("gpt2 safetensors: static config, f16 and bf16 weights, options", B,
                   TESSEL_BACKENDS) {
  const Golden g = golden();
  auto s = tessel::io::load_gpt2<tessel::models::GPT2<Tiny, float, B>>(st_path);
  CHECK(rel_err(prefill_all(s, g.tokens), g.logits) < 1e-4);

  // Narrow formats: rounding of the weights only (f16: 11 bits, bf16: 8 bits).
  auto h = tessel::io::load_gpt2<RunTime<tessel::f16, B>>(st_path);
  const double eh = rel_err(prefill_all(h, g.tokens), g.logits);
  CHECK(eh < 5e-3);
  CHECK(eh > 1e-6);  // the weights really were narrowed
  auto b = tessel::io::load_gpt2<RunTime<tessel::bf16, B>>(st_path);
  CHECK(rel_err(prefill_all(b, g.tokens), g.logits) < 3e-2);

  tessel::io::GPT2LoadOptions o;
  o.heads = 4;
  o.norm_eps = 1e-5f;
  auto m = tessel::io::load_gpt2<RunTime<float, B>>(st_path, o);
  CHECK(rel_err(prefill_all(m, g.tokens), g.logits) < 1e-4);
}

TEST_CASE("gpt2: bad input") {
  CHECK_THROWS_AS(tessel::io::load_gpt2<tessel::models::GPT2<WrongHidden>>(st_path),
                  tessel::format_error);
  tessel::io::GPT2LoadOptions o;
  o.heads = 3;  // does not divide 64
  CHECK_THROWS_AS(tessel::io::load_gpt2_safetensors<float>(st_path, o), tessel::format_error);

  auto m = tessel::io::load_gpt2_safetensors<float>(st_path);
  auto st = m.new_state();
  const std::vector<tessel::token_id> bad{1, 300};
  CHECK_THROWS_AS(m.forward(st, std::span<const tessel::token_id>(bad), 0), tessel::value_error);
  const std::vector<tessel::token_id> one{5};
  CHECK_THROWS_AS(m.forward(st, std::span<const tessel::token_id>(one), 32), tessel::value_error);
  CHECK_THROWS_AS(m.forward(st, std::span<const tessel::token_id>(), 0), tessel::value_error);
  // A state holds at most the position table's 32 positions.
  CHECK_THROWS_AS((void)m.new_state({.max_seq = 33}), tessel::value_error);
  auto short_st = m.new_state({.max_seq = 4});
  CHECK_NOTHROW(m.forward(short_st, std::span<const tessel::token_id>(one), 3));
  CHECK_THROWS_AS(m.forward(short_st, std::span<const tessel::token_id>(one), 4),
                  tessel::value_error);
  tessel::models::GPT2Config c;
  c.dim = 64, c.hidden = 128, c.layers = 1, c.heads = 5, c.vocab = 10, c.max_seq = 8;
  CHECK_THROWS_AS(tessel::models::GPT2<tessel::models::GPT2Config>{c}, tessel::value_error);
}

namespace {

/// A vocabulary-only GGUF (as llama.cpp's ggml-vocab-*.gguf files): GPT-2's real tokenizer
/// (tests/data/tokenizer/gpt2) in tokenizer.ggml.*, no tensors. The golden's model has 300
/// embedding rows, and a model file's tokenizer must match its vocabulary.
std::string write_vocab_gguf(const std::string& name) {
  tessel::io::GGUFWriter w;
  w.set("general.architecture", "gpt2");
  const auto tok = tessel::load_gpt2_tokenizer(
      std::string(TESSEL_TEST_DATA_DIR) + "/tokenizer/gpt2/encoder.json",
      std::string(TESSEL_TEST_DATA_DIR) + "/tokenizer/gpt2/vocab.bpe");
  std::vector<std::string> tokens;
  for (std::size_t i = 0; i < tok.vocab_size(); ++i)
    tokens.push_back(tok.token(tessel::token_id(i)));
  std::vector<std::string> merges;
  {
    std::ifstream in(std::string(TESSEL_TEST_DATA_DIR) + "/tokenizer/gpt2/vocab.bpe");
    std::string line;
    std::getline(in, line);  // "#version: 0.2"
    while (std::getline(in, line))
      if (!line.empty()) merges.push_back(line);
  }
  w.set("tokenizer.ggml.model", "gpt2");
  w.set("tokenizer.ggml.tokens", tessel::io::gguf::encode_strings(tokens));
  w.set("tokenizer.ggml.merges", tessel::io::gguf::encode_strings(merges));
  w.set("tokenizer.ggml.bos_token_id", std::uint32_t(50256));
  w.set("tokenizer.ggml.eos_token_id", std::uint32_t(50256));
  const auto path = (std::filesystem::temp_directory_path() / name).string();
  w.write(path);
  return path;
}

/// A GGUF `gpt2` file of the golden's weights, as llama.cpp's converter lays it out: Conv1D
/// weights transposed to [out, in], c_attn as one fused attn_qkv, the embedding copied to
/// `output`.
std::string write_gguf(tessel::io::ggml_type wtype, const std::string& name) {
  using tessel::io::ggml_type;
  const auto ck = tessel::io::SafetensorsFile::open(st_path);
  std::deque<std::vector<std::byte>> keep;
  tessel::io::GGUFWriter w;
  w.set("general.architecture", "gpt2");
  w.set("gpt2.context_length", std::uint32_t(32));
  w.set("gpt2.embedding_length", std::uint32_t(64));
  w.set("gpt2.feed_forward_length", std::uint32_t(128));
  w.set("gpt2.block_count", std::uint32_t(2));
  w.set("gpt2.attention.head_count", std::uint32_t(4));
  w.set("gpt2.attention.layer_norm_epsilon", 1e-5f);

  // Adds a [rows, cols] f32 matrix (optionally the transpose of the stored one) as wtype.
  const auto add = [&](const std::string& gname, const std::string& hf, bool transpose) {
    const auto& t = ck.tensor(hf);
    REQUIRE(t.dtype == tessel::io::st_dtype::F32);
    const float* src = reinterpret_cast<const float*>(t.data);
    std::vector<std::int64_t> shape = t.shape;
    std::vector<float> f(src, src + t.n_elements());
    if (transpose) {
      const std::int64_t r = shape[0], c = shape[1];
      for (std::int64_t i = 0; i < r; ++i)
        for (std::int64_t j = 0; j < c; ++j) f[std::size_t(j * r + i)] = src[i * c + j];
      shape = {c, r};
    }
    const bool matrix = shape.size() == 2;
    const ggml_type ty = matrix ? wtype : ggml_type::F32;  // norms and biases stay F32
    std::vector<std::byte> bytes;
    if (ty == ggml_type::F16) {
      for (float x : f) {
        const auto h = tessel::from_f32<tessel::f16>(x);
        const auto* p = reinterpret_cast<const std::byte*>(&h);
        bytes.insert(bytes.end(), p, p + 2);
      }
    } else {
      const auto* p = reinterpret_cast<const std::byte*>(f.data());
      bytes.assign(p, p + f.size() * 4);
    }
    keep.push_back(std::move(bytes));
    w.add_tensor(gname, ty, shape, keep.back());
  };
  add("token_embd.weight", "wte.weight", false);
  add("position_embd.weight", "wpe.weight", false);
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".", h = "h." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", h + "ln_1.weight", false);
    add(b + "attn_norm.bias", h + "ln_1.bias", false);
    add(b + "attn_qkv.weight", h + "attn.c_attn.weight", true);
    add(b + "attn_qkv.bias", h + "attn.c_attn.bias", false);
    add(b + "attn_output.weight", h + "attn.c_proj.weight", true);
    add(b + "attn_output.bias", h + "attn.c_proj.bias", false);
    add(b + "ffn_norm.weight", h + "ln_2.weight", false);
    add(b + "ffn_norm.bias", h + "ln_2.bias", false);
    add(b + "ffn_up.weight", h + "mlp.c_fc.weight", true);
    add(b + "ffn_up.bias", h + "mlp.c_fc.bias", false);
    add(b + "ffn_down.weight", h + "mlp.c_proj.weight", true);
    add(b + "ffn_down.bias", h + "mlp.c_proj.bias", false);
  }
  add("output_norm.weight", "ln_f.weight", false);
  add("output_norm.bias", "ln_f.bias", false);
  add("output.weight", "wte.weight", false);
  const auto path = (std::filesystem::temp_directory_path() / name).string();
  w.write(path);
  return path;
}

}  // namespace

TEST_CASE_TEMPLATE("gpt2 gguf: a file written from the safetensors gives the same logits", B,
                   TESSEL_BACKENDS) {
  const Golden g = golden();
  const std::string path = write_gguf(tessel::io::ggml_type::F32, "tessel_test_gpt2_f32.gguf");
  const auto f = tessel::io::GGUFFile::open(path);
  const auto c = tessel::io::gpt2_config(f);
  CHECK(c.dim == 64);
  CHECK(c.vocab == 300);
  CHECK(c.max_seq == 32);
  auto m = tessel::io::load_gpt2<RunTime<float, B>>(path);  // told apart from safetensors by magic
  CHECK(rel_err(prefill_all(m, g.tokens), g.logits) < 1e-4);
  CHECK(rel_err(decode_each(m, g.tokens), g.logits) < 1e-4);

  // The tokenizer in a GGUF file is GPT-2's: the same ids as encoder.json + vocab.bpe.
  const std::string vocab_path = write_vocab_gguf("tessel_test_gpt2_vocab.gguf");
  const auto vf = tessel::io::GGUFFile::open(vocab_path);
  const auto tok = tessel::io::load_gguf_gpt2_tokenizer(vf);
  const auto ref = tessel::load_gpt2_tokenizer(
      std::string(TESSEL_TEST_DATA_DIR) + "/tokenizer/gpt2/encoder.json",
      std::string(TESSEL_TEST_DATA_DIR) + "/tokenizer/gpt2/vocab.bpe");
  const std::string text = "Hello world, it's a tessel GPT-2 test!";
  CHECK(tok.encode(text) == ref.encode(text));
  CHECK(tok.eos_id() == 50256);
  CHECK(tok.decode(tok.encode(text)) == text);

  // F16 matrices in the file: narrowed weights, close logits.
  const std::string p16 = write_gguf(tessel::io::ggml_type::F16, "tessel_test_gpt2_f16.gguf");
  auto m16 = tessel::io::load_gpt2<RunTime<float, B>>(tessel::io::GGUFFile::open(p16));
  CHECK(rel_err(prefill_all(m16, g.tokens), g.logits) < 5e-3);

  // A llama file is not a gpt2 file; a gpt2 file has no SentencePiece tokenizer.
  CHECK_THROWS_AS(tessel::io::load_gguf_llama<float>(path), tessel::format_error);
  CHECK_THROWS_AS(tessel::io::load_gguf_tokenizer(vf), tessel::format_error);
  // A tokenizer of 50257 tokens over an embedding of 300 rows is refused, naming both.
  {
    tessel::io::GGUFWriter w;
    const auto model = tessel::io::GGUFFile::open(path);
    const auto vocab = tessel::io::GGUFFile::open(vocab_path);
    for (auto k : model.keys()) w.set(std::string(k), model.value(k));
    for (auto k : vocab.keys()) w.set(std::string(k), vocab.value(k));
    for (const auto& t : model.tensors())
      w.add_tensor(std::string(t.name), t.type, t.shape(), t.bytes());
    const std::string both = path + ".tok.gguf";
    w.write(both);
    try {
      (void)tessel::io::load_gpt2<RunTime<float, B>>(tessel::io::GGUFFile::open(both));
      FAIL("accepted a tokenizer larger than the vocabulary");
    } catch (const tessel::format_error& e) {
      CHECK(std::string(e.what()).find("tokenizer.ggml.tokens has 50257 entries but "
                                       "token_embd.weight has 300 rows") != std::string::npos);
    }
    std::filesystem::remove(both);
  }
  std::filesystem::remove(path);
  std::filesystem::remove(vocab_path);
  std::filesystem::remove(p16);
}
