#pragma once
// Memory spaces. Where a tensor's bytes live is part of its type, so host code cannot
// dereference device memory by accident and the CUDA backend needs no redesign.

#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "error.hpp"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

namespace tessel {

/// Alignment of every buffer tessel allocates (one cache line, also AVX-512 friendly).
inline constexpr std::size_t tensor_alignment = 64;

/// Ordinary host memory.
struct host_space {
  static constexpr bool host_accessible = true;
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t rounded =
        (bytes + tensor_alignment - 1) / tensor_alignment * tensor_alignment;
    if (rounded < bytes)
      detail::raise<value_error>({"tessel: allocation of ", bytes, " bytes overflows"});
#if defined(__linux__)
    // Large buffers (weights, KV caches, activations of big layers) start on a 2 MiB boundary
    // and ask for transparent huge pages, which many kernels give only on request (THP
    // "madvise" mode): streaming a model's weights then walks far fewer page-table entries.
    // Measured A/B, 1.1B Llama decode at 2 threads: q4_0 +5%, q8_0 +4%.
    if (rounded >= huge_threshold) {
      const std::size_t r2 = (rounded + huge_page - 1) / huge_page * huge_page;
      if (r2 < rounded)
        detail::raise<value_error>({"tessel: allocation of ", bytes, " bytes overflows"});
      void* p = std::aligned_alloc(huge_page, r2);
      if (!p) throw std::bad_alloc();
      ::madvise(p, r2, MADV_HUGEPAGE);  // advice only: failure leaves ordinary pages
      return p;
    }
#endif
    void* p = std::aligned_alloc(tensor_alignment, rounded);
    if (!p) throw std::bad_alloc();
    return p;
  }
  /// Allocations of at least this many bytes are 2 MiB aligned and advised to use huge pages
  /// (Linux).
  static constexpr std::size_t huge_page = std::size_t{2} << 20;
  static constexpr std::size_t huge_threshold = std::size_t{4} << 20;
  static void deallocate(void* p) noexcept {
    std::free(p);
  }
};

/// CUDA global memory. Allocation works only in translation units compiled by nvcc; host
/// code can hold such tensors and pass them to the `cuda` backend but not read elements.
struct cuda_space {
  static constexpr bool host_accessible = false;
#if defined(__CUDACC__)
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess)
      throw error(std::string("tessel: cudaMalloc of ") + std::to_string(bytes) +
                  " bytes failed: " + cudaGetErrorString(e));
    return p;
  }
  static void deallocate(void* p) noexcept {
    cudaFree(p);
  }
#endif
};

template <class S>
concept MemorySpace = requires {
  S::host_accessible;
};

}  // namespace tessel
