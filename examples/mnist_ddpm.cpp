// Samples 16 MNIST digits from the pretrained mnist-ddpm network (../shared/models/mnist-ddpm)
// with DDIM (50 steps, eta = 0) and with DDPM, and writes two 4×4 PNG grids.
//
//   mnist_ddpm [--models DIR] [--out DIR] [--seed N] [--ddpm-steps N] [--threads N]
//
// DDPM with all 1000 trained steps takes ~1000 network calls; by default it runs as ancestral
// sampling over 100 evenly spaced steps (DDIM with eta = 1, the posterior variance), which keeps
// the example well under a minute on two cores. --ddpm-steps 1000 runs the update exactly as the
// model was trained (x ← (x − β/√(1−ᾱ) ε)/√(1−β) + √β z).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <tessel/backend/thread_pool.hpp>
#include <tessel/io/load/load_diffusion.hpp>
#include <tessel/models/mnist_ddpm.hpp>
#include <tessel/models/samplers.hpp>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

using namespace tessel;

namespace {

/// A 4×4 grid of 28×28 digits, each pixel scaled by `scale`, 2 pixels of black between them.
void write_grid(const Tensor<float, DynShape<4>>& x, const std::string& path, int scale) {
  const int n = 4, side = 28, gap = 2, cell = side * scale + gap, dim = n * cell + gap;
  std::vector<unsigned char> img(static_cast<std::size_t>(dim * dim), 0);
  for (int k = 0; k < n * n && k < x.extent(0); ++k)
    for (int i = 0; i < side * scale; ++i)
      for (int j = 0; j < side * scale; ++j) {
        const float v = x(k, 0, i / scale, j / scale) + 0.5f;  // pixels live in [−0.5, 0.5]
        const int r = gap + (k / n) * cell + i, c = gap + (k % n) * cell + j;
        img[static_cast<std::size_t>(r * dim + c)] =
            static_cast<unsigned char>(std::clamp(v, 0.f, 1.f) * 255.f + 0.5f);
      }
  if (!stbi_write_png(path.c_str(), dim, dim, 1, img.data(), dim))
    throw std::runtime_error("cannot write " + path);
  std::printf("wrote %s\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) try {
  std::string models = TESSEL_MODELS_DIR, out = ".";
  unsigned long seed = 0;
  int ddpm_steps = 100, scale = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--models")
      models = v;
    else if (a == "--out")
      out = v;
    else if (a == "--seed")
      seed = std::stoul(v);
    else if (a == "--ddpm-steps")
      ddpm_steps = std::stoi(v);
    else if (a == "--threads")
      set_num_threads(std::stoi(v));
    else if (a == "--scale")
      scale = std::stoi(v);
    else
      throw std::runtime_error("unknown option " + a);
  }
  const std::string file = models + "/mnist-ddpm/ddpm_mnist.safetensors";
  if (!std::filesystem::exists(file)) {
    std::fprintf(stderr, "mnist_ddpm: %s is absent (see ../shared/models/README.md)\n",
                 file.c_str());
    return 1;
  }
  const auto model = io::load_mnist_ddpm(file);
  const auto sched = models::NoiseSchedule::from(model.beta_t.view(), model.alpha_t.view());
  const auto eps = [&](TensorView<const float, DynShape<4>> x, index_t i) {
    Tensor<float, DynShape<1>> t(x.extent(0));
    t.fill(static_cast<float>(i) / static_cast<float>(models::MnistDDPM::steps));
    return model.forward(x, t.view());
  };
  const auto noise = [&](std::mt19937_64& rng) {
    Tensor<float, DynShape<4>> x(16, 1, 28, 28);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (index_t i = 0; i < x.size(); ++i) x.data()[i] = nd(rng);
    return x;
  };
  using clock = std::chrono::steady_clock;
  const auto seconds = [](clock::time_point a) {
    return std::chrono::duration<double>(clock::now() - a).count();
  };

  std::mt19937_64 rng(seed);
  auto x = noise(rng);
  auto t0 = clock::now();
  models::ddim_sample(eps, sched, x, models::ddim_timesteps(1000, 50), 0.0, rng);
  std::printf("DDIM, 50 steps (eta = 0): %.2f s on %d threads\n", seconds(t0), num_threads());
  write_grid(x, out + "/mnist_ddim.png", scale);

  rng.seed(seed + 1);
  x = noise(rng);
  t0 = clock::now();
  if (ddpm_steps >= 1000) {
    models::ddpm_sample(eps, sched, x, rng);
  } else {
    models::ddim_sample(eps, sched, x, models::ddim_timesteps(1000, ddpm_steps), 1.0, rng);
  }
  std::printf("DDPM, %d steps%s: %.2f s\n", std::min(ddpm_steps, 1000),
              ddpm_steps >= 1000 ? " (as trained)" : " (ancestral, eta = 1)", seconds(t0));
  write_grid(x, out + "/mnist_ddpm.png", scale);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mnist_ddpm: %s\n", e.what());
  return 1;
}
