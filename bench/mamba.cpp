// Mamba-130m shape (d_model 768, 24 layers, vocabulary 50280, d_state 16, d_conv 4, expand 2,
// dt_rank 48) with random weights, written as an f32 GGUF `mamba` file by tessel's writer and
// loaded back through io::load_gguf_mamba, as a real checkpoint would be.
//
//   BM_mamba130m_prefill/1024/threads   items_per_second = prompt tokens per second
//   BM_mamba130m_decode/threads         items_per_second = tokens per second; bytes_per_second
//                                       = weight bytes read per token × tokens/s (read against
//                                       BM_peak_read_bw: decode streams every matrix once)
//   BM_mamba130m_decode_at/pos          one step after pos tokens (prefilled untimed): flat in
//                                       pos, as the state is the same few KB at any position
//
//   BM_mamba130m_quant_{decode,prefill}/<fmt>   the same weights with every Linear matrix in
//                                       Q8_0 / Q4_0 (ssm_dt's rows of 48 in F16), loaded as
//                                       Mamba<MambaConfig, nn::any_weight>: the quantized
//                                       kernels. pct_bw_roofline: weight bytes per token ×
//                                       tokens/s ÷ the pool's read bandwidth measured in-process.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "roofline.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/io/formats/gguf_writer.hpp"
#include "tessel/io/load/load_mamba.hpp"
#include "tessel/io/load/write_llama.hpp"

namespace {

using tessel::index_t;
using MambaModel = tessel::models::Mamba<tessel::models::MambaConfig, float>;
using QuantMambaModel = tessel::models::Mamba<tessel::models::MambaConfig, tessel::nn::any_weight>;

/// Prefill in chunks of 128 rows, as the figures in docs/mamba.md were measured (a state's
/// default is 64).
constexpr tessel::models::StateOptions prefill_chunks{.max_batch = 128};

tessel::models::MambaConfig mamba130m() {
  tessel::models::MambaConfig c;
  c.dim = 768, c.layers = 24, c.vocab = 50280, c.d_inner = 1536, c.d_state = 16, c.d_conv = 4;
  c.dt_rank = 48;
  return c;
}

/// Random weights (Mamba's A and dt_bias init, so the scan stays finite) in an f32 model.
MambaModel random_source() {
  MambaModel src(mamba130m());
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  src.visit([&](const std::string& name, auto& t) {
    const index_t cols = t.shape().extents().back();
    const float scale = 1.0f / std::sqrt(float(cols));
    for (index_t i = 0; i < t.size(); ++i) {
      float v = nd(g) * scale;
      if (name.ends_with("norm.weight")) v = 1.0f + 0.1f * nd(g);
      if (name.ends_with(".ssm_a")) v = -float(1 + i % cols);        // −(1..N)
      if (name.ends_with(".ssm_dt.bias")) v = -4.0f + 0.5f * nd(g);  // Δ ≈ 0.02
      if (name.ends_with(".ssm_d")) v = 1.0f;
      t.data()[i] = v;
    }
  });
  return src;
}

void set_mamba_metadata(tessel::io::GGUFWriter& w, const tessel::models::MambaConfig& c) {
  w.set("general.architecture", "mamba");
  w.set("mamba.embedding_length", std::uint32_t(c.dim));
  w.set("mamba.block_count", std::uint32_t(c.layers));
  w.set("mamba.ssm.conv_kernel", std::uint32_t(c.d_conv));
  w.set("mamba.ssm.inner_size", std::uint32_t(c.d_inner));
  w.set("mamba.ssm.state_size", std::uint32_t(c.d_state));
  w.set("mamba.ssm.time_step_rank", std::uint32_t(c.dt_rank));
  w.set("mamba.attention.layer_norm_rms_epsilon", 1e-5f);
}

/// The model, built once per process: random weights written to a temporary GGUF and loaded
/// from it.
MambaModel& model() {
  static std::unique_ptr<MambaModel> m = [] {
    MambaModel src = random_source();
    tessel::io::GGUFWriter w;
    set_mamba_metadata(w, src.config());
    src.visit([&](const std::string& n, auto& t) { w.add_tensor(n, t.view()); });
    const auto path = std::filesystem::temp_directory_path() / "tessel_bench_mamba130m.gguf";
    w.write(path.string());
    auto loaded = std::make_unique<MambaModel>(tessel::io::load_gguf_mamba<float>(path.string()));
    std::filesystem::remove(path);
    return loaded;
  }();
  return *m;
}

/// The same weights with every Linear matrix in `type` where its rows hold whole blocks (else
/// F16: ssm_dt's rows of 48), conv1d / A / vectors in F32, loaded as any_weight (one at a time).
QuantMambaModel& quant_model(tessel::io::ggml_type type) {
  static std::unique_ptr<QuantMambaModel> held;
  static tessel::io::ggml_type held_type{};
  if (held && held_type == type) return *held;
  held.reset();
  MambaModel src = random_source();
  tessel::io::GGUFWriter w;
  set_mamba_metadata(w, src.config());
  std::deque<tessel::io::GGUFTensorData> keep;
  src.visit([&](const std::string& n, auto& t) {
    const auto e = t.shape().extents();
    std::vector<std::int64_t> shape(e.begin(), e.end());
    const bool matrix =
        n.ends_with(".weight") && shape.size() == 2 && !n.ends_with("conv1d.weight");
    auto& d = keep.emplace_back(
        tessel::io::gguf_weight(std::span<const float>(t.data(), std::size_t(t.size())), shape,
                                matrix ? type : tessel::io::ggml_type::F32));
    w.add_tensor(n, d.type, d.shape, d.bytes);
  });
  const auto path = std::filesystem::temp_directory_path() /
                    ("tessel_bench_mamba130m_" + std::string(tessel::io::name(type)) + ".gguf");
  w.write(path.string());
  held = std::make_unique<QuantMambaModel>(
      tessel::io::load_gguf_mamba<tessel::nn::any_weight>(path.string()));
  held_type = type;
  std::filesystem::remove(path);
  return *held;
}

/// Bytes of weights one decoded token reads: every matrix and vector once (the tied head is
/// the embedding table, read whole for the logits; the embedding lookup reads one row).
template <class Model>
double weight_bytes_per_token(Model& m) {
  double b = 0;
  m.visit([&](const std::string& name, auto& t) {
    if (name != "token_embd.weight") b += double(t.bytes());
  });
  return b + double(m.head().weight.bytes());
}

std::vector<int> tokens(index_t n) {
  std::vector<int> ids(static_cast<std::size_t>(n));
  std::mt19937 g(11);
  for (auto& t : ids) t = int(g() % 50280u);
  return ids;
}

void BM_mamba130m_prefill(benchmark::State& state) {
  const MambaModel& m = model();
  auto seq = m.new_state(prefill_chunks);
  tessel::set_num_threads(int(state.range(1)));
  const auto ids = tokens(state.range(0));
  for (auto _ : state)
    benchmark::DoNotOptimize(m.forward(seq, std::span<const int>(ids), 0).data());
  state.SetItemsProcessed(state.iterations() * state.range(0));
  tessel::set_num_threads(1);
}
BENCHMARK(BM_mamba130m_prefill)
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(2);

void BM_mamba130m_decode(benchmark::State& state) {
  MambaModel& m = model();
  auto seq = m.new_state();
  tessel::set_num_threads(int(state.range(0)));
  const auto ids = tokens(8);
  m.forward(seq, std::span<const int>(ids), 0);
  index_t pos = seq.position();
  for (auto _ : state) {
    const int id = ids[std::size_t(pos % 8)];
    benchmark::DoNotOptimize(m.forward(seq, std::span<const int>(&id, 1), pos++).data());
  }
  state.SetItemsProcessed(state.iterations());
  tessel::bench::set_bytes(state, weight_bytes_per_token(m));
  tessel::set_num_threads(1);
}
BENCHMARK(BM_mamba130m_decode)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_mamba130m_decode_at(benchmark::State& state) {
  const MambaModel& m = model();
  auto seq = m.new_state(prefill_chunks);
  const index_t at = state.range(0);
  const auto ids = tokens(at + 1);
  m.forward(seq, std::span<const int>(ids.data(), std::size_t(at)), 0);  // untimed
  index_t pos = at;
  for (auto _ : state) {
    const int id = ids[std::size_t(at)];
    benchmark::DoNotOptimize(m.forward(seq, std::span<const int>(&id, 1), pos++).data());
  }
  state.counters["state_bytes"] = double(seq.state_bytes());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_mamba130m_decode_at)
    ->Arg(1)
    ->Arg(512)
    ->Arg(4096)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(16);

}  // namespace

namespace {

void BM_mamba130m_quant_decode(benchmark::State& state, tessel::io::ggml_type type) {
  QuantMambaModel& m = quant_model(type);
  auto seq = m.new_state();
  const int threads = int(state.range(0));
  const double bw = tessel::bench::pool_read_bandwidth(threads);
  tessel::set_num_threads(threads);
  const auto ids = tokens(8);
  m.forward(seq, std::span<const int>(ids), 0);
  index_t pos = seq.position();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const int id = ids[std::size_t(pos % 8)];
    benchmark::DoNotOptimize(m.forward(seq, std::span<const int>(&id, 1), pos++).data());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double tok_s = double(state.iterations()) / secs, bytes = weight_bytes_per_token(m);
  state.counters["tok/s"] = tok_s;
  state.counters["weight_MB"] = bytes / 1e6;
  state.counters["pct_bw_roofline"] = 100.0 * bytes * tok_s / bw;
  tessel::set_num_threads(1);
}

void BM_mamba130m_quant_prefill(benchmark::State& state, tessel::io::ggml_type type) {
  const QuantMambaModel& m = quant_model(type);
  auto seq = m.new_state(prefill_chunks);
  tessel::set_num_threads(int(state.range(0)));
  const auto ids = tokens(1024);
  for (auto _ : state)
    benchmark::DoNotOptimize(m.forward(seq, std::span<const int>(ids), 0).data());
  state.SetItemsProcessed(state.iterations() * 1024);
  tessel::set_num_threads(1);
}

const bool quant_registered = [] {
  for (auto [name, type] : {std::pair{"q8_0", tessel::io::ggml_type::Q8_0},
                            std::pair{"q4_0", tessel::io::ggml_type::Q4_0}}) {
    benchmark::RegisterBenchmark((std::string("BM_mamba130m_quant_decode/") + name).c_str(),
                                 BM_mamba130m_quant_decode, type)
        ->ArgName("threads")
        ->Arg(1)
        ->Arg(2)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("BM_mamba130m_quant_prefill1024/") + name).c_str(),
                                 BM_mamba130m_quant_prefill, type)
        ->ArgName("threads")
        ->Arg(1)
        ->Arg(2)
        ->Iterations(2)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  return true;
}();

}  // namespace
