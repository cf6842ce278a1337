#pragma once
// What every model loader shares: one stored tensor as a TensorSource, whatever file it comes
// from, and the filling of a model's parameters from sources.
//
//   detail::load_params(m, path, [&](const std::string& name) -> std::optional<TensorSource> {
//     if (const GGUFTensor* t = f.find_tensor(name)) return detail::gguf_source(f, *t);
//     return std::nullopt;                                   // a name the file does not hold
//   });
//
// A loader reads its config, builds the model, and hands load_params a lookup from the model's
// parameter names (GGUF's, see names.hpp for other checkpoints' names) to sources. Every
// parameter is converted to the model's weight format: every format of quant/format_list.hpp
// but the integer ones (F32, F16, BF16, the GGUF blocks and K-quants) is widened to f32 and
// narrowed to W; a block-format W takes blocks of its own type verbatim and quantizes other
// sources; nn::any_weight takes every matrix in its stored format (gguf_weight_formats), bytes
// verbatim, dequantizing nothing. A missing `output.weight` means the classifier shares the
// embedding.
//
// Zero copy: an any_weight matrix is a view into the memory-mapped file (GGUF, llama2.c,
// safetensors), which it keeps mapped, so the model outlives the file object and its resident
// memory is the file's pages, shared with the page cache. Only a tensor whose bytes are not
// aligned for its format in the file (alignof of its element or block: 2 or 4 bytes, which
// GGUF's 32-byte alignment always gives) is copied; weight_bytes(m) counts both. Vectors
// (norms, biases) and the weights of a model with a static format W (Tensor<W>) are copies in
// the model's format. own_weights(m) turns the views into copies (2 MiB aligned, huge pages).
//
// Safetensors tensors become sources in safetensors_source.hpp (apart, so that a GGUF-only
// loader does not parse the JSON library); the GGUF metadata checks are in gguf_check.hpp.

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"
#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/formats/mmap.hpp"
#include "tessel/io/load/names.hpp"
#include "tessel/nn/any_weight.hpp"
#include "tessel/quant/ggml_blocks.hpp"

namespace tessel::io {

/// One stored tensor, whatever file it comes from.
struct TensorSource {
  std::string_view name;
  ggml_type type = ggml_type::F32;
  std::vector<std::int64_t> shape;  // outermost first
  const std::byte* data = nullptr;
  const std::string* file = nullptr;
  std::uint64_t offset = 0;  // in the file, for messages
  /// The mapped file that `data` points into, if any: an any_weight matrix then views the
  /// bytes and holds this (a source whose data lies elsewhere, e.g. a converted buffer, is
  /// copied whatever this says).
  std::shared_ptr<const MappedFile> mapping = nullptr;
};

/// The run-time weight format of a stored tensor, if an AnyMatrix can hold it.
inline std::optional<nn::weight_kind> weight_kind_of(ggml_type t) {
  if (!is_listed<gguf_weight_formats>(t)) return std::nullopt;
  return static_cast<nn::weight_kind>(t);
}

namespace detail {

/// Row r (n elements) of a stored tensor as f32: any format of quant/format_list.hpp that
/// widens to f32.
inline void source_row_f32(const TensorSource& s, index_t r, index_t n, float* out) {
  const auto& ti = info(s.type);
  const std::byte* p = s.data + r * (n / ti.block_elems) * ti.block_bytes;
  if (!widen_row(s.type, p, out, n))
    throw format_error(*s.file, s.offset,
                       "tensor '" + std::string(s.name) + "' is stored as " + io::name(s.type) +
                           ", which the loader cannot convert");
}

/// Throws unless src has shape `want` (outermost first).
template <class Extents>
void check_source_shape(const Extents& want, const TensorSource& src) {
  bool same = src.shape.size() == want.size();
  for (std::size_t k = 0; same && k < want.size(); ++k) same = src.shape[k] == want[k];
  if (!same) {
    std::string got = "[", exp = "[";
    for (auto e : src.shape) got += (got.size() > 1 ? ", " : "") + std::to_string(e);
    for (auto e : want) exp += (exp.size() > 1 ? ", " : "") + std::to_string(e);
    throw format_error(*src.file, src.offset,
                       "tensor '" + std::string(src.name) + "' has shape " + got +
                           "], the model expects " + exp + "]");
  }
}

/// Fills an any_weight matrix from src: its bytes verbatim, in the file's own format, viewed in
/// the mapped file where src has one and the bytes are aligned for the format, else copied.
template <index_t R, index_t C>
void load_tensor(nn::AnyMatrix<R, C>& dst, const TensorSource& src) {
  check_source_shape(std::array<index_t, 2>{dst.rows(), dst.cols()}, src);
  const auto k = weight_kind_of(src.type);
  if (!k)
    throw format_error(*src.file, src.offset,
                       "tensor '" + std::string(src.name) + "' is stored as " + io::name(src.type) +
                           ", which tessel's matrix kernels do not run");
  try {
    const bool view =
        src.mapping && src.mapping->contains(src.data, dst.bytes_for(*k)) &&
        reinterpret_cast<std::uintptr_t>(src.data) % nn::AnyMatrix<R, C>::alignment_of(*k) == 0;
    if (view) {
      dst.assign_view(*k, src.data, src.mapping);
      src.mapping->populate(src.data, dst.bytes_for(*k));
    } else
      dst.assign(*k, src.data);
  } catch (const shape_error& e) {
    throw format_error(*src.file, src.offset,
                       "tensor '" + std::string(src.name) + "': " + e.what());
  }
}

/// Fills dst from src: shapes must be equal; formats are converted (see the top of the file).
template <class T, class S>
void load_tensor(Tensor<T, S>& dst, const TensorSource& src) {
  const auto want = dst.shape().extents();
  check_source_shape(want, src);
  const index_t cols = want.empty() ? 1 : want.back();
  const index_t rows = cols ? dst.size() / cols : 0;
  if (const auto* ti = find_ggml_type(static_cast<std::uint32_t>(src.type));
      ti && cols % ti->block_elems != 0)
    throw format_error(*src.file, src.offset,
                       "tensor '" + std::string(src.name) + "' rows of " + std::to_string(cols) +
                           " do not hold whole " + ti->name + " blocks");
  constexpr auto own = ggml_type_of<T>();  // pointer-like: empty when GGUF has no such type
  if (own && own->type == src.type) {      // the stored format itself: bytes verbatim
    std::memcpy(static_cast<void*>(dst.data()), src.data, dst.bytes());
    return;
  }
  std::vector<float> row(static_cast<std::size_t>(cols));
  for (index_t r = 0; r < rows; ++r) {
    source_row_f32(src, r, cols, row.data());
    if constexpr (nn::is_dense_weight_v<T>) {
      T* out = dst.data() + r * cols;
      for (index_t j = 0; j < cols; ++j) out[j] = from_f32<T>(row[std::size_t(j)]);
    } else {
      T::quantize_row(row.data(), dst.data() + r * (cols / T::block_elems), cols);
    }
  }
}

/// Loads every parameter of m with find(name) -> std::optional<TensorSource>.
template <class Model, class Find>
void load_params(Model& m, const std::string& file, Find&& find) {
  m.visit([&](const std::string& name, auto& tensor) {
    std::optional<TensorSource> s = find(name);
    if (!s && name == "output.weight") s = find("token_embd.weight");  // tied classifier
    if (!s) throw format_error(file, 0, "the model needs a tensor named '" + name + "'");
    load_tensor(tensor, *s);
  });
}

/// Throws unless the file's general.architecture is `want` (the loaders' first check).
inline void expect_architecture(const GGUFFile& f, std::string_view want) {
  const auto arch = f.get<std::string_view>("general.architecture");
  if (arch != want)
    throw format_error(f.path(), 0,
                       "general.architecture is '" + std::string(arch) + "', expected '" +
                           std::string(want) + "'");
}

/// A GGUF tensor as a source (viewable: it carries the file's mapping).
inline TensorSource gguf_source(const GGUFFile& f, const GGUFTensor& t) {
  return TensorSource{t.name, t.type, t.shape(), t.data, &f.path(), t.file_offset, f.mapping()};
}

/// Throws unless a dimension of a static config (`want`) equals the file's (`got`).
inline void check_static_dim(const std::string& file, const char* what, index_t want, index_t got) {
  if (want != got)
    throw format_error(file, 0,
                       std::string("the file's ") + what + " is " + std::to_string(got) +
                           ", the static config says " + std::to_string(want));
}

/// [d_inner, 1, K] (PyTorch's Conv1d weight) seen as [d_inner, K].
inline void squeeze_conv(TensorSource& s) {
  if (s.shape.size() == 3 && s.shape[1] == 1) s.shape = {s.shape[0], s.shape[2]};
}

/// The Mamba loaders' check of A = -exp(A_log): every element of each `.ssm_a` negative.
template <class Model>
void check_negative_a(Model& m, const std::string& file) {
  m.visit([&](const std::string& name, auto& t) {
    if constexpr (nn::is_any_matrix_v<std::remove_cvref_t<decltype(t)>>) {
      return;  // a weight matrix, never A
    } else if constexpr (std::is_same_v<std::remove_cvref_t<decltype(*t.data())>, float>) {
      if (!is_name(name, ".ssm_a")) return;
      for (index_t i = 0; i < t.size(); ++i)
        if (!(t.data()[i] < 0.0f))
          throw format_error(file, 0,
                             "tensor '" + name + "' holds " + std::to_string(t.data()[i]) +
                                 ": expected A = -exp(A_log) < 0, as llama.cpp's converter "
                                 "stores it (an A_log written as ssm_a?)");
    }
  });
}

}  // namespace detail

/// Bytes of a model's any_weight matrices: views into a mapped file and copies.
struct WeightBytes {
  std::size_t mapped = 0, copied = 0;
  index_t mapped_matrices = 0, copied_matrices = 0;
};
template <class Model>
WeightBytes weight_bytes(Model& m) {
  WeightBytes b;
  m.visit([&](const std::string&, auto& t) {
    if constexpr (nn::is_any_matrix_v<std::remove_cvref_t<decltype(t)>>) {
      if (t.empty()) return;
      (t.is_view() ? b.mapped : b.copied) += t.bytes();
      ++(t.is_view() ? b.mapped_matrices : b.copied_matrices);
    }
  });
  return b;
}

/// Copies every any_weight matrix that views a mapped file into memory of its own (2 MiB
/// aligned, advised to huge pages): the file's size again in anonymous memory, for fewer TLB
/// misses while streaming the weights; the file may then be unmapped.
template <class Model>
void own_weights(Model& m) {
  m.visit([](const std::string&, auto& t) {
    if constexpr (nn::is_any_matrix_v<std::remove_cvref_t<decltype(t)>>) t.make_owned();
  });
}

}  // namespace tessel::io
