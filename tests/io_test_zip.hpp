#pragma once
// Test helpers: writes small zip archives (stored or with a given method, optionally in the
// ZIP64 layout PyTorch uses for large files) and a minimal torch.save-style state-dict pickle,
// byte by byte from the zip specification (APPNOTE) and pickle protocol 2.

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace io_test {

inline std::uint32_t crc32(const std::string& s) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char x : s) {
    c ^= x;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

inline std::vector<std::byte> zip(const std::vector<std::pair<std::string, std::string>>& files,
                                  std::uint16_t method = 0, bool zip64 = false) {
  std::string out, cd;
  const auto p16 = [](std::string& s, std::uint16_t v) {
    s.append(reinterpret_cast<char*>(&v), 2);
  };
  const auto p32 = [](std::string& s, std::uint32_t v) {
    s.append(reinterpret_cast<char*>(&v), 4);
  };
  const auto p64 = [](std::string& s, std::uint64_t v) {
    s.append(reinterpret_cast<char*>(&v), 8);
  };
  const std::uint32_t sat = 0xFFFFFFFFu;  // "see the ZIP64 extra field"
  for (const auto& [name, data] : files) {
    const auto off = out.size();
    const auto n = std::uint32_t(data.size());
    p32(out, 0x04034b50), p16(out, 45), p16(out, 0), p16(out, method), p32(out, 0);
    p32(out, crc32(data)), p32(out, zip64 ? sat : n), p32(out, zip64 ? sat : n);
    p16(out, std::uint16_t(name.size())), p16(out, zip64 ? 20 : 0);
    out += name;
    if (zip64) p16(out, 1), p16(out, 16), p64(out, n), p64(out, n);
    out += data;
    p32(cd, 0x02014b50), p16(cd, 45), p16(cd, 45), p16(cd, 0), p16(cd, method), p32(cd, 0);
    p32(cd, crc32(data)), p32(cd, zip64 ? sat : n), p32(cd, zip64 ? sat : n);
    p16(cd, std::uint16_t(name.size())), p16(cd, zip64 ? 28 : 0), p16(cd, 0), p16(cd, 0);
    p16(cd, 0), p32(cd, 0), p32(cd, zip64 ? sat : std::uint32_t(off));
    cd += name;
    if (zip64) p16(cd, 1), p16(cd, 24), p64(cd, n), p64(cd, n), p64(cd, off);
  }
  const auto cd_off = out.size();
  out += cd;
  if (zip64) {
    const auto e64 = out.size();
    p32(out, 0x06064b50), p64(out, 44), p16(out, 45), p16(out, 45), p32(out, 0), p32(out, 0);
    p64(out, files.size()), p64(out, files.size()), p64(out, cd.size()), p64(out, cd_off);
    p32(out, 0x07064b50), p32(out, 0), p64(out, e64), p32(out, 1);
  }
  const auto count = zip64 ? std::uint16_t(0xFFFF) : std::uint16_t(files.size());
  p32(out, 0x06054b50), p16(out, 0), p16(out, 0), p16(out, count), p16(out, count);
  p32(out, zip64 ? sat : std::uint32_t(cd.size())), p32(out, zip64 ? sat : std::uint32_t(cd_off));
  p16(out, 0);
  std::vector<std::byte> b(out.size());
  std::memcpy(b.data(), out.data(), out.size());
  return b;
}

// {'w': _rebuild_tensor_v2(storage('0', FloatStorage, numel), 0, (2, 2), (sx, sy), False,
// OrderedDict())}, pickle protocol 2 as torch.save writes it.
inline std::string pickle(std::string rebuild = "torch._utils\n_rebuild_tensor_v2\n",
                          char numel = 4, char sx = 2, char sy = 1) {
  using namespace std::string_literals;
  return "\x80\x02}q\x00(X\x01\x00\x00\x00wc"s + rebuild +
         "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
         "0X\x03\x00\x00\x00"
         "cpuK"s +
         numel + "tQK\x00K\x02K\x02\x86K"s + sx + "K"s + sy +
         "\x86\x89"
         "ccollections\nOrderedDict\n)RtRu."s;
}

inline std::vector<std::byte> torch_file(const std::string& pkl,
                                         std::string storage = std::string(16, '\0'),
                                         std::uint16_t method = 0, bool zip64 = false) {
  return zip(
      {{"archive/data.pkl", pkl}, {"archive/byteorder", "little"}, {"archive/data/0", storage}},
      method, zip64);
}

}  // namespace io_test
