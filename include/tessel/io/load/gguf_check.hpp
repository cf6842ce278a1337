#pragma once
// Checks a GGUF model file before a model is built from it: metadata values in range, and every
// tensor the architecture needs present with the shape its hyperparameters imply, read from the
// tensor table alone (names and shapes; no tensor data is touched). A file whose metadata asks
// for more than its tensors hold is refused here, with the key that disagrees, before anything
// is allocated:
//
//   llama.block_count is 30000 but the file has tensors for 2 blocks (blk.2.attn_norm.weight
//   is missing)
//   llama.feed_forward_length is 1048576 but blk.0.ffn_gate.weight has shape [5632, 2048]
//   (expected [1048576, 2048])
//
// Once every tensor matches, the model's weights are no larger than the file's tensors (in the
// weight format asked for); the context length is only the default size of a state.
//
// The config readers of load_llama.hpp, load_gpt2.hpp, load_mamba.hpp and load_mamba2.hpp use
// these; each lists its architecture's tensors (check_llama_tensors, ...).

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessel/io/formats/gguf.hpp"

namespace tessel::io {

/// The largest dimension a metadata key may give (larger is refused as absurd before the
/// tensors are looked at).
inline constexpr std::int64_t max_metadata_extent = std::int64_t{1} << 31;

/// An extent a model expects and the metadata key it follows from, with the key's value (which
/// differs from the extent for a derived one, such as head_count_kv × the head size).
struct KeyedExtent {
  std::int64_t value = 0;
  std::string_view key;
  std::int64_t key_value = 0;
};
/// The extent `key` gives directly.
inline KeyedExtent keyed(std::string_view key, std::int64_t v) {
  return {v, key, v};
}

/// A tensor a model needs: its extents (outermost first) and other layouts of the same
/// elements its loader accepts (PyTorch's [n, 1, k] convolution weight, a [n] vector for [n, 1]).
struct ExpectedTensor {
  std::string name;
  std::vector<KeyedExtent> shape;
  std::vector<std::vector<std::int64_t>> also = {};
  bool optional = false;  // a tied output head
};

namespace detail {

inline std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "[";
  for (std::size_t k = 0; k < s.size(); ++k) t += (k ? ", " : "") + std::to_string(s[k]);
  return t + "]";
}

inline std::uint64_t key_offset(const GGUFFile& f, std::string_view key) {
  const GGUFValue* v = f.find(key);
  return v ? v->offset() : 0;
}

inline std::string float_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

}  // namespace detail

/// Metadata `key` as an integer in [lo, hi]; `fallback` when the key is absent (none: the key
/// is required).
inline std::int64_t checked_int(const GGUFFile& f, std::string_view key, std::int64_t lo = 1,
                                std::int64_t hi = max_metadata_extent,
                                std::optional<std::int64_t> fallback = std::nullopt) {
  if (fallback && !f.contains(key)) return *fallback;
  const std::int64_t v = f.get_int(key);
  if (v < lo || v > hi)
    throw format_error(f.path(), detail::key_offset(f, key),
                       std::string(key) + " is " + std::to_string(v) + ", expected " +
                           std::to_string(lo) + " to " + std::to_string(hi));
  return v;
}

/// Metadata `key` as a finite float, ≥ 0 (a norm epsilon) or > 0 (positive: a RoPE base);
/// `fallback` when absent. NaN, infinities and values that overflow a float are refused.
inline float checked_float(const GGUFFile& f, std::string_view key, float fallback,
                           bool positive = false) {
  if (!f.contains(key)) return fallback;
  const double v = f.get_float(key);
  const float x = static_cast<float>(v);
  if (!std::isfinite(x) || x < 0 || (positive && !(x > 0)))
    throw format_error(f.path(), detail::key_offset(f, key),
                       std::string(key) + " is " + detail::float_text(v) + ", expected a finite " +
                           (positive ? "number > 0" : "number >= 0"));
  return x;
}

/// Throws unless tensor t has e's shape or one of its other layouts; the message names the key
/// of the first extent that disagrees.
inline void check_tensor_shape(const GGUFFile& f, const GGUFTensor& t, const ExpectedTensor& e) {
  const std::vector<std::int64_t> got = t.shape();
  std::vector<std::int64_t> want;
  for (const auto& x : e.shape) want.push_back(x.value);
  if (got == want) return;
  for (const auto& a : e.also)
    if (got == a) return;
  std::string what = e.name + " has shape " + detail::shape_text(got) + " (expected " +
                     detail::shape_text(want) + ")";
  if (got.size() == want.size())
    for (std::size_t k = 0; k < want.size(); ++k)
      if (got[k] != want[k]) {
        what = std::string(e.shape[k].key) + " is " + std::to_string(e.shape[k].key_value) +
               " but " + what;
        break;
      }
  throw format_error(f.path(), t.file_offset, what);
}

/// The vocabulary size: the rows of token_embd.weight, which must be [vocab, dim] and agree
/// with tokenizer.ggml.tokens when the file carries a tokenizer.
inline std::int64_t checked_vocab(const GGUFFile& f, std::string_view arch,
                                  std::string_view dim_key, std::int64_t dim) {
  const GGUFTensor* t = f.find_tensor("token_embd.weight");
  if (!t)
    throw format_error(f.path(), 0,
                       "the file has no tensor 'token_embd.weight', which a " + std::string(arch) +
                           " model needs");
  const std::int64_t vocab = t->n_dims == 2 ? t->ne[1] : 0;
  if (vocab <= 0 || vocab > max_metadata_extent)
    throw format_error(f.path(), t->file_offset,
                       "token_embd.weight has shape " + detail::shape_text(t->shape()) +
                           ", expected [vocabulary, " + std::string(dim_key) + "]");
  check_tensor_shape(f, *t, {"token_embd.weight", {{vocab, "", 0}, keyed(dim_key, dim)}});
  if (const GGUFValue* tok = f.find("tokenizer.ggml.tokens");
      tok && tok->is_array() && tok->count() != std::uint64_t(vocab))
    throw format_error(f.path(), tok->offset(),
                       "tokenizer.ggml.tokens has " + std::to_string(tok->count()) +
                           " entries but token_embd.weight has " + std::to_string(vocab) +
                           " rows (the vocabulary)");
  return vocab;
}

/// The vocabulary as the extent of another tensor (a separate output head).
inline KeyedExtent vocab_extent(std::int64_t vocab) {
  return {vocab, "the vocabulary (token_embd.weight rows)", vocab};
}

/// Checks the tensors a model needs: `global` ones, then for each of the `layers` blocks (the
/// value of `block_count_key`) the list block(l) returns. A block with none of its tensors is
/// reported as a block count the file does not hold, and so is a block past the count.
template <class BlockTensors>
void check_tensor_table(const GGUFFile& f, std::string_view arch, std::string_view block_count_key,
                        std::int64_t layers, const std::vector<ExpectedTensor>& global,
                        BlockTensors&& block) {
  const auto missing = [&](const std::string& name) {
    return format_error(
        f.path(), 0,
        "the file has no tensor '" + name + "', which a " + std::string(arch) + " model needs");
  };
  const auto check = [&](const ExpectedTensor& e) {
    if (const GGUFTensor* t = f.find_tensor(e.name)) {
      check_tensor_shape(f, *t, e);
      return true;
    }
    return false;
  };
  for (const auto& e : global)
    if (!check(e) && !e.optional) throw missing(e.name);
  const auto count_error = [&](const std::string& held) {
    return format_error(f.path(), detail::key_offset(f, block_count_key),
                        std::string(block_count_key) + " is " + std::to_string(layers) +
                            " but the file has tensors for " + held);
  };
  for (std::int64_t l = 0; l < layers; ++l) {
    const std::vector<ExpectedTensor> b = block(l);
    for (const auto& e : b) {
      if (check(e) || e.optional) continue;
      bool any = false;
      for (const auto& o : b) any = any || f.find_tensor(o.name) != nullptr;
      if (!any) throw count_error(std::to_string(l) + " blocks (" + e.name + " is missing)");
      throw missing(e.name);
    }
  }
  for (const auto& e : block(layers))
    if (f.find_tensor(e.name)) throw count_error("more blocks (" + e.name + ")");
}

}  // namespace tessel::io
