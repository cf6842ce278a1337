// Opening model files: the cost must follow the metadata, not the file size (mmap, no reading
// of tensor data). BM_gguf_open_1GiB opens a 1 GiB sparse GGUF written once per run.

#include <benchmark/benchmark.h>

#include <filesystem>
#include <tessel/io/formats/gguf.hpp>
#include <tessel/io/formats/gguf_writer.hpp>
#include <tessel/io/formats/safetensors.hpp>

namespace {
namespace fs = std::filesystem;

const std::string& big_gguf() {
  static const std::string path = [] {
    const auto p = (fs::temp_directory_path() / "tessel_bench_1g.gguf").string();
    tessel::io::GGUFWriter w;
    w.set("general.architecture", "big");
    const std::vector<std::int64_t> shape{16384, 16384};  // 1 GiB of f32, a hole on disk
    w.reserve_tensor("big", tessel::io::ggml_type::F32, shape);
    w.write(p);
    return p;
  }();
  return path;
}

void BM_gguf_open_1GiB(benchmark::State& s) {
  const auto& path = big_gguf();
  for (auto _ : s) {
    auto g = tessel::io::GGUFFile::open(path);
    benchmark::DoNotOptimize(g.tensors().data());
  }
  s.counters["file_MiB"] = double(fs::file_size(path) >> 20);
}
BENCHMARK(BM_gguf_open_1GiB)->Unit(benchmark::kMicrosecond);

// A real file from llama.cpp: 21 metadata keys including a 512-token vocabulary, 48 tensors.
void BM_gguf_open_stories260K(benchmark::State& s) {
  const std::string path =
      std::string(TESSEL_MODELS_DIR) + "/stories260K/gguf/stories260K-f32.gguf";
  if (!fs::exists(path)) {
    s.SkipWithError("models folder not found");
    return;
  }
  for (auto _ : s) {
    auto g = tessel::io::GGUFFile::open(path);
    benchmark::DoNotOptimize(g.tensors().data());
  }
}
BENCHMARK(BM_gguf_open_stories260K)->Unit(benchmark::kMicrosecond);

void BM_safetensors_open_ddpm(benchmark::State& s) {
  const std::string path = std::string(TESSEL_MODELS_DIR) + "/mnist-ddpm/ddpm_mnist.safetensors";
  if (!fs::exists(path)) {
    s.SkipWithError("models folder not found");
    return;
  }
  for (auto _ : s) {
    auto f = tessel::io::SafetensorsFile::open(path);
    benchmark::DoNotOptimize(f.tensors().data());
  }
}
BENCHMARK(BM_safetensors_open_ddpm)->Unit(benchmark::kMicrosecond);
}  // namespace
