#pragma once
// safetensors (Hugging Face): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
// data buffer. Tensors are zero-copy views into the memory-mapped file. Sharded checkpoints
// are read through their model.safetensors.index.json (weight_map: tensor name -> file).

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "byte_reader.hpp"
#include "mmap.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/tensor.hpp"

namespace tessel::io {

enum class st_dtype {
  F64,
  F32,
  F16,
  BF16,
  F8_E4M3,
  F8_E5M2,
  I64,
  I32,
  I16,
  I8,
  U64,
  U32,
  U16,
  U8,
  BOOL
};

struct st_dtype_info {
  st_dtype dtype;
  const char* name;
  std::size_t size;
};
inline constexpr std::array<st_dtype_info, 15> st_dtypes{{
    {st_dtype::F64, "F64", 8},
    {st_dtype::F32, "F32", 4},
    {st_dtype::F16, "F16", 2},
    {st_dtype::BF16, "BF16", 2},
    {st_dtype::F8_E4M3, "F8_E4M3", 1},
    {st_dtype::F8_E5M2, "F8_E5M2", 1},
    {st_dtype::I64, "I64", 8},
    {st_dtype::I32, "I32", 4},
    {st_dtype::I16, "I16", 2},
    {st_dtype::I8, "I8", 1},
    {st_dtype::U64, "U64", 8},
    {st_dtype::U32, "U32", 4},
    {st_dtype::U16, "U16", 2},
    {st_dtype::U8, "U8", 1},
    {st_dtype::BOOL, "BOOL", 1},
}};
inline const st_dtype_info& info(st_dtype d) {
  return st_dtypes[std::size_t(d)];
}
inline const char* name(st_dtype d) {
  return info(d).name;
}

/// The safetensors dtype of C++ element type T (compile error for others).
template <class T>
constexpr st_dtype st_dtype_of() {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, double>)
    return st_dtype::F64;
  else if constexpr (std::is_same_v<U, float>)
    return st_dtype::F32;
  else if constexpr (std::is_same_v<U, f16>)
    return st_dtype::F16;
  else if constexpr (std::is_same_v<U, bf16>)
    return st_dtype::BF16;
  else if constexpr (std::is_same_v<U, f8_e4m3>)
    return st_dtype::F8_E4M3;
  else if constexpr (std::is_same_v<U, f8_e5m2>)
    return st_dtype::F8_E5M2;
  else if constexpr (std::is_same_v<U, std::int64_t>)
    return st_dtype::I64;
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return st_dtype::I32;
  else if constexpr (std::is_same_v<U, std::int16_t>)
    return st_dtype::I16;
  else if constexpr (std::is_same_v<U, std::int8_t>)
    return st_dtype::I8;
  else if constexpr (std::is_same_v<U, std::uint64_t>)
    return st_dtype::U64;
  else if constexpr (std::is_same_v<U, std::uint32_t>)
    return st_dtype::U32;
  else if constexpr (std::is_same_v<U, std::uint16_t>)
    return st_dtype::U16;
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return st_dtype::U8;
  else if constexpr (std::is_same_v<U, bool>)
    return st_dtype::BOOL;
  else
    static_assert(sizeof(T) == 0, "tessel: no safetensors dtype for this type");
}

struct SafetensorsTensor {
  std::string name;
  st_dtype dtype = st_dtype::F32;
  std::vector<std::int64_t> shape;   // outermost first
  std::uint64_t begin = 0, end = 0;  // data_offsets, relative to the data buffer
  const std::byte* data = nullptr;
  std::shared_ptr<const std::string> file;
  std::uint64_t file_offset = 0;  // absolute offset of the data, for messages
  /// The file's bytes (data points into them): holding it keeps data valid (zero-copy loads).
  std::shared_ptr<const MappedFile> mapping;

  std::int64_t n_elements() const noexcept {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
  std::span<const std::byte> bytes() const noexcept { return {data, std::size_t(end - begin)}; }

  /// A contiguous row-major view of rank R (the tensor's rank; 1 for a scalar, rank 0) of
  /// element type T, which must be the stored dtype. The data must be aligned for T.
  template <class T, std::size_t R>
  TensorView<const T, DynShape<R>> view() const {
    if (st_dtype_of<T>() != dtype)
      throw format_error(*file, file_offset,
                         "tensor '" + name + "' has dtype " + io::name(dtype) + ", not " +
                             io::name(st_dtype_of<T>()));
    const bool scalar = shape.empty() && R == 1;
    if (shape.size() != R && !scalar)
      throw shape_error("tessel: tensor '" + name + "' has rank " + std::to_string(shape.size()) +
                        ", viewed with rank " + std::to_string(R));
    if (reinterpret_cast<std::uintptr_t>(data) % alignof(T) != 0)
      throw format_error(*file, file_offset,
                         "tensor '" + name + "' data is not aligned to " +
                             std::to_string(alignof(T)) + " bytes; copy its bytes() instead");
    std::array<index_t, R> e{};
    for (std::size_t k = 0; k < R; ++k) e[k] = scalar ? 1 : shape[k];
    return {reinterpret_cast<const T*>(data), DynShape<R>::from_array(e)};
  }
};

namespace detail {
// nlohmann::json as a type that depends on T: a call inside a template over T that names it is
// instantiated with that template, not where the template is defined.
template <class T>
struct json_of {
  using type = nlohmann::json;
};
template <class T>
using json_t = typename json_of<T>::type;
}  // namespace detail

class SafetensorsFile {
 public:
  /// The JSON header may not exceed this (the reference implementation's limit too).
  static constexpr std::uint64_t max_header = 100'000'000;

  // The parsing members are templates (Json defaults to nlohmann::json) so that nlohmann's parser
  // is instantiated only in programs that read safetensors, not in every one that includes it.
  template <class Json = nlohmann::json>
  static SafetensorsFile open(const std::string& path) {
    return SafetensorsFile(MappedFile::open(path), std::type_identity<Json>{});
  }
  template <class Json = nlohmann::json>
  static SafetensorsFile from_bytes(std::span<const std::byte> b, std::string name = "<memory>") {
    return SafetensorsFile(MappedFile::from_bytes(b, std::move(name)), std::type_identity<Json>{});
  }
  template <class Json = nlohmann::json>
  explicit SafetensorsFile(MappedFile m, std::type_identity<Json> = {})
      : map_(std::make_shared<const MappedFile>(std::move(m))),
        name_(std::make_shared<const std::string>(map_->name())) {
    parse<Json>();
  }

  const std::string& path() const noexcept { return *name_; }
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// Tensors in the order of their data offsets.
  const std::vector<SafetensorsTensor>& tensors() const noexcept { return tensors_; }
  const SafetensorsTensor* find(std::string_view n) const {
    auto it = index_.find(n);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  const SafetensorsTensor& tensor(std::string_view n) const {
    if (const auto* t = find(n)) return *t;
    throw format_error(path(), 0, "no tensor named '" + std::string(n) + "'");
  }

 private:
  [[noreturn]] void fail(std::uint64_t at, const std::string& why) const {
    throw format_error(path(), at, why);
  }

  template <class Json>
  void parse() {
    ByteReader r(map_->bytes(), path());
    const std::uint64_t n = r.u64("header length");
    if (n > r.remaining())
      r.fail_at(0, "header length " + std::to_string(n) + " is past the end of the file (" +
                       std::to_string(map_->size()) + " bytes)");
    if (n > max_header) r.fail_at(0, "header length " + std::to_string(n) + " is too large");
    const auto text = r.take_string(std::size_t(n), "header");
    data_offset_ = 8 + n;
    const std::uint64_t data_size = map_->size() - data_offset_;

    // nlohmann-json rejects ill-formed UTF-8 and bad syntax; no exceptions escape as its own.
    Json h = Json::parse(text.begin(), text.end(), nullptr, false);
    if (h.is_discarded()) fail(8, "header is not valid JSON (or not UTF-8)");
    if (!h.is_object()) fail(8, "header is not a JSON object");

    for (auto it = h.begin(); it != h.end(); ++it) {
      const std::string& key = it.key();
      const auto& v = it.value();
      if (key == "__metadata__") {
        if (!v.is_object()) fail(8, "__metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string())
            fail(8, "__metadata__ value of '" + m.key() + "' is not a string");
          metadata_[m.key()] = m.value().template get<std::string>();
        }
        continue;
      }
      const std::string what = "tensor '" + key + "'";
      if (!v.is_object()) fail(8, what + " is not an object");
      SafetensorsTensor t;
      t.name = key;
      t.file = name_;
      const auto dt = v.find("dtype");
      if (dt == v.end() || !dt->is_string()) fail(8, what + " has no dtype string");
      const auto& ds = dt->template get_ref<const std::string&>();
      const auto* di = std::find_if(st_dtypes.begin(), st_dtypes.end(),
                                    [&](const auto& d) { return ds == d.name; });
      if (di == st_dtypes.end()) fail(8, what + " has unknown dtype '" + ds + "'");
      t.dtype = di->dtype;
      const auto sh = v.find("shape");
      if (sh == v.end() || !sh->is_array()) fail(8, what + " has no shape array");
      std::uint64_t count = 1;
      for (const auto& e : *sh) {
        if (!e.is_number_unsigned())
          fail(8, what + " has a shape entry that is not an integer >= 0");
        const auto x = e.template get<std::uint64_t>();
        if (x > std::uint64_t(std::numeric_limits<std::int64_t>::max()) ||
            __builtin_mul_overflow(count, x, &count) ||
            count > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
          fail(8, what + ": element count overflows");
        t.shape.push_back(std::int64_t(x));
      }
      const auto off = v.find("data_offsets");
      if (off == v.end() || !off->is_array() || off->size() != 2 ||
          !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
        fail(8, what + " has no data_offsets [begin, end] of integers");
      t.begin = (*off)[0].template get<std::uint64_t>();
      t.end = (*off)[1].template get<std::uint64_t>();
      if (t.begin > t.end || t.end > data_size)
        fail(8, what + " data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                    "] lie outside the data buffer of " + std::to_string(data_size) + " bytes");
      std::uint64_t bytes;
      if (__builtin_mul_overflow(count, std::uint64_t(di->size), &bytes) ||
          bytes != t.end - t.begin)
        fail(8, what + " has " + std::to_string(t.end - t.begin) + " bytes of data, but shape " +
                    "and dtype need " + std::to_string(count) + " x " + std::to_string(di->size));
      t.data = map_->data() + data_offset_ + t.begin;
      t.mapping = map_;
      t.file_offset = data_offset_ + t.begin;
      tensors_.push_back(std::move(t));
    }
    // The buffer must be covered exactly: no overlaps, no holes (as the format requires).
    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t pos = 0;
    for (const auto& t : tensors_) {
      if (t.begin < pos) fail(t.file_offset, "tensor '" + t.name + "' overlaps the one before it");
      if (t.begin > pos)
        fail(data_offset_ + pos, "hole in the data buffer before tensor '" + t.name + "'");
      pos = t.end;
    }
    if (pos != data_size)
      fail(data_offset_ + pos, "data buffer has " + std::to_string(data_size - pos) +
                                   " bytes not covered by any tensor");
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  std::shared_ptr<const MappedFile> map_;
  std::shared_ptr<const std::string> name_;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

/// A checkpoint in one file or sharded: open() takes a .safetensors file or a
/// model.safetensors.index.json whose weight_map names the shard of every tensor.
class SafetensorsCheckpoint {
 public:
  template <class Json = nlohmann::json>
  static SafetensorsCheckpoint open(const std::string& path) {
    SafetensorsCheckpoint c;
    if (!path.ends_with(".json")) {
      c.shards_.push_back(SafetensorsFile::open<Json>(path));
      for (const auto& t : c.shards_[0].tensors()) c.where_.emplace(t.name, &t);
      return c;
    }
    const auto index = MappedFile::open(path);
    const auto* b = reinterpret_cast<const char*>(index.data());
    Json j = Json::parse(b, b + index.size(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw format_error(path, 0, "not a JSON object");
    const auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) throw format_error(path, 0, "no weight_map object");
    const auto dir = std::filesystem::path(path).parent_path();
    std::map<std::string, std::size_t> shard_of_file;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        throw format_error(path, 0, "weight_map entry '" + it.key() + "' is not a file name");
      const auto& f = it.value().template get_ref<const std::string&>();
      if (f.empty() || f.find('/') != std::string::npos || f == "..")
        throw format_error(path, 0, "weight_map file '" + f + "' is not a plain file name");
      if (!shard_of_file.count(f)) {
        shard_of_file[f] = c.shards_.size();
        c.shards_.push_back(SafetensorsFile::open<Json>((dir / f).string()));
      }
    }
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      const auto& shard = c.shards_[shard_of_file[it.value().template get<std::string>()]];
      const auto* t = shard.find(it.key());
      if (!t)
        throw format_error(shard.path(), 0,
                           "shard has no tensor '" + it.key() + "' named in " + path);
      c.where_.emplace(it.key(), t);
    }
    return c;
  }

  const std::vector<SafetensorsFile>& shards() const noexcept { return shards_; }
  /// Every tensor, by name.
  const std::map<std::string, const SafetensorsTensor*, std::less<>>& tensors() const noexcept {
    return where_;
  }
  const SafetensorsTensor* find(std::string_view n) const {
    auto it = where_.find(n);
    return it == where_.end() ? nullptr : it->second;
  }
  const SafetensorsTensor& tensor(std::string_view n) const {
    if (const auto* t = find(n)) return *t;
    throw value_error("tessel: checkpoint has no tensor named '" + std::string(n) + "'");
  }

 private:
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, const SafetensorsTensor*, std::less<>> where_;
};

/// Writes a safetensors file. Tensor bytes are not copied: they must stay alive until write().
class SafetensorsWriter {
 public:
  void set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }
  void add(std::string name, st_dtype dtype, std::vector<std::int64_t> shape,
           std::span<const std::byte> data) {
    if (name == "__metadata__" || !valid_utf8(name))
      throw value_error("tessel: invalid safetensors tensor name '" + name + "'");
    for (const auto& e : entries_)
      if (e.name == name) throw value_error("tessel: duplicate safetensors tensor '" + name + "'");
    std::int64_t n = 1;
    for (auto e : shape) n = checked_mul(n, e, "safetensors tensor size");
    const auto bytes = checked_mul(n, std::int64_t(info(dtype).size), "safetensors tensor bytes");
    if (std::uint64_t(bytes) != data.size())
      throw value_error("tessel: safetensors tensor '" + name + "' needs " + std::to_string(bytes) +
                        " bytes, got " + std::to_string(data.size()));
    entries_.push_back({std::move(name), dtype, std::move(shape), data});
  }
  template <class T, class S>
  void add(std::string name, TensorView<T, S> v) {
    if (!v.is_contiguous()) throw value_error("tessel: safetensors tensors must be contiguous");
    const auto e = v.shape().extents();
    add(std::move(name), st_dtype_of<T>(), std::vector<std::int64_t>(e.begin(), e.end()),
        {reinterpret_cast<const std::byte*>(v.data()), std::size_t(v.size()) * sizeof(T)});
  }

  // to_bytes and write are templates so that nlohmann's ordered_json is instantiated only in
  // programs that write safetensors files.
  template <class Json = nlohmann::ordered_json>
  std::vector<std::byte> to_bytes() const {
    // nlohmann's ordered_json keeps the insertion order: tensors in data order.
    Json h = Json::object();
    if (!metadata_.empty()) h["__metadata__"] = metadata_;
    std::uint64_t off = 0;
    for (const auto& e : entries_) {
      h[e.name] = {{"dtype", name(e.dtype)},
                   {"shape", e.shape},
                   {"data_offsets", {off, off + e.data.size()}}};
      off += e.data.size();
    }
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
    std::vector<std::byte> out(8 + text.size() + off);
    const std::uint64_t n = text.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    std::size_t p = 8 + text.size();
    for (const auto& e : entries_) {
      if (!e.data.empty()) std::memcpy(out.data() + p, e.data.data(), e.data.size());
      p += e.data.size();
    }
    return out;
  }
  template <class Json = nlohmann::ordered_json>
  void write(const std::string& path) const {
    const auto b = to_bytes<Json>();
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw io_error("tessel: cannot create '" + path + "'");
    const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
    if (std::fclose(f) != 0 || !ok) throw io_error("tessel: cannot write '" + path + "'");
    settle_written_file(path);
  }

 private:
  struct entry {
    std::string name;
    st_dtype dtype;
    std::vector<std::int64_t> shape;
    std::span<const std::byte> data;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<entry> entries_;
};

}  // namespace tessel::io
