#pragma once
// What a model file is, told from its first bytes, so that a loader can say "this is a
// safetensors file" instead of misreading it as the format it falls back to (llama2.c
// checkpoints have no magic: any file could be one).
//
//   switch (io::sniff_file_kind(map.bytes())) { case io::file_kind::gguf: ... }

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace tessel::io {

enum class file_kind {
  gguf,         // "GGUF"
  safetensors,  // u64 header length, then a JSON object
  npy,          // "\x93NUMPY"
  zip,          // "PK\x03\x04": torch.save's archive, .npz
  pickle,       // 0x80, protocol 2..5: torch.save's legacy format
  unknown,
};

inline file_kind sniff_file_kind(std::span<const std::byte> b) {
  const auto starts = [&](std::string_view m) {
    return b.size() >= m.size() && std::memcmp(b.data(), m.data(), m.size()) == 0;
  };
  const auto at = [&](std::size_t i) { return std::to_integer<unsigned>(b[i]); };
  if (starts("GGUF")) return file_kind::gguf;
  if (starts("\x93NUMPY")) return file_kind::npy;
  if (starts("PK\x03\x04") || starts("PK\x05\x06")) return file_kind::zip;
  // A third byte of 0 would be a llama2.c dim of 640 + k·2^8 (bytes 80 02 00 00 ...).
  if (b.size() >= 3 && at(0) == 0x80 && at(1) >= 2 && at(1) <= 5 && at(2) != 0)
    return file_kind::pickle;
  if (b.size() >= 9) {
    std::uint64_t n;
    std::memcpy(&n, b.data(), 8);
    if (n >= 2 && n <= b.size() - 8 && at(8) == '{') return file_kind::safetensors;
  }
  return file_kind::unknown;
}

/// "a safetensors file", ... (for messages).
inline const char* describe(file_kind k) noexcept {
  switch (k) {
    case file_kind::gguf:
      return "a GGUF file";
    case file_kind::safetensors:
      return "a safetensors file";
    case file_kind::npy:
      return "a NumPy .npy file";
    case file_kind::zip:
      return "a zip archive (a PyTorch checkpoint or an .npz file)";
    case file_kind::pickle:
      return "a pickle (a legacy PyTorch checkpoint)";
    default:
      return "a file of unknown format";
  }
}

/// The first four bytes for a message: "magic 'GGUX'" when printable, else "magic 0x00ff1234"
/// ("an empty file" for none).
inline std::string magic_text(std::span<const std::byte> b) {
  if (b.empty()) return "an empty file";
  const std::size_t n = b.size() < 4 ? b.size() : 4;
  bool printable = true;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = std::to_integer<unsigned>(b[i]);
    printable = printable && c >= 0x20 && c < 0x7f;
  }
  if (printable) return "magic '" + std::string(reinterpret_cast<const char*>(b.data()), n) + "'";
  static constexpr char hex[] = "0123456789abcdef";
  std::string s = "magic 0x";
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = std::to_integer<unsigned>(b[i]);
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

}  // namespace tessel::io
