#pragma once
// llama2.c checkpoints (karpathy/llama2.c, "version 0"): a header of 7 int32 (dim, hidden_dim,
// n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the
// classifier is stored separately) and then f32 weights in llama2.c's order. Each weight is
// exposed per layer under its GGUF name (the names llama.cpp gives the same tensors), so one
// loader serves both formats:
//
//   token_embd.weight [vocab, dim]           blk.L.attn_norm.weight [dim]
//   blk.L.attn_q.weight [dim, dim]           blk.L.attn_k.weight / attn_v [kv_dim, dim]
//   blk.L.attn_output.weight [dim, dim]      blk.L.ffn_norm.weight [dim]
//   blk.L.ffn_gate.weight (w1) [hidden, dim] blk.L.ffn_down.weight (w2) [dim, hidden]
//   blk.L.ffn_up.weight (w3) [hidden, dim]   output_norm.weight [dim]
//   output.weight [vocab, dim]  (the embedding's bytes when the classifier is shared)
//
// Shapes are row-major [out, in], exactly as stored; the RoPE frequency tables that follow
// output_norm in the file are skipped (llama2.c ignores them too).

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "byte_reader.hpp"
#include "mmap.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel::io {

struct Llama2cConfig {
  std::int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0,
               seq_len = 0;
  bool shared_classifier = true;
  std::int32_t head_size() const noexcept { return dim / n_heads; }
  std::int32_t kv_dim() const noexcept { return head_size() * n_kv_heads; }
};

struct Llama2cTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::uint64_t offset = 0;  // in the file
  const float* data = nullptr;

  std::int64_t n_elements() const noexcept {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
  std::span<const float> span() const noexcept { return {data, std::size_t(n_elements())}; }
  template <std::size_t R>
  TensorView<const float, DynShape<R>> view() const {
    if (shape.size() != R)
      throw shape_error("tessel: tensor '" + name + "' has rank " + std::to_string(shape.size()) +
                        ", viewed with rank " + std::to_string(R));
    std::array<index_t, R> e{};
    for (std::size_t k = 0; k < R; ++k) e[k] = shape[k];
    return {data, DynShape<R>::from_array(e)};
  }
};

class Llama2cFile {
 public:
  static Llama2cFile open(const std::string& path) { return Llama2cFile(MappedFile::open(path)); }
  static Llama2cFile from_bytes(std::span<const std::byte> b, std::string name = "<memory>") {
    return Llama2cFile(MappedFile::from_bytes(b, std::move(name)));
  }
  explicit Llama2cFile(MappedFile m) : map_(std::make_shared<const MappedFile>(std::move(m))) {
    parse();
  }

  const std::string& path() const noexcept { return map_->name(); }
  /// The file's bytes, shared: the tensors point into them (zero-copy loads keep them alive).
  const std::shared_ptr<const MappedFile>& mapping() const noexcept { return map_; }
  const Llama2cConfig& config() const noexcept { return cfg_; }
  /// In file order (output.weight last).
  const std::vector<Llama2cTensor>& tensors() const noexcept { return tensors_; }
  const Llama2cTensor* find(std::string_view n) const {
    auto it = index_.find(n);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  const Llama2cTensor& tensor(std::string_view n) const {
    if (const auto* t = find(n)) return *t;
    throw format_error(path(), 0, "no tensor named '" + std::string(n) + "'");
  }

 private:
  void parse() {
    ByteReader r(map_->bytes(), path());
    const char* names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                            "n_kv_heads", "vocab_size", "seq_len"};
    std::int32_t h[7];
    for (int k = 0; k < 7; ++k) h[k] = r.i32(names[k]);
    for (int k = 0; k < 7; ++k)  // vocab_size may be negative (separate classifier)
      if (h[k] <= 0 && !(k == 5 && h[k] < 0 && h[k] != INT32_MIN))
        r.fail_at(std::size_t(4 * k), std::string("header: ") + names[k] + " is " +
                                          std::to_string(h[k]) + ", expected > 0");
    cfg_ = {h[0], h[1], h[2], h[3], h[4], h[5] < 0 ? -h[5] : h[5], h[6], h[5] > 0};
    if (cfg_.dim % cfg_.n_heads != 0)
      r.fail_at(12, "header: dim " + std::to_string(cfg_.dim) + " is not a multiple of n_heads " +
                        std::to_string(cfg_.n_heads));
    if (cfg_.n_kv_heads > cfg_.n_heads || cfg_.n_heads % cfg_.n_kv_heads != 0)
      r.fail_at(16, "header: n_heads " + std::to_string(cfg_.n_heads) +
                        " is not a multiple of n_kv_heads " + std::to_string(cfg_.n_kv_heads));

    const std::int64_t dim = cfg_.dim, hid = cfg_.hidden_dim, L = cfg_.n_layers,
                       vocab = cfg_.vocab_size, kv = cfg_.kv_dim();
    const auto mul = [&](std::int64_t a, std::int64_t b) {
      std::int64_t v;
      if (__builtin_mul_overflow(a, b, &v)) r.fail_at(0, "header implies a size that overflows");
      return v;
    };
    const std::int64_t freq = mul(cfg_.seq_len, cfg_.head_size()) / 2;
    // (name, per-layer shape, layered?) in file order
    struct part {
      const char* name;
      std::int64_t rows, cols;
      bool layered;
    };
    const part parts[] = {
        {"token_embd.weight", vocab, dim, false}, {"attn_norm.weight", 1, dim, true},
        {"attn_q.weight", dim, dim, true},        {"attn_k.weight", kv, dim, true},
        {"attn_v.weight", kv, dim, true},         {"attn_output.weight", dim, dim, true},
        {"ffn_norm.weight", 1, dim, true},        {"ffn_gate.weight", hid, dim, true},
        {"ffn_down.weight", dim, hid, true},      {"ffn_up.weight", hid, dim, true},
        {"output_norm.weight", 1, dim, false},    {nullptr, 2, freq, false},
        {"output.weight", vocab, dim, false},
    };
    std::int64_t floats = 0;
    for (const auto& p : parts) {
      if (p.name && std::string_view(p.name) == "output.weight" && cfg_.shared_classifier) break;
      const auto n = mul(mul(p.rows, p.cols), p.layered ? L : 1);
      if (__builtin_add_overflow(floats, n, &floats))
        r.fail_at(0, "header implies a size that overflows");
    }
    std::int64_t expected;
    if (__builtin_mul_overflow(floats, 4, &expected) ||
        __builtin_add_overflow(expected, 28, &expected) || std::uint64_t(expected) != map_->size())
      r.fail_at(map_->size(),
                "file is " + std::to_string(map_->size()) + " bytes, the header implies " +
                    (expected > 0 ? std::to_string(expected) : "an overflowing size"));

    std::uint64_t off = 28;
    const auto add = [&](std::string name, std::int64_t rows, std::int64_t cols, std::uint64_t at) {
      Llama2cTensor t;
      t.name = std::move(name);
      t.shape = rows == 1 ? std::vector<std::int64_t>{cols} : std::vector<std::int64_t>{rows, cols};
      t.offset = at;
      t.data = reinterpret_cast<const float*>(map_->data() + at);
      index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    };
    for (const auto& p : parts) {
      const std::uint64_t n = std::uint64_t(p.rows * p.cols);
      if (!p.name) {
        off += n * 4;
        continue;
      }
      if (std::string_view(p.name) == "output.weight" && cfg_.shared_classifier) {
        add(p.name, p.rows, p.cols, 28);  // the embedding doubles as the classifier
        continue;
      }
      if (!p.layered) {
        add(p.name, p.rows, p.cols, off);
        off += n * 4;
        continue;
      }
      for (std::int64_t l = 0; l < L; ++l)
        add("blk." + std::to_string(l) + "." + p.name, p.rows, p.cols,
            off + std::uint64_t(l) * n * 4);
      off += n * 4 * std::uint64_t(L);
    }
  }

  std::shared_ptr<const MappedFile> map_;
  Llama2cConfig cfg_;
  std::vector<Llama2cTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

}  // namespace tessel::io
