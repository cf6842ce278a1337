#pragma once
// The GGUF K-quant formats (256-element super-blocks): q2_k, q3_k, q4_k, q5_k, q6_k, and the
// activation format q8_k. Layouts are bit-compatible with GGUF / ggml.
//
// Each format has `unpack` (block -> integer levels and sub-block scales, in element order) and
// `pack` (the inverse), so the quantizer, the dequantizer and the scalar dot products all read
// the bit layout through one place.
//
// Quantization searches the scales: for each sub-block a grid of candidate inverse scales is
// tried, the levels are rounded for each, and the (scale[, min]) pair is solved in closed form by
// weighted least squares for those levels; the best fit wins. The sub-block scales are then
// quantized to the format's 4/6/8 bits against a super-block scale, and the levels re-rounded
// with the scales actually stored, so the rounding of the scales is compensated.

#include <algorithm>
#include <array>
#include <cstring>

#include "common.hpp"

namespace tessel {

inline constexpr index_t qk_k = 256;  // elements per K-quant super-block

namespace qdetail {

/// Symmetric: x ~ s * L with L in [-nmax, nmax - 1], minimizing sum w (x - s L)^2. Writes L + nmax.
inline float fit_symmetric(int n, int nmax, const float* x, const float* w, std::uint8_t* L) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
  if (amax < 1e-30f) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<std::uint8_t>(nmax);
    return 0.f;
  }
  float best_score = -1, best_scale = 0;
  int l[256];
  auto score_for = [&](float iscale, float& scale) {
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
      l[i] = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      sumlx += w[i] * x[i] * static_cast<float>(l[i]);
      suml2 += w[i] * static_cast<float>(l[i] * l[i]);
    }
    scale = suml2 > 0 ? sumlx / suml2 : 0.f;
    return suml2 > 0 ? sumlx * sumlx / suml2 : 0.f;  // error reduction of the LS fit
  };
  // The extreme value on the negative side uses the extra level (-nmax).
  for (int k = -9; k <= 9; ++k) {
    float scale;
    const float s =
        score_for(-(static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / vmax, scale);
    if (s > best_score) best_score = s, best_scale = scale;
  }
  // Alternate rounding and re-fitting until the levels settle.
  for (int it = 0; it < 5 && best_scale != 0; ++it) {
    float scale;
    const float s = score_for(1.f / best_scale, scale);
    if (s <= best_score * (1 + 1e-7f)) break;
    best_score = s, best_scale = scale;
  }
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<std::uint8_t>(
        std::clamp(best_scale != 0 ? nearest_int(x[i] / best_scale) : 0, -nmax, nmax - 1) + nmax);
  return best_scale;
}

/// Asymmetric: x ~ s * L - m with L in [0, nmax], s >= 0, m >= 0 (so the min is <= 0, as the
/// K-quant formula x = d*sc*q - dmin*m requires). Weighted least squares over a grid of
/// candidate inverse scales. Returns s; writes m and L.
inline float fit_asymmetric(int n, int nmax, const float* x, const float* w, std::uint8_t* L,
                            float& m_out) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  lo = std::min(lo, 0.f);
  if (hi <= lo) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    m_out = -lo;
    return 0.f;
  }
  float sw = 0, sx = 0;
  for (int i = 0; i < n; ++i) sw += w[i], sx += w[i] * x[i];
  float best_err = 0, best_s = (hi - lo) / static_cast<float>(nmax), best_m = lo;
  for (int i = 0; i < n; ++i) {
    const int q = std::clamp(nearest_int((x[i] - lo) / best_s), 0, nmax);
    const float e = best_s * static_cast<float>(q) + lo - x[i];
    best_err += w[i] * e * e;
  }
  int l[256];
  for (int k = 0; k <= 20; ++k) {
    const float iscale =
        (static_cast<float>(nmax) - 1.f + 0.1f * static_cast<float>(k)) / (hi - lo);
    float sl = 0, sll = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
      l[i] = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      const float fl = static_cast<float>(l[i]);
      sl += w[i] * fl, sll += w[i] * fl * fl, slx += w[i] * fl * x[i];
    }
    const float det = sw * sll - sl * sl;
    if (det <= 0) continue;
    float s = (sw * slx - sx * sl) / det, mn = (sll * sx - sl * slx) / det;
    if (mn > 0) mn = 0, s = slx / sll;  // the format cannot store a positive min
    if (s <= 0) continue;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float e = s * static_cast<float>(l[i]) + mn - x[i];
      err += w[i] * e * e;
    }
    if (err < best_err) best_err = err, best_s = s, best_m = mn;
  }
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<std::uint8_t>(std::clamp(nearest_int((x[i] - best_m) / best_s), 0, nmax));
  m_out = -best_m;
  return best_s;
}

/// Quantize non-negative sub-block scales to `bits` unsigned levels of a shared step d.
template <int N>
inline float quantize_scales_unsigned(const float* s, int bits, std::uint8_t* ls) {
  const float smax = *std::max_element(s, s + N);
  const int lmax = (1 << bits) - 1;
  if (smax <= 0) {
    for (int j = 0; j < N; ++j) ls[j] = 0;
    return 0.f;
  }
  const float d = f16f(tof16(smax / static_cast<float>(lmax)));
  for (int j = 0; j < N; ++j)
    ls[j] = static_cast<std::uint8_t>(std::clamp(d > 0 ? nearest_int(s[j] / d) : 0, 0, lmax));
  return d;
}

/// Re-round levels with the stored (quantized) scale and min of a sub-block.
inline void requantize_asym(int n, int nmax, const float* x, float dl, float ml, std::uint8_t* L) {
  for (int i = 0; i < n; ++i)
    L[i] =
        static_cast<std::uint8_t>(std::clamp(dl > 0 ? nearest_int((x[i] + ml) / dl) : 0, 0, nmax));
}
inline void requantize_sym(int n, int nmax, const float* x, float dl, std::uint8_t* L) {
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<std::uint8_t>(
        std::clamp(dl != 0 ? nearest_int(x[i] / dl) : 0, -nmax, nmax - 1) + nmax);
}

// 6-bit scale/min pairs of q4_k and q5_k, 8 of each packed into 12 bytes.
inline void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}
inline void set_scale_min_k4(const std::uint8_t* ls, const std::uint8_t* lm, std::uint8_t* q) {
  std::memset(q, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = ls[j];
      q[j + 4] = lm[j];
    } else {
      q[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      q[j - 4] |= static_cast<std::uint8_t>((ls[j] >> 4) << 6);
      q[j] |= static_cast<std::uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// Per-element weights of the fits: sizable elements matter more, but small ones still count.
inline void kquant_weights(const float* x, float* w) {
  float s2 = 0;
  for (int i = 0; i < qk_k; ++i) s2 += x[i] * x[i];
  const float av = std::sqrt(s2 / static_cast<float>(qk_k));
  for (int i = 0; i < qk_k; ++i) w[i] = av + std::fabs(x[i]);
}

}  // namespace qdetail

/// 8-bit activation format of the K-quants: f32 scale, and the sums of each 16 quants.
struct q8_k {
  static constexpr index_t block_elems = qk_k;
  static constexpr std::size_t block_bytes = 292;
  static constexpr std::string_view name = "q8_k";
  using vec_dot_type = q8_k;

  float d;
  std::int8_t qs[256];
  std::int16_t bsums[16];

  static void quantize_row(const float* x, q8_k* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, x += qk_k) {
      const float v = qdetail::signed_absmax(x, qk_k);
      q8_k& b = y[i];
      if (v == 0) {
        std::memset(&b, 0, sizeof b);
        continue;
      }
      // The extreme value maps to -128 exactly (the extra negative level).
      const float iscale = -128.f / v;
      for (int j = 0; j < qk_k; ++j)
        b.qs[j] = static_cast<std::int8_t>(std::min(127, qdetail::nearest_int(iscale * x[j])));
      for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int j = 0; j < 16; ++j) s += b.qs[16 * g + j];
        b.bsums[g] = static_cast<std::int16_t>(s);
      }
      b.d = 1.f / iscale;
    }
  }
  static void dequantize_row(const q8_k* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k)
      for (int j = 0; j < qk_k; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
  }
};

/// 2-bit asymmetric: 16 sub-blocks of 16, 4-bit scale and min each. x = d*sc*q - dmin*m.
/// 2.625 bits per weight.
struct q2_k {
  static constexpr index_t block_elems = qk_k;
  static constexpr std::size_t block_bytes = 84;
  static constexpr std::string_view name = "q2_k";
  using vec_dot_type = q8_k;

  std::uint8_t scales[16];  // low nibble: scale, high nibble: min
  std::uint8_t qs[64];
  f16 d;
  f16 dmin;

  /// q[e] in [0, 3]; sub-block e / 16.
  void unpack(std::uint8_t* q) const {
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) q[128 * h + 32 * j + l] = (qs[32 * h + l] >> (2 * j)) & 3;
  }
  void pack(const std::uint8_t* q) {
    std::memset(qs, 0, sizeof qs);
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l)
          qs[32 * h + l] |= static_cast<std::uint8_t>(q[128 * h + 32 * j + l] << (2 * j));
  }

  static void quantize_row(const float* x, q2_k* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, x += qk_k) {
      std::uint8_t L[256], ls[16], lm[16];
      float w[256], s[16], m[16];
      for (int j = 0; j < qk_k; ++j) w[j] = std::fabs(x[j]);
      for (int j = 0; j < 16; ++j)
        s[j] = qdetail::fit_asymmetric(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, m[j]);
      const float d = qdetail::quantize_scales_unsigned<16>(s, 4, ls);
      const float dmin = qdetail::quantize_scales_unsigned<16>(m, 4, lm);
      for (int j = 0; j < 16; ++j) {
        y[i].scales[j] = static_cast<std::uint8_t>(ls[j] | (lm[j] << 4));
        qdetail::requantize_asym(16, 3, x + 16 * j, d * ls[j], dmin * lm[j], L + 16 * j);
      }
      y[i].d = qdetail::tof16(d);
      y[i].dmin = qdetail::tof16(dmin);
      y[i].pack(L);
    }
  }
  static void dequantize_row(const q2_k* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k) {
      std::uint8_t q[256];
      x[i].unpack(q);
      const float d = qdetail::f16f(x[i].d), dmin = qdetail::f16f(x[i].dmin);
      for (int e = 0; e < qk_k; ++e) {
        const int sc = x[i].scales[e / 16];
        y[e] = d * static_cast<float>(sc & 15) * q[e] - dmin * static_cast<float>(sc >> 4);
      }
    }
  }
};

/// 3-bit symmetric: 16 sub-blocks of 16 with 6-bit signed scales. x = d*(sc-32)*q, q in
/// [-4, 3] (2 low bits in qs, the high bit in hmask, set meaning "not minus 4").
/// 3.4375 bits per weight.
struct q3_k {
  static constexpr index_t block_elems = qk_k;
  static constexpr std::size_t block_bytes = 110;
  static constexpr std::string_view name = "q3_k";
  using vec_dot_type = q8_k;

  std::uint8_t hmask[32];
  std::uint8_t qs[64];
  std::uint8_t scales[12];
  f16 d;

  /// q[e] in [-4, 3]; sub-block e / 16.
  void unpack(std::int8_t* q) const {
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) {
          const int lo = (qs[32 * h + l] >> (2 * j)) & 3;
          const int hb = (hmask[l] >> (4 * h + j)) & 1;
          q[128 * h + 32 * j + l] = static_cast<std::int8_t>(lo - (hb ? 0 : 4));
        }
  }
  void pack(const std::int8_t* q) {
    std::memset(qs, 0, sizeof qs);
    std::memset(hmask, 0, sizeof hmask);
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) {
          const int v = q[128 * h + 32 * j + l] + 4;  // [0, 7]
          qs[32 * h + l] |= static_cast<std::uint8_t>((v & 3) << (2 * j));
          hmask[l] |= static_cast<std::uint8_t>((v >> 2) << (4 * h + j));
        }
  }
  /// 6-bit scale fields in [0, 63] (the signed scale is the field minus 32).
  int scale(int j) const {
    const int lo = j < 8 ? scales[j] & 15 : scales[j - 8] >> 4;
    const int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | (hi << 4);
  }
  void set_scales(const int* l) {
    std::memset(scales, 0, sizeof scales);
    for (int j = 0; j < 16; ++j) {
      if (j < 8)
        scales[j] = static_cast<std::uint8_t>(l[j] & 15);
      else
        scales[j - 8] |= static_cast<std::uint8_t>((l[j] & 15) << 4);
      scales[8 + j % 4] |= static_cast<std::uint8_t>((l[j] >> 4) << (2 * (j / 4)));
    }
  }

  static void quantize_row(const float* x, q3_k* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, x += qk_k) {
      std::uint8_t L[256];
      float w[256], s[16];
      qdetail::kquant_weights(x, w);
      for (int j = 0; j < 16; ++j)
        s[j] = qdetail::fit_symmetric(16, 4, x + 16 * j, w + 16 * j, L + 16 * j);
      // Signed 6-bit scales: the largest magnitude maps to -32 (the extra negative level).
      const float smax = qdetail::signed_absmax(s, 16);
      int ls[16];
      float d = 0;
      if (smax != 0) {
        const float iscale = -32.f / smax;
        d = qdetail::f16f(qdetail::tof16(1.f / iscale));
        for (int j = 0; j < 16; ++j)
          ls[j] = std::clamp(qdetail::nearest_int(s[j] / d), -32, 31) + 32;
      } else {
        for (int j = 0; j < 16; ++j) ls[j] = 32;
      }
      std::int8_t q[256];
      for (int j = 0; j < 16; ++j) {
        qdetail::requantize_sym(16, 4, x + 16 * j, d * static_cast<float>(ls[j] - 32), L + 16 * j);
        for (int l = 0; l < 16; ++l) q[16 * j + l] = static_cast<std::int8_t>(L[16 * j + l] - 4);
      }
      y[i].d = qdetail::tof16(d);
      y[i].set_scales(ls);
      y[i].pack(q);
    }
  }
  static void dequantize_row(const q3_k* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k) {
      std::int8_t q[256];
      x[i].unpack(q);
      const float d = qdetail::f16f(x[i].d);
      for (int j = 0; j < 16; ++j) {
        const float dl = d * static_cast<float>(x[i].scale(j) - 32);
        for (int l = 0; l < 16; ++l) y[16 * j + l] = dl * q[16 * j + l];
      }
    }
  }
};

/// 4-bit asymmetric: 8 sub-blocks of 32, 6-bit scale and min each. x = d*sc*q - dmin*m.
/// 4.5 bits per weight.
struct q4_k {
  static constexpr index_t block_elems = qk_k;
  static constexpr std::size_t block_bytes = 144;
  static constexpr std::string_view name = "q4_k";
  using vec_dot_type = q8_k;

  f16 d;
  f16 dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[128];

  /// q[e] in [0, 15]; sub-block e / 32.
  void unpack(std::uint8_t* q) const {
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        q[64 * c + l] = qs[32 * c + l] & 15;
        q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
      }
  }
  void pack(const std::uint8_t* q) {
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        qs[32 * c + l] = static_cast<std::uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
  }

  static void quantize_row(const float* x, q4_k* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, x += qk_k) {
      std::uint8_t L[256], ls[8], lm[8];
      float w[256], s[8], m[8];
      qdetail::kquant_weights(x, w);
      for (int j = 0; j < 8; ++j)
        s[j] = qdetail::fit_asymmetric(32, 15, x + 32 * j, w + 32 * j, L + 32 * j, m[j]);
      const float d = qdetail::quantize_scales_unsigned<8>(s, 6, ls);
      const float dmin = qdetail::quantize_scales_unsigned<8>(m, 6, lm);
      for (int j = 0; j < 8; ++j)
        qdetail::requantize_asym(32, 15, x + 32 * j, d * ls[j], dmin * lm[j], L + 32 * j);
      y[i].d = qdetail::tof16(d);
      y[i].dmin = qdetail::tof16(dmin);
      qdetail::set_scale_min_k4(ls, lm, y[i].scales);
      y[i].pack(L);
    }
  }
  static void dequantize_row(const q4_k* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k) {
      std::uint8_t q[256];
      x[i].unpack(q);
      const float d = qdetail::f16f(x[i].d), dmin = qdetail::f16f(x[i].dmin);
      for (int j = 0; j < 8; ++j) {
        std::uint8_t sc, m;
        qdetail::get_scale_min_k4(j, x[i].scales, sc, m);
        const float dl = d * sc, ml = dmin * m;
        for (int l = 0; l < 32; ++l) y[32 * j + l] = dl * q[32 * j + l] - ml;
      }
    }
  }
};

/// 5-bit asymmetric: q4_k plus a high bit per element. 5.5 bits per weight.
struct q5_k {
  static constexpr index_t block_elems = qk_k;
  static constexpr std::size_t block_bytes = 176;
  static constexpr std::string_view name = "q5_k";
  using vec_dot_type = q8_k;

  f16 d;
  f16 dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];
  std::uint8_t qs[128];

  /// q[e] in [0, 31]; sub-block e / 32.
  void unpack(std::uint8_t* q) const {
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        q[64 * c + l] =
            static_cast<std::uint8_t>((qs[32 * c + l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4));
        q[64 * c + 32 + l] =
            static_cast<std::uint8_t>((qs[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4));
      }
  }
  void pack(const std::uint8_t* q) {
    std::memset(qh, 0, sizeof qh);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int a = q[64 * c + l], b = q[64 * c + 32 + l];
        qs[32 * c + l] = static_cast<std::uint8_t>((a & 15) | ((b & 15) << 4));
        qh[l] |= static_cast<std::uint8_t>(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
      }
  }

  static void quantize_row(const float* x, q5_k* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, x += qk_k) {
      std::uint8_t L[256], ls[8], lm[8];
      float w[256], s[8], m[8];
      qdetail::kquant_weights(x, w);
      for (int j = 0; j < 8; ++j)
        s[j] = qdetail::fit_asymmetric(32, 31, x + 32 * j, w + 32 * j, L + 32 * j, m[j]);
      const float d = qdetail::quantize_scales_unsigned<8>(s, 6, ls);
      const float dmin = qdetail::quantize_scales_unsigned<8>(m, 6, lm);
      for (int j = 0; j < 8; ++j)
        qdetail::requantize_asym(32, 31, x + 32 * j, d * ls[j], dmin * lm[j], L + 32 * j);
      y[i].d = qdetail::tof16(d);
      y[i].dmin = qdetail::tof16(dmin);
      qdetail::set_scale_min_k4(ls, lm, y[i].scales);
      y[i].pack(L);
    }
  }
  static void dequantize_row(const q5_k* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k) {
      std::uint8_t q[256];
      x[i].unpack(q);
      const float d = qdetail::f16f(x[i].d), dmin = qdetail::f16f(x[i].dmin);
      for (int j = 0; j < 8; ++j) {
        std::uint8_t sc, m;
        qdetail::get_scale_min_k4(j, x[i].scales, sc, m);
        const float dl = d * sc, ml = dmin * m;
        for (int l = 0; l < 32; ++l) y[32 * j + l] = dl * q[32 * j + l] - ml;
      }
    }
  }
};

/// 6-bit symmetric: 16 sub-blocks of 16 with int8 scales. x = d*sc*(q-32), q in [0, 63].
/// 6.5625 bits per weight.
struct q6_k {
  static constexpr index_t block_elems = qk_k;
  static constexpr std::size_t block_bytes = 210;
  static constexpr std::string_view name = "q6_k";
  using vec_dot_type = q8_k;

  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  f16 d;

  /// q[e] in [-32, 31]; sub-block e / 16.
  void unpack(std::int8_t* q) const {
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const std::uint8_t* L = ql + 64 * h;
        const int H = qh[32 * h + l];
        std::int8_t* o = q + 128 * h + l;
        o[0] = static_cast<std::int8_t>(((L[l] & 15) | ((H & 3) << 4)) - 32);
        o[32] = static_cast<std::int8_t>(((L[l + 32] & 15) | (((H >> 2) & 3) << 4)) - 32);
        o[64] = static_cast<std::int8_t>(((L[l] >> 4) | (((H >> 4) & 3) << 4)) - 32);
        o[96] = static_cast<std::int8_t>(((L[l + 32] >> 4) | (((H >> 6) & 3) << 4)) - 32);
      }
  }
  void pack(const std::int8_t* q) {
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const std::int8_t* s = q + 128 * h + l;
        const int a = s[0] + 32, b = s[32] + 32, c = s[64] + 32, e = s[96] + 32;
        ql[64 * h + l] = static_cast<std::uint8_t>((a & 15) | ((c & 15) << 4));
        ql[64 * h + l + 32] = static_cast<std::uint8_t>((b & 15) | ((e & 15) << 4));
        qh[32 * h + l] = static_cast<std::uint8_t>((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) |
                                                   ((e >> 4) << 6));
      }
  }

  static void quantize_row(const float* x, q6_k* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, x += qk_k) {
      std::uint8_t L[256];
      float w[256], s[16];
      qdetail::kquant_weights(x, w);
      for (int j = 0; j < 16; ++j)
        s[j] = qdetail::fit_symmetric(16, 32, x + 16 * j, w + 16 * j, L + 16 * j);
      const float smax = qdetail::signed_absmax(s, 16);
      float d = 0;
      int ls[16] = {};
      if (smax != 0) {
        d = qdetail::f16f(qdetail::tof16(smax / -128.f));
        for (int j = 0; j < 16; ++j) ls[j] = std::clamp(qdetail::nearest_int(s[j] / d), -128, 127);
      }
      std::int8_t q[256];
      for (int j = 0; j < 16; ++j) {
        y[i].scales[j] = static_cast<std::int8_t>(ls[j]);
        qdetail::requantize_sym(16, 32, x + 16 * j, d * static_cast<float>(ls[j]), L + 16 * j);
        for (int l = 0; l < 16; ++l) q[16 * j + l] = static_cast<std::int8_t>(L[16 * j + l] - 32);
      }
      y[i].d = qdetail::tof16(d);
      y[i].pack(q);
    }
  }
  static void dequantize_row(const q6_k* x, float* y, index_t n) {
    qdetail::check_row(name, n, block_elems);
    for (index_t i = 0; i < n / qk_k; ++i, y += qk_k) {
      std::int8_t q[256];
      x[i].unpack(q);
      const float d = qdetail::f16f(x[i].d);
      for (int e = 0; e < qk_k; ++e) y[e] = d * static_cast<float>(x[i].scales[e / 16]) * q[e];
    }
  }
};

static_assert(sizeof(q8_k) == 292 && sizeof(q2_k) == 84 && sizeof(q3_k) == 110 &&
                  sizeof(q4_k) == 144 && sizeof(q5_k) == 176 && sizeof(q6_k) == 210,
              "ggml K-quant block sizes");

}  // namespace tessel
