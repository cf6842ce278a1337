#pragma once
// A minimal reader of zip archives (central directory, ZIP64 included) for the containers
// that hold tensors: PyTorch's torch.save files and numpy's .npz. Only STORED (uncompressed)
// entries can be read, in place; a compressed entry is refused with format_error, since
// tessel has no inflate (both torch.save and numpy.savez store entries uncompressed).

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "byte_reader.hpp"

namespace tessel::io {

struct ZipEntry {
  std::string name;
  std::uint16_t method = 0;  // 0 = stored, 8 = deflate, ...
  std::uint32_t crc32 = 0;
  std::uint64_t size = 0;  // uncompressed
  std::uint64_t compressed = 0;
  std::uint64_t header_offset = 0;  // of the local file header
  std::uint64_t data_offset = 0;    // of the data (stored entries only)
};

class ZipArchive {
 public:
  ZipArchive() = default;
  /// Reads the central directory of `bytes` (which must outlive the archive).
  ZipArchive(std::span<const std::byte> bytes, std::string name)
      : bytes_(bytes), name_(std::move(name)) {
    parse();
  }

  const std::string& path() const noexcept { return name_; }
  const std::vector<ZipEntry>& entries() const noexcept { return entries_; }
  const ZipEntry* find(std::string_view n) const {
    auto it = index_.find(n);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }
  /// The bytes of a stored entry, in place; format_error for a compressed one.
  std::span<const std::byte> data(const ZipEntry& e) const {
    if (e.method != 0)
      throw format_error(name_, e.header_offset,
                         "zip entry '" + e.name + "' is compressed (method " +
                             std::to_string(e.method) +
                             "); only stored entries are supported (no inflate)");
    return bytes_.subspan(std::size_t(e.data_offset), std::size_t(e.size));
  }
  /// CRC-32 (zip's polynomial) of an entry's data equals the directory's.
  bool crc_ok(const ZipEntry& e) const {
    std::uint32_t c = 0xFFFFFFFFu;
    for (auto x : data(e)) {
      c ^= std::to_integer<std::uint32_t>(x);
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c == e.crc32;
  }

 private:
  static constexpr std::uint32_t sig_eocd = 0x06054b50, sig_eocd64 = 0x06064b50,
                                 sig_loc64 = 0x07064b50, sig_central = 0x02014b50,
                                 sig_local = 0x04034b50;

  std::uint32_t u32_at(std::size_t p) const {
    std::uint32_t v;
    std::memcpy(&v, bytes_.data() + p, 4);
    return v;
  }

  void parse() {
    ByteReader r(bytes_, name_);
    const std::size_t n = bytes_.size();
    if (n < 22) r.fail_at(0, "not a zip archive (too short for an end of central directory)");
    // The end record is 22 bytes plus a comment of up to 65535 bytes, searched from the end.
    std::size_t eocd = n;
    const std::size_t lowest = n - 22 > 65535 ? n - 22 - 65535 : 0;
    for (std::size_t p = n - 22 + 1; p-- > lowest;)
      if (u32_at(p) == sig_eocd) {
        eocd = p;
        break;
      }
    if (eocd == n) r.fail_at(n, "not a zip archive (no end of central directory record)");
    r.seek(eocd + 4, "end record");
    const std::uint16_t disk = r.u16("disk number"), cd_disk = r.u16("directory disk");
    r.u16("entries on disk");
    std::uint64_t count = r.u16("entry count");
    std::uint64_t cd_size = r.u32("directory size");
    std::uint64_t cd_off = r.u32("directory offset");
    if (disk != 0 || cd_disk != 0) r.fail_at(eocd, "multi-disk zip archives are not supported");
    if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) {
      if (eocd < 20 || u32_at(eocd - 20) != sig_loc64)
        r.fail_at(eocd, "ZIP64 sizes without a ZIP64 end locator");
      r.seek(eocd - 20 + 8, "ZIP64 locator");
      const std::uint64_t e64 = r.u64("ZIP64 end offset");
      if (e64 > n - 56 || e64 + 56 > eocd - 20)
        r.fail_at(eocd - 12, "ZIP64 end record offset out of range");
      r.seek(std::size_t(e64), "ZIP64 end record");
      if (r.u32("ZIP64 end signature") != sig_eocd64)
        r.fail_at(std::size_t(e64), "bad ZIP64 end record signature");
      r.skip(8 + 2 + 2 + 4 + 4 + 8, "ZIP64 end record");
      count = r.u64("ZIP64 entry count");
      cd_size = r.u64("ZIP64 directory size");
      cd_off = r.u64("ZIP64 directory offset");
    }
    if (cd_off > n || cd_size > n - cd_off)
      r.fail_at(eocd, "central directory [" + std::to_string(cd_off) + ", +" +
                          std::to_string(cd_size) + ") lies outside the archive");
    if (count > cd_size / 46)
      r.fail_at(eocd, "entry count " + std::to_string(count) + " exceeds the directory size");
    ByteReader c(bytes_.subspan(std::size_t(cd_off), std::size_t(cd_size)), name_, cd_off);
    entries_.reserve(std::size_t(count));
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::size_t at = c.pos();
      if (c.u32("central directory signature") != sig_central)
        c.fail_at(at, "bad central directory entry signature");
      ZipEntry e;
      c.skip(4, "versions");
      const std::uint16_t flags = c.u16("flags");
      e.method = c.u16("method");
      c.skip(4, "time and date");
      e.crc32 = c.u32("crc");
      e.compressed = c.u32("compressed size");
      e.size = c.u32("size");
      const std::uint16_t name_len = c.u16("name length"), extra_len = c.u16("extra length"),
                          comment_len = c.u16("comment length");
      c.skip(8, "disk and attributes");
      e.header_offset = c.u32("local header offset");
      e.name = std::string(c.take_string(name_len, "entry name"));
      auto extra =
          ByteReader(c.take(extra_len, "extra field"), name_, cd_off + c.pos() - extra_len);
      c.skip(comment_len, "entry comment");
      if (flags & 1) c.fail_at(at, "zip entry '" + e.name + "' is encrypted");
      while (extra.remaining() >= 4) {  // the ZIP64 field replaces saturated 32-bit values
        const std::uint16_t id = extra.u16("extra id"), len = extra.u16("extra length");
        auto field = ByteReader(extra.take(len, "extra data"), name_);
        if (id != 1) continue;
        if (e.size == 0xFFFFFFFF) e.size = field.u64("ZIP64 size");
        if (e.compressed == 0xFFFFFFFF) e.compressed = field.u64("ZIP64 compressed size");
        if (e.header_offset == 0xFFFFFFFF) e.header_offset = field.u64("ZIP64 offset");
      }
      // The data starts after the local header, whose name and extra lengths may differ.
      if (e.header_offset > n || n - e.header_offset < 30)
        c.fail_at(at, "zip entry '" + e.name + "' local header is outside the archive");
      ByteReader l(bytes_, name_);
      l.seek(std::size_t(e.header_offset), "local header");
      if (l.u32("local header signature") != sig_local)
        l.fail_at(std::size_t(e.header_offset), "bad local header signature for '" + e.name + "'");
      l.skip(22, "local header");
      const std::uint16_t ln = l.u16("local name length"), le = l.u16("local extra length");
      l.skip(std::size_t(ln) + le, "local name and extra");
      e.data_offset = l.pos();
      if (e.compressed > n - e.data_offset)
        c.fail_at(at, "zip entry '" + e.name + "' data runs past the end of the archive");
      if (e.method == 0 && e.compressed != e.size)
        c.fail_at(at, "stored zip entry '" + e.name + "' has different sizes");
      if (!index_.emplace(e.name, entries_.size()).second)
        c.fail_at(at, "duplicate zip entry '" + e.name + "'");
      entries_.push_back(std::move(e));
    }
  }

  std::span<const std::byte> bytes_;
  std::string name_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

}  // namespace tessel::io
