#pragma once
// Rotary position embedding with precomputed tables. Pair i of a head (i < rot_dim/2) is
// rotated by the angle pos · theta^(−2i / rot_dim); the pair is (2i, 2i+1) for
// RopeStyle::adjacent and (i, i + rot_dim/2) for RopeStyle::half_split. Dimensions from rot_dim
// to head_dim are left alone (partial rotary). Angles are computed in f32 as llama2.c does.

#include <vector>

#include "common.hpp"
#include "tessel/ops/rope.hpp"

namespace tessel::nn {

class Rope {
 public:
  Rope(index_t head_dim, index_t rot_dim, index_t max_seq, float theta, RopeStyle style)
      : head_dim_(head_dim), half_(rot_dim / 2), max_seq_(max_seq), style_(style) {
    if (rot_dim <= 0 || rot_dim % 2 != 0 || rot_dim > head_dim)
      throw value_error("tessel::nn::Rope: rotary dimensions " + std::to_string(rot_dim) +
                        " must be even and in (0, head_dim " + std::to_string(head_dim) + "]");
    if (max_seq <= 0 || !(theta > 0))
      throw value_error("tessel::nn::Rope: max_seq and theta must be > 0");
    cos_.resize(std::size_t(max_seq * half_));
    sin_.resize(cos_.size());
    for (index_t p = 0; p < max_seq; ++p)
      for (index_t i = 0; i < half_; ++i) {
        const float freq =
            1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(rot_dim));
        const float a = static_cast<float>(p) * freq;
        cos_[std::size_t(p * half_ + i)] = std::cos(a);
        sin_[std::size_t(p * half_ + i)] = std::sin(a);
      }
  }

  index_t max_seq() const noexcept { return max_seq_; }
  RopeStyle style() const noexcept { return style_; }

  /// Rotates n_heads consecutive heads of v (each head_dim long) for position pos.
  template <class Backend>
  void apply(Backend, float* v, index_t n_heads, index_t pos) const {
    if (pos < 0 || pos >= max_seq_)
      throw value_error("tessel::nn::Rope: position " + std::to_string(pos) +
                        " is outside the table of " + std::to_string(max_seq_));
    kernel<op::rope_rows, Backend>::run(v, n_heads, head_dim_, half_, cos_.data() + pos * half_,
                                        sin_.data() + pos * half_, style_ == RopeStyle::adjacent);
  }

 private:
  index_t head_dim_, half_, max_seq_;
  RopeStyle style_;
  std::vector<float> cos_, sin_;
};

}  // namespace tessel::nn
