// The real mnist-ddpm checkpoint (../shared/models/mnist-ddpm) against its PyTorch references
// refs_seed0.npz: the network's ε for 8 inputs, and a whole 50-step deterministic DDIM path,
// loaded from the safetensors file and from the original .pth state dict; on default_backend,
// and from the safetensors file on cpu_scalar (the reference kernels) with the same tolerance
// for ε (the 50-step DDIM path, the same network 50 times, is skipped there for time).

#include <doctest/doctest.h>

#include "skip.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/load/load_diffusion.hpp>
#include <tessel/models/mnist_ddpm.hpp>
#include <tessel/models/samplers.hpp>

using namespace tessel;

namespace {

const std::string dir = tessel_test::models_dir() + "/mnist-ddpm/";

bool have_model() {
  return tessel_test::have(dir + "refs_seed0.npz", "the mnist-ddpm checkpoint");
}

/// Worst |got − want| / max(1, |want|).
template <class A, class B>
double worst_rel(const A& got, const B& want) {
  REQUIRE(got.shape().extents() == want.shape().extents());
  double worst = 0;
  for (index_t i = 0; i < want.size(); ++i) {
    const double w = want.data()[i];
    worst = std::max(worst, std::abs(got.data()[i] - w) / std::max(1.0, std::abs(w)));
  }
  return worst;
}

/// ddim false: the ε golden only (the 50-step path takes ~45 s on cpu_scalar).
template <class Model>
void reproduce(const Model& m, const std::string& file, bool ddim = true) {
  const auto refs = io::NpzFile::open(dir + "refs_seed0.npz");
  SUBCASE("eps") {
    const auto x = refs.get<float, 4>("eps_in"), want = refs.get<float, 4>("eps_out");
    const auto t = refs.get<float, 1>("eps_t");
    const double e = worst_rel(m.forward(x.view(), t.view()), want);
    MESSAGE(file << ": eps worst relative error " << e);
    CHECK(e <= 1e-4);
  }
  if (!ddim) return;
  SUBCASE("50-step DDIM (eta = 0)") {
    auto x = refs.get<float, 4>("ddim_z0");
    const auto steps_t = refs.get<std::int64_t, 1>("ddim_steps");
    std::vector<index_t> steps(steps_t.data(), steps_t.data() + steps_t.size());
    CHECK(steps == models::ddim_timesteps(1000, 50));
    const auto sched = models::NoiseSchedule::from(m.beta_t.view(), m.alpha_t.view());
    std::mt19937_64 rng(0);
    const index_t N = x.extent(0);
    models::ddim_sample(
        [&](TensorView<const float, DynShape<4>> xi, index_t i) {
          Tensor<float, DynShape<1>> t(N);
          t.fill(static_cast<float>(i) / 1000.f);
          return m.forward(xi, t.view());
        },
        sched, x, steps, 0.0, rng);
    const double e = worst_rel(x, refs.get<float, 4>("ddim_out"));
    MESSAGE(file << ": DDIM output worst relative error " << e);
    CHECK(e <= 1e-4);
  }
}

}  // namespace

TEST_CASE("mnist-ddpm from safetensors reproduces PyTorch" * doctest::test_suite("needs_models")) {
  if (!have_model()) return;
  reproduce(io::load_mnist_ddpm(dir + "ddpm_mnist.safetensors"), "safetensors");
}

TEST_CASE("mnist-ddpm from the .pth state dict reproduces PyTorch" *
          doctest::test_suite("needs_models")) {
  if (!have_model()) return;
  reproduce(io::load_mnist_ddpm(dir + "ddpm_mnist.pth"), "pth");
}

TEST_CASE("mnist-ddpm on cpu_scalar reproduces PyTorch" * doctest::test_suite("needs_models")) {
  if (!have_model()) return;
  reproduce(io::load_mnist_ddpm<models::BasicMnistDDPM<cpu_scalar>>(dir + "ddpm_mnist.safetensors"),
            "safetensors, cpu_scalar", /*ddim=*/false);
}

TEST_CASE("mnist-ddpm rejects a wrong input shape" * doctest::test_suite("needs_models")) {
  if (!have_model()) return;
  const auto m = io::load_mnist_ddpm(dir + "ddpm_mnist.safetensors");
  Tensor<float, DynShape<4>> x(2, 1, 27, 28);
  Tensor<float, DynShape<1>> t(2);
  CHECK_THROWS_AS(m.forward(x.view(), t.view()), shape_error);
}
