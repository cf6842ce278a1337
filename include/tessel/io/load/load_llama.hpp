#pragma once
// Loading models::Llama from llama2.c checkpoints and GGUF `llama` files.
//
//   auto m = io::load_llama2c_model<f32>("stories260K.bin");        // run-time config
//   auto s = io::load_llama2c<models::Llama<Stories260K, f16>>(path); // static config, checked
//   auto g = io::load_gguf_llama<f32>("stories260K-Q8_0-mixed.gguf");
//   auto a = io::load_llama_model<f32>(path);                        // either, by magic
//   auto tok = io::load_gguf_tokenizer(io::GGUFFile::open(path));
//
// Every parameter is looked up by its GGUF name (the models' own names; formats/llama2c.hpp
// exposes the .bin's tensors under the same names) and converted to the model's weight format as
// common.hpp describes: with nn::any_weight every matrix keeps its stored format and views the
// memory-mapped file (GGUF, llama2.c). A missing `output.weight` means the classifier shares the
// embedding.
//
// RoPE: both files rotate adjacent pairs. llama.cpp's converter writes llama2.c's wq/wk
// unpermuted (its HF converter permutes HF's half-split weights into this order), so GGUF
// `llama` uses RopeStyle::adjacent; tests/test_llama.cpp checks it (identical logits).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessel/io/formats/file_kind.hpp"
#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/formats/llama2c.hpp"
#include "tessel/io/load/common.hpp"
#include "tessel/io/load/gguf_check.hpp"
#include "tessel/io/tokenizers/gguf_tokenizer.hpp"
#include "tessel/models/llama.hpp"

namespace tessel::io {

struct LlamaLoadOptions {
  /// The model's context length (the most positions a state may hold); 0: the file's
  /// (llama2.c seq_len, GGUF context_length). Rows per prefill chunk are a state's
  /// (models::StateOptions::max_batch).
  index_t max_seq = 0;
};

namespace detail {

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
    check_static_dim(file, "dim", s.dim, c.dim);
    check_static_dim(file, "hidden dim", s.hidden, c.hidden);
    check_static_dim(file, "layer count", s.layers, c.layers);
    check_static_dim(file, "head count", s.heads, c.heads);
    check_static_dim(file, "kv head count", s.kv_heads, c.kv_heads);
    check_static_dim(file, "vocabulary size", s.vocab, c.vocab);
    if (opt.max_seq > 0) check_static_dim(file, "context length", s.max_seq, opt.max_seq);
    return Model(Cfg{});
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
  detail::expect_architecture(f, "llama");
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

}  // namespace tessel::io
