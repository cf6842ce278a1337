#pragma once
// quant/: block quantization formats as types.
//
//   GGUF / ggml:  q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 (32 per block)
//                 q2_k q3_k q4_k q5_k q6_k q8_k (256 per super-block)
//   QLoRA:        nf4 (64 per block), double-quantized scales
//   GPTQ / AWQ:   int_group<Bits, G, Asym> (int4 / int8, groups of 32 / 64 / 128)
//   FP8:          fp8_matrix<f8_e4m3 | f8_e5m2>, per-tensor or per-row scale

#include "format_list.hpp"
#include "fp8.hpp"
#include "ggml_blocks.hpp"
#include "int_group.hpp"
#include "kquants.hpp"
#include "nf4.hpp"

namespace tessel {
static_assert(QuantFormat<q4_0> && QuantFormat<q4_1> && QuantFormat<q5_0> && QuantFormat<q5_1> &&
              QuantFormat<q8_0> && QuantFormat<q8_1> && QuantFormat<q2_k> && QuantFormat<q3_k> &&
              QuantFormat<q4_k> && QuantFormat<q5_k> && QuantFormat<q6_k> && QuantFormat<q8_k> &&
              QuantFormat<nf4> && QuantFormat<int4_group<128>>);
}  // namespace tessel
