#pragma once
// Writing models::Llama as a GGUF `llama` file, weights in a chosen format, mixed as GGUF
// quantizers mix them: every 2-D weight whose rows hold whole blocks of the format is quantized,
// the other 2-D weights are kept in F16, 1-D tensors (norms) in F32.
//
//   auto m = io::load_llama2c_model<f32>("stories260K.bin");           // load_llama.hpp
//   io::write_gguf_llama(m, "stories260K-Q8_0.gguf", io::ggml_type::Q8_0);  // ffn_down: F16
//   auto q = io::load_gguf_llama<nn::any_weight>("stories260K-Q8_0.gguf");  // formats kept
//
// The pieces serve writers of other shapes too (bench/llama_1b.cpp writes random weights):
// set_llama_metadata(w, cfg) and gguf_weight(x, shape, type).

#include <deque>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tessel/io/formats/gguf_writer.hpp"
#include "tessel/io/load/common.hpp"
#include "tessel/models/llama.hpp"
#include "tessel/quant/formats.hpp"

namespace tessel::io {

/// One tensor ready for GGUFWriter::add_tensor.
struct GGUFTensorData {
  ggml_type type = ggml_type::F32;
  std::vector<std::int64_t> shape;  // outermost first
  std::vector<std::byte> bytes;
};

namespace detail {
/// Calls fn(nn::type_tag<T>{}) with the tessel format of a ggml type it can write.
template <class Fn>
void with_ggml_format(ggml_type t, Fn&& fn) {
  const auto k = weight_kind_of(t);
  if (!k) throw value_error(std::string("tessel: cannot write GGUF weights as ") + io::name(t));
  nn::with_weight_kind(*k, fn);
}
}  // namespace detail

/// x (f32, `shape` outermost first) as a GGUF tensor: in `want` when x is 2-D and its rows hold
/// whole blocks of `want`; otherwise F16 (2-D) or F32 (1-D).
inline GGUFTensorData gguf_weight(std::span<const float> x, std::vector<std::int64_t> shape,
                                  ggml_type want) {
  GGUFTensorData t;
  t.shape = std::move(shape);
  std::int64_t n = 1;
  for (auto e : t.shape) n *= e;
  if (n != std::int64_t(x.size()))
    throw shape_error("tessel::io::gguf_weight: " + std::to_string(x.size()) +
                      " values for a tensor of " + std::to_string(n));
  const std::int64_t cols = t.shape.empty() ? 1 : t.shape.back();
  t.type = t.shape.size() != 2                  ? ggml_type::F32
           : cols % info(want).block_elems == 0 ? want
                                                : ggml_type::F16;
  detail::with_ggml_format(t.type, [&]<class T>(nn::type_tag<T>) {
    const std::int64_t units = n / block_elems_v<T>;
    t.bytes.resize(std::size_t(units) * sizeof(T));
    T* out = reinterpret_cast<T*>(t.bytes.data());
    if constexpr (nn::is_dense_weight_v<T>) {
      for (std::int64_t i = 0; i < n; ++i) out[i] = from_f32<T>(x[std::size_t(i)]);
    } else {
      const std::int64_t rows = n / cols;
      for (std::int64_t r = 0; r < rows; ++r)
        T::quantize_row(x.data() + r * cols, out + r * (cols / T::block_elems), cols);
    }
  });
  return t;
}

/// The `llama.*` metadata of config c (and general.architecture / general.name).
inline void set_llama_metadata(GGUFWriter& w, const models::LlamaConfig& c,
                               std::string_view model_name = "tessel") {
  w.set("general.architecture", "llama");
  w.set("general.name", model_name);
  w.set("llama.context_length", std::uint32_t(c.max_seq));
  w.set("llama.embedding_length", std::uint32_t(c.dim));
  w.set("llama.feed_forward_length", std::uint32_t(c.hidden));
  w.set("llama.block_count", std::uint32_t(c.layers));
  w.set("llama.attention.head_count", std::uint32_t(c.heads));
  w.set("llama.attention.head_count_kv", std::uint32_t(c.kv_heads));
  w.set("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  w.set("llama.rope.freq_base", c.rope_theta);
  w.set("llama.rope.dimension_count", std::uint32_t(c.rope_dim ? c.rope_dim : c.head_dim()));
}

/// Writes every parameter of m (any weight format: each is widened to f32 first) to `path`,
/// matrices in `want` where their rows allow (see the top of the file). `extra` may add
/// metadata (a tokenizer). RoPE must rotate adjacent pairs, as GGUF `llama` does.
template <class Model>
void write_gguf_llama(Model& m, const std::string& path, ggml_type want,
                      const std::function<void(GGUFWriter&)>& extra = {}) {
  if (m.config().rope_style != nn::RopeStyle::adjacent)
    throw value_error("tessel::io::write_gguf_llama: GGUF `llama` rotates adjacent pairs");
  GGUFWriter w;
  set_llama_metadata(w, m.config());
  if (extra) extra(w);
  std::deque<GGUFTensorData> keep;  // add_tensor keeps spans: the data must stay put
  m.visit([&](const std::string& name, auto& t) {
    using Tn = std::remove_cvref_t<decltype(t)>;
    std::vector<float> x;
    std::vector<std::int64_t> shape;
    if constexpr (nn::is_any_matrix_v<Tn>) {
      shape = {t.rows(), t.cols()};
      x.resize(std::size_t(t.size()));
      for (index_t r = 0; r < t.rows(); ++r) t.row_f32(r, x.data() + r * t.cols());
    } else {
      const auto e = t.shape().extents();
      shape.assign(e.begin(), e.end());
      x.resize(std::size_t(t.size()));
      const index_t cols = shape.empty() ? 1 : shape.back();
      const index_t rows = cols ? t.size() / cols : 0;
      using T = typename Tn::value_type;
      for (index_t r = 0; r < rows; ++r)
        nn::detail::weight_row_f32(t.data() + r * (cols / block_elems_v<T>), x.data() + r * cols,
                                   cols);
    }
    GGUFTensorData& d = keep.emplace_back(gguf_weight(x, std::move(shape), want));
    w.add_tensor(name, d.type, d.shape, d.bytes);
  });
  w.write(path);
}

}  // namespace tessel::io
