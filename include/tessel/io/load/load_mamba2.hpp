#pragma once
// Loading models::Mamba2 from GGUF `mamba2` files and Hugging Face safetensors checkpoints.
//
//   auto m = io::load_gguf_mamba2<f32>("mamba2-130m-f32.gguf");          // run-time config
//   auto s = io::load_mamba2_gguf<models::Mamba2<Mamba2_130M, f16>>(GGUFFile::open(path));
//   auto h = io::load_safetensors_mamba2<f32>("dir/model.safetensors");   // HF names
//
// GGUF (llama.cpp's names, shapes and keys): token_embd, blk.N.attn_norm, blk.N.ssm_in,
// blk.N.ssm_conv1d.weight [conv_dim, d_conv] (a 3-D [conv_dim, 1, d_conv] is accepted too) and
// .bias, blk.N.ssm_dt.bias [H], blk.N.ssm_a [H, 1] (A = −exp(A_log), as llama.cpp's converter
// stores it: an element ≥ 0 is a format_error), blk.N.ssm_d [H, 1], blk.N.ssm_norm.weight
// [G, d_inner / G], blk.N.ssm_out, output_norm, and `output` when the head is not tied (1-D
// ssm_a, ssm_d and ssm_norm of the same length are accepted). Metadata:
// mamba2.embedding_length, mamba2.block_count, mamba2.ssm.conv_kernel, mamba2.ssm.inner_size,
// mamba2.ssm.state_size, mamba2.ssm.time_step_rank (= the head count),
// mamba2.ssm.group_count (1 when absent), mamba2.attention.layer_norm_rms_epsilon; the
// vocabulary size is token_embd's row count.
//
// safetensors (transformers' Mamba2ForCausalLM; names.hpp maps the names):
// backbone.embeddings.weight, backbone.layers.N.norm.weight,
// backbone.layers.N.mixer.{in_proj.weight, conv1d.weight [conv_dim, 1, K], conv1d.bias, dt_bias
// [H], A_log [H], D [H], norm.weight [d_inner], out_proj.weight}, backbone.norm_f.weight,
// lm_head.weight (an untied head when present and not equal to the embedding). Dimensions come from
// the tensors' shapes, except the group count (and the norms' epsilon), which only config.json has:
// Mamba2LoadOptions::n_groups, else config.json's n_groups beside the file, else a format_error. A
// = −exp(A_log) once, here.

#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/formats/safetensors.hpp"
#include "tessel/io/load/common.hpp"
#include "tessel/io/load/gguf_check.hpp"
#include "tessel/io/load/names.hpp"
#include "tessel/io/load/safetensors_source.hpp"
#include "tessel/io/tokenizers/gguf_tokenizer.hpp"
#include "tessel/models/mamba2.hpp"

namespace tessel::io {

struct Mamba2LoadOptions {
  index_t n_groups = 0;   // safetensors only: 0 reads config.json beside the file
  float norm_eps = 0.0f;  // safetensors only: 0 reads config.json, else 1e-5
};

namespace detail {

inline void check_mamba2_config(const models::Mamba2Config& c, const std::string& file) {
  const auto bad = [&](const std::string& why) {
    throw format_error(file, 0, "invalid Mamba-2 dimensions: " + why);
  };
  if (c.dim <= 0 || c.layers <= 0 || c.vocab <= 0 || c.d_inner <= 0 || c.d_state <= 0 ||
      c.d_conv <= 0 || c.n_heads <= 0 || c.n_groups <= 0)
    bad("every dimension must be positive (dim " + std::to_string(c.dim) + ", layers " +
        std::to_string(c.layers) + ", vocab " + std::to_string(c.vocab) + ", d_inner " +
        std::to_string(c.d_inner) + ", d_state " + std::to_string(c.d_state) + ", d_conv " +
        std::to_string(c.d_conv) + ", heads " + std::to_string(c.n_heads) + ", groups " +
        std::to_string(c.n_groups) + ")");
  if (c.d_inner % c.n_heads != 0)
    bad("the head count " + std::to_string(c.n_heads) + " does not divide the inner size " +
        std::to_string(c.d_inner));
  if (c.n_heads % c.n_groups != 0)
    bad("the group count " + std::to_string(c.n_groups) + " does not divide the head count " +
        std::to_string(c.n_heads));
}

template <class Model>
Model make_mamba2(const models::Mamba2Config& c, const std::string& file) {
  check_mamba2_config(c, file);
  using Cfg = typename Model::config_type;
  if constexpr (std::is_same_v<Cfg, models::Mamba2Config>) {
    return Model(c);
  } else {
    const models::Mamba2Config s = models::to_mamba2_config(Cfg{});
    check_static_dim(file, "embedding length", s.dim, c.dim);
    check_static_dim(file, "layer count", s.layers, c.layers);
    check_static_dim(file, "vocabulary size", s.vocab, c.vocab);
    check_static_dim(file, "inner size", s.d_inner, c.d_inner);
    check_static_dim(file, "state size", s.d_state, c.d_state);
    check_static_dim(file, "conv kernel", s.d_conv, c.d_conv);
    check_static_dim(file, "head count", s.n_heads, c.n_heads);
    check_static_dim(file, "group count", s.n_groups, c.n_groups);
    if (s.tied_output != c.tied_output)
      throw format_error(file, 0,
                         c.tied_output ? "the file has no separate output tensor"
                                       : "the file has an untied output tensor");
    return Model(Cfg{});
  }
}

/// A vector source of exactly rows·cols elements seen as [rows, cols] (ssm_a / ssm_d stored
/// as [H] rather than llama.cpp's [H, 1], a norm as [d_inner] rather than [G, d_inner / G]).
inline void reshape_vector(TensorSource& s, index_t rows, index_t cols) {
  if (s.shape.size() == 1 && s.shape[0] == rows * cols) s.shape = {rows, cols};
}

/// The model-side name's vector parameters get their [rows, cols] shape.
inline void mamba2_shapes(TensorSource& s, const std::string& n, const models::Mamba2Config& c) {
  if (is_name(n, ".ssm_conv1d.weight")) squeeze_conv(s);
  if (is_name(n, ".ssm_a") || is_name(n, ".ssm_d")) reshape_vector(s, c.n_heads, 1);
  if (is_name(n, ".ssm_norm.weight") && c.n_groups > 0)
    reshape_vector(s, c.n_groups, c.d_inner / c.n_groups);
}

}  // namespace detail

/// Checks that f holds every tensor a Mamba2 of config c needs, with the shapes c implies (see
/// io/load/gguf_check.hpp), in the layouts the loader accepts (see the top of the file).
inline void check_mamba2_tensors(const GGUFFile& f, const models::Mamba2Config& c) {
  const std::int64_t H = c.n_heads, G = c.n_groups, N = c.d_state, I = c.d_inner;
  const KeyedExtent dim = keyed("mamba2.embedding_length", c.dim),
                    inner = keyed("mamba2.ssm.inner_size", I),
                    heads = keyed("mamba2.ssm.time_step_rank", H),
                    groups = keyed("mamba2.ssm.group_count", G),
                    per_group = {I / G, "mamba2.ssm.group_count", G},
                    conv = keyed("mamba2.ssm.conv_kernel", c.d_conv),
                    conv_dim = {I + 2 * G * N, "mamba2.ssm.state_size", N},
                    in = {2 * I + 2 * G * N + H, "mamba2.ssm.state_size", N};
  const KeyedExtent one = {1, "", 1};
  check_tensor_table(
      f, "mamba2", "mamba2.block_count", c.layers,
      {{"output_norm.weight", {dim}}, {"output.weight", {vocab_extent(c.vocab), dim}, {}, true}},
      [&](std::int64_t l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        return std::vector<ExpectedTensor>{
            {p + "attn_norm.weight", {dim}},
            {p + "ssm_out.weight", {dim, inner}},
            {p + "ssm_dt.bias", {heads}},
            {p + "ssm_a", {heads, one}, {{H}}},
            {p + "ssm_d", {heads, one}, {{H}}},
            {p + "ssm_norm.weight", {groups, per_group}, {{I}}},
            {p + "ssm_conv1d.weight", {conv_dim, conv}, {{I + 2 * G * N, 1, c.d_conv}}},
            {p + "ssm_conv1d.bias", {conv_dim}},
            {p + "ssm_in.weight", {in, dim}},
        };
      });
}

/// The config in a GGUF file's `mamba2.*` metadata, each value checked and the tensor table
/// checked against it.
inline models::Mamba2Config mamba2_config(const GGUFFile& f) {
  detail::expect_architecture(f, "mamba2");
  models::Mamba2Config c;
  c.dim = checked_int(f, "mamba2.embedding_length");
  c.layers = checked_int(f, "mamba2.block_count");
  c.d_conv = checked_int(f, "mamba2.ssm.conv_kernel");
  c.d_inner = checked_int(f, "mamba2.ssm.inner_size");
  c.d_state = checked_int(f, "mamba2.ssm.state_size");
  c.n_heads = checked_int(f, "mamba2.ssm.time_step_rank");
  c.n_groups = checked_int(f, "mamba2.ssm.group_count", 1, max_metadata_extent, 1);
  c.norm_eps = checked_float(f, "mamba2.attention.layer_norm_rms_epsilon", c.norm_eps);
  c.vocab = checked_vocab(f, "mamba2", "mamba2.embedding_length", c.dim);
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  if (c.d_inner % c.n_heads != 0)
    throw format_error(f.path(), detail::key_offset(f, "mamba2.ssm.time_step_rank"),
                       "mamba2.ssm.time_step_rank (the head count) " + std::to_string(c.n_heads) +
                           " does not divide mamba2.ssm.inner_size " + std::to_string(c.d_inner));
  if (c.n_heads % c.n_groups != 0)
    throw format_error(f.path(), detail::key_offset(f, "mamba2.ssm.group_count"),
                       "mamba2.ssm.group_count " + std::to_string(c.n_groups) +
                           " does not divide the head count mamba2.ssm.time_step_rank " +
                           std::to_string(c.n_heads));
  if (c.n_groups * c.d_state > max_metadata_extent)  // the tensor extents below must not overflow
    throw format_error(f.path(), detail::key_offset(f, "mamba2.ssm.state_size"),
                       "mamba2.ssm.state_size " + std::to_string(c.d_state) + " times " +
                           "mamba2.ssm.group_count " + std::to_string(c.n_groups) + " exceeds " +
                           std::to_string(max_metadata_extent));
  check_mamba2_tensors(f, c);
  return c;
}

/// A Mamba2 (static or run-time config) from a GGUF `mamba2` file.
template <class Model>
Model load_mamba2_gguf(const GGUFFile& f, [[maybe_unused]] const Mamba2LoadOptions& opt = {}) {
  const models::Mamba2Config c = mamba2_config(f);
  Model m = detail::make_mamba2<Model>(c, f.path());
  detail::load_params(m, f.path(), [&](const std::string& n) -> std::optional<TensorSource> {
    const GGUFTensor* t = f.find_tensor(n);
    if (!t) return std::nullopt;
    TensorSource s = detail::gguf_source(f, *t);
    detail::mamba2_shapes(s, n, c);
    return s;
  });
  detail::check_negative_a(m, f.path());
  return m;
}
template <nn::WeightFormat W = float>
models::Mamba2<models::Mamba2Config, W> load_gguf_mamba2(const std::string& path,
                                                         const Mamba2LoadOptions& opt = {}) {
  return load_mamba2_gguf<models::Mamba2<models::Mamba2Config, W>>(GGUFFile::open(path), opt);
}

/// The config of a Hugging Face Mamba-2 checkpoint: the tensors' shapes, and the group count
/// and epsilon from opt or config.json beside the file.
template <class Json = nlohmann::json>
models::Mamba2Config mamba2_config(const SafetensorsCheckpoint& ck,
                                   const Mamba2LoadOptions& opt = {}) {
  const std::string& file = ck.shards().front().path();
  const auto& ts = ck.tensors();
  const auto shape = [&](const std::string& n) -> std::vector<std::int64_t> {
    const auto it = ts.find(n);
    if (it == ts.end())
      throw format_error(file, 0, "the checkpoint has no tensor named '" + n + "'");
    return it->second->shape;
  };
  models::Mamba2Config c;
  const auto emb = shape("backbone.embeddings.weight");
  const auto a = shape("backbone.layers.0.mixer.A_log");
  const auto conv = shape("backbone.layers.0.mixer.conv1d.weight");
  const auto out = shape("backbone.layers.0.mixer.out_proj.weight");
  if (emb.size() != 2 || a.size() != 1 || conv.empty() || out.size() != 2)
    throw format_error(file, 0,
                       "backbone.embeddings or out_proj is not a matrix, or A_log not a vector "
                       "(a Mamba-1 checkpoint?)");
  c.vocab = emb[0], c.dim = emb[1];
  c.n_heads = a[0], c.d_conv = conv.back(), c.d_inner = out[1];
  while (ts.count("backbone.layers." + std::to_string(c.layers) + ".mixer.A_log")) ++c.layers;
  c.n_groups = opt.n_groups;
  if (opt.norm_eps > 0) c.norm_eps = opt.norm_eps;
  const auto json_path = std::filesystem::path(file).parent_path() / "config.json";
  if ((c.n_groups <= 0 || opt.norm_eps <= 0) && std::filesystem::exists(json_path)) {
    std::ifstream in(json_path);
    const Json j = Json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw format_error(json_path.string(), 0, "not a JSON object");
    if (c.n_groups <= 0 && j.contains("n_groups") && j["n_groups"].is_number_integer())
      c.n_groups = j["n_groups"].template get<index_t>();
    if (opt.norm_eps <= 0 && j.contains("layer_norm_epsilon") &&
        j["layer_norm_epsilon"].is_number())
      c.norm_eps = j["layer_norm_epsilon"].template get<float>();
    if (!std::isfinite(c.norm_eps) || c.norm_eps < 0)
      throw format_error(json_path.string(), 0,
                         "layer_norm_epsilon is " + std::to_string(c.norm_eps) +
                             ", expected a finite number >= 0");
  }
  if (c.n_groups <= 0)
    throw format_error(file, 0,
                       "the group count is not in a safetensors file: give "
                       "Mamba2LoadOptions::n_groups or put config.json (n_groups) beside it");
  const std::int64_t xbc = conv[0] - c.d_inner;  // 2·G·N
  if (xbc <= 0 || xbc % (2 * c.n_groups) != 0)
    throw format_error(file, 0,
                       "conv1d has " + std::to_string(conv[0]) + " channels: not d_inner " +
                           std::to_string(c.d_inner) + " + 2·groups·d_state with " +
                           std::to_string(c.n_groups) + " groups");
  c.d_state = xbc / (2 * c.n_groups);
  // An lm_head equal to the embedding (or absent) is the tied head.
  c.tied_output = true;
  if (const auto h = ts.find("lm_head.weight"); h != ts.end()) {
    const auto e = ts.find("backbone.embeddings.weight");
    const auto& H = *h->second;
    const auto& Emb = *e->second;
    c.tied_output = H.dtype == Emb.dtype && H.shape == Emb.shape &&
                    H.bytes().size() == Emb.bytes().size() &&
                    std::memcmp(H.data, Emb.data, H.bytes().size()) == 0;
  }
  return c;
}

/// A Mamba2 (static or run-time config) from a safetensors checkpoint with HF names.
template <class Model>
Model load_mamba2_safetensors(const SafetensorsCheckpoint& ck, const Mamba2LoadOptions& opt = {}) {
  const std::string& file = ck.shards().front().path();
  const models::Mamba2Config c = mamba2_config<detail::json_t<Model>>(ck, opt);
  Model m = detail::make_mamba2<Model>(c, file);
  std::deque<std::vector<float>> owned;  // A = −exp(A_log), alive until the copy
  detail::load_params(m, file, [&](const std::string& n) -> std::optional<TensorSource> {
    const auto& ts = ck.tensors();
    const auto it = ts.find(detail::mamba2_hf_name(n));
    if (it == ts.end()) return std::nullopt;
    const SafetensorsTensor& t = *it->second;
    TensorSource s = detail::st_source(t);
    detail::mamba2_shapes(s, n, c);
    if (detail::is_name(n, ".ssm_a")) {
      if (s.shape.size() != 2 || s.shape[1] != 1 || s.shape[0] != c.n_heads)
        throw format_error(
            *t.file, t.file_offset,
            "tensor '" + t.name + "' is not a vector of " + std::to_string(c.n_heads) + " heads");
      auto& a = owned.emplace_back(std::size_t(s.shape[0]));
      for (index_t r = 0; r < s.shape[0]; ++r) detail::source_row_f32(s, r, 1, a.data() + r);
      for (float& v : a) v = -std::exp(v);
      s.type = ggml_type::F32;
      s.data = reinterpret_cast<const std::byte*>(a.data());
      s.mapping = nullptr;  // the loader's buffer, copied into the model
    }
    return s;
  });
  return m;
}
template <nn::WeightFormat W = float>
models::Mamba2<models::Mamba2Config, W> load_safetensors_mamba2(const std::string& path,
                                                                const Mamba2LoadOptions& opt = {}) {
  return load_mamba2_safetensors<models::Mamba2<models::Mamba2Config, W>>(
      SafetensorsCheckpoint::open<detail::json_t<W>>(path), opt);
}

}  // namespace tessel::io
