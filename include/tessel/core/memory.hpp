#pragma once
// Memory spaces. Where a tensor's bytes live is part of its type, so host code cannot
// dereference device memory by accident and the CUDA backend needs no redesign.

#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>

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
      throw value_error("tessel: allocation of " + std::to_string(bytes) + " bytes overflows");
    void* p = std::aligned_alloc(tensor_alignment, rounded);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void deallocate(void* p) noexcept { std::free(p); }
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
