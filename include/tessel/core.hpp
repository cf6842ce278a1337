#pragma once
// tessel's core: tensors and expressions without the models. Number types, shapes, tensors and
// views, memory spaces, errors (core/); expression templates and their CPU evaluation (expr/,
// backend/cpu/eval.hpp); backend tags, threads, GEMM / GEMV and matmul. A translation unit
// that only computes with tensors includes this header (or single_include/tessel_core.hpp)
// and compiles none of the quantization kernels, layers, models, file formats or tokenizers;
// tessel.hpp is the whole library.
#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/numeric.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"

#include "backend/cpu/eval.hpp"
#include "backend/cpu/gemm.hpp"
#include "backend/tags.hpp"
#include "backend/thread_pool.hpp"
#include "expr/expr.hpp"
#include "ops/matmul.hpp"
#if defined(__CUDACC__)
#include "backend/cuda/eval.cuh"
#endif
// The Eigen bridge (as_eigen / view_of) comes along when Eigen is already included, so a
// translation unit that does not use Eigen does not pay for parsing it; or include
// <tessel/backend/eigen/bridge.hpp> directly.
#if defined(EIGEN_WORLD_VERSION)
#include "backend/eigen/bridge.hpp"
#endif
