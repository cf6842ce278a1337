#pragma once
// Errors a user can cause. Each message reads like a sentence: what, where, expected, got.

#include <cstdint>
#include <stdexcept>
#include <string>

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

}  // namespace tessel
