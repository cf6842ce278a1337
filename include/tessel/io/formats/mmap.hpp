#pragma once
// Read-only bytes of a file, memory-mapped so that opening costs nothing per byte of data and
// tensors can be viewed in place (zero copy). The same type also holds an in-memory buffer, so
// the readers run unchanged on bytes from a fuzzer or a test.
//
// The file readers hold their MappedFile through a std::shared_ptr and hand it out as the owner
// of the tensors viewed in it (nn::AnyMatrix::assign_view): the mapping lives as long as the
// last model that points into it, not as long as the reader.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "tessel/core/error.hpp"
#include "tessel/core/memory.hpp"

namespace tessel::io {

/// Could not open, stat or map a file (an OS error, not a format error).
struct io_error : tessel::error {
  using tessel::error::error;
};

class MappedFile {
 public:
  MappedFile() = default;

  /// Maps `path` read-only. An empty file gives an empty span (mmap of length 0 is invalid).
  static MappedFile open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error("tessel: cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      throw io_error("tessel: cannot stat '" + path + "': " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw io_error("tessel: '" + path + "' is not a regular file");
    }
    MappedFile m;
    m.name_ = path;
    m.size_ = static_cast<std::size_t>(st.st_size);
    if (m.size_ > 0) {
      void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        throw io_error("tessel: cannot map '" + path + "': " + std::strerror(e));
      }
      m.data_ = static_cast<const std::byte*>(p);
      m.mapped_ = true;
      // Advice only (errors ignored): map the file with huge pages where the page cache
      // holds it in 2 MiB folios (Linux 6.x file systems with large folios; the mapping is
      // 2 MiB aligned there), and read it in 2 MiB folios on faults. Decode streams the
      // weights: measured on a 1.1B Q4_0 model at 1 thread, a mapping of 4 KiB pages decodes
      // 15% slower. No MADV_WILLNEED: its read-ahead fills the page cache with small folios
      // (measured, Linux 6.18), and opening reads nothing but what the parser touches.
#if defined(MADV_HUGEPAGE)
      ::madvise(p, m.size_, MADV_HUGEPAGE);
#endif
    }
    ::close(fd);  // the mapping stays valid after close
    return m;
  }

  /// Faults [p, p + n) of the mapping in now, in file order (advice only: errors are ignored;
  /// no-op for in-memory bytes). The loaders call it for every weight they view: faults in file
  /// order fill the page cache in 2 MiB folios that map as huge pages (the decode loop touches
  /// rows from several threads out of order, which leaves most of a file in 4 KiB pages), and
  /// the first token no longer waits for the disk. From a warm page cache it costs well under a
  /// second for a 2 GB file.
  void populate(const std::byte* p, std::size_t n) const noexcept {
#if defined(MADV_POPULATE_READ)
    if (!mapped_ || n == 0 || !contains(p, n)) return;
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto lo = reinterpret_cast<std::uintptr_t>(p) / page * page;
    const auto hi = reinterpret_cast<std::uintptr_t>(p) + n;
    ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ);
#else
    (void)p, (void)n;
#endif
  }

  /// A copy of `bytes` in 64-byte aligned memory, named `name` in error messages.
  static MappedFile from_bytes(std::span<const std::byte> bytes, std::string name = "<memory>") {
    MappedFile m;
    m.name_ = std::move(name);
    m.size_ = bytes.size();
    if (!bytes.empty()) {
      m.owned_.reset(static_cast<std::byte*>(host_space::allocate(bytes.size())));
      std::memcpy(m.owned_.get(), bytes.data(), bytes.size());
      m.data_ = m.owned_.get();
    }
    return m;
  }
  static MappedFile from_bytes(const void* data, std::size_t n, std::string name = "<memory>") {
    return from_bytes({static_cast<const std::byte*>(data), n}, std::move(name));
  }

  MappedFile(MappedFile&& o) noexcept {
    swap(o);
  }
  MappedFile& operator=(MappedFile&& o) noexcept {
    MappedFile t(std::move(o));
    swap(t);
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (mapped_) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  const std::byte* data() const noexcept {
    return data_;
  }
  std::size_t size() const noexcept {
    return size_;
  }
  std::span<const std::byte> bytes() const noexcept {
    return {data_, size_};
  }
  /// True when [p, p + n) lies inside the bytes.
  bool contains(const void* p, std::size_t n) const noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(data_);
    return data_ && a >= b && a - b <= size_ && n <= size_ - (a - b);
  }
  /// The path (or buffer name) used in error messages.
  const std::string& name() const noexcept {
    return name_;
  }

 private:
  struct free_deleter {
    void operator()(std::byte* p) const noexcept { host_space::deallocate(p); }
  };
  void swap(MappedFile& o) noexcept {
    std::swap(name_, o.name_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(mapped_, o.mapped_);
    std::swap(owned_, o.owned_);
  }

  std::string name_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
  std::unique_ptr<std::byte, free_deleter> owned_;
};

/// Writes a just-written file through to disk and drops it from the page cache (advice only:
/// errors are ignored). Pages written by a process sit in the page cache as small folios, and a
/// mapping of them is built of 4 KiB pages; read back from disk, the same file fills 2 MiB
/// folios that MappedFile maps as huge pages. Decoding streams every weight per token: on a
/// 1.1B Q4_0 model at 2 threads, weights mapped right after writing decode about 19% slower.
/// The model writers call this once the file is complete.
inline void settle_written_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (::fdatasync(fd) == 0) {
#if defined(POSIX_FADV_DONTNEED)
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
#endif
  }
  ::close(fd);
}

}  // namespace tessel::io
