#pragma once
// Group-wise integer weights as produced by GPTQ / AWQ: int4 or int8 levels, one f16 scale per
// group of G input features, with a zero point (asymmetric) or without (symmetric).
//
//   int_group<4, 128, true>   x = scale * (q - zero), q in [0, 15], zero in [0, 15]
//   int_group<4, 128, false>  x = scale * (q - 8)
//   int_group<8, 128, true>   x = scale * (q - zero), q in [0, 255]
//   int_group<8, 128, false>  x = scale * (q - 128), q in [1, 255]
//
// int4 packs two levels per byte: element j < G/2 in the low nibble of qs[j], j + G/2 in the
// high nibble. Activation order (GPTQ's g_idx / desc_act): the columns are stored permuted so
// that each group is contiguous; `perm_from_g_idx` gives that permutation and matmul_q takes it
// to gather the activations in the same order.

#include <algorithm>
#include <numeric>
#include <span>
#include <vector>

#include "common.hpp"

namespace tessel {

template <int Bits, index_t G, bool Asym>
struct int_group {
  static_assert(Bits == 4 || Bits == 8, "tessel::int_group: 4 or 8 bits");
  static_assert(G == 32 || G == 64 || G == 128, "tessel::int_group: group size 32, 64 or 128");
  static constexpr index_t block_elems = G;
  static constexpr std::size_t block_bytes = 4 + static_cast<std::size_t>(G * Bits / 8);
  static constexpr std::string_view name =
      Bits == 4 ? (Asym ? "int4_asym" : "int4_sym") : (Asym ? "int8_asym" : "int8_sym");
  static constexpr int qmax = (1 << Bits) - 1;
  static constexpr int mid = 1 << (Bits - 1);
  using vec_dot_type = float;  // f32 dot, dequantized in registers

  f16 scale;
  std::uint8_t zero;  // the zero point (mid when symmetric)
  std::uint8_t pad;
  std::uint8_t qs[G * Bits / 8];

  int level(int j) const noexcept {
    if constexpr (Bits == 8) {
      return qs[j];
    } else {
      return j < G / 2 ? (qs[j] & 15) : (qs[j - G / 2] >> 4);
    }
  }
  void set_level(int j, int q) noexcept {
    if constexpr (Bits == 8) {
      qs[j] = static_cast<std::uint8_t>(q);
    } else if (j < G / 2) {
      qs[j] = static_cast<std::uint8_t>((qs[j] & 0xF0) | q);
    } else {
      qs[j - G / 2] = static_cast<std::uint8_t>((qs[j - G / 2] & 0x0F) | (q << 4));
    }
  }

  static void quantize_row(const float* x, int_group* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / G; ++i, x += G) {
      int_group& b = y[i];
      b = int_group{};
      float s;
      int z;
      if constexpr (Asym) {
        // Min-max (RTN) with the range stretched to include 0, as GPTQ packs it.
        const float lo = std::min(0.f, *std::min_element(x, x + G));
        const float hi = std::max(0.f, *std::max_element(x, x + G));
        s = qdetail::f16f(qdetail::tof16((hi - lo) / static_cast<float>(qmax)));
        z = s > 0 ? std::clamp(qdetail::nearest_int(-lo / s), 0, qmax) : 0;
      } else {
        float amax = 0;
        for (index_t j = 0; j < G; ++j) amax = std::max(amax, std::fabs(x[j]));
        s = qdetail::f16f(qdetail::tof16(amax / static_cast<float>(mid - 1)));
        z = mid;
      }
      b.scale = qdetail::tof16(s);
      b.zero = static_cast<std::uint8_t>(z);
      const float is = s > 0 ? 1.f / s : 0.f;
      const int lo_q = Asym ? 0 : 1;  // symmetric keeps the range balanced: [-mid+1, mid-1]
      for (int j = 0; j < static_cast<int>(G); ++j)
        b.set_level(j, std::clamp(qdetail::nearest_int(x[j] * is) + z, lo_q, qmax));
    }
  }
  static void dequantize_row(const int_group* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / G; ++i, y += G) {
      const float s = qdetail::f16f(x[i].scale);
      for (int j = 0; j < static_cast<int>(G); ++j)
        y[j] = s * static_cast<float>(x[i].level(j) - x[i].zero);
    }
  }
};

template <index_t G>
using int4_group = int_group<4, G, true>;
template <index_t G>
using int4_group_sym = int_group<4, G, false>;
template <index_t G>
using int8_group = int_group<8, G, true>;
template <index_t G>
using int8_group_sym = int_group<8, G, false>;

static_assert(sizeof(int4_group<128>) == 68 && sizeof(int4_group<32>) == 20 &&
              sizeof(int8_group<64>) == 68);

/// The column order that makes GPTQ's g_idx groups contiguous (a stable sort by group), checked
/// to be a valid act-order assignment for group size G: every group has exactly G columns.
inline std::vector<index_t> perm_from_g_idx(std::span<const std::int32_t> g_idx, index_t G) {
  const index_t K = static_cast<index_t>(g_idx.size());
  if (G <= 0 || K % G != 0)
    throw shape_error("tessel::perm_from_g_idx: " + std::to_string(K) +
                      " columns are not a multiple of the group size " + std::to_string(G));
  std::vector<index_t> count(static_cast<std::size_t>(K / G), 0);
  for (std::int32_t g : g_idx) {
    if (g < 0 || g >= K / G)
      throw value_error("tessel::perm_from_g_idx: group index " + std::to_string(g) +
                        " out of range [0, " + std::to_string(K / G) + ")");
    ++count[static_cast<std::size_t>(g)];
  }
  for (index_t c : count)
    if (c != G)
      throw value_error("tessel::perm_from_g_idx: a group has " + std::to_string(c) +
                        " columns, expected " + std::to_string(G));
  std::vector<index_t> perm(static_cast<std::size_t>(K));
  std::iota(perm.begin(), perm.end(), index_t{0});
  std::stable_sort(perm.begin(), perm.end(), [&](index_t a, index_t b) {
    return g_idx[static_cast<std::size_t>(a)] < g_idx[static_cast<std::size_t>(b)];
  });
  return perm;
}

}  // namespace tessel
