#pragma once
// A bounds-checked cursor over untrusted bytes. Every read checks the bytes remaining first and
// throws tessel::format_error naming the file, the byte offset and what was being read.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "tessel/core/error.hpp"

namespace tessel::io {

static_assert(std::endian::native == std::endian::little,
              "tessel::io reads little-endian files in place and needs a little-endian host");

/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
inline bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (std::size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

class ByteReader {
 public:
  ByteReader(std::span<const std::byte> bytes, std::string name, std::uint64_t base = 0)
      : bytes_(bytes), name_(std::move(name)), base_(base) {}

  std::size_t pos() const noexcept { return pos_; }
  std::size_t size() const noexcept { return bytes_.size(); }
  std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
  const std::string& name() const noexcept { return name_; }
  std::span<const std::byte> bytes() const noexcept { return bytes_; }

  /// Throws format_error at the current position (or at `at`).
  [[noreturn]] void fail(const std::string& reason) const { fail_at(pos_, reason); }
  [[noreturn]] void fail_at(std::size_t at, const std::string& reason) const {
    throw format_error(name_, base_ + at, reason);
  }

  void need(std::size_t n, const char* what) const {
    if (n > remaining())
      fail(std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
           std::to_string(remaining()) + " left");
  }

  template <class T>
  requires std::is_trivially_copyable_v<T> T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::uint8_t u8(const char* what) { return read<std::uint8_t>(what); }
  std::uint16_t u16(const char* what) { return read<std::uint16_t>(what); }
  std::uint32_t u32(const char* what) { return read<std::uint32_t>(what); }
  std::uint64_t u64(const char* what) { return read<std::uint64_t>(what); }
  std::int32_t i32(const char* what) { return read<std::int32_t>(what); }

  /// The next n bytes, in place.
  std::span<const std::byte> take(std::size_t n, const char* what) {
    need(n, what);
    auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view take_string(std::size_t n, const char* what) {
    auto s = take(n, what);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }
  /// n bytes that must be UTF-8.
  std::string_view take_utf8(std::size_t n, const char* what) {
    const std::size_t at = pos_;
    auto s = take_string(n, what);
    if (!valid_utf8(s)) fail_at(at, std::string(what) + " is not valid UTF-8");
    return s;
  }
  void skip(std::size_t n, const char* what) { take(n, what); }
  void seek(std::size_t p, const char* what) {
    if (p > bytes_.size())
      fail(std::string(what) + " at " + std::to_string(p) + " is past the end (size " +
           std::to_string(bytes_.size()) + ")");
    pos_ = p;
  }

 private:
  std::span<const std::byte> bytes_;
  std::string name_;
  std::uint64_t base_ = 0;
  std::size_t pos_ = 0;
};

}  // namespace tessel::io
