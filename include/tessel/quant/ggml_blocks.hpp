#pragma once
// The GGUF / ggml 32-element block formats: q4_0, q4_1, q5_0, q5_1, q8_0, q8_1.
//
// Layouts are bit-compatible with the GGUF specification, so blocks read from a .gguf file can
// be viewed as arrays of these structs. In the 4- and 5-bit formats element j (j < 16) is the
// low nibble of qs[j] and element j + 16 its high nibble; the 5th bit of element j is bit j of
// the 32-bit little-endian qh.

#include <algorithm>
#include <cstring>

#include "common.hpp"

namespace tessel {

/// 8-bit symmetric: x = d * q, q in [-127, 127]. 8.5 bits per weight.
struct q8_0 {
  static constexpr index_t block_elems = 32;
  static constexpr std::size_t block_bytes = 34;
  static constexpr std::string_view name = "q8_0";
  using vec_dot_type = q8_0;

  f16 d;
  std::int8_t qs[32];

  static void quantize_row(const float* x, q8_0* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, x += 32) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
      const float d = amax / 127.f;
      const float id = d != 0 ? 1.f / d : 0.f;
      y[i].d = qdetail::tof16(d);
      for (int j = 0; j < 32; ++j)
        y[i].qs[j] = static_cast<std::int8_t>(qdetail::nearest_int(x[j] * id));
    }
  }
  static void dequantize_row(const q8_0* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, y += 32) {
      const float d = qdetail::f16f(x[i].d);
      for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(x[i].qs[j]);
    }
  }
};

/// q8_0 plus s = d * sum(q): the activation format of the asymmetric _1 formats, whose min
/// term then needs no pass over the quants. 9 bits per weight.
struct q8_1 {
  static constexpr index_t block_elems = 32;
  static constexpr std::size_t block_bytes = 36;
  static constexpr std::string_view name = "q8_1";
  using vec_dot_type = q8_1;

  f16 d;
  f16 s;
  std::int8_t qs[32];

  static void quantize_row(const float* x, q8_1* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, x += 32) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
      const float d = amax / 127.f;
      const float id = d != 0 ? 1.f / d : 0.f;
      int sum = 0;
      for (int j = 0; j < 32; ++j) {
        const int q = qdetail::nearest_int(x[j] * id);
        y[i].qs[j] = static_cast<std::int8_t>(q);
        sum += q;
      }
      y[i].d = qdetail::tof16(d);
      y[i].s = qdetail::tof16(d * static_cast<float>(sum));
    }
  }
  static void dequantize_row(const q8_1* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, y += 32) {
      const float d = qdetail::f16f(x[i].d);
      for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(x[i].qs[j]);
    }
  }
};

namespace qdetail {
// The value of largest magnitude (with its sign), min and max of a block.
inline float signed_absmax(const float* x, int n) {
  float amax = 0, v = 0;
  for (int j = 0; j < n; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), v = x[j];
  return v;
}
}  // namespace qdetail

/// 4-bit symmetric: x = d * (q - 8), q in [0, 15]. 4.5 bits per weight.
struct q4_0 {
  static constexpr index_t block_elems = 32;
  static constexpr std::size_t block_bytes = 18;
  static constexpr std::string_view name = "q4_0";
  using vec_dot_type = q8_0;

  f16 d;
  std::uint8_t qs[16];

  static void quantize_row(const float* x, q4_0* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, x += 32) {
      // The extreme value maps to -8 exactly, which uses the one extra negative level.
      const float d = qdetail::signed_absmax(x, 32) / -8.f;
      const float id = d != 0 ? 1.f / d : 0.f;
      y[i].d = qdetail::tof16(d);
      for (int j = 0; j < 16; ++j) {
        const int a = std::clamp(qdetail::nearest_int(x[j] * id) + 8, 0, 15);
        const int b = std::clamp(qdetail::nearest_int(x[j + 16] * id) + 8, 0, 15);
        y[i].qs[j] = static_cast<std::uint8_t>(a | (b << 4));
      }
    }
  }
  static void dequantize_row(const q4_0* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, y += 32) {
      const float d = qdetail::f16f(x[i].d);
      for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>((x[i].qs[j] & 15) - 8);
        y[j + 16] = d * static_cast<float>((x[i].qs[j] >> 4) - 8);
      }
    }
  }
};

/// 4-bit asymmetric: x = d * q + m, q in [0, 15]. 5 bits per weight.
struct q4_1 {
  static constexpr index_t block_elems = 32;
  static constexpr std::size_t block_bytes = 20;
  static constexpr std::string_view name = "q4_1";
  using vec_dot_type = q8_1;

  f16 d;
  f16 m;
  std::uint8_t qs[16];

  static void quantize_row(const float* x, q4_1* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, x += 32) {
      const float lo = *std::min_element(x, x + 32), hi = *std::max_element(x, x + 32);
      const float d = (hi - lo) / 15.f;
      const float id = d != 0 ? 1.f / d : 0.f;
      y[i].d = qdetail::tof16(d);
      y[i].m = qdetail::tof16(lo);
      for (int j = 0; j < 16; ++j) {
        const int a = std::clamp(qdetail::nearest_int((x[j] - lo) * id), 0, 15);
        const int b = std::clamp(qdetail::nearest_int((x[j + 16] - lo) * id), 0, 15);
        y[i].qs[j] = static_cast<std::uint8_t>(a | (b << 4));
      }
    }
  }
  static void dequantize_row(const q4_1* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, y += 32) {
      const float d = qdetail::f16f(x[i].d), m = qdetail::f16f(x[i].m);
      for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(x[i].qs[j] & 15) + m;
        y[j + 16] = d * static_cast<float>(x[i].qs[j] >> 4) + m;
      }
    }
  }
};

/// 5-bit symmetric: x = d * (q - 16), q in [0, 31]. 5.5 bits per weight.
struct q5_0 {
  static constexpr index_t block_elems = 32;
  static constexpr std::size_t block_bytes = 22;
  static constexpr std::string_view name = "q5_0";
  using vec_dot_type = q8_0;

  f16 d;
  std::uint8_t qh[4];
  std::uint8_t qs[16];

  static void quantize_row(const float* x, q5_0* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, x += 32) {
      const float d = qdetail::signed_absmax(x, 32) / -16.f;
      const float id = d != 0 ? 1.f / d : 0.f;
      y[i].d = qdetail::tof16(d);
      std::uint32_t qh = 0;
      for (int j = 0; j < 16; ++j) {
        const int a = std::clamp(qdetail::nearest_int(x[j] * id) + 16, 0, 31);
        const int b = std::clamp(qdetail::nearest_int(x[j + 16] * id) + 16, 0, 31);
        y[i].qs[j] = static_cast<std::uint8_t>((a & 15) | ((b & 15) << 4));
        qh |= static_cast<std::uint32_t>(a >> 4) << j;
        qh |= static_cast<std::uint32_t>(b >> 4) << (j + 16);
      }
      std::memcpy(y[i].qh, &qh, 4);
    }
  }
  static void dequantize_row(const q5_0* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, y += 32) {
      const float d = qdetail::f16f(x[i].d);
      std::uint32_t qh;
      std::memcpy(&qh, x[i].qh, 4);
      for (int j = 0; j < 16; ++j) {
        const int a = (x[i].qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
        const int b = (x[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * static_cast<float>(a - 16);
        y[j + 16] = d * static_cast<float>(b - 16);
      }
    }
  }
};

/// 5-bit asymmetric: x = d * q + m, q in [0, 31]. 6 bits per weight.
struct q5_1 {
  static constexpr index_t block_elems = 32;
  static constexpr std::size_t block_bytes = 24;
  static constexpr std::string_view name = "q5_1";
  using vec_dot_type = q8_1;

  f16 d;
  f16 m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];

  static void quantize_row(const float* x, q5_1* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, x += 32) {
      const float lo = *std::min_element(x, x + 32), hi = *std::max_element(x, x + 32);
      const float d = (hi - lo) / 31.f;
      const float id = d != 0 ? 1.f / d : 0.f;
      y[i].d = qdetail::tof16(d);
      y[i].m = qdetail::tof16(lo);
      std::uint32_t qh = 0;
      for (int j = 0; j < 16; ++j) {
        const int a = std::clamp(qdetail::nearest_int((x[j] - lo) * id), 0, 31);
        const int b = std::clamp(qdetail::nearest_int((x[j + 16] - lo) * id), 0, 31);
        y[i].qs[j] = static_cast<std::uint8_t>((a & 15) | ((b & 15) << 4));
        qh |= static_cast<std::uint32_t>(a >> 4) << j;
        qh |= static_cast<std::uint32_t>(b >> 4) << (j + 16);
      }
      std::memcpy(y[i].qh, &qh, 4);
    }
  }
  static void dequantize_row(const q5_1* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / 32; ++i, y += 32) {
      const float d = qdetail::f16f(x[i].d), m = qdetail::f16f(x[i].m);
      std::uint32_t qh;
      std::memcpy(&qh, x[i].qh, 4);
      for (int j = 0; j < 16; ++j) {
        const int a = (x[i].qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
        const int b = (x[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * static_cast<float>(a) + m;
        y[j + 16] = d * static_cast<float>(b) + m;
      }
    }
  }
};

static_assert(sizeof(q8_0) == 34 && sizeof(q8_1) == 36 && sizeof(q4_0) == 18 &&
                  sizeof(q4_1) == 20 && sizeof(q5_0) == 22 && sizeof(q5_1) == 24,
              "ggml block sizes");

}  // namespace tessel
