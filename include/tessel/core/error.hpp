#pragma once
// Errors a user can cause. Each message reads like a sentence: what, where, expected, got.

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace tessel {

/// Base of every exception tessel throws on bad input.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Two dynamic shapes that do not fit the operation.
struct shape_error : error {
  using error::error;
};

/// A file (or an in-memory buffer) that does not follow its format.
struct format_error : error {
  format_error(const std::string& file, std::uint64_t offset, const std::string& reason)
      : error(file + ": at byte " + std::to_string(offset) + ": " + reason),
        file_(file),
        offset_(offset),
        reason_(reason) {}
  const std::string& file() const noexcept { return file_; }
  std::uint64_t offset() const noexcept { return offset_; }
  /// The message without the file and offset (to restate it in context).
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string file_;
  std::uint64_t offset_;
  std::string reason_;
};

/// A size computation that would overflow, or an argument outside its domain.
struct value_error : error {
  using error::error;
};

namespace detail {

/// One piece of an error message: text, an integer (written as std::to_string writes it), or
/// extents (written "[2, 3, 4]", as to_string(shape) writes them).
class msg_part {
 public:
  msg_part(const char* s) noexcept : msg_part(std::string_view(s)) {}
  msg_part(std::string_view s) noexcept : ptr_(s.data()), n_(s.size()) {}
  msg_part(const std::string& s) noexcept : msg_part(std::string_view(s)) {}
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool> && !std::is_same_v<I, char>)
      msg_part(I v)
  noexcept
      : n_(static_cast<std::uint64_t>(v)), kind_(std::is_signed_v<I> ? kind::sint : kind::uint) {}
  /// The extents of a shape (anything whose extents() is a std::array), or a std::array of
  /// integers, written "[2, 3, 4]" as to_string writes them. Read when the message is built:
  /// the object must outlive the full expression (as in `throw e(concat({..., shape}))`).
  template <class S>
  requires requires(const S& s) { s.extents().data(); }
  msg_part(const S& s) noexcept : ptr_(&s), write_(&write_extents_of<S>), kind_(kind::object) {}
  template <class T, std::size_t R>
  requires std::is_integral_v<T> msg_part(const std::array<T, R>& e)
  noexcept : ptr_(&e), write_(&write_array<T, R>), kind_(kind::object) {}

  void append_to(std::string& out) const {
    switch (kind_) {
      case kind::text:
        out.append(static_cast<const char*>(ptr_), n_);
        break;
      case kind::sint:
        out += std::to_string(static_cast<long long>(n_));
        break;
      case kind::uint:
        out += std::to_string(static_cast<unsigned long long>(n_));
        break;
      case kind::object:
        write_(out, ptr_);
        break;
    }
  }

 private:
  enum class kind : unsigned char { text, sint, uint, object };
  static void append_extents(std::string& out, const long long* e, std::size_t n) {
    out += '[';
    for (std::size_t i = 0; i < n; ++i) {
      if (i) out += ", ";
      out += std::to_string(e[i]);
    }
    out += ']';
  }
  template <class T, std::size_t R>
  static void write_array(std::string& out, const void* p) {
    const auto& e = *static_cast<const std::array<T, R>*>(p);
    long long v[R > 0 ? R : 1];
    for (std::size_t i = 0; i < R; ++i) v[i] = static_cast<long long>(e[i]);
    append_extents(out, v, R);
  }
  template <class S>
  static void write_extents_of(std::string& out, const void* p) {
    const auto e = static_cast<const S*>(p)->extents();
    write_array<typename decltype(e)::value_type, std::tuple_size_v<decltype(e)>>(out, &e);
  }

  const void* ptr_ = nullptr;  // text, or the object
  std::uint64_t n_ = 0;        // length of the text, or the integer
  void (*write_)(std::string&, const void*) = nullptr;
  kind kind_ = kind::text;
};

/// The message made of `parts`. Out of line and cold: a throw inside a template then costs one
/// call per instantiation instead of a chain of inlined string appends, which at -O2 made up
/// about a sixth of the compile time of a small program using tensors, an expression and matmul.
[[gnu::cold, gnu::noinline]] inline std::string concat(std::initializer_list<msg_part> parts) {
  std::string s;
  for (const auto& p : parts) p.append_to(s);
  return s;
}

/// Throws E (an exception taking a std::string) with the message made of `parts`. A throw site
/// is then one call: no string temporaries or clean-ups compiled into every instantiation.
template <class E>
[[noreturn, gnu::cold, gnu::noinline]] void raise(std::initializer_list<msg_part> parts) {
  throw E(concat(parts));
}

}  // namespace detail

}  // namespace tessel
