#pragma once
// A safetensors tensor as the loaders' TensorSource (common.hpp): float dtypes only. Apart from
// common.hpp so that the GGUF and llama2.c loaders do not include the JSON library.

#include <string>

#include "tessel/io/formats/safetensors.hpp"
#include "tessel/io/load/common.hpp"

namespace tessel::io::detail {

/// The ggml type of a float safetensors dtype (others are a format_error).
inline ggml_type st_ggml_type(const SafetensorsTensor& t) {
  switch (t.dtype) {
    case st_dtype::F32:
      return ggml_type::F32;
    case st_dtype::F16:
      return ggml_type::F16;
    case st_dtype::BF16:
      return ggml_type::BF16;
    default:
      throw format_error(*t.file, t.file_offset,
                         "tensor '" + t.name + "' has dtype " + io::name(t.dtype) +
                             "; model weights must be F32, F16 or BF16");
  }
}

inline TensorSource st_source(const SafetensorsTensor& t) {
  return TensorSource{t.name,       st_ggml_type(t), t.shape,  t.data,
                      t.file.get(), t.file_offset,   t.mapping};
}

}  // namespace tessel::io::detail
