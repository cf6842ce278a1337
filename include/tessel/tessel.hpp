#pragma once
// tessel: compile-time typed tensors, number and quantization formats, layer templates.
// Include this one header (or single_include/tessel.hpp) to get the whole library.

// core: number types, shapes, tensors and views, memory spaces, errors
#include "core.hpp"

// backends: tags and the kernel customization point, threads, CPU evaluation of
// expressions (includes expr/), GEMM/GEMV, the Eigen bridge
#include "backend/cpu/eval.hpp"
#include "backend/cpu/gemm.hpp"
#include "backend/eigen/bridge.hpp"
#include "backend/tags.hpp"
#include "backend/thread_pool.hpp"
#if defined(__CUDACC__)
#include "backend/cuda/eval.cuh"
#endif

// ops: tensor-level operations
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/softmax.hpp"

// io: model files and tokenizers
#include "io/gguf.hpp"
#include "io/llama2c.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"
#include "io/tokenizer.hpp"
#include "io/torch.hpp"
