// Llama end to end on the real stories260K checkpoint: greedy decoding from BOS must give
// llama2.c's text (the README's sentence) and the ids of an independent PyTorch implementation
// (tools/golden/llama_golden.py), loaded from the llama2.c .bin and from the GGUF files.
#include <doctest/doctest.h>

#include "skip.hpp"

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <latch>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tessel/generate/generate.hpp"
#include "tessel/io/load/load_llama.hpp"
#include "tessel/io/load/write_llama.hpp"

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
std::vector<tessel::token_id> greedy_from_bos(const Model& m, int n) {
  const tessel::token_id bos = 1;
  tessel::GenerateOptions opt;
  opt.max_tokens = n;
  opt.stop_at_bos = opt.stop_at_eos = false;  // the golden runs the full 256 tokens
  auto r = tessel::generate_ids(m, std::span(&bos, 1), opt, 1, 2, [](tessel::token_id) {});
  return r.tokens;
}

// The golden checks run on the scalar reference and on the build's SIMD backend, with the same
// tolerances.
#define TESSEL_BACKENDS tessel::cpu_scalar, tessel::default_backend

template <class W, class B>
using RunTime = tessel::models::Llama<tessel::models::LlamaConfig, W, B>;

}  // namespace

TEST_CASE_TEMPLATE("stories260K from the llama2.c .bin: greedy from BOS reproduces llama2.c" *
                       doctest::test_suite("needs_models"),
                   B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  auto m = tessel::io::load_llama2c<RunTime<float, B>>(stories + "/stories260K.bin");
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

TEST_CASE_TEMPLATE("stories260K from GGUF: f32 equals the .bin, F16 and quantized files decode" *
                       doctest::test_suite("needs_models"),
                   B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  const std::string g = stories + "/gguf/stories260K-";
  auto bin = tessel::io::load_llama2c<RunTime<float, B>>(stories + "/stories260K.bin");
  auto f32 = tessel::io::load_gguf<RunTime<float, B>>(g + "f32.gguf", ctx512());
  CHECK(f32.config().rope_style == tessel::models::RopeStyle::adjacent);
  CHECK(f32.config().max_seq == 512);
  CHECK(tessel::io::load_gguf<RunTime<float, B>>(g + "f32.gguf").config().max_seq == 128);

  // RoPE convention: the same logits from both files means GGUF's wq/wk are not permuted.
  const std::vector<tessel::token_id> prompt = {1, 403, 407, 261, 378, 432};
  std::vector<float> a(prompt.size() * 512), b(a.size());
  auto bin_st = bin.new_state();
  auto f32_st = f32.new_state();
  bin.forward(bin_st, std::span<const tessel::token_id>(prompt), 0, a.data());
  f32.forward(f32_st, std::span<const tessel::token_id>(prompt), 0, b.data());
  CHECK(a == b);
  // ... and the test can tell: rotating half-split pairs gives other logits.
  auto cfg = f32.config();
  cfg.rope_style = tessel::models::RopeStyle::half_split;
  RunTime<float, B> half(cfg);
  const auto gguf = tessel::io::GGUFFile::open(g + "f32.gguf");
  half.visit([&](const std::string& name, auto& t) {
    const auto& src = gguf.tensor(name);
    tessel::io::detail::load_tensor(
        t, {src.name, src.type, src.shape(), src.data, &gguf.path(), src.file_offset});
  });
  auto half_st = half.new_state();
  half.forward(half_st, std::span<const tessel::token_id>(prompt), 0, b.data());
  CHECK(a != b);

  const auto golden = golden_ids();
  CHECK(greedy_from_bos(f32, 256) == golden);
  // F16 weights: llama2.c's text (README), here all 256 tokens.
  auto f16m = tessel::io::load_gguf<RunTime<float, B>>(g + "F16.gguf", ctx512());
  CHECK(greedy_from_bos(f16m, 256) == golden);
  auto f16w = tessel::io::load_gguf<RunTime<tessel::f16, B>>(g + "F16.gguf", ctx512());
  CHECK(greedy_from_bos(f16w, 256) == golden);

  // Quantized files drift only after the opening sentence.
  const auto tok = tok512();
  const std::string first = readme_text.substr(0, readme_text.find('.') + 1);
  for (const char* q : {"Q8_0-mixed", "Q4_0-mixed", "Q4_K_M"}) {
    CAPTURE(q);
    auto m = tessel::io::load_gguf<RunTime<float, B>>(g + q + ".gguf");
    const std::string text = tok.decode(greedy_from_bos(m, 40));
    CHECK(text.substr(0, first.size()) == first);
  }
}

TEST_CASE_TEMPLATE(
    "GGUF tokenizer equals tok512.bin on a prompt; generate() streams the README text" *
        doctest::test_suite("needs_models"),
    B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  const auto gguf_tok = tessel::io::load_gguf_tokenizer(
      tessel::io::GGUFFile::open(stories + "/gguf/stories260K-f32.gguf"));
  const auto tok = tok512();
  CHECK(gguf_tok.encode("Once upon a time", true) == tok.encode("Once upon a time", true));

  auto m = tessel::io::load_llama2c<RunTime<float, B>>(stories + "/stories260K.bin");
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

TEST_CASE_TEMPLATE("Static Stories260K config: the same tokens as the run-time config" *
                       doctest::test_suite("needs_models"),
                   B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  using Static = tessel::models::Llama<Stories260K, float, B>;
  static_assert(tessel::models::StaticLlamaConfig<Stories260K>);
  static_assert(!tessel::models::StaticLlamaConfig<tessel::models::LlamaConfig>);
  auto s = tessel::io::load_llama2c<Static>(stories + "/stories260K.bin");
  CHECK(greedy_from_bos(s, 256) == golden_ids());
  // A file whose header disagrees with the static config is refused.
  using WrongModel = tessel::models::Llama<Wrong, float, B>;
  CHECK_THROWS_AS(tessel::io::load_llama2c<WrongModel>(stories + "/stories260K.bin"),
                  tessel::format_error);
}

// Weights apart from state: a small Llama of random weights, written to GGUF and loaded back as
// one const model that several states (and threads) share. It needs no downloaded file.
namespace {

using SmallLlama = tessel::models::Llama<tessel::models::LlamaConfig, float>;

std::string small_llama_file() {
  const std::string path =
      (std::filesystem::temp_directory_path() / "tessel_test_llama_states.gguf").string();
  tessel::models::LlamaConfig c;
  c.dim = 64, c.hidden = 96, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.vocab = 97;
  c.max_seq = 256;
  SmallLlama m(c);
  std::mt19937 rng(14);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  m.visit([&](const std::string& name, auto& t) {
    const bool norm = name.find("norm") != std::string::npos;
    for (tessel::index_t i = 0; i < t.size(); ++i)
      t.data()[i] = norm ? 1.0f + 0.1f * normal(rng) : 0.3f * normal(rng);
  });
  tessel::io::write_gguf_llama(m, path, tessel::io::ggml_type::F32);
  return path;
}

const std::string& small_llama_path() {
  static const std::string path = small_llama_file();
  return path;
}

tessel::GenerateOptions greedy(int n) {
  tessel::GenerateOptions opt;
  opt.max_tokens = n;
  opt.sampling.temperature = 0;
  opt.stop_at_bos = opt.stop_at_eos = false;
  return opt;
}

}  // namespace

TEST_CASE("Two states over one const model: threads decoding in turns or freely match each alone") {
  const SmallLlama m = tessel::io::load_gguf_llama<float>(small_llama_path());
  const std::vector<std::vector<tessel::token_id>> prompts = {
      {1, 5, 17, 42, 8, 90, 33, 2, 71, 64, 12},  // 11 rows: chunks of 4, 4 and 3 below
      {1, 60, 3},
  };
  const auto opt = greedy(40);
  const tessel::models::StateOptions so[2] = {{.max_seq = 128, .max_batch = 4}, {}};

  // Each alone: single-threaded, in its own state.
  std::vector<std::vector<tessel::token_id>> alone(2);
  for (int i = 0; i < 2; ++i) {
    auto st = m.new_state(so[i]);
    alone[std::size_t(i)] =
        tessel::generate_ids(m, st, prompts[std::size_t(i)], opt, -1, -1, [](tessel::token_id) {
        }).tokens;
    REQUIRE(alone[std::size_t(i)].size() == 40);
  }
  CHECK(alone[0] != alone[1]);

  // Two threads, strictly alternating their steps: a forward of one sequence always runs
  // between two of the other, each state's cache growing in between.
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  bool done[2] = {false, false};
  std::vector<std::vector<tessel::token_id>> turns(2);
  const auto take_turns = [&](int me) {
    std::unique_lock<std::mutex> lock(mu);
    const auto wait_mine = [&] { cv.wait(lock, [&] { return turn == me || done[1 - me]; }); };
    const auto pass = [&] {
      turn = 1 - me;
      cv.notify_all();
    };
    wait_mine();
    auto st = m.new_state(so[me]);
    lock.unlock();  // forward passes run unlocked: only the turn orders them
    turns[std::size_t(me)] =
        tessel::generate_ids(m, st, prompts[std::size_t(me)], opt, -1, -1, [&](tessel::token_id) {
          lock.lock();
          pass();
          wait_mine();
          lock.unlock();
        }).tokens;
    lock.lock();
    done[me] = true;
    pass();
  };
  {
    std::thread a(take_turns, 0), b(take_turns, 1);
    a.join();
    b.join();
  }
  CHECK(turns[0] == alone[0]);
  CHECK(turns[1] == alone[1]);

  // Free-running: both decode at once (released together), many times over.
  constexpr int reps = 12;
  std::vector<std::vector<tessel::token_id>> freely(2 * reps);
  std::latch start(2);
  const auto run = [&](int me) {
    start.arrive_and_wait();
    for (int rep = 0; rep < reps; ++rep) {
      auto st = m.new_state(so[me]);
      freely[std::size_t(2 * rep + me)] =
          tessel::generate_ids(m, st, prompts[std::size_t(me)], opt, -1, -1, [](tessel::token_id) {
          }).tokens;
    }
  };
  {
    std::thread a(run, 0), b(run, 1);
    a.join();
    b.join();
  }
  for (int rep = 0; rep < reps; ++rep) {
    CAPTURE(rep);
    CHECK(freely[std::size_t(2 * rep)] == alone[0]);
    CHECK(freely[std::size_t(2 * rep + 1)] == alone[1]);
  }
}

TEST_CASE("A state's KV cache grows with the positions written; its context bounds them") {
  tessel::io::LlamaLoadOptions lo;
  lo.max_seq = tessel::index_t(1) << 20;  // a context far beyond what the test writes
  const SmallLlama m = tessel::io::load_gguf_llama<float>(small_llama_path(), lo);
  const auto& c = m.config();
  auto st = m.new_state();
  CHECK(st.max_seq() == lo.max_seq);
  const std::size_t full =
      2 * std::size_t(c.layers) * std::size_t(lo.max_seq) * std::size_t(c.kv_dim()) * 4;
  CHECK(st.bytes() < std::size_t(1) << 20);  // the scratch of one chunk, no cache yet
  CHECK(st.cache().capacity() == 0);

  // Token by token past several doublings: the rows written before each growth are kept, so
  // the logits equal those of one prefill of the whole sequence (no growth inside it).
  const std::vector<tessel::token_id> ids = {1,  9,  14, 27, 3,  88, 41, 6,  19, 50, 72,
                                             33, 2,  64, 11, 95, 7,  23, 58, 80, 4,  36,
                                             45, 90, 13, 68, 29, 5,  77, 52, 16, 84, 39};
  const tessel::index_t T = tessel::index_t(ids.size()), V = m.vocab();
  std::vector<float> step(std::size_t(T * V)), all(step.size());
  for (tessel::index_t i = 0; i < T; ++i) {
    const auto l = m.forward(st, std::span(ids).subspan(std::size_t(i), 1), i);
    std::copy(l.begin(), l.end(), step.begin() + i * V);
    if (i == 9) {
      CHECK(st.cache().capacity() >= 10);
      CHECK(st.cache().capacity() <= 32);
      CHECK(st.bytes() < full / 1000);
    }
  }
  CHECK(st.cache().capacity() < 128);
  auto one = m.new_state({.max_batch = T});
  m.forward(one, std::span<const tessel::token_id>(ids), 0, all.data());
  CHECK(one.cache().capacity() == T);
  double err = 0, ref = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    err = std::max(err, double(std::abs(step[i] - all[i])));
    ref = std::max(ref, double(std::abs(all[i])));
  }
  CHECK(err <= 1e-4 * ref);

  // Positions past a state's context throw; so do contexts past the model's.
  auto small = m.new_state({.max_seq = 8, .max_batch = 3});
  CHECK(small.max_seq() == 8);
  const std::span<const tessel::token_id> eight(ids.data(), 8);
  CHECK_NOTHROW(m.forward(small, eight, 0));
  CHECK(small.cache().capacity() == 8);
  CHECK_THROWS_AS(m.forward(small, eight.subspan(0, 1), 8), tessel::value_error);
  CHECK_THROWS_AS(m.forward(small, std::span<const tessel::token_id>(ids.data(), 9), 0),
                  tessel::value_error);
  CHECK_THROWS_AS(m.forward(small, eight.subspan(0, 1), -1), tessel::value_error);
  CHECK_THROWS_AS((void)m.new_state({.max_seq = lo.max_seq + 1}), tessel::value_error);
  CHECK_THROWS_AS((void)m.new_state({.max_seq = -1}), tessel::value_error);
  // A prefill chunk past the bound (or below one row) is refused by name, before allocating.
  CHECK_THROWS_WITH_AS((void)m.new_state({.max_batch = tessel::index_t(1) << 40}),
                       doctest::Contains("max_batch"), tessel::value_error);
  CHECK_THROWS_AS((void)m.new_state({.max_batch = 0}), tessel::value_error);
  CHECK_THROWS_AS((void)m.new_state({.max_batch = -5}), tessel::value_error);
  CHECK(m.new_state({.max_batch = tessel::models::max_state_batch}).max_batch() ==
        tessel::models::max_state_batch);
  CHECK(m.new_state({.max_seq = 8, .max_batch = 64}).max_batch() == 8);  // at most the context
  // generate() stops at the state's context.
  auto g = m.new_state({.max_seq = 8});
  const auto r = tessel::generate_ids(m, g, eight.subspan(0, 3), greedy(1 << 30), -1, -1,
                                      [](tessel::token_id) {});
  CHECK(r.stop == tessel::StopReason::context_full);
  CHECK(r.tokens.size() == 6);  // positions 3..7 decoded, the 6th token's logits at 7
  // A state made by a model of other dimensions is refused, not read past its end.
  auto cfg = c;
  cfg.layers = 1;
  const SmallLlama other(cfg);
  auto foreign = other.new_state();
  CHECK_THROWS_AS(m.forward(foreign, eight, 0), tessel::value_error);
}
