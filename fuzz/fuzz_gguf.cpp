// libFuzzer: GGUFFile on arbitrary bytes must either parse (and then every value and every
// tensor byte is readable in bounds) or throw tessel::error.
// clang -Wpedantic flags the compound literal inside the _cvtss_sh macro (core/numeric.hpp).
#pragma clang diagnostic ignored "-Wc99-extensions"
#include <tessel/io/gguf.hpp>

namespace {
volatile unsigned sink;
void touch(const tessel::io::GGUFFile& g, const tessel::io::GGUFValue& v, std::string_view k) {
  using tessel::io::gguf_type;
  if (v.type() == gguf_type::string)
    sink = sink + unsigned(v.as<std::string_view>(g.path(), k).size());
  if (!v.is_array()) return;
  if (v.elem_type() == gguf_type::string) {
    for (auto s : v.strings(g.path(), k)) sink = sink + (s.empty() ? 0u : unsigned(s.back()));
  } else if (v.elem_type() == gguf_type::array) {
    for (const auto& it : v.items(g.path(), k)) touch(g, it, k);
  } else {
    for (auto b : v.array_bytes()) sink = sink + std::to_integer<unsigned>(b);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto g = tessel::io::GGUFFile::from_bytes(
        std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz");
    for (auto k : g.keys()) touch(g, g.value(k), k);
    for (const auto& t : g.tensors()) {
      const auto b = t.bytes();
      if (!b.empty()) sink = sink + std::to_integer<unsigned>(b.front() ^ b.back());
      if (t.type == tessel::io::ggml_type::F32) (void)t.view<float, 4>();
    }
  } catch (const tessel::error&) {
  }
  return 0;
}
