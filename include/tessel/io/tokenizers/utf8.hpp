#pragma once
// Strict UTF-8 decoding (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) and the
// two ways tokenizers replace bad bytes with U+FFFD.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tessel {

/// How a run of bytes that is not UTF-8 becomes U+FFFD.
enum class utf8_replacement {
  /// One U+FFFD per bad byte, as SentencePiece does (its normalizer and its decoder).
  per_byte,
  /// One U+FFFD per maximal ill-formed subpart, as WHATWG TextDecoder and Python's
  /// errors="replace" do (the GPT-2 decoders).
  per_subpart,
};

/// One step of decoding.
struct utf8_step {
  enum status_t : std::uint8_t { ok, invalid, incomplete };
  std::uint32_t cp;  // the code point when status is ok
  std::size_t len;   // bytes consumed: the character, the maximal ill-formed subpart, or the tail
  status_t status;   // incomplete: a valid prefix cut short by the end of the input
};

/// Decodes the character at s[i] (i < s.size()).
inline utf8_step utf8_next(std::string_view s, std::size_t i) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return {c, 1, utf8_step::ok};
  std::size_t n;
  std::uint32_t cp;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, cp = c & 0x0Fu;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, cp = c & 0x07u;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return {0, 1, utf8_step::invalid};
  }
  const std::size_t avail = s.size() - i;
  for (std::size_t k = 1; k < n; ++k) {
    if (k >= avail) return {0, k, utf8_step::incomplete};
    const unsigned char x = b(k);
    const bool good = k == 1 ? (x >= lo && x <= hi) : (x >= 0x80 && x <= 0xBF);
    if (!good) return {0, k, utf8_step::invalid};
    cp = (cp << 6) | (x & 0x3Fu);
  }
  return {cp, n, utf8_step::ok};
}

/// Appends the UTF-8 encoding of a Unicode scalar value.
inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline constexpr std::string_view utf8_replacement_char = "\xEF\xBF\xBD";

/// Appends the FFFDs for a bad run of `len` bytes under a policy.
inline void append_replacement(std::string& out, std::size_t len, utf8_replacement policy) {
  const std::size_t count = policy == utf8_replacement::per_byte ? len : 1;
  for (std::size_t k = 0; k < count; ++k) out += utf8_replacement_char;
}

/// The input with every ill-formed sequence (a cut-short tail included) replaced by U+FFFD.
inline std::string utf8_sanitize(std::string_view s, utf8_replacement policy) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const utf8_step st = utf8_next(s, i);
    if (st.status == utf8_step::ok) {
      out.append(s.substr(i, st.len));
    } else {
      append_replacement(out, st.len, policy);
    }
    i += st.len;
  }
  return out;
}

/// True when the whole input is well-formed UTF-8.
inline bool utf8_valid(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const utf8_step st = utf8_next(s, i);
    if (st.status != utf8_step::ok) return false;
    i += st.len;
  }
  return true;
}

}  // namespace tessel
