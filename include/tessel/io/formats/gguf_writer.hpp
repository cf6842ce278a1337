#pragma once
// Writes GGUF version 3 files: metadata of every value type (nested arrays too), tensors of
// every ggml format, each tensor's data padded to the alignment (general.alignment, default 32).
// The layout is the one llama.cpp writes, so a file read with GGUFFile and written back with
// the same keys and tensors in the same order comes out byte-identical.

#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf.hpp"

namespace tessel::io {

/// A metadata value encoded for a GGUF file: its type and its payload bytes.
struct GGUFEncoded {
  gguf_type type = gguf_type::u8;
  gguf_type elem_type = gguf_type::u8;  // arrays only
  std::string bytes;
};

namespace gguf {
namespace detail {
inline void put(std::string& out, const void* p, std::size_t n) {
  out.append(static_cast<const char*>(p), n);
}
template <class T>
void put(std::string& out, T v) {
  put(out, &v, sizeof v);
}
inline void put_string(std::string& out, std::string_view s) {
  if (!valid_utf8(s)) throw value_error("tessel: GGUF strings must be UTF-8");
  put<std::uint64_t>(out, s.size());
  out.append(s);
}
}  // namespace detail

template <class T>
requires io::detail::gguf_scalar<T> GGUFEncoded encode(T v) {
  GGUFEncoded e;
  e.type = io::detail::gguf_type_of<T>();
  if constexpr (std::is_same_v<T, bool>) {
    detail::put<std::uint8_t>(e.bytes, v ? 1 : 0);
  } else {
    detail::put(e.bytes, v);
  }
  return e;
}
inline GGUFEncoded encode(std::string_view s) {
  GGUFEncoded e;
  e.type = gguf_type::string;
  detail::put_string(e.bytes, s);
  return e;
}
inline GGUFEncoded encode(const char* s) {
  return encode(std::string_view(s));
}
template <class T>
requires io::detail::gguf_scalar<T> GGUFEncoded encode_array(std::span<const T> v) {
  GGUFEncoded e;
  e.type = gguf_type::array;
  e.elem_type = io::detail::gguf_type_of<T>();
  detail::put<std::uint32_t>(e.bytes, std::uint32_t(e.elem_type));
  detail::put<std::uint64_t>(e.bytes, v.size());
  for (const T& x : v) {
    if constexpr (std::is_same_v<T, bool>) {
      detail::put<std::uint8_t>(e.bytes, x ? 1 : 0);
    } else {
      detail::put(e.bytes, x);
    }
  }
  return e;
}
template <class T>
requires io::detail::gguf_scalar<T> GGUFEncoded encode_array(const std::vector<T>& v) {
  if constexpr (std::is_same_v<T, bool>) {  // vector<bool> has no contiguous storage
    std::unique_ptr<bool[]> b(new bool[v.size()]);
    for (std::size_t i = 0; i < v.size(); ++i) b[i] = v[i];
    return encode_array(std::span<const bool>(b.get(), v.size()));
  } else {
    return encode_array(std::span<const T>(v));
  }
}
/// An array of strings.
template <class S>
requires std::is_convertible_v<const S&, std::string_view> GGUFEncoded
encode_strings(std::span<const S> v) {
  GGUFEncoded e;
  e.type = gguf_type::array;
  e.elem_type = gguf_type::string;
  detail::put<std::uint32_t>(e.bytes, std::uint32_t(gguf_type::string));
  detail::put<std::uint64_t>(e.bytes, v.size());
  for (const auto& s : v) detail::put_string(e.bytes, std::string_view(s));
  return e;
}
template <class S>
GGUFEncoded encode_strings(const std::vector<S>& v) {
  return encode_strings(std::span<const S>(v));
}
/// An array of arrays (each item must itself be an array).
inline GGUFEncoded encode_arrays(const std::vector<GGUFEncoded>& items) {
  GGUFEncoded e;
  e.type = gguf_type::array;
  e.elem_type = gguf_type::array;
  detail::put<std::uint32_t>(e.bytes, std::uint32_t(gguf_type::array));
  detail::put<std::uint64_t>(e.bytes, items.size());
  for (const auto& it : items) {
    if (it.type != gguf_type::array)
      throw value_error("tessel: every item of a GGUF array of arrays must be an array");
    e.bytes += it.bytes;
  }
  return e;
}
}  // namespace gguf

class GGUFWriter {
 public:
  /// Sets (or replaces, keeping its place) a metadata value. Setting general.alignment (u32,
  /// a power of two) also changes the padding of the data section.
  void set(std::string key, GGUFEncoded v) {
    if (key.empty() || !valid_utf8(key))
      throw value_error("tessel: GGUF metadata keys must be non-empty UTF-8");
    if (key == "general.alignment") {
      std::uint32_t a = 0;
      if (v.type != gguf_type::u32) throw value_error("tessel: general.alignment must be a u32");
      std::memcpy(&a, v.bytes.data(), 4);
      if (a == 0 || (a & (a - 1)))
        throw value_error("tessel: general.alignment must be a power of two");
      alignment_ = a;
    }
    for (auto& kv : kvs_)
      if (kv.first == key) {
        kv.second = std::move(v);
        return;
      }
    kvs_.emplace_back(std::move(key), std::move(v));
  }
  template <class T>
  void set(std::string key, const T& v) {
    set(std::move(key), gguf::encode(v));
  }
  /// Copies metadata value `v` of another file (any type, nested arrays too).
  void set(std::string key, const GGUFValue& v) { set(std::move(key), copy(v)); }

  /// A tensor of `type` with tessel shape `shape` (outermost first). The bytes are not copied:
  /// they must stay alive until write().
  void add_tensor(std::string name, ggml_type type, std::span<const std::int64_t> shape,
                  std::span<const std::byte> data) {
    const auto bytes = add_info(std::move(name), type, shape);
    if (data.size() != bytes)
      throw value_error("tessel: GGUF tensor '" + infos_.back().name + "' needs " +
                        std::to_string(bytes) + " bytes, got " + std::to_string(data.size()));
    infos_.back().data = data;
  }
  /// A contiguous tensor view; the ggml type follows from T.
  template <class T, class S>
  void add_tensor(std::string name, TensorView<T, S> v) {
    constexpr auto ti = ggml_type_of<T>();
    static_assert(ti.has_value(), "tessel: T is not a GGUF tensor format");
    if (!v.is_contiguous()) throw value_error("tessel: GGUF tensors must be contiguous");
    const auto e = v.shape().extents();
    std::vector<std::int64_t> shape(e.begin(), e.end());
    const std::size_t n = std::size_t(v.size() / ti->block_elems * ti->block_bytes);
    add_tensor(std::move(name), ti->type, shape, {reinterpret_cast<const std::byte*>(v.data()), n});
  }
  /// A tensor whose data is zeros, written as a hole (sparse) where the file system allows.
  void reserve_tensor(std::string name, ggml_type type, std::span<const std::int64_t> shape) {
    add_info(std::move(name), type, shape);
  }

  std::uint32_t alignment() const noexcept { return alignment_; }

  /// Everything before the data section (header, metadata, tensor infos, padding).
  std::string header() const {
    std::string out = "GGUF";
    gguf::detail::put<std::uint32_t>(out, 3);
    gguf::detail::put<std::uint64_t>(out, infos_.size());
    gguf::detail::put<std::uint64_t>(out, kvs_.size());
    for (const auto& [k, v] : kvs_) {
      gguf::detail::put_string(out, k);
      gguf::detail::put<std::uint32_t>(out, std::uint32_t(v.type));
      out += v.bytes;
    }
    std::uint64_t off = 0;
    for (const auto& t : infos_) {
      gguf::detail::put_string(out, t.name);
      gguf::detail::put<std::uint32_t>(out, std::uint32_t(t.ne.size()));
      for (auto e : t.ne) gguf::detail::put<std::uint64_t>(out, std::uint64_t(e));
      gguf::detail::put<std::uint32_t>(out, std::uint32_t(t.type));
      gguf::detail::put<std::uint64_t>(out, off);
      off += padded(t.bytes);
    }
    out.append(padded(out.size()) - out.size(), '\0');
    return out;
  }

  /// The whole file in memory.
  std::vector<std::byte> to_bytes() const {
    const std::string h = header();
    std::vector<std::byte> out(h.size() + data_size());
    std::memcpy(out.data(), h.data(), h.size());
    std::size_t p = h.size();
    for (const auto& t : infos_) {
      if (!t.data.empty()) std::memcpy(out.data() + p, t.data.data(), t.data.size());
      p += padded(t.bytes);
    }
    return out;
  }

  void write(const std::string& path) const {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw io_error("tessel: cannot create '" + path + "'");
    const auto fail = [&] {
      std::fclose(f);
      throw io_error("tessel: cannot write '" + path + "'");
    };
    const std::string h = header();
    if (std::fwrite(h.data(), 1, h.size(), f) != h.size()) fail();
    const std::uint64_t total = h.size() + data_size();
    std::uint64_t pos = h.size();
    static const char zeros[64] = {};
    for (const auto& t : infos_) {
      if (!t.data.empty()) {
        if (std::fwrite(t.data.data(), 1, t.data.size(), f) != t.data.size()) fail();
        std::size_t pad = std::size_t(padded(t.bytes) - t.bytes);
        while (pad) {  // padding bytes are written so the file holds only zeros there
          const std::size_t n = pad < sizeof zeros ? pad : sizeof zeros;
          if (std::fwrite(zeros, 1, n, f) != n) fail();
          pad -= n;
        }
      } else if (t.bytes && std::fseek(f, long(pos + padded(t.bytes)), SEEK_SET) != 0) {
        fail();
      }
      pos += padded(t.bytes);
    }
    if (std::fflush(f) != 0 || ::ftruncate(::fileno(f), off_t(total)) != 0) fail();
    if (std::fclose(f) != 0) throw io_error("tessel: cannot write '" + path + "'");
    settle_written_file(path);
  }

 private:
  struct entry {
    std::string name;
    ggml_type type;
    std::vector<std::int64_t> ne;  // innermost first
    std::uint64_t bytes;
    std::span<const std::byte> data;
  };

  std::uint64_t padded(std::uint64_t n) const {
    return (n + alignment_ - 1) / alignment_ * alignment_;
  }
  std::uint64_t data_size() const {
    std::uint64_t n = 0;
    for (const auto& t : infos_) n += padded(t.bytes);
    return n;
  }

  std::uint64_t add_info(std::string name, ggml_type type, std::span<const std::int64_t> shape) {
    const auto& ti = io::info(type);
    if (shape.empty() || shape.size() > 4)
      throw value_error("tessel: GGUF tensor '" + name + "' must have 1 to 4 dimensions");
    if (!valid_utf8(name)) throw value_error("tessel: GGUF tensor names must be UTF-8");
    for (const auto& t : infos_)
      if (t.name == name) throw value_error("tessel: duplicate GGUF tensor '" + name + "'");
    info_rows(name, ti, shape);
    entry& t = infos_.emplace_back();
    t.name = std::move(name);
    t.type = type;
    t.ne.assign(shape.rbegin(), shape.rend());
    std::int64_t n = 1;
    for (auto e : shape) n = checked_mul(n, e, "GGUF tensor size");
    t.bytes = std::uint64_t(checked_mul(n / ti.block_elems, ti.block_bytes, "GGUF tensor bytes"));
    return t.bytes;
  }
  static void info_rows(const std::string& name, const ggml_type_info& ti,
                        std::span<const std::int64_t> shape) {
    if (shape.back() % ti.block_elems != 0)
      throw value_error("tessel: GGUF tensor '" + name + "': row of " +
                        std::to_string(shape.back()) + " is not a multiple of the " + ti.name +
                        " block size " + std::to_string(ti.block_elems));
  }

  static GGUFEncoded copy(const GGUFValue& v) {
    GGUFEncoded e;
    e.type = v.type();
    const std::string nofile;
    if (v.type() == gguf_type::string) {
      gguf::detail::put_string(e.bytes, v.as<std::string_view>(nofile, ""));
    } else if (v.is_array()) {
      e.elem_type = v.elem_type();
      gguf::detail::put<std::uint32_t>(e.bytes, std::uint32_t(v.elem_type()));
      gguf::detail::put<std::uint64_t>(e.bytes, v.count());
      if (v.elem_type() == gguf_type::string) {
        for (auto s : v.strings(nofile, "")) gguf::detail::put_string(e.bytes, s);
      } else if (v.elem_type() == gguf_type::array) {
        for (const auto& it : v.items(nofile, "")) e.bytes += copy(it).bytes;
      } else {
        const auto b = v.array_bytes();
        gguf::detail::put(e.bytes, b.data(), b.size());
      }
    } else {
      gguf::detail::put(e.bytes, v.scalar_bytes().data(), v.scalar_bytes().size());
    }
    return e;
  }

  std::uint32_t alignment_ = GGUFFile::default_alignment;
  std::vector<std::pair<std::string, GGUFEncoded>> kvs_;
  std::vector<entry> infos_;
};

}  // namespace tessel::io
