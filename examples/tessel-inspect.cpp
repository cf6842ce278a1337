// tessel-inspect FILE: prints the metadata and the tensor table of a model file. The format is
// recognised by its first bytes: GGUF, safetensors, PyTorch zip (torch.save), .npz, .npy; any other
// file is tried as a llama2.c checkpoint. Exit code 1 with the reason on a bad file.

#include <cstdio>
#include <iostream>
#include <sstream>
#include <tessel/io/formats/gguf.hpp>
#include <tessel/io/formats/llama2c.hpp>
#include <tessel/io/formats/npy.hpp>
#include <tessel/io/formats/safetensors.hpp>
#include <tessel/io/formats/torch.hpp>

using namespace tessel::io;

namespace {
std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
void row(const std::string& name, const std::string& type, const std::vector<std::int64_t>& shape,
         std::uint64_t offset, std::uint64_t bytes) {
  std::printf("  %-40s %-8s %-22s %12llu %12llu\n", name.c_str(), type.c_str(),
              shape_str(shape).c_str(), (unsigned long long)offset, (unsigned long long)bytes);
}
void header() {
  std::printf("  %-40s %-8s %-22s %12s %12s\n", "name", "type", "shape", "offset", "bytes");
}

std::string show(const GGUFFile& g, std::string_view key, const GGUFValue& v) {
  std::ostringstream os;
  const auto& f = g.path();
  switch (v.type()) {
    case gguf_type::string:
      os << '"' << v.as<std::string_view>(f, key) << '"';
      break;
    case gguf_type::boolean:
      os << (v.as<bool>(f, key) ? "true" : "false");
      break;
    case gguf_type::f32:
    case gguf_type::f64:
      os << v.as_float(f, key);
      break;
    case gguf_type::u64:
      os << v.as<std::uint64_t>(f, key);
      break;
    case gguf_type::array: {
      os << "array of " << v.count() << " " << name(v.elem_type());
      if (v.elem_type() == gguf_type::string) {
        const auto& s = v.strings(f, key);
        os << ": ";
        for (std::size_t i = 0; i < s.size() && i < 4; ++i)
          os << (i ? ", " : "") << '"' << s[i] << '"';
        if (s.size() > 4) os << ", ...";
      }
      break;
    }
    default:
      os << v.as_int(f, key);
  }
  return os.str();
}

void inspect_gguf(const std::string& path) {
  const auto g = GGUFFile::open(path);
  std::printf("GGUF version %u, alignment %u, data at byte %llu, %zu metadata keys, %zu tensors\n",
              g.version(), g.alignment(), (unsigned long long)g.data_offset(), g.keys().size(),
              g.tensors().size());
  for (auto k : g.keys())
    std::printf("  %-45.*s %-6s %s\n", int(k.size()), k.data(), name(g.value(k).type()),
                show(g, k, g.value(k)).c_str());
  header();
  for (const auto& t : g.tensors())
    row(std::string(t.name), name(t.type), t.shape(), g.data_offset() + t.offset, t.n_bytes);
}

void inspect_safetensors(const std::string& path) {
  const auto f = SafetensorsFile::open(path);
  std::printf("safetensors, data at byte %llu, %zu tensors\n", (unsigned long long)f.data_offset(),
              f.tensors().size());
  for (const auto& [k, v] : f.metadata()) std::printf("  %-45s %s\n", k.c_str(), v.c_str());
  header();
  for (const auto& t : f.tensors())
    row(t.name, name(t.dtype), t.shape, f.data_offset() + t.begin, t.end - t.begin);
}

void inspect_torch(const std::string& path) {
  const auto f = TorchFile::open(path);
  std::printf("PyTorch zip (torch.save), %zu tensors (offset = storage offset in elements)\n",
              f.tensors().size());
  header();
  for (const auto& t : f.tensors())
    row(t.name, name(t.dtype), t.shape, std::uint64_t(t.storage_offset),
        std::uint64_t(t.n_elements()) * info(t.dtype).size);
}

void inspect_npy(const std::string& path) {
  const auto f = NpyFile::open(path);
  const auto& a = f.array();
  std::printf(".npy, dtype %s, fortran_order %s, shape %s, %zu bytes of data\n", a.descr.c_str(),
              a.fortran_order ? "True" : "False", shape_str(a.shape).c_str(), a.data.size());
}

void inspect_npz(const std::string& path) {
  const auto z = NpzFile::open(path);
  std::printf(".npz, %zu arrays\n", z.arrays().size());
  header();
  for (const auto& [k, a] : z.arrays()) row(k, a.descr, a.shape, 0, a.data.size());
}

// A zip is a torch.save file when it holds <archive>/data.pkl, else an .npz.
bool is_torch_zip(const std::string& path) {
  const auto m = MappedFile::open(path);
  const ZipArchive zip(m.bytes(), path);
  for (const auto& e : zip.entries())
    if (e.name.ends_with("/data.pkl")) return true;
  return false;
}

void inspect_llama2c(const std::string& path) {
  const auto f = Llama2cFile::open(path);
  const auto& c = f.config();
  std::printf(
      "llama2.c checkpoint: dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
      "vocab_size %d (%s classifier), seq_len %d\n",
      c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
      c.shared_classifier ? "shared" : "separate", c.seq_len);
  header();
  for (const auto& t : f.tensors())
    row(t.name, "F32", t.shape, t.offset, std::uint64_t(t.n_elements()) * 4);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(
        stderr,
        "usage: tessel-inspect FILE (GGUF, safetensors, torch.save zip, .npz, .npy, llama2.c)\n");
    return 2;
  }
  const std::string path = argv[1];
  try {
    unsigned char m[9] = {};
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
      const auto n = std::fread(m, 1, sizeof m, f);
      std::fclose(f);
      if (n < sizeof m) std::memset(m + n, 0, sizeof m - n);
    }
    if (std::memcmp(m, "GGUF", 4) == 0) {
      inspect_gguf(path);
    } else if (std::memcmp(m, "PK\x03\x04", 4) == 0) {
      is_torch_zip(path) ? inspect_torch(path) : inspect_npz(path);
    } else if (std::memcmp(m, "\x93NUMPY", 6) == 0) {
      inspect_npy(path);
    } else if (m[8] == '{') {
      inspect_safetensors(path);
    } else {
      inspect_llama2c(path);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessel-inspect: %s\n", e.what());
    return 1;
  }
  return 0;
}
