#pragma once
// Backends are empty tag types; kernels are found through the customization point
// `kernel<Op, Backend, Formats...>`. A backend without a specialization falls back to the
// next one down (cpu_simd<A> -> cpu_scalar). `cuda` never falls back: a missing CUDA kernel
// is a compile error, not a silent host loop.

#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace tessel {

/// The portable reference: straightforward loops whose only job is to be right.
struct cpu_scalar {
  static constexpr const char* name() { return "cpu_scalar"; }
};

/// SIMD kernels written with xsimd for the instruction set `Arch` (e.g. xsimd::avx2).
template <class Arch>
struct cpu_simd {
  using arch = Arch;
  static constexpr const char* name() { return Arch::name(); }
};

/// CUDA device kernels (only usable from translation units compiled by nvcc).
struct cuda {
  static constexpr const char* name() { return "cuda"; }
};

/// The best CPU backend this translation unit was compiled for: the widest vectors its -march
/// allows (AVX-512 under -march=native on a machine that has it, AVX2 + FMA under
/// -march=x86-64-v3). Define TESSEL_CPU_ARCH (an xsimd architecture type) to pin it, e.g.
/// -DTESSEL_CPU_ARCH='xsimd::fma3<xsimd::avx2>'. Every translation unit of a program must see
/// the same choice.
#if defined(TESSEL_CPU_ARCH)
using cpu_best_arch = TESSEL_CPU_ARCH;
using cpu = cpu_simd<cpu_best_arch>;
#elif XSIMD_WITH_AVX512BW
using cpu_best_arch = xsimd::avx512bw;
using cpu = cpu_simd<cpu_best_arch>;
#elif XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2
using cpu_best_arch = xsimd::fma3<xsimd::avx2>;
using cpu = cpu_simd<cpu_best_arch>;
#elif XSIMD_WITH_SSE2
using cpu_best_arch = xsimd::sse2;
using cpu = cpu_simd<cpu_best_arch>;
#else
using cpu = cpu_scalar;
#endif

/// The backend a model or layer runs on when its user names none: the best CPU backend of this
/// build. Layers and models never name a backend themselves; they take one as a template
/// argument (defaulting to this) and pass it on to every kernel they call.
using default_backend = cpu;

template <class B>
inline constexpr bool is_cpu_backend_v = std::is_same_v<B, cpu_scalar>;
template <class A>
inline constexpr bool is_cpu_backend_v<cpu_simd<A>> = true;
/// True for the SIMD CPU backends cpu_simd<Arch>.
template <class B>
inline constexpr bool is_cpu_simd_v = false;
template <class A>
inline constexpr bool is_cpu_simd_v<cpu_simd<A>> = true;

/// What an xsimd architecture may use, for kernels whose path follows their Arch rather than
/// the translation unit's macros. xsimd 8's AVX-512 types do not derive from its AVX2 ones,
/// so "has AVX2" is spelled out; an AVX2 Arch stands for x86-64-v3 (AVX2, FMA and F16C, which
/// an `#if` on their macros still has to let compile).
template <class Arch>
inline constexpr bool arch_has_avx_v =
    std::is_base_of_v<xsimd::avx, Arch> || std::is_base_of_v<xsimd::avx512f, Arch>;
template <class Arch>
inline constexpr bool arch_has_avx2_v =
    std::is_base_of_v<xsimd::avx2, Arch> || std::is_base_of_v<xsimd::avx512f, Arch>;
template <class Arch>
inline constexpr bool arch_has_avx512f_v = std::is_base_of_v<xsimd::avx512f, Arch>;

/// Where a backend looks when it has no kernel of its own.
template <class Backend>
struct fallback_of {};  // no fallback: explicit backends such as `cuda`
template <class Arch>
struct fallback_of<cpu_simd<Arch>> {
  using type = cpu_scalar;
};

/// The customization point. Specialize `kernel<MyOp, cpu_scalar, ...>` with the reference and
/// `kernel<MyOp, cpu_simd<A>, ...>` with the fast version; an unspecialized cpu_simd<A> uses
/// the reference.
template <class Op, class Backend, class... Formats>
struct kernel : kernel<Op, typename fallback_of<Backend>::type, Formats...> {};

}  // namespace tessel
