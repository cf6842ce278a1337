// tessel-diffuse: sample images from a diffusion model and write them as one PNG (a row of
// images), with a progress bar over the steps on stderr.
//
//   Latent (Stable Diffusion layout, diffusers' folders and names):
//     tessel-diffuse --model sd15 --steps 30 --sampler euler_a --guidance 7.5
//                    --tokens "49406 320 1929 49407" --out out.png
//     (sd15/unet, sd15/vae, sd15/text_encoder each hold config.json and
//      diffusion_pytorch_model.safetensors / model.safetensors; --unet FILE --unet-config JSON
//      --vae FILE --vae-config JSON --text-encoder FILE name the files one by one.)
//   Pixel space, no VAE: the mnist-ddpm checkpoint (models/mnist_ddpm.hpp):
//     tessel-diffuse --mnist ../shared/models/mnist-ddpm/ddpm_mnist.safetensors --batch 8
//
// The text condition is the CLIP text encoder's last hidden state of --tokens (ids from the
// CLIP tokenizer; padded with the end token to 77), or --context FILE.npy ([L, context_dim]),
// or zeros. Classifier-free guidance (--guidance g > 1) runs the unconditional context (the
// encoder's output for the empty prompt, or zeros) in the same batch: ε = ε_u + g (ε_c − ε_u).

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <tessel/backend/thread_pool.hpp>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/load/load_diffusion.hpp>
#include <tessel/models/clip.hpp>
#include <tessel/models/mnist_ddpm.hpp>
#include <tessel/models/samplers.hpp>
#include <tessel/models/unet.hpp>
#include <tessel/models/vae.hpp>
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
using Act4 = Tensor<float, DynShape<4>>;
using View4 = TensorView<const float, DynShape<4>>;

namespace {

/// "[#####.....] 12/50  0.41 s/step" on stderr, redrawn in place.
class Progress {
 public:
  explicit Progress(index_t total) : total_(total), t0_(std::chrono::steady_clock::now()) {}
  void tick() {
    ++done_;
    const int width = 30, fill = static_cast<int>(width * done_ / std::max<index_t>(total_, 1));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    std::fprintf(stderr, "\r[%s%s] %lld/%lld  %.2f s/step",
                 std::string(std::size_t(fill), '#').c_str(),
                 std::string(std::size_t(width - std::min(fill, width)), '.').c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_),
                 s / static_cast<double>(done_));
    if (done_ == total_) std::fprintf(stderr, "\n");
  }

 private:
  index_t total_, done_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

/// Images [N, C, H, W] (C = 1 or 3) with values in [lo, hi] side by side in one PNG.
void write_png(const Act4& x, float lo, float hi, const std::string& path) {
  const index_t N = x.extent(0), C = x.extent(1), H = x.extent(2), W = x.extent(3);
  if (C != 1 && C != 3)
    throw value_error("tessel-diffuse: cannot write images of " + std::to_string(C) + " channels");
  const index_t gap = 2, width = N * W + (N - 1) * gap;
  std::vector<unsigned char> img(static_cast<std::size_t>(H * width * C), 0);
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c)
      for (index_t i = 0; i < H; ++i)
        for (index_t j = 0; j < W; ++j) {
          const float v = (x(n, c, i, j) - lo) / (hi - lo);
          img[static_cast<std::size_t>((i * width + n * (W + gap) + j) * C + c)] =
              static_cast<unsigned char>(std::clamp(v, 0.f, 1.f) * 255.f + 0.5f);
        }
  if (!stbi_write_png(path.c_str(), static_cast<int>(width), static_cast<int>(H),
                      static_cast<int>(C), img.data(), static_cast<int>(width * C)))
    throw std::runtime_error("cannot write " + path);
  std::fprintf(stderr, "wrote %s (%lld image%s, %lldx%lld)\n", path.c_str(),
               static_cast<long long>(N), N > 1 ? "s" : "", static_cast<long long>(W),
               static_cast<long long>(H));
}

std::vector<std::int64_t> parse_ids(const std::string& s) {
  std::vector<std::int64_t> ids;
  std::stringstream in(s);
  std::string tok;
  while (in >> tok) {
    for (char& ch : tok)
      if (ch == ',') ch = ' ';
    std::stringstream t(tok);
    std::int64_t v;
    while (t >> v) ids.push_back(v);
  }
  return ids;
}

struct Options {
  std::string model, unet, unet_config, vae, vae_config, text_encoder, mnist, context, tokens;
  std::string sampler = "euler_a", out = "tessel-diffuse.png", schedule = "scaled_linear",
              prediction = "epsilon";
  index_t steps = 30, batch = 1, size = 0, label = -1;
  double guidance = 7.5, eta = 0.0, beta_start = 0.00085, beta_end = 0.012;
  unsigned long long seed = 0;
  int threads = 0;
};

/// Runs the chosen sampler on x (noise in, x₀ out) with eps_fn(x_t, step).
template <class Eps>
void run_sampler(const Options& o, const models::NoiseSchedule& s, Act4& x, Eps&& eps_fn,
                 std::mt19937_64& rng) {
  const bool full_ddpm = o.sampler == "ddpm" && o.steps >= s.T();
  Progress bar(full_ddpm ? s.T() : o.steps);
  const auto counted = [&](View4 xt, index_t i) {
    auto e = eps_fn(xt, i);
    bar.tick();
    return e;
  };
  const auto steps = models::ddim_timesteps(s.T(), std::min(o.steps, s.T()));
  if (o.sampler == "ddim") {
    models::ddim_sample(counted, s, x, steps, o.eta, rng);
  } else if (o.sampler == "ddpm") {
    // All T steps as trained, or ancestral sampling over fewer (DDIM with η = 1).
    if (full_ddpm)
      models::ddpm_sample(counted, s, x, rng);
    else
      models::ddim_sample(counted, s, x, steps, 1.0, rng);
  } else if (o.sampler == "euler" || o.sampler == "euler_a") {
    models::euler_sample(counted, s, x, steps, o.sampler == "euler_a", rng);
  } else {
    throw value_error("unknown sampler '" + o.sampler + "' (ddpm, ddim, euler, euler_a)");
  }
}

Act4 noise(index_t n, index_t c, index_t h, index_t w, std::mt19937_64& rng) {
  Act4 x(n, c, h, w);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = nd(rng);
  return x;
}

int run_mnist(const Options& o) {
  const auto model = io::load_mnist_ddpm(o.mnist);
  const auto s = models::NoiseSchedule::from(model.beta_t.view(), model.alpha_t.view());
  std::mt19937_64 rng(o.seed);
  Act4 x = noise(o.batch, 1, models::MnistDDPM::side, models::MnistDDPM::side, rng);
  run_sampler(
      o, s, x,
      [&](View4 xt, index_t i) {
        Tensor<float, DynShape<1>> t(xt.extent(0));
        t.fill(static_cast<float>(i) / static_cast<float>(models::MnistDDPM::steps));
        return model.forward(xt, t.view());
      },
      rng);
  write_png(x, -0.5f, 0.5f, o.out);  // the checkpoint's pixels live in [−0.5, 0.5]
  return 0;
}

int run_unet(Options o) {
  namespace fs = std::filesystem;
  const auto in_model = [&](std::string& f, const char* sub, const char* name) {
    if (f.empty() && !o.model.empty() && fs::exists(fs::path(o.model) / sub / name))
      f = (fs::path(o.model) / sub / name).string();
  };
  in_model(o.unet, "unet", "diffusion_pytorch_model.safetensors");
  in_model(o.unet_config, "unet", "config.json");
  in_model(o.vae, "vae", "diffusion_pytorch_model.safetensors");
  in_model(o.vae_config, "vae", "config.json");
  in_model(o.text_encoder, "text_encoder", "model.safetensors");
  if (o.unet.empty() || o.unet_config.empty())
    throw value_error("give --model DIR (diffusers layout), or --unet FILE and --unet-config JSON");

  models::UNet<> unet(io::unet_config_json(o.unet_config));
  io::load_params(unet, io::SafetensorsCheckpoint::open(o.unet));
  const auto& uc = unet.config();
  std::optional<models::VAEDecoder> vae;
  if (!o.vae.empty()) {
    vae.emplace(o.vae_config.empty() ? models::VAEConfig::sd() : io::vae_config_json(o.vae_config));
    io::load_params(*vae, io::SafetensorsCheckpoint::open(o.vae));
  }
  const index_t down = vae ? vae->scale() : 1;
  const index_t side = (o.size > 0 ? o.size : (vae ? 512 : 64)) / down;

  // Contexts [N, L, D]: unconditional (rows 0 … N−1) and conditional.
  index_t L = 77;
  std::vector<float> cond, uncond;
  if (!o.text_encoder.empty() && !o.tokens.empty()) {
    const auto ck = io::SafetensorsCheckpoint::open(o.text_encoder);
    models::CLIPTextModel clip(io::clip_config(ck, o.text_encoder));
    io::load_params(clip, ck);
    L = clip.config().max_pos;
    cond = clip.encode_padded(parse_ids(o.tokens));
    uncond = clip.encode_padded({clip.config().bos, clip.config().eos});
  } else if (!o.context.empty()) {
    const auto f = io::NpyFile::open(o.context);
    const auto t = f.array().to_tensor<float, 2>();
    L = t.extent(0);
    cond.assign(t.data(), t.data() + t.size());
    uncond.assign(cond.size(), 0.0f);
  }
  const index_t D = uc.context_dim;
  if (cond.empty()) cond.assign(static_cast<std::size_t>(L * D), 0.0f);
  if (uncond.empty()) uncond.assign(cond.size(), 0.0f);
  if (static_cast<index_t>(cond.size()) != L * D)
    throw shape_error("the context has " + std::to_string(cond.size()) +
                      " values, the U-Net wants [" + std::to_string(L) + ", " + std::to_string(D) +
                      "]");

  const bool guided = o.guidance != 1.0 && uc.num_classes == 0;
  const index_t N = o.batch, B = guided ? 2 * N : N;
  Tensor<float, DynShape<3>> ctx(B, L, D);
  for (index_t n = 0; n < B; ++n) {
    const auto& src = guided && n < N ? uncond : cond;
    std::copy(src.begin(), src.end(), ctx.data() + n * L * D);
  }
  std::vector<index_t> labels;
  if (uc.num_classes > 0) labels.assign(static_cast<std::size_t>(B), std::max<index_t>(o.label, 0));

  const auto kind = o.schedule == "linear"   ? models::BetaSchedule::linear
                    : o.schedule == "cosine" ? models::BetaSchedule::cosine
                                             : models::BetaSchedule::scaled_linear;
  const auto s = models::make_schedule(kind, 1000, o.beta_start, o.beta_end);
  const auto pred = o.prediction == "v" ? models::Prediction::v : models::Prediction::epsilon;

  const auto eps_fn = [&](View4 xt, index_t i) {
    // diffusers' timestep of step i is i − 1.
    Tensor<float, DynShape<1>> t(B);
    t.fill(static_cast<float>(i - 1));
    Act4 in(B, xt.extent(1), xt.extent(2), xt.extent(3));
    const index_t per = xt.size();
    for (index_t k = 0; k < B / N; ++k) std::copy(xt.data(), xt.data() + per, in.data() + k * per);
    Act4 out = unet.forward(in.view(), t.view(), ctx.view(), labels);
    std::span<float> all(out.data(), static_cast<std::size_t>(out.size()));
    std::span<const float> xin(in.data(), static_cast<std::size_t>(in.size()));
    models::to_epsilon(s, i, pred, xin, all);
    Act4 eps(xt.shape());
    std::span<float> e(eps.data(), static_cast<std::size_t>(per));
    if (guided)
      models::cfg_combine(all.first(std::size_t(per)), all.subspan(std::size_t(per)), o.guidance,
                          e);
    else
      std::copy(all.begin(), all.end(), e.begin());
    return eps;
  };
  std::mt19937_64 rng(o.seed);
  Act4 x = noise(N, uc.in_channels, side, side, rng);
  std::fprintf(stderr, "%s, %lld steps, %lld×%lld %s, guidance %.2g, %d threads\n",
               o.sampler.c_str(), static_cast<long long>(o.steps), static_cast<long long>(side),
               static_cast<long long>(side), vae ? "latents" : "pixels", guided ? o.guidance : 1.0,
               num_threads());
  run_sampler(o, s, x, eps_fn, rng);
  if (vae) {
    const auto img = vae->decode(x.view());
    write_png(img, -1.0f, 1.0f, o.out);
  } else {
    write_png(x, -1.0f, 1.0f, o.out);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  CLI::App app{"Sample images from a diffusion model (diffusers-layout safetensors or mnist-ddpm)"};
  app.add_option("--model", o.model, "folder with unet/, vae/, text_encoder/ (diffusers layout)");
  app.add_option("--unet", o.unet, "U-Net safetensors");
  app.add_option("--unet-config", o.unet_config, "U-Net config.json");
  app.add_option("--vae", o.vae, "AutoencoderKL safetensors (latent models)");
  app.add_option("--vae-config", o.vae_config, "AutoencoderKL config.json");
  app.add_option("--text-encoder", o.text_encoder, "CLIP text model safetensors");
  app.add_option("--tokens", o.tokens, "CLIP token ids of the prompt (spaces or commas)");
  app.add_option("--context", o.context, "text condition [L, context_dim] as .npy");
  app.add_option("--mnist", o.mnist, "the mnist-ddpm checkpoint (pixel space, no VAE)");
  app.add_option("--sampler", o.sampler, "ddpm, ddim, euler or euler_a")
      ->check(CLI::IsMember({"ddpm", "ddim", "euler", "euler_a"}));
  app.add_option("--steps", o.steps, "sampling steps")->check(CLI::Range(1, 1000));
  app.add_option("--guidance", o.guidance, "classifier-free guidance scale (1: none)");
  app.add_option("--eta", o.eta, "DDIM eta");
  app.add_option("--seed", o.seed, "random seed");
  app.add_option("--batch", o.batch, "images")->check(CLI::Range(1, 64));
  app.add_option("--size", o.size, "image side in pixels (default 512 latent, 64 pixel models)");
  app.add_option("--class", o.label, "class label (class-conditional U-Nets)");
  app.add_option("--schedule", o.schedule, "linear, scaled_linear or cosine")
      ->check(CLI::IsMember({"linear", "scaled_linear", "cosine"}));
  app.add_option("--beta-start", o.beta_start, "first beta");
  app.add_option("--beta-end", o.beta_end, "last beta");
  app.add_option("--prediction", o.prediction, "epsilon or v")
      ->check(CLI::IsMember({"epsilon", "v"}));
  app.add_option("--threads", o.threads, "threads (0: all)");
  app.add_option("--out", o.out, "output PNG");
  CLI11_PARSE(app, argc, argv);
  if (o.threads > 0) set_num_threads(o.threads);
  return o.mnist.empty() ? run_unet(o) : run_mnist(o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "tessel-diffuse: %s\n", e.what());
  return 1;
}
