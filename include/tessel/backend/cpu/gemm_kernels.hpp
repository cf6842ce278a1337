#pragma once
// Building blocks of the SIMD SGEMM (backend/cpu/gemm.hpp): weight loads that widen f16/bf16
// to f32, panel packing, and the register-blocked micro-kernel.
//
// Layout (GotoBLAS/BLIS): C[M,N] += A[M,K] * B[K,N] is cut into KC-deep rank-k updates. A
// block of A (MC x KC) is packed into slivers of MR rows stored k-major (MR floats per k), a
// block of B (KC x NC) into slivers of NR columns stored k-major (NR floats per k). The
// micro-kernel keeps an MR x NR tile of C in registers and does one rank-1 update per k: NR/W
// vector loads of B, MR broadcasts of A, MR*NR/W FMAs.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "tessel/backend/tags.hpp"
#include "tessel/backend/thread_pool.hpp"
#include "tessel/core/numeric.hpp"

#if defined(__AVX__) || defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace tessel::detail {

/// Weight element types the GEMM accepts for B (A and C are always f32).
template <class T>
inline constexpr bool is_gemm_weight_v =
    std::is_same_v<T, float> || std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

/// Register tile of the micro-kernel for one instruction set: MR rows of C times NV vectors.
/// MR * NV accumulators plus NV loads of B and one broadcast of A must fit the register file
/// (16 vector registers below AVX-512, 32 with it); at least ~8 independent FMA chains are
/// needed to cover FMA latency (4 cycles) on two FMA pipes. Measured with AVX2 (one thread,
/// f32): 6x16 runs at 99% of peak FMA from L1 and 87-90% in a 1024-2048 GEMM; 4x24 at 95% and
/// 76-81%. With AVX-512, 14x32 runs at 93% from L1 (28 accumulators of 32 registers).
template <class Arch>
struct gemm_tile {
  static constexpr int W = static_cast<int>(xsimd::batch<float, Arch>::size);
  static constexpr int MR = W >= 16 ? 14 : 6;
  static constexpr int NV = 2;
  static constexpr int NR = NV * W;
};

/// A 64-byte aligned scratch buffer that only grows (one per thread, reused across calls).
struct scratch_buffer {
  float* data = nullptr;
  std::size_t size = 0;
  scratch_buffer() = default;
  scratch_buffer(const scratch_buffer&) = delete;
  scratch_buffer& operator=(const scratch_buffer&) = delete;
  ~scratch_buffer() { std::free(data); }
  float* get(std::size_t n) {
    if (n > size) {
      std::free(data);
      data = nullptr;
      size = 0;
      const std::size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data) throw std::bad_alloc();
      size = n;
    }
    return data;
  }
};

inline scratch_buffer& thread_scratch(int which) {
  thread_local scratch_buffer buffers[2];
  return buffers[which];
}

// ---- widening loads ----------------------------------------------------------------------

template <class T>
inline float weight_to_f32(T x) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else if constexpr (std::is_same_v<T, bf16>) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(x.bits) << 16);
  } else {
    return to_f32(x);
  }
}

/// W consecutive weights as one f32 batch (unaligned).
template <class Arch, class T>
inline xsimd::batch<float, Arch> load_f32(const T* p) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W = batch::size;
  if constexpr (std::is_same_v<T, float>) {
    return batch::load_unaligned(p);
  } else {
#if defined(__AVX512F__)  // only lets the intrinsics compile: Arch chooses the path
    if constexpr (arch_has_avx512f_v<Arch> && W == 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      // The maskz forms: GCC 12's unmasked ones start from _mm512_undefined_*() and trip
      // -Wmaybe-uninitialized (GCC bug 105593) under -Werror.
      constexpr __mmask16 all = 0xffff;
      if constexpr (std::is_same_v<T, f16>) {
        return batch(_mm512_maskz_cvtph_ps(all, h));
      } else {
        return batch(_mm512_castsi512_ps(
            _mm512_maskz_slli_epi32(all, _mm512_maskz_cvtepu16_epi32(all, h), 16)));
      }
    }
#endif
#if defined(__AVX2__) && defined(__F16C__)
    if constexpr (arch_has_avx2_v<Arch> && W == 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      if constexpr (std::is_same_v<T, f16>) {
        return batch(_mm256_cvtph_ps(h));
      } else {
        return batch(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
      }
    }
#endif
    alignas(64) float tmp[W];
    for (std::size_t i = 0; i < W; ++i) tmp[i] = weight_to_f32(p[i]);
    return batch::load_aligned(tmp);
  }
}

// ---- packing -----------------------------------------------------------------------------

#if defined(__AVX2__)
inline void transpose8(__m256 r[8]) noexcept;
#endif

/// Packs rows [0, mc) x columns [0, kc) of A (row-major, stride lda) into MR-row slivers,
/// zero-padding the last sliver to MR rows. When Arch has AVX2, 8 columns of up to 8 rows at a
/// time go through an in-register transpose (reads stay contiguous along k; measured on the
/// 1.1B f16 prefill, the scalar loop took 2-3% of the time).
template <class Arch, int MR>
inline void pack_a(index_t mc, index_t kc, const float* A, index_t lda, float* out) noexcept {
  for (index_t i0 = 0; i0 < mc; i0 += MR) {
    const index_t rows = std::min<index_t>(MR, mc - i0);
    const float* src = A + i0 * lda;
    index_t k0 = 0;
#if defined(__AVX2__)  // only lets the intrinsics compile: Arch chooses the path
    if constexpr (arch_has_avx2_v<Arch>)
      for (; k0 + 8 <= kc; k0 += 8) {
        for (int g = 0; g < MR; g += 8) {
          const int n = std::min(8, MR - g);  // rows of the sliver this group fills
          __m256 r[8];
          for (int i = 0; i < 8; ++i)
            r[i] = i < n && g + i < rows ? _mm256_loadu_ps(src + (g + i) * lda + k0)
                                         : _mm256_setzero_ps();
          transpose8(r);
          if (n == 8) {
            for (int i = 0; i < 8; ++i) _mm256_storeu_ps(out + (k0 + i) * MR + g, r[i]);
          } else {
            const __m256i mask =
                _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            for (int i = 0; i < 8; ++i) _mm256_maskstore_ps(out + (k0 + i) * MR + g, mask, r[i]);
          }
        }
      }
#endif
    for (index_t k = k0; k < kc; ++k)
      for (int r = 0; r < MR; ++r) out[k * MR + r] = r < rows ? src[r * lda + k] : 0.0f;
    out += MR * kc;
  }
}

/// Packs B[k, n] for k in [0, kc), n in [0, nc) into NR-column slivers, zero-padding the last
/// one. B is row-major [K, N] (trans_b = false): each sliver row is a contiguous copy.
template <class Arch, int NR, class T>
inline void pack_b_rows(index_t kc, index_t nc, const T* B, index_t ldb, float* out) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(batch::size);
  for (index_t j0 = 0; j0 < nc; j0 += NR) {
    const index_t cols = std::min<index_t>(NR, nc - j0);
    if (cols == NR) {
      for (index_t k = 0; k < kc; ++k) {
        const T* src = B + k * ldb + j0;
        for (int v = 0; v < NR / W; ++v)
          load_f32<Arch>(src + v * W).store_aligned(out + k * NR + v * W);
      }
    } else {
      for (index_t k = 0; k < kc; ++k) {
        const T* src = B + k * ldb + j0;
        for (index_t j = 0; j < NR; ++j) out[k * NR + j] = j < cols ? weight_to_f32(src[j]) : 0.0f;
      }
    }
    out += NR * kc;
  }
}

#if defined(__AVX__)
/// 8 consecutive weights widened to f32, for the AVX transposes below (F16C and AVX2's
/// widening where Arch has AVX2).
template <class Arch, class T>
inline __m256 load8_f32(const T* p) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_loadu_ps(p);
  } else {
#if defined(__AVX2__) && defined(__F16C__)  // only lets the intrinsics compile
    if constexpr (arch_has_avx2_v<Arch>) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      if constexpr (std::is_same_v<T, f16>) {
        return _mm256_cvtph_ps(h);
      } else {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      }
    }
#endif
    alignas(32) float tmp[8];
    for (int i = 0; i < 8; ++i) tmp[i] = weight_to_f32(p[i]);
    return _mm256_load_ps(tmp);
  }
}

/// In-register 8x8 transpose: r[i][j] -> r[j][i].
inline void transpose8(__m256 r[8]) noexcept {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#endif

/// Packs like pack_b_rows, but from B stored transposed, [N, K] (trans_b = true, the layout of
/// a Linear layer's weight): B[k, n] = Bt[n * ldb + k]. When Arch has AVX, full 8x8 blocks go
/// through an in-register transpose (reads stay contiguous along k), the rest element by element.
template <class Arch, int NR, class T>
inline void pack_b_cols(index_t kc, index_t nc, const T* Bt, index_t ldb, float* out) noexcept {
  for (index_t j0 = 0; j0 < nc; j0 += NR) {
    const index_t cols = std::min<index_t>(NR, nc - j0);
    index_t k0 = 0;
#if defined(__AVX__)  // only lets the intrinsics compile: Arch chooses the path
    if constexpr (arch_has_avx_v<Arch> && NR % 8 == 0) {
      if (cols == NR)
        for (; k0 + 8 <= kc; k0 += 8) {
          for (int jb = 0; jb < NR; jb += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; ++i) r[i] = load8_f32<Arch>(Bt + (j0 + jb + i) * ldb + k0);
            transpose8(r);
            for (int i = 0; i < 8; ++i) _mm256_store_ps(out + (k0 + i) * NR + jb, r[i]);
          }
        }
    }
#endif
    for (index_t j = 0; j < NR; ++j) {
      const T* src = Bt + (j0 + j) * ldb;
      for (index_t k = k0; k < kc; ++k) out[k * NR + j] = j < cols ? weight_to_f32(src[k]) : 0.0f;
    }
    out += NR * kc;
  }
}

// ---- micro-kernel ------------------------------------------------------------------------

/// C[0:m, 0:n] = beta * C + Ap * Bp for one MR x NR tile (m <= MR, n <= NR): kc rank-1
/// updates from packed slivers, then one pass over C. beta == 0 never reads C (it may hold NaN).
template <class Arch>
inline void micro_kernel(index_t kc, const float* __restrict Ap, const float* __restrict Bp,
                         float* C, index_t ldc, float beta, index_t m, index_t n) noexcept {
  using batch = xsimd::batch<float, Arch>;
  using tile = gemm_tile<Arch>;
  constexpr int MR = tile::MR, NV = tile::NV, W = tile::W, NR = tile::NR;
  // C is touched only after kc * MR * NV FMAs; fetching it now hides a cache miss per row
  // that would otherwise stall the stores (C is re-read once per KC block).
  if (beta != 0.0f) {
    for (index_t r = 0; r < m; ++r) {
      __builtin_prefetch(C + r * ldc, 1, 3);
      __builtin_prefetch(C + r * ldc + n - 1, 1, 3);
    }
  }
  // The r / v loops are unrolled explicitly: at -O2 GCC would otherwise keep acc in memory.
  batch acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = batch(0.0f);
#pragma GCC unroll 4
  for (index_t k = 0; k < kc; ++k) {
    // The B sliver (KC x NR floats, 64 KiB with 14 x 32 tiles) does not stay in L1 beside the A
    // micro-panel: fetch it 16 rank-1 updates ahead (measured, 1 thread, M = 512 f16 weights:
    // +0-10%, median +3% over five LLM shapes; A ahead as well: no better).
    if constexpr (NR * sizeof(float) >= 128) {
      __builtin_prefetch(Bp + 16 * NR, 0, 3);
      __builtin_prefetch(Bp + 16 * NR + 64 / sizeof(float), 0, 3);
    }
    batch b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = batch::load_aligned(Bp + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const batch a(Ap[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(a, b[v], acc[r][v]);
    }
    Ap += MR;
    Bp += NR;
  }
  if (m == MR && n == NR) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      float* c = C + r * ldc;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if (beta == 0.0f) {
          acc[r][v].store_unaligned(c + v * W);
        } else if (beta == 1.0f) {
          (batch::load_unaligned(c + v * W) + acc[r][v]).store_unaligned(c + v * W);
        } else {
          xsimd::fma(batch(beta), batch::load_unaligned(c + v * W), acc[r][v])
              .store_unaligned(c + v * W);
        }
      }
    }
  } else {
    alignas(64) float t[MR * NR];
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v].store_aligned(t + r * NR + v * W);
    for (index_t r = 0; r < m; ++r) {
      float* c = C + r * ldc;
      for (index_t j = 0; j < n; ++j)
        c[j] = beta == 0.0f ? t[r * NR + j] : beta * c[j] + t[r * NR + j];
    }
  }
}

}  // namespace tessel::detail
