// libFuzzer: SafetensorsFile on arbitrary bytes must parse in bounds or throw tessel::error.
// clang -Wpedantic flags the compound literal inside the _cvtss_sh macro (core/numeric.hpp).
#pragma clang diagnostic ignored "-Wc99-extensions"
#include <tessel/io/formats/safetensors.hpp>

namespace {
volatile unsigned sink;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = tessel::io::SafetensorsFile::from_bytes(
        std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz");
    for (const auto& [k, v] : f.metadata()) sink = sink + unsigned(k.size() + v.size());
    for (const auto& t : f.tensors()) {
      const auto b = t.bytes();
      if (!b.empty()) sink = sink + std::to_integer<unsigned>(b.front() ^ b.back());
    }
  } catch (const tessel::error&) {
  }
  return 0;
}
