// A 1.1B-parameter Llama (TinyLlama's shape: dim 2048, hidden 5632, 22 layers, 32 heads, 4 KV
// heads, vocab 32000) decoding and prefilling from GGUF files that tessel writes in F16, Q8_0,
// Q4_0 and Q4_K, loaded as models::Llama<LlamaConfig, nn::any_weight> (formats kept, nothing
// dequantized at load).
//
// The weights are random (N(0, 0.02)). Quantizing 1.1B weights with the reference quantizers
// takes minutes, so one layer's tensors are quantized and the same bytes are written for all 22
// layers, and token_embd / output repeat 4000 quantized rows; speed does not depend on the
// values. Each file is written once per process into the temporary directory and removed at
// exit; one model is held at a time.
//
//   llama1b_decode/<fmt>/threads:N    one token per iteration at positions 16.. (a 16-token
//       prompt first): tok/s; pct_bw_roofline = weight bytes read per token (every matrix but
//       token_embd) × tok/s ÷ the read bandwidth of the pool measured in this process, just
//       before the benchmark (read_bw_GBps).
//   llama1b_prefill512/<fmt>/threads:N    one 512-token prompt per iteration (one chunk,
//       M = 512): tok/s; pct_fma_roofline = matrix FLOPs per token (2 × the layers' matrix
//       parameters, plus the output head's once per prompt: forward() computes the logits of
//       the last position only) × tok/s ÷ the FMA peak of the pool at the widest vectors compiled
//       (512-bit under AVX-512, what tessel::cpu uses in this build), measured in this process just
//       before the benchmark (fma_peak_GFLOPS); pct_fma_avx2_roofline reads it against the 256-bit
//       peak. Attention (about 2% of the FLOPs at 512) is not counted. In AMX builds the weight
//       matrices run on the tiles: pct_amx_roofline reads the rate against the bf16 tile peak
//       (amx_bf16_peak_GFLOPS) divided by the tile products per f32 product (5 for f16, 3 for
//       the block formats; see backend/cpu/amx_gemm.hpp).
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "roofline.hpp"
#include "tessel/io/load/load_llama.hpp"
#include "tessel/io/load/write_llama.hpp"

namespace {

using namespace tessel;
using Model = models::Llama<models::LlamaConfig, nn::any_weight>;

models::LlamaConfig tinyllama_shape() {
  models::LlamaConfig c;
  c.dim = 2048, c.hidden = 5632, c.layers = 22, c.heads = 32, c.kv_heads = 4, c.vocab = 32000;
  c.max_seq = 1024;
  return c;
}

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 0.02f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// Removes the written files at exit.
struct temp_files {
  std::vector<std::string> paths;
  ~temp_files() {
    for (const auto& p : paths) std::filesystem::remove(p);
  }
};
temp_files written;

std::string write_model(io::ggml_type type) {
  const auto c = tinyllama_shape();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("tessel_bench_llama1b_" + std::string(io::name(type)) + ".gguf"))
                               .string();
  io::GGUFWriter w;
  io::set_llama_metadata(w, c, "tessel-bench-llama1b");
  std::vector<io::GGUFTensorData> keep;
  keep.reserve(16);
  const auto add = [&](std::vector<std::int64_t> shape, unsigned seed) -> io::GGUFTensorData& {
    return keep.emplace_back(io::gguf_weight(
        random_values(std::size_t(shape[0] * (shape.size() > 1 ? shape[1] : 1)), seed), shape,
        type));
  };
  // 4000 distinct rows of the vocabulary tables, repeated 8 times.
  const io::GGUFTensorData& rows = add({c.vocab / 8, c.dim}, 1);
  io::GGUFTensorData& table = keep.emplace_back();
  table.type = rows.type;
  table.shape = {c.vocab, c.dim};
  for (int r = 0; r < 8; ++r)
    table.bytes.insert(table.bytes.end(), rows.bytes.begin(), rows.bytes.end());
  const index_t kvd = c.kv_dim();
  io::GGUFTensorData& norm = add({c.dim}, 2);
  io::GGUFTensorData& q = add({c.dim, c.dim}, 3);
  io::GGUFTensorData& k = add({kvd, c.dim}, 4);
  io::GGUFTensorData& v = add({kvd, c.dim}, 5);
  io::GGUFTensorData& o = add({c.dim, c.dim}, 6);
  io::GGUFTensorData& gate = add({c.hidden, c.dim}, 7);
  io::GGUFTensorData& up = add({c.hidden, c.dim}, 8);
  io::GGUFTensorData& down = add({c.dim, c.hidden}, 9);
  const auto put = [&](const std::string& name, const io::GGUFTensorData& t) {
    w.add_tensor(name, t.type, t.shape, t.bytes);
  };
  put("token_embd.weight", table);
  for (index_t l = 0; l < c.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    put(p + "attn_norm.weight", norm);
    put(p + "attn_q.weight", q);
    put(p + "attn_k.weight", k);
    put(p + "attn_v.weight", v);
    put(p + "attn_output.weight", o);
    put(p + "ffn_norm.weight", norm);
    put(p + "ffn_gate.weight", gate);
    put(p + "ffn_up.weight", up);
    put(p + "ffn_down.weight", down);
  }
  put("output_norm.weight", norm);
  put("output.weight", table);
  w.write(path);
  written.paths.push_back(path);
  return path;
}

/// The model of `type` (one held at a time), its file written on first use.
Model& model(io::ggml_type type) {
  static std::map<io::ggml_type, std::string> files;
  static std::unique_ptr<Model> held;
  static io::ggml_type held_type{};
  if (held && held_type == type) return *held;
  held.reset();
  if (!files.count(type)) files[type] = write_model(type);
  held = std::make_unique<Model>(io::load_gguf<Model>(files[type]));
  held_type = type;
  return *held;
}

/// Bytes and parameters of every matrix but token_embd (one row of it is read per token), and
/// of the output head alone (a prompt's forward runs it for the last position only).
struct matrix_totals {
  double bytes = 0, params = 0, head_params = 0;
  /// Matrix FLOPs per token of an n-token prompt: every layer matrix for each token, the head
  /// once per prompt.
  double prefill_flops_per_token(double n) const {
    return 2.0 * (params - head_params + head_params / n);
  }
};
matrix_totals totals(Model& m) {
  matrix_totals t;
  m.visit([&](const std::string& name, auto& x) {
    if constexpr (nn::is_any_matrix_v<std::remove_cvref_t<decltype(x)>>) {
      if (name == "token_embd.weight") return;
      t.bytes += double(x.bytes());
      t.params += double(x.size());
      if (name == "output.weight") t.head_params = double(x.size());
    }
  });
  return t;
}

std::vector<token_id> prompt(std::size_t n) {
  std::vector<token_id> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = token_id(3 + (i * 7919) % 31990);
  return p;
}

void BM_llama1b_decode(benchmark::State& state, io::ggml_type type) {
  const int threads = int(state.range(0));
  Model& m = model(type);
  const double bw = bench::pool_read_bandwidth(threads, true);
  set_num_threads(threads);
  const auto p = prompt(16 + 256);
  auto st = m.new_state();
  m.reserve(st, index_t(p.size()));  // the cache's growth is not timed
  m.forward(st, std::span<const token_id>(p.data(), 16), 0);
  index_t pos = 16;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto l = m.forward(st, std::span<const token_id>(&p[std::size_t(pos)], 1), pos);
    benchmark::DoNotOptimize(l.data());
    if (++pos == index_t(p.size())) pos = 16;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto t = totals(m);
  const double tok_s = double(state.iterations()) / secs;
  state.counters["tok/s"] = tok_s;
  state.counters["pct_bw_roofline"] = 100.0 * t.bytes * tok_s / bw;
  state.counters["weight_MB"] = t.bytes / 1e6;
  state.counters["read_bw_GBps"] = bw / 1e9;
}

void BM_llama1b_prefill512(benchmark::State& state, io::ggml_type type) {
  const int threads = int(state.range(0));
  Model& m = model(type);
  const double peak = bench::pool_fma_peak(threads, true);
  const double peak_avx2 = bench::pool_fma_avx2_peak(threads, true);
  set_num_threads(threads);
  const auto p = prompt(512);
  auto st = m.new_state({.max_batch = 512});  // the prompt in one chunk
  m.reserve(st, 512);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto l = m.forward(st, std::span<const token_id>(p), 0);
    benchmark::DoNotOptimize(l.data());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto t = totals(m);
  const double tok_s = 512.0 * double(state.iterations()) / secs;
  state.counters["tok/s"] = tok_s;
  const double flops = t.prefill_flops_per_token(512.0);
  state.counters["pct_fma_roofline"] = 100.0 * flops * tok_s / peak;
  state.counters["fma_peak_GFLOPS"] = peak / 1e9;
  state.counters["pct_fma_avx2_roofline"] = 100.0 * flops * tok_s / peak_avx2;
  // Where the matrices run on AMX tiles (backend/cpu/amx_gemm.hpp): against the tiles' own
  // roofline, the bf16 tile peak over the tile products per f32 product (5 for f16, 3 for the
  // block formats).
  if (const double amx = bench::pool_amx_bf16_peak(threads); amx > 0) {
    const double terms = type == io::ggml_type::F16 ? 5.0 : 3.0;
    state.counters["amx_bf16_peak_GFLOPS"] = amx / 1e9;
    state.counters["pct_amx_roofline"] = 100.0 * flops * tok_s / (amx / terms);
  }
}

void register_format(const char* name, io::ggml_type type) {
  benchmark::RegisterBenchmark((std::string("llama1b_decode/") + name).c_str(), BM_llama1b_decode,
                               type)
      ->ArgName("threads")
      ->Arg(1)
      ->Arg(2)
      ->Iterations(8)
      ->Repetitions(3)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark((std::string("llama1b_prefill512/") + name).c_str(),
                               BM_llama1b_prefill512, type)
      ->ArgName("threads")
      ->Arg(1)
      ->Arg(2)
      ->Iterations(1)
      ->Repetitions(3)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
  register_format("f16", io::ggml_type::F16);
  register_format("q8_0", io::ggml_type::Q8_0);
  register_format("q4_0", io::ggml_type::Q4_0);
  register_format("q4_k", io::ggml_type::Q4_K);
  return true;
}();

}  // namespace
