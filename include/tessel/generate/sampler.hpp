#pragma once
// Sampler: picks the next token from a row of logits.
//
//   tessel::Sampler s(vocab, {.temperature = 0.8f, .top_p = 0.9f, .seed = 42});
//   token_id next = s.sample(logits, history);   // logits are modified in place
//
// In order: repetition penalty over the last `penalty_window` tokens of history (CTRL /
// llama.cpp form: a positive logit is divided by the penalty, a negative one multiplied);
// temperature 0 is greedy (argmax, lowest id on ties); otherwise logits / temperature, top-k,
// softmax, top-p (the smallest set of most likely tokens whose mass reaches p), min-p (tokens
// below min_p · the largest probability dropped), renormalize, draw. The generator is
// std::mt19937_64 seeded with `seed`, and the draw uses its 53 high bits directly, so a seed
// gives the same tokens on every platform. Buffers are allocated once, by the constructor.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tessel/core/error.hpp"
#include "tessel/core/shape.hpp"

namespace tessel {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: all tokens
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;
  int penalty_window = 64;
  std::uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(index_t vocab, SamplerOptions o = {}) : opt_(o), rng_(o.seed) {
    if (vocab <= 0) throw value_error("tessel::Sampler: vocabulary size must be > 0");
    if (!(o.temperature >= 0) || !(o.top_p > 0 && o.top_p <= 1) ||
        !(o.min_p >= 0 && o.min_p <= 1) || !(o.repetition_penalty > 0) || o.top_k < 0 ||
        o.penalty_window < 0)
      throw value_error(
          "tessel::Sampler: expected temperature >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, "
          "repetition_penalty > 0, top_k >= 0, penalty_window >= 0");
    idx_.resize(std::size_t(vocab));
    prob_.resize(std::size_t(vocab));
    seen_.assign(std::size_t(vocab), 0);
  }

  const SamplerOptions& options() const noexcept { return opt_; }
  void reseed(std::uint64_t seed) { rng_.seed(seed); }

  template <class Id>
  Id sample(std::span<float> logits, std::span<const Id> history = {}) {
    const index_t n = static_cast<index_t>(logits.size());
    if (n != static_cast<index_t>(idx_.size()))
      throw value_error("tessel::Sampler: " + std::to_string(n) + " logits for a vocabulary of " +
                        std::to_string(idx_.size()));
    if (opt_.repetition_penalty != 1.0f) penalize(logits, history);
    if (opt_.temperature == 0.0f) return static_cast<Id>(argmax(logits));

    // Candidates, most likely first: all of them, or the top k.
    for (index_t i = 0; i < n; ++i) idx_[std::size_t(i)] = static_cast<std::int32_t>(i);
    const auto by_logit = [&](std::int32_t a, std::int32_t b) {
      const float la = logits[std::size_t(a)], lb = logits[std::size_t(b)];
      return la > lb || (la == lb && a < b);
    };
    index_t m = n;
    if (opt_.top_k > 0 && opt_.top_k < n) {
      m = opt_.top_k;
      std::partial_sort(idx_.begin(), idx_.begin() + m, idx_.end(), by_logit);
    } else if (opt_.top_p < 1.0f || opt_.min_p > 0.0f) {
      std::sort(idx_.begin(), idx_.end(), by_logit);
    }
    // Softmax of logits / temperature over the candidates (max first when sorted).
    float mx = logits[std::size_t(idx_[0])];
    for (index_t i = 1; i < m; ++i) mx = std::max(mx, logits[std::size_t(idx_[std::size_t(i)])]);
    double sum = 0;
    for (index_t i = 0; i < m; ++i) {
      const float e = std::exp((logits[std::size_t(idx_[std::size_t(i)])] - mx) / opt_.temperature);
      prob_[std::size_t(i)] = e;
      sum += e;
    }
    const bool sorted = m < n || opt_.top_p < 1.0f || opt_.min_p > 0.0f;
    if (sorted) {
      if (opt_.top_p < 1.0f) {  // keep the prefix whose mass reaches top_p
        double c = 0;
        for (index_t i = 0; i < m; ++i) {
          c += prob_[std::size_t(i)] / sum;
          if (c >= opt_.top_p) {
            m = i + 1;
            break;
          }
        }
      }
      if (opt_.min_p > 0.0f) {  // prob_[0] is the largest: its relative probability is 1
        index_t k = 1;
        while (k < m && prob_[std::size_t(k)] >= opt_.min_p * prob_[0]) ++k;
        m = k;
      }
      sum = 0;
      for (index_t i = 0; i < m; ++i) sum += prob_[std::size_t(i)];
    }
    // u in [0, 1) from the 53 high bits: the same on every platform.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
    double c = 0;
    for (index_t i = 0; i < m; ++i) {
      c += prob_[std::size_t(i)];
      if (u < c) return static_cast<Id>(idx_[std::size_t(i)]);
    }
    return static_cast<Id>(idx_[std::size_t(m - 1)]);  // rounding: the last candidate
  }

  /// The index of the largest logit (lowest on ties; a NaN never wins).
  static index_t argmax(std::span<const float> logits) {
    index_t best = 0;
    for (index_t i = 1; i < static_cast<index_t>(logits.size()); ++i)
      if (logits[std::size_t(i)] > logits[std::size_t(best)] ||
          (logits[std::size_t(best)] != logits[std::size_t(best)]))
        best = i;
    return best;
  }

 private:
  template <class Id>
  void penalize(std::span<float> logits, std::span<const Id> history) {
    const std::size_t w = std::min(history.size(), std::size_t(opt_.penalty_window));
    const auto recent = history.subspan(history.size() - w);
    for (Id t : recent) {
      const auto i = static_cast<std::size_t>(t);
      if (i >= seen_.size() || seen_[i]) continue;  // each token penalized once
      seen_[i] = 1;
      float& l = logits[i];
      l = l > 0 ? l / opt_.repetition_penalty : l * opt_.repetition_penalty;
    }
    for (Id t : recent)
      if (static_cast<std::size_t>(t) < seen_.size()) seen_[static_cast<std::size_t>(t)] = 0;
  }

  SamplerOptions opt_;
  std::mt19937_64 rng_;
  std::vector<std::int32_t> idx_;
  std::vector<float> prob_;
  std::vector<unsigned char> seen_;
};

}  // namespace tessel
