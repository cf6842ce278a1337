// tessel-generate's Mamba path end to end: a small Mamba with random weights (d_model 64,
// 2 layers) written as a GGUF `mamba` file by tessel's writer, carrying GPT-2's real vocabulary
// (tests/data/tokenizer/gpt2) in tokenizer.ggml.* as llama.cpp's converter lays a byte-level
// BPE out: model "gpt2", pre "gpt-2", tokens padded with [PADn] to a multiple of 8 rows (as
// Mamba's pad_vocab_size_multiple pads them), token types (<|endoftext|> control, pads unused),
// merges, BOS / EOS = <|endoftext|>, no add_bos_token key. The head is untied (a random
// `output.weight`): with the tied head of random weights, greedy decoding falls at once into
// repeating one token, which would make a weak check.
//
// Oracles: the GPT-2 ids of the corpus (tests/data/tokenizer/gpt2_goldens.json, written by the
// npm package gpt-3-encoder); for greedy generation, the argmax of the last row of a fresh
// whole-sequence forward pass per generated token (the prefill path of a second model), against
// generate()'s one-token steps.
//
// With TESSEL_MAMBA_GGUF_OUT set (the CTest fixture of tessel_generate_mamba, see
// tests/CMakeLists.txt) the file is written there and kept, with the expected greedy ids of
// "Hello world" in <file>.ids for tests/check_generate.cmake.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <tessel/generate/generate.hpp>
#include <tessel/io/formats/gguf_writer.hpp>
#include <tessel/io/load/load_mamba.hpp>
#include <vector>

using namespace tessel;

namespace {

/// A name in the temporary folder that concurrent runs of this test do not share.
std::string temp_path(const std::string& stem) {
  static const std::string tag = std::to_string(std::random_device{}());
  return (std::filesystem::temp_directory_path() / (stem + "_" + tag + ".gguf")).string();
}

const std::string tok_dir = std::string(TESSEL_TEST_DATA_DIR) + "/tokenizer/";
using Model = models::Mamba<models::MambaConfig, float>;
constexpr index_t kTokens = 50257;  // GPT-2's vocabulary; <|endoftext|> is the last
constexpr index_t kRows = 50264;    // padded to a multiple of 8
constexpr int kGenerate = 16;

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

/// The prompt's greedy continuation, by whole-sequence forward passes of the model (a fresh
/// sequence each time: the prefill path, no steps).
std::vector<token_id> argmax_path(const Model& m, std::vector<token_id> seq, int n) {
  std::vector<token_id> out;
  double margin = 1e30;
  auto state = m.new_state();
  for (int k = 0; k < n; ++k) {
    const auto logits = m.forward(state, std::span<const token_id>(seq), 0);
    const auto best = std::max_element(logits.begin(), logits.end());
    const auto id = static_cast<token_id>(best - logits.begin());
    float second = -1e30f;
    for (std::size_t i = 0; i < logits.size(); ++i)
      if (static_cast<token_id>(i) != id) second = std::max(second, logits[i]);
    margin = std::min(margin, double(*best - second));
    out.push_back(id);
    seq.push_back(id);
  }
  MESSAGE("argmax path: smallest gap between the best and the second logit " << margin);
  return out;
}

/// generate() on a new state of the model.
template <class M, class Tok, class OnText>
GenerateResult generate_new(const M& model, const Tok& tok, std::string_view prompt,
                            const GenerateOptions& opt, OnText&& on_text) {
  auto state = model.new_state();
  return tessel::generate(model, state, tok, prompt, opt, on_text);
}

struct Fixture {
  std::string path;
  bool keep = false;
  Fixture() {
    if (const char* out = std::getenv("TESSEL_MAMBA_GGUF_OUT"); out && *out) {
      path = out;
      keep = true;
    } else {
      path = temp_path("tessel_test_mamba_gpt2_vocab");
    }
    write();
  }
  ~Fixture() {
    if (!keep) std::filesystem::remove(path);
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  void write() const {
    models::MambaConfig c;
    c.dim = 64, c.layers = 2, c.vocab = kRows, c.d_inner = 128, c.d_state = 16, c.d_conv = 4;
    c.dt_rank = 4;
    c.tied_output = false;
    Model src(c);
    // Random weights; A and dt_bias as Mamba initialises them, so the scan stays finite.
    std::mt19937 g(11);
    std::normal_distribution<float> nd(0.f, 1.f);
    src.visit([&](const std::string& name, auto& t) {
      const index_t cols = t.shape().extents().back();
      const float scale = 1.0f / std::sqrt(float(cols));
      for (index_t i = 0; i < t.size(); ++i) {
        float v = nd(g) * scale;
        if (name.ends_with("norm.weight")) v = 1.0f + 0.1f * nd(g);
        if (name.ends_with(".ssm_a")) v = -float(1 + i % cols);
        if (name.ends_with(".ssm_dt.bias")) v = -4.0f + 0.5f * nd(g);
        if (name.ends_with(".ssm_d")) v = 1.0f;
        t.data()[i] = v;
      }
    });

    // GPT-2's vocabulary and merges, as the converter would copy them from the tokenizer.
    const auto ref = load_gpt2_tokenizer(tok_dir + "gpt2/encoder.json", tok_dir + "gpt2/vocab.bpe");
    REQUIRE(ref.vocab_size() == std::size_t(kTokens));
    std::vector<std::string> tokens;
    std::vector<std::int32_t> types;
    for (index_t i = 0; i < kRows; ++i) {
      if (i < kTokens) {
        tokens.push_back(ref.token(token_id(i)));
        types.push_back(std::int32_t(i == kTokens - 1 ? token_type::control : token_type::normal));
      } else {
        tokens.push_back("[PAD" + std::to_string(i) + "]");
        types.push_back(std::int32_t(token_type::unused));
      }
    }
    std::vector<std::string> merges;
    {
      std::ifstream in(tok_dir + "gpt2/vocab.bpe");
      std::string line;
      std::getline(in, line);  // "#version: 0.2"
      while (std::getline(in, line))
        if (!line.empty()) merges.push_back(line);
    }

    io::GGUFWriter w;
    w.set("general.architecture", "mamba");
    w.set("general.name", "tessel test mamba, GPT-2 vocabulary");
    w.set("mamba.context_length", std::uint32_t(1048576));
    w.set("mamba.embedding_length", std::uint32_t(c.dim));
    w.set("mamba.block_count", std::uint32_t(c.layers));
    w.set("mamba.ssm.conv_kernel", std::uint32_t(c.d_conv));
    w.set("mamba.ssm.inner_size", std::uint32_t(c.d_inner));
    w.set("mamba.ssm.state_size", std::uint32_t(c.d_state));
    w.set("mamba.ssm.time_step_rank", std::uint32_t(c.dt_rank));
    w.set("mamba.attention.layer_norm_rms_epsilon", c.norm_eps);
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", "gpt-2");
    w.set("tokenizer.ggml.tokens", io::gguf::encode_strings(tokens));
    w.set("tokenizer.ggml.token_type", io::gguf::encode_array(types));
    w.set("tokenizer.ggml.merges", io::gguf::encode_strings(merges));
    w.set("tokenizer.ggml.bos_token_id", std::uint32_t(kTokens - 1));
    w.set("tokenizer.ggml.eos_token_id", std::uint32_t(kTokens - 1));
    w.set("tokenizer.ggml.unknown_token_id", std::uint32_t(kTokens - 1));
    src.visit([&](const std::string& n, auto& t) { w.add_tensor(n, t.view()); });
    w.write(path);
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

}  // namespace

TEST_CASE("mamba GGUF with GPT-2's vocabulary: the tokenizer encodes as GPT-2 does") {
  const auto f = io::GGUFFile::open(fixture().path);
  const auto tok = io::load_gguf_bpe_tokenizer(f);
  CHECK(tok.vocab_size() == std::size_t(kRows));
  CHECK(tok.bos_id() == kTokens - 1);
  CHECK(tok.eos_id() == kTokens - 1);
  CHECK_FALSE(io::gguf_add_bos(f));  // GPT-NeoX / GPT-2 prompts carry no BOS

  const auto corpus = load_json(tok_dir + "corpus.json").get<std::vector<std::string>>();
  const auto want = load_json(tok_dir + "gpt2_goldens.json")["ids"];
  REQUIRE(want.size() == corpus.size());
  REQUIRE(corpus[3] == "Hello world");
  CHECK(tok.encode("Hello world") == std::vector<token_id>{15496, 995});
  int differ = 0;
  for (std::size_t i = 0; i < corpus.size(); ++i)
    if (tok.encode(corpus[i]) != want[i].get<std::vector<token_id>>()) {
      if (++differ <= 3) FAIL_CHECK("corpus string " << i << " encodes differently");
    }
  CHECK(differ == 0);
  CHECK(tok.decode(tok.encode(corpus[0])) == corpus[0]);
  const std::vector<token_id> pad{kRows - 1};
  CHECK(tok.decode(pad) == "[PAD50263]");
}

TEST_CASE("mamba GGUF: greedy generate() equals the argmax of whole-sequence forward passes") {
  const std::string& path = fixture().path;
  const auto f = io::GGUFFile::open(path);
  const auto model = io::load_gguf_mamba<float>(path);
  CHECK(model.vocab() == kRows);
  const auto tok = io::load_gguf_bpe_tokenizer(f);

  GenerateOptions opt;
  opt.max_tokens = kGenerate;
  opt.add_bos = io::gguf_add_bos(f);
  opt.echo_prompt = true;
  std::string streamed;
  const auto r =
      generate_new(model, tok, "Hello world", opt, [&](std::string_view t) { streamed.append(t); });
  CHECK(r.prompt == std::vector<token_id>{15496, 995});
  REQUIRE(r.tokens.size() == std::size_t(kGenerate));  // no EOS on the way
  CHECK(r.stop == StopReason::max_tokens);
  CHECK(streamed.starts_with("Hello world"));
  CHECK(r.text == tok.decode(r.tokens));

  // An empty prompt starts from BOS (<|endoftext|> here), which is not echoed as text.
  std::string from_bos;
  opt.max_tokens = 2;
  const auto e = generate_new(model, tok, "", opt, [&](std::string_view t) { from_bos.append(t); });
  CHECK(e.prompt == std::vector<token_id>{tok.bos_id()});
  CHECK(from_bos == e.text);
  CHECK(from_bos.find("<|endoftext|>") == std::string::npos);
  opt.max_tokens = kGenerate;

  const auto fresh = io::load_gguf_mamba<float>(path);
  const auto want = argmax_path(fresh, r.prompt, kGenerate);
  CHECK(r.tokens == want);

  // The state matters: the argmax of the last token alone (a fresh sequence each time) is
  // another path, so the equality above checks the recurrent state the steps carry.
  std::vector<token_id> markov;
  token_id last = r.prompt.back();
  auto state = fresh.new_state();
  for (int k = 0; k < kGenerate; ++k) {
    const auto logits = fresh.forward(state, std::span<const token_id>(&last, 1), 0);
    last = static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    markov.push_back(last);
  }
  CHECK(markov != want);

  // The expected ids for the tessel-generate check (tests/check_generate.cmake).
  if (fixture().keep) {
    std::ofstream out(path + ".ids");
    for (std::size_t i = 0; i < want.size(); ++i) out << (i ? " " : "") << want[i];
    out << "\n";
  }
}

TEST_CASE("gguf_add_bos: the file's add_bos_token, else the tokenizer family's custom") {
  const auto add_bos = [&](const char* model, int key) {
    io::GGUFWriter w;
    w.set("general.architecture", "mamba");
    w.set("tokenizer.ggml.model", model);
    if (key >= 0) w.set("tokenizer.ggml.add_bos_token", key == 1);
    const std::string p = temp_path("tessel_test_add_bos");
    w.write(p);
    const bool b = io::gguf_add_bos(io::GGUFFile::open(p));
    std::filesystem::remove(p);
    return b;
  };
  CHECK_FALSE(add_bos("gpt2", -1));
  CHECK(add_bos("gpt2", 1));
  CHECK(add_bos("llama", -1));
  CHECK_FALSE(add_bos("llama", 0));
}
