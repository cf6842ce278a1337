// Llama end to end on the real stories260K checkpoint: greedy decoding from BOS must give
// llama2.c's text (the README's sentence) and the ids of an independent PyTorch implementation
// (tools/golden/llama_golden.py), loaded from the llama2.c .bin and from the GGUF files.
#include <doctest/doctest.h>

#include "skip.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tessel/generate/generate.hpp"
#include "tessel/io/load_llama.hpp"

namespace {

const std::string models_dir = tessel_test::models_dir();
const std::string stories = models_dir + "/stories260K";
const std::string readme_text =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball.";

bool have_models() {
  return tessel_test::have(stories + "/stories260K.bin", "the stories260K checkpoint");
}

tessel::SentencePieceTokenizer tok512() {
  tessel::sentencepiece_options o;
  o.remove_extra_whitespaces = true;
  return tessel::load_llama2c_tokenizer(stories + "/tok512.bin", 512, o);
}

std::vector<tessel::token_id> golden_ids() {
  std::ifstream f(std::string(TESSEL_TEST_DATA_DIR) + "/llama/stories260K_greedy_ids.txt");
  REQUIRE(f);
  std::vector<tessel::token_id> ids;
  for (int v; f >> v;) ids.push_back(v);
  return ids;
}

template <class Model>
std::vector<tessel::token_id> greedy_from_bos(Model& m, int n) {
  const tessel::token_id bos = 1;
  tessel::GenerateOptions opt;
  opt.max_tokens = n;
  opt.stop_at_bos = opt.stop_at_eos = false;  // the golden runs the full 256 tokens
  auto r = tessel::generate_ids(m, std::span(&bos, 1), opt, 1, 2, [](tessel::token_id) {});
  return r.tokens;
}

}  // namespace

TEST_CASE("stories260K from the llama2.c .bin: greedy from BOS reproduces llama2.c" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  auto m = tessel::io::load_llama2c_model<float>(stories + "/stories260K.bin");
  CHECK(m.config().dim == 64);
  CHECK(m.config().kv_heads == 4);
  const auto tok = tok512();
  const auto ids = greedy_from_bos(m, 256);
  const std::string text = tok.decode(ids);
  CHECK(text.substr(0, readme_text.size()) == readme_text);
  CHECK(ids == golden_ids());
}

namespace {
struct Stories260K {
  static constexpr int dim = 64, hidden = 172, layers = 5, heads = 8, kv_heads = 4, vocab = 512,
                       max_seq = 512;
};
struct Wrong : Stories260K {  // a hidden size the file does not have
  static constexpr int hidden = 128;
};
tessel::io::LlamaLoadOptions ctx512() {
  tessel::io::LlamaLoadOptions o;
  o.max_seq = 512;  // llama.cpp's converter wrote context_length 128; the model has 512
  return o;
}
}  // namespace

TEST_CASE("stories260K from GGUF: f32 equals the .bin, F16 and quantized files decode" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  const std::string g = stories + "/gguf/stories260K-";
  auto bin = tessel::io::load_llama2c_model<float>(stories + "/stories260K.bin");
  auto f32 = tessel::io::load_gguf_llama<float>(g + "f32.gguf", ctx512());
  CHECK(f32.config().rope_style == tessel::models::RopeStyle::adjacent);
  CHECK(f32.config().max_seq == 512);
  CHECK(tessel::io::load_gguf_llama<float>(g + "f32.gguf").config().max_seq == 128);

  // RoPE convention: the same logits from both files means GGUF's wq/wk are not permuted.
  const std::vector<tessel::token_id> prompt = {1, 403, 407, 261, 378, 432};
  std::vector<float> a(prompt.size() * 512), b(a.size());
  bin.forward(std::span<const tessel::token_id>(prompt), 0, a.data());
  f32.forward(std::span<const tessel::token_id>(prompt), 0, b.data());
  CHECK(a == b);
  // ... and the test can tell: rotating half-split pairs gives other logits.
  auto cfg = f32.config();
  cfg.rope_style = tessel::models::RopeStyle::half_split;
  tessel::models::Llama<tessel::models::LlamaConfig> half(cfg);
  const auto gguf = tessel::io::GGUFFile::open(g + "f32.gguf");
  half.visit([&](const std::string& name, auto& t) {
    const auto& src = gguf.tensor(name);
    tessel::io::detail::load_tensor(
        t, {src.name, src.type, src.shape(), src.data, &gguf.path(), src.file_offset});
  });
  half.forward(std::span<const tessel::token_id>(prompt), 0, b.data());
  CHECK(a != b);

  const auto golden = golden_ids();
  CHECK(greedy_from_bos(f32, 256) == golden);
  // F16 weights: llama2.c's text (README), here all 256 tokens.
  auto f16m = tessel::io::load_gguf_llama<float>(g + "F16.gguf", ctx512());
  CHECK(greedy_from_bos(f16m, 256) == golden);
  auto f16w = tessel::io::load_gguf_llama<tessel::f16>(g + "F16.gguf", ctx512());
  CHECK(greedy_from_bos(f16w, 256) == golden);

  // Quantized files drift only after the opening sentence.
  const auto tok = tok512();
  const std::string first = readme_text.substr(0, readme_text.find('.') + 1);
  for (const char* q : {"Q8_0-mixed", "Q4_0-mixed", "Q4_K_M"}) {
    CAPTURE(q);
    auto m = tessel::io::load_gguf_llama<float>(g + q + ".gguf");
    const std::string text = tok.decode(greedy_from_bos(m, 40));
    CHECK(text.substr(0, first.size()) == first);
  }
}

TEST_CASE("GGUF tokenizer equals tok512.bin on a prompt; generate() streams the README text" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  const auto gguf_tok = tessel::io::load_gguf_tokenizer(
      tessel::io::GGUFFile::open(stories + "/gguf/stories260K-f32.gguf"));
  const auto tok = tok512();
  CHECK(gguf_tok.encode("Once upon a time", true) == tok.encode("Once upon a time", true));

  auto m = tessel::io::load_llama2c_model<float>(stories + "/stories260K.bin");
  tessel::GenerateOptions opt;
  opt.max_tokens = 200;
  opt.echo_prompt = true;
  std::string streamed;
  const auto r =
      tessel::generate(m, tok, "Once upon a time", opt, [&](std::string_view s) { streamed += s; });
  CHECK(r.prompt == tok.encode("Once upon a time", true));
  CHECK(streamed.substr(0, readme_text.size()) == readme_text);
  CHECK(streamed == "Once upon a time" + r.text);
  CHECK(r.tokens.size() <= 200);
  if (r.stop == tessel::StopReason::bos) CHECK(r.tokens.size() < 200);
  // The prompt's continuation equals greedy decoding from BOS (the prompt is its opening).
  const auto golden = golden_ids();
  const std::vector<tessel::token_id> cont(golden.begin() + 4,
                                           golden.begin() + 4 + long(r.tokens.size()));
  CHECK(r.tokens == cont);
}

TEST_CASE("Static Stories260K config: the same tokens as the run-time config" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  using Static = tessel::models::Llama<Stories260K, float>;
  static_assert(tessel::models::StaticLlamaConfig<Stories260K>);
  static_assert(!tessel::models::StaticLlamaConfig<tessel::models::LlamaConfig>);
  auto s = tessel::io::load_llama2c<Static>(stories + "/stories260K.bin");
  CHECK(greedy_from_bos(s, 256) == golden_ids());
  // A file whose header disagrees with the static config is refused.
  CHECK_THROWS_AS(
      tessel::io::load_llama2c<tessel::models::Llama<Wrong>>(stories + "/stories260K.bin"),
      tessel::format_error);
}
