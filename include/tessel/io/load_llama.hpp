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
// RoPE: both files rotate adjacent pairs. llama.cpp's converter writes llama2.c's wq/wk
// unpermuted (its HF converter permutes HF's half-split weights into this order), so GGUF
// `llama` uses RopeStyle::adjacent; tests/test_llama.cpp checks it (identical logits).

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessel/io/gguf.hpp"
#include "tessel/io/llama2c.hpp"
#include "tessel/io/tokenizer_sentencepiece.hpp"
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
};

struct LlamaLoadOptions {
  /// Context length (KV cache rows); 0: the file's (llama2.c seq_len, GGUF context_length).
  index_t max_seq = 0;
  /// Rows per prefill chunk.
  index_t max_batch = 64;
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

/// Fills an any_weight matrix from src: its bytes verbatim, in the file's own format.
template <index_t R, index_t C>
void load_tensor(nn::AnyMatrix<R, C>& dst, const TensorSource& src) {
  check_source_shape(std::array<index_t, 2>{dst.rows(), dst.cols()}, src);
  const auto k = weight_kind_of(src.type);
  if (!k)
    throw format_error(*src.file, src.offset,
                       "tensor '" + std::string(src.name) + "' is stored as " + io::name(src.type) +
                           ", which tessel's matrix kernels do not run");
  try {
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

template <class Model>
Model make_llama(const models::LlamaConfig& file_cfg, const std::string& file,
                 const LlamaLoadOptions& opt) {
  using Cfg = typename Model::config_type;
  models::LlamaConfig c = file_cfg;
  if (opt.max_seq > 0) c.max_seq = opt.max_seq;
  if constexpr (std::is_same_v<Cfg, models::LlamaConfig>) {
    return Model(c, opt.max_batch);
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
    return Model(Cfg{}, opt.max_batch);
  }
}

}  // namespace detail

/// The config in a llama2.c checkpoint's header (adjacent-pair RoPE, theta 10000, eps 1e-5).
inline models::LlamaConfig llama_config(const Llama2cConfig& h) {
  models::LlamaConfig c;
  c.dim = h.dim, c.hidden = h.hidden_dim, c.layers = h.n_layers, c.heads = h.n_heads;
  c.kv_heads = h.n_kv_heads, c.vocab = h.vocab_size, c.max_seq = h.seq_len;
  return c;
}

/// The config in a GGUF file's `llama.*` metadata.
inline models::LlamaConfig llama_config(const GGUFFile& f) {
  const auto arch = f.get<std::string_view>("general.architecture");
  if (arch != "llama")
    throw format_error(f.path(), 0,
                       "general.architecture is '" + std::string(arch) + "', expected 'llama'");
  models::LlamaConfig c;
  c.dim = f.get_int("llama.embedding_length");
  c.hidden = f.get_int("llama.feed_forward_length");
  c.layers = f.get_int("llama.block_count");
  c.heads = f.get_int("llama.attention.head_count");
  c.kv_heads = f.contains("llama.attention.head_count_kv")
                   ? f.get_int("llama.attention.head_count_kv")
                   : c.heads;
  c.max_seq = f.get_int("llama.context_length");
  if (f.contains("llama.attention.layer_norm_rms_epsilon"))
    c.norm_eps = static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon"));
  if (f.contains("llama.rope.freq_base"))
    c.rope_theta = static_cast<float>(f.get_float("llama.rope.freq_base"));
  if (f.contains("llama.rope.dimension_count"))
    c.rope_dim = f.get_int("llama.rope.dimension_count");
  const GGUFTensor& emb = f.tensor("token_embd.weight");
  c.vocab = emb.n_dims == 2 ? emb.ne[1] : 0;
  if (c.heads <= 0 || c.dim % c.heads != 0)
    throw format_error(f.path(), 0,
                       "llama.embedding_length " + std::to_string(c.dim) +
                           " is not a multiple of llama.attention.head_count " +
                           std::to_string(c.heads));
  return c;
}

/// A Llama (static or run-time config) from a llama2.c checkpoint.
template <class Model>
Model load_llama2c(const Llama2cFile& f, const LlamaLoadOptions& opt = {}) {
  Model m = detail::make_llama<Model>(llama_config(f.config()), f.path(), opt);
  detail::load_params(m, f.path(), [&](const std::string& n) -> std::optional<TensorSource> {
    const Llama2cTensor* t = f.find(n);
    if (!t) return std::nullopt;
    return TensorSource{t->name,   ggml_type::F32,
                        t->shape,  reinterpret_cast<const std::byte*>(t->data),
                        &f.path(), t->offset};
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
    return TensorSource{t->name, t->type, t->shape(), t->data, &f.path(), t->file_offset};
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

/// A GGUF or llama2.c file, told apart by the magic.
template <nn::WeightFormat W = float>
models::Llama<models::LlamaConfig, W> load_llama_model(const std::string& path,
                                                       const LlamaLoadOptions& opt = {}) {
  return is_gguf_file(path) ? load_gguf_llama<W>(path, opt) : load_llama2c_model<W>(path, opt);
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
