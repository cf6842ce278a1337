#pragma once
// NF4 (QLoRA, Dettmers et al. 2023): 64-element blocks, absmax scale, 16 levels placed at the
// quantiles of a standard normal (normalized to [-1, 1], with an exact zero).
//
// Double quantization (QLoRA section 3) stores the per-block absmax values of 256 consecutive
// blocks as 8-bit codes: the mean of all absmax values is subtracted and each group of 256 gets
// one f32 scale. `nf4_double_quant` holds that compact form; `double_quantize` also writes the
// decoded absmax values back into the blocks, so kernels compute with exactly what a reader of
// the compact form would reconstruct.

#include <algorithm>
#include <span>
#include <vector>

#include "common.hpp"

namespace tessel {

/// The 16 NF4 levels, as published with QLoRA.
inline constexpr float nf4_levels[16] = {-1.0f,
                                         -0.6961928009986877f,
                                         -0.5250730514526367f,
                                         -0.39491748809814453f,
                                         -0.28444138169288635f,
                                         -0.18477343022823334f,
                                         -0.09105003625154495f,
                                         0.0f,
                                         0.07958029955625534f,
                                         0.16093020141124725f,
                                         0.24611230194568634f,
                                         0.33791524171829224f,
                                         0.44070982933044434f,
                                         0.5626170039176941f,
                                         0.7229568362236023f,
                                         1.0f};

/// x = absmax * nf4_levels[q]. Element j < 32 is the low nibble of qs[j], j + 32 the high one.
/// 4.5 bits per weight (4.127 with double-quantized scales).
struct nf4 {
  static constexpr index_t block_elems = 64;
  static constexpr std::size_t block_bytes = 36;
  static constexpr std::string_view name = "nf4";
  using vec_dot_type = float;  // f32 dot, dequantized in registers

  float absmax;
  std::uint8_t qs[32];

  static int nearest_level(float v) noexcept {
    // Midpoints between neighbouring levels decide; the table is sorted.
    int q = 0;
    for (int k = 1; k < 16; ++k)
      if (v > 0.5f * (nf4_levels[k - 1] + nf4_levels[k])) q = k;
    return q;
  }
  static void quantize_row(const float* x, nf4* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 64; ++i, x += 64) {
      float amax = 0;
      for (int j = 0; j < 64; ++j) amax = std::max(amax, std::fabs(x[j]));
      const float id = amax > 0 ? 1.f / amax : 0.f;
      y[i].absmax = amax;
      for (int j = 0; j < 32; ++j)
        y[i].qs[j] = static_cast<std::uint8_t>(nearest_level(x[j] * id) |
                                               (nearest_level(x[j + 32] * id) << 4));
    }
  }
  static void dequantize_row(const nf4* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 64; ++i, y += 64)
      for (int j = 0; j < 32; ++j) {
        y[j] = x[i].absmax * nf4_levels[x[i].qs[j] & 15];
        y[j + 32] = x[i].absmax * nf4_levels[x[i].qs[j] >> 4];
      }
  }
};
static_assert(sizeof(nf4) == 36);

/// The compact second-level form of the absmax values of a run of nf4 blocks.
struct nf4_double_quant {
  static constexpr index_t group = 256;  // blocks per second-level scale
  float offset = 0;                      // mean absmax, subtracted before quantizing
  std::vector<float> scale;              // one per group
  std::vector<std::int8_t> code;         // one per block

  /// Bytes of scale storage (vs 4 per block without double quantization).
  std::size_t bytes() const noexcept { return 4 + scale.size() * 4 + code.size(); }
  float absmax(std::size_t block) const noexcept {
    return offset + scale[block / group] * static_cast<float>(code[block]);
  }
};

/// Quantizes the absmax values of `blocks` to 8 bits and writes the decoded values back.
inline nf4_double_quant double_quantize(std::span<nf4> blocks) {
  nf4_double_quant dq;
  const std::size_t n = blocks.size();
  if (n == 0) return dq;
  double sum = 0;
  for (const nf4& b : blocks) sum += b.absmax;
  dq.offset = static_cast<float>(sum / static_cast<double>(n));
  dq.code.resize(n);
  dq.scale.resize((n + nf4_double_quant::group - 1) / nf4_double_quant::group);
  for (std::size_t g = 0; g < dq.scale.size(); ++g) {
    const std::size_t lo = g * nf4_double_quant::group;
    const std::size_t hi = std::min(n, lo + nf4_double_quant::group);
    float amax = 0;
    for (std::size_t k = lo; k < hi; ++k)
      amax = std::max(amax, std::fabs(blocks[k].absmax - dq.offset));
    const float s = amax / 127.f;
    dq.scale[g] = s;
    for (std::size_t k = lo; k < hi; ++k) {
      const int c = s > 0 ? qdetail::nearest_int((blocks[k].absmax - dq.offset) / s) : 0;
      dq.code[k] = static_cast<std::int8_t>(std::clamp(c, -127, 127));
      blocks[k].absmax = dq.absmax(k);
    }
  }
  return dq;
}

}  // namespace tessel
