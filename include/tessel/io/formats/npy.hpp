#pragma once
// numpy .npy (format versions 1, 2 and 3) and .npz (a zip of .npy files, stored entries as
// numpy.savez writes them). The header is a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } parsed here by hand.
// Arrays are little-endian numbers; Fortran-ordered arrays are transposed on copy.

#include <cstdio>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "byte_reader.hpp"
#include "mmap.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/tensor.hpp"
#include "zip.hpp"

namespace tessel::io {

namespace detail {
template <class T>
constexpr const char* npy_descr() {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, float>)
    return "<f4";
  else if constexpr (std::is_same_v<U, double>)
    return "<f8";
  else if constexpr (std::is_same_v<U, f16>)
    return "<f2";
  else if constexpr (std::is_same_v<U, std::int8_t>)
    return "|i1";
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return "|u1";
  else if constexpr (std::is_same_v<U, std::int16_t>)
    return "<i2";
  else if constexpr (std::is_same_v<U, std::uint16_t>)
    return "<u2";
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return "<i4";
  else if constexpr (std::is_same_v<U, std::uint32_t>)
    return "<u4";
  else if constexpr (std::is_same_v<U, std::int64_t>)
    return "<i8";
  else if constexpr (std::is_same_v<U, std::uint64_t>)
    return "<u8";
  else if constexpr (std::is_same_v<U, bool>)
    return "|b1";
  else
    static_assert(sizeof(T) == 0, "tessel: no .npy dtype for this type");
}
/// Item size of a supported descr, 0 when unsupported.
inline std::size_t npy_item_size(std::string_view d) {
  static constexpr std::pair<const char*, std::size_t> known[] = {
      {"<f4", 4}, {"<f8", 8}, {"<f2", 2}, {"|i1", 1}, {"|u1", 1}, {"<i2", 2},
      {"<u2", 2}, {"<i4", 4}, {"<u4", 4}, {"<i8", 8}, {"<u8", 8}, {"|b1", 1}};
  for (const auto& [n, s] : known)
    if (d == n) return s;
  return 0;
}
}  // namespace detail

/// One array: its header facts and its bytes (in place; they may be unaligned in a .npz).
struct NpyArray {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
  std::size_t item_size = 0;
  std::span<const std::byte> data;
  std::string file;

  std::int64_t n_elements() const noexcept {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }

  /// A C-ordered copy of rank R (a 0-d array is rank 1, extent 1). T must match the descr.
  template <class T, std::size_t R>
  Tensor<T, DynShape<R>> to_tensor() const {
    if (descr != detail::npy_descr<T>())
      throw format_error(file, 0,
                         "array has dtype '" + descr + "', not '" + detail::npy_descr<T>() + "'");
    const bool scalar = shape.empty() && R == 1;
    if (shape.size() != R && !scalar)
      throw shape_error("tessel: array has rank " + std::to_string(shape.size()) +
                        ", asked for rank " + std::to_string(R));
    std::array<index_t, R> e{};
    for (std::size_t k = 0; k < R; ++k) e[k] = scalar ? 1 : shape[k];
    Tensor<T, DynShape<R>> t(DynShape<R>::from_array(e));
    if (!fortran_order || R <= 1) {
      if (!data.empty()) std::memcpy(static_cast<void*>(t.data()), data.data(), data.size());
      return t;
    }
    // Fortran order: element (i0, i1, ...) is at i0 + e0 * (i1 + e1 * ...).
    std::array<index_t, R> ix{};
    const index_t n = t.size();
    for (index_t c = 0; c < n; ++c) {  // c walks the C order; f is the Fortran offset
      index_t f = 0;
      for (std::size_t k = R; k-- > 0;) f = f * e[k] + ix[k];
      std::memcpy(static_cast<void*>(t.data() + c), data.data() + std::size_t(f) * sizeof(T),
                  sizeof(T));
      for (std::size_t k = R; k-- > 0;) {
        if (++ix[k] < e[k]) break;
        ix[k] = 0;
      }
    }
    return t;
  }
};

/// Parses a .npy held in `b`; `base` is its offset in `file` (inside an .npz) for messages.
inline NpyArray parse_npy(std::span<const std::byte> b, const std::string& file,
                          std::uint64_t base = 0) {
  ByteReader r(b, file, base);
  const auto magic = r.take_string(6, "magic");
  if (magic != std::string_view("\x93NUMPY", 6)) r.fail_at(0, "not a .npy file (bad magic)");
  const std::uint8_t major = r.u8("major version");
  r.u8("minor version");
  if (major < 1 || major > 3)
    r.fail_at(6, "unsupported .npy version " + std::to_string(major) + " (expected 1 to 3)");
  const std::size_t len = major == 1 ? r.u16("header length") : r.u32("header length");
  const std::size_t hstart = r.pos();
  const auto h = major == 3 ? r.take_utf8(len, "header") : r.take_string(len, "header");
  NpyArray a;
  a.file = file;

  std::size_t p = 0;
  const auto fail = [&](const std::string& why) -> void { r.fail_at(hstart + p, why); };
  const auto ws = [&] {
    while (p < h.size() && (h[p] == ' ' || h[p] == '\t' || h[p] == '\n' || h[p] == '\r')) ++p;
  };
  const auto expect = [&](char c) {
    ws();
    if (p >= h.size() || h[p] != c) fail(std::string("header: expected '") + c + "'");
    ++p;
  };
  const auto quoted = [&]() -> std::string_view {
    ws();
    if (p >= h.size() || (h[p] != '\'' && h[p] != '"')) fail("header: expected a quoted string");
    const char q = h[p++];
    const std::size_t s = p;
    while (p < h.size() && h[p] != q) ++p;
    if (p >= h.size()) fail("header: unterminated string");
    return h.substr(s, p++ - s);
  };
  bool have_descr = false, have_order = false, have_shape = false;
  expect('{');
  for (;;) {
    ws();
    if (p < h.size() && h[p] == '}') {
      ++p;
      break;
    }
    const auto key = quoted();
    expect(':');
    ws();
    if (key == "descr") {
      a.descr = std::string(quoted());
      a.item_size = detail::npy_item_size(a.descr);
      if (!a.item_size) fail("unsupported dtype '" + a.descr + "'");
      have_descr = true;
    } else if (key == "fortran_order") {
      if (h.substr(p, 4) == "True") {
        a.fortran_order = true, p += 4;
      } else if (h.substr(p, 5) == "False") {
        a.fortran_order = false, p += 5;
      } else {
        fail("header: fortran_order is not True or False");
      }
      have_order = true;
    } else if (key == "shape") {
      expect('(');
      for (;;) {
        ws();
        if (p < h.size() && h[p] == ')') {
          ++p;
          break;
        }
        std::int64_t v = 0;
        const std::size_t s = p;
        while (p < h.size() && h[p] >= '0' && h[p] <= '9') {
          if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, h[p] - '0', &v))
            fail("header: shape extent overflows");
          ++p;
        }
        if (p == s) fail("header: shape extent is not a non-negative integer");
        if (a.shape.size() >= 32) fail("header: more than 32 dimensions");
        a.shape.push_back(v);
        ws();
        if (p < h.size() && h[p] == ',') ++p;
      }
      have_shape = true;
    } else {
      fail("header: unknown key '" + std::string(key) + "'");
    }
    ws();
    if (p < h.size() && h[p] == ',') ++p;
  }
  if (!have_descr || !have_order || !have_shape)
    r.fail_at(hstart, "header lacks one of 'descr', 'fortran_order', 'shape'");
  std::int64_t n = 1;
  for (auto e : a.shape)
    if (__builtin_mul_overflow(n, e, &n)) r.fail_at(hstart, "shape: element count overflows");
  std::int64_t bytes;
  if (__builtin_mul_overflow(n, std::int64_t(a.item_size), &bytes) ||
      std::uint64_t(bytes) != r.remaining())
    r.fail("data is " + std::to_string(r.remaining()) + " bytes, shape and dtype need " +
           std::to_string(n) + " x " + std::to_string(a.item_size));
  a.data = r.take(r.remaining(), "data");
  return a;
}

/// A .npy file, memory-mapped.
class NpyFile {
 public:
  static NpyFile open(const std::string& path) { return NpyFile(MappedFile::open(path)); }
  static NpyFile from_bytes(std::span<const std::byte> b, std::string name = "<memory>") {
    return NpyFile(MappedFile::from_bytes(b, std::move(name)));
  }
  explicit NpyFile(MappedFile m)
      : map_(std::move(m)), array_(parse_npy(map_.bytes(), map_.name())) {}
  const NpyArray& array() const noexcept { return array_; }

 private:
  MappedFile map_;
  NpyArray array_;
};

/// A .npz archive: arrays by name (the entry name without ".npy").
class NpzFile {
 public:
  static NpzFile open(const std::string& path) { return NpzFile(MappedFile::open(path)); }
  static NpzFile from_bytes(std::span<const std::byte> b, std::string name = "<memory>") {
    return NpzFile(MappedFile::from_bytes(b, std::move(name)));
  }
  explicit NpzFile(MappedFile m) : map_(std::move(m)), zip_(map_.bytes(), map_.name()) {
    for (const auto& e : zip_.entries()) {
      if (!e.name.ends_with(".npy")) continue;
      const auto bytes = zip_.data(e);
      if (!zip_.crc_ok(e))
        throw format_error(map_.name(), e.data_offset, "CRC-32 mismatch in '" + e.name + "'");
      arrays_.emplace(e.name.substr(0, e.name.size() - 4),
                      parse_npy(bytes, map_.name() + ":" + e.name, e.data_offset));
    }
  }
  const std::map<std::string, NpyArray>& arrays() const noexcept { return arrays_; }
  const NpyArray& array(const std::string& n) const {
    auto it = arrays_.find(n);
    if (it == arrays_.end())
      throw format_error(map_.name(), 0, "no array named '" + n + "' in the archive");
    return it->second;
  }
  template <class T, std::size_t R>
  Tensor<T, DynShape<R>> get(const std::string& n) const {
    return array(n).to_tensor<T, R>();
  }

 private:
  MappedFile map_;
  ZipArchive zip_;
  std::map<std::string, NpyArray> arrays_;
};

/// The bytes of a version-1 .npy file holding a C-ordered copy of `v`.
template <class T, class S>
std::vector<std::byte> npy_bytes(TensorView<T, S> v) {
  using U = std::remove_const_t<T>;
  static_assert(block_elems_v<U> == 1, "tessel: .npy holds plain numbers");
  std::string h =
      std::string("{'descr': '") + detail::npy_descr<U>() + "', 'fortran_order': False, 'shape': (";
  for (std::size_t k = 0; k < S::rank; ++k) {
    h += std::to_string(v.extent(k));
    h += S::rank == 1 ? ",)" : (k + 1 < S::rank ? ", " : ")");
  }
  if constexpr (S::rank == 0) h += ")";
  h += ", }";
  // numpy pads the header with spaces so that the data starts at a multiple of 64 bytes.
  const std::size_t total = (10 + h.size() + 1 + 63) / 64 * 64;
  h.append(total - 10 - h.size() - 1, ' ');
  h += '\n';
  std::vector<std::byte> out(total + std::size_t(v.size()) * sizeof(U));
  std::memcpy(out.data(), "\x93NUMPY\x01\x00", 8);
  const auto hl = static_cast<std::uint16_t>(h.size());
  std::memcpy(out.data() + 8, &hl, 2);
  std::memcpy(out.data() + 10, h.data(), h.size());
  auto* dst = out.data() + total;
  std::array<index_t, S::rank> ix{};
  for (index_t i = 0; i < v.size(); ++i) {  // any strides: copy element by element in C order
    std::memcpy(dst + std::size_t(i) * sizeof(U), &v.at(ix), sizeof(U));
    for (std::size_t k = S::rank; k-- > 0;) {
      if (++ix[k] < v.extent(k)) break;
      ix[k] = 0;
    }
  }
  return out;
}
template <class T, class S>
void write_npy(const std::string& path, TensorView<T, S> v) {
  const auto b = npy_bytes(v);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw io_error("tessel: cannot create '" + path + "'");
  const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  if (std::fclose(f) != 0 || !ok) throw io_error("tessel: cannot write '" + path + "'");
}

}  // namespace tessel::io
