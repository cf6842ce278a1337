#pragma once
// GGUF (versions 2 and 3), the llama.cpp / ggml model file: a header, typed key-value
// metadata, a table of tensor infos and an aligned data section. Opening reads the metadata
// and the table only; tensors are views into the memory-mapped file in their stored format.
// The mapping is shared (mapping()): loaders keep it alive in the weights they view, so a
// model outlives the GGUFFile it was loaded from.
//
// Dimensions: GGUF lists a tensor's extents innermost first (ne[0] is the row length). tessel
// shapes are outermost first, so a GGUF tensor with ne = {64, 512} is a [512, 64] view.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "byte_reader.hpp"
#include "mmap.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/tensor.hpp"
#include "tessel/quant/format_list.hpp"

namespace tessel::io {

// ---- tensor formats ----------------------------------------------------------------------

// ggml_type, its table ggml_types and find_ggml_type: quant/format_list.hpp.

inline const ggml_type_info& info(ggml_type t) {
  const auto* i = find_ggml_type(static_cast<std::uint32_t>(t));
  if (!i) throw value_error("tessel: unknown ggml type " + std::to_string(unsigned(t)));
  return *i;
}
inline const char* name(ggml_type t) {
  return info(t).name;
}

/// The ggml type that stores elements of C++ type T (empty for none): the entry of T in
/// quant/format_list.hpp.
template <class T>
constexpr std::optional<ggml_type_info> ggml_type_of() noexcept {
  if constexpr (is_gguf_format_v<T>)
    return *find_ggml_type(static_cast<std::uint32_t>(gguf_type_v<T>));
  else
    return std::nullopt;
}

// ---- metadata values ----------------------------------------------------------------------

/// GGUF metadata value types, numbered as in the specification.
enum class gguf_type : std::uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

inline const char* name(gguf_type t) noexcept {
  static constexpr const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<std::uint32_t>(t);
  return i < 13 ? names[i] : "unknown";
}

namespace detail {
/// Byte size of a scalar metadata type (0 for string and array).
constexpr std::size_t gguf_scalar_size(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::u8:
    case gguf_type::i8:
    case gguf_type::boolean:
      return 1;
    case gguf_type::u16:
    case gguf_type::i16:
      return 2;
    case gguf_type::u32:
    case gguf_type::i32:
    case gguf_type::f32:
      return 4;
    case gguf_type::u64:
    case gguf_type::i64:
    case gguf_type::f64:
      return 8;
    default:
      return 0;
  }
}
template <class T>
constexpr gguf_type gguf_type_of() {
  if constexpr (std::is_same_v<T, std::uint8_t>)
    return gguf_type::u8;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return gguf_type::i8;
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return gguf_type::u16;
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return gguf_type::i16;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return gguf_type::u32;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return gguf_type::i32;
  else if constexpr (std::is_same_v<T, float>)
    return gguf_type::f32;
  else if constexpr (std::is_same_v<T, bool>)
    return gguf_type::boolean;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return gguf_type::u64;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return gguf_type::i64;
  else if constexpr (std::is_same_v<T, double>)
    return gguf_type::f64;
  else
    static_assert(sizeof(T) == 0, "tessel: not a GGUF scalar type");
}
template <class T>
concept gguf_scalar = std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::int8_t> ||
    std::is_same_v<T, std::uint16_t> || std::is_same_v<T, std::int16_t> ||
    std::is_same_v<T, std::uint32_t> || std::is_same_v<T, std::int32_t> ||
    std::is_same_v<T, float> || std::is_same_v<T, bool> || std::is_same_v<T, std::uint64_t> ||
    std::is_same_v<T, std::int64_t> || std::is_same_v<T, double>;
}  // namespace detail

/// One metadata value, pointing into the file (valid while the GGUFFile lives).
class GGUFValue {
 public:
  gguf_type type() const noexcept { return type_; }
  /// For arrays: the element type and count.
  gguf_type elem_type() const noexcept { return elem_type_; }
  std::uint64_t count() const noexcept { return count_; }
  /// Byte offset of the value in the file (for error messages).
  std::uint64_t offset() const noexcept { return offset_; }

  bool is_array() const noexcept { return type_ == gguf_type::array; }

  /// A scalar of exactly type T, or a string as std::string_view.
  template <class T>
  T as(const std::string& file, std::string_view key) const {
    if constexpr (std::is_same_v<T, std::string_view> || std::is_same_v<T, std::string>) {
      expect(file, key, gguf_type::string);
      return T(str_);
    } else {
      expect(file, key, detail::gguf_type_of<T>());
      T v;
      if constexpr (std::is_same_v<T, bool>) {
        v = scalar_[0] != 0;
      } else {
        std::memcpy(&v, scalar_, sizeof(T));
      }
      return v;
    }
  }
  /// Any integer type (u8 .. i64, bool excluded) as int64; u64 above INT64_MAX is an error.
  std::int64_t as_int(const std::string& file, std::string_view key) const {
    switch (type_) {
      case gguf_type::u8:
        return load<std::uint8_t>();
      case gguf_type::i8:
        return load<std::int8_t>();
      case gguf_type::u16:
        return load<std::uint16_t>();
      case gguf_type::i16:
        return load<std::int16_t>();
      case gguf_type::u32:
        return load<std::uint32_t>();
      case gguf_type::i32:
        return load<std::int32_t>();
      case gguf_type::i64:
        return load<std::int64_t>();
      case gguf_type::u64: {
        const auto v = load<std::uint64_t>();
        if (v > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
          throw format_error(file, offset_,
                             "metadata '" + std::string(key) + "' value " + std::to_string(v) +
                                 " does not fit in int64");
        return std::int64_t(v);
      }
      default:
        throw format_error(file, offset_,
                           "metadata '" + std::string(key) + "' has type " + name(type_) +
                               ", expected an integer");
    }
  }
  /// f32 or f64 as double.
  double as_float(const std::string& file, std::string_view key) const {
    if (type_ == gguf_type::f32) return load<float>();
    if (type_ == gguf_type::f64) return load<double>();
    throw format_error(
        file, offset_,
        "metadata '" + std::string(key) + "' has type " + name(type_) + ", expected f32 or f64");
  }

  /// An array of scalars of exactly type T, copied out (the file data may be unaligned).
  template <class T>
  std::vector<T> array(const std::string& file, std::string_view key) const {
    expect_array(file, key, detail::gguf_type_of<T>());
    std::vector<T> out(count_);
    if constexpr (std::is_same_v<T, bool>) {
      for (std::size_t i = 0; i < count_; ++i) out[i] = array_data_[i] != std::byte{0};
    } else if (count_) {
      std::memcpy(out.data(), array_data_, count_ * sizeof(T));
    }
    return out;
  }
  /// Raw little-endian bytes of a scalar.
  std::span<const std::byte> scalar_bytes() const noexcept {
    return {reinterpret_cast<const std::byte*>(scalar_), detail::gguf_scalar_size(type_)};
  }
  /// Raw bytes of an array of scalars, in place.
  std::span<const std::byte> array_bytes() const noexcept {
    return {array_data_, std::size_t(count_) * detail::gguf_scalar_size(elem_type_)};
  }
  /// An array of strings, in place.
  const std::vector<std::string_view>& strings(const std::string& file,
                                               std::string_view key) const {
    expect_array(file, key, gguf_type::string);
    return strings_;
  }
  /// An array of arrays.
  const std::vector<GGUFValue>& items(const std::string& file, std::string_view key) const {
    expect_array(file, key, gguf_type::array);
    return items_;
  }

 private:
  friend class GGUFFile;
  template <class T>
  T load() const noexcept {
    T v;
    std::memcpy(&v, scalar_, sizeof(T));
    return v;
  }
  void expect(const std::string& file, std::string_view key, gguf_type t) const {
    if (type_ != t)
      throw format_error(
          file, offset_,
          "metadata '" + std::string(key) + "' has type " + describe() + ", expected " + name(t));
  }
  void expect_array(const std::string& file, std::string_view key, gguf_type t) const {
    if (type_ != gguf_type::array || elem_type_ != t)
      throw format_error(file, offset_,
                         "metadata '" + std::string(key) + "' has type " + describe() +
                             ", expected array of " + name(t));
  }
  std::string describe() const {
    return is_array() ? std::string("array of ") + name(elem_type_) : std::string(name(type_));
  }

  gguf_type type_ = gguf_type::u8;
  gguf_type elem_type_ = gguf_type::u8;
  std::uint64_t offset_ = 0;
  std::uint64_t count_ = 0;
  unsigned char scalar_[8] = {};
  std::string_view str_;
  const std::byte* array_data_ = nullptr;
  std::vector<std::string_view> strings_;
  std::vector<GGUFValue> items_;
};

// ---- tensors ------------------------------------------------------------------------------

struct GGUFTensor {
  std::string_view name;
  ggml_type type = ggml_type::F32;
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};  // innermost first, as in the file
  std::uint64_t offset = 0;                    // from the start of the data section
  std::uint64_t n_bytes = 0;
  const std::byte* data = nullptr;
  const std::string* file = nullptr;  // owned by the GGUFFile, stable across moves
  std::uint64_t file_offset = 0;      // absolute, for messages

  std::int64_t n_elements() const noexcept { return ne[0] * ne[1] * ne[2] * ne[3]; }
  /// Extents outermost first (tessel order), n_dims of them.
  std::vector<std::int64_t> shape() const {
    std::vector<std::int64_t> s;
    for (int i = n_dims; i-- > 0;) s.push_back(ne[std::size_t(i)]);
    return s;
  }
  std::span<const std::byte> bytes() const noexcept { return {data, std::size_t(n_bytes)}; }

  /// A row-major view of rank R in the stored format T (float, f16, ..., or a block format).
  /// R may exceed n_dims (leading extents of 1); a smaller R needs the dropped outer extents
  /// to be 1. Throws format_error when T is not the stored type.
  template <class T, std::size_t R>
  TensorView<const T, DynShape<R>> view() const {
    constexpr auto want = ggml_type_of<T>();
    static_assert(want.has_value(), "tessel: T is not a GGUF tensor format");
    if (want->type != type)
      throw format_error(*file, file_offset,
                         "tensor '" + std::string(name) + "' is stored as " + io::name(type) +
                             ", not " + want->name);
    std::array<index_t, R> e{};
    for (std::size_t k = 0; k < R; ++k) e[R - 1 - k] = k < 4 ? ne[k] : 1;
    for (std::size_t k = R; k < 4; ++k)
      if (ne[k] != 1)
        throw shape_error("tessel: tensor '" + std::string(name) + "' has " +
                          std::to_string(n_dims) + " dimensions; cannot view it with rank " +
                          std::to_string(R));
    if (reinterpret_cast<std::uintptr_t>(data) % alignof(T) != 0)
      throw format_error(*file, file_offset,
                         "tensor '" + std::string(name) + "' data is not aligned for its type");
    return {reinterpret_cast<const T*>(data), DynShape<R>::from_array(e)};
  }
};

// ---- the file ----------------------------------------------------------------------------

class GGUFFile {
 public:
  static constexpr std::uint32_t default_alignment = 32;

  static GGUFFile open(const std::string& path) { return GGUFFile(MappedFile::open(path)); }
  static GGUFFile from_bytes(std::span<const std::byte> b, std::string name = "<memory>") {
    return GGUFFile(MappedFile::from_bytes(b, std::move(name)));
  }
  explicit GGUFFile(MappedFile m)
      : map_(std::make_shared<const MappedFile>(std::move(m))),
        name_(std::make_unique<const std::string>(map_->name())) {
    parse();
  }

  GGUFFile(GGUFFile&&) = default;
  GGUFFile& operator=(GGUFFile&&) = default;

  const std::string& path() const noexcept { return map_->name(); }
  std::uint32_t version() const noexcept { return version_; }
  std::uint32_t alignment() const noexcept { return alignment_; }
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  std::size_t file_size() const noexcept { return map_->size(); }
  /// The file's bytes, shared: every GGUFTensor::data points into them, and holding this
  /// keeps them valid after the GGUFFile is gone.
  const std::shared_ptr<const MappedFile>& mapping() const noexcept { return map_; }

  // -- metadata
  /// Keys in file order.
  const std::vector<std::string_view>& keys() const noexcept { return keys_; }
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const GGUFValue* find(std::string_view key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }
  const GGUFValue& value(std::string_view key) const {
    if (const auto* v = find(key)) return *v;
    throw format_error(path(), 0, "missing metadata key '" + std::string(key) + "'");
  }
  /// A scalar of exactly type T (or std::string_view for strings).
  template <class T>
  T get(std::string_view key) const {
    return value(key).as<T>(path(), key);
  }
  template <class T>
  T get_or(std::string_view key, T fallback) const {
    const auto* v = find(key);
    return v ? v->as<T>(path(), key) : fallback;
  }
  std::int64_t get_int(std::string_view key) const { return value(key).as_int(path(), key); }
  double get_float(std::string_view key) const { return value(key).as_float(path(), key); }
  template <class T>
  std::vector<T> get_array(std::string_view key) const {
    return value(key).array<T>(path(), key);
  }
  const std::vector<std::string_view>& get_strings(std::string_view key) const {
    return value(key).strings(path(), key);
  }

  // -- tensors
  const std::vector<GGUFTensor>& tensors() const noexcept { return tensors_; }
  const GGUFTensor* find_tensor(std::string_view n) const {
    auto it = tensor_index_.find(n);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  const GGUFTensor& tensor(std::string_view n) const {
    if (const auto* t = find_tensor(n)) return *t;
    throw format_error(path(), 0, "no tensor named '" + std::string(n) + "'");
  }

 private:
  static constexpr int max_depth = 8;  // nesting of arrays of arrays

  std::string_view read_string(ByteReader& r, const char* what) {
    const std::uint64_t n = r.u64(what);
    if (n > r.remaining())
      r.fail(std::string(what) + " length " + std::to_string(n) + " is past the end of the file");
    return r.take_utf8(std::size_t(n), what);
  }

  void read_value(ByteReader& r, GGUFValue& v, gguf_type t, int depth) {
    v.type_ = t;
    v.offset_ = r.pos();
    if (t == gguf_type::string) {
      v.str_ = read_string(r, "string value");
    } else if (t == gguf_type::array) {
      if (depth >= max_depth) r.fail("arrays nested deeper than " + std::to_string(max_depth));
      const std::uint32_t et = r.u32("array element type");
      if (et > 12) r.fail_at(r.pos() - 4, "unknown array element type " + std::to_string(et));
      v.elem_type_ = gguf_type(et);
      const std::uint64_t n = r.u64("array count");
      // Every element takes at least this many bytes: bounds the count by the bytes left.
      const std::size_t min_bytes = v.elem_type_ == gguf_type::string ? 8
                                    : v.elem_type_ == gguf_type::array
                                        ? 12
                                        : detail::gguf_scalar_size(v.elem_type_);
      if (n > r.remaining() / min_bytes)
        r.fail_at(r.pos() - 8, "array count " + std::to_string(n) + " of " + name(v.elem_type_) +
                                   " exceeds the bytes left in the file");
      v.count_ = n;
      if (v.elem_type_ == gguf_type::string) {
        v.strings_.reserve(std::size_t(n));
        for (std::uint64_t i = 0; i < n; ++i)
          v.strings_.push_back(read_string(r, "string array element"));
      } else if (v.elem_type_ == gguf_type::array) {
        v.items_.resize(std::size_t(n));
        for (auto& item : v.items_) read_value(r, item, gguf_type::array, depth + 1);
      } else {
        const auto at = r.pos();
        auto b = r.take(std::size_t(n) * min_bytes, "array data");
        if (v.elem_type_ == gguf_type::boolean)
          for (std::size_t i = 0; i < b.size(); ++i)
            if (std::to_integer<unsigned>(b[i]) > 1)
              r.fail_at(at + i, "bool array element is neither 0 nor 1");
        v.array_data_ = b.data();
      }
    } else {
      const std::size_t n = detail::gguf_scalar_size(t);
      auto b = r.take(n, "scalar value");
      std::memcpy(v.scalar_, b.data(), n);
      if (t == gguf_type::boolean && v.scalar_[0] > 1)
        r.fail_at(r.pos() - 1, "bool value is neither 0 nor 1");
    }
  }

  void parse() {
    ByteReader r(map_->bytes(), map_->name());
    const auto magic = r.take_string(4, "magic");
    if (magic != "GGUF") r.fail_at(0, "not a GGUF file (magic is not 'GGUF')");
    version_ = r.u32("version");
    if (version_ != 2 && version_ != 3)
      r.fail_at(4, "unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
    const std::uint64_t n_tensors = r.u64("tensor count");
    const std::uint64_t n_kv = r.u64("metadata count");
    // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at
    // least 8 + 4 + 8 + 4 + 8.
    if (n_kv > r.remaining() / 13)
      r.fail_at(16, "metadata count " + std::to_string(n_kv) + " exceeds the bytes in the file");
    if (n_tensors > r.remaining() / 32)
      r.fail_at(8, "tensor count " + std::to_string(n_tensors) + " exceeds the bytes in the file");

    keys_.reserve(std::size_t(n_kv));
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      const auto key_at = r.pos();
      const auto key = read_string(r, "metadata key");
      if (key.empty()) r.fail_at(key_at, "empty metadata key");
      const std::uint32_t t = r.u32("metadata value type");
      if (t > 12)
        r.fail_at(r.pos() - 4, "unknown metadata value type " + std::to_string(t) + " for '" +
                                   std::string(key) + "'");
      GGUFValue v;
      read_value(r, v, gguf_type(t), 0);
      if (!kv_.emplace(key, std::move(v)).second)
        r.fail_at(key_at, "duplicate metadata key '" + std::string(key) + "'");
      keys_.push_back(key);
    }

    alignment_ = default_alignment;
    if (const auto* a = find("general.alignment")) {
      alignment_ = a->as<std::uint32_t>(path(), "general.alignment");
      if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
        throw format_error(
            path(), a->offset(),
            "general.alignment " + std::to_string(alignment_) + " is not a power of two");
    }

    tensors_.resize(std::size_t(n_tensors));
    for (auto& t : tensors_) {
      t.file = name_.get();
      t.file_offset = r.pos();
      t.name = read_string(r, "tensor name");
      const auto name_s = [&] { return "tensor '" + std::string(t.name) + "'"; };
      const std::uint32_t nd = r.u32("tensor n_dims");
      if (nd < 1 || nd > 4)
        r.fail_at(r.pos() - 4,
                  name_s() + " has " + std::to_string(nd) + " dimensions (expected 1 to 4)");
      t.n_dims = int(nd);
      std::int64_t n = 1;
      for (std::uint32_t d = 0; d < nd; ++d) {
        const std::uint64_t e = r.u64("tensor extent");
        if (e > std::uint64_t(std::numeric_limits<std::int64_t>::max()) ||
            __builtin_mul_overflow(n, std::int64_t(e), &n))
          r.fail_at(r.pos() - 8, name_s() + ": element count overflows (dims product)");
        t.ne[d] = std::int64_t(e);
      }
      const std::uint32_t ty = r.u32("tensor type");
      const auto* ti = find_ggml_type(ty);
      if (!ti)
        r.fail_at(r.pos() - 4,
                  name_s() + " has unknown or unsupported ggml type " + std::to_string(ty));
      t.type = ti->type;
      if (t.ne[0] % ti->block_elems != 0)
        r.fail_at(r.pos() - 4, name_s() + ": row of " + std::to_string(t.ne[0]) +
                                   " elements is not a multiple of the " + ti->name +
                                   " block size " + std::to_string(ti->block_elems));
      std::int64_t bytes;
      if (__builtin_mul_overflow(n / ti->block_elems, ti->block_bytes, &bytes))
        r.fail_at(r.pos() - 4, name_s() + ": byte size overflows");
      t.n_bytes = std::uint64_t(bytes);
      t.offset = r.u64("tensor offset");
      if (t.offset % alignment_ != 0)
        r.fail_at(r.pos() - 8, name_s() + " offset " + std::to_string(t.offset) +
                                   " is not a multiple of the alignment " +
                                   std::to_string(alignment_));
      if (!tensor_index_.emplace(t.name, std::size_t(&t - tensors_.data())).second)
        r.fail_at(t.file_offset, "duplicate tensor name '" + std::string(t.name) + "'");
    }

    // The data section starts at the next multiple of the alignment.
    const std::uint64_t end_of_infos = r.pos();
    data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
    const std::uint64_t size = map_->size();
    if (!tensors_.empty() && data_offset_ > size)
      r.fail_at(end_of_infos, "data section (aligned start " + std::to_string(data_offset_) +
                                  ") is past the end of the file");
    const std::uint64_t data_size = data_offset_ <= size ? size - data_offset_ : 0;

    std::vector<std::size_t> order(tensors_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (auto& t : tensors_) {
      if (t.offset > data_size || t.n_bytes > data_size - t.offset)
        throw format_error(path(), t.file_offset,
                           "tensor '" + std::string(t.name) + "' data [" +
                               std::to_string(t.offset) + ", +" + std::to_string(t.n_bytes) +
                               ") lies outside the data section of " + std::to_string(data_size) +
                               " bytes");
      t.data = map_->data() + data_offset_ + t.offset;
    }
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return tensors_[a].offset < tensors_[b].offset;
    });
    for (std::size_t i = 1; i < order.size(); ++i) {
      const auto& p = tensors_[order[i - 1]];
      const auto& q = tensors_[order[i]];
      if (p.offset + p.n_bytes > q.offset && q.n_bytes > 0 && p.n_bytes > 0)
        throw format_error(
            path(), q.file_offset,
            "tensor '" + std::string(q.name) + "' overlaps tensor '" + std::string(p.name) + "'");
    }
  }

  std::shared_ptr<const MappedFile> map_;
  std::unique_ptr<const std::string> name_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
  std::vector<std::string_view> keys_;
  std::map<std::string_view, GGUFValue, std::less<>> kv_;
  std::vector<GGUFTensor> tensors_;
  std::map<std::string_view, std::size_t, std::less<>> tensor_index_;
};

/// True when the file starts with GGUF's magic.
inline bool is_gguf_file(const std::string& path) {
  const MappedFile m = MappedFile::open(path);
  return m.size() >= 4 && std::memcmp(m.data(), "GGUF", 4) == 0;
}

}  // namespace tessel::io
