#pragma once
// Loading models::Llama from llama2.c checkpoints and GGUF `llama` files.
//
//   auto m = io::load_llama2c_model<f32>("stories260K.bin");        // run-time config
//   auto s = io::load_llama2c<models::Llama<Stories260K, f16>>(path); // static config, checked
//   auto g = io::load_gguf_llama<f32>("stories260K-Q8_0-mixed.gguf");
//   auto a = io::load_llama_model<f32>(path);                        // either, by magic
//   auto tok = io::load_gguf_tokenizer(io::GGUFFile::open(path));
//
// Every parameter is looked up by its GGUF name (the models' own names; llama2c.hpp exposes
// the .bin's tensors under the same names) and converted to the model's weight format: every
// format of quant/format_list.hpp but the integer ones (F32, F16, BF16, the GGUF blocks and
// K-quants) is widened to f32 and narrowed to W; a block-format W takes blocks of its own type
// verbatim and quantizes other sources; nn::any_weight takes every matrix in its stored format
// (gguf_weight_formats), bytes verbatim, dequantizing nothing. A missing
// `output.weight` means the classifier shares the embedding.
//
// Zero copy: an any_weight matrix is a view into the memory-mapped file (GGUF, llama2.c,
// safetensors), which it keeps mapped, so the model outlives the file object and its resident
// memory is the file's pages, shared with the page cache. Only a tensor whose bytes are not
// aligned for its format in the file (alignof of its element or block: 2 or 4 bytes, which
// GGUF's 32-byte alignment always gives) is copied; weight_bytes(m) counts both. Vectors
// (norms, biases) and the weights of a model with a static format W (Tensor<W>) are copies in
// the model's format. own_weights(m) turns the views into copies (2 MiB aligned, huge pages).
//
// RoPE: both files rotate adjacent pairs. llama.cpp's converter writes llama2.c's wq/wk
// unpermuted (its HF converter permutes HF's half-split weights into this order), so GGUF
// `llama` uses RopeStyle::adjacent; tests/test_llama.cpp checks it (identical logits).

#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessel/io/formats/file_kind.hpp"
#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/formats/llama2c.hpp"
#include "tessel/io/load/gguf_check.hpp"
#include "tessel/io/tokenizers/tokenizer_sentencepiece.hpp"
#include "tessel/models/llama.hpp"
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

struct LlamaLoadOptions {
  /// The model's context length (the most positions a state may hold); 0: the file's
  /// (llama2.c seq_len, GGUF context_length). Rows per prefill chunk are a state's
  /// (models::StateOptions::max_batch).
  index_t max_seq = 0;
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
                           ", which the Llama loader cannot convert");
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
    if (view)
      dst.assign_view(*k, src.data, src.mapping);
    else
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

/// A GGUF tensor as a source (viewable: it carries the file's mapping).
inline TensorSource gguf_source(const GGUFFile& f, const GGUFTensor& t) {
  return TensorSource{t.name, t.type, t.shape(), t.data, &f.path(), t.file_offset, f.mapping()};
}

template <class Model>
Model make_llama(const models::LlamaConfig& file_cfg, const std::string& file,
                 const LlamaLoadOptions& opt) {
  using Cfg = typename Model::config_type;
  models::LlamaConfig c = file_cfg;
  if (opt.max_seq > 0) c.max_seq = opt.max_seq;
  if constexpr (std::is_same_v<Cfg, models::LlamaConfig>) {
    return Model(c);
  } else {
    const models::LlamaConfig s = models::to_llama_config(Cfg{});
    const auto differs = [&](const char* what, index_t a, index_t b) {
      if (a != b)
        throw format_error(file, 0,
                           std::string("the file's ") + what + " is " + std::to_string(b) +
                               ", the static config says " + std::to_string(a));
    };
    differs("dim", s.dim, c.dim);
    differs("hidden dim", s.hidden, c.hidden);
    differs("layer count", s.layers, c.layers);
    differs("head count", s.heads, c.heads);
    differs("kv head count", s.kv_heads, c.kv_heads);
    differs("vocabulary size", s.vocab, c.vocab);
    if (opt.max_seq > 0) differs("context length", s.max_seq, opt.max_seq);
    return Model(Cfg{});
  }
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

/// The config in a llama2.c checkpoint's header (adjacent-pair RoPE, theta 10000, eps 1e-5).
inline models::LlamaConfig llama_config(const Llama2cConfig& h) {
  models::LlamaConfig c;
  c.dim = h.dim, c.hidden = h.hidden_dim, c.layers = h.n_layers, c.heads = h.n_heads;
  c.kv_heads = h.n_kv_heads, c.vocab = h.vocab_size, c.max_seq = h.seq_len;
  return c;
}

/// Checks that f holds every tensor a Llama of config c needs, with the shapes c implies (see
/// io/load/gguf_check.hpp): before anything is allocated, naming the key that disagrees.
inline void check_llama_tensors(const GGUFFile& f, const models::LlamaConfig& c) {
  const KeyedExtent dim = keyed("llama.embedding_length", c.dim),
                    hidden = keyed("llama.feed_forward_length", c.hidden),
                    kv = {c.kv_dim(), "llama.attention.head_count_kv", c.kv_heads};
  check_tensor_table(
      f, "llama", "llama.block_count", c.layers,
      {{"output_norm.weight", {dim}}, {"output.weight", {vocab_extent(c.vocab), dim}, {}, true}},
      [&](std::int64_t l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        return std::vector<ExpectedTensor>{
            {p + "attn_norm.weight", {dim}},        {p + "attn_q.weight", {dim, dim}},
            {p + "attn_output.weight", {dim, dim}}, {p + "attn_k.weight", {kv, dim}},
            {p + "attn_v.weight", {kv, dim}},       {p + "ffn_norm.weight", {dim}},
            {p + "ffn_gate.weight", {hidden, dim}}, {p + "ffn_up.weight", {hidden, dim}},
            {p + "ffn_down.weight", {dim, hidden}},
        };
      });
}

/// The config in a GGUF file's `llama.*` metadata, each value checked (a message names the key)
/// and the tensor table checked against it. The context length is only a default for states.
inline models::LlamaConfig llama_config(const GGUFFile& f) {
  const auto arch = f.get<std::string_view>("general.architecture");
  if (arch != "llama")
    throw format_error(f.path(), 0,
                       "general.architecture is '" + std::string(arch) + "', expected 'llama'");
  models::LlamaConfig c;
  c.dim = checked_int(f, "llama.embedding_length");
  c.hidden = checked_int(f, "llama.feed_forward_length");
  c.layers = checked_int(f, "llama.block_count");
  c.heads = checked_int(f, "llama.attention.head_count");
  c.kv_heads = checked_int(f, "llama.attention.head_count_kv", 1, max_metadata_extent, c.heads);
  c.max_seq = checked_int(f, "llama.context_length");
  c.norm_eps = checked_float(f, "llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  c.rope_theta = checked_float(f, "llama.rope.freq_base", c.rope_theta, true);
  if (c.dim % c.heads != 0)
    throw format_error(f.path(), detail::key_offset(f, "llama.attention.head_count"),
                       "llama.embedding_length " + std::to_string(c.dim) +
                           " is not a multiple of llama.attention.head_count " +
                           std::to_string(c.heads));
  if (c.heads % c.kv_heads != 0)
    throw format_error(f.path(), detail::key_offset(f, "llama.attention.head_count_kv"),
                       "llama.attention.head_count " + std::to_string(c.heads) +
                           " is not a multiple of llama.attention.head_count_kv " +
                           std::to_string(c.kv_heads));
  if (f.contains("llama.rope.dimension_count")) {
    c.rope_dim = checked_int(f, "llama.rope.dimension_count", 1, c.head_dim());
    if (c.rope_dim % 2 != 0)
      throw format_error(f.path(), detail::key_offset(f, "llama.rope.dimension_count"),
                         "llama.rope.dimension_count is " + std::to_string(c.rope_dim) +
                             ", expected an even number (RoPE rotates pairs)");
  }
  c.vocab = checked_vocab(f, "llama", "llama.embedding_length", c.dim);
  check_llama_tensors(f, c);
  return c;
}

/// A Llama (static or run-time config) from a llama2.c checkpoint.
template <class Model>
Model load_llama2c(const Llama2cFile& f, const LlamaLoadOptions& opt = {}) {
  Model m = detail::make_llama<Model>(llama_config(f.config()), f.path(), opt);
  detail::load_params(m, f.path(), [&](const std::string& n) -> std::optional<TensorSource> {
    const Llama2cTensor* t = f.find(n);
    if (!t) return std::nullopt;
    return TensorSource{
        t->name,   ggml_type::F32, t->shape,   reinterpret_cast<const std::byte*>(t->data),
        &f.path(), t->offset,      f.mapping()};
  });
  return m;
}
template <class Model>
Model load_llama2c(const std::string& path, const LlamaLoadOptions& opt = {}) {
  return load_llama2c<Model>(Llama2cFile::open(path), opt);
}
template <nn::WeightFormat W = float>
models::Llama<models::LlamaConfig, W> load_llama2c_model(const std::string& path,
                                                         const LlamaLoadOptions& opt = {}) {
  return load_llama2c<models::Llama<models::LlamaConfig, W>>(path, opt);
}

/// A Llama (static or run-time config) from a GGUF `llama` file.
template <class Model>
Model load_gguf(const GGUFFile& f, const LlamaLoadOptions& opt = {}) {
  Model m = detail::make_llama<Model>(llama_config(f), f.path(), opt);
  detail::load_params(m, f.path(), [&](const std::string& n) -> std::optional<TensorSource> {
    const GGUFTensor* t = f.find_tensor(n);
    if (!t) return std::nullopt;
    return detail::gguf_source(f, *t);
  });
  return m;
}
template <class Model>
Model load_gguf(const std::string& path, const LlamaLoadOptions& opt = {}) {
  return load_gguf<Model>(GGUFFile::open(path), opt);
}
template <nn::WeightFormat W = float>
models::Llama<models::LlamaConfig, W> load_gguf_llama(const std::string& path,
                                                      const LlamaLoadOptions& opt = {}) {
  return load_gguf<models::Llama<models::LlamaConfig, W>>(path, opt);
}

/// True when the file starts with GGUF's magic.
inline bool is_gguf_file(const std::string& path) {
  const MappedFile m = MappedFile::open(path);
  return m.size() >= 4 && std::memcmp(m.data(), "GGUF", 4) == 0;
}

/// A GGUF or llama2.c file, told apart by the magic. Other known formats (safetensors, .npy,
/// zip, pickle) are named in the error; a file with no known magic is read as a llama2.c
/// checkpoint and its errors say so.
template <nn::WeightFormat W = float>
models::Llama<models::LlamaConfig, W> load_llama_model(MappedFile file,
                                                       const LlamaLoadOptions& opt = {}) {
  using Model = models::Llama<models::LlamaConfig, W>;
  const file_kind kind = sniff_file_kind(file.bytes());
  if (kind == file_kind::gguf) return load_gguf<Model>(GGUFFile(std::move(file)), opt);
  const std::string name = file.name();
  if (kind != file_kind::unknown)
    throw format_error(name, 0,
                       std::string("this is ") + describe(kind) +
                           ", not a GGUF file or a llama2.c checkpoint (the files a Llama model "
                           "loads from)");
  const std::string magic = magic_text(file.bytes());
  try {
    return load_llama2c<Model>(Llama2cFile(std::move(file)), opt);
  } catch (const format_error& e) {
    throw format_error(
        name, e.offset(),
        "not a GGUF file (" + magic + "), and as a llama2.c checkpoint: " + e.reason());
  }
}
template <nn::WeightFormat W = float>
models::Llama<models::LlamaConfig, W> load_llama_model(const std::string& path,
                                                       const LlamaLoadOptions& opt = {}) {
  return load_llama_model<W>(MappedFile::open(path), opt);
}

/// The SentencePiece tokenizer stored in a GGUF file (tokenizer.ggml.model = llama).
inline SentencePieceTokenizer load_gguf_tokenizer(const GGUFFile& f) {
  const auto model = f.get<std::string_view>("tokenizer.ggml.model");
  if (model != "llama")
    throw format_error(
        f.path(), 0,
        "tokenizer.ggml.model is '" + std::string(model) + "', expected 'llama' (SentencePiece)");
  const auto& toks = f.get_strings("tokenizer.ggml.tokens");
  std::vector<std::string> pieces(toks.begin(), toks.end());
  std::vector<float> scores = f.contains("tokenizer.ggml.scores")
                                  ? f.get_array<float>("tokenizer.ggml.scores")
                                  : std::vector<float>(pieces.size(), 0.0f);
  std::vector<token_type> types(pieces.size(), token_type::normal);
  if (f.contains("tokenizer.ggml.token_type")) {
    const auto t = f.get_array<std::int32_t>("tokenizer.ggml.token_type");
    if (t.size() != pieces.size())
      throw format_error(f.path(), 0,
                         "tokenizer.ggml.token_type has " + std::to_string(t.size()) +
                             " entries for " + std::to_string(pieces.size()) + " tokens");
    for (std::size_t i = 0; i < t.size(); ++i) types[i] = static_cast<token_type>(t[i]);
  }
  const auto id = [&](const char* key, std::int64_t fallback) {
    return static_cast<token_id>(f.contains(key) ? f.get_int(key) : fallback);
  };
  sentencepiece_options o;
  o.add_dummy_prefix = f.get_or<bool>("tokenizer.ggml.add_space_prefix", true);
  o.remove_extra_whitespaces = f.get_or<bool>("tokenizer.ggml.remove_extra_whitespaces", false);
  try {
    return SentencePieceTokenizer(std::move(pieces), std::move(scores), std::move(types),
                                  id("tokenizer.ggml.bos_token_id", -1),
                                  id("tokenizer.ggml.eos_token_id", -1),
                                  id("tokenizer.ggml.unknown_token_id", 0), o);
  } catch (const value_error& e) {
    throw format_error(f.path(), 0, e.what());
  }
}

}  // namespace tessel::io
