#pragma once
// Loading models::GPT2 from Hugging Face safetensors checkpoints and GGUF `gpt2` files, and
// the GPT-2 tokenizer a GGUF file carries.
//
//   auto m = io::load_gpt2_safetensors<f32>("gpt2/model.safetensors");  // config.json beside
//   auto g = io::load_gguf_gpt2<f32>("gpt2.gguf");
//   auto a = io::load_gpt2_model<f32>(path);                  // either, by magic
//   auto s = io::load_gpt2<models::GPT2<Tiny, f16>>(path);    // a static config, checked
//   Gpt2Tokenizer tok = io::load_gguf_gpt2_tokenizer(io::GGUFFile::open(path));
//
// Parameters are found by their GGUF names (the model's own). Hugging Face's names
// (`wte`, `wpe`, `h.N.ln_1`, `h.N.attn.c_attn`, `h.N.attn.c_proj`, `h.N.ln_2`, `h.N.mlp.c_fc`,
// `h.N.mlp.c_proj`, `ln_f`, optionally under `transformer.`) are mapped to them (names.hpp); HF's
// Conv1D stores weights [in, out], so they are transposed on load. The fused attention projection
// (c_attn, GGUF attn_qkv: q, k, v stacked along the outputs) is split into attn_q / attn_k /
// attn_v. A missing `output.weight` (lm_head) means the tied token embedding. Formats are
// converted as io/load/common.hpp says. Safetensors files hold no hyperparameters: the head
// count and LayerNorm epsilon come from the options or from the config.json beside the file;
// the other dimensions from the tensors' shapes.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessel/io/formats/file_kind.hpp"
#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/formats/safetensors.hpp"
#include "tessel/io/load/common.hpp"
#include "tessel/io/load/gguf_check.hpp"
#include "tessel/io/load/names.hpp"
#include "tessel/io/load/safetensors_source.hpp"
#include "tessel/io/tokenizers/gguf_tokenizer.hpp"
#include "tessel/models/gpt2.hpp"

namespace tessel::io {

struct GPT2LoadOptions {
  /// Safetensors only: the head count and LayerNorm epsilon (0: from config.json).
  index_t heads = 0;
  float norm_eps = 0.0f;
};

namespace detail {

/// Rows [r0, r0 + n) of the outermost extent of s, in place (rows hold whole blocks).
inline TensorSource slice_outer(TensorSource s, std::int64_t r0, std::int64_t n) {
  std::int64_t inner = 1;
  for (std::size_t k = 1; k < s.shape.size(); ++k) inner *= s.shape[k];
  if (s.shape.empty() || r0 < 0 || n < 0 || r0 + n > s.shape[0])
    throw format_error(*s.file, s.offset,
                       "tensor '" + std::string(s.name) + "' is too small to split into q, k, v");
  const auto& ti = info(s.type);
  if (inner % ti.block_elems != 0)
    throw format_error(*s.file, s.offset,
                       "tensor '" + std::string(s.name) + "' rows do not hold whole blocks");
  s.data += r0 * (inner / ti.block_elems) * ti.block_bytes;
  s.shape[0] = n;
  return s;
}

/// A [rows, cols] float tensor (F32/F16/BF16) transposed into out as F32 [cols, rows], keeping
/// only output rows [c0, c0 + n): HF Conv1D [in, out] -> Linear [out, in].
inline TensorSource transposed(const TensorSource& s, std::int64_t c0, std::int64_t n,
                               std::vector<float>& out) {
  if (s.shape.size() != 2 || c0 < 0 || c0 + n > s.shape[1])
    throw format_error(*s.file, s.offset,
                       "tensor '" + std::string(s.name) + "' is not a matrix of the expected size");
  const std::int64_t rows = s.shape[0], cols = s.shape[1];
  std::vector<float> row(static_cast<std::size_t>(cols));
  out.resize(static_cast<std::size_t>(n * rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    source_row_f32(s, r, cols, row.data());
    for (std::int64_t c = 0; c < n; ++c)
      out[static_cast<std::size_t>(c * rows + r)] = row[static_cast<std::size_t>(c0 + c)];
  }
  TensorSource t = s;
  t.type = ggml_type::F32;
  t.shape = {n, rows};
  t.data = reinterpret_cast<const std::byte*>(out.data());
  t.mapping = nullptr;  // a buffer of the loader's, copied into the model
  return t;
}

template <class Model>
Model make_gpt2(const models::GPT2Config& c, const std::string& file) {
  using Cfg = typename Model::config_type;
  if constexpr (std::is_same_v<Cfg, models::GPT2Config>) {
    return Model(c);
  } else {
    const models::GPT2Config s = models::to_gpt2_config(Cfg{});
    check_static_dim(file, "dim", s.dim, c.dim);
    check_static_dim(file, "hidden dim", s.hidden, c.hidden);
    check_static_dim(file, "layer count", s.layers, c.layers);
    check_static_dim(file, "head count", s.heads, c.heads);
    check_static_dim(file, "vocabulary size", s.vocab, c.vocab);
    check_static_dim(file, "context length", s.max_seq, c.max_seq);
    return Model(Cfg{});
  }
}

}  // namespace detail

/// Checks that f holds every tensor a GPT2 of config c needs, with the shapes c implies (see
/// io/load/gguf_check.hpp); q, k and v may be stored apart or fused (attn_qkv).
inline void check_gpt2_tensors(const GGUFFile& f, const models::GPT2Config& c) {
  const KeyedExtent dim = keyed("gpt2.embedding_length", c.dim),
                    hidden = keyed("gpt2.feed_forward_length", c.hidden),
                    qkv = {3 * c.dim, "gpt2.embedding_length", c.dim};
  check_tensor_table(f, "gpt2", "gpt2.block_count", c.layers,
                     {{"position_embd.weight", {keyed("gpt2.context_length", c.max_seq), dim}},
                      {"output_norm.weight", {dim}},
                      {"output_norm.bias", {dim}},
                      {"output.weight", {vocab_extent(c.vocab), dim}, {}, true}},
                     [&](std::int64_t l) {
                       const std::string p = "blk." + std::to_string(l) + ".";
                       std::vector<ExpectedTensor> t{
                           {p + "attn_norm.weight", {dim}},        {p + "attn_norm.bias", {dim}},
                           {p + "attn_output.weight", {dim, dim}}, {p + "attn_output.bias", {dim}},
                           {p + "ffn_norm.weight", {dim}},         {p + "ffn_norm.bias", {dim}},
                           {p + "ffn_up.weight", {hidden, dim}},   {p + "ffn_up.bias", {hidden}},
                           {p + "ffn_down.weight", {dim, hidden}}, {p + "ffn_down.bias", {dim}},
                       };
                       if (f.find_tensor(p + "attn_qkv.weight")) {
                         t.push_back({p + "attn_qkv.weight", {qkv, dim}});
                         t.push_back({p + "attn_qkv.bias", {qkv}});
                       } else {
                         for (const char* x : {"attn_q.", "attn_k.", "attn_v."}) {
                           t.push_back({p + x + "weight", {dim, dim}});
                           t.push_back({p + x + "bias", {dim}});
                         }
                       }
                       return t;
                     });
}

/// The config in a GGUF file's `gpt2.*` metadata (vocabulary: token_embd's rows), each value
/// checked and the tensor table checked against it.
inline models::GPT2Config gpt2_config(const GGUFFile& f) {
  detail::expect_architecture(f, "gpt2");
  models::GPT2Config c;
  c.dim = checked_int(f, "gpt2.embedding_length");
  c.hidden = checked_int(f, "gpt2.feed_forward_length");
  c.layers = checked_int(f, "gpt2.block_count");
  c.heads = checked_int(f, "gpt2.attention.head_count");
  c.max_seq = checked_int(f, "gpt2.context_length");
  c.norm_eps = checked_float(f, "gpt2.attention.layer_norm_epsilon", c.norm_eps);
  if (c.dim % c.heads != 0)
    throw format_error(f.path(), detail::key_offset(f, "gpt2.attention.head_count"),
                       "gpt2.embedding_length " + std::to_string(c.dim) +
                           " is not a multiple of gpt2.attention.head_count " +
                           std::to_string(c.heads));
  c.vocab = checked_vocab(f, "gpt2", "gpt2.embedding_length", c.dim);
  check_gpt2_tensors(f, c);
  return c;
}

/// A GPT2 (static or run-time config) from a GGUF `gpt2` file.
template <class Model>
Model load_gpt2(const GGUFFile& f,
                const GPT2LoadOptions& = {}) {  // the options are safetensors-only
  const models::GPT2Config c = gpt2_config(f);
  Model m = detail::make_gpt2<Model>(c, f.path());
  const auto source = [&](const GGUFTensor& t) { return detail::gguf_source(f, t); };
  detail::load_params(m, f.path(), [&](const std::string& n) -> std::optional<TensorSource> {
    if (const GGUFTensor* t = f.find_tensor(n)) return source(*t);
    const auto blk = detail::split_block_name(n);
    std::string suffix;
    const int part = blk ? detail::qkv_part(blk->second, suffix) : -1;
    if (part < 0) return std::nullopt;
    const GGUFTensor* qkv =
        f.find_tensor("blk." + std::to_string(blk->first) + ".attn_qkv." + suffix);
    if (!qkv) return std::nullopt;
    return detail::slice_outer(source(*qkv), part * c.dim, c.dim);
  });
  return m;
}

/// The config of a Hugging Face GPT-2 checkpoint: dimensions from the tensors' shapes, heads
/// and epsilon from opt or from config.json in the checkpoint's folder (n_head,
/// layer_norm_epsilon).
template <class Json = nlohmann::json>
models::GPT2Config gpt2_config(const SafetensorsCheckpoint& ck, const std::string& path,
                               const GPT2LoadOptions& opt = {}) {
  const std::string pre = ck.find("transformer.wte.weight") ? "transformer." : "";
  const auto shape = [&](const std::string& n) {
    const SafetensorsTensor* t = ck.find(pre + n);
    if (!t) throw format_error(path, 0, "the checkpoint has no tensor '" + pre + n + "'");
    if (t->shape.size() != 2)
      throw format_error(path, t->file_offset, "tensor '" + t->name + "' is not a matrix");
    return t->shape;
  };
  models::GPT2Config c;
  c.vocab = shape("wte.weight")[0];
  c.dim = shape("wte.weight")[1];
  c.max_seq = shape("wpe.weight")[0];
  c.hidden = shape("h.0.mlp.c_fc.weight")[1];
  while (ck.find(pre + "h." + std::to_string(c.layers) + ".ln_1.weight")) ++c.layers;
  c.heads = opt.heads;
  if (opt.norm_eps > 0) c.norm_eps = opt.norm_eps;
  const auto json_path = std::filesystem::path(path).parent_path() / "config.json";
  if ((c.heads == 0 || opt.norm_eps <= 0) && std::filesystem::exists(json_path)) {
    std::ifstream in(json_path);
    const Json j = Json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw format_error(json_path.string(), 0, "not a JSON object");
    if (c.heads == 0 && j.contains("n_head") && j["n_head"].is_number_integer())
      c.heads = j["n_head"].template get<index_t>();
    if (opt.norm_eps <= 0 && j.contains("layer_norm_epsilon") &&
        j["layer_norm_epsilon"].is_number())
      c.norm_eps = j["layer_norm_epsilon"].template get<float>();
    if (!std::isfinite(c.norm_eps) || c.norm_eps < 0)
      throw format_error(json_path.string(), 0,
                         "layer_norm_epsilon is " + std::to_string(c.norm_eps) +
                             ", expected a finite number >= 0");
  }
  if (c.heads <= 0 || c.dim % c.heads != 0)
    throw format_error(path, 0,
                       "the head count (" + std::to_string(c.heads) +
                           ") is missing or does not divide the embedding size " +
                           std::to_string(c.dim) + ": give GPT2LoadOptions::heads or config.json");
  return c;
}

/// A GPT2 (static or run-time config) from a Hugging Face safetensors checkpoint (a file or a
/// model.safetensors.index.json).
template <class Model>
Model load_gpt2_safetensors(const SafetensorsCheckpoint& ck, const std::string& path,
                            const GPT2LoadOptions& opt = {}) {
  const models::GPT2Config c = gpt2_config<detail::json_t<Model>>(ck, path, opt);
  Model m = detail::make_gpt2<Model>(c, path);
  const std::string pre = ck.find("transformer.wte.weight") ? "transformer." : "";
  const auto find = [&](const std::string& hf) -> std::optional<TensorSource> {
    const SafetensorsTensor* t = ck.find(pre + hf);
    if (!t && hf == "lm_head.weight") t = ck.find(hf);  // the head sits outside `transformer.`
    if (!t) return std::nullopt;
    return detail::st_source(*t);
  };
  std::vector<float> buffer;  // a transposed weight, consumed before the next lookup
  detail::load_params(m, path, [&](const std::string& n) -> std::optional<TensorSource> {
    const auto hf = detail::gpt2_hf_tensor(n, c.dim, c.hidden);
    if (!hf) return std::nullopt;
    auto s = find(hf->name);
    if (!s || !hf->conv1d) return s;
    // Conv1D: a weight [in, out] to transpose, a bias [out] as it is.
    if (n.ends_with(".weight")) return detail::transposed(*s, hf->first, hf->count, buffer);
    return detail::slice_outer(*s, hf->first, hf->count);
  });
  return m;
}

/// A GPT2 from a GGUF `gpt2` file or a Hugging Face safetensors checkpoint, told apart by the
/// GGUF magic.
template <class Model>
Model load_gpt2(const std::string& path, const GPT2LoadOptions& opt = {}) {
  if (path.ends_with(".json"))  // an index.json naming safetensors shards
    return load_gpt2_safetensors<Model>(SafetensorsCheckpoint::open<detail::json_t<Model>>(path),
                                        path, opt);
  MappedFile m = MappedFile::open(path);
  const file_kind kind = sniff_file_kind(m.bytes());
  if (kind == file_kind::gguf) return load_gpt2<Model>(GGUFFile(std::move(m)), opt);
  if (kind != file_kind::safetensors && kind != file_kind::unknown)
    throw format_error(path, 0,
                       std::string("this is ") + describe(kind) +
                           ", not a GGUF file or a safetensors checkpoint (the files a GPT-2 "
                           "model loads from)");
  const std::string magic = magic_text(m.bytes());
  try {
    return load_gpt2_safetensors<Model>(SafetensorsCheckpoint::open<detail::json_t<Model>>(path),
                                        path, opt);
  } catch (const format_error& e) {
    if (kind == file_kind::safetensors) throw;
    throw format_error(
        e.file(), e.offset(),
        "not a GGUF file (" + magic + "), and as a safetensors checkpoint: " + e.reason());
  }
}
template <nn::WeightFormat W = float>
models::GPT2<models::GPT2Config, W> load_gpt2_model(const std::string& path,
                                                    const GPT2LoadOptions& opt = {}) {
  return load_gpt2<models::GPT2<models::GPT2Config, W>>(path, opt);
}
template <nn::WeightFormat W = float>
models::GPT2<models::GPT2Config, W> load_gguf_gpt2(const std::string& path,
                                                   const GPT2LoadOptions& opt = {}) {
  return load_gpt2<models::GPT2<models::GPT2Config, W>>(GGUFFile::open(path), opt);
}
template <nn::WeightFormat W = float>
models::GPT2<models::GPT2Config, W> load_gpt2_safetensors(const std::string& path,
                                                          const GPT2LoadOptions& opt = {}) {
  return load_gpt2_safetensors<models::GPT2<models::GPT2Config, W>>(
      SafetensorsCheckpoint::open<detail::json_t<W>>(path), path, opt);
}

}  // namespace tessel::io
