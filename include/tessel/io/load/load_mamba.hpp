#pragma once
// Loading models::Mamba from GGUF `mamba` files and Hugging Face safetensors checkpoints.
//
//   auto m = io::load_gguf_mamba<f32>("mamba-130m-f32.gguf");          // run-time config
//   auto s = io::load_mamba_gguf<models::Mamba<Mamba130M, f16>>(GGUFFile::open(path));
//   auto h = io::load_safetensors_mamba<f32>("model.safetensors");     // HF names
//   auto tok = io::load_gguf_bpe_tokenizer(io::GGUFFile::open(path));  // tokenizer.ggml.*
//
// GGUF (llama.cpp's names and converter): token_embd, blk.N.attn_norm, blk.N.ssm_in,
// blk.N.ssm_conv1d.weight [d_inner, d_conv] (the converter squeezes PyTorch's [d_inner, 1, K];
// a 3-D one is accepted too) and .bias, blk.N.ssm_x, blk.N.ssm_dt.weight / .bias, blk.N.ssm_a,
// blk.N.ssm_d (these two without a .weight suffix), blk.N.ssm_out, output_norm, and `output`
// when the head is not tied. ssm_a holds A = −exp(A_log), not A_log: llama.cpp's
// convert_hf_to_gguf.py applies `-torch.exp` to every A_log, and its ssm_scan uses A as is. So
// ssm_a loads verbatim and a file with an element ≥ 0 (an A_log written by another tool) is a
// format_error. Metadata: mamba.embedding_length, mamba.block_count, mamba.ssm.conv_kernel,
// mamba.ssm.inner_size, mamba.ssm.state_size, mamba.ssm.time_step_rank,
// mamba.attention.layer_norm_rms_epsilon; the vocabulary size is token_embd's row count.
//
// safetensors (transformers' MambaForCausalLM; names.hpp maps the names):
// backbone.embeddings.weight, backbone.layers.N.norm.weight,
// backbone.layers.N.mixer.{in_proj.weight, conv1d.weight [d_inner, 1, K], conv1d.bias,
// x_proj.weight, dt_proj.weight, dt_proj.bias, A_log, D, out_proj.weight}, backbone.norm_f.weight
// (lm_head.weight, when present, is the embedding). The config is read from the tensors' shapes; A
// = −exp(A_log) is computed once here. F32, F16 and BF16 tensors load into any weight format
// (converted as common.hpp says).

#include <cmath>
#include <deque>
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
#include "tessel/models/mamba.hpp"

namespace tessel::io {

struct MambaLoadOptions {
  float norm_eps = 0.0f;  // safetensors only (not in the file): 0 means 1e-5
};

namespace detail {

template <class Model>
Model make_mamba(const models::MambaConfig& c, const std::string& file) {
  using Cfg = typename Model::config_type;
  if constexpr (std::is_same_v<Cfg, models::MambaConfig>) {
    return Model(c);
  } else {
    models::MambaConfig s = models::to_mamba_config(Cfg{});
    check_static_dim(file, "embedding length", s.dim, c.dim);
    check_static_dim(file, "layer count", s.layers, c.layers);
    check_static_dim(file, "vocabulary size", s.vocab, c.vocab);
    check_static_dim(file, "inner size", s.d_inner, c.d_inner);
    check_static_dim(file, "state size", s.d_state, c.d_state);
    check_static_dim(file, "conv kernel", s.d_conv, c.d_conv);
    check_static_dim(file, "time step rank", s.dt_rank, c.dt_rank);
    if (s.tied_output != c.tied_output)
      throw format_error(file, 0,
                         c.tied_output ? "the file has no separate output tensor"
                                       : "the file has an untied output tensor");
    return Model(Cfg{});
  }
}

}  // namespace detail

/// Checks that f holds every tensor a Mamba of config c needs, with the shapes c implies (see
/// io/load/gguf_check.hpp). The convolution weight may be PyTorch's [d_inner, 1, d_conv].
inline void check_mamba_tensors(const GGUFFile& f, const models::MambaConfig& c) {
  const KeyedExtent dim = keyed("mamba.embedding_length", c.dim),
                    inner = keyed("mamba.ssm.inner_size", c.d_inner),
                    in2 = {2 * c.d_inner, "mamba.ssm.inner_size", c.d_inner},
                    state = keyed("mamba.ssm.state_size", c.d_state),
                    conv = keyed("mamba.ssm.conv_kernel", c.d_conv),
                    rank = keyed("mamba.ssm.time_step_rank", c.dt_rank),
                    x = {c.dt_rank + 2 * c.d_state, "mamba.ssm.state_size", c.d_state};
  check_tensor_table(
      f, "mamba", "mamba.block_count", c.layers,
      {{"output_norm.weight", {dim}}, {"output.weight", {vocab_extent(c.vocab), dim}, {}, true}},
      [&](std::int64_t l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        return std::vector<ExpectedTensor>{
            {p + "attn_norm.weight", {dim}},
            {p + "ssm_out.weight", {dim, inner}},
            {p + "ssm_in.weight", {in2, dim}},
            {p + "ssm_conv1d.weight", {inner, conv}, {{c.d_inner, 1, c.d_conv}}},
            {p + "ssm_conv1d.bias", {inner}},
            {p + "ssm_dt.weight", {inner, rank}},
            {p + "ssm_dt.bias", {inner}},
            {p + "ssm_a", {inner, state}},
            {p + "ssm_d", {inner}},
            {p + "ssm_x.weight", {x, inner}},
        };
      });
}

/// The config in a GGUF file's `mamba.*` metadata, each value checked and the tensor table
/// checked against it.
inline models::MambaConfig mamba_config(const GGUFFile& f) {
  detail::expect_architecture(f, "mamba");
  models::MambaConfig c;
  c.dim = checked_int(f, "mamba.embedding_length");
  c.layers = checked_int(f, "mamba.block_count");
  c.d_conv = checked_int(f, "mamba.ssm.conv_kernel");
  c.d_inner = checked_int(f, "mamba.ssm.inner_size");
  c.d_state = checked_int(f, "mamba.ssm.state_size");
  c.dt_rank = checked_int(f, "mamba.ssm.time_step_rank");
  c.norm_eps = checked_float(f, "mamba.attention.layer_norm_rms_epsilon", c.norm_eps);
  c.vocab = checked_vocab(f, "mamba", "mamba.embedding_length", c.dim);
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  check_mamba_tensors(f, c);
  return c;
}

/// A Mamba (static or run-time config) from a GGUF `mamba` file.
template <class Model>
Model load_mamba_gguf(const GGUFFile& f, [[maybe_unused]] const MambaLoadOptions& opt = {}) {
  Model m = detail::make_mamba<Model>(mamba_config(f), f.path());
  detail::load_params(m, f.path(), [&](const std::string& n) -> std::optional<TensorSource> {
    const GGUFTensor* t = f.find_tensor(n);
    if (!t) return std::nullopt;
    TensorSource s = detail::gguf_source(f, *t);
    if (detail::is_name(n, ".ssm_conv1d.weight")) detail::squeeze_conv(s);
    return s;
  });
  detail::check_negative_a(m, f.path());
  return m;
}
template <nn::WeightFormat W = float>
models::Mamba<models::MambaConfig, W> load_gguf_mamba(const std::string& path,
                                                      const MambaLoadOptions& opt = {}) {
  return load_mamba_gguf<models::Mamba<models::MambaConfig, W>>(GGUFFile::open(path), opt);
}

/// The config of a Hugging Face Mamba checkpoint, from its tensors' shapes.
inline models::MambaConfig mamba_config(const SafetensorsCheckpoint& ck,
                                        const MambaLoadOptions& opt = {}) {
  const auto& ts = ck.tensors();
  const auto shape = [&](const std::string& n) -> std::vector<std::int64_t> {
    const auto it = ts.find(n);
    if (it == ts.end())
      throw format_error(ck.shards().front().path(), 0,
                         "the checkpoint has no tensor named '" + n + "'");
    return it->second->shape;
  };
  models::MambaConfig c;
  const auto emb = shape("backbone.embeddings.weight");
  const auto a = shape("backbone.layers.0.mixer.A_log");
  const auto conv = shape("backbone.layers.0.mixer.conv1d.weight");
  const auto dt = shape("backbone.layers.0.mixer.dt_proj.weight");
  if (emb.size() != 2 || a.size() != 2 || conv.empty() || dt.size() != 2)
    throw format_error(ck.shards().front().path(), 0,
                       "backbone.embeddings, A_log or dt_proj is not a matrix");
  c.vocab = emb[0], c.dim = emb[1];
  c.d_inner = a[0], c.d_state = a[1], c.d_conv = conv.back(), c.dt_rank = dt[1];
  while (ts.count("backbone.layers." + std::to_string(c.layers) + ".mixer.A_log")) ++c.layers;
  if (opt.norm_eps > 0) c.norm_eps = opt.norm_eps;
  c.tied_output = true;
  return c;
}

/// A Mamba (static or run-time config) from a safetensors checkpoint with HF names.
template <class Model>
Model load_mamba_safetensors(const SafetensorsCheckpoint& ck, const MambaLoadOptions& opt = {}) {
  const std::string& file = ck.shards().front().path();
  Model m = detail::make_mamba<Model>(mamba_config(ck, opt), file);
  std::deque<std::vector<float>> owned;  // A = −exp(A_log), alive until the copy
  detail::load_params(m, file, [&](const std::string& n) -> std::optional<TensorSource> {
    const auto& ts = ck.tensors();
    const auto it = ts.find(detail::mamba_hf_name(n));
    if (it == ts.end()) return std::nullopt;
    const SafetensorsTensor& t = *it->second;
    TensorSource s = detail::st_source(t);
    if (detail::is_name(n, ".ssm_conv1d.weight")) detail::squeeze_conv(s);
    if (detail::is_name(n, ".ssm_a")) {
      if (s.shape.size() != 2)
        throw format_error(*t.file, t.file_offset, "tensor '" + t.name + "' is not a matrix");
      auto& a = owned.emplace_back(std::size_t(s.shape[0] * s.shape[1]));
      for (index_t r = 0; r < s.shape[0]; ++r)
        detail::source_row_f32(s, r, s.shape[1], a.data() + r * s.shape[1]);
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
models::Mamba<models::MambaConfig, W> load_safetensors_mamba(const std::string& path,
                                                             const MambaLoadOptions& opt = {}) {
  return load_mamba_safetensors<models::Mamba<models::MambaConfig, W>>(
      SafetensorsCheckpoint::open<detail::json_t<W>>(path), opt);
}

}  // namespace tessel::io
