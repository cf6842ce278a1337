// One U-Net step (batch 1, 32×32 latents, a 77-token context, random weights) for the small
// test config and for a Stable-Diffusion-1.5-shaped U-Net (320 · (1, 2, 4, 4), 2 ResBlocks per
// level, attention at the first three levels, 8 heads, context 768: 860 M parameters, 3.4 GB in
// f32), with f32 weights and with f16 weights (UNet<UNetConfig, f16>: the same values rounded,
// widened inside the GEMM panels; 1.7 GB), on 1 and 2 threads. bench/unet_torch.py times the
// same configs in PyTorch (CPU, f32, same threads). The models are built once and kept; few
// iterations (a step takes seconds).

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "tessel/backend/thread_pool.hpp"
#include "tessel/models/unet.hpp"

namespace {

using tessel::index_t;

/// Deterministic uniform weights: ±1/√fan_in for matrices and kernels, 1 ± 0.1 / ±0.1 for
/// vectors (norm scales, biases), so activations stay O(1) through the depth.
template <class M>
void fill_random(M& m) {
  std::uint64_t s = 0x9E3779B97F4A7C15ull;
  m.visit([&](const std::string& name, auto& t) {
    const index_t rows = t.extent(0),
                  fan_in = std::max<index_t>(1, t.size() / std::max<index_t>(rows, 1));
    const bool vec = t.rank == 1;
    const float a = vec ? 0.1f : 1.0f / std::sqrt(static_cast<float>(fan_in));
    const float base = vec && name.ends_with(".weight") ? 1.0f : 0.0f;
    for (index_t i = 0; i < t.size(); ++i) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;  // xorshift64
      const float u = static_cast<float>(s >> 40) / static_cast<float>(1 << 24) * 2 - 1;
      t.data()[i] = tessel::from_f32<std::remove_cvref_t<decltype(*t.data())>>(base + a * u);
    }
  });
}

tessel::models::UNetConfig small_config() {
  tessel::models::UNetConfig c;
  c.block_out_channels = {8, 16};
  c.attention = {true, false};
  c.layers_per_block = 1;
  c.heads = 2;
  c.context_dim = 12;
  c.norm_groups = 4;
  return c;
}

tessel::models::UNet<>& model(bool sd) {
  static std::unique_ptr<tessel::models::UNet<>> m[2];
  auto& p = m[sd ? 1 : 0];
  if (!p) {
    p = std::make_unique<tessel::models::UNet<>>(sd ? tessel::models::UNetConfig::sd15()
                                                    : small_config());
    fill_random(*p);
  }
  return *p;
}

using UNet16 = tessel::models::UNet<tessel::models::UNetConfig, tessel::f16>;
const UNet16& model16(bool sd) {
  static std::unique_ptr<UNet16> m[2];
  auto& p = m[sd ? 1 : 0];
  if (!p) p = std::make_unique<UNet16>(tessel::models::convert_weights<tessel::f16>(model(sd)));
  return *p;
}

template <class UNet>
void unet_step(benchmark::State& state, const UNet& unet) {
  const bool sd = state.range(0) != 0;
  tessel::set_num_threads(static_cast<int>(state.range(1)));
  const auto& c = unet.config();
  tessel::Tensor<float, tessel::DynShape<4>> x(1, c.in_channels, 32, 32);
  tessel::Tensor<float, tessel::DynShape<1>> t(1);
  tessel::Tensor<float, tessel::DynShape<3>> ctx(1, 77, c.context_dim);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = std::sin(0.37f * static_cast<float>(i));
  for (index_t i = 0; i < ctx.size(); ++i) ctx.data()[i] = std::cos(0.11f * static_cast<float>(i));
  t(0) = 500.0f;
  for (auto _ : state) {
    auto eps = unet.forward(x.view(), t.view(), ctx.view());
    benchmark::DoNotOptimize(eps.data());
  }
  state.SetLabel(std::string(sd ? "SD-1.5 U-Net, 32x32 latents" : "small test U-Net, 32x32") +
                 (std::is_same_v<typename UNet::weight_format, float> ? ", f32" : ", f16") +
                 " weights");
  tessel::set_num_threads(0);
}

void BM_unet_step(benchmark::State& state) {
  unet_step(state, model(state.range(0) != 0));
}
void BM_unet_step_f16(benchmark::State& state) {
  unet_step(state, model16(state.range(0) != 0));
}

}  // namespace

BENCHMARK(BM_unet_step)
    ->ArgNames({"sd15", "threads"})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_unet_step_f16)
    ->ArgNames({"sd15", "threads"})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_unet_step)
    ->ArgNames({"sd15", "threads"})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_unet_step_f16)
    ->ArgNames({"sd15", "threads"})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
