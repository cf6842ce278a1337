#pragma once
// GEMM on Intel AMX tiles for weights that are not f32: f16 and bf16 weights in gemm<cpu>, and
// the f32 tiles that qgemm<cpu> dequantizes from the block formats. Used when the translation
// unit is compiled for AMX-BF16 and AVX512-BF16 (-march=native on Sapphire Rapids and later),
// tessel::cpu is the AVX-512 backend, and Linux grants the process the tile state; otherwise
// the f32 SGEMM runs.
//
//   C[M,N] = A[M,K] · op(B) + beta · C      A, C f32 row-major; B f32 / f16 / bf16
//
// Precision. The tiles multiply bf16 (8 significant bits) exactly and accumulate in f32
// (TDPBF16PS), so operands are split into bf16 parts: x = x1 + x2 + x3, x1 = bf16(x),
// x2 = bf16(x - x1), x3 = bf16(x - x1 - x2). Three parts hold an f32 exactly; two hold 16 bits.
//   exact_a_one_b  bf16 weights (exact in one part): A1 B1 + A2 B1 + A3 B1, the f32 product.
//   exact_a_two_b  f16 weights (11 bits: exact in two parts): A1 B1 + A1 B2 + A2 B2 + A2 B1 +
//                  A3 B1; the dropped A3 B2 is below 2^-26 of each product, so the result
//                  meets the f32 GEMM's error bound (tests/test_gemm.cpp checks it).
//   two_a_two_b    qgemm's dequantized weights (an f16 scale times a small integer: exact in
//                  two parts; the K-quants' scale-and-min values within 2^-17): A1 B1 + A1 B2
//                  + A2 B1, each product within about 2^-16 of exact (A keeps 16 bits), the
//                  bound tests/test_quant_kernels.cpp holds quantized GEMMs to (2e-5 of
//                  sum |w x|). Three tile products instead of five.
//
// Layout: tiles are 16 rows of 64 bytes. A is packed once per call, whole, as [16-row panel]
// [32-deep k step][16][32] bf16 per part; a panel of B (KC x NC) as [16-column panel][k step]
// [16 k pairs][16 columns][2] bf16 ("VNNI" pairs), shared by the threads. The micro-kernel keeps
// a 32 x 32 block of C in tiles 0-3 and loads two A and two B tiles (4-7) per part product;
// K is padded with zeros to a multiple of 32.
//
// Measured (M = 512, f16 weights, 2048 x 2048, 2 threads): 690 GFLOP/s against 372 for the
// AVX-512 f32 SGEMM on the widened weights; 1.1B Llama prefill 1.8-1.9x faster (see
// docs/performance.md).
//
//   TESSEL_AMX=0 in the environment turns the path off (A/B measurements, bisecting).

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tessel/backend/cpu/gemm_kernels.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/numeric.hpp"

#if defined(__x86_64__) && defined(__linux__) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && \
    defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__F16C__)
#define TESSEL_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace tessel::detail {

#if defined(TESSEL_AMX)

/// True when the tiles may be used: Linux hands out the 8 KiB tile state only on request
/// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA), once per process.
inline bool amx_usable() {
  static const bool ok = [] {
    if (const char* e = std::getenv("TESSEL_AMX"); e && std::string_view(e) == "0") return false;
    constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return ::syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
  }();
  return ok;
}

namespace amx {

using u16 = std::uint16_t;
inline constexpr index_t KS = 32;  // k per tile step (bf16 pairs: 16 rows of 64 bytes)
// Blocking, measured at M = 512, f16 2048 x 2048, one thread (GFLOP/s): MC / KC / NC =
// 128 / 1024 / 256 466-484, 128 / 512 / 512 416-420, 128 / 256 / 512 351-358, 256 / 512 / 256
// 376-379, 128 / 2048 / 128 330-340 (C is re-read K / KC times; the B panel stays in L2).
inline constexpr index_t MC = 128;   // rows of C per task block
inline constexpr index_t KC = 1024;  // depth of a rank-k update
inline constexpr index_t NC = 256;   // columns of B per packed panel

/// Tiles 0-7 all 16 rows x 64 bytes.
struct alignas(64) tile_config {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

/// Loads the tile configuration on this thread for the length of a scope.
struct tile_scope {
  tile_scope() noexcept {
    static const tile_config cfg{};
    _tile_loadconfig(&cfg);
  }
  ~tile_scope() { _tile_release(); }
  tile_scope(const tile_scope&) = delete;
  tile_scope& operator=(const tile_scope&) = delete;
};

/// 16 f32 (or fewer, zero-filled) widened from T.
template <class T>
inline __m512 load16(const T* p, int n) noexcept {
  const __mmask16 m = n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1);
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_loadu_ps(m, p);
  } else if constexpr (std::is_same_v<T, f16>) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  } else {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
  }
}

/// 32 f32 (x0: elements 0-15, x1: 16-31) rounded to bf16 in element order; x0 and x1 become
/// the residuals (exact in f32). Three steps represent any f32 exactly.
inline __m512i split_step(__m512& x0, __m512& x1) noexcept {
  const __m512i h = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(x1, x0));
  const __m512 h0 =
      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
  const __m512 h1 = _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16));
  x0 = _mm512_sub_ps(x0, h0);
  x1 = _mm512_sub_ps(x1, h1);
  return h;
}
inline void split32(__m512 x0, __m512 x1, __m512i& hi, __m512i& lo) noexcept {
  hi = split_step(x0, x1);
  lo = split_step(x0, x1);
}

/// Packs rows [0, mc) (mc <= 32) x depth [0, kc) of A (f32, stride lda) into two 16-row tile
/// panels per part, each `steps` k steps long (panel 1 at +steps * 512, part p at +p * part);
/// missing rows and depth are zero. parts 3: A exactly (hi + mid + lo); 2: 16 bits of it.
inline void pack_a(index_t mc, index_t kc, const float* A, index_t lda, u16* out,
                   std::ptrdiff_t part, int parts, index_t steps) noexcept {
  for (index_t m = 0; m < 32; ++m) {
    u16* h = out + (m / 16) * steps * 512 + (m % 16) * 32;
    for (index_t s = 0; s < steps; ++s) {
      __m512i v1 = _mm512_setzero_si512(), v2 = v1, v3 = v1;
      const index_t k = s * KS, n = std::clamp<index_t>(kc - k, 0, KS);
      if (m < mc && n > 0) {
        const float* a = A + m * lda + k;
        __m512 x0 = load16(a, static_cast<int>(std::min<index_t>(n, 16)));
        __m512 x1 = load16(a + 16, static_cast<int>(std::max<index_t>(n - 16, 0)));
        v1 = split_step(x0, x1);
        v2 = split_step(x0, x1);
        if (parts == 3) v3 = split_step(x0, x1);
      }
      _mm512_store_si512(h + s * 512, v1);
      _mm512_store_si512(h + part + s * 512, v2);
      if (parts == 3) _mm512_store_si512(h + 2 * part + s * 512, v3);
    }
  }
}

/// Transposes 16 x 16 32-bit words in place (r[i] word j <-> r[j] word i).
inline void transpose16(__m512i* r) noexcept {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4g + j], 128-bit lane L: words 4L + j of rows 4g .. 4g + 3.
  __m512i u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
    const __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_i32x4(v0, w0, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(v0, w0, 0xdd);
    r[4 + j] = _mm512_shuffle_i32x4(v1, w1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(v1, w1, 0xdd);
  }
}

/// Packs columns [0, cols) (cols <= 16) x depth [0, kc) of op(B) into one 16-column panel of
/// VNNI pairs: word (kp, n, j) = B(k = 2 kp + j, n). with_lo: also the residuals.
template <class T>
inline void pack_b16(index_t kc, index_t cols, const T* B, index_t ldb, bool trans_b, bool with_lo,
                     u16* hi, u16* lo) noexcept {
  const index_t ks = (kc + KS - 1) / KS;
  if (trans_b) {
    // Rows n of B are contiguous in k: split each into pairs (one 32-bit word per pair), then
    // transpose 16 x 16 words per k step.
    for (index_t s = 0; s < ks; ++s) {
      const index_t k = s * KS, n = std::min<index_t>(KS, kc - k);
      __m512i vh[16], vl[16];
      for (index_t c = 0; c < 16; ++c) {
        vh[c] = vl[c] = _mm512_setzero_si512();
        if (c < cols) {
          const T* b = B + c * ldb + k;
          split32(load16(b, static_cast<int>(std::min<index_t>(n, 16))),
                  load16(b + 16, static_cast<int>(std::max<index_t>(n - 16, 0))), vh[c], vl[c]);
        }
      }
      transpose16(vh);
      for (int kp = 0; kp < 16; ++kp) _mm512_store_si512(hi + s * 512 + kp * 32, vh[kp]);
      if (with_lo) {
        transpose16(vl);
        for (int kp = 0; kp < 16; ++kp) _mm512_store_si512(lo + s * 512 + kp * 32, vl[kp]);
      }
    }
  } else {
    // Rows k of B are contiguous in n: two rows interleave word by word.
    const __m512i inter =
        _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (index_t s = 0; s < ks; ++s)
      for (int kp = 0; kp < 16; ++kp) {
        const index_t k0 = s * KS + 2 * kp;
        const int c = static_cast<int>(cols);
        const __m512 r0 = k0 < kc ? load16(B + k0 * ldb, c) : _mm512_setzero_ps();
        const __m512 r1 = k0 + 1 < kc ? load16(B + (k0 + 1) * ldb, c) : _mm512_setzero_ps();
        __m512i vh, vl;
        split32(r0, r1, vh, vl);
        _mm512_store_si512(hi + s * 512 + kp * 32, _mm512_permutexvar_epi16(inter, vh));
        if (with_lo)
          _mm512_store_si512(lo + s * 512 + kp * 32, _mm512_permutexvar_epi16(inter, vl));
      }
  }
}

/// C block (32 x 32 at c, stride ldc floats) += the packed product over ks k steps, as the sum
/// of the part products listed in Terms (pairs {A part, B part}). a0 / a1: the two A panels
/// (part p at +p * ap), b0 / b1: the two B panels (part p at +p * bp). load: C holds partial
/// sums (else it is overwritten).
template <int... Terms>
inline void kernel_32x32(index_t ks, const u16* a0, const u16* a1, std::ptrdiff_t ap, const u16* b0,
                         const u16* b1, std::ptrdiff_t bp, float* c, index_t ldc,
                         bool load) noexcept {
  const auto ld = static_cast<long>(ldc * 4);
  if (load) {
    _tile_loadd(0, c, ld);
    _tile_loadd(1, c + 16, ld);
    _tile_loadd(2, c + 16 * ldc, ld);
    _tile_loadd(3, c + 16 * ldc + 16, ld);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  constexpr int terms[] = {Terms...};
  for (index_t s = 0; s < ks; ++s) {
    const index_t o = s * 512;
    int la = -1, lb = -1;  // parts in tiles 4-5 and 6-7
    for (std::size_t t = 0; t < sizeof(terms) / sizeof(int); t += 2) {
      if (terms[t] != la) {
        la = terms[t];
        _tile_loadd(4, a0 + la * ap + o, 64);
        _tile_loadd(5, a1 + la * ap + o, 64);
      }
      if (terms[t + 1] != lb) {
        lb = terms[t + 1];
        _tile_loadd(6, b0 + lb * bp + o, 64);
        _tile_loadd(7, b1 + lb * bp + o, 64);
      }
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, ld);
  _tile_stored(1, c + 16, ld);
  _tile_stored(2, c + 16 * ldc, ld);
  _tile_stored(3, c + 16 * ldc + 16, ld);
}

/// The part products of one precision mode (see the top of this file).
enum class precision { exact_a_one_b, exact_a_two_b, two_a_two_b };
template <precision P>
inline void kernel(index_t ks, const u16* a0, const u16* a1, std::ptrdiff_t ap, const u16* b0,
                   const u16* b1, std::ptrdiff_t bp, float* c, index_t ldc, bool load) noexcept {
  if constexpr (P == precision::exact_a_one_b) {
    kernel_32x32<0, 0, 1, 0, 2, 0>(ks, a0, a1, ap, b0, b1, bp, c, ldc, load);
  } else if constexpr (P == precision::exact_a_two_b) {
    kernel_32x32<0, 0, 0, 1, 1, 1, 1, 0, 2, 0>(ks, a0, a1, ap, b0, b1, bp, c, ldc, load);
  } else {
    kernel_32x32<0, 0, 0, 1, 1, 0>(ks, a0, a1, ap, b0, b1, bp, c, ldc, load);
  }
}

/// C = A op(B) + beta C through the tiles (see the top of this file). P: which parts of A and
/// B are multiplied; B's second part is packed only when P uses it.
template <precision P, class T>
void gemm(index_t M, index_t N, index_t K, const float* A, index_t lda, const T* B, index_t ldb,
          bool trans_b, float* C, index_t ldc, float beta) {
  constexpr int a_parts = P == precision::two_a_two_b ? 2 : 3;
  constexpr bool b_lo = P != precision::exact_a_one_b;
  if (beta != 0.0f && beta != 1.0f) {
    for (index_t i = 0; i < M; ++i)
      for (index_t j = 0; j < N; ++j) C[i * ldc + j] *= beta;
    beta = 1.0f;
  }
  const index_t nt = num_threads();
  index_t n_ic = (M + MC - 1) / MC;
  if (nt > 1) n_ic = (n_ic + nt - 1) / nt * nt;
  const index_t mc_step = std::min(MC, ((M + n_ic - 1) / n_ic + 31) / 32 * 32);
  n_ic = (M + mc_step - 1) / mc_step;

  // A is packed once, whole (its 16-row panels hold all of K), shared by the threads.
  const index_t ks_all = (K + KS - 1) / KS, m_pad = (M + 31) / 32 * 32;
  const std::size_t a_part = static_cast<std::size_t>(m_pad * ks_all * KS);
  u16* const Ap = reinterpret_cast<u16*>(thread_scratch(0).get((a_part * a_parts + 1) / 2));
  const auto ap = static_cast<std::ptrdiff_t>(a_part);
  parallel_for(0, m_pad / 32, 1, [&](index_t lo, index_t hi) {
    for (index_t p = lo; p < hi; ++p)
      pack_a(std::min<index_t>(32, M - 32 * p), K, A + 32 * p * lda, lda, Ap + 2 * p * ks_all * 512,
             ap, a_parts, ks_all);
  });

  const index_t kc_max = std::min(KC, ks_all * KS);
  const index_t nc_max = (std::min(NC, N) + 31) / 32 * 32;
  // B panel (one or two parts), shared by the threads.
  const std::size_t b_part = static_cast<std::size_t>(kc_max * nc_max);
  u16* const Bp = reinterpret_cast<u16*>(thread_scratch(1).get(b_part));
  const auto bp = static_cast<std::ptrdiff_t>(b_part);

  for (index_t jc = 0; jc < N; jc += NC) {
    const index_t nc = std::min(NC, N - jc);
    const index_t n_pairs = (nc + 31) / 32;
    const index_t n_jg = n_ic >= 2 * nt ? 1 : std::min(n_pairs, (2 * nt + n_ic - 1) / n_ic);
    for (index_t pc = 0; pc < K; pc += KC) {
      const index_t kc = std::min(KC, K - pc), ks = (kc + KS - 1) / KS;
      const bool load = pc > 0 || beta != 0.0f;
      parallel_for(0, n_pairs * 2, 2, [&](index_t lo, index_t hi) {
        for (index_t q = lo; q < hi; ++q) {
          const index_t j = q * 16, cols = std::clamp<index_t>(nc - j, 0, 16);
          u16* out = Bp + q * ks * 512;
          const T* src = trans_b ? B + (jc + j) * ldb + pc : B + pc * ldb + jc + j;
          if (cols > 0) {
            pack_b16(kc, cols, src, ldb, trans_b, b_lo, out, out + bp);
          } else {
            std::fill(out, out + ks * 512, u16{0});
            if (b_lo) std::fill(out + bp, out + bp + ks * 512, u16{0});
          }
        }
      });

      parallel_for(0, n_ic * n_jg, 1, [&](index_t lo, index_t hi) {
        alignas(64) float edge[32 * 32];
        const tile_scope tiles;
        for (index_t t = lo; t < hi; ++t) {
          const index_t ic = (t / n_jg) * mc_step, g = t % n_jg;
          const index_t mc = std::min(mc_step, M - ic);
          const index_t p_lo = n_pairs * g / n_jg, p_hi = n_pairs * (g + 1) / n_jg;
          // Rows outer, columns inner (measured, f16 M = 512: 2048 x 2048 one thread 415-444
          // GFLOP/s against 376-391 columns outer; 5632 x 2048 two threads 731-736 against
          // 686-687). Cutting the depth into L1-sized steps of 64-256 (C re-read per step) was
          // slower: 266-327.
          for (index_t i = 0; i < mc; i += 32) {
            const index_t m = std::min<index_t>(32, mc - i);
            const u16* a0 = Ap + ((ic + i) / 16 * ks_all + pc / KS) * 512;
            const u16* a1 = a0 + ks_all * 512;
            for (index_t p = p_lo; p < p_hi; ++p) {
              const index_t j = p * 32, n = std::min<index_t>(32, nc - j);
              const u16* b0 = Bp + (2 * p) * ks * 512;
              const u16* b1 = b0 + ks * 512;
              float* c = C + (ic + i) * ldc + jc + j;
              if (m == 32 && n == 32) {
                kernel<P>(ks, a0, a1, ap, b0, b1, bp, c, ldc, load);
              } else {
                // Edge block: through a full 32 x 32 buffer.
                for (index_t r = 0; r < 32; ++r)
                  for (index_t q = 0; q < 32; ++q)
                    edge[r * 32 + q] = load && r < m && q < n ? c[r * ldc + q] : 0.0f;
                kernel<P>(ks, a0, a1, ap, b0, b1, bp, edge, 32, true);
                for (index_t r = 0; r < m; ++r)
                  for (index_t q = 0; q < n; ++q) c[r * ldc + q] = edge[r * 32 + q];
              }
            }
          }
        }
      });
    }
  }
}

}  // namespace amx

#else

inline bool amx_usable() {
  return false;
}

#endif

}  // namespace tessel::detail
