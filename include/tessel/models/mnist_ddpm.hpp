#pragma once
// MnistDDPM: the small pretrained noise-prediction network of the mnist-ddpm checkpoint
// (../shared/models/mnist-ddpm, see its README), composed from tessel's layers. Parameter names
// are the checkpoint's own ("gt.blocks.1.net.0.weight"), so loading needs no renaming table.
//
//   x [N,1,28,28], t [N] in (0, 1] (step i of T = 1000 is t = i / T)
//   φ(t)   = [sin(t·f), cos(t·f) − 1]                   f = gt.frequencies [16]
//   temb   = Linear(GELU(Linear(GELU(Linear(GELU(Linear(φ)))))))   32 → 128 → 128 → 128 → 16
//   h      = block0(x) + temb (broadcast over 28×28)
//   h      = block3(block2(block1(h)));   ε = conv3x3(h)  (16 → 1, padding 1)
//   block  = GELU(LayerNorm_(C,28,28)(conv7x7(h)))       channels 1 → 16 → 32 → 32 → 16
// The LayerNorm normalizes each sample over all of (C, 28, 28) with an elementwise weight and
// bias of that shape; GELU is the erf form.
//
//   auto m = io::load_mnist_ddpm(dir + "/ddpm_mnist.safetensors");   // or ddpm_mnist.pth
//   (the loader is in io/load/load_diffusion.hpp)
//   auto eps = m.forward(x, t);        // x [N,1,28,28], t [N] -> ε [N,1,28,28]
//   m.beta_t, m.alpha_t                // β_i, ᾱ_i for i = 0 … 1000 (the training schedule)
// MnistDDPM is BasicMnistDDPM<default_backend>; io::load_mnist_ddpm<BasicMnistDDPM<B>>(path)
// loads one that runs backend B.

#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"
#include "tessel/nn/linear.hpp"
#include "tessel/ops/conv2d.hpp"
#include "tessel/ops/norm.hpp"

namespace tessel::models {

/// Backend: whose kernels forward() runs (default_backend; cpu_scalar: the references).
template <class Backend = default_backend>
class BasicMnistDDPM {
 public:
  using backend_type = Backend;
  static constexpr index_t side = 28, steps = 1000, n_freq = 16, temb_hidden = 128;
  static constexpr std::array<index_t, 5> channels{1, 16, 32, 32, 16};
  static constexpr float ln_eps = 1e-5f;

  struct Block {  // conv7x7 (padding 3) → LayerNorm over (C, 28, 28) → GELU
    Block(index_t ci, index_t co)
        : conv_w(co, ci, 7, 7), conv_b(co), ln_w(co, side, side), ln_b(co, side, side) {}
    Tensor<float, DynShape<4>> conv_w;
    Tensor<float, DynShape<1>> conv_b;
    Tensor<float, DynShape<3>> ln_w, ln_b;
  };

  BasicMnistDDPM() {
    for (std::size_t b = 0; b < 4; ++b) blocks.emplace_back(channels[b], channels[b + 1]);
  }

  /// Calls v(name, tensor) for every parameter and buffer, with the checkpoint's names.
  template <class V>
  void visit(V&& v) {
    v("beta_t", beta_t);
    v("alpha_t", alpha_t);
    v("gt.frequencies", frequencies);
    for (std::size_t b = 0; b < 4; ++b) {
      const std::string p = "gt.blocks." + std::to_string(b) + ".net.";
      v(p + "0.weight", blocks[b].conv_w);
      v(p + "0.bias", blocks[b].conv_b);
      v(p + "1.weight", blocks[b].ln_w);
      v(p + "1.bias", blocks[b].ln_b);
    }
    v("gt.blocks.4.weight", out_w);
    v("gt.blocks.4.bias", out_b);
    for (std::size_t k = 0; k < 3; ++k)
      time_embed[k].visit("gt.time_embed." + std::to_string(2 * k), v);
    time_out.visit("gt.time_embed.6", v);
  }

  /// The time embedding [N, 16] of t [N].
  Tensor<float, DynShape<2>> time_embedding(TensorView<const float, DynShape<1>> t) const {
    const index_t N = t.extent(0);
    Tensor<float, DynShape<2>> phi(N, 2 * n_freq), h(N, temb_hidden), h2(N, temb_hidden),
        out(N, channels[1]);
    for (index_t n = 0; n < N; ++n)
      for (index_t i = 0; i < n_freq; ++i) {
        // The product in float, as PyTorch forms it; angles reach ~1800 rad.
        const double a = static_cast<float>(t.data()[n * t.stride(0)] * frequencies(i));
        phi(n, i) = static_cast<float>(std::sin(a));
        phi(n, n_freq + i) = static_cast<float>(std::cos(a) - 1.0);
      }
    const Backend b{};
    time_embed[0].forward(b, phi, h);
    eval(b, h, gelu(h));
    time_embed[1].forward(b, h, h2);
    eval(b, h2, gelu(h2));
    time_embed[2].forward(b, h2, h);
    eval(b, h, gelu(h));
    time_out.forward(b, h, out);
    return out;
  }

  /// ε(x, t): x [N,1,28,28], t [N] in (0, 1].
  Tensor<float, DynShape<4>> forward(TensorView<const float, DynShape<4>> x,
                                     TensorView<const float, DynShape<1>> t) const {
    const index_t N = x.extent(0);
    if (x.extent(1) != 1 || x.extent(2) != side || x.extent(3) != side || t.extent(0) != N)
      throw shape_error("tessel: MnistDDPM::forward: input shape " + to_string(x.shape()) +
                        " and timesteps shape " + to_string(t.shape()) +
                        " should be [N, 1, 28, 28] and [N]");
    const auto temb = time_embedding(t);
    Tensor<float, DynShape<4>> h = run_block(blocks[0], x);
    const index_t P = side * side;
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < channels[1]; ++c) {
        float* p = h.data() + (n * channels[1] + c) * P;
        const float e = temb(n, c);
        for (index_t i = 0; i < P; ++i) p[i] += e;
      }
    for (std::size_t b = 1; b < 4; ++b) h = run_block(blocks[b], h.view());
    Tensor<float, DynShape<4>> y(N, 1, side, side);
    conv2d(Backend{}, y.view(), h.view(), out_w.view(), out_b.view(), {.padding = 1});
    return y;
  }

  std::vector<Block> blocks;  // blocks.0 … blocks.3
  Tensor<float, DynShape<4>> out_w{DynShape<4>(1, 16, 3, 3)};
  Tensor<float, DynShape<1>> out_b{DynShape<1>(1)};
  std::array<nn::Linear<dyn, dyn, float, true>, 3> time_embed{
      nn::Linear<dyn, dyn, float, true>(2 * n_freq, temb_hidden),
      nn::Linear<dyn, dyn, float, true>(temb_hidden, temb_hidden),
      nn::Linear<dyn, dyn, float, true>(temb_hidden, temb_hidden)};
  nn::Linear<dyn, dyn, float, true> time_out{temb_hidden, channels[1]};
  Tensor<float, DynShape<1>> frequencies{DynShape<1>(n_freq)};
  Tensor<float, DynShape<1>> beta_t{DynShape<1>(steps + 1)}, alpha_t{DynShape<1>(steps + 1)};

 private:
  static Tensor<float, DynShape<4>> run_block(const Block& b,
                                              TensorView<const float, DynShape<4>> x) {
    Tensor<float, DynShape<4>> h(x.extent(0), b.conv_w.extent(0), side, side);
    conv2d(Backend{}, h.view(), x, b.conv_w.view(), b.conv_b.view(), {.padding = 3});
    const index_t N = h.extent(0), D = h.size() / N;
    auto rows = h.reshape(N, D);  // one row per sample: LayerNorm over (C, 28, 28)
    layer_norm(Backend{}, rows, rows, b.ln_w.reshape(D), b.ln_b.reshape(D), ln_eps);
    eval(Backend{}, h, gelu(h));
    return h;
  }

 public:
  /// Copies one checkpoint tensor (f32, row-major) into parameter t, checking its shape.
  template <class T>
  static void copy_param(const std::string& name, T& t, const std::vector<std::int64_t>& shape,
                         const std::byte* src) {
    bool same = shape.size() == T::rank;
    for (std::size_t k = 0; same && k < T::rank; ++k) same = shape[k] == t.extent(k);
    if (!same) {
      std::string s = "[";
      for (std::size_t k = 0; k < shape.size(); ++k)
        s += (k ? ", " : "") + std::to_string(shape[k]);
      throw shape_error("tessel: MnistDDPM: tensor '" + name + "' has shape " + s +
                        "], the model expects " + to_string(t.shape()));
    }
    std::memcpy(static_cast<void*>(t.data()), src, t.bytes());
  }
};
using MnistDDPM = BasicMnistDDPM<>;

}  // namespace tessel::models
