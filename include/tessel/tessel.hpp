#pragma once
// tessel: compile-time typed tensors, number and quantization formats, layer templates.
// Include this one header (or single_include/tessel.hpp) to get the whole library; each
// folder below is one layer and uses only the layers above it.

// core: number types, shapes, tensors and views, memory spaces, errors; expression templates
// and their CPU evaluation, tags and the kernel customization point, threads, GEMM/GEMV and
// matmul, the Eigen bridge, CUDA (under nvcc only). Include core.hpp alone for just these.
#include "core.hpp"

// quant: block quantization formats as types
#include "quant/formats.hpp"
#include "quant/quantize.hpp"

// ops: tensor-level operations
#include "ops/conv1d.hpp"
#include "ops/conv2d.hpp"
#include "ops/group_norm.hpp"
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/qmatmul.hpp"
#include "ops/resample.hpp"
#include "ops/selective_scan.hpp"
#include "ops/softmax.hpp"
#include "ops/ssd_scan.hpp"
#include "ops/timestep_embedding.hpp"

// nn: layer templates
#include "nn/any_weight.hpp"
#include "nn/attention.hpp"
#include "nn/conv.hpp"
#include "nn/embedding.hpp"
#include "nn/kv_cache.hpp"
#include "nn/linear.hpp"
#include "nn/mamba.hpp"
#include "nn/mamba2.hpp"
#include "nn/mlp.hpp"
#include "nn/norm.hpp"
#include "nn/position.hpp"
#include "nn/resblock.hpp"
#include "nn/rope.hpp"
#include "nn/spatial_transformer.hpp"

// models: whole architectures and samplers of their outputs
#include "models/bert.hpp"
#include "models/clip.hpp"
#include "models/gpt2.hpp"
#include "models/hybrid.hpp"
#include "models/llama.hpp"
#include "models/mamba.hpp"
#include "models/mamba2.hpp"
#include "models/mnist_ddpm.hpp"
#include "models/samplers.hpp"
#include "models/unet.hpp"
#include "models/vae.hpp"

// io/formats: file formats (GGUF read/write, safetensors, PyTorch, npy/npz, llama2.c)
#include "io/formats/gguf.hpp"
#include "io/formats/gguf_writer.hpp"
#include "io/formats/llama2c.hpp"
#include "io/formats/npy.hpp"
#include "io/formats/safetensors.hpp"
#include "io/formats/torch.hpp"

// io/tokenizers: SentencePiece and byte-level BPE, from their own files or a GGUF file
#include "io/tokenizers/gguf_tokenizer.hpp"
#include "io/tokenizers/tokenizer.hpp"

// io/load: loaders that fill a model from a file, and the GGUF Llama writer
#include "io/load/load_bert.hpp"
#include "io/load/load_diffusion.hpp"
#include "io/load/load_gpt2.hpp"
#include "io/load/load_llama.hpp"
#include "io/load/load_mamba.hpp"
#include "io/load/load_mamba2.hpp"
#include "io/load/write_llama.hpp"

// generate: sampling and generation loops
#include "generate/generate.hpp"
#include "generate/sampler.hpp"
