// Sampler against formulas: greedy is argmax; with temperature T the draw frequencies follow
// softmax(logits / T) restricted to the top-k / top-p / min-p set and renormalized; a seed
// reproduces its tokens; the repetition penalty divides positive and multiplies negative logits.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <vector>

#include "tessel/generate/sampler.hpp"

using tessel::Sampler;
using tessel::SamplerOptions;

namespace {

// Draw frequencies of n samples from logits log(p) (fresh copy each time: sample modifies).
std::vector<double> freqs(SamplerOptions o, const std::vector<float>& p, int n = 40000) {
  Sampler s(static_cast<tessel::index_t>(p.size()), o);
  std::vector<double> f(p.size(), 0.0);
  std::vector<float> l(p.size());
  for (int i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < p.size(); ++k) l[k] = std::log(p[k]);
    f[std::size_t(s.sample<int>(l))] += 1.0 / n;
  }
  return f;
}

const std::vector<float> probs = {0.1f, 0.5f, 0.2f, 0.15f, 0.05f};

}  // namespace

TEST_CASE("greedy is the argmax, lowest id on ties") {
  Sampler s(4);
  std::vector<float> l = {0.5f, 2.0f, 2.0f, -1.0f};
  CHECK(s.sample<int>(l) == 1);
  SamplerOptions o;
  o.temperature = 0.7f;
  o.top_k = 1;  // one candidate: the argmax whatever the draw
  Sampler k1(4, o);
  for (int i = 0; i < 20; ++i) {
    std::vector<float> m = {0.5f, 2.0f, 1.0f, -1.0f};
    CHECK(k1.sample<int>(m) == 1);
  }
}

TEST_CASE("temperature 1 draws softmax(logits); temperature 0.5 draws p^2 renormalized") {
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 11;
  auto f = freqs(o, probs);
  for (std::size_t k = 0; k < probs.size(); ++k)
    CHECK(f[k] == doctest::Approx(probs[k]).epsilon(0.06));
  o.temperature = 0.5f;
  f = freqs(o, probs);
  double z = 0;
  for (float p : probs) z += double(p) * p;
  for (std::size_t k = 0; k < probs.size(); ++k)
    CHECK(f[k] == doctest::Approx(double(probs[k]) * probs[k] / z).epsilon(0.06));
}

TEST_CASE("top-k, top-p and min-p keep the right set and renormalize") {
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 5;
  SUBCASE("top-k 2: tokens 1 and 2") {
    o.top_k = 2;
    const auto f = freqs(o, probs);
    CHECK(f[0] + f[3] + f[4] == 0.0);
    CHECK(f[1] == doctest::Approx(0.5 / 0.7).epsilon(0.03));
  }
  SUBCASE("top-p 0.75: 0.5 + 0.2 < 0.75 <= 0.5 + 0.2 + 0.15, so tokens 1, 2, 3") {
    o.top_p = 0.75f;
    const auto f = freqs(o, probs);
    CHECK(f[0] + f[4] == 0.0);
    CHECK(f[3] == doctest::Approx(0.15 / 0.85).epsilon(0.06));
  }
  SUBCASE("min-p 0.25: tokens with p >= 0.125, so 1, 2, 3") {
    o.min_p = 0.25f;
    const auto f = freqs(o, probs);
    CHECK(f[0] + f[4] == 0.0);
    CHECK(f[1] == doctest::Approx(0.5 / 0.85).epsilon(0.03));
  }
}

TEST_CASE("a seed reproduces its tokens; another seed gives others") {
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 42;
  const auto run = [&](std::uint64_t seed) {
    o.seed = seed;
    Sampler s(5, o);
    std::vector<int> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> l(probs.size());
      for (std::size_t k = 0; k < l.size(); ++k) l[k] = std::log(probs[k]);
      out.push_back(s.sample<int>(l));
    }
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
}

TEST_CASE("repetition penalty: positive logits divided, negative multiplied, once per token") {
  SamplerOptions o;
  o.repetition_penalty = 2.0f;
  Sampler s(3, o);
  std::vector<float> l = {3.0f, 1.9f, -1.0f};
  const std::array<int, 3> hist = {0, 2, 0};
  CHECK(s.sample<int>(l, std::span<const int>(hist)) == 1);  // 3 / 2 = 1.5 < 1.9
  CHECK(l[0] == 1.5f);
  CHECK(l[2] == -2.0f);
  o.penalty_window = 1;  // only the last token (0) counts
  Sampler w(3, o);
  std::vector<float> m = {3.0f, 1.9f, -1.0f};
  w.sample<int>(m, std::span<const int>(hist));
  CHECK(m[2] == -1.0f);
}

TEST_CASE("bad options and sizes are value errors") {
  SamplerOptions o;
  o.top_p = 0.0f;
  CHECK_THROWS_AS(Sampler(4, o), tessel::value_error);
  o = {};
  o.temperature = -1.0f;
  CHECK_THROWS_AS(Sampler(4, o), tessel::value_error);
  CHECK_THROWS_AS(Sampler(0), tessel::value_error);
  Sampler s(4);
  std::vector<float> l(3);
  CHECK_THROWS_AS(s.sample<int>(l), tessel::value_error);
}
