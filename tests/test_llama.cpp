// Llama end to end on the real stories260K checkpoint: greedy decoding from BOS must give
// llama2.c's text (the README's sentence) and the ids of an independent PyTorch implementation
// (tools/golden/llama_golden.py), loaded from the llama2.c .bin and from the GGUF files.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tessel/generate/generate.hpp"
#include "tessel/io/load_llama.hpp"

namespace {

const std::string models_dir = TESSEL_MODELS_DIR;
const std::string stories = models_dir + "/stories260K";
const std::string readme_text =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball.";

bool have_models() {
  if (std::filesystem::exists(stories + "/stories260K.bin")) return true;
  MESSAGE("skipped: " << stories << " is absent (see the models README)");
  return false;
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

TEST_CASE("stories260K from the llama2.c .bin: greedy from BOS reproduces llama2.c") {
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
