// stories260K (llama2.c's 260K-parameter Llama, 1 MB of f32 weights: it lives in cache)
// decoding on one thread: one forward pass of one token per iteration, at positions cycling
// through 1..255 (the average context of a 256-token story), with the run-time config read
// from the file and with the compile-time Stories260K config. Counter tok/s = decode steps per
// second. Also prefill of a 64-token prompt (one matmul pass, M = 64).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "tessel/backend/thread_pool.hpp"
#include "tessel/io/load/load_llama.hpp"

namespace {

struct Stories260KStatic {
  static constexpr int dim = 64, hidden = 172, layers = 5, heads = 8, kv_heads = 4, vocab = 512,
                       max_seq = 512;
};

const std::string stories_bin = std::string(TESSEL_MODELS_DIR) + "/stories260K/stories260K.bin";

template <class Model>
void BM_stories260K_decode(benchmark::State& state) {
  if (!std::filesystem::exists(stories_bin)) {
    state.SkipWithError("stories260K.bin is absent (TESSEL_MODELS_DIR)");
    return;
  }
  tessel::set_num_threads(1);
  Model m = tessel::io::load_llama2c<Model>(stories_bin);
  std::vector<tessel::token_id> seq(256);
  for (std::size_t i = 0; i < seq.size(); ++i) seq[i] = tessel::token_id(3 + (i * 37) % 500);
  auto st = m.new_state();
  m.forward(st, std::span<const tessel::token_id>(seq), 0);  // fills the cache
  tessel::index_t pos = 1;
  for (auto _ : state) {
    auto l = m.forward(st, std::span<const tessel::token_id>(&seq[std::size_t(pos)], 1), pos);
    benchmark::DoNotOptimize(l.data());
    if (++pos == 256) pos = 1;
  }
  state.counters["tok/s"] =
      benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

template <class Model>
void BM_stories260K_prefill64(benchmark::State& state) {
  if (!std::filesystem::exists(stories_bin)) {
    state.SkipWithError("stories260K.bin is absent (TESSEL_MODELS_DIR)");
    return;
  }
  tessel::set_num_threads(1);
  Model m = tessel::io::load_llama2c<Model>(stories_bin);
  std::vector<tessel::token_id> seq(64);
  for (std::size_t i = 0; i < seq.size(); ++i) seq[i] = tessel::token_id(3 + (i * 37) % 500);
  auto st = m.new_state();
  m.reserve(st, 64);  // the cache's growth is not timed
  for (auto _ : state) {
    auto l = m.forward(st, std::span<const tessel::token_id>(seq), 0);
    benchmark::DoNotOptimize(l.data());
  }
  state.counters["tok/s"] =
      benchmark::Counter(double(state.iterations() * 64), benchmark::Counter::kIsRate);
}

using RunTime = tessel::models::Llama<tessel::models::LlamaConfig, float>;
using Static = tessel::models::Llama<Stories260KStatic, float>;
using RunTimeF16 = tessel::models::Llama<tessel::models::LlamaConfig, tessel::f16>;

BENCHMARK_TEMPLATE(BM_stories260K_decode, RunTime)->Name("stories260K_decode/runtime_f32");
BENCHMARK_TEMPLATE(BM_stories260K_decode, Static)->Name("stories260K_decode/static_f32");
BENCHMARK_TEMPLATE(BM_stories260K_decode, RunTimeF16)->Name("stories260K_decode/runtime_f16");
BENCHMARK_TEMPLATE(BM_stories260K_prefill64, RunTime)->Name("stories260K_prefill64/runtime_f32");
BENCHMARK_TEMPLATE(BM_stories260K_prefill64, Static)->Name("stories260K_prefill64/static_f32");

}  // namespace
